package boxes

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// tempPattern names in-progress downloads in CacheDir.
const tempPattern = ".download-*.tmp"

// aliasDir is the CacheDir subfolder mapping a sha512 digest to the
// sha256 the box is cached under (<sha256>.img).
const aliasDir = "sha512"

// resolveURL returns the cached box for want, downloading rawURL first if
// it is not cached yet.
func resolveURL(ctx context.Context, rawURL string, want wanted, opts Options) (Box, error) {
	if opts.CacheDir == "" {
		return Box{}, fmt.Errorf("box %q: no cache directory to download into", rawURL)
	}
	dir, err := filepath.Abs(opts.CacheDir)
	if err != nil {
		return Box{}, fmt.Errorf("box cache %q: %w", opts.CacheDir, err)
	}
	sha := want.hex
	if want.alg == "sha512" {
		sha = readAlias(dir, want.hex)
	}
	if sha != "" {
		// Only verified downloads are ever renamed to <sha256>.img.
		b, err := cachedImage(dir, sha, rawURL)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return b, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Box{}, fmt.Errorf("box cache %q: %w", dir, err)
	}
	sweepTemps(dir)
	return download(ctx, rawURL, dir, want, opts)
}

// readAlias is the sha256 a sha512 digest was cached under, or "".
func readAlias(dir, sha512hex string) string {
	b, err := os.ReadFile(filepath.Join(dir, aliasDir, sha512hex))
	if err != nil {
		return ""
	}
	d, err := parseDigest(string(b))
	if err != nil {
		return ""
	}
	return d
}

// writeAlias records that the box of digest sha512hex is <sha256>.img.
func writeAlias(dir, sha512hex, sha256hex string) error {
	return writeFileAtomic(filepath.Join(dir, aliasDir, sha512hex), []byte(sha256hex+"\n"))
}

// download fetches rawURL into a temporary file in dir, verifies it
// against want and renames it to <sha256>.img in dir. On failure no file
// is left behind.
func download(ctx context.Context, rawURL, dir string, want wanted, opts Options) (_ Box, err error) {
	client := opts.Client
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return Box{}, fmt.Errorf("box %q: %w", rawURL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return Box{}, fmt.Errorf("download %q: %w", rawURL, ctx.Err())
		}
		return Box{}, fmt.Errorf("download %q: %w", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Box{}, fmt.Errorf(`download %q: HTTP %s (hint: check "box" in devbox.yaml)`, rawURL, resp.Status)
	}

	tmp, err := createTemp(dir)
	if err != nil {
		return Box{}, fmt.Errorf("box cache %q: %w", dir, err)
	}
	// Closing drops the lock, so it comes last: after the rename, or after
	// the removal on failure.
	defer tmp.Close()
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()

	prog := newProgress(opts.Progress, rawURL, resp.ContentLength)
	// sha256 names the cache entry and the base volume; the wanted digest
	// may be another algorithm.
	h256, h512 := sha256.New(), sha512.New()
	sinks := []io.Writer{tmp, h256, prog}
	if want.alg == "sha512" {
		sinks = append(sinks, h512)
	}
	n, err := io.Copy(io.MultiWriter(sinks...), resp.Body)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return Box{}, fmt.Errorf("download %q: %w", rawURL, err)
	}
	prog.done()
	if err = tmp.Chmod(0o644); err != nil {
		return Box{}, fmt.Errorf("box cache: %w", err)
	}
	if err = tmp.Sync(); err != nil {
		return Box{}, fmt.Errorf("box cache: %w", err)
	}

	// An HTML error page served with 200 fails the checksum too, but
	// saying what it is helps more.
	format, err := DetectFormat(tmp.Name())
	if err != nil {
		if errors.Is(err, ErrNotDiskImage) {
			err = fmt.Errorf(`box %q: %w (hint: the URL must point at the image file itself)`, rawURL, errors.Unwrap(err))
		}
		return Box{}, err
	}
	sha := hex.EncodeToString(h256.Sum(nil))
	got := sha
	if want.alg == "sha512" {
		got = hex.EncodeToString(h512.Sum(nil))
	}
	if got != want.hex {
		err = mismatch(rawURL, got, want, want.from+" may be stale, or the download is corrupt")
		return Box{}, err
	}
	// The publisher's digest vouches for the bytes, not for what their
	// header makes libvirt open on this host.
	if format == "qcow2" {
		if err = checkSelfContained(tmp.Name(), rawURL); err != nil {
			return Box{}, err
		}
	}
	final := filepath.Join(dir, sha+".img")
	if want.alg == "sha512" {
		if err = writeAlias(dir, want.hex, sha); err != nil {
			return Box{}, fmt.Errorf("box cache %q: %w", dir, err)
		}
	}
	if err = os.Rename(tmp.Name(), final); err != nil {
		return Box{}, fmt.Errorf("box cache %q: %w", final, err)
	}
	source := rawURL
	if want.name != "" {
		source = want.name + " (" + rawURL + ")"
	}
	saveMeta(dir, sha, source)
	return Box{Path: final, SHA256: sha, Format: format, Size: n}, nil
}

// createTemp creates a temporary download file in dir and holds a flock
// on it until it is closed, which marks it as live for sweepTemps in this
// or another process.
func createTemp(dir string) (*os.File, error) {
	for {
		f, err := os.CreateTemp(dir, tempPattern)
		if err != nil {
			return nil, err
		}
		// Without flock support (some network file systems) the download
		// goes on unlocked: a sweep cannot lock it either, so leaves it.
		_ = flock(f, unix.LOCK_EX)
		// A sweep may have removed the file before it was locked: then
		// this one is unlinked and a new one is needed.
		if samePath(f, f.Name()) {
			return f, nil
		}
		f.Close()
	}
}

// sweepTemps removes temporary downloads left in dir by downloads that
// died (kill -9, power loss, a full disk). A live download holds a flock
// on its file until it is renamed or removed, so a file whose lock can be
// taken is stale, however young. Failures are ignored: sweeping only
// reclaims disk space.
func sweepTemps(dir string) {
	paths, _ := filepath.Glob(filepath.Join(dir, tempPattern))
	for _, p := range paths {
		sweepTemp(p)
	}
}

// sweepTemp removes the temporary download at path unless it is locked.
func sweepTemp(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if flock(f, unix.LOCK_EX|unix.LOCK_NB) != nil {
		return // a live download, or no flock here: leave it
	}
	// Remove only the file that was locked, not one put at path since.
	if samePath(f, path) {
		os.Remove(path)
	}
}

// flock applies how (unix.LOCK_*) to f, retrying when interrupted.
func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// samePath reports whether path still names the open file f.
func samePath(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// progressInterval bounds how often progress lines are written.
const progressInterval = 500 * time.Millisecond

// progress writes human download progress lines to w (if non-nil) as bytes
// pass through Write.
type progress struct {
	w     io.Writer
	url   string
	total int64 // -1 if unknown
	n     int64
	start time.Time
	last  time.Time
}

// newProgress starts reporting on a download of total bytes (-1: unknown).
func newProgress(w io.Writer, url string, total int64) *progress {
	p := &progress{w: w, url: url, total: total, start: time.Now()}
	p.last = p.start
	if w != nil {
		if total >= 0 {
			fmt.Fprintf(w, "downloading %s (%s)\n", url, humanBytes(total))
		} else {
			fmt.Fprintf(w, "downloading %s\n", url)
		}
	}
	return p
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.w == nil {
		return len(b), nil
	}
	if now := time.Now(); now.Sub(p.last) >= progressInterval {
		p.last = now
		line := humanBytes(p.n)
		if p.total > 0 {
			line += fmt.Sprintf(" / %s (%d%%)", humanBytes(p.total), p.n*100/p.total)
		}
		fmt.Fprintf(p.w, "  %s, %s/s\n", line, humanBytes(p.rate(now)))
	}
	return len(b), nil
}

// done writes the final line.
func (p *progress) done() {
	if p.w == nil {
		return
	}
	now := time.Now()
	fmt.Fprintf(p.w, "downloaded %s in %s (%s/s)\n", humanBytes(p.n), now.Sub(p.start).Round(100*time.Millisecond), humanBytes(p.rate(now)))
}

// rate is the average bytes per second so far.
func (p *progress) rate(now time.Time) int64 {
	d := now.Sub(p.start).Seconds()
	if d <= 0 {
		return 0
	}
	return int64(float64(p.n) / d)
}

// humanBytes formats n with a binary unit, e.g. "1.5 GiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

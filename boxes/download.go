package boxes

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	// Only verified downloads are ever renamed to <sha256>.img.
	if b, err := cachedFor(dir, want, rawURL); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return b, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Box{}, fmt.Errorf("box cache %q: %w", dir, err)
	}
	sweepTemps(dir)
	return download(ctx, rawURL, dir, want, opts)
}

// diskFull is a clear error for err when it says the cache's disk is
// full (what was written is removed by the caller), else nil.
func diskFull(err error, dir string) error {
	if !errors.Is(err, syscall.ENOSPC) {
		return nil
	}
	return fmt.Errorf("the disk holding the box cache %s is full: %w (hint: free space there (devbox box prune), or set DEVBOX_HOME to a folder on a bigger disk; nothing of this box was kept)", dir, err)
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

// partialDir is the CacheDir subfolder of downloads in progress or cut
// short: one file per wanted digest, locked while a download writes it,
// resumed (HTTP Range) by the next download of that digest. Nothing in it
// is a cache entry: only a verified download becomes <sha256>.img.
const partialDir = "partial"

// download fetches rawURL into its partial file in dir (resuming what an
// earlier, interrupted download of the same digest left there), verifies
// it against want and renames it to <sha256>.img. A transfer that fails
// keeps the partial file for the next try; a download that proves wrong
// (not an image, a digest mismatch, a refused header) removes it. Two
// downloads of one digest, in this process or another, never run at once:
// the second waits and then finds the box cached.
func download(ctx context.Context, rawURL, dir string, want wanted, opts Options) (_ Box, err error) {
	part := filepath.Join(dir, partialDir, want.alg+"-"+want.hex)
	f, err := openLocked(ctx, part, func() {
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "waiting for another download of %s\n", rawURL)
		}
	})
	if err != nil {
		return Box{}, fmt.Errorf("box cache %q: %w", part, err)
	}
	// After the rename or removal: closing drops the lock. An empty
	// partial folder goes too (openLocked copes with that race).
	defer os.Remove(filepath.Dir(part))
	defer f.Close()
	if b, err := cachedFor(dir, want, rawURL); err == nil {
		return b, nil // another download finished it while this one waited
	}
	keep := false // a transfer cut short stays, to be resumed
	defer func() {
		if err != nil && !keep {
			os.Remove(part)
		}
	}()

	// sha256 names the cache entry and the base volume; the wanted digest
	// may be another algorithm, hashed beside it only then.
	h256, hWant := sha256.New(), hash.Hash(nil)
	hashers := io.Writer(h256)
	if want.alg == "sha512" {
		hWant = sha512.New()
		hashers = io.MultiWriter(h256, hWant)
	}
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return Box{}, err
	}
	resp, err := get(ctx, opts.Client, rawURL, have)
	if err != nil {
		keep = true
		return Box{}, err
	}
	defer resp.Body.Close()
	complete := false // the partial file already holds every byte
	switch code := resp.StatusCode; {
	case have > 0 && (code == http.StatusPartialContent && rangeStart(resp) == have || code == http.StatusRequestedRangeNotSatisfiable):
		// Resume (or, for 416, nothing is left to fetch: the last try
		// ended after its final byte): the hashes start from the bytes
		// already here.
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return Box{}, err
		}
		if _, err := io.CopyN(hashers, f, have); err != nil {
			return Box{}, fmt.Errorf("box cache %q: %w", part, err)
		}
		complete = code == http.StatusRequestedRangeNotSatisfiable
	case code >= 200 && code <= 299 && code != http.StatusPartialContent:
		have = 0 // no resume offered: from the start
		if err := f.Truncate(0); err != nil {
			return Box{}, err
		}
	default:
		// A server error may pass: keep what is here. Anything else (a
		// 404, a range answered wrong) starts over next time.
		keep = code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests
		return Box{}, fmt.Errorf(`download %q: HTTP %s (hint: check "box" in devbox.yaml)`, rawURL, resp.Status)
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return Box{}, err
	}

	total := int64(-1)
	if resp.ContentLength >= 0 {
		total = have + resp.ContentLength
	}
	var n int64
	prog := newProgress(opts.Progress, rawURL, have, total)
	if !complete {
		n, err = io.Copy(io.MultiWriter(f, hashers, prog), resp.Body)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		if full := diskFull(err, dir); full != nil {
			return Box{}, fmt.Errorf("download %q: %w", rawURL, full) // the partial goes: the disk is full
		}
		keep = true
		return Box{}, fmt.Errorf("download %q: cut short after %s: %w (hint: run it again to resume)", rawURL, humanBytes(have+n), err)
	}
	prog.done()
	if err = f.Sync(); err != nil {
		if full := diskFull(err, dir); full != nil {
			return Box{}, fmt.Errorf("download %q: %w", rawURL, full)
		}
		return Box{}, fmt.Errorf("box cache: %w", err)
	}

	// An HTML error page served with 200 fails the checksum too, but
	// saying what it is helps more.
	format, err := DetectFormat(part)
	if err != nil {
		if errors.Is(err, ErrNotDiskImage) {
			err = fmt.Errorf(`box %q: %w (hint: the URL must point at the image file itself)`, rawURL, errors.Unwrap(err))
		}
		return Box{}, err
	}
	sha := hex.EncodeToString(h256.Sum(nil))
	got := sha
	if hWant != nil {
		got = hex.EncodeToString(hWant.Sum(nil))
	}
	if got != want.hex {
		return Box{}, mismatch(rawURL, got, want, want.from+" may be stale, or the download is corrupt")
	}
	// The publisher's digest vouches for the bytes, not for what their
	// header makes libvirt open on this host.
	if format == "qcow2" {
		if err = checkSelfContained(part, rawURL); err != nil {
			return Box{}, err
		}
	}
	if err = f.Chmod(0o644); err != nil {
		return Box{}, fmt.Errorf("box cache: %w", err)
	}
	if want.alg == "sha512" {
		if err = writeAlias(dir, want.hex, sha); err != nil {
			return Box{}, fmt.Errorf("box cache %q: %w", dir, err)
		}
	}
	final := filepath.Join(dir, sha+".img")
	if err = os.Rename(part, final); err != nil {
		return Box{}, fmt.Errorf("box cache %q: %w", final, err)
	}
	source := rawURL
	if want.name != "" {
		source = want.name + " (" + rawURL + ")"
	}
	saveMeta(dir, sha, source)
	return Box{Path: final, SHA256: sha, Format: format, Size: have + n}, nil
}

// get requests rawURL, from byte offset from on when from > 0.
func get(ctx context.Context, client *http.Client, rawURL string, from int64) (*http.Response, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("box %q: %w", rawURL, err)
	}
	if from > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", from))
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("download %q: %w", rawURL, err)
	}
	return resp, nil
}

// rangeStart is the first byte of a 206 response ("Content-Range: bytes
// START-END/TOTAL"), or -1.
func rangeStart(resp *http.Response) int64 {
	var start, end int64
	var total string
	if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/%s", &start, &end, &total); err != nil {
		return -1
	}
	return start
}

// cachedFor is the cached box for want (see cachedImage); an error
// wrapping fs.ErrNotExist when there is none.
func cachedFor(dir string, want wanted, what string) (Box, error) {
	sha := want.hex
	if want.alg == "sha512" {
		if sha = readAlias(dir, want.hex); sha == "" {
			return Box{}, fmt.Errorf("box %q: %w in the cache", what, fs.ErrNotExist)
		}
	}
	return cachedImage(dir, sha, what)
}

// openLocked opens (creating) the partial file at p and takes its flock,
// waiting for another holder (told once through waiting) until ctx ends.
// The holder may rename or remove the file before letting go: then the
// lock is on a file no longer at p, and it starts again.
func openLocked(ctx context.Context, p string, waiting func()) (*os.File, error) {
	told := false
	for {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the folder went between the two calls
		}
		if err != nil {
			return nil, err
		}
		err = flock(f, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil && samePath(f, p) {
			return f, nil
		}
		f.Close()
		if err != nil && !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock: %w", err)
		}
		if err != nil && !told {
			waiting()
			told = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
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

// sweepTemp removes the file at path unless a live download holds its
// lock, and returns the bytes it freed.
func sweepTemp(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	if flock(f, unix.LOCK_EX|unix.LOCK_NB) != nil {
		return 0 // a live download, or no flock here: leave it
	}
	// Remove only the file that was locked, not one put at path since.
	fi, err := f.Stat()
	if err != nil || !samePath(f, path) || os.Remove(path) != nil {
		return 0
	}
	return fi.Size()
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

// redrawInterval is how often a bar redrawn in place is updated.
const redrawInterval = 100 * time.Millisecond

// Updater is a progress writer that can show a line in place (a terminal):
// Options.Progress may implement it to get a redrawn bar instead of lines.
type Updater interface {
	Update(text string)
	Redraws() bool
}

// progress writes human download progress to w (if non-nil) as bytes
// pass through Write: lines, or a bar redrawn in place when w is an
// Updater on a terminal.
type progress struct {
	w     io.Writer
	bar   Updater // nil: plain lines
	url   string
	total int64 // -1 if unknown
	from  int64 // bytes already there when it started (a resumed download)
	n     int64 // bytes there now, from included
	start time.Time
	last  time.Time
}

// newProgress starts reporting on a download of total bytes (-1: unknown)
// of which from are already there.
func newProgress(w io.Writer, url string, from, total int64) *progress {
	p := &progress{w: w, url: url, total: total, from: from, n: from, start: time.Now()}
	p.last = p.start
	if u, ok := w.(Updater); ok && u.Redraws() {
		p.bar = u
	}
	// On a redrawn line the step already names the box: keep the line short.
	if p.bar != nil {
		url = "the box"
	}
	var first string
	switch {
	case from > 0 && total > 0:
		first = fmt.Sprintf("resuming download of %s at %s of %s", url, humanBytes(from), humanBytes(total))
	case from > 0:
		first = fmt.Sprintf("resuming download of %s at %s", url, humanBytes(from))
	case total >= 0:
		first = fmt.Sprintf("downloading %s (%s)", url, humanBytes(total))
	default:
		first = fmt.Sprintf("downloading %s", url)
	}
	if p.bar != nil {
		p.bar.Update(first)
	} else if w != nil {
		fmt.Fprintln(w, first)
	}
	return p
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.w == nil {
		return len(b), nil
	}
	every := progressInterval
	if p.bar != nil {
		every = redrawInterval
	}
	if now := time.Now(); now.Sub(p.last) >= every {
		p.last = now
		if p.bar != nil {
			p.bar.Update(p.status(now, true))
		} else {
			fmt.Fprintf(p.w, "  %s\n", p.status(now, false))
		}
	}
	return len(b), nil
}

// status is the progress so far: size, share, rate and time left, after
// a bar of the share when bar is set and the total is known.
func (p *progress) status(now time.Time, bar bool) string {
	line := humanBytes(p.n)
	rate := p.rate(now)
	if p.total > 0 {
		pct := p.n * 100 / p.total
		line += fmt.Sprintf(" / %s (%d%%)", humanBytes(p.total), pct)
		if bar {
			const width = 24
			filled := int(min(pct, 100) * width / 100)
			line = "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "] " + line
		}
	}
	line += fmt.Sprintf(", %s/s", humanBytes(rate))
	if p.total > 0 && rate > 0 {
		line += fmt.Sprintf(", %s left", (time.Duration((p.total-p.n)/rate) * time.Second).String())
	}
	return line
}

// done writes the final line.
func (p *progress) done() {
	if p.w == nil {
		return
	}
	now := time.Now()
	fmt.Fprintf(p.w, "downloaded %s in %s (%s/s)\n", humanBytes(p.n-p.from), now.Sub(p.start).Round(100*time.Millisecond), humanBytes(p.rate(now)))
}

// rate is the average bytes per second so far.
func (p *progress) rate(now time.Time) int64 {
	d := now.Sub(p.start).Seconds()
	if d <= 0 {
		return 0
	}
	return int64(float64(p.n-p.from) / d)
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

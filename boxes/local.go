package boxes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// recordDir is the CacheDir subfolder holding checksum records of local boxes.
const recordDir = "local-sums"

// record remembers what a local file was found to be, so that an
// unchanged one (same path, size and mtime) is not read again: in
// recordDir the sha256 of a local image; in importedDir the image a
// Vagrant box was imported as (SHA256) and the box file's own digest
// (Archive).
type record struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
	SHA256  string `json:"sha256"`
	Archive string `json:"archive_sha256,omitempty"`
}

// newRecord is the record of the file abs (fi) with its digests.
func newRecord(abs string, fi fs.FileInfo, sha256hex, archive string) record {
	return record{Path: abs, Size: fi.Size(), ModTime: fi.ModTime().UnixNano(), SHA256: sha256hex, Archive: archive}
}

// resolveLocal resolves a local file, used in place.
func resolveLocal(ctx context.Context, path, want string, opts Options) (Box, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Box{}, fmt.Errorf("box %q: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return Box{}, fmt.Errorf(`box %q: %w (hint: check "box" in devbox.yaml)`, abs, fs.ErrNotExist)
	}
	if err != nil {
		return Box{}, fmt.Errorf("box %q: %w", abs, err)
	}
	if !fi.Mode().IsRegular() {
		return Box{}, fmt.Errorf(`box %q: not a regular file (hint: "box" must name an image file)`, abs)
	}
	if b, ok := importedBefore(abs, fi, want, opts); ok {
		return b, nil
	}
	if isVagrantBox(abs) {
		return importVagrant(ctx, abs, fi, want, opts)
	}
	format, err := DetectFormat(abs)
	if err != nil {
		return Box{}, fmt.Errorf(`box: %w (hint: check "box" in devbox.yaml)`, err)
	}
	if format == "qcow2" {
		if err := checkSelfContained(abs, abs); err != nil {
			return Box{}, err
		}
	}

	r, ok := lookupRecord(opts.CacheDir, recordDir, abs, fi)
	sum := r.SHA256
	if !ok {
		if sum, err = HashFile(ctx, abs); err != nil {
			return Box{}, fmt.Errorf("box %q: %w", abs, err)
		}
		// The record is only an optimisation: failing to save it must
		// not fail the caller.
		_ = saveRecord(opts.CacheDir, recordDir, newRecord(abs, fi, sum, ""))
	}
	if want != "" && sum != want {
		return Box{}, mismatch(abs, sum, boxSHA256(want), "box_sha256 may be stale, or the file changed")
	}
	return Box{Path: abs, SHA256: sum, Format: format, Size: fi.Size()}, nil
}

// HashFile streams the file at path through sha256, stopping if ctx ends.
func HashFile(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
		return "", fmt.Errorf("hash: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// recordPath is where the record of the file abs is kept in kind (a
// CacheDir subfolder: recordDir or importedDir).
func recordPath(cacheDir, kind, abs string) string {
	key := sha256.Sum256([]byte(abs))
	return filepath.Join(cacheDir, kind, hex.EncodeToString(key[:])+".json")
}

// lookupRecord is the record of abs in kind if abs's size and mtime are
// unchanged since it was saved.
func lookupRecord(cacheDir, kind, abs string, fi fs.FileInfo) (record, bool) {
	var r record
	if cacheDir == "" {
		return r, false
	}
	data, err := os.ReadFile(recordPath(cacheDir, kind, abs))
	if err != nil || json.Unmarshal(data, &r) != nil {
		return record{}, false
	}
	if r.Path != abs || r.Size != fi.Size() || r.ModTime != fi.ModTime().UnixNano() {
		return record{}, false
	}
	d, err := parseDigest(r.SHA256)
	if err != nil {
		return record{}, false
	}
	r.SHA256 = d
	return r, true
}

// saveRecord atomically writes r in kind under cacheDir; a no-op without
// cacheDir.
func saveRecord(cacheDir, kind string, r record) error {
	if cacheDir == "" {
		return nil
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeFileAtomic(recordPath(cacheDir, kind, r.Path), data)
}

// writeFileAtomic writes data to p (creating its folder) through a
// temporary file and a rename: a reader sees the old file or the new one,
// never half of one.
func writeFileAtomic(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".record-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

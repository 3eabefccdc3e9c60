package boxes

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ErrNotLibvirtBox is wrapped by errors about a Vagrant box made for
// another provider (virtualbox, vmware_desktop, ...).
var ErrNotLibvirtBox = errors.New("not a libvirt box")

// importedDir is the CacheDir subfolder of records that map a Vagrant
// box file (path, size, mtime) to the image it was imported as.
const importedDir = "imported"

// isVagrantBox reports whether the file at p is a tar archive, plain or
// gzip-compressed: the form of a Vagrant .box.
func isVagrantBox(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	hdr := make([]byte, 512)
	n, _ := io.ReadFull(f, hdr)
	hdr = hdr[:n]
	if bytes.HasPrefix(hdr, []byte("\x1f\x8b")) {
		return true
	}
	return isTar(hdr)
}

// isTar: a POSIX or GNU tar header has "ustar" at offset 257.
func isTar(hdr []byte) bool {
	return len(hdr) >= 262 && string(hdr[257:262]) == "ustar"
}

// vagrantMeta is a Vagrant box's metadata.json.
type vagrantMeta struct {
	Provider string `json:"provider"`
	Format   string `json:"format"`
}

// importVagrant turns a Vagrant libvirt box (a tar, or tar.gz, holding
// metadata.json with provider libvirt and box.img) into a cached image:
// box.img is extracted into CacheDir as <sha256>.img, checked like any
// box. want, if set, is the sha256 of the .box file itself. Nothing but
// box.img is extracted, and an archive naming an entry outside itself
// (absolute, or with ..) is refused whole. A record keyed by the file's
// path, size and mtime lets the next up skip the import.
func importVagrant(ctx context.Context, abs string, fi fs.FileInfo, want string, opts Options) (Box, error) {
	if opts.CacheDir == "" {
		return Box{}, fmt.Errorf("box %q: a Vagrant box needs a cache folder to be imported into", abs)
	}
	cache, err := filepath.Abs(opts.CacheDir)
	if err != nil {
		return Box{}, err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return Box{}, fmt.Errorf("box cache %q: %w", cache, err)
	}
	sweepTemps(cache)
	f, err := os.Open(abs)
	if err != nil {
		return Box{}, fmt.Errorf("box %q: %w", abs, err)
	}
	defer f.Close()
	archiveSum := sha256.New()
	br := bufio.NewReader(io.TeeReader(ctxReader{ctx, f}, archiveSum))
	var r io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte("\x1f\x8b")) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return Box{}, fmt.Errorf("box %q: gzip: %w", abs, err)
		}
		r = gz
	}

	tmp, err := createTemp(cache)
	if err != nil {
		return Box{}, fmt.Errorf("box cache %q: %w", cache, err)
	}
	defer tmp.Close()
	kept := false
	defer func() {
		if !kept {
			os.Remove(tmp.Name())
		}
	}()

	var meta *vagrantMeta
	imageSum := sha256.New()
	var imageSize int64 = -1
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return Box{}, ctx.Err()
			}
			return Box{}, fmt.Errorf("box %q: not a readable Vagrant box (tar: %v)", abs, err)
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return Box{}, fmt.Errorf("box %q: refused: %w", abs, err)
		}
		switch name {
		case "metadata.json":
			var m vagrantMeta
			if err := json.NewDecoder(io.LimitReader(tr, 1<<16)).Decode(&m); err != nil {
				return Box{}, fmt.Errorf("box %q: metadata.json: %v", abs, err)
			}
			meta = &m
		case "box.img":
			if hdr.Typeflag != tar.TypeReg {
				return Box{}, fmt.Errorf("box %q: refused: box.img is not a regular file in the archive", abs)
			}
			if imageSize >= 0 {
				return Box{}, fmt.Errorf("box %q: refused: the archive holds box.img twice", abs)
			}
			if imageSize, err = io.Copy(io.MultiWriter(tmp, imageSum), tr); err != nil {
				if ctx.Err() != nil {
					return Box{}, ctx.Err()
				}
				if full := diskFull(err, opts.CacheDir); full != nil {
					return Box{}, fmt.Errorf("box %q: extract box.img: %w", abs, full)
				}
				return Box{}, fmt.Errorf("box %q: extract box.img: %w", abs, err)
			}
		}
	}
	// The rest of the file counts towards its digest too.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return Box{}, fmt.Errorf("box %q: %w", abs, err)
	}
	archive := hex.EncodeToString(archiveSum.Sum(nil))
	switch {
	case want != "" && archive != want:
		return Box{}, mismatch(abs, archive, boxSHA256(want), "box_sha256 may be stale, or the file changed")
	case meta == nil:
		return Box{}, fmt.Errorf("box %q: %w: an archive without metadata.json is not a Vagrant box (hint: box must name a disk image or a Vagrant libvirt box)", abs, ErrNotDiskImage)
	case meta.Provider != "libvirt":
		return Box{}, fmt.Errorf("box %q: %w: it is a Vagrant box for provider %q (hint: use the box's libvirt version: vagrant box add --provider libvirt NAME)", abs, ErrNotLibvirtBox, meta.Provider)
	case meta.Format != "" && meta.Format != "qcow2":
		return Box{}, fmt.Errorf("box %q: metadata.json says format %q; a libvirt box holds a qcow2 box.img", abs, meta.Format)
	case imageSize < 0:
		return Box{}, fmt.Errorf("box %q: the Vagrant box has no box.img", abs)
	}
	if err := tmp.Sync(); err != nil {
		return Box{}, fmt.Errorf("box cache: %w", err)
	}
	sha := hex.EncodeToString(imageSum.Sum(nil))
	what := abs + ":box.img"
	format, err := DetectFormat(tmp.Name())
	if err != nil {
		return Box{}, fmt.Errorf("box %q: %w", what, err)
	}
	if format == "qcow2" {
		if err := checkSelfContained(tmp.Name(), what); err != nil {
			return Box{}, err
		}
	}
	if err := tmp.Chmod(0o644); err != nil {
		return Box{}, fmt.Errorf("box cache: %w", err)
	}
	final := filepath.Join(cache, sha+".img")
	if err := os.Rename(tmp.Name(), final); err != nil {
		return Box{}, fmt.Errorf("box cache %q: %w", final, err)
	}
	kept = true
	saveMeta(cache, sha, abs)
	_ = saveRecord(cache, importedDir, newRecord(abs, fi, sha, archive))
	if opts.Progress != nil {
		fmt.Fprintf(opts.Progress, "imported Vagrant box %s (box.img, %s)\n", abs, humanBytes(imageSize))
	}
	return Box{Path: final, SHA256: sha, Format: format, Size: imageSize}, nil
}

// importedBefore is the image a Vagrant box at abs, unchanged (same size
// and mtime) and matching want, was imported as.
func importedBefore(abs string, fi fs.FileInfo, want string, opts Options) (Box, bool) {
	if opts.CacheDir == "" {
		return Box{}, false
	}
	cache, err := filepath.Abs(opts.CacheDir)
	if err != nil {
		return Box{}, false
	}
	r, ok := lookupRecord(cache, importedDir, abs, fi)
	if !ok || want != "" && want != r.Archive {
		return Box{}, false
	}
	b, err := cachedImage(cache, r.SHA256, abs)
	return b, err == nil
}

// entryName is an archive entry's name, cleaned; an entry that would land
// outside the archive's folder is an error.
func entryName(raw string) (string, error) {
	if raw == "" || strings.HasPrefix(raw, "/") || strings.Contains(raw, "\\") {
		return "", fmt.Errorf("archive entry %q is not a relative path", raw)
	}
	name := path.Clean(raw)
	if name == ".." || strings.HasPrefix(name, "../") {
		return "", fmt.Errorf("archive entry %q escapes the box's folder", raw)
	}
	return name, nil
}

// cachedImage is the cached <sha>.img, checked again (it may have been
// cached before boxes checked headers); an error wrapping fs.ErrNotExist
// when it is not cached.
func cachedImage(cache, sha, what string) (Box, error) {
	final := filepath.Join(cache, sha+".img")
	fi, err := os.Stat(final)
	if err != nil {
		return Box{}, fmt.Errorf("box cache %q: %w", final, err)
	}
	if !fi.Mode().IsRegular() {
		return Box{}, fmt.Errorf("box cache %q: not a regular file (hint: delete it to download the box again)", final)
	}
	format, err := DetectFormat(final)
	if err != nil {
		return Box{}, fmt.Errorf("box cache: %w (hint: delete the file to download it again)", err)
	}
	if format == "qcow2" {
		if err := checkSelfContained(final, what); err != nil {
			return Box{}, err
		}
	}
	return Box{Path: final, SHA256: sha, Format: format, Size: fi.Size()}, nil
}

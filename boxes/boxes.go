// Package boxes resolves a box source (a local path, file:// URL or
// http(s):// URL) into a verified image file on local disk.
package boxes

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/devbox-vm/devbox/boxes/qcow2"
)

// Box is a resolved, verified image on local disk.
type Box struct {
	Path   string // local file to read the image from (absolute)
	SHA256 string // lower-case hex digest of the file's bytes
	Format string // "qcow2" or "raw"
	Size   int64
}

// Options configures Resolve.
type Options struct {
	// CacheDir holds downloaded boxes (<sha256>.img) and the checksum
	// records of local boxes; created 0755 if missing. Required for URLs;
	// for local files an empty CacheDir just disables the checksum record.
	CacheDir string
	// Client is used for downloads; nil means http.DefaultClient.
	Client *http.Client
	// Progress receives human progress lines for downloads (at most ~2
	// per second, plus a first and a final line); nil means silent.
	Progress io.Writer
	// Catalog resolves box names (IsName); nil means the built-in one.
	Catalog Catalog
	// Arch picks a catalog box's image: x86_64 or aarch64.
	Arch string
}

var (
	// ErrChecksumMismatch is wrapped by errors about a box whose digest
	// differs from box_sha256 or the catalog's.
	ErrChecksumMismatch = errors.New("mismatch")
	// ErrNotDiskImage is wrapped by errors about a file that is clearly
	// not a disk image (an HTML page, a text file, an archive...).
	ErrNotDiskImage = errors.New("not a disk image")
	// ErrRefused is wrapped by errors about a qcow2 box that is not
	// self-contained (its header names a backing file or an external
	// data file) or whose header cannot be judged.
	ErrRefused = qcow2.ErrRefused
)

// Resolve turns source into a Box.
//
// A box name (IsName: debian-12) is looked up in the catalog for
// opts.Arch and handled as its URL, checked against the catalog's digest.
//
// A local path (absolute or relative) or file:// URL is used in place; its
// sha256 is computed (or taken from a record in CacheDir keyed by path, size
// and mtime) and, if wantSHA256 is set, must match it.
//
// An http:// or https:// URL requires wantSHA256. CacheDir/<sha256>.img is
// returned without any network access when it exists; otherwise the URL is
// downloaded to a temporary file in CacheDir, verified, and renamed into
// place. On any failure (including ctx cancellation) nothing is left behind,
// and temporary files of downloads that were killed are removed by the
// next download into CacheDir.
//
// A qcow2 box must be self-contained: one whose header names a backing
// file or an external data file, or cannot be parsed, is refused with an
// error wrapping ErrRefused; a refused download is not cached.
//
// wantSHA256 is hex, case-insensitive, with an optional "sha256:" prefix.
func Resolve(ctx context.Context, source, wantSHA256 string, opts Options) (Box, error) {
	if ps := CheckSource(source, wantSHA256, IsName(source)); len(ps) > 0 {
		return Box{}, fmt.Errorf("box %q: %s: %s", source, ps[0].Field, ps[0].Msg)
	}
	want, err := parseDigest(wantSHA256)
	if err != nil {
		return Box{}, err
	}
	if IsName(source) {
		return resolveName(ctx, source, want, opts)
	}
	if !strings.Contains(source, "://") {
		return resolveLocal(ctx, source, want, opts)
	}
	u, err := url.Parse(source)
	if err != nil {
		return Box{}, fmt.Errorf("box %q: invalid URL: %w", source, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "file":
		return resolveLocal(ctx, u.Path, want, opts)
	default: // http, https (CheckSource refused the rest)
		return resolveURL(ctx, source, boxSHA256(want), opts)
	}
}

// resolveName resolves a catalog box: its image for opts.Arch, downloaded
// and checked against the catalog's digest.
func resolveName(ctx context.Context, name, want string, opts Options) (Box, error) {
	c := opts.Catalog
	if c == nil {
		var err error
		if c, err = LoadCatalog(""); err != nil {
			return Box{}, err
		}
	}
	img, err := c.Lookup(name, opts.Arch)
	if err != nil {
		return Box{}, err
	}
	w, err := parseWanted(img.Digest, name)
	if err != nil {
		return Box{}, fmt.Errorf("box %q: %w", name, err)
	}
	if img.built {
		return cachedBuilt(opts.CacheDir, name, w.hex)
	}
	return resolveURL(ctx, img.URL, w, opts)
}

// parseDigest normalises a box_sha256 value to lower-case hex; "" stays "".
func parseDigest(s string) (string, error) {
	d := strings.ToLower(strings.TrimSpace(s))
	d = strings.TrimPrefix(d, "sha256:")
	if d == "" && strings.TrimSpace(s) == "" {
		return "", nil
	}
	if len(d) != 64 {
		return "", fmt.Errorf("box_sha256 %q: want 64 hex digits, got %d characters", s, len(d))
	}
	if _, err := hex.DecodeString(d); err != nil {
		return "", fmt.Errorf("box_sha256 %q: not a hex sha256 digest", s)
	}
	return d, nil
}

// wanted is a digest a box must match, and where it comes from.
type wanted struct {
	alg  string // "sha256" or "sha512"
	hex  string // lower case
	from string // for errors: "box_sha256", "the catalog's digest for debian-12"
	name string // the catalog name, if from the catalog
}

func boxSHA256(hex string) wanted { return wanted{alg: "sha256", hex: hex, from: "box_sha256"} }

// mismatch builds the error for a box whose digest is not the wanted one.
func mismatch(what, got string, want wanted, hint string) error {
	return fmt.Errorf("box %q: %s %w: got %s, %s is %s (hint: %s)", what, want.alg, ErrChecksumMismatch, got, want.from, want.hex, hint)
}

package boxes

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// metaDir is the CacheDir subfolder saying where each cached box came from.
const metaDir = "meta"

// Cached is a box image in the cache folder: downloaded, or imported
// from a Vagrant box. (A local image file is used in place, not cached.)
type Cached struct {
	SHA256 string    `json:"sha256"`
	Path   string    `json:"path"`
	Size   int64     `json:"size"`
	Added  time.Time `json:"added"`
	Source string    `json:"source,omitempty"` // URL, catalog name or .box file; empty if unknown
	// Names are the names box build recorded it under ("NAME (ARCH)").
	Names []string `json:"names,omitempty"`
}

type meta struct {
	Source string `json:"source"`
}

// saveMeta records where the cached box sha came from (best effort: the
// record only labels box list).
func saveMeta(cacheDir, sha, source string) {
	data, err := json.Marshal(meta{Source: source})
	if err == nil {
		_ = writeFileAtomic(filepath.Join(cacheDir, metaDir, sha+".json"), data)
	}
}

// List is the cached boxes in cacheDir, oldest first.
func List(cacheDir string) ([]Cached, error) {
	paths, err := filepath.Glob(filepath.Join(cacheDir, "*.img"))
	if err != nil {
		return nil, err
	}
	var out []Cached
	names := builtNames(cacheDir)
	for _, p := range paths {
		sha := strings.TrimSuffix(filepath.Base(p), ".img")
		if _, err := parseDigest(sha); err != nil {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		c := Cached{SHA256: sha, Path: p, Size: fi.Size(), Added: fi.ModTime()}
		var m meta
		if data, err := os.ReadFile(filepath.Join(cacheDir, metaDir, sha+".json")); err == nil && json.Unmarshal(data, &m) == nil {
			c.Source = m.Source
		}
		c.Names = names[sha]
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Added.Before(out[j].Added) })
	return out, nil
}

// Remove deletes the cached box sha and every record pointing at it
// (its label, sha512 aliases, Vagrant import records). A box that is not
// cached is not an error.
func Remove(cacheDir, sha string) error {
	var errs []error
	rm := func(p string) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	rm(filepath.Join(cacheDir, sha+".img"))
	rm(filepath.Join(cacheDir, metaDir, sha+".json"))
	aliases, _ := filepath.Glob(filepath.Join(cacheDir, aliasDir, "*"))
	for _, a := range aliases {
		if readAlias(cacheDir, filepath.Base(a)) == sha {
			rm(a)
		}
	}
	removeBuilt(cacheDir, sha, rm)
	records, _ := filepath.Glob(filepath.Join(cacheDir, importedDir, "*.json"))
	for _, p := range records {
		var r record
		if data, err := os.ReadFile(p); err == nil && json.Unmarshal(data, &r) == nil && r.SHA256 == sha {
			rm(p)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove cached box %s: %w", sha[:min(16, len(sha))], errors.Join(errs...))
	}
	return nil
}

// Partials is the total size of the downloads cut short in cacheDir
// (kept for resuming), and RemovePartials removes those no download is
// writing now, returning the bytes freed.
func Partials(cacheDir string) (n int64) {
	paths, _ := filepath.Glob(filepath.Join(cacheDir, partialDir, "*"))
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// RemovePartials: see Partials.
func RemovePartials(cacheDir string) (freed int64) {
	paths, _ := filepath.Glob(filepath.Join(cacheDir, partialDir, "*"))
	for _, p := range paths {
		freed += sweepTemp(p)
	}
	os.Remove(filepath.Join(cacheDir, partialDir))
	return freed
}

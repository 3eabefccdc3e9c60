package boxes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/devbox-vm/devbox/boxes/build"
)

// builtDir is the CacheDir subfolder naming the boxes devbox box build
// made: NAME.ARCH.json, each pointing at a cached <sha256>.img.
const builtDir = "built"

// Built is the record of a box made by devbox box build: the name it is
// known by, its image in the cache, and what went into it.
type Built struct {
	Name     string         `json:"name"`
	Arch     string         `json:"arch"`
	SHA256   string         `json:"sha256"`
	Distro   string         `json:"distro"`
	Stamp    string         `json:"stamp"` // digest of the build's inputs
	Created  time.Time      `json:"created"`
	Manifest build.Manifest `json:"manifest"`
}

func builtPath(cacheDir, name, arch string) string {
	return filepath.Join(cacheDir, builtDir, name+"."+arch+".json")
}

// LoadBuilt is the boxes built into cacheDir, by name then arch; records
// that cannot be read are skipped.
func LoadBuilt(cacheDir string) []Built {
	paths, _ := filepath.Glob(filepath.Join(cacheDir, builtDir, "*.json"))
	var out []Built
	for _, p := range paths {
		var b Built
		data, err := os.ReadFile(p)
		if err != nil || json.Unmarshal(data, &b) != nil || !IsName(b.Name) {
			continue
		}
		if _, err := parseDigest(b.SHA256); err != nil || p != builtPath(cacheDir, b.Name, b.Arch) {
			continue
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Arch < out[j].Arch
	})
	return out
}

// FindBuilt is the record of name for arch, if one was built.
func FindBuilt(cacheDir, name, arch string) (Built, bool) {
	for _, b := range LoadBuilt(cacheDir) {
		if b.Name == name && b.Arch == arch {
			return b, true
		}
	}
	return Built{}, false
}

// AddBuilt moves the image a build wrote at path into cacheDir as
// <sha256>.img and records it as b.Name for b.Arch (replacing an earlier
// build of that name and arch; its image stays cached until pruned). It
// returns the record with SHA256 set. On failure nothing is added.
func AddBuilt(ctx context.Context, cacheDir, path string, b Built) (Built, error) {
	if !IsName(b.Name) {
		return Built{}, fmt.Errorf("box name %q: lower-case letters, digits, dots and dashes, starting with a letter", b.Name)
	}
	if err := checkSelfContained(path, b.Name); err != nil {
		return Built{}, err
	}
	sha, err := HashFile(ctx, path)
	if err != nil {
		return Built{}, err
	}
	b.SHA256 = sha
	img := filepath.Join(cacheDir, sha+".img")
	if err := os.Chmod(path, 0o644); err != nil {
		return Built{}, err
	}
	if err := os.Rename(path, img); err != nil {
		return Built{}, fmt.Errorf("box %s: put it in the cache: %w", b.Name, err)
	}
	data, err := json.MarshalIndent(b, "", "  ")
	if err == nil {
		err = writeFileAtomic(builtPath(cacheDir, b.Name, b.Arch), data)
	}
	if err != nil {
		return Built{}, fmt.Errorf("box %s: record it: %w", b.Name, err)
	}
	saveMeta(cacheDir, sha, "built "+b.Name)
	return b, nil
}

// WithBuilt is c with the boxes built into cacheDir added: a built box
// replaces the catalog's image of its name for its arch only.
func (c Catalog) WithBuilt(cacheDir string) Catalog {
	for _, b := range LoadBuilt(cacheDir) {
		e := c[b.Name]
		images := map[string]Image{}
		for arch, img := range e.Images {
			images[arch] = img
		}
		images[b.Arch] = Image{Digest: "sha256:" + b.SHA256, built: true}
		if e.Description == "" {
			e.Description = fmt.Sprintf("built here from %s (engine %s)", b.Distro, b.Manifest.Engine)
		}
		e.Images = images
		c[b.Name] = e
	}
	return c
}

// cachedBuilt is the cached image of a built box.
func cachedBuilt(dir, name, sha string) (Box, error) {
	b, err := cachedImage(dir, sha, name)
	if errors.Is(err, fs.ErrNotExist) {
		return Box{}, fmt.Errorf("box %q was built here but its image %s is no longer cached (hint: devbox box build it again)", name, sha[:16])
	}
	return b, err
}

// builtNames is the names ("NAME (ARCH)") of the built boxes, by the
// sha256 of their image.
func builtNames(cacheDir string) map[string][]string {
	names := map[string][]string{}
	for _, b := range LoadBuilt(cacheDir) {
		names[b.SHA256] = append(names[b.SHA256], b.Name+" ("+b.Arch+")")
	}
	return names
}

// removeBuilt removes the records naming sha.
func removeBuilt(cacheDir, sha string, rm func(string)) {
	for _, b := range LoadBuilt(cacheDir) {
		if strings.EqualFold(b.SHA256, sha) {
			rm(builtPath(cacheDir, b.Name, b.Arch))
		}
	}
}

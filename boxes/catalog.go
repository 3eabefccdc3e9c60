package boxes

import (
	"bytes"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

//go:embed catalog.yaml
var builtinCatalog []byte

// Image is one catalog entry's image for one guest arch.
type Image struct {
	URL    string `yaml:"url"`
	Digest string `yaml:"digest"` // sha256:HEX or sha512:HEX
	built  bool   // made by box build: cached under Digest, no URL
}

// Entry is a box known by name.
type Entry struct {
	Description string           `yaml:"description"`
	Images      map[string]Image `yaml:"images"` // by arch: x86_64, aarch64
}

// Catalog maps box names (debian-12) to their images.
type Catalog map[string]Entry

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9.]+)*$`)

// IsName reports whether a box value has the form of a catalog name
// rather than a path or URL: no slash, no scheme, no image file suffix.
func IsName(box string) bool {
	for _, ext := range []string{".qcow2", ".img", ".raw", ".box"} {
		if strings.HasSuffix(box, ext) {
			return false
		}
	}
	return nameRE.MatchString(box)
}

// LoadCatalog is the built-in catalog with the entries of userFile (if it
// exists) added; a user entry replaces a built-in one of the same name.
func LoadCatalog(userFile string) (Catalog, error) {
	c, err := parseCatalog(builtinCatalog, "built-in catalog")
	if err != nil {
		return nil, err
	}
	if userFile == "" {
		return c, nil
	}
	data, err := os.ReadFile(userFile)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("box catalog: %w", err)
	}
	user, err := parseCatalog(data, userFile)
	if err != nil {
		return nil, err
	}
	for name, e := range user {
		c[name] = e
	}
	return c, nil
}

func parseCatalog(data []byte, what string) (Catalog, error) {
	var c Catalog
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("box catalog %s: %w", what, err)
	}
	if c == nil {
		c = Catalog{}
	}
	for name, e := range c {
		if !IsName(name) {
			return nil, fmt.Errorf("box catalog %s: %q is not a box name (lower-case letters, digits, dots and dashes)", what, name)
		}
		if len(e.Images) == 0 {
			return nil, fmt.Errorf("box catalog %s: %s has no images", what, name)
		}
		for arch, img := range e.Images {
			if arch != "x86_64" && arch != "aarch64" {
				return nil, fmt.Errorf("box catalog %s: %s: arch %q is not x86_64 or aarch64", what, name, arch)
			}
			if u, err := url.Parse(img.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return nil, fmt.Errorf("box catalog %s: %s/%s: url %q is not an http(s) URL", what, name, arch, img.URL)
			}
			if _, err := parseWanted(img.Digest, name); err != nil {
				return nil, fmt.Errorf("box catalog %s: %s/%s: %w", what, name, arch, err)
			}
		}
	}
	return c, nil
}

// parseWanted reads a catalog digest: sha256:HEX or sha512:HEX.
func parseWanted(s, name string) (wanted, error) {
	alg, h, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), ":")
	size := map[string]int{"sha256": 32, "sha512": 64}[alg]
	if b, err := hex.DecodeString(h); !ok || size == 0 || err != nil || len(b) != size {
		return wanted{}, fmt.Errorf("digest %q: want sha256:HEX or sha512:HEX", s)
	}
	return wanted{alg: alg, hex: h, from: "the catalog's digest for " + name, name: name}, nil
}

// Names are the catalog's box names, sorted.
func (c Catalog) Names() []string {
	var names []string
	for n := range c {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup is name's image for arch.
func (c Catalog) Lookup(name, arch string) (Image, error) {
	e, ok := c[name]
	if !ok {
		return Image{}, fmt.Errorf("box %q: no such file, and not a box name devbox knows (known: %s; hint: a file path needs a slash, like ./%s)",
			name, strings.Join(c.Names(), ", "), name)
	}
	img, ok := e.Images[arch]
	if !ok {
		var arches []string
		for a := range e.Images {
			arches = append(arches, a)
		}
		sort.Strings(arches)
		return Image{}, fmt.Errorf("box %q has no %s image (it has: %s; hint: set arch in devbox.yaml)", name, arch, strings.Join(arches, ", "))
	}
	return img, nil
}

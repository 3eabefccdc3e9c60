package instance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/devbox-vm/devbox/boxes"
)

// Home is where devbox keeps state and cache. DEVBOX_HOME puts both under
// one folder; otherwise state goes to the XDG data dir and the cache to
// the XDG cache dir.
type Home struct {
	State string // instances/<name>/… (keys, logs)
	Cache string // boxes/…
}

// DefaultHome reads DEVBOX_HOME, else the XDG dirs.
func DefaultHome() (Home, error) {
	if h := os.Getenv("DEVBOX_HOME"); h != "" {
		abs, err := filepath.Abs(h)
		if err != nil {
			return Home{}, fmt.Errorf("DEVBOX_HOME %q: %w", h, err)
		}
		return Home{State: abs, Cache: filepath.Join(abs, "cache")}, nil
	}
	userHome, err := os.UserHomeDir()
	if err != nil {
		return Home{}, fmt.Errorf("find home folder: %w (hint: set DEVBOX_HOME)", err)
	}
	h := HomeOf(userHome)
	if data := os.Getenv("XDG_DATA_HOME"); data != "" {
		h.State = filepath.Join(data, "devbox")
	}
	if cache := os.Getenv("XDG_CACHE_HOME"); cache != "" {
		h.Cache = filepath.Join(cache, "devbox")
	}
	return h, nil
}

// HomeOf is the default devbox home of a user whose home folder is
// userHome (the XDG defaults, without the environment's overrides).
func HomeOf(userHome string) Home {
	return Home{State: filepath.Join(userHome, ".local", "share", "devbox"), Cache: filepath.Join(userHome, ".cache", "devbox")}
}

// InstanceDir is the folder of one instance's keys and logs.
func (h Home) InstanceDir(name string) string { return filepath.Join(h.Instances(), name) }

// Instances holds every instance's folder (and its lock file).
func (h Home) Instances() string { return filepath.Join(h.State, "instances") }

// CatalogFile is the user's box catalog, which adds to the built-in one.
func (h Home) CatalogFile() string { return filepath.Join(h.State, "boxes.yaml") }

// ResolveBox resolves a box source (see boxes.Resolve) into h's cache,
// with h's catalog and the boxes built here, for a guest of arch; progress
// gets download lines.
func (h Home) ResolveBox(ctx context.Context, source, sha256hex, arch string, progress io.Writer) (boxes.Box, error) {
	catalog, err := boxes.LoadCatalog(h.CatalogFile())
	if err != nil {
		return boxes.Box{}, err
	}
	return boxes.Resolve(ctx, source, sha256hex, boxes.Options{CacheDir: h.BoxCache(), Progress: progress, Catalog: catalog.WithBuilt(h.BoxCache()), Arch: arch})
}

// BoxCache is where downloaded boxes are kept.
func (h Home) BoxCache() string { return filepath.Join(h.Cache, "boxes") }

// DomainName is the libvirt name of an instance: unique per home, so two
// homes on one libvirt never touch each other's instances.
func (h Home) DomainName(name string) string {
	sum := sha256.Sum256([]byte(h.State))
	return fmt.Sprintf("devbox-%s-%s", name, hex.EncodeToString(sum[:])[:6])
}

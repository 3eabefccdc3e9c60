package boxes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/boxes/build"
)

// addBuilt builds nothing: it puts a fake image in the cache as a box
// build would, named name for arch.
func addBuilt(t *testing.T, cache, name, arch string, img []byte) Built {
	t.Helper()
	os.MkdirAll(cache, 0o755)
	dir, err := os.MkdirTemp(cache, ".build-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "box.qcow2")
	os.WriteFile(out, img, 0o600)
	b, err := AddBuilt(t.Context(), cache, out, Built{Name: name, Arch: arch, Distro: "debian-12", Stamp: "s1",
		Manifest: build.Manifest{Suite: "bookworm", Engine: "docker", Packages: []string{"docker.io 20.10 amd64"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBuiltBoxResolvesByName: a built box is box: NAME for its arch, with
// no download; the catalog's other arches stay; once its image is gone the
// error says to build it again.
func TestBuiltBoxResolvesByName(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "cache")
	b := addBuilt(t, cache, "debian-12", "x86_64", fakeQcow2())
	if _, err := os.Stat(filepath.Join(cache, b.SHA256+".img")); err != nil {
		t.Fatalf("image not cached under its sha256: %v", err)
	}
	cat, err := LoadCatalog("")
	if err != nil {
		t.Fatal(err)
	}
	cat = cat.WithBuilt(cache)
	// No Client: a download would fail.
	got, err := Resolve(t.Context(), "debian-12", "", Options{CacheDir: cache, Catalog: cat, Arch: "x86_64"})
	if err != nil || got.SHA256 != b.SHA256 || got.Format != "qcow2" {
		t.Fatalf("Resolve(debian-12) = %+v, %v; want the built box %s", got, err, b.SHA256)
	}
	if img, _ := cat.Lookup("debian-12", "aarch64"); !strings.HasPrefix(img.URL, "https://") {
		t.Errorf("the catalog's aarch64 image was replaced: %+v", img)
	}
	if _, err := cat.Lookup("debian-12-docker", "x86_64"); err == nil {
		t.Error("an unbuilt name resolved")
	}
	list, err := List(cache)
	if err != nil || len(list) != 1 || strings.Join(list[0].Names, ",") != "debian-12 (x86_64)" || list[0].Source != "built debian-12" {
		t.Errorf("List = %+v, %v", list, err)
	}
	os.Remove(filepath.Join(cache, b.SHA256+".img"))
	_, err = Resolve(t.Context(), "debian-12", "", Options{CacheDir: cache, Catalog: cat, Arch: "x86_64"})
	if err == nil || !strings.Contains(err.Error(), "box build it again") {
		t.Errorf("built box with its image gone: %v", err)
	}
}

// TestAddBuiltRefuses: a bad name or an image with a backing file is not
// added, and nothing is left in the cache.
func TestAddBuiltRefuses(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "cache")
	os.MkdirAll(cache, 0o755)
	out := filepath.Join(t.TempDir(), "box.qcow2")
	os.WriteFile(out, fakeQcow2(), 0o600)
	if _, err := AddBuilt(t.Context(), cache, out, Built{Name: "Bad/Name", Arch: "x86_64"}); err == nil {
		t.Error("a bad name was accepted")
	}
	os.WriteFile(out, qcow2Header(3, "/etc/shadow", 0), 0o600)
	if _, err := AddBuilt(t.Context(), cache, out, Built{Name: "ok", Arch: "x86_64"}); err == nil {
		t.Error("an image with a backing file was accepted")
	}
	if left := listDir(t, cache); len(left) != 0 {
		t.Errorf("left in the cache: %v", left)
	}
}

// TestRemoveDropsBuiltName: removing the image removes its name.
func TestRemoveDropsBuiltName(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "cache")
	b := addBuilt(t, cache, "mine", "aarch64", fakeQcow2())
	if got := LoadBuilt(cache); len(got) != 1 || got[0].Manifest.Engine != "docker" {
		t.Fatalf("LoadBuilt = %+v", got)
	}
	if err := Remove(cache, b.SHA256); err != nil {
		t.Fatal(err)
	}
	if got := LoadBuilt(cache); len(got) != 0 {
		t.Errorf("the name outlived its image: %+v", got)
	}
}

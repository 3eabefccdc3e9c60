package boxes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRemoveClearsEveryRecord: a removed box leaves no image, label,
// sha512 alias or import record that would point at it.
func TestRemoveClearsEveryRecord(t *testing.T) {
	body := fakeQcow2()
	srv := newServer(t, serveBytes(body))
	cat, err := LoadCatalog(userCatalog(t, srv.URL+"/box.img", "sha512:"+sha512hex(body)))
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "cache")
	opts := Options{CacheDir: cache, Client: srv.Client(), Catalog: cat, Arch: "x86_64"}
	if _, err := Resolve(t.Context(), "testbox", "", opts); err != nil {
		t.Fatal(err)
	}
	other := fakeQcow2()
	other[600] ^= 0xff
	if _, err := Resolve(t.Context(), vagrantBox(t, false, vagrantMetaEntry("libvirt"), tarEntry{name: "box.img", body: other}), "", opts); err != nil {
		t.Fatal(err)
	}
	c, err := List(cache)
	if err != nil || len(c) != 2 || !strings.HasPrefix(c[0].Source, "testbox (") || !strings.HasSuffix(c[1].Source, "test.box") {
		t.Fatalf("List = %+v, %v", c, err)
	}
	for _, b := range c {
		if err := Remove(cache, b.SHA256); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range listDir(t, cache) {
		if fi, err := os.Stat(filepath.Join(cache, n)); err != nil || !fi.IsDir() { // folders may stay; no file may
			t.Errorf("left in the cache: %s", n)
		}
	}
	if c, _ := List(cache); len(c) != 0 {
		t.Errorf("List after Remove = %+v", c)
	}
}

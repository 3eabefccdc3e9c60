package boxes

import (
	"crypto/sha512"
	"encoding/hex"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestBuiltinCatalog(t *testing.T) {
	c, err := LoadCatalog("")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Names(); !slices.Equal(got, []string{"debian-12", "debian-13", "ubuntu-24.04"}) {
		t.Errorf("names = %q", got)
	}
	for _, name := range c.Names() {
		for _, arch := range []string{"x86_64", "aarch64"} {
			img, err := c.Lookup(name, arch)
			if err != nil || !strings.HasPrefix(img.URL, "https://") {
				t.Errorf("%s/%s: %+v, %v", name, arch, img, err)
			}
		}
	}
}

func TestIsName(t *testing.T) {
	for box, want := range map[string]bool{
		"debian-12": true, "ubuntu-24.04": true, "mybox": true,
		"debian12.qcow2": false, "box.img": false, "foo.box": false, "./debian-12": false,
		"/abs/debian-12": false, "Debian-12": false, "https://x/debian-12": false, "": false, "-x": false,
	} {
		if IsName(box) != want {
			t.Errorf("IsName(%q) = %v", box, !want)
		}
	}
}

func sha512hex(b []byte) string {
	h := sha512.Sum512(b)
	return hex.EncodeToString(h[:])
}

// userCatalog writes a user catalog naming testbox's x86_64 image.
func userCatalog(t *testing.T, url, digest string) string {
	t.Helper()
	return write(t, t.TempDir(), "boxes.yaml", []byte("testbox:\n  description: a test\n  images:\n    x86_64:\n      url: "+url+"\n      digest: "+digest+"\n"))
}

// TestResolveName: a catalog name downloads its arch's image, checked
// against the catalog's sha512, cached under its sha256 and found again
// without the network.
func TestResolveName(t *testing.T) {
	body := fakeQcow2()
	srv := newServer(t, serveBytes(body))
	cat, err := LoadCatalog(userCatalog(t, srv.URL+"/box.img", "sha512:"+sha512hex(body)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cat["debian-12"]; !ok {
		t.Error("a user catalog replaced the built-in one instead of adding to it")
	}
	cache := filepath.Join(t.TempDir(), "cache")
	opts := Options{CacheDir: cache, Client: srv.Client(), Catalog: cat, Arch: "x86_64"}
	want := Box{Path: filepath.Join(cache, sum(body)+".img"), SHA256: sum(body), Format: "qcow2", Size: int64(len(body))}
	got, err := Resolve(t.Context(), "testbox", "", opts)
	if err != nil || got != want {
		t.Fatalf("Resolve(testbox) = %+v, %v; want %+v", got, err, want)
	}
	opts.Client = &http.Client{Transport: failTransport{t}}
	if got, err := Resolve(t.Context(), "testbox", "", opts); err != nil || got != want {
		t.Errorf("cached Resolve(testbox) = %+v, %v", got, err)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}

	for _, tc := range []struct {
		name, arch, sha string
		parts           []string
	}{
		{"debian-11", "x86_64", "", []string{`box "debian-11"`, "known: debian-12, debian-13, testbox, ubuntu-24.04", "./debian-11"}},
		{"testbox", "aarch64", "", []string{`box "testbox" has no aarch64 image`, "it has: x86_64"}},
		{"testbox", "x86_64", sum(body), []string{"box_sha256: is for a file or URL box", "remove box_sha256"}},
	} {
		opts.Arch = tc.arch
		_, err := Resolve(t.Context(), tc.name, tc.sha, opts)
		assertContains(t, err, tc.parts...)
	}
}

func TestResolveNameMismatchCachesNothing(t *testing.T) {
	body := fakeQcow2()
	srv := newServer(t, serveBytes(body))
	other := sha512hex([]byte("another image"))
	cat, err := LoadCatalog(userCatalog(t, srv.URL+"/box.img", "sha512:"+other))
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "cache")
	_, err = Resolve(t.Context(), "testbox", "", Options{CacheDir: cache, Client: srv.Client(), Catalog: cat, Arch: "x86_64"})
	assertContains(t, err, "sha512 mismatch", sha512hex(body), "the catalog's digest for testbox is "+other)
	if names := listDir(t, cache); len(names) != 0 {
		t.Errorf("cache holds %q after a mismatch", names)
	}
}

func TestUserCatalogErrors(t *testing.T) {
	ok := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct{ yaml, want string }{
		{"x:\n  images:\n    x86_64: {url: https://h/x.img, digest: " + ok + "}\n  extra: 1\n", "field extra not found"},
		{"x:\n  images:\n    riscv64: {url: https://h/x.img, digest: " + ok + "}\n", `arch "riscv64"`},
		{"x:\n  images:\n    x86_64: {url: ftp://h/x.img, digest: " + ok + "}\n", "not an http(s) URL"},
		{"x:\n  images:\n    x86_64: {url: https://h/x.img, digest: md5:abc}\n", "want sha256:HEX or sha512:HEX"},
		{"x:\n  images:\n    x86_64: {url: https://h/x.img, digest: sha512:" + strings.Repeat("ab", 32) + "}\n", "want sha256:HEX or sha512:HEX"},
		{"My_Box:\n  images:\n    x86_64: {url: https://h/x.img, digest: " + ok + "}\n", "is not a box name"},
		{"x:\n  description: no images\n", "has no images"},
	} {
		f := write(t, t.TempDir(), "boxes.yaml", []byte(tc.yaml))
		_, err := LoadCatalog(f)
		assertContains(t, err, f, tc.want)
	}
	if _, err := LoadCatalog(filepath.Join(t.TempDir(), "absent.yaml")); err != nil {
		t.Errorf("an absent user catalog: %v", err)
	}
}

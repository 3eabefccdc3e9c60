package boxes

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestResolveRefusesQcow2 checks that a qcow2 box naming a file outside
// itself, or with a header that cannot be judged, is refused whether it is
// local, downloaded, or already in the cache, and that a refused download
// leaves nothing in the cache.
func TestResolveRefusesQcow2(t *testing.T) {
	// Only a name in a header: nothing opens it.
	secret := filepath.Join(t.TempDir(), "host-secret")
	garbled := qcow2Header(3, "", 0)
	garbled[23] = 40 // cluster bits
	tests := []struct {
		name  string
		data  []byte
		parts []string
	}{
		{"backing file", qcow2Header(3, secret, 0), []string{`names a backing file "` + secret + `"`, "self-contained", "hint: qemu-img convert -O qcow2"}},
		{"v2 backing file", qcow2Header(2, secret, 0), []string{`names a backing file "` + secret + `"`}},
		{"external data file", qcow2Header(3, "", 1<<2), []string{"external data file", "self-contained"}},
		{"version 4", qcow2Header(4, "", 0), []string{"unsupported qcow2 image: version 4", "hint"}},
		{"version 1", qcow2Header(1, secret, 0), []string{"version 1"}},
		{"garbled", garbled, []string{"malformed qcow2 header", "cluster bits 40"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := write(t, t.TempDir(), "evil.qcow2", tt.data)
			check := func(err error, what string) {
				t.Helper()
				assertContains(t, err, append([]string{`box "` + what + `": refused: `}, tt.parts...)...)
				if !errors.Is(err, ErrRefused) {
					t.Errorf("error %v does not wrap ErrRefused", err)
				}
			}

			_, err := Resolve(t.Context(), p, "", Options{CacheDir: t.TempDir()})
			check(err, p)

			srv := newServer(t, serveBytes(tt.data))
			cache := t.TempDir()
			url := srv.URL + "/box.img"
			_, err = Resolve(t.Context(), url, sum(tt.data), Options{CacheDir: cache, Client: srv.Client()})
			check(err, url)
			if names := listDir(t, cache); len(names) != 0 {
				t.Errorf("refused download left %q in the cache", names)
			}

			// Cached by a devbox that did not check headers yet.
			write(t, cache, sum(tt.data)+".img", tt.data)
			_, err = Resolve(t.Context(), url, sum(tt.data), Options{CacheDir: cache, Client: &http.Client{Transport: failTransport{t}}})
			check(err, url)
		})
	}
}

// TestResolveQemuImgBoxes runs the check on images written by qemu-img.
func TestResolveQemuImgBoxes(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed")
	}
	dir := t.TempDir()
	// A harmless file stands in for the host's /etc/shadow.
	secret := write(t, dir, "shadow", []byte("root:not-a-real-hash:19000::::::\n"))
	create := func(name string, args ...string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		args = append(append([]string{"create", "-f", "qcow2"}, args...), p, "64M")
		if out, err := exec.Command(qemuImg, args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return p
	}
	ok := create("ok.qcow2")
	evil := create("evil.qcow2", "-b", secret, "-F", "raw")
	data := create("data.qcow2", "-o", "data_file="+filepath.Join(dir, "data.raw")+",data_file_raw=on")

	if b, err := Resolve(t.Context(), ok, "", Options{}); err != nil || b.Format != "qcow2" {
		t.Errorf("clean qcow2: %+v, %v", b, err)
	}
	_, err = Resolve(t.Context(), evil, "", Options{})
	want := `box "` + evil + `": refused: its qcow2 header names a backing file "` + secret + `"; a box must be self-contained (hint: qemu-img convert -O qcow2 it into a standalone image)`
	if err == nil || err.Error() != want {
		t.Errorf("backing file:\n got %v\nwant %s", err, want)
	}
	_, err = Resolve(t.Context(), data, "", Options{})
	assertContains(t, err, data, "refused", `names an external data file "`+filepath.Join(dir, "data.raw")+`"`)

	body, err := os.ReadFile(evil)
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, serveBytes(body))
	cache := t.TempDir()
	_, err = Resolve(t.Context(), srv.URL+"/box.img", sum(body), Options{CacheDir: cache, Client: srv.Client()})
	assertContains(t, err, "refused", secret)
	if names := listDir(t, cache); len(names) != 0 {
		t.Errorf("refused download left %q in the cache", names)
	}
}

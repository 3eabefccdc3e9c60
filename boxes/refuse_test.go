package boxes

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
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

// lockFile opens path and holds an exclusive flock on it, as a live
// download does, until the test ends.
func lockFile(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
}

// TestDownloadSweepsStaleTemps: a temporary download nobody holds (its
// devbox was killed) is removed by the next download; one held by a live
// download is not, nor are other files.
func TestDownloadSweepsStaleTemps(t *testing.T) {
	cache := t.TempDir()
	stale := write(t, cache, ".download-111.tmp", []byte("cut short"))
	live := write(t, cache, ".download-222.tmp", []byte("in progress"))
	other := write(t, cache, "notes.tmp", []byte("not ours"))
	lockFile(t, live)

	body := fakeQcow2()
	srv := newServer(t, serveBytes(body))
	if _, err := Resolve(t.Context(), srv.URL+"/box.img", sum(body), Options{CacheDir: cache, Client: srv.Client()}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file: %v, want it removed", err)
	}
	for _, p := range []string{live, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v, want it kept", filepath.Base(p), err)
		}
	}
}

// TestConcurrentDownloads: a download into the cache does not sweep the
// temporary file of another one still in progress.
func TestConcurrentDownloads(t *testing.T) {
	cache := t.TempDir()
	slow := fakeQcow2()
	slow[len(slow)-1] = 'S'
	release := make(chan struct{})
	srvSlow := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(slow)))
		w.Write(slow[:1024])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Write(slow[1024:])
	})
	started := &signalWriter{ch: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		_, err := Resolve(t.Context(), srvSlow.URL+"/box.img", sum(slow), Options{CacheDir: cache, Client: srvSlow.Client(), Progress: started})
		errc <- err
	}()
	select {
	case <-started.ch: // its temp file exists and is locked
	case err := <-errc:
		t.Fatalf("slow download returned before it started: %v", err)
	}

	fast := fakeQcow2()
	srvFast := newServer(t, serveBytes(fast))
	if _, err := Resolve(t.Context(), srvFast.URL+"/box.img", sum(fast), Options{CacheDir: cache, Client: srvFast.Client()}); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatalf("slow download: %v", err)
	}
	for _, b := range [][]byte{slow, fast} {
		if _, err := os.Stat(filepath.Join(cache, sum(b)+".img")); err != nil {
			t.Error(err)
		}
	}
}

// TestCreateTempLocks: createTemp's lock keeps its file from being swept
// until the file is closed.
func TestCreateTempLocks(t *testing.T) {
	dir := t.TempDir()
	f, err := createTemp(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sweepTemps(dir)
	if _, err := os.Stat(f.Name()); err != nil {
		t.Errorf("sweep removed a locked temp file: %v", err)
	}
	f.Close() // the download died
	sweepTemps(dir)
	if names := listDir(t, dir); len(names) != 0 {
		t.Errorf("after sweep: %q, want nothing", names)
	}
}

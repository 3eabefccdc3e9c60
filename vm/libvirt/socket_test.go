package libvirt

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// fakeHost is a host with the given OS, CPU, user and environment; it
// searches no sbin folder, so that nothing installed here is found.
func fakeHost(goos, goarch string, uid int, env map[string]string) host {
	return host{
		goos:   goos,
		goarch: goarch,
		uid:    uid,
		getenv: func(k string) string { return env[k] },
		environ: func() []string {
			var kv []string
			for k, v := range env {
				kv = append(kv, k+"="+v)
			}
			return kv
		},
		home:         func() (string, error) { return env["HOME"], nil },
		startTimeout: 5 * time.Second,
	}
}

func TestSocketCandidates(t *testing.T) {
	both := func(dir string) []string {
		return []string{filepath.Join(dir, "virtqemud-sock"), filepath.Join(dir, "libvirt-sock")}
	}
	cat := func(a ...[]string) (out []string) {
		for _, x := range a {
			out = append(out, x...)
		}
		return out
	}
	for _, tc := range []struct {
		name, goos, goarch, uri string
		env                     map[string]string
		want                    []string
	}{
		{"linux session, runtime dir", "linux", "amd64", "qemu:///session",
			map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000", "XDG_CACHE_HOME": "/c", "HOME": "/home/u"},
			both("/run/user/1000/libvirt")},
		{"linux session, unix transport", "linux", "amd64", "qemu+unix:///session",
			map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000", "HOME": "/home/u"},
			both("/run/user/1000/libvirt")},
		{"linux session, no runtime dir: XDG cache", "linux", "amd64", "qemu:///session",
			map[string]string{"XDG_CACHE_HOME": "/c", "HOME": "/home/u"},
			both("/c/libvirt")},
		{"linux session, no XDG at all: ~/.cache", "linux", "amd64", "qemu:///session",
			map[string]string{"HOME": "/home/u"},
			both("/home/u/.cache/libvirt")},
		{"macOS session: ~/.cache, as Homebrew's libvirt", "darwin", "arm64", "qemu:///session",
			map[string]string{"HOME": "/Users/u", "HOMEBREW_PREFIX": "/opt/homebrew"},
			both("/Users/u/.cache/libvirt")},
		{"macOS session, XDG cache set", "darwin", "arm64", "qemu:///session",
			map[string]string{"HOME": "/Users/u", "XDG_CACHE_HOME": "/Users/u/c"},
			both("/Users/u/c/libvirt")},
		{"linux system", "linux", "amd64", "qemu:///system",
			map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000", "HOME": "/home/u"},
			both("/var/run/libvirt")},
		{"linux system, arm64", "linux", "arm64", "qemu:///system", nil,
			both("/var/run/libvirt")},
		{"macOS arm64 system: /opt/homebrew first", "darwin", "arm64", "qemu:///system", nil,
			cat(both("/opt/homebrew/var/run/libvirt"), both("/usr/local/var/run/libvirt"))},
		{"macOS amd64 system: /usr/local first", "darwin", "amd64", "qemu:///system", nil,
			cat(both("/usr/local/var/run/libvirt"), both("/opt/homebrew/var/run/libvirt"))},
		{"macOS amd64 system, HOMEBREW_PREFIX /opt/homebrew", "darwin", "amd64", "qemu:///system",
			map[string]string{"HOMEBREW_PREFIX": "/opt/homebrew"},
			cat(both("/opt/homebrew/var/run/libvirt"), both("/usr/local/var/run/libvirt"))},
		{"macOS system, other HOMEBREW_PREFIX", "darwin", "arm64", "qemu:///system",
			map[string]string{"HOMEBREW_PREFIX": "/opt/brew"},
			cat(both("/opt/brew/var/run/libvirt"), both("/opt/homebrew/var/run/libvirt"), both("/usr/local/var/run/libvirt"))},
		{"?socket= wins for session", "linux", "amd64", "qemu:///session?socket=/x/y.sock",
			map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"},
			[]string{"/x/y.sock"}},
		{"?socket= wins for system on macOS", "darwin", "arm64", "qemu:///system?socket=/x/y.sock", nil,
			[]string{"/x/y.sock"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.Parse(tc.uri)
			if err != nil {
				t.Fatal(err)
			}
			got := fakeHost(tc.goos, tc.goarch, 1000, tc.env).socketCandidates(u)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("candidates\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestSbinDirs(t *testing.T) {
	for _, tc := range []struct {
		goos, goarch string
		env          map[string]string
		want         []string
	}{
		{"linux", "amd64", nil, []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}},
		{"darwin", "arm64", nil, []string{"/opt/homebrew/sbin", "/usr/local/sbin", "/usr/sbin", "/sbin"}},
		{"darwin", "amd64", nil, []string{"/usr/local/sbin", "/opt/homebrew/sbin", "/usr/sbin", "/sbin"}},
		{"darwin", "arm64", map[string]string{"HOMEBREW_PREFIX": "/opt/brew"},
			[]string{"/opt/brew/sbin", "/opt/homebrew/sbin", "/usr/local/sbin", "/usr/sbin", "/sbin"}},
	} {
		if got := fakeHost(tc.goos, tc.goarch, 1000, tc.env).sbinDirs(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s/%s %v: sbin %q, want %q", tc.goos, tc.goarch, tc.env, got, tc.want)
		}
	}
}

// listen serves a unix socket at path until the test ends.
func listen(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// stale leaves a socket file at path that nobody listens on.
func stale(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
}

func TestPickSocket(t *testing.T) {
	session, _ := url.Parse("qemu:///session")
	system, _ := url.Parse("qemu:///system")
	for _, tc := range []struct {
		name   string
		goos   string
		uri    *url.URL
		setup  func(t *testing.T, run, brew string)
		want   string // relative to the runtime dir's libvirt, or to brew
		inBrew bool
	}{
		{"nothing: libvirtd's socket", "linux", session, func(*testing.T, string, string) {}, "libvirt-sock", false},
		{"listening libvirtd beats a stale virtqemud socket", "linux", session, func(t *testing.T, run, _ string) {
			stale(t, filepath.Join(run, "virtqemud-sock"))
			listen(t, filepath.Join(run, "libvirt-sock"))
		}, "libvirt-sock", false},
		{"both listen: virtqemud", "linux", session, func(t *testing.T, run, _ string) {
			listen(t, filepath.Join(run, "virtqemud-sock"))
			listen(t, filepath.Join(run, "libvirt-sock"))
		}, "virtqemud-sock", false},
		{"only a stale one: that one, so the dial says why", "linux", session, func(t *testing.T, run, _ string) {
			stale(t, filepath.Join(run, "virtqemud-sock"))
		}, "virtqemud-sock", false},
		{"macOS system under HOMEBREW_PREFIX", "darwin", system, func(t *testing.T, _, brew string) {
			listen(t, filepath.Join(brew, "var/run/libvirt/libvirt-sock"))
		}, "var/run/libvirt/libvirt-sock", true},
		{"macOS system, modular daemon under HOMEBREW_PREFIX", "darwin", system, func(t *testing.T, _, brew string) {
			listen(t, filepath.Join(brew, "var/run/libvirt/virtqemud-sock"))
		}, "var/run/libvirt/virtqemud-sock", true},
		{"macOS system, nothing: libvirtd's socket in HOMEBREW_PREFIX", "darwin", system, func(*testing.T, string, string) {},
			"var/run/libvirt/libvirt-sock", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := shortTempDir(t)
			brew := filepath.Join(dir, "brew")
			h := fakeHost(tc.goos, "arm64", 1000, map[string]string{
				"XDG_RUNTIME_DIR": filepath.Join(dir, "run"), "HOME": filepath.Join(dir, "home"), "HOMEBREW_PREFIX": brew,
			})
			tc.setup(t, filepath.Join(dir, "run", "libvirt"), brew)
			want := filepath.Join(dir, "run", "libvirt", tc.want)
			if tc.inBrew {
				want = filepath.Join(brew, tc.want)
			}
			if got := h.pickSocket(tc.uri); got != want {
				t.Errorf("socket %s, want %s", got, want)
			}
		})
	}
}

// shortTempDir is a temporary folder with a short path: unix socket paths
// must stay under 104 bytes.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lvt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestAutostartOnlyForOwnSessionHere(t *testing.T) {
	for _, tc := range []struct {
		uri  string
		uid  int
		env  map[string]string
		want bool
	}{
		{"qemu:///session", 1000, nil, true},
		{"qemu+unix:///session", 1000, nil, true},
		{"qemu:///session", 1000, map[string]string{"LIBVIRT_AUTOSTART": "1"}, true},
		{"qemu:///session", 1000, map[string]string{"LIBVIRT_AUTOSTART": "0"}, false},
		{"qemu:///session", 0, nil, false}, // root's session is the system daemon
		{"qemu:///session?socket=/x/y.sock", 1000, nil, false},
		{"qemu:///system", 1000, nil, false},
		{"qemu+ssh://buildhost/session", 1000, nil, false},
		{"qemu+ssh://buildhost/system", 1000, nil, false},
		{"qemu://buildhost/session", 1000, nil, false},
		{"qemu+tcp://127.0.0.1/session", 1000, nil, false},
	} {
		u, _ := url.Parse(tc.uri)
		if got := fakeHost("linux", "amd64", tc.uid, tc.env).autostart(u); got != tc.want {
			t.Errorf("%s uid %d %v: autostart %v, want %v", tc.uri, tc.uid, tc.env, got, tc.want)
		}
	}
}

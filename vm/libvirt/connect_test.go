package libvirt

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/devbox-vm/devbox/vm"
)

func TestConnectErrorsHaveHints(t *testing.T) {
	dir := t.TempDir()
	// A socket file nobody listens on: connection refused.
	refused := filepath.Join(dir, "refused.sock")
	l, err := net.Listen("unix", refused)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	for _, tc := range []struct{ uri, want string }{
		{"qemu:///system?socket=" + filepath.Join(dir, "absent.sock"), "hint: start the libvirt daemon"},
		{"qemu:///system?socket=" + refused, "hint: start the libvirt daemon"},
	} {
		_, err := Connect(context.Background(), tc.uri)
		if !errors.Is(err, vm.ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.uri, err)
		}
	}
	for _, uri := range []string{"xen:///system", "not a uri"} {
		if _, err := Connect(context.Background(), uri); err == nil || !strings.Contains(err.Error(), "libvirt_uri") {
			t.Errorf("%s: %v", uri, err)
		}
	}
}

func TestConnectErrorHintsFitTheURI(t *testing.T) {
	dialErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", errno)}
	}
	const sessLog = "/home/u/.cache/libvirt/virtqemud.log"
	for _, tc := range []struct {
		name  string
		t     target
		errno syscall.Errno
		want  string
	}{
		{"linux system, not running", target{goos: "linux"}, syscall.ENOENT,
			"start the libvirt daemon: `sudo systemctl start libvirtd`, or without systemd `sudo virtlogd -d && sudo libvirtd -d`"},
		{"linux system, stale socket", target{goos: "linux"}, syscall.ECONNREFUSED, "`sudo systemctl start libvirtd`"},
		{"macOS system, not running", target{goos: "darwin"}, syscall.ENOENT, "`sudo brew services start libvirt`"},
		{"linux session, devbox tried", target{goos: "linux", session: true, uid: 1000, autostart: true, log: sessLog}, syscall.ENOENT,
			"devbox tried to start it, but it stopped listening: see its log " + sessLog},
		{"macOS session, devbox tried", target{goos: "darwin", session: true, uid: 501, autostart: true, log: sessLog}, syscall.ECONNREFUSED,
			"devbox tried to start it: see its log " + sessLog + "; or keep one running: `brew services start libvirt`"},
		{"linux session, no autostart", target{goos: "linux", session: true, uid: 1000}, syscall.ENOENT,
			"start your own libvirt daemon, as you (not root): `virtqemud --timeout=120 &` or `libvirtd -d`"},
		{"macOS session, no autostart", target{goos: "darwin", session: true, uid: 501}, syscall.ENOENT,
			"start Homebrew's libvirt as yourself: `brew services start libvirt`"},
		{"root's session", target{goos: "linux", session: true, uid: 0}, syscall.ENOENT, "use libvirt_uri: qemu:///system"},
		{"linux system, not allowed", target{goos: "linux"}, syscall.EACCES, "`sudo usermod -aG libvirt $USER`"},
		{"macOS system, not allowed", target{goos: "darwin"}, syscall.EACCES, "lets only root in: use libvirt_uri: qemu:///session"},
		{"session, not allowed", target{goos: "linux", session: true, uid: 1000, autostart: true}, syscall.EACCES, "XDG_RUNTIME_DIR is your own"},
		{"something else", target{goos: "linux"}, syscall.EPROTO, "check that the libvirt daemon runs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.t.uri, tc.t.sock = "qemu:///x", "/some/libvirt-sock"
			err := tc.t.connectError(dialErr(tc.errno))
			_, hint, _ := strings.Cut(err.Error(), "(hint: ")
			if !errors.Is(err, vm.ErrUnavailable) || !strings.Contains(hint, tc.want) ||
				!strings.Contains(err.Error(), "qemu:///x") || !strings.Contains(err.Error(), "socket /some/libvirt-sock") {
				t.Errorf("error %v\nwant hint %s", err, tc.want)
			}
		})
	}
	remote := target{uri: "qemu+ssh://buildhost/system", goos: "darwin"}
	if err := remote.connectError(dialErr(syscall.ECONNREFUSED)); !strings.Contains(err.Error(), "check that libvirtd runs there") {
		t.Errorf("remote: %v", err)
	}
}

func TestConnectStartsTheSessionDaemon(t *testing.T) {
	h, dir, record := fakeSession(t, "linux", "serve", "virtqemud", "libvirtd")
	sock := filepath.Join(dir, "run", "libvirt", "virtqemud-sock")
	for range 2 {
		// The fake speaks no RPC: the connection fails, on its socket.
		_, err := connect(context.Background(), "qemu:///session", h)
		if err == nil || !strings.Contains(err.Error(), "socket "+sock+":") {
			t.Errorf("connect: %v", err)
		}
	}
	if starts := record(); len(starts) != 1 {
		t.Errorf("started %d times: %+v", len(starts), starts)
	}
}

func TestConnectStartsTheSessionDaemonOverAStaleSocket(t *testing.T) {
	h, dir, record := fakeSession(t, "linux", "serve", "virtqemud")
	// libvirtd ran once and left its socket behind.
	stale(t, filepath.Join(dir, "run", "libvirt", "libvirt-sock"))
	_, err := connect(context.Background(), "qemu:///session", h)
	if sock := filepath.Join(dir, "run", "libvirt", "virtqemud-sock"); err == nil || !strings.Contains(err.Error(), "socket "+sock+":") {
		t.Errorf("connect: %v", err)
	}
	if starts := record(); len(starts) != 1 {
		t.Errorf("started %d times: %+v", len(starts), starts)
	}
}

func TestConnectStartsNothingForSystemOrRemote(t *testing.T) {
	for _, tc := range []struct {
		name, goos, uri string
		uid             int
		env             map[string]string
		want            string
	}{
		{"linux system", "linux", "qemu:///system?socket=%s/absent", 1000, nil, "`sudo systemctl start libvirtd`"},
		{"macOS system", "darwin", "qemu:///system", 501, map[string]string{"HOMEBREW_PREFIX": "%s/brew"},
			"socket %s/brew/var/run/libvirt/libvirt-sock: "},
		{"remote session", "linux", "qemu+tcp://127.0.0.1:1/session", 1000, nil, "check that libvirtd runs there"},
		{"session on a given socket", "linux", "qemu:///session?socket=%s/absent", 1000, nil, "`libvirtd -d`"},
		{"root's session", "linux", "qemu:///session", 0, nil, "use libvirt_uri: qemu:///system"},
		{"linux session, LIBVIRT_AUTOSTART=0", "linux", "qemu:///session", 1000, map[string]string{"LIBVIRT_AUTOSTART": "0"},
			"`libvirtd -d`"},
		{"macOS session, LIBVIRT_AUTOSTART=0", "darwin", "qemu:///session", 501, map[string]string{"LIBVIRT_AUTOSTART": "0"},
			"`brew services start libvirt`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, dir, record := fakeSession(t, tc.goos, "serve", "virtqemud", "libvirtd")
			h.uid = tc.uid
			env := map[string]string{}
			for _, kv := range h.environ() {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
			for k, v := range tc.env {
				env[k] = strings.ReplaceAll(v, "%s", dir)
			}
			h.getenv = func(k string) string { return env[k] }
			_, err := connect(context.Background(), strings.ReplaceAll(tc.uri, "%s", dir), h)
			if want := strings.ReplaceAll(tc.want, "%s", dir); !errors.Is(err, vm.ErrUnavailable) || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v\nwant %s", err, want)
			}
			if starts := record(); len(starts) != 0 {
				t.Errorf("started a daemon: %+v", starts)
			}
		})
	}
}

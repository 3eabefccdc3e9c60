package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/devbox-vm/devbox/vm"
)

// TestMain lets the test binary play a libvirt daemon: started through a
// link named virtqemud or libvirtd, it is one.
func TestMain(m *testing.M) {
	switch filepath.Base(os.Args[0]) {
	case "virtqemud", "libvirtd":
		os.Exit(fakeDaemon())
	case "lockholder":
		os.Exit(lockHolder(os.Args[1]))
	}
	os.Exit(m.Run())
}

// fakeDaemon records its pid, session and arguments in
// $FAKE_DAEMON_RECORD, then as $FAKE_DAEMON_MODE says: "serve" listens
// on its session socket after a short delay, "fail" exits 1 at once,
// "hang" never listens. It quits on SIGTERM, or after 30 s in any case.
func fakeDaemon() int {
	name := filepath.Base(os.Args[0])
	sid, _ := unix.Getsid(0)
	f, err := os.OpenFile(os.Getenv("FAKE_DAEMON_RECORD"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 2
	}
	fmt.Fprintf(f, "%d %d %s %s\n", os.Getpid(), sid, name, strings.Join(os.Args[1:], " "))
	f.Close()
	quit := make(chan os.Signal, 1)
	signal.Notify(quit, syscall.SIGTERM)
	switch os.Getenv("FAKE_DAEMON_MODE") {
	case "fail":
		fmt.Fprintln(os.Stderr, "fake daemon: cannot initialize")
		return 1
	case "serve":
		// Not at once: the caller must wait for the socket.
		time.Sleep(200 * time.Millisecond)
		sock := "libvirt-sock"
		if name == "virtqemud" {
			sock = "virtqemud-sock"
		}
		l, err := net.Listen("unix", filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "libvirt", sock))
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake daemon:", err)
			return 1
		}
		defer l.Close()
		fmt.Fprintln(os.Stderr, "fake daemon: listening")
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
	select {
	case <-quit:
	case <-time.After(30 * time.Second):
	}
	return 0
}

// lockHolder takes a POSIX write lock on path's first byte, as libvirt's
// clients do, says "locked", and holds it until killed (30 s at most).
func lockHolder(path string) int {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return 2
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: 0, Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLKW, &lk); err != nil {
		return 2
	}
	fmt.Println("locked")
	time.Sleep(30 * time.Second)
	return 0
}

// started is one start of the fake daemon.
type started struct {
	pid, sid int
	name     string
	args     string
}

// fakeSession is a host (not root) whose PATH holds fake daemons by the
// given names, in mode; record lists their starts.
func fakeSession(t *testing.T, goos, mode string, daemons ...string) (h host, dir string, record func() []started) {
	t.Helper()
	dir = shortTempDir(t)
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{bin, filepath.Join(dir, "run"), filepath.Join(dir, "home")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range daemons {
		if err := os.Symlink(self, filepath.Join(bin, d)); err != nil {
			t.Fatal(err)
		}
	}
	recordFile := filepath.Join(dir, "starts")
	h = fakeHost(goos, "amd64", 1000, map[string]string{
		"PATH":               bin,
		"HOME":               filepath.Join(dir, "home"),
		"XDG_RUNTIME_DIR":    filepath.Join(dir, "run"),
		"XDG_CACHE_HOME":     filepath.Join(dir, "cache"),
		"FAKE_DAEMON_MODE":   mode,
		"FAKE_DAEMON_RECORD": recordFile,
	})
	record = func() []started {
		data, _ := os.ReadFile(recordFile)
		var out []started
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			f := strings.SplitN(line, " ", 4)
			if len(f) < 4 {
				continue
			}
			pid, _ := strconv.Atoi(f[0])
			sid, _ := strconv.Atoi(f[1])
			out = append(out, started{pid, sid, f[2], f[3]})
		}
		return out
	}
	t.Cleanup(func() {
		for _, s := range record() {
			syscall.Kill(s.pid, syscall.SIGKILL) // the fake daemons this test started
		}
	})
	return h, dir, record
}

func TestSessionDaemonStartedOnceAndWaitedFor(t *testing.T) {
	h, dir, record := fakeSession(t, "linux", "serve", "virtqemud", "libvirtd")
	var wg sync.WaitGroup
	results := make([]*sessionDaemon, 3)
	errs := make([]error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = h.startSessionDaemon(context.Background(), "qemu:///session")
		}()
	}
	wg.Wait()
	sock := filepath.Join(dir, "run", "libvirt", "virtqemud-sock")
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		if results[i].socket != sock {
			t.Errorf("start %d: socket %s, want %s", i, results[i].socket, sock)
		}
	}
	// It was waited for: the socket accepts as soon as the call returns.
	if !accepts(sock) {
		t.Error("socket does not accept after start returned")
	}
	// A later connection finds it running.
	if d, err := h.startSessionDaemon(context.Background(), "qemu:///session"); err != nil || d.pid != 0 {
		t.Errorf("second start: %+v, %v", d, err)
	}
	starts := record()
	if len(starts) != 1 {
		t.Fatalf("started %d times: %+v", len(starts), starts)
	}
	s := starts[0]
	if s.name != "virtqemud" || s.args != "--timeout=120" {
		t.Errorf("started %s %s, want virtqemud --timeout=120", s.name, s.args)
	}
	if s.sid != s.pid {
		t.Errorf("daemon is not in a session of its own: pid %d, sid %d", s.pid, s.sid)
	}
	// Its output goes to its log in the user's cache folder.
	logPath := filepath.Join(dir, "cache", "libvirt", "virtqemud.log")
	waitFor(t, func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "fake daemon: listening")
	}, "daemon output in "+logPath)
	if fi, err := os.Stat(logPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("log %s: %v, %v", logPath, fi.Mode(), err)
	}
	// The lock libvirt's clients use is where they look for it.
	if _, err := os.Stat(filepath.Join(dir, "run", "libvirt", "virtqemud.lock")); err != nil {
		t.Error(err)
	}
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Errorf("no %s", what)
}

func TestSessionDaemonFallsBackToLibvirtd(t *testing.T) {
	h, dir, record := fakeSession(t, "linux", "serve", "libvirtd")
	d, err := h.startSessionDaemon(context.Background(), "qemu:///session")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "run", "libvirt", "libvirt-sock"); d.socket != want {
		t.Errorf("socket %s, want %s", d.socket, want)
	}
	if want := filepath.Join(dir, "cache", "libvirt", "libvirtd.log"); d.log != want {
		t.Errorf("log %s, want %s", d.log, want)
	}
	if starts := record(); len(starts) != 1 || starts[0].name != "libvirtd" || starts[0].args != "--timeout=120" {
		t.Errorf("starts %+v", starts)
	}
}

func TestSessionDaemonFoundInSbin(t *testing.T) {
	h, dir, record := fakeSession(t, "linux", "serve", "virtqemud")
	h.sbin = []string{filepath.Join(dir, "bin")}
	env := map[string]string{}
	for _, kv := range h.environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	env["PATH"] = "/nonexistent:relative/bin"
	h.getenv = func(k string) string { return env[k] }
	if _, err := h.startSessionDaemon(context.Background(), "qemu:///session"); err != nil {
		t.Fatal(err)
	}
	if len(record()) != 1 {
		t.Errorf("starts %+v", record())
	}
}

func TestSessionDaemonMissing(t *testing.T) {
	for goos, want := range map[string]string{
		"linux":  "`sudo apt install libvirt-daemon libvirt-daemon-driver-qemu`",
		"darwin": "`brew install libvirt`",
	} {
		h, _, _ := fakeSession(t, goos, "serve")
		h.sbin = []string{"/nonexistent/sbin"}
		_, err := h.startSessionDaemon(context.Background(), "qemu:///session")
		if !errors.Is(err, vm.ErrUnavailable) || !strings.Contains(err.Error(), want) ||
			!strings.Contains(err.Error(), "neither virtqemud nor libvirtd") || !strings.Contains(err.Error(), "/nonexistent/sbin") {
			t.Errorf("%s: %v", goos, err)
		}
		// Through connect, too: the error is the install hint.
		_, err = connect(context.Background(), "qemu:///session", h)
		if !errors.Is(err, vm.ErrUnavailable) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: connect: %v", goos, err)
		}
	}
}

func TestSessionDaemonThatExits(t *testing.T) {
	h, dir, record := fakeSession(t, "linux", "fail", "virtqemud")
	start := time.Now()
	_, err := h.startSessionDaemon(context.Background(), "qemu:///session")
	logPath := filepath.Join(dir, "cache", "libvirt", "virtqemud.log")
	if !errors.Is(err, vm.ErrUnavailable) || !strings.Contains(err.Error(), "exited: exit status 1") ||
		!strings.Contains(err.Error(), "see its log "+logPath) {
		t.Errorf("error %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("took %s: an exited daemon was waited for", time.Since(start))
	}
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "cannot initialize") {
		t.Errorf("log has %q", b)
	}
	if len(record()) != 1 {
		t.Errorf("starts %+v", record())
	}
}

func TestSessionDaemonThatNeverListens(t *testing.T) {
	h, _, _ := fakeSession(t, "linux", "hang", "virtqemud")
	h.startTimeout = 300 * time.Millisecond
	_, err := h.startSessionDaemon(context.Background(), "qemu:///session")
	if !errors.Is(err, vm.ErrUnavailable) || !strings.Contains(err.Error(), "did not accept within 300ms") ||
		!strings.Contains(err.Error(), "virtqemud.log") {
		t.Errorf("error %v", err)
	}
}

func TestSessionDaemonWaitEndsWithContext(t *testing.T) {
	h, _, _ := fakeSession(t, "linux", "hang", "virtqemud")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := h.startSessionDaemon(ctx, "qemu:///session"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v", err)
	}
}

func TestSessionDaemonWaitsForAnotherClientsLock(t *testing.T) {
	h, dir, record := fakeSession(t, "linux", "serve", "virtqemud")
	h.startTimeout = 300 * time.Millisecond
	// Another process (a virsh starting one) holds libvirt's lock.
	lockPath := filepath.Join(dir, "run", "libvirt", "virtqemud.lock")
	os.MkdirAll(filepath.Dir(lockPath), 0o700)
	holdLock(t, lockPath)
	_, err := h.startSessionDaemon(context.Background(), "qemu:///session")
	if err == nil || !strings.Contains(err.Error(), "still held by another client") {
		t.Errorf("error %v", err)
	}
	if len(record()) != 0 {
		t.Errorf("started while another client held the lock: %+v", record())
	}
}

// holdLock has a child process hold libvirt's lock on path until the
// test ends: fcntl locks are per process, so this one cannot take it.
func holdLock(t *testing.T, path string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	holder := filepath.Join(t.TempDir(), "lockholder")
	if err := os.Symlink(self, holder); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(holder, path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 6)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "locked" {
		t.Fatalf("lock holder: %q, %v", buf, err)
	}
}

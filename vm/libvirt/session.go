package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/devbox-vm/devbox/vm"
)

// sessionDaemons are the daemons that can serve qemu:///session, in
// libvirt's order of preference, each with the socket it listens on.
var sessionDaemons = []struct{ name, sock string }{
	{"virtqemud", virtqemudSock},
	{"libvirtd", libvirtdSock},
}

// daemonIdleTimeout is how long a started daemon lingers without clients
// (it never quits while VMs run). libvirt's clients pass the same.
const daemonIdleTimeout = "--timeout=120"

// sessionDaemon is the daemon that serves qemu:///session for this user.
type sessionDaemon struct {
	name   string // virtqemud or libvirtd
	socket string
	log    string // where its output goes; "" if it was running already
	pid    int    // 0 if it was running already
}

// autostart reports whether Connect starts the user's daemon for u when
// none listens, as libvirt's own clients do: a session URI on this host,
// a user who is not root (root's session is the system daemon), no
// ?socket= (that names a daemon someone else runs), and LIBVIRT_AUTOSTART
// not 0.
func (h host) autostart(u *url.URL) bool {
	return isSession(u) && isLocal(u) && h.uid != 0 &&
		u.Query().Get("socket") == "" && h.getenv("LIBVIRT_AUTOSTART") != "0"
}

// findDaemon finds the first of sessionDaemons installed, on PATH or in
// the sbin folders.
func (h host) findDaemon() (name, path, sock string, ok bool) {
	dirs := append(filepath.SplitList(h.getenv("PATH")), h.sbin...)
	for _, d := range sessionDaemons {
		for _, dir := range dirs {
			if dir == "" || !filepath.IsAbs(dir) {
				continue // never run a daemon found relative to the current folder
			}
			p := filepath.Join(dir, d.name)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return d.name, p, filepath.Join(h.runtimeDir(), d.sock), true
			}
		}
	}
	return "", "", "", false
}

// daemonLog is where devbox sends the output of the daemon it starts to
// serve sock: the file libvirt's daemons log to when they run detached.
func (h host) daemonLog(sock string) string {
	name := "libvirtd"
	if filepath.Base(sock) == virtqemudSock {
		name = "virtqemud"
	}
	return filepath.Join(h.cacheDir(), "libvirt", name+".log")
}

// installHint says which package brings a session daemon.
func installHint(goos string) string {
	if goos == "darwin" {
		return "install Homebrew's libvirt: `brew install libvirt`"
	}
	return "install libvirt's daemon and its QEMU driver, on Debian or Ubuntu: `sudo apt install libvirt-daemon libvirt-daemon-driver-qemu`"
}

// startMu keeps two goroutines of this process from both starting a
// daemon: the lock file's fcntl lock only keeps other processes out.
var startMu sync.Mutex

// startSessionDaemon starts the user's libvirt daemon, detached, unless
// one listens already, and waits until its socket accepts. Like libvirt's
// clients it holds $runtime/<daemon>.lock meanwhile, so that a virsh or
// another devbox starting one at the same time waits for this one.
func (h host) startSessionDaemon(ctx context.Context, uri string) (*sessionDaemon, error) {
	name, bin, sock, ok := h.findDaemon()
	if !ok {
		return nil, fmt.Errorf("%w: connect to libvirt %s: no session daemon to start: neither virtqemud nor libvirtd is on PATH or in %s (hint: %s)",
			vm.ErrUnavailable, uri, strings.Join(h.sbin, ", "), installHint(h.goos))
	}
	fail := func(err error) error {
		return fmt.Errorf("%w: connect to libvirt %s: start %s: %v", vm.ErrUnavailable, uri, name, err)
	}
	startMu.Lock()
	defer startMu.Unlock()
	if err := os.MkdirAll(h.runtimeDir(), 0o700); err != nil {
		return nil, fail(err)
	}
	unlock, err := lockWait(ctx, filepath.Join(h.runtimeDir(), name+".lock"), h.startTimeout)
	if err != nil {
		return nil, fail(err)
	}
	defer unlock()
	// Whoever held the lock may have started one; any session daemon does.
	for _, d := range sessionDaemons {
		if s := filepath.Join(h.runtimeDir(), d.sock); accepts(s) {
			return &sessionDaemon{name: d.name, socket: s}, nil
		}
	}

	logPath := h.daemonLog(sock)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return nil, fail(err)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fail(err)
	}
	fmt.Fprintf(logf, "%s devbox: %s %s\n", time.Now().Format(time.RFC3339), bin, daemonIdleTimeout)
	cmd := exec.Command(bin, daemonIdleTimeout)
	cmd.Env = h.environ()
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: a Ctrl-C in devbox's terminal must not stop it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return nil, fail(err)
	}
	d := &sessionDaemon{name: name, socket: sock, log: logPath, pid: cmd.Process.Pid}
	// Reap it whenever it exits (after its idle timeout, or now if it
	// fails); nobody waits on this.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.NewTimer(h.startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if accepts(sock) {
			return d, nil
		}
		select {
		case err := <-exited:
			if accepts(sock) { // it found another one running and left
				return d, nil
			}
			if err == nil {
				err = errors.New("exit status 0")
			}
			return nil, fmt.Errorf("%w: connect to libvirt %s: started %s, but it exited: %v (hint: see its log %s)",
				vm.ErrUnavailable, uri, bin, err, logPath)
		case <-deadline.C:
			return nil, fmt.Errorf("%w: connect to libvirt %s: started %s (pid %d), but its socket %s did not accept within %s (hint: see its log %s)",
				vm.ErrUnavailable, uri, bin, d.pid, sock, h.startTimeout, logPath)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// lockWait takes libvirt's autostart lock: a POSIX write lock on the
// file's first byte, the same lock libvirt's clients take, so that they
// and we exclude each other. It polls rather than blocks so that ctx and
// the timeout can end the wait.
func lockWait(ctx context.Context, path string, timeout time.Duration) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 1}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk)
		if err == nil {
			// Closing the file drops the lock. The file stays: removing it
			// would let a waiter lock a file that no longer has a name.
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: still held by another client after %s", path, timeout)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

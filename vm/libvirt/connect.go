// Package libvirt implements vm.Driver over libvirt's RPC protocol with
// github.com/digitalocean/go-libvirt: no cgo and no virsh. It is the only
// package of devbox that imports go-libvirt.
package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"syscall"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/devbox-vm/devbox/vm"
)

// isLocal reports whether the URI uses the local unix socket transport.
func isLocal(u *url.URL) bool {
	scheme := strings.SplitN(u.Scheme, "+", 2)
	if len(scheme) == 2 {
		return scheme[1] == "unix"
	}
	return u.Host == ""
}

// Connect opens a connection to libvirt at uri. For qemu:///session on
// this host it starts the user's daemon when none runs, as libvirt's own
// clients do. A daemon that is not running, or refuses us, gives an error
// wrapping vm.ErrUnavailable with a hint about what to start, install or
// join.
func Connect(ctx context.Context, uri string) (*Driver, error) {
	return connect(ctx, uri, realHost())
}

func connect(ctx context.Context, uri string, h host) (*Driver, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("libvirt_uri %q is not a URI such as qemu:///system", uri)
	}
	if !strings.HasPrefix(u.Scheme, "qemu") {
		return nil, fmt.Errorf("libvirt_uri %q: devbox drives QEMU only (use a qemu:// URI)", uri)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	local := isLocal(u)
	t := target{uri: uri, session: isSession(u), goos: h.goos, uid: h.uid, autostart: h.autostart(u)}
	if local {
		t.sock = h.pickSocket(u)
		if t.autostart {
			t.log = h.daemonLog(t.sock)
		}
	}
	l, err := dial(ctx, u, t.sock)
	if err != nil && t.autostart && noDaemon(err) {
		d, serr := h.startSessionDaemon(ctx, uri)
		if serr != nil {
			return nil, serr
		}
		t.sock, t.log = d.socket, h.daemonLog(d.socket)
		l, err = dial(ctx, u, t.sock)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, t.connectError(err)
	}
	return &Driver{l: l, uri: u, local: local}, nil
}

// dial connects to libvirt at u, on sock if it is not "". go-libvirt's
// calls take no context: a cancelled dial is left to finish and closed.
func dial(ctx context.Context, u *url.URL, sock string) (*golibvirt.Libvirt, error) {
	dialURI := *u
	if sock != "" {
		q := dialURI.Query()
		q.Set("socket", sock)
		dialURI.RawQuery = q.Encode()
	}
	type result struct {
		l   *golibvirt.Libvirt
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := golibvirt.ConnectToURI(&dialURI)
		done <- result{l, err}
	}()
	select {
	case r := <-done:
		return r.l, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.l != nil {
				r.l.Disconnect()
			}
		}()
		return nil, ctx.Err()
	}
}

// target is what a failed connection was aimed at, for its hint.
type target struct {
	uri       string
	sock      string // "" for a remote URI
	session   bool
	goos      string
	uid       int
	autostart bool   // whether devbox starts a missing session daemon
	log       string // that daemon's log
}

func (t target) connectError(err error) error {
	if t.sock == "" {
		return fmt.Errorf("%w: connect to libvirt %s: %v (hint: check that libvirtd runs there and libvirt_uri is right)", vm.ErrUnavailable, t.uri, err)
	}
	hint := "check that the libvirt daemon runs and libvirt_uri is right"
	switch {
	case noDaemon(err):
		hint = t.startHint()
	case errors.Is(err, syscall.EACCES):
		hint = t.accessHint()
	}
	return fmt.Errorf("%w: connect to libvirt %s: socket %s: %v (hint: %s)", vm.ErrUnavailable, t.uri, t.sock, err, hint)
}

// startHint says how to start the daemon the URI needs.
func (t target) startHint() string {
	switch {
	case t.session && t.uid == 0:
		return "as root, libvirt serves qemu:///session from the system daemon: use libvirt_uri: qemu:///system"
	case t.session && t.autostart && t.goos == "darwin":
		return fmt.Sprintf("devbox tried to start it: see its log %s; or keep one running: `brew services start libvirt`", t.log)
	case t.session && t.autostart:
		return fmt.Sprintf("devbox tried to start it, but it stopped listening: see its log %s, and try again", t.log)
	case t.session && t.goos == "darwin":
		return "start Homebrew's libvirt as yourself: `brew services start libvirt`"
	case t.session:
		return "start your own libvirt daemon, as you (not root): `virtqemud --timeout=120 &` or `libvirtd -d`"
	case t.goos == "darwin":
		return "start Homebrew's libvirt as root: `sudo brew services start libvirt`; or use libvirt_uri: qemu:///session"
	default:
		return "start the libvirt daemon: `sudo systemctl start libvirtd`, or without systemd `sudo virtlogd -d && sudo libvirtd -d`"
	}
}

// accessHint says how to get the right to use the socket.
func (t target) accessHint() string {
	switch {
	case t.session:
		return "the socket is not yours: check that XDG_RUNTIME_DIR is your own folder"
	case t.goos == "darwin":
		return "Homebrew's system daemon lets only root in: use libvirt_uri: qemu:///session"
	default:
		return "add yourself to the libvirt group: `sudo usermod -aG libvirt $USER`, then log in again; or use libvirt_uri: qemu:///session"
	}
}

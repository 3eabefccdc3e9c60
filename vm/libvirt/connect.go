// Package libvirt implements vm.Driver over libvirt's RPC protocol with
// github.com/digitalocean/go-libvirt: no cgo and no virsh. It is the only
// package of devbox that imports go-libvirt.
package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/devbox-vm/devbox/vm"
)

// SocketPath is the unix socket a local libvirt URI is served on: the
// ?socket= parameter, else the usual place for system or session daemons.
func SocketPath(u *url.URL) string {
	if s := u.Query().Get("socket"); s != "" {
		return s
	}
	if u.Path == "/session" {
		dir := os.Getenv("XDG_RUNTIME_DIR")
		if dir == "" {
			home, _ := os.UserHomeDir()
			dir = filepath.Join(home, ".cache")
		}
		// Modular daemons (virtqemud) first, then the monolithic libvirtd.
		for _, name := range []string{"virtqemud-sock", "libvirt-sock"} {
			p := filepath.Join(dir, "libvirt", name)
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
		return filepath.Join(dir, "libvirt", "libvirt-sock")
	}
	for _, p := range []string{"/var/run/libvirt/virtqemud-sock", "/var/run/libvirt/libvirt-sock"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "/var/run/libvirt/libvirt-sock"
}

// isLocal reports whether the URI uses the local unix socket transport.
func isLocal(u *url.URL) bool {
	scheme := strings.SplitN(u.Scheme, "+", 2)
	if len(scheme) == 2 {
		return scheme[1] == "unix"
	}
	return u.Host == ""
}

// Connect opens a connection to libvirt at uri. A local daemon that is not
// running, or refuses us, gives an error wrapping vm.ErrUnavailable with a
// hint about what to start or which group to join.
func Connect(ctx context.Context, uri string) (*Driver, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("libvirt_uri %q is not a URI such as qemu:///system", uri)
	}
	if !strings.HasPrefix(u.Scheme, "qemu") {
		return nil, fmt.Errorf("libvirt_uri %q: devbox drives QEMU only (use a qemu:// URI)", uri)
	}
	dialURI := *u
	local := isLocal(u)
	var sock string
	if local {
		sock = SocketPath(u)
		q := dialURI.Query()
		q.Set("socket", sock)
		dialURI.RawQuery = q.Encode()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
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
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		go func() {
			if r := <-done; r.l != nil {
				r.l.Disconnect()
			}
		}()
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, connectError(uri, sock, r.err)
	}
	return &Driver{l: r.l, uri: u, local: local}, nil
}

func connectError(uri, sock string, err error) error {
	switch {
	case sock != "" && (errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)):
		return fmt.Errorf("%w: connect to libvirt %s: socket %s: %v (hint: start the libvirt daemon: `sudo systemctl start libvirtd`, or without systemd `sudo virtlogd -d && sudo libvirtd -d`)",
			vm.ErrUnavailable, uri, sock, err)
	case sock != "" && errors.Is(err, syscall.EACCES):
		return fmt.Errorf("%w: connect to libvirt %s: socket %s: %v (hint: add yourself to the libvirt group: `sudo usermod -aG libvirt $USER`, then log in again; or use libvirt_uri: qemu:///session)",
			vm.ErrUnavailable, uri, sock, err)
	default:
		return fmt.Errorf("%w: connect to libvirt %s: %v (hint: check that libvirtd runs there and libvirt_uri is right)", vm.ErrUnavailable, uri, err)
	}
}

package libvirt

import (
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"time"
)

// host is what socket discovery and the session daemon's autostart read
// from the machine, so that tests can play any OS, user and environment.
type host struct {
	goos, goarch string
	uid          int
	getenv       func(string) string
	environ      func() []string // the session daemon's environment
	home         func() (string, error)
	// sbin are the folders searched for daemons after PATH: libvirt
	// installs them in sbin, which a user's PATH often lacks.
	sbin []string
	// startTimeout bounds the wait for a started daemon's socket.
	startTimeout time.Duration
}

func realHost() host {
	h := host{
		goos:         runtime.GOOS,
		goarch:       runtime.GOARCH,
		uid:          os.Geteuid(),
		getenv:       os.Getenv,
		environ:      os.Environ,
		home:         os.UserHomeDir,
		startTimeout: 10 * time.Second,
	}
	h.sbin = h.sbinDirs()
	return h
}

// Socket file names: the modular QEMU daemon's, then the monolithic one's.
const (
	virtqemudSock = "virtqemud-sock"
	libvirtdSock  = "libvirt-sock"
)

// brewPrefixes are where Homebrew may live, the one native to this CPU
// first; HOMEBREW_PREFIX (set by `brew shellenv`) before both.
func (h host) brewPrefixes() []string {
	native, other := "/opt/homebrew", "/usr/local"
	if h.goarch == "amd64" {
		native, other = other, native
	}
	var prefixes []string
	for _, p := range []string{h.getenv("HOMEBREW_PREFIX"), native, other} {
		if p != "" && !slices.Contains(prefixes, p) {
			prefixes = append(prefixes, p)
		}
	}
	return prefixes
}

func (h host) sbinDirs() []string {
	var dirs []string
	if h.goos == "darwin" {
		for _, p := range h.brewPrefixes() {
			dirs = append(dirs, filepath.Join(p, "sbin"))
		}
	}
	for _, d := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin"} {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// cacheDir is the user's XDG cache folder, as GLib (and so libvirt) finds
// it on Linux and on macOS alike.
func (h host) cacheDir() string {
	if d := h.getenv("XDG_CACHE_HOME"); d != "" {
		return d
	}
	home, _ := h.home()
	return filepath.Join(home, ".cache")
}

// runtimeDir is libvirt's per-user runtime folder (virGetUserRuntimeDirectory):
// $XDG_RUNTIME_DIR/libvirt, else the cache folder's libvirt, which is where
// Homebrew's libvirt puts it on macOS, which has no XDG_RUNTIME_DIR.
func (h host) runtimeDir() string {
	if d := h.getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "libvirt")
	}
	return filepath.Join(h.cacheDir(), "libvirt")
}

// systemDirs are where a system (root) daemon puts its sockets:
// $LOCALSTATEDIR/run/libvirt, which is Homebrew's var on macOS.
func (h host) systemDirs() []string {
	if h.goos != "darwin" {
		return []string{"/var/run/libvirt"}
	}
	var dirs []string
	for _, p := range h.brewPrefixes() {
		dirs = append(dirs, filepath.Join(p, "var", "run", "libvirt"))
	}
	return dirs
}

// isSession reports whether a URI names a per-user daemon.
func isSession(u *url.URL) bool { return u.Path == "/session" }

// socketCandidates lists, most likely first, the sockets a local URI's
// daemon may listen on. The last one is where to expect it when none
// exists. A ?socket= parameter is the only candidate.
func (h host) socketCandidates(u *url.URL) []string {
	if s := u.Query().Get("socket"); s != "" {
		return []string{s}
	}
	dirs := h.systemDirs()
	if isSession(u) {
		dirs = []string{h.runtimeDir()}
	}
	var socks []string
	for _, d := range dirs {
		socks = append(socks, filepath.Join(d, virtqemudSock), filepath.Join(d, libvirtdSock))
	}
	return socks
}

// pickSocket is the candidate that exists, else libvirtd's socket in the
// first folder, the default of the daemon most hosts run. When several
// exist (a daemon may have left one behind), it is the first that
// accepts a connection, else the first: the dial then says why. Only then
// does it probe, since a daemon logs an error for each probe.
func (h host) pickSocket(u *url.URL) string {
	socks := h.socketCandidates(u)
	if len(socks) == 1 {
		return socks[0]
	}
	var existing []string
	for _, s := range socks {
		if _, err := os.Stat(s); err == nil {
			existing = append(existing, s)
		}
	}
	switch len(existing) {
	case 0:
		return socks[1]
	case 1:
		return existing[0]
	}
	for _, s := range existing {
		if accepts(s) {
			return s
		}
	}
	return existing[0]
}

// SocketPath is the unix socket a local libvirt URI is served on: the
// ?socket= parameter, else where a running daemon listens, else where the
// usual daemon would: $XDG_RUNTIME_DIR/libvirt (or ~/.cache/libvirt, as
// on macOS) for qemu:///session, /var/run/libvirt (Homebrew's
// var/run/libvirt on macOS) for qemu:///system.
func SocketPath(u *url.URL) string { return realHost().pickSocket(u) }

// accepts reports whether something listens on the unix socket path.
func accepts(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// noDaemon reports whether a dial error means nothing listens there:
// the socket is missing, or left behind by a daemon that is gone.
func noDaemon(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

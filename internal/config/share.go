package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// guestSystemPaths may not be shared: mounting over them would break the VM.
var guestSystemPaths = []string{"/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/run", "/sbin", "/sys", "/usr", "/var/lib", "/var/run"}

// Within reports whether path is dir or lies inside it (both clean).
func Within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// hostSystemPaths may not be shared, nor anything inside them: the guest
// could read or plant files the host trusts.
var hostSystemPaths = []string{"/etc", "/usr", "/var", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
	"/boot", "/proc", "/sys", "/dev", "/root", "/run", "/System", "/Library", "/private/etc", "/private/var"}

// hostWholePaths may not be shared as a whole (a project inside is fine).
var hostWholePaths = []string{"/tmp", "/private/tmp", "/home", "/Users", "/opt", "/srv", "/mnt", "/media", "/Volumes"}

// ResolvePath makes p absolute and resolves every symlink and ".." in it,
// so checks apply to the folder the host really serves. The part of p that
// does not exist yet is kept as written.
func ResolvePath(p string) (string, error) {
	// Not filepath.Abs or Clean: they would take "link/.." lexically,
	// where the file system goes to the parent of the link's target.
	if !filepath.IsAbs(p) {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		p = wd + string(filepath.Separator) + p
	}
	rest := ""
	for {
		r, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !os.IsNotExist(err) {
			return "", err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(p, rest), nil
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

// refusedShare says why the resolved host folder path must not be shared
// with the VM, or "" when it may be.
func refusedShare(path string) string {
	if path == "/" {
		return "the whole filesystem cannot be shared; name a folder"
	}
	if home, err := os.UserHomeDir(); err == nil {
		if h, err := ResolvePath(home); err == nil && path == h {
			return "is your home folder: share a project folder inside it instead"
		}
	}
	for _, sys := range hostSystemPaths {
		if Within(path, sys) {
			return fmt.Sprintf("is inside the system folder %s, which the VM must not reach; share a project folder", sys)
		}
	}
	for _, whole := range hostWholePaths {
		if path == whole {
			return fmt.Sprintf("%s cannot be shared as a whole; share a folder inside it", whole)
		}
	}
	return ""
}

func (c *Config) validateMounts(bad func(field, format string, a ...any)) {
	type share struct {
		i    int
		path string // resolved
	}
	var checked []share // mounts that passed, for the overlap check
	for i, m := range c.Mounts {
		p := fmt.Sprintf("mounts[%d]", i)
		if m.Mode != "rw" && m.Mode != "ro" {
			bad(p+".mode", "%q must be rw or ro", m.Mode)
		}
		if m.Host == "" || m.Host == "." {
			bad(p+".host", "is required: a folder to share")
			continue
		}
		// Checks apply to where symlinks and ".." really lead: a link in
		// the project (which the VM can write) must not widen the share.
		resolved, err := ResolvePath(m.Host)
		if err != nil {
			bad(p+".host", "%s: %v", m.Host, err)
			continue
		}
		shown := m.Host
		if resolved != m.Host {
			shown = fmt.Sprintf("%s (really %s)", m.Host, resolved)
		}
		if why := refusedShare(resolved); why != "" {
			bad(p+".host", "%s: %s", shown, why)
			continue
		}
		for _, sys := range guestSystemPaths {
			if Within(resolved, sys) {
				bad(p+".host", "%s would hide the VM's own %s; share a folder elsewhere", shown, sys)
			}
		}
		if st, err := os.Stat(resolved); err != nil {
			bad(p+".host", "%s does not exist (hint: create it or fix the path)", shown)
			continue
		} else if !st.IsDir() {
			bad(p+".host", "%s is not a folder", shown)
			continue
		}
		for _, other := range checked {
			if Within(resolved, other.path) || Within(other.path, resolved) {
				bad(p+".host", "%s overlaps mounts[%d] (%s); share one or the other", shown, other.i, other.path)
			}
		}
		checked = append(checked, share{i, resolved})
	}
}

// resolveMounts makes each shared folder's path the one it really leads
// to (Validate has found that it resolves).
func (c *Config) resolveMounts() {
	for i := range c.Mounts {
		if resolved, err := ResolvePath(c.Mounts[i].Host); err == nil {
			c.Mounts[i].Host = resolved
		}
	}
}

// IsLoopback reports whether a forward's host address listens on loopback
// only.
func (f Forward) IsLoopback() bool {
	host, _, err := net.SplitHostPort(f.Host)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Config) validateForwards(bad func(field, format string, a ...any)) {
	type key struct {
		proto string
		port  int
	}
	seen := map[key]int{}
	for i, f := range c.Forwards {
		p := fmt.Sprintf("forwards[%d]", i)
		if f.Proto != "tcp" && f.Proto != "udp" {
			bad(p+".proto", "%q: tcp or udp", f.Proto)
		}
		host, port, err := net.SplitHostPort(f.Host)
		n, perr := strconv.Atoi(port)
		switch {
		case f.Host == "":
			bad(p+".host", "is required, like 127.0.0.1:8080")
		case err != nil || perr != nil || n < 1 || n > 65535 || net.ParseIP(host) == nil:
			bad(p+".host", "%q is not an address like 127.0.0.1:8080", f.Host)
		default:
			k := key{f.Proto, n}
			if j, dup := seen[k]; dup {
				bad(p+".host", "%s port %d is already forwarded by forwards[%d]", f.Proto, n, j)
			}
			seen[k] = i
		}
		if f.Guest < 1 || f.Guest > 65535 {
			bad(p+".guest", "%d is not a port (1-65535)", f.Guest)
		}
	}
}

// MountFor returns the configured mount that holds path (absolute,
// symlinks resolved by the caller), and whether there is one.
func (c *Config) MountFor(path string) (Mount, bool) { return FindMount(c.Mounts, path) }

// FindMount returns the mount of mounts that holds path.
func FindMount(mounts []Mount, path string) (Mount, bool) {
	path = filepath.Clean(path)
	for _, m := range mounts {
		if Within(path, m.Host) {
			return m, true
		}
	}
	return Mount{}, false
}

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

func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

func (c *Config) validateMounts(bad func(field, format string, a ...any)) {
	for i, m := range c.Mounts {
		p := fmt.Sprintf("mounts[%d]", i)
		if m.Mode != "rw" && m.Mode != "ro" {
			bad(p+".mode", "%q must be rw or ro", m.Mode)
		}
		if m.Host == "" || m.Host == "." {
			bad(p+".host", "is required: a folder to share")
			continue
		}
		if m.Host == "/" {
			bad(p+".host", "the whole filesystem cannot be shared; name a folder")
			continue
		}
		for _, sys := range guestSystemPaths {
			if within(m.Host, sys) {
				bad(p+".host", "%s would hide the VM's own %s; share a folder elsewhere", m.Host, sys)
			}
		}
		if st, err := os.Stat(m.Host); err != nil {
			bad(p+".host", "%s does not exist (hint: create it or fix the path)", m.Host)
		} else if !st.IsDir() {
			bad(p+".host", "%s is not a folder", m.Host)
		}
		for j, other := range c.Mounts[:i] {
			if within(m.Host, other.Host) || within(other.Host, m.Host) {
				bad(p+".host", "%s overlaps mounts[%d] (%s); share one or the other", m.Host, j, other.Host)
			}
		}
	}
}

func (c *Config) validateForwards(bad func(field, format string, a ...any)) {
	seen := map[int]int{}
	for i, f := range c.Forwards {
		p := fmt.Sprintf("forwards[%d]", i)
		if f.Proto != "tcp" {
			bad(p+".proto", "%q: only tcp is forwarded", f.Proto)
		}
		host, port, err := net.SplitHostPort(f.Host)
		n, perr := strconv.Atoi(port)
		switch {
		case f.Host == "":
			bad(p+".host", "is required, like 127.0.0.1:8080")
		case err != nil || perr != nil || n < 1 || n > 65535 || net.ParseIP(host) == nil:
			bad(p+".host", "%q is not an address like 127.0.0.1:8080", f.Host)
		default:
			if j, dup := seen[n]; dup {
				bad(p+".host", "port %d is already forwarded by forwards[%d]", n, j)
			}
			seen[n] = i
		}
		if f.Guest < 1 || f.Guest > 65535 {
			bad(p+".guest", "%d is not a port (1-65535)", f.Guest)
		}
	}
}

// MountFor returns the mount that holds path (absolute, symlinks resolved
// by the caller), and whether there is one.
func (c *Config) MountFor(path string) (Mount, bool) {
	path = filepath.Clean(path)
	for _, m := range c.Mounts {
		if within(path, m.Host) {
			return m, true
		}
	}
	return Mount{}, false
}

package doctor

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/vm/libvirt"
)

// HostEnv is this machine as doctor sees it.
func HostEnv() Env {
	e := Env{
		GOOS:       runtime.GOOS,
		HostArch:   config.HostArch(),
		Root:       os.Geteuid() == 0,
		Getenv:     os.Getenv,
		DefaultURI: config.DefaultLibvirtURI,
		LookPath:   exec.LookPath,
		Connect:    connectLibvirt,
		Socket:     libvirt.LocalSocket,
		KVM:        kvmDevice,
		HVSupport:  hvSupport,
		Exists: func(p string) bool {
			_, err := os.Stat(p)
			return err == nil
		},
		Writable: func(dir string) bool { return unix.Access(dir, unix.W_OK) == nil },
		FreeSpace: func(p string) (uint64, error) {
			var st unix.Statfs_t
			if err := unix.Statfs(p, &st); err != nil {
				return 0, err
			}
			return st.Bavail * uint64(st.Bsize), nil
		},
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		e.OSRelease = parseOSRelease(string(b))
	}
	if runtime.GOOS == "linux" {
		b, _ := os.ReadFile("/proc/cpuinfo")
		e.CPUInfo = string(b)
	}
	return e
}

func connectLibvirt(ctx context.Context, uri string) (Libvirt, error) {
	d, err := libvirt.Connect(ctx, uri)
	if err != nil {
		return nil, err // not a nil *Driver in a non-nil interface
	}
	return d, nil
}

// kvmDevice looks at /dev/kvm: QEMU run by a session daemon opens it as
// you; a system daemon's QEMU does not need you to.
func kvmDevice() (exists, usable bool) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return false, false
	}
	return true, unix.Access("/dev/kvm", unix.R_OK|unix.W_OK) == nil
}

// parseOSRelease reads os-release(5): KEY=value lines, values maybe quoted.
func parseOSRelease(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		m[k] = strings.Trim(v, `"'`)
	}
	return m
}

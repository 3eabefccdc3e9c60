package instance

import (
	"net/url"
	"os"
	"path/filepath"
	"runtime"

	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/internal/virtiofs"
)

// noVirtioFS says why this host cannot give the VM virtio-fs shares, or
// "" when it can (the VM then gets shared memory, whatever mount_type
// says, so that mount_type: virtiofs needs no new VM later).
func (in *Instance) noVirtioFS() string {
	if runtime.GOOS != "linux" {
		return "virtio-fs needs a Linux host (on " + runtime.GOOS + " folders go through reverse SSHFS)"
	}
	if u, err := url.Parse(in.Cfg.LibvirtURI); err == nil && u.Host != "" {
		return "libvirt runs on another host (" + u.Host + "), where this host's folders are not"
	}
	if _, err := virtiofs.FindBinary(); err != nil {
		return err.Error()
	}
	return ""
}

// shareDir holds the sockets of the instance's virtiofsd processes. When
// devbox runs as root (qemu:///system), QEMU runs as another user and must
// reach them: a folder of /run, given to QEMU's group. Otherwise QEMU runs
// as the user: the instance folder.
func (in *Instance) shareDir() string {
	if os.Getuid() == 0 {
		return filepath.Join("/run", in.Domain())
	}
	return filepath.Join(in.Dir(), filenames.VirtioFS)
}

// stopShares ends every virtiofsd of the instance and removes their
// sockets' folder (QEMU's end ends them too; one that never got its VM,
// after a kill, would wait forever).
func (in *Instance) stopShares() error {
	virtiofs.StopAll(in.shareDir())
	return os.RemoveAll(in.shareDir())
}

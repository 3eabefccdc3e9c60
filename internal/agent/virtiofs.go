package agent

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/sharedfs"
	"github.com/devbox-vm/devbox/internal/virtiofs"
	"github.com/devbox-vm/devbox/sshutil"
	"github.com/devbox-vm/devbox/vm"
)

// ShareDevices adds and removes the running VM's virtio-fs devices (see
// vm.Driver's AttachShare).
type ShareDevices interface {
	Shares(ctx context.Context) ([]vm.Share, error)
	AttachShare(ctx context.Context, s vm.Share) error
	DetachShare(ctx context.Context, tag string) error
	QEMUUser(ctx context.Context) (uid, gid int, err error)
}

//go:embed virtiofs-mount.sh
var virtiofsMountScript string

//go:embed virtiofs-unmount.sh
var virtiofsUnmountScript string

// tagPrefix starts the tag of every virtio-fs share devices makes.
const tagPrefix = "devbox-"

// shareTag is the virtio-fs tag of shared folder m: the same for the same
// folder and mode, so an agent finds the device an earlier one attached,
// and another for another mode, so that a folder made read-only never
// keeps a virtiofsd that writes (a tag has room for 36 bytes).
func shareTag(m config.Mount) string {
	key := m.Host
	if m.ReadOnly() {
		key += "\x00ro"
	}
	sum := sha256.Sum256([]byte(key))
	return tagPrefix + hex.EncodeToString(sum[:8])
}

// virtiofsFallback says why shared folder m cannot be served through
// virtio-fs, or "" when it may be.
func (a *Agent) virtiofsFallback(m config.Mount) string {
	switch {
	case a.MountType != config.MountVirtioFS:
		return "mount_type is sshfs"
	case m.ReadOnly() && !a.VirtioFSReadOnly:
		return "a read-only folder: this host's virtiofsd (QEMU's C one) cannot refuse writes"
	case a.Devices == nil:
		return a.NoVirtioFS
	}
	return ""
}

// serveVirtioFS serves shared folder m through a virtio-fs device (whose
// virtiofsd outlives this agent: the next one finds the device and mounts
// it again) and holds until ctx ends. It returns why it could not, for
// reverse SSHFS to take over.
func (a *Agent) serveVirtioFS(ctx context.Context, c *sshutil.Client, gen, i int, m config.Mount, uid, gid int) error {
	if real, err := filepath.EvalSymlinks(m.Host); err != nil || real != m.Host {
		return fmt.Errorf("shared folder %s no longer is the folder that was accepted (now %q, %v)", m.Host, real, err)
	}
	tag := shareTag(m)
	if err := a.ensureShare(ctx, tag, m, uid, gid); err != nil {
		return err
	}
	var errb strings.Builder
	code, err := c.Run(ctx, sshutil.Cmd{Script: virtiofsMountScript, Args: []string{tag, m.Host, m.Mode}, Root: true, Stderr: &errb})
	if err == nil && code != 0 {
		err = fmt.Errorf("mount -t virtiofs in the guest exited with status %d: %s", code, stderrTail(errb.String()))
	}
	if err != nil {
		if ctx.Err() == nil {
			a.dropShare(ctx, tag)
		}
		return err
	}
	a.Log.Printf("shared folder %s mounted in the guest through virtio-fs (%s)", m.Host, tag)
	a.setMountType(gen, i, config.MountVirtioFS, "")
	a.setMount(gen, i, Mounted, "")
	if a.FileEvents {
		// No server sees the guest's requests: the helper tells the
		// guest's own changes from the host's.
		a.keepReplaying(ctx, c, gen, i, m, sharedfs.NewReplays(), true)
	} else {
		a.setMountEvents(gen, i, "off: file_events.enabled is false")
	}
	<-ctx.Done()
	return nil
}

// ensureShare makes sure a device tagged tag, served by a running
// virtiofsd, is attached to the VM.
func (a *Agent) ensureShare(ctx context.Context, tag string, m config.Mount, uid, gid int) error {
	shares, err := a.Devices.Shares(ctx)
	if err != nil {
		return err
	}
	for _, s := range shares {
		if s.Tag != tag {
			continue
		}
		if virtiofs.Serving(s.Socket) {
			return nil
		}
		// Its virtiofsd is gone: the device serves nothing any more.
		a.Log.Printf("virtio-fs %s: its virtiofsd is gone; attaching a new one", tag)
		if err := a.dropShare(ctx, tag); err != nil {
			return err
		}
	}
	qemuUID, qemuGID, err := a.Devices.QEMUUser(ctx)
	if err != nil {
		return err
	}
	socketGID, dirMode := -1, os.FileMode(0o700)
	if qemuUID != os.Getuid() {
		if os.Getuid() != 0 {
			return fmt.Errorf("QEMU runs as uid %d and devbox as uid %d, so QEMU could not reach virtiofsd's socket (hint: run devbox as root on qemu:///system, or use qemu:///session)", qemuUID, os.Getuid())
		}
		socketGID, dirMode = qemuGID, 0o710
	}
	if err := os.MkdirAll(a.ShareDir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(a.ShareDir, dirMode); err != nil {
		return err
	}
	if socketGID >= 0 {
		if err := os.Chown(a.ShareDir, -1, socketGID); err != nil {
			return err
		}
	}
	socket := virtiofs.SocketPath(a.ShareDir, tag)
	if len(socket) > 107 {
		return fmt.Errorf("virtiofsd's socket path %s is longer than a Unix socket can be", socket)
	}
	virtiofs.Stop(socket) // one that never got its VM
	pid, err := virtiofs.Start(virtiofs.Config{
		Source: m.Host, Socket: socket, Log: filepath.Join(a.Dir, "virtiofsd-"+tag+".log"),
		GuestUID: uid, GuestGID: gid, SocketGID: socketGID, ReadOnly: m.ReadOnly(),
	})
	if err != nil {
		return err
	}
	if err := a.Devices.AttachShare(ctx, vm.Share{Tag: tag, Socket: socket}); err != nil {
		virtiofs.Stop(socket)
		if errors.Is(err, vm.ErrNoSharedMemory) {
			return fmt.Errorf("%w (hint: devbox destroy, then up, makes the VM anew with it)", err)
		}
		return err
	}
	a.Log.Printf("virtio-fs %s: virtiofsd (pid %d) serves %s (%s)", tag, pid, m.Host, m.Mode)
	return nil
}

// dropShare detaches the device tagged tag and stops its virtiofsd. The
// guest must have unmounted it (or will find its mount dead).
func (a *Agent) dropShare(ctx context.Context, tag string) error {
	err := a.Devices.DetachShare(ctx, tag)
	virtiofs.Stop(virtiofs.SocketPath(a.ShareDir, tag))
	return err
}

// pruneShares removes the virtio-fs devices of folders no longer served
// that way (the config changed, or virtio-fs was turned off): unmounted in
// the guest first, then detached.
func (a *Agent) pruneShares(ctx context.Context, c *sshutil.Client) {
	if a.Devices == nil {
		return
	}
	keep := map[string]bool{}
	for _, m := range a.Mounts {
		if a.virtiofsFallback(m) == "" {
			keep[shareTag(m)] = true
		}
	}
	shares, err := a.Devices.Shares(ctx)
	if err != nil {
		a.Log.Printf("virtio-fs: %v", err)
		return
	}
	for _, s := range shares {
		if !strings.HasPrefix(s.Tag, tagPrefix) || keep[s.Tag] {
			continue
		}
		if code, err := c.Run(ctx, sshutil.Cmd{Script: virtiofsUnmountScript, Args: []string{s.Tag}, Root: true}); err != nil || code != 0 {
			a.Log.Printf("virtio-fs %s: unmount in the guest: exit %d, %v", s.Tag, code, err)
		}
		if err := a.dropShare(ctx, s.Tag); err != nil {
			a.Log.Printf("virtio-fs %s: %v", s.Tag, err)
		} else {
			a.Log.Printf("virtio-fs %s: no longer shared; detached", s.Tag)
		}
	}
}

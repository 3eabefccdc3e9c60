package agent

import (
	"context"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/vm"
)

func TestShareTag(t *testing.T) {
	mount := func(host, mode string) config.Mount { return config.Mount{Host: host, Mode: mode} }
	a, b := shareTag(mount("/home/u/project", "rw")), shareTag(mount("/home/u/project2", "rw"))
	if a == b || a != shareTag(mount("/home/u/project", "rw")) {
		t.Errorf("tags %q, %q: want one per folder, the same each time", a, b)
	}
	if ro := shareTag(mount("/home/u/project", "ro")); ro == a {
		t.Errorf("tag %q for the folder read-only and read-write: a folder made read-only would keep its writing virtiofsd", ro)
	}
	if len(a) > 36 || !strings.HasPrefix(a, tagPrefix) {
		t.Errorf("tag %q: want ≤ 36 bytes, starting %q", a, tagPrefix)
	}
}

type noDevices struct{}

func (noDevices) Shares(context.Context) ([]vm.Share, error)       { return nil, nil }
func (noDevices) AttachShare(context.Context, vm.Share) error      { return nil }
func (noDevices) DetachShare(context.Context, string) error        { return nil }
func (noDevices) QEMUUser(context.Context) (uid, gid int, e error) { return 0, 0, nil }

func TestVirtioFSFallback(t *testing.T) {
	rw, ro := config.Mount{Host: "/p", Mode: "rw"}, config.Mount{Host: "/p", Mode: "ro"}
	for _, c := range []struct {
		a    *Agent
		m    config.Mount
		want string // a part of the reason; "" for virtio-fs
	}{
		{&Agent{MountType: config.MountVirtioFS, Devices: noDevices{}}, rw, ""},
		{&Agent{MountType: config.MountSSHFS, Devices: noDevices{}}, rw, "mount_type is sshfs"},
		{&Agent{MountType: config.MountVirtioFS, Devices: noDevices{}}, ro, "read-only"},
		{&Agent{MountType: config.MountVirtioFS, Devices: noDevices{}, VirtioFSReadOnly: true}, ro, ""},
		{&Agent{MountType: config.MountVirtioFS, NoVirtioFS: "no virtiofsd on this host"}, rw, "no virtiofsd"},
	} {
		got := c.a.virtiofsFallback(c.m)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s mount, mount_type %s, devices %v: %q, want %q", c.m.Mode, c.a.MountType, c.a.Devices != nil, got, c.want)
		}
	}
}

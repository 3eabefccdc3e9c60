package libvirt

import (
	"context"
	"errors"
	"net/url"
	"os"
	"reflect"
	"testing"

	"github.com/devbox-vm/devbox/vm"
)

func TestShares(t *testing.T) {
	ctx := context.Background()
	f := newFakeLibvirt()
	f.domains["devbox-old"] = "<domain><devices></devices></domain>"
	f.domains["devbox-demo"] = `<domain><memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking><devices></devices>` +
		`<seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+107</label></seclabel></domain>`
	d := f.driver()
	s := vm.Share{Tag: "devbox0", Socket: "/run/devbox/x/devbox0.sock"}

	if err := d.AttachShare(ctx, "devbox-old", s); !errors.Is(err, vm.ErrNoSharedMemory) {
		t.Errorf("attach to a VM without shared memory: err = %v, want ErrNoSharedMemory", err)
	}
	if err := d.AttachShare(ctx, "devbox-demo", s); err != nil {
		t.Fatal(err)
	}
	got, err := d.Shares(ctx, "devbox-demo")
	if err != nil {
		t.Fatal(err)
	}
	if want := []vm.Share{s}; !reflect.DeepEqual(got, want) {
		t.Errorf("Shares = %v, want %v", got, want)
	}
	if err := d.DetachShare(ctx, "devbox-demo", "devbox0"); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Shares(ctx, "devbox-demo"); len(got) != 0 {
		t.Errorf("after detach: %v", got)
	}
	if err := d.DetachShare(ctx, "devbox-demo", "devbox0"); err != nil {
		t.Errorf("detaching a share that is gone: %v", err)
	}

	uid, gid, err := d.QEMUUser(ctx, "devbox-demo")
	if err != nil || uid != 64055 || gid != 107 {
		t.Errorf("QEMUUser = %d, %d, %v; want 64055, 107", uid, gid, err)
	}
	if _, _, err := d.QEMUUser(ctx, "devbox-old"); err == nil {
		t.Error("QEMUUser of a domain without a DAC label: no error")
	}
	d.uri, _ = url.Parse("qemu:///session")
	if uid, gid, err := d.QEMUUser(ctx, "devbox-old"); err != nil || uid != os.Getuid() || gid != os.Getgid() {
		t.Errorf("QEMUUser on qemu:///session = %d, %d, %v; want this user", uid, gid, err)
	}
}

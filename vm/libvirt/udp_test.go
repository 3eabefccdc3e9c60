package libvirt

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/vm"
)

func TestUDPForwards(t *testing.T) {
	ctx := context.Background()
	f := newFakeLibvirt()
	f.domains["devbox-demo"] = "<domain/>"
	f.taken = map[string]bool{"127.0.0.1:53": true}
	d := f.driver()

	if err := d.AddUDPForward(ctx, "devbox-demo", vm.UDPForward{Host: "127.0.0.1:5353", Guest: 53}); err != nil {
		t.Fatal(err)
	}
	got, err := d.UDPForwards(ctx, "devbox-demo")
	if err != nil {
		t.Fatal(err)
	}
	// The SSH forward (TCP) is not one of them.
	if want := []vm.UDPForward{{Host: "127.0.0.1:5353", Guest: 53}}; !reflect.DeepEqual(got, want) {
		t.Errorf("UDPForwards = %v, want %v", got, want)
	}

	err = d.AddUDPForward(ctx, "devbox-demo", vm.UDPForward{Host: "127.0.0.1:53", Guest: 53})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:53") || !strings.Contains(err.Error(), "hint:") {
		t.Errorf("a port QEMU cannot bind: err = %v, want one naming it with a hint", err)
	}
	if err := d.RemoveUDPForward(ctx, "devbox-demo", "127.0.0.1:5353"); err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveUDPForward(ctx, "devbox-demo", "127.0.0.1:5353"); err != nil {
		t.Errorf("removing a forward that is gone: %v", err)
	}
	if got, _ := d.UDPForwards(ctx, "devbox-demo"); len(got) != 0 {
		t.Errorf("after remove: %v", got)
	}
	if _, err := d.UDPForwards(ctx, "devbox-nothere"); err == nil {
		t.Error("a missing domain: no error")
	}
}

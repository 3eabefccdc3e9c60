//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestArm64Boot: an aarch64 guest (QEMU's virt machine, UEFI firmware
// picked by libvirt, PL011 console) under software emulation on this
// host: up, the guest says aarch64, its console is logged, halt, destroy.
// It needs the arm64 test box (make box ARCH=arm64), named by
// DEVBOX_E2E_BOX_ARM64; make test-arm64 runs it.
func TestArm64Boot(t *testing.T) {
	box := os.Getenv("DEVBOX_E2E_BOX_ARM64")
	if box == "" {
		t.Skip("DEVBOX_E2E_BOX_ARM64 is not set (make test-arm64 builds the arm64 box and sets it)")
	}
	if _, err := os.Stat(box); err != nil {
		t.Fatalf("arm64 test box: %v (hint: make box ARCH=arm64)", err)
	}
	e := newEnv(t, fmt.Sprintf("name: arm\nbox: %s\narch: aarch64\ncpus: 2\nmemory: 2GiB\ndisk: 8GiB\nboot_timeout: 15m\nmounts: []\nuser:\n  name: dev\n", box))
	e.cleanup("arm")
	e.ok(30*time.Minute, "up", "--no-provision")
	if r := e.ok(2*time.Minute, "ssh", "--", "uname", "-m"); strings.TrimSpace(r.stdout) != "aarch64" {
		t.Errorf("uname -m in the guest: %s", r)
	}
	st := e.status()
	if st.State != "running" {
		t.Fatalf("status: %+v", st)
	}
	if b, err := os.ReadFile(st.ConsoleLog); err != nil || !strings.Contains(string(b), "Linux version") {
		t.Errorf("console log %s does not show the kernel booting (%v)", st.ConsoleLog, err)
	}
	e.ok(5*time.Minute, "halt")
	e.ok(3*time.Minute, "destroy", "-f")
	e.assertGone("arm")
}

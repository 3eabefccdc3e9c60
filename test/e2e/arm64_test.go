//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestArm64 runs an aarch64 guest (QEMU's virt machine, UEFI firmware
// picked by libvirt, PL011 console) under software emulation on this
// host, as an Apple Silicon Mac runs one under hvf: up with the engine
// provisioned and linux/amd64 asked for in docker.platforms, the guest
// says aarch64, the host's docker builds and runs an arm64 FROM-scratch
// image through the socket, then an amd64 one under the guest's QEMU
// user-mode emulation, halt, up (the emulator still registered), halt,
// destroy. One VM for all of it: a boot takes minutes here. It needs the arm64 test box (make box ARCH=arm64) and
// Debian's arm64 static busybox, named by DEVBOX_E2E_BOX_ARM64 and
// DEVBOX_E2E_BUSYBOX_ARM64; make test sets both.
func TestArm64(t *testing.T) {
	box, busyboxArm64 := os.Getenv("DEVBOX_E2E_BOX_ARM64"), os.Getenv("DEVBOX_E2E_BUSYBOX_ARM64")
	if box == "" || busyboxArm64 == "" {
		t.Skip("DEVBOX_E2E_BOX_ARM64 or DEVBOX_E2E_BUSYBOX_ARM64 is not set (make test sets both)")
	}
	for _, f := range []string{box, busyboxArm64} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("arm64 test input: %v (hint: make box ARCH=arm64)", err)
		}
	}
	if runtime.GOARCH != "amd64" {
		t.Skip("the amd64 image is built from the host's busybox: this test needs an amd64 host")
	}
	busyboxAmd64 := hostBusybox(t)
	e := newEnv(t, fmt.Sprintf(`name: arm
box: %s
arch: aarch64
cpus: 2
memory: 2GiB
disk: 8GiB
boot_timeout: 15m
mounts: []
user:
  name: dev
docker:
  platforms: [linux/amd64]
`, box))
	e.cleanup("arm")
	r := e.ok(45*time.Minute, "up")
	contains(t, "up", r.stderr, "Installing Docker engine", "Registering emulators for foreign images (x86_64)")
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

	for _, tc := range []struct{ platform, busybox, tag, uname, arch string }{
		{"", busyboxArm64, "e2e-arm64", "aarch64", "arm64"},
		{"linux/amd64", busyboxAmd64, "e2e-amd64", "x86_64", "amd64"},
	} {
		t.Run("host docker builds and runs "+tc.arch+" through the socket", func(t *testing.T) {
			build := scratchImage(t, tc.busybox)
			var platform []string
			if tc.platform != "" {
				platform = []string{"--platform", tc.platform}
			}
			hostDocker(t, e, append(append([]string{"build", "-q", "-t", tc.tag}, platform...), build)...)
			if got := hostDocker(t, e, "image", "inspect", "--format", "{{.Architecture}}", tc.tag); got != tc.arch {
				t.Errorf("image %s architecture %q, want %s", tc.tag, got, tc.arch)
			}
			if got := hostDocker(t, e, append(append([]string{"run", "--rm"}, platform...), tc.tag, "uname", "-m")...); got != tc.uname {
				t.Errorf("uname -m in the %s container: %q, want %s", tc.arch, got, tc.uname)
			}
		})
	}

	// The emulator's registration comes back with the VM (systemd-binfmt
	// at boot; a warm up does not provision).
	e.ok(5*time.Minute, "halt")
	r = e.ok(20*time.Minute, "up")
	if strings.Contains(r.stderr, "Registering emulators") {
		t.Errorf("warm up provisioned again:\n%s", r)
	}
	if got := hostDocker(t, e, "run", "--rm", "--platform", "linux/amd64", "e2e-amd64", "uname", "-m"); got != "x86_64" {
		t.Errorf("uname -m in the amd64 container after halt and up: %q", got)
	}
	e.ok(5*time.Minute, "halt")
	e.ok(3*time.Minute, "destroy", "-f")
	e.assertGone("arm")
}

// scratchImage is a build folder for a FROM-scratch image of busybox.
func scratchImage(t *testing.T, busybox string) string {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "busybox"), data, 0o755)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(
		"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"/bin/sh\"]\n"), 0o644)
	return dir
}

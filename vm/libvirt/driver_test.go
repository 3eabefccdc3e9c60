package libvirt

import (
	"encoding/binary"
	"encoding/xml"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/internal/golden"
	"github.com/devbox-vm/devbox/vm"
)

func testSpec(accel string) vm.Spec { return archSpec("x86_64", accel) }

func archSpec(arch, accel string) vm.Spec {
	return vm.Spec{
		Name: "devbox-demo-abc123", Instance: "demo", Home: "/home/u/.local/share/devbox", User: "dev",
		CPUs: 2, MemoryMiB: 2048, DiskBytes: 20 << 30, Arch: arch, Accel: accel,
		ConsoleLog: "/home/u/.local/share/devbox/instances/demo/console.log", SSHPort: 40022,
		// As devbox sets it: virtio-fs is for Linux hosts (kvm, tcg), never macOS (hvf).
		SharedMemory: accel != "hvf",
	}
}

var (
	goldenArches = []string{"x86_64", "aarch64"}
	goldenAccels = []string{"tcg", "kvm", "hvf"}
)

func goldenDomain(arch, accel string) string { return "domain-" + arch + "-" + accel + ".xml" }

// TestDomainGolden: one golden file per arch and accel; make lint checks
// each against libvirt's schema (scripts/validate-golden.sh).
func TestDomainGolden(t *testing.T) {
	for _, arch := range goldenArches {
		for _, accel := range goldenAccels {
			out, err := RenderDomain(archSpec(arch, accel))
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, goldenDomain(arch, accel), out)
		}
	}
}

func TestDomainEscapesAndParsesBack(t *testing.T) {
	spec := testSpec("tcg")
	spec.Home = `/tmp/a<b>&'c"`
	out, err := RenderDomain(spec)
	if err != nil {
		t.Fatal(err)
	}
	var desc domainDesc
	if err := xml.Unmarshal(out, &desc); err != nil {
		t.Fatalf("rendered domain is not XML: %v\n%s", err, out)
	}
	m := desc.Meta.Instance
	if m == nil || m.Home != spec.Home || m.SSHPort != 40022 || m.User != "dev" || m.Accel != "tcg" || m.Arch != "x86_64" {
		t.Errorf("metadata did not round-trip: %+v", m)
	}
	if desc.VCPU != 2 || toMiB(desc.Memory.Value, desc.Memory.Unit) != 2048 {
		t.Errorf("cpu/memory: %+v", desc)
	}
	if !strings.Contains(string(out), "<domain type='qemu'") {
		t.Error("tcg must render domain type qemu")
	}
}

func TestWithSSHPort(t *testing.T) {
	out, _ := RenderDomain(testSpec("tcg"))
	moved := withSSHPort(string(out), 41000)
	if strings.Contains(moved, "40022") {
		t.Error("old port left in the XML")
	}
	if !strings.Contains(moved, "hostfwd=tcp:127.0.0.1:41000-:22") || !strings.Contains(moved, "<devbox:ssh-port>41000</devbox:ssh-port>") {
		t.Errorf("port not moved:\n%s", moved)
	}
}

func TestPortHelpers(t *testing.T) {
	p, err := freePort()
	if err != nil || p == 0 {
		t.Fatal(p, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if portFree(l.Addr().(*net.TCPAddr).Port) {
		t.Error("a listening port reported free")
	}
}

func TestSocketPath(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	u, _ := url.Parse("qemu:///session")
	if got := SocketPath(u); got != filepath.Join(dir, "libvirt", "libvirt-sock") {
		t.Errorf("session socket = %s", got)
	}
	os.MkdirAll(filepath.Join(dir, "libvirt"), 0o700)
	os.WriteFile(filepath.Join(dir, "libvirt", "virtqemud-sock"), nil, 0o600)
	if got := SocketPath(u); got != filepath.Join(dir, "libvirt", "virtqemud-sock") {
		t.Errorf("modular session socket = %s", got)
	}
	u, _ = url.Parse("qemu:///system?socket=/x/y.sock")
	if got := SocketPath(u); got != "/x/y.sock" {
		t.Errorf("explicit socket = %s", got)
	}
}

// qcow2Box writes a 4 KiB qcow2 image of version 3 and the given virtual
// size; backing, if set, is named as its backing file (at offset 1024).
func qcow2Box(t *testing.T, path string, size uint64, backing string) string {
	t.Helper()
	b := make([]byte, 4096)
	be := binary.BigEndian
	copy(b, "QFI\xfb")
	be.PutUint32(b[4:], 3)
	if backing != "" {
		be.PutUint64(b[8:], 1024)
		be.PutUint32(b[16:], uint32(len(backing)))
		copy(b[1024:], backing)
	}
	be.PutUint32(b[20:], 9) // 512-byte clusters: the header area ends at 512
	be.PutUint64(b[24:], size)
	be.PutUint32(b[96:], 4)
	be.PutUint32(b[100:], 104)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInspectBox(t *testing.T) {
	dir := t.TempDir()
	q := qcow2Box(t, filepath.Join(dir, "b.qcow2"), 2<<30, "")
	if n, err := inspectBox(q, "qcow2"); err != nil || n != 2<<30 {
		t.Errorf("qcow2 size = %d, %v", n, err)
	}
	r := filepath.Join(dir, "b.raw")
	os.WriteFile(r, make([]byte, 4096), 0o644)
	if n, err := inspectBox(r, "raw"); err != nil || n != 4096 {
		t.Errorf("raw size = %d, %v", n, err)
	}
	if _, err := inspectBox(r, "qcow2"); err == nil {
		t.Error("raw bytes accepted as qcow2")
	}
	garbled := filepath.Join(dir, "garbled.qcow2")
	os.WriteFile(garbled, []byte("QFI\xfb\x00\x00\x00\x00"), 0o644)
	if _, err := inspectBox(garbled, "qcow2"); err == nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), "version 0") {
		t.Errorf("garbled header: %v", err)
	}
	secret := filepath.Join(dir, "host-secret")
	evil := qcow2Box(t, filepath.Join(dir, "evil.qcow2"), 1<<20, secret)
	// Declared raw or qcow2: libvirt must never see the header either way.
	for _, format := range []string{"qcow2", "raw"} {
		_, err := inspectBox(evil, format)
		want := "box " + evil + `: refused: its qcow2 header names a backing file "` + secret + `"; a box must be self-contained (hint: qemu-img convert -O qcow2 it into a standalone image)`
		if err == nil || err.Error() != want {
			t.Errorf("%s:\n got %v\nwant %s", format, err, want)
		}
	}
}

func TestFirmwareHint(t *testing.T) {
	missing := errors.New("operation failed: Unable to find any firmware to satisfy 'efi'")
	if h := firmwareHint(missing, "darwin"); !strings.Contains(h, "brew install qemu") {
		t.Errorf("darwin hint: %q", h)
	}
	if h := firmwareHint(missing, "linux"); !strings.Contains(h, "apt install qemu-efi-aarch64") {
		t.Errorf("linux hint: %q", h)
	}
	if h := firmwareHint(errors.New("some other failure"), "linux"); h != "" {
		t.Errorf("hint for an unrelated error: %q", h)
	}
}

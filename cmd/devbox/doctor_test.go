package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/internal/doctor"
	"github.com/devbox-vm/devbox/vm"
	"github.com/devbox-vm/devbox/vm/libvirt"
)

type doctorLibvirt struct{ probe libvirt.Probe }

func (d doctorLibvirt) Probe(context.Context, string) (libvirt.Probe, error) { return d.probe, nil }
func (d doctorLibvirt) Close() error                                         { return nil }

// setupDoctor points doctor at a project folder holding config (none when
// empty) and at a host that has everything, with libvirt given by connect.
func setupDoctor(t *testing.T, cfg string, connect func(context.Context, string) (doctor.Libvirt, error)) *[]string {
	t.Helper()
	project := t.TempDir()
	t.Setenv("DEVBOX_HOME", t.TempDir())
	t.Setenv("DEVBOX_ACCEL", "")
	t.Setenv("LIBVIRT_DEFAULT_URI", "qemu:///session")
	if cfg != "" {
		if err := os.WriteFile(filepath.Join(project, "devbox.yaml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(project)
	var uris []string
	old := doctorEnv
	doctorEnv = func() doctor.Env {
		e := old()
		e.GOOS, e.HostArch, e.CPUInfo = "linux", "x86_64", ""
		e.Connect = func(ctx context.Context, uri string) (doctor.Libvirt, error) {
			uris = append(uris, uri)
			return connect(ctx, uri)
		}
		e.Socket = func(string) string { return "/run/user/1000/libvirt/virtqemud-sock" }
		e.LookPath = func(name string) (string, error) { return "/usr/bin/" + name, nil }
		e.KVM = func() (bool, bool) { return true, true }
		e.FreeSpace = func(string) (uint64, error) { return 100 << 30, nil }
		return e
	}
	t.Cleanup(func() { doctorEnv = old })
	return &uris
}

func healthyLibvirt(context.Context, string) (doctor.Libvirt, error) {
	return doctorLibvirt{libvirt.Probe{LibvirtVersion: "9.0.0", Emulator: "/usr/bin/qemu-system-x86_64", DomainTypes: []string{"kvm", "qemu"},
		Pool: libvirt.PoolProbe{Name: "devbox", Exists: true, Active: true, Path: "/home/u/.local/share/libvirt/images/devbox", Local: true}}}, nil
}

func TestDoctorHealthy(t *testing.T) {
	uris := setupDoctor(t, "name: demo\nbox: b.qcow2\n", healthyLibvirt)
	code, out, errOut := run(t, "doctor")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q\n%s", code, errOut, out)
	}
	for _, want := range []string{
		" ✓ config: ",
		" ✓ libvirt: qemu:///session at /run/user/1000/libvirt/virtqemud-sock (libvirt 9.0.0)\n",
		" ✓ qemu: /usr/bin/qemu-system-x86_64 for x86_64 guests\n",
		" ✓ accelerator: kvm (/dev/kvm)\n",
		" ✓ storage pool: devbox at /home/u/.local/share/libvirt/images/devbox, 100.0 GiB free\n",
		" ✓ docker: docker CLI at /usr/bin/docker\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if len(*uris) != 1 || (*uris)[0] != "qemu:///session" {
		t.Errorf("connected to %v", *uris)
	}
}

// Without libvirt doctor fails, prints the fix under the check, and still
// checks the host; an invalid config fails too, with the host checked on
// the defaults.
func TestDoctorFailures(t *testing.T) {
	down := func(_ context.Context, uri string) (doctor.Libvirt, error) {
		return nil, fmt.Errorf("%w: connect to libvirt %s: socket /s: connection refused (hint: start your own libvirt daemon)", vm.ErrUnavailable, uri)
	}
	uris := setupDoctor(t, "name: demo\nbox: b.qcow2\ncpus: 100\n", down)
	code, out, errOut := run(t, "doctor")
	if code != 1 || errOut != "devbox: devbox up would fail: see config, libvirt\n" {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		" ✗ config: ", "   - cpus: 100 must be between 1 and 64\n   (checking this host with the defaults: x86_64 guests, qemu:///session)\n",
		" ✗ libvirt: connect to libvirt qemu:///session: socket /s: connection refused\n   fix: start your own libvirt daemon\n",
		" ✓ qemu: /usr/bin/qemu-system-x86_64 for x86_64 guests (on PATH; libvirt not asked)\n",
		" ! storage pool: not checked",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if len(*uris) != 1 || (*uris)[0] != "qemu:///session" {
		t.Errorf("connected to %v", *uris)
	}

	code, out, _ = run(t, "doctor", "--json")
	var rs []doctor.Result
	if err := json.Unmarshal([]byte(out), &rs); err != nil || code != 1 {
		t.Fatalf("exit %d, %v:\n%s", code, err, out)
	}
	if len(rs) < 7 || rs[1] != (doctor.Result{Name: "libvirt", Status: doctor.Fail,
		Found: "connect to libvirt qemu:///session: socket /s: connection refused", Fix: "start your own libvirt daemon"}) {
		t.Errorf("json: %+v", rs)
	}
}

// With no devbox.yaml doctor checks the host alone, and only warns.
func TestDoctorWithoutConfig(t *testing.T) {
	setupDoctor(t, "", healthyLibvirt)
	code, out, _ := run(t, "doctor")
	if code != 0 || !strings.Contains(out, " ! config: no devbox.yaml in this folder or a parent: checking this host with the defaults: x86_64 guests, qemu:///session\n   fix: ") {
		t.Errorf("exit %d\n%s", code, out)
	}
}

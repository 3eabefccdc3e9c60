package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/instance"
	"github.com/devbox-vm/devbox/vm"
	"github.com/devbox-vm/devbox/vm/libvirt"
)

// fakeLibvirt answers Probe with a fixed probe.
type fakeLibvirt struct {
	probe  libvirt.Probe
	err    error
	arch   string
	closed bool
}

func (f *fakeLibvirt) Probe(_ context.Context, arch string) (libvirt.Probe, error) {
	f.arch = arch
	return f.probe, f.err
}

func (f *fakeLibvirt) Close() error { f.closed = true; return nil }

const gib = 1 << 30

// goodProbe is a Linux host where everything devbox needs is in place.
func goodProbe() libvirt.Probe {
	return libvirt.Probe{
		LibvirtVersion: "9.0.0", Arch: "x86_64", Emulator: "/usr/bin/qemu-system-x86_64",
		DomainTypes: []string{"kvm", "qemu"},
		Refused:     map[string]string{"hvf": "the accel 'hvf' is not supported"},
		Pool:        libvirt.PoolProbe{Name: "devbox", Exists: true, Active: true, Path: "/var/lib/libvirt/images/devbox", Local: true, Available: 50 * gib},
	}
}

// testEnv is a Debian 12 user (not root) on bare metal whose host has
// everything; tests take things away.
func testEnv(lv *fakeLibvirt) Env {
	return Env{
		GOOS: "linux", HostArch: "x86_64",
		OSRelease:  map[string]string{"ID": "debian", "VERSION_ID": "12"},
		CPUInfo:    "vendor_id\t: AuthenticAMD\nflags\t\t: fpu vme svm\n",
		Getenv:     func(string) string { return "" },
		DefaultURI: func() string { return "qemu:///system" },
		LookPath: func(name string) (string, error) {
			return "/usr/bin/" + name, nil
		},
		Connect: func(context.Context, string) (Libvirt, error) { return lv, nil },
		Socket: func(uri string) string {
			if strings.Contains(uri, "+ssh") {
				return ""
			}
			return "/var/run/libvirt/libvirt-sock"
		},
		KVM:       func() (bool, bool) { return true, true },
		HVSupport: func() (bool, error) { return false, errors.New("not macOS") },
		Exists:    func(p string) bool { return !strings.Contains(p, "devbox") },
		Writable:  func(string) bool { return true },
		FreeSpace: func(string) (uint64, error) { return 100 * gib, nil },
	}
}

var testHome = instance.Home{State: "/home/u/.local/share/devbox", Cache: "/home/u/.cache/devbox"}

func testInput() Input {
	return Input{ConfigFile: "/p/devbox.yaml", Config: &config.Config{Name: "demo", LibvirtURI: "qemu:///system", Arch: "x86_64", Accel: "auto"}, Home: testHome}
}

// byName indexes results, checking each name appears once.
func byName(t *testing.T, rs []Result) map[string]Result {
	t.Helper()
	m := map[string]Result{}
	for _, r := range rs {
		if _, dup := m[r.Name]; dup {
			t.Errorf("check %s twice", r.Name)
		}
		m[r.Name] = r
	}
	return m
}

func names(rs []Result) string {
	var n []string
	for _, r := range rs {
		n = append(n, r.Name)
	}
	return strings.Join(n, ",")
}

func TestHealthyHost(t *testing.T) {
	lv := &fakeLibvirt{probe: goodProbe()}
	rs := Run(context.Background(), testEnv(lv), testInput())
	if got := names(rs); got != "config,libvirt,qemu,accelerator,storage pool,devbox home,docker" {
		t.Errorf("checks: %s", got)
	}
	for _, r := range rs {
		if r.Status != OK || r.Fix != "" {
			t.Errorf("%+v", r)
		}
	}
	m := byName(t, rs)
	for name, want := range map[string]string{
		"config":       "/p/devbox.yaml (instance demo, x86_64 guest, accel auto, qemu:///system)",
		"libvirt":      "qemu:///system at /var/run/libvirt/libvirt-sock (libvirt 9.0.0)",
		"qemu":         "/usr/bin/qemu-system-x86_64 for x86_64 guests",
		"accelerator":  "kvm (/dev/kvm)",
		"storage pool": "devbox at /var/lib/libvirt/images/devbox, 100.0 GiB free",
		"devbox home":  "instances in /home/u/.local/share/devbox, boxes in /home/u/.cache/devbox, 100.0 GiB free",
		"docker":       "docker CLI at /usr/bin/docker",
	} {
		if m[name].Found != want {
			t.Errorf("%s found %q\nwant %q", name, m[name].Found, want)
		}
	}
	if !lv.closed || lv.arch != "x86_64" {
		t.Errorf("probe arch %q, closed %v", lv.arch, lv.closed)
	}
	if len(Failed(rs)) != 0 {
		t.Errorf("failed: %v", Failed(rs))
	}
}

// A bare Debian host: no libvirt daemon, no QEMU, no docker. Every fix
// is there at once.
func TestBareDebianHost(t *testing.T) {
	env := testEnv(nil)
	env.Connect = func(context.Context, string) (Libvirt, error) {
		return nil, fmt.Errorf("%w: connect to libvirt qemu:///system: socket /var/run/libvirt/libvirt-sock: dial unix: no such file or directory (hint: install libvirt: `sudo apt install libvirt-daemon-system`)", vm.ErrUnavailable)
	}
	env.LookPath = func(string) (string, error) { return "", exec.ErrNotFound }
	env.KVM = func() (bool, bool) { return false, false }
	in := testInput()
	in.Config = nil
	in.ConfigFile, in.ConfigErr = "", errors.New("no devbox.yaml in /p or any parent folder")
	rs := Run(context.Background(), env, in)
	m := byName(t, rs)
	for name, want := range map[string]Result{
		"config": {Status: Warn, Found: "no devbox.yaml in this folder or a parent: checking this host with the defaults: x86_64 guests, qemu:///system",
			Fix: "devbox up needs one: copy devbox.yaml.example, or pass -c FILE"},
		"libvirt": {Status: Fail, Found: "connect to libvirt qemu:///system: socket /var/run/libvirt/libvirt-sock: dial unix: no such file or directory",
			Fix: "install libvirt: `sudo apt install libvirt-daemon-system`"},
		"qemu": {Status: Fail, Found: "qemu-system-x86_64 is not on PATH", Fix: "sudo apt install qemu-system-x86"},
		"accelerator": {Status: Warn, Found: notReachable + "; this host: /dev/kvm does not exist",
			Fix: "sudo modprobe kvm_amd; if /dev/kvm is still missing, enable virtualization (VT-x/AMD-V) in the firmware settings, or nested virtualization for this VM"},
		"storage pool": {Status: Warn, Found: notReachable},
		"docker": {Status: Warn, Found: "no docker command on PATH: devbox up makes no docker context; devbox docker still works",
			Fix: "sudo apt install docker.io"},
	} {
		got := m[name]
		got.Name = ""
		if got != want {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, want)
		}
	}
	if got := strings.Join(Failed(rs), ","); got != "libvirt,qemu" {
		t.Errorf("failed: %s", got)
	}
}

// An Apple silicon Mac: aarch64 guests, hvf, Homebrew's fixes.
func TestMac(t *testing.T) {
	p := goodProbe()
	p.Arch, p.Emulator = "aarch64", "/opt/homebrew/bin/qemu-system-aarch64"
	p.DomainTypes = []string{"hvf", "qemu"}
	p.FirmwareAuto, p.Loaders = true, []string{"/opt/homebrew/share/qemu/edk2-aarch64-code.fd"}
	lv := &fakeLibvirt{probe: p}
	env := testEnv(lv)
	env.GOOS, env.HostArch, env.OSRelease, env.CPUInfo = "darwin", "aarch64", nil, ""
	env.HVSupport = func() (bool, error) { return true, nil }
	env.LookPath = func(string) (string, error) { return "", exec.ErrNotFound }

	// Without a config the guest is of the host's architecture.
	m := byName(t, Run(context.Background(), env, Input{ConfigErr: errors.New("no devbox.yaml"), Home: testHome}))
	if lv.arch != "aarch64" {
		t.Errorf("probed %s", lv.arch)
	}
	if r := m["accelerator"]; r.Status != OK || r.Found != "hvf (Hypervisor.framework)" {
		t.Errorf("accelerator: %+v", r)
	}
	if r := m["firmware"]; r.Status != OK || r.Found != "UEFI for aarch64 guests, picked by libvirt from /opt/homebrew/share/qemu/edk2-aarch64-code.fd" {
		t.Errorf("firmware: %+v", r)
	}
	if r := m["docker"]; r.Fix != "brew install docker" {
		t.Errorf("docker: %+v", r)
	}

	// No QEMU, no firmware, and a Mac without Hypervisor.framework.
	lv.probe = libvirt.Probe{Arch: "aarch64", Refused: map[string]string{"hvf": "no hvf", "qemu": "no emulator"}, Pool: p.Pool}
	env.HVSupport = func() (bool, error) { return false, nil }
	in := testInput()
	in.Config.Arch = "aarch64"
	m = byName(t, Run(context.Background(), env, in))
	if r := m["qemu"]; r.Status != Fail || r.Fix != "brew install qemu" {
		t.Errorf("qemu: %+v", r)
	}
	if r := m["firmware"]; r.Status != Warn || !strings.Contains(r.Found, "see qemu") {
		t.Errorf("firmware: %+v", r)
	}
	if r := m["accelerator"]; r.Status != Warn || !strings.Contains(r.Found, "kern.hv_support is 0") || !strings.Contains(r.Found, "several times slower") {
		t.Errorf("accelerator: %+v", r)
	}
}

func TestFirmware(t *testing.T) {
	env := testEnv(nil)
	env.Root = true
	s := Settings{URI: "qemu:///system", Arch: "aarch64"}
	local := libvirtFacts{Socket: "/var/run/libvirt/libvirt-sock"}
	for _, tc := range []struct {
		name  string
		facts libvirtFacts
		probe *libvirt.Probe
		want  Result
	}{
		{"autoselection", local, &libvirt.Probe{DomainTypes: []string{"qemu"}, FirmwareAuto: true},
			Result{Name: "firmware", Status: OK, Found: "UEFI for aarch64 guests, picked by libvirt"}},
		{"loader without descriptor", local, &libvirt.Probe{DomainTypes: []string{"qemu"}, Loaders: []string{"/usr/share/AAVMF/AAVMF_CODE.fd"}},
			Result{Name: "firmware", Status: Fail, Found: "libvirt has no UEFI firmware it can pick for aarch64 guests (it lists /usr/share/AAVMF/AAVMF_CODE.fd, but no firmware descriptor describes it)",
				Fix: "apt install qemu-efi-aarch64"}},
		{"remote host", libvirtFacts{}, &libvirt.Probe{DomainTypes: []string{"qemu"}},
			Result{Name: "firmware", Status: Fail, Found: "libvirt has no UEFI firmware it can pick for aarch64 guests",
				Fix: "on the libvirt host, install UEFI firmware for aarch64 guests (edk2, AAVMF) (Debian/Ubuntu: apt install qemu-efi-aarch64)"}},
		{"libvirt down", local, nil, Result{Name: "firmware", Status: Warn, Found: notReachable}},
	} {
		tc.facts.Probe = tc.probe
		if got := checkFirmware(env, s, tc.facts); got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

func TestEmulator(t *testing.T) {
	env := testEnv(nil)
	s := Settings{URI: "qemu+ssh://build/system", Arch: "aarch64"}
	r := checkEmulator(env, s, libvirtFacts{Probe: &libvirt.Probe{Refused: map[string]string{}}})
	if r.Status != Fail || r.Found != "libvirt knows no QEMU for aarch64 guests (qemu-system-aarch64)" ||
		r.Fix != "on the libvirt host, install QEMU's aarch64 emulator (qemu-system-aarch64) (Debian/Ubuntu: apt install qemu-system-arm)" {
		t.Errorf("remote, none: %+v", r)
	}
	// An emulator libvirt cannot use.
	p := &libvirt.Probe{Emulator: "/usr/bin/qemu-system-aarch64", Refused: map[string]string{"qemu": "cannot execute binary"}}
	r = checkEmulator(env, s, libvirtFacts{Socket: "/s", Probe: p})
	if r.Status != Fail || !strings.Contains(r.Found, "cannot execute binary") || r.Fix != "sudo apt install qemu-system-arm" {
		t.Errorf("unusable: %+v", r)
	}
	if r := checkEmulator(env, s, libvirtFacts{}); r.Status != Warn || r.Found != notReachable {
		t.Errorf("remote, unreachable: %+v", r)
	}
	if r := checkEmulator(env, s, libvirtFacts{Socket: "/s"}); r.Status != OK || r.Found != "/usr/bin/qemu-system-aarch64 for aarch64 guests (on PATH; libvirt not asked)" {
		t.Errorf("local, unreachable: %+v", r)
	}
}

func TestAccel(t *testing.T) {
	kvm := &libvirt.Probe{DomainTypes: []string{"kvm", "qemu"}, Refused: map[string]string{"hvf": "no hvf"}}
	tcgOnly := &libvirt.Probe{DomainTypes: []string{"qemu"}, Refused: map[string]string{"kvm": "the accel 'kvm' is not supported", "hvf": "no hvf"}}
	nested := func(e *Env) { e.CPUInfo = "vendor_id : GenuineIntel\nflags : fpu hypervisor vmx\n" }
	for _, tc := range []struct {
		name   string
		s      Settings
		change func(*Env)
		probe  *libvirt.Probe
		status Status
		found  string
		fix    string
	}{
		{"kvm", Settings{Accel: "auto", Arch: "x86_64"}, nil, kvm, OK, "kvm (/dev/kvm)", ""},
		{"nested kvm", Settings{Accel: "auto", Arch: "x86_64"}, nested, kvm, Warn, "kvm, nested: this host is itself a VM",
			"if devbox up waits for SSH until it times out: DEVBOX_ACCEL=tcg devbox up, or accel: tcg in devbox.yaml"},
		{"tcg asked", Settings{Accel: "tcg", AccelFrom: "DEVBOX_ACCEL", Arch: "x86_64"}, nested, kvm, OK,
			"tcg (software emulation, several times slower), as DEVBOX_ACCEL=tcg asks; kvm is offered: accel auto would use it", ""},
		{"kvm asked, missing", Settings{Accel: "kvm", AccelFrom: "devbox.yaml", Arch: "x86_64"}, func(e *Env) { e.KVM = func() (bool, bool) { return false, false } }, tcgOnly, Fail,
			"kvm, as accel: kvm in devbox.yaml asks, is not offered for x86_64 guests: the accel 'kvm' is not supported; /dev/kvm does not exist",
			"sudo modprobe kvm_amd; if /dev/kvm is still missing, enable virtualization (VT-x/AMD-V) in the firmware settings, or nested virtualization for this VM; or use accel: auto (tcg when nothing better is offered)"},
		{"session without kvm group", Settings{Accel: "auto", Arch: "x86_64", URI: "qemu:///session"}, func(e *Env) { e.KVM = func() (bool, bool) { return true, false } }, tcgOnly, Warn,
			"tcg only (software emulation), several times slower: libvirt offers no kvm (the accel 'kvm' is not supported); /dev/kvm exists but you may not open it",
			"sudo usermod -aG kvm $USER, then log in again"},
		{"foreign arch", Settings{Accel: "auto", Arch: "aarch64"}, nil, tcgOnly, Warn,
			"tcg: aarch64 guests on this x86_64 host run under software emulation only", "to get kvm, use a box for x86_64 (arch: x86_64)"},
		{"hvf on a Mac lacking it", Settings{Accel: "auto", Arch: "x86_64"}, func(e *Env) {
			e.GOOS = "darwin"
			e.HVSupport = func() (bool, error) { return true, nil }
		}, tcgOnly, Warn, "libvirt offers no hvf (no hvf); kern.hv_support is 1, so QEMU or libvirt lack hvf", "brew upgrade qemu libvirt"},
		{"Mac, libvirt down", Settings{Accel: "auto", Arch: "x86_64"}, func(e *Env) {
			e.GOOS = "darwin"
			e.HVSupport = func() (bool, error) { return true, nil }
		}, nil, Warn, notReachable + "; this host: kern.hv_support is 1", ""},
		{"not an accelerator", Settings{Accel: "fast", AccelFrom: "DEVBOX_ACCEL", Arch: "x86_64"}, nil, kvm, Fail,
			`accel "fast", as DEVBOX_ACCEL=fast asks, is not one of auto, kvm, hvf, tcg`, "use accel: auto"},
	} {
		env := testEnv(nil)
		if tc.change != nil {
			tc.change(&env)
		}
		if tc.s.URI == "" {
			tc.s.URI = "qemu:///system"
		}
		r := checkAccel(env, tc.s, tc.probe)
		if r.Name != "accelerator" || r.Status != tc.status || !strings.Contains(r.Found, tc.found) || !strings.HasPrefix(r.Fix, tc.fix) || (tc.fix == "") != (r.Fix == "") {
			t.Errorf("%s:\n got %+v\nwant %s %q, fix %q", tc.name, r, tc.status, tc.found, tc.fix)
		}
	}
}

func TestPool(t *testing.T) {
	pool := libvirt.PoolProbe{Name: "devbox", Exists: true, Active: true, Path: "/var/lib/libvirt/images/devbox", Local: true, Available: 50 * gib}
	for _, tc := range []struct {
		name   string
		change func(*libvirt.PoolProbe)
		free   uint64
		status Status
		found  string
		fix    string
	}{
		{"roomy", nil, 20 * gib, OK, "devbox at /var/lib/libvirt/images/devbox, 20.0 GiB free", ""},
		{"tight", nil, 5 * gib, Warn, "devbox at /var/lib/libvirt/images/devbox, 5.0 GiB free",
			"free space on the filesystem of /var/lib/libvirt/images/devbox, boxes and instance disks are kept there: at least 10.0 GiB is comfortable"},
		{"full", nil, 1000 << 20, Fail, "devbox at /var/lib/libvirt/images/devbox, 1000 MiB free", "free space"},
		{"absent", func(p *libvirt.PoolProbe) { p.Exists, p.Active = false, false }, 20 * gib, Warn,
			"devbox does not exist yet: devbox up creates it at /var/lib/libvirt/images/devbox, 20.0 GiB free", ""},
		{"absent and full", func(p *libvirt.PoolProbe) { p.Exists, p.Active = false, false }, 1 * gib, Fail, "does not exist yet", "free space"},
		{"inactive", func(p *libvirt.PoolProbe) { p.Active = false }, 20 * gib, Warn, "devbox at /var/lib/libvirt/images/devbox is not active: devbox up starts it, 20.0 GiB free", ""},
		{"remote: libvirt's figure", func(p *libvirt.PoolProbe) { p.Local = false }, 1, OK, "50.0 GiB free", ""},
		{"remote, inactive: unknown", func(p *libvirt.PoolProbe) { p.Local, p.Active = false, false }, 1, Warn, "devbox up starts it", ""},
		{"unreadable", func(p *libvirt.PoolProbe) { p.Err = errors.New("look up storage pool devbox: access denied") }, 1, Fail, "access denied", ""},
	} {
		p := pool
		if tc.change != nil {
			tc.change(&p)
		}
		env := testEnv(nil)
		var statted string
		env.FreeSpace = func(path string) (uint64, error) { statted = path; return tc.free, nil }
		r := checkPool(env, libvirtFacts{Probe: &libvirt.Probe{Pool: p}})
		if r.Status != tc.status || !strings.Contains(r.Found, tc.found) || !strings.HasPrefix(r.Fix, tc.fix) || (tc.fix == "") != (r.Fix == "") {
			t.Errorf("%s:\n got %+v\nwant %s %q, fix %q", tc.name, r, tc.status, tc.found, tc.fix)
		}
		// A pool not made yet is measured at its nearest existing parent.
		if p.Local && p.Err == nil && statted != "/var/lib/libvirt/images" {
			t.Errorf("%s: statfs %q", tc.name, statted)
		}
	}
}

func TestHome(t *testing.T) {
	env := testEnv(nil)
	in := testInput()
	env.Writable = func(dir string) bool { return dir != "/home/u/.cache" }
	env.Exists = func(p string) bool {
		return p == "/" || p == "/home" || p == "/home/u" || p == "/home/u/.cache" || p == "/home/u/.local/share"
	}
	r := checkHome(env, in)
	if r.Status != Fail || r.Found != "/home/u/.cache/devbox cannot be made: /home/u/.cache is not writable" || r.Fix != "set DEVBOX_HOME to a folder you can write" {
		t.Errorf("unwritable: %+v", r)
	}
	env.Writable = func(string) bool { return true }
	env.FreeSpace = func(p string) (uint64, error) {
		if p != "/home/u/.cache" {
			t.Errorf("statfs %s", p)
		}
		return 3 * gib, nil
	}
	if r := checkHome(env, in); r.Status != Warn || !strings.HasSuffix(r.Found, ", 3.0 GiB free") || !strings.Contains(r.Fix, "downloaded boxes") {
		t.Errorf("tight: %+v", r)
	}
	in.HomeErr = errors.New("find home folder: $HOME is not defined (hint: set DEVBOX_HOME)")
	if r := checkHome(env, in); r.Status != Fail || !strings.Contains(r.Found, "HOME") {
		t.Errorf("no home: %+v", r)
	}
}

func TestConfig(t *testing.T) {
	s := Settings{URI: "qemu:///session", Arch: "x86_64"}
	bad := Input{ConfigFile: "/p/devbox.yaml", ConfigErr: errors.New("/p/devbox.yaml is invalid:\n  - cpus: 0 must be between 1 and 64")}
	r := checkConfig(bad, s)
	if r.Status != Fail || r.Found != "/p/devbox.yaml is invalid:\n  - cpus: 0 must be between 1 and 64\n(checking this host with the defaults: x86_64 guests, qemu:///session)" ||
		r.Fix != "edit /p/devbox.yaml: devbox.yaml.example documents every field" {
		t.Errorf("invalid: %+v", r)
	}
	gone := Input{ConfigFile: "/p/other.yaml", ConfigErr: fmt.Errorf("read config: %w", fs.ErrNotExist)}
	if r := checkConfig(gone, s); r.Status != Fail || !strings.HasPrefix(r.Fix, "pass -c an existing file") {
		t.Errorf("-c missing: %+v", r)
	}
}

func TestSettings(t *testing.T) {
	env := testEnv(nil)
	if s := SettingsFor(env, nil); s != (Settings{URI: "qemu:///system", Arch: "x86_64", Accel: "auto", AccelFrom: "default"}) {
		t.Errorf("defaults: %+v", s)
	}
	env.Getenv = func(k string) string {
		if k == "DEVBOX_ACCEL" {
			return "tcg"
		}
		return ""
	}
	cfg := &config.Config{LibvirtURI: "qemu:///session", Arch: "aarch64", Accel: "kvm"}
	if s := SettingsFor(env, cfg); s != (Settings{URI: "qemu:///session", Arch: "aarch64", Accel: "tcg", AccelFrom: "DEVBOX_ACCEL"}) {
		t.Errorf("config and env: %+v", s)
	}
}

func TestProbeErrorFailsLibvirt(t *testing.T) {
	lv := &fakeLibvirt{err: errors.New("libvirt capabilities: internal error")}
	m := byName(t, Run(context.Background(), testEnv(lv), testInput()))
	if r := m["libvirt"]; r.Status != Fail || r.Found != "qemu:///system at /var/run/libvirt/libvirt-sock: connected, but libvirt capabilities: internal error" {
		t.Errorf("libvirt: %+v", r)
	}
	if !lv.closed {
		t.Error("connection left open")
	}
}

func TestInstallCommands(t *testing.T) {
	for _, tc := range []struct {
		goos string
		os   map[string]string
		root bool
		want string
	}{
		{"linux", map[string]string{"ID": "debian", "VERSION_ID": "13"}, true, "apt install docker-cli"},
		{"linux", map[string]string{"ID": "debian", "VERSION_ID": "12"}, false, "sudo apt install docker.io"},
		{"linux", map[string]string{"ID": "linuxmint", "ID_LIKE": "ubuntu debian", "VERSION_ID": "22"}, false, "sudo apt install docker.io"},
		{"linux", map[string]string{"ID": "fedora"}, false, "install the docker CLI with your package manager (Debian/Ubuntu: apt install docker.io; macOS: brew install docker)"},
		{"darwin", nil, false, "brew install docker"},
	} {
		env := Env{GOOS: tc.goos, OSRelease: tc.os, Root: tc.root}
		if got := env.install(env.dockerCLI()); got != tc.want {
			t.Errorf("%s %v: %q, want %q", tc.goos, tc.os, got, tc.want)
		}
	}
}

func TestHostFacts(t *testing.T) {
	osr := parseOSRelease("# comment\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n")
	if osr["ID"] != "debian" || osr["VERSION_ID"] != "12" || osr["PRETTY_NAME"] != "Debian GNU/Linux 12 (bookworm)" {
		t.Errorf("os-release: %v", osr)
	}
	if !runsInVM("processor\t: 0\nflags\t\t: fpu hypervisor\n") || runsInVM("flags : fpu vmx\n") || runsInVM("") {
		t.Error("runsInVM")
	}
	if kvmModule("vendor_id\t: GenuineIntel\n") != "kvm_intel" || kvmModule("CPU implementer : 0x41\n") != "" {
		t.Error("kvmModule")
	}
	found, hint := libvirtMessage(fmt.Errorf("%w: connect to libvirt qemu:///system: refused (hint: start it (as root))", vm.ErrUnavailable))
	if found != "connect to libvirt qemu:///system: refused" || hint != "start it (as root)" {
		t.Errorf("libvirtMessage: %q, %q", found, hint)
	}
}

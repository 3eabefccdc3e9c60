package libvirt

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// TestGoldenSetIsComplete: a golden domain file no test renders would
// still pass make lint's schema check while checking nothing.
func TestGoldenSetIsComplete(t *testing.T) {
	got, err := filepath.Glob(filepath.Join("testdata", "domain-*.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, arch := range goldenArches {
		for _, accel := range goldenAccels {
			want = append(want, filepath.Join("testdata", goldenDomain(arch, accel)))
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("golden domain files = %q, want %q (remove stale ones; go test -update writes missing ones)", got, want)
	}
}

func render(t *testing.T, arch, accel string) string {
	t.Helper()
	out, err := RenderDomain(archSpec(arch, accel))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestAarch64Domain(t *testing.T) {
	for _, tc := range []struct {
		accel, domainType, cpu, gic string
	}{
		{"tcg", "qemu", "<model fallback='forbid'>neoverse-n1</model>", "<gic version='3'/>"},
		{"kvm", "kvm", "<cpu mode='host-passthrough'/>", "<gic version='host'/>"},
		{"hvf", "hvf", "<cpu mode='host-passthrough'/>", "<gic version='3'/>"},
	} {
		x := render(t, "aarch64", tc.accel)
		for _, want := range []string{
			"<domain type='" + tc.domainType + "'", tc.cpu, tc.gic,
			"<os firmware='efi'>", "<type arch='aarch64' machine='virt'>hvm</type>",
			"<feature enabled='no' name='secure-boot'/>",
			"<target type='system-serial' port='0'>", "<model name='pl011'/>",
			"<log file='/home/u/.local/share/devbox/instances/demo/console.log' append='on'/>",
			"<target dev='vda' bus='virtio'/>", "<target dev='vdb' bus='virtio'/>", "<rng model='virtio'>",
			"hostfwd=tcp:127.0.0.1:40022-:22", "virtio-net-pci,netdev=devboxnet0,addr=0x1e,romfile=",
			"<devbox:arch>aarch64</devbox:arch>",
		} {
			if !strings.Contains(x, want) {
				t.Errorf("aarch64/%s lacks %s", tc.accel, want)
			}
		}
		for _, unwanted := range []string{"<apic/>", "machine='pc'", "bus='ide'", "bus='sata'", "ps2"} {
			if strings.Contains(x, unwanted) {
				t.Errorf("aarch64/%s has %s", tc.accel, unwanted)
			}
		}
	}
}

func TestX86CPU(t *testing.T) {
	if x := render(t, "x86_64", "tcg"); strings.Contains(x, "<cpu") {
		t.Errorf("x86_64/tcg: want QEMU's default CPU (qemu64, no <cpu>):\n%s", x)
	}
	for _, accel := range []string{"kvm", "hvf"} {
		x := render(t, "x86_64", accel)
		if !strings.Contains(x, "<cpu mode='host-passthrough'/>") || !strings.Contains(x, "<domain type='"+accel+"'") {
			t.Errorf("x86_64/%s:\n%s", accel, x)
		}
		if strings.Contains(x, "firmware=") || strings.Contains(x, "romfile") {
			t.Errorf("x86_64/%s changed firmware or network ROM:\n%s", accel, x)
		}
	}
}

func TestCPUModel(t *testing.T) {
	for _, tc := range []struct {
		arch, accel, model, want string
	}{
		{"x86_64", "tcg", "max", "<cpu mode='maximum'/>"},
		{"x86_64", "kvm", "host", "<cpu mode='host-passthrough'/>"},
		{"x86_64", "kvm", "Haswell", "<model fallback='forbid'>Haswell</model>"},
		{"aarch64", "tcg", "cortex-a72", "<cpu mode='custom' match='exact' check='none'>"},
		{"aarch64", "hvf", "", "<cpu mode='host-passthrough'/>"},
	} {
		s := archSpec(tc.arch, tc.accel)
		s.CPUModel = tc.model
		out, err := RenderDomain(s)
		if err != nil || !strings.Contains(string(out), tc.want) || strings.Count(string(out), "<cpu") != 1 {
			t.Errorf("%s/%s cpu_model %q: %v, want one <cpu> with %s:\n%s", tc.arch, tc.accel, tc.model, err, tc.want, out)
		}
	}
	s := archSpec("x86_64", "tcg")
	s.CPUModel = "host"
	if _, err := RenderDomain(s); err == nil || !strings.Contains(err.Error(), "cpu_model host needs kvm or hvf") {
		t.Errorf("host under tcg: %v", err)
	}
}

func TestRenderDomainRefusesUnknownArch(t *testing.T) {
	for _, arch := range []string{"", "arm64", "riscv64"} {
		_, err := RenderDomain(archSpec(arch, "tcg"))
		if err == nil || !strings.Contains(err.Error(), "is not x86_64 or aarch64") {
			t.Errorf("arch %q: %v", arch, err)
		}
	}
}

// capsLibvirt offers domain capabilities only for the listed
// "arch/domaintype" pairs, and records what it was asked.
type capsLibvirt struct {
	*fakeLibvirt
	offered []string
	asked   []string
}

func (c *capsLibvirt) ConnectGetDomainCapabilities(_, arch, _, virtType golibvirt.OptString, _ golibvirt.ConnectGetDomainCapabilitiesFlags) (string, error) {
	q := arch[0] + "/" + virtType[0]
	c.asked = append(c.asked, q)
	if !slices.Contains(c.offered, q) {
		return "", libvirtErr(golibvirt.ErrInvalidArg, "invalid argument: KVM is not supported by '/usr/bin/qemu-system-aarch64' on this host")
	}
	return "<domainCapabilities/>", nil
}

func TestResolveAccelAsksForTheArch(t *testing.T) {
	// An x86_64 host with kvm and both emulators.
	host := []string{"x86_64/kvm", "x86_64/qemu", "aarch64/qemu"}
	for _, tc := range []struct {
		want, arch string
		offered    []string
		accel      string
		fellBack   bool
		err        string
	}{
		{"auto", "x86_64", host, "kvm", false, ""},
		{"auto", "aarch64", host, "tcg", true, ""},
		{"tcg", "aarch64", host, "tcg", false, ""},
		{"kvm", "aarch64", host, "", false, "accel kvm is not offered by libvirt at qemu:///system for aarch64 guests (hint: use accel: auto or tcg)"},
		{"hvf", "x86_64", host, "", false, "accel hvf is not offered"},
		{"auto", "aarch64", []string{"x86_64/kvm", "x86_64/qemu"}, "", false,
			"libvirt at qemu:///system cannot run aarch64 guests: it has no QEMU emulator for them (hint: install QEMU's aarch64 emulator there (Debian: qemu-system-arm), or set arch to match that host and the box)"},
		{"auto", "aarch64", []string{"aarch64/hvf", "aarch64/qemu"}, "hvf", false, ""},
		{"auto", "arm64", host, "", false, `arch "arm64" is not x86_64 or aarch64`},
	} {
		l := &capsLibvirt{fakeLibvirt: newFakeLibvirt(), offered: tc.offered}
		d := l.driver()
		d.l = l
		accel, fellBack, err := d.ResolveAccel(t.Context(), tc.want, tc.arch)
		name := tc.want + "/" + tc.arch
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want %q", name, err, tc.err)
			}
			continue
		}
		if err != nil || accel != tc.accel || fellBack != tc.fellBack {
			t.Errorf("%s = %s, %v, %v; want %s, %v (asked %q)", name, accel, fellBack, err, tc.accel, tc.fellBack, l.asked)
		}
		for _, q := range l.asked {
			if !strings.HasPrefix(q, tc.arch+"/") {
				t.Errorf("%s asked libvirt about %s", name, q)
			}
		}
	}
}

// TestInspectReadsArch: from devbox's metadata, and from <os><type> for a
// domain defined before devbox recorded it there.
func TestInspectReadsArch(t *testing.T) {
	f := newFakeLibvirt()
	d := f.driver()
	arm := render(t, "aarch64", "tcg")
	old := strings.Replace(render(t, "x86_64", "tcg"), "      <devbox:arch>x86_64</devbox:arch>\n", "", 1)
	old = strings.Replace(old, "devbox-demo-abc123", "devbox-old-abc123", 1)
	for _, x := range []string{arm, old} {
		if _, err := f.DomainDefineXML(x); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]string{"devbox-demo-abc123": "aarch64", "devbox-old-abc123": "x86_64"} {
		info, err := d.Inspect(t.Context(), name)
		if err != nil || info.Arch != want {
			t.Errorf("Inspect(%s).Arch = %q, %v; want %s", name, info.Arch, err, want)
		}
	}
}

func TestOfflineRestrictsUserNet(t *testing.T) {
	for _, offline := range []bool{false, true} {
		s := archSpec("x86_64", "tcg")
		s.Offline = offline
		out, err := RenderDomain(s)
		if err != nil {
			t.Fatal(err)
		}
		netdev := regexp.MustCompile(`value='(user,id=devboxnet0[^']*)'`).FindStringSubmatch(string(out))
		if netdev == nil {
			t.Fatalf("no user netdev:\n%s", out)
		}
		if got := strings.Contains(netdev[1], ",restrict=on,"); got != offline {
			t.Errorf("offline %v: netdev %s", offline, netdev[1])
		}
		if !strings.Contains(netdev[1], "hostfwd=tcp:127.0.0.1:") {
			t.Errorf("offline %v: the SSH forward is gone: %s", offline, netdev[1])
		}
	}
}

package libvirt

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// probeLibvirt is fakeLibvirt plus what Probe asks: host capabilities,
// and domain capabilities per arch and domain type.
type probeLibvirt struct {
	*fakeLibvirt
	caps    string
	domCaps map[string]string // "arch/type" or "arch/type/machine" → XML; absent: refused
	poolXML string
	poolOff bool
	asked   []string
}

func (f *probeLibvirt) ConnectGetLibVersion() (uint64, error) { return 9000000, nil }
func (f *probeLibvirt) ConnectGetCapabilities() (string, error) {
	return f.caps, nil
}

func (f *probeLibvirt) StoragePoolGetXMLDesc(golibvirt.StoragePool, golibvirt.StorageXMLFlags) (string, error) {
	return f.poolXML, nil
}

func (f *probeLibvirt) StoragePoolGetInfo(golibvirt.StoragePool) (uint8, uint64, uint64, uint64, error) {
	if f.poolOff {
		return uint8(golibvirt.StoragePoolInactive), 0, 0, 0, nil
	}
	return uint8(golibvirt.StoragePoolRunning), 100 << 30, 10 << 30, 90 << 30, nil
}

func (f *probeLibvirt) ConnectGetDomainCapabilities(_, arch, machine, virtType golibvirt.OptString, _ golibvirt.ConnectGetDomainCapabilitiesFlags) (string, error) {
	key := arch[0] + "/" + virtType[0]
	if len(machine) > 0 {
		key += "/" + machine[0]
	}
	f.asked = append(f.asked, key)
	if x, ok := f.domCaps[key]; ok {
		return x, nil
	}
	return "", libvirtErr(golibvirt.ErrInvalidArg, "invalid argument: the accel '%s' is not supported by '/usr/bin/qemu-system-%s' on this host", virtType[0], arch[0])
}

const probeCaps = `<capabilities>
  <host><cpu><arch>x86_64</arch></cpu></host>
  <guest><os_type>hvm</os_type><arch name='aarch64'><emulator>/usr/bin/qemu-system-aarch64</emulator><domain type='qemu'/></arch></guest>
  <guest><os_type>hvm</os_type><arch name='x86_64'><emulator>/usr/bin/qemu-system-x86_64</emulator><domain type='qemu'/><domain type='kvm'/></arch></guest>
</capabilities>`

// What libvirt 9.0 answers for machine virt when qemu-efi-aarch64 is
// installed (its firmware descriptors allow autoselection).
const probeVirtCaps = `<domainCapabilities>
  <path>/usr/bin/qemu-system-aarch64</path><domain>qemu</domain><machine>virt-7.2</machine><arch>aarch64</arch>
  <os supported='yes'>
    <enum name='firmware'><value>efi</value></enum>
    <loader supported='yes'>
      <value>/usr/share/AAVMF/AAVMF_CODE.ms.fd</value>
      <value>/usr/share/AAVMF/AAVMF_CODE.fd</value>
      <enum name='type'><value>rom</value><value>pflash</value></enum>
    </loader>
  </os>
</domainCapabilities>`

func newProbeLibvirt() *probeLibvirt {
	f := &probeLibvirt{fakeLibvirt: newFakeLibvirt(), caps: probeCaps, domCaps: map[string]string{
		"x86_64/kvm":        "<domainCapabilities><path>/usr/bin/qemu-system-x86_64</path></domainCapabilities>",
		"x86_64/qemu":       "<domainCapabilities><path>/usr/bin/qemu-system-x86_64</path></domainCapabilities>",
		"x86_64/kvm/pc":     "<domainCapabilities><os><enum name='firmware'/></os></domainCapabilities>",
		"aarch64/qemu":      "<domainCapabilities><path>/usr/bin/qemu-system-aarch64</path></domainCapabilities>",
		"aarch64/qemu/virt": probeVirtCaps,
	}}
	f.pool = true
	f.poolXML = "<pool type='dir'><name>devbox</name><target><path>/srv/pools/devbox</path></target></pool>"
	return f
}

func (f *probeLibvirt) driver(local bool) *Driver {
	d := f.fakeLibvirt.driver()
	d.l, d.local = f, local
	return d
}

func TestProbeX86WithKVM(t *testing.T) {
	f := newProbeLibvirt()
	p, err := f.driver(true).Probe(context.Background(), "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if p.LibvirtVersion != "9.0.0" || p.Emulator != "/usr/bin/qemu-system-x86_64" {
		t.Errorf("probe = %+v", p)
	}
	if !reflect.DeepEqual(p.DomainTypes, []string{"kvm", "qemu"}) || !strings.Contains(p.Refused["hvf"], "not supported") {
		t.Errorf("types %v, refused %v", p.DomainTypes, p.Refused)
	}
	if p.FirmwareAuto || len(p.Loaders) != 0 {
		t.Errorf("x86_64 firmware: %v %v", p.FirmwareAuto, p.Loaders)
	}
	want := PoolProbe{Name: "devbox", Exists: true, Active: true, Path: "/srv/pools/devbox", Local: true, Capacity: 100 << 30, Available: 90 << 30}
	if p.Pool != want {
		t.Errorf("pool = %+v\nwant %+v", p.Pool, want)
	}
	// The domain types are asked as ResolveAccel asks (no machine); only
	// firmware is asked for devbox's machine.
	if got := strings.Join(f.asked, " "); got != "x86_64/kvm x86_64/hvf x86_64/qemu x86_64/kvm/pc" {
		t.Errorf("asked %s", got)
	}
	if len(f.calls) != 0 {
		t.Errorf("probe changed something: %v", f.calls)
	}
}

func TestProbeAarch64FirmwareAndMissingPool(t *testing.T) {
	f := newProbeLibvirt()
	f.pool = false
	p, err := f.driver(true).Probe(context.Background(), "aarch64")
	if err != nil {
		t.Fatal(err)
	}
	if p.Emulator != "/usr/bin/qemu-system-aarch64" || !reflect.DeepEqual(p.DomainTypes, []string{"qemu"}) {
		t.Errorf("probe = %+v", p)
	}
	if !p.FirmwareAuto || !reflect.DeepEqual(p.Loaders, []string{"/usr/share/AAVMF/AAVMF_CODE.ms.fd", "/usr/share/AAVMF/AAVMF_CODE.fd"}) {
		t.Errorf("firmware: %v %v", p.FirmwareAuto, p.Loaders)
	}
	// Absent: where up would create it, and nothing made.
	if p.Pool.Exists || p.Pool.Err != nil || p.Pool.Path != "/var/lib/libvirt/images/devbox" {
		t.Errorf("pool = %+v", p.Pool)
	}
	if len(f.calls) != 0 {
		t.Errorf("probe changed something: %v", f.calls)
	}
}

func TestProbeNoEmulatorAndInactivePool(t *testing.T) {
	f := newProbeLibvirt()
	f.caps = "<capabilities><host/></capabilities>"
	f.domCaps = map[string]string{}
	f.poolOff = true
	p, err := f.driver(false).Probe(context.Background(), "aarch64")
	if err != nil {
		t.Fatal(err)
	}
	if p.Emulator != "" || len(p.DomainTypes) != 0 || len(p.Refused) != 3 || p.FirmwareAuto {
		t.Errorf("probe = %+v", p)
	}
	if !p.Pool.Exists || p.Pool.Active || p.Pool.Local || p.Pool.Available != 0 {
		t.Errorf("pool = %+v", p.Pool)
	}
}

func TestProbeStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := newProbeLibvirt().driver(true).Probe(ctx, "x86_64"); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
}

func TestLocalSocket(t *testing.T) {
	for uri, want := range map[string]string{
		"qemu:///system?socket=/x/sock": "/x/sock",
		"qemu+ssh://build/system":       "",
		"qemu+unix:///system?socket=/y": "/y",
		"not a uri":                     "",
	} {
		if got := LocalSocket(uri); got != want {
			t.Errorf("LocalSocket(%q) = %q, want %q", uri, got, want)
		}
	}
}

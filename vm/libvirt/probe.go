package libvirt

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/url"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// Probe is what libvirt says about running guests of one architecture on
// its host, for devbox doctor. Probing creates and changes nothing.
type Probe struct {
	// LibvirtVersion is the daemon's version, e.g. "9.0.0".
	LibvirtVersion string
	// Arch is the guest architecture asked about: x86_64 or aarch64.
	Arch string
	// Emulator is the QEMU binary libvirt runs for Arch; empty when it
	// knows none (QEMU for Arch is not installed).
	Emulator string
	// DomainTypes are the domain types libvirt offers for Arch, of kvm,
	// hvf and qemu (software emulation, accel tcg), in that order: the
	// same question ResolveAccel asks.
	DomainTypes []string
	// Refused says, in libvirt's words, why a type is not offered.
	Refused map[string]string
	// FirmwareAuto reports that libvirt can pick UEFI firmware itself
	// (<os firmware='efi'>), which is how aarch64 guests boot.
	FirmwareAuto bool
	// Loaders are the firmware files libvirt offers for Arch's machine.
	Loaders []string
	// Pool is devbox's storage pool.
	Pool PoolProbe
}

// PoolProbe describes the devbox storage pool.
type PoolProbe struct {
	Name   string
	Exists bool
	Active bool
	// Path is the pool's folder as libvirt reports it, or where Create
	// would make it when the pool does not exist yet.
	Path string
	// Local reports that the pool is on this machine, so Path can be
	// looked at here; over a remote URI it is on the libvirt host.
	Local bool
	// Capacity and Available are libvirt's figures for an active pool,
	// in bytes, as of its last refresh.
	Capacity, Available uint64
	// Err is why the pool could not be looked at (not its absence).
	Err error
}

// probeAPI is what Probe asks beyond the driver's own api.
type probeAPI interface {
	ConnectGetLibVersion() (uint64, error)
	ConnectGetCapabilities() (string, error)
	StoragePoolGetXMLDesc(pool golibvirt.StoragePool, flags golibvirt.StorageXMLFlags) (string, error)
}

var _ probeAPI = (*golibvirt.Libvirt)(nil)

// probeDomainTypes are asked in this order; the first offered is what
// accel auto picks (qemu last: it is tcg).
var probeDomainTypes = []string{"kvm", "hvf", "qemu"}

// Probe asks libvirt what it offers for guests of arch: the emulator, the
// domain types (accelerators), UEFI firmware, and the devbox pool.
func (d *Driver) Probe(ctx context.Context, arch string) (Probe, error) {
	p := Probe{Arch: arch, Refused: map[string]string{}}
	l, ok := d.l.(probeAPI)
	if !ok {
		return p, errors.New("probe libvirt: this connection cannot report capabilities")
	}
	if v, err := l.ConnectGetLibVersion(); err == nil {
		p.LibvirtVersion = fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
	}
	caps, err := l.ConnectGetCapabilities()
	if err != nil {
		return p, fmt.Errorf("libvirt capabilities: %w", err)
	}
	if p.Emulator, err = emulatorFor(caps, arch); err != nil {
		return p, err
	}
	for _, t := range probeDomainTypes {
		if err := ctx.Err(); err != nil {
			return p, err
		}
		// No machine, as ResolveAccel asks: the answer is what up gets.
		x, err := d.l.ConnectGetDomainCapabilities(nil, golibvirt.OptString{arch}, nil, golibvirt.OptString{t}, 0)
		if err != nil {
			p.Refused[t] = err.Error()
			continue
		}
		p.DomainTypes = append(p.DomainTypes, t)
		if p.Emulator == "" {
			if dc, err := parseDomCaps(x); err == nil {
				p.Emulator = dc.Path
			}
		}
	}
	if len(p.DomainTypes) > 0 {
		// Firmware is per machine: ask for the one devbox's domains use
		// (the default aarch64 machine is an old board without UEFI).
		x, err := d.l.ConnectGetDomainCapabilities(nil, golibvirt.OptString{arch}, golibvirt.OptString{probeMachine(arch)}, golibvirt.OptString{p.DomainTypes[0]}, 0)
		if err == nil {
			if dc, err := parseDomCaps(x); err == nil {
				p.Loaders = dc.OS.Loader.Values
				for _, e := range dc.OS.Enums {
					if e.Name == "firmware" && containsString(e.Values, "efi") {
						p.FirmwareAuto = true
					}
				}
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return p, err
	}
	p.Pool = d.probePool(l)
	return p, nil
}

// probeMachine is the machine type devbox's domains use for arch.
func probeMachine(arch string) string {
	if arch == "aarch64" {
		return "virt"
	}
	return "pc"
}

// probePool looks at the devbox pool without creating or starting it.
func (d *Driver) probePool(l probeAPI) PoolProbe {
	pp := PoolProbe{Name: PoolName, Path: d.poolPath(), Local: d.local}
	pool, err := d.l.StoragePoolLookupByName(PoolName)
	if err != nil {
		if !isCode(err, golibvirt.ErrNoStoragePool) {
			pp.Err = fmt.Errorf("look up storage pool %s: %w", PoolName, err)
		}
		return pp
	}
	pp.Exists = true
	if x, err := l.StoragePoolGetXMLDesc(pool, 0); err == nil {
		var desc struct {
			Path string `xml:"target>path"`
		}
		if xml.Unmarshal([]byte(x), &desc) == nil && desc.Path != "" {
			pp.Path = desc.Path
		}
	}
	state, capacity, _, available, err := d.l.StoragePoolGetInfo(pool)
	if err != nil {
		pp.Err = fmt.Errorf("storage pool %s: %w", PoolName, err)
		return pp
	}
	if golibvirt.StoragePoolState(state) == golibvirt.StoragePoolRunning {
		pp.Active, pp.Capacity, pp.Available = true, capacity, available
	}
	return pp
}

// capsXML is the part of libvirt's host capabilities Probe reads.
type capsXML struct {
	Guests []struct {
		OSType string `xml:"os_type"`
		Arch   struct {
			Name     string `xml:"name,attr"`
			Emulator string `xml:"emulator"`
		} `xml:"arch"`
	} `xml:"guest"`
}

// emulatorFor finds the QEMU binary libvirt runs for hvm guests of arch.
func emulatorFor(caps, arch string) (string, error) {
	var c capsXML
	if err := xml.Unmarshal([]byte(caps), &c); err != nil {
		return "", fmt.Errorf("libvirt capabilities: %w", err)
	}
	for _, g := range c.Guests {
		if g.OSType == "hvm" && g.Arch.Name == arch {
			return g.Arch.Emulator, nil
		}
	}
	return "", nil
}

// domCapsXML is the part of libvirt's domain capabilities Probe reads.
type domCapsXML struct {
	Path string `xml:"path"`
	OS   struct {
		Enums  []enumXML `xml:"enum"`
		Loader struct {
			Values []string `xml:"value"`
		} `xml:"loader"`
	} `xml:"os"`
}

type enumXML struct {
	Name   string   `xml:"name,attr"`
	Values []string `xml:"value"`
}

func parseDomCaps(x string) (domCapsXML, error) {
	var dc domCapsXML
	err := xml.Unmarshal([]byte(x), &dc)
	return dc, err
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// LocalSocket is the unix socket Connect dials for uri, or "" when uri is
// remote (or not a URI): what doctor names beside the URI.
func LocalSocket(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" || !isLocal(u) {
		return ""
	}
	return SocketPath(u)
}

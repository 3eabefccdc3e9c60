package libvirt

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/devbox-vm/devbox/vm"
)

// domainDesc is the part of a domain's XML that devbox reads back.
type domainDesc struct {
	Name   string `xml:"name"`
	VCPU   int    `xml:"vcpu"`
	Memory struct {
		Value int64  `xml:",chardata"`
		Unit  string `xml:"unit,attr"`
	} `xml:"memory"`
	OS struct {
		Type struct {
			Arch string `xml:"arch,attr"`
		} `xml:"type"`
	} `xml:"os"`
	Meta struct {
		Instance *struct {
			Name       string `xml:"name"`
			Home       string `xml:"home"`
			User       string `xml:"user"`
			Arch       string `xml:"arch"`
			Accel      string `xml:"accel"`
			SSHPort    int    `xml:"ssh-port"`
			ConsoleLog string `xml:"console-log"`
		} `xml:"https://github.com/devbox-vm/devbox/xmlns/instance/1 instance"`
	} `xml:"metadata"`
}

func (d *Driver) lookup(name string) (golibvirt.Domain, error) {
	dom, err := d.l.DomainLookupByName(name)
	if err != nil {
		if isCode(err, golibvirt.ErrNoDomain) {
			return dom, fmt.Errorf("domain %s: %w", name, vm.ErrNotFound)
		}
		return dom, fmt.Errorf("look up domain %s: %w", name, err)
	}
	return dom, nil
}

// Inspect implements vm.Driver.
func (d *Driver) Inspect(ctx context.Context, name string) (vm.Info, error) {
	info := vm.Info{Name: name, State: vm.StateNotCreated}
	dom, err := d.lookup(name)
	if err != nil {
		return info, err
	}
	if info.State, err = d.state(dom); err != nil {
		return info, err
	}
	raw, err := d.l.DomainGetXMLDesc(dom, 0)
	if err != nil {
		return info, fmt.Errorf("read domain %s: %w", name, err)
	}
	var desc domainDesc
	if err := xml.Unmarshal([]byte(raw), &desc); err != nil {
		return info, fmt.Errorf("parse domain %s: %w", name, err)
	}
	info.CPUs = desc.VCPU
	info.MemoryMiB = toMiB(desc.Memory.Value, desc.Memory.Unit)
	info.Arch = desc.OS.Type.Arch // for domains defined before devbox recorded it
	if m := desc.Meta.Instance; m != nil {
		info.Instance, info.Home, info.User, info.Accel = m.Name, m.Home, m.User, m.Accel
		info.SSHPort, info.ConsoleLog = m.SSHPort, m.ConsoleLog
		if m.Arch != "" {
			info.Arch = m.Arch
		}
	}
	return info, nil
}

func toMiB(v int64, unit string) int64 {
	switch unit {
	case "b", "bytes":
		return v >> 20
	case "MiB", "M":
		return v
	case "GiB", "G":
		return v << 10
	}
	return v >> 10 // libvirt reports KiB
}

func (d *Driver) state(dom golibvirt.Domain) (vm.State, error) {
	s, _, err := d.l.DomainGetState(dom, 0)
	if err != nil {
		return vm.StateOther, fmt.Errorf("state of domain %s: %w", dom.Name, err)
	}
	switch golibvirt.DomainState(s) {
	case golibvirt.DomainRunning, golibvirt.DomainBlocked, golibvirt.DomainShutdown:
		return vm.StateRunning, nil
	case golibvirt.DomainShutoff, golibvirt.DomainCrashed:
		return vm.StateStopped, nil
	case golibvirt.DomainPaused, golibvirt.DomainPmsuspended:
		return vm.StatePaused, nil
	}
	return vm.StateOther, nil
}

// hostfwdRE finds the SSH forward in the domain's QEMU arguments.
var hostfwdRE = regexp.MustCompile(`hostfwd=tcp:127\.0\.0\.1:(\d+)-:22`)
var metaPortRE = regexp.MustCompile(`<devbox:ssh-port>\d+</devbox:ssh-port>`)

// withSSHPort rewrites a domain XML to forward port instead.
func withSSHPort(domXML string, port int) string {
	domXML = hostfwdRE.ReplaceAllString(domXML, fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:22", port))
	return metaPortRE.ReplaceAllString(domXML, fmt.Sprintf("<devbox:ssh-port>%d</devbox:ssh-port>", port))
}

// Start implements vm.Driver. The forwarded SSH port is checked before each
// start: one taken by another program since the last boot (or lost in a
// race while QEMU starts) is replaced by a free one.
func (d *Driver) Start(ctx context.Context, name string) (vm.Info, error) {
	dom, err := d.lookup(name)
	if err != nil {
		return vm.Info{}, err
	}
	st, err := d.state(dom)
	if err != nil {
		return vm.Info{}, err
	}
	switch st {
	case vm.StateRunning:
		return d.Inspect(ctx, name)
	case vm.StatePaused:
		if err := d.l.DomainResume(dom); err != nil {
			return vm.Info{}, fmt.Errorf("resume domain %s: %w", name, err)
		}
		return d.Inspect(ctx, name)
	}
	const attempts = 3
	for i := 1; ; i++ {
		if err := ctx.Err(); err != nil {
			return vm.Info{}, err
		}
		if d.local {
			if err := d.ensureFreeSSHPort(dom); err != nil {
				return vm.Info{}, err
			}
		}
		err := d.l.DomainCreate(dom)
		if err == nil {
			break
		}
		if i < attempts && d.local && isHostfwdError(err) {
			continue // taken between our check and QEMU's bind: pick again
		}
		if isHostfwdError(err) {
			return vm.Info{}, fmt.Errorf("start domain %s: %w: %v", name, vm.ErrPortTaken, err)
		}
		if hint := firmwareHint(err, runtime.GOOS); hint != "" {
			return vm.Info{}, fmt.Errorf("start domain %s: %w (hint: %s)", name, err, hint)
		}
		return vm.Info{}, fmt.Errorf("start domain %s: %w", name, err)
	}
	return d.Inspect(ctx, name)
}

func isHostfwdError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "host forwarding rule") || strings.Contains(s, "hostfwd")
}

// ensureFreeSSHPort redefines the domain with a new SSH port when its
// current one cannot be bound on 127.0.0.1.
func (d *Driver) ensureFreeSSHPort(dom golibvirt.Domain) error {
	raw, err := d.l.DomainGetXMLDesc(dom, golibvirt.DomainXMLInactive)
	if err != nil {
		return fmt.Errorf("read domain %s: %w", dom.Name, err)
	}
	m := hostfwdRE.FindStringSubmatch(raw)
	if m == nil {
		return fmt.Errorf("domain %s has no SSH forward: not made by this devbox (hint: devbox destroy, then up)", dom.Name)
	}
	port, _ := strconv.Atoi(m[1])
	if portFree(port) {
		return nil
	}
	newPort, err := freePort()
	if err != nil {
		return err
	}
	if _, err := d.l.DomainDefineXML(withSSHPort(raw, newPort)); err != nil {
		return fmt.Errorf("move SSH forward of domain %s from taken port %d to %d: %w", dom.Name, port, newPort, err)
	}
	return nil
}

// Shutdown implements vm.Driver.
func (d *Driver) Shutdown(ctx context.Context, name string, timeout time.Duration) error {
	dom, err := d.lookup(name)
	if err != nil {
		return err
	}
	if st, err := d.state(dom); err != nil || st == vm.StateStopped {
		return err
	}
	if err := d.l.DomainShutdown(dom); err != nil && !isCode(err, golibvirt.ErrOperationInvalid) {
		return fmt.Errorf("shut down domain %s: %w", name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := d.WaitStopped(wctx, name); err == nil {
		return nil
	} else if ctx.Err() != nil {
		return ctx.Err()
	}
	return d.Kill(ctx, name)
}

// Kill implements vm.Driver.
func (d *Driver) Kill(ctx context.Context, name string) error {
	dom, err := d.lookup(name)
	if err != nil {
		return err
	}
	if st, err := d.state(dom); err != nil || st == vm.StateStopped {
		return err
	}
	if err := d.l.DomainDestroy(dom); err != nil && !isCode(err, golibvirt.ErrOperationInvalid) {
		return fmt.Errorf("force off domain %s: %w", name, err)
	}
	return nil
}

// Reset implements vm.Driver.
func (d *Driver) Reset(ctx context.Context, name string) error {
	dom, err := d.lookup(name)
	if err != nil {
		return err
	}
	if err := d.l.DomainReset(dom, 0); err != nil {
		return fmt.Errorf("reset domain %s: %w", name, err)
	}
	return nil
}

// WaitStopped implements vm.Driver.
func (d *Driver) WaitStopped(ctx context.Context, name string) error {
	dom, err := d.lookup(name)
	if err != nil {
		return err
	}
	t := time.NewTicker(d.poll())
	defer t.Stop()
	for {
		st, err := d.state(dom)
		if err != nil {
			return err
		}
		if st == vm.StateStopped {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("domain %s still running: %w", name, ctx.Err())
		case <-t.C:
		}
	}
}

// Delete implements vm.Driver. An instance whose create was killed before
// it defined the domain has volumes but no domain: they are still deleted.
func (d *Driver) Delete(ctx context.Context, name string) error {
	dom, err := d.lookup(name)
	if errors.Is(err, vm.ErrNotFound) {
		vols, verr := d.instanceVolumes(name)
		if verr != nil {
			return verr
		}
		if len(vols) == 0 {
			return err
		}
		return d.deleteVolumes(vols)
	}
	if err != nil {
		return err
	}
	if err := d.Kill(ctx, name); err != nil {
		return err
	}
	flags := golibvirt.DomainUndefineManagedSave | golibvirt.DomainUndefineSnapshotsMetadata |
		golibvirt.DomainUndefineCheckpointsMetadata | golibvirt.DomainUndefineNvram
	if err := d.l.DomainUndefineFlags(dom, flags); err != nil && !isCode(err, golibvirt.ErrNoDomain) {
		return fmt.Errorf("undefine domain %s: %w", name, err)
	}
	vols, err := d.instanceVolumes(name)
	if err != nil {
		return err
	}
	return d.deleteVolumes(vols)
}

// removeLeftovers deletes the volumes of an instance that has no domain.
// They were left by a create of this very instance that was killed
// before it defined the domain: names are unique on the host, and callers
// do not run two creates of one instance at once (see vm.Driver.Create).
func (d *Driver) removeLeftovers(name string, progress vm.Progress) error {
	vols, err := d.instanceVolumes(name)
	if err != nil {
		return err
	}
	for _, vol := range vols {
		progress("removing volume %s left by an interrupted create", vol.Name)
	}
	return d.deleteVolumes(vols)
}

// deleteVolumes deletes vols; one already gone is no error.
func (d *Driver) deleteVolumes(vols []golibvirt.StorageVol) error {
	for _, vol := range vols {
		if err := d.l.StorageVolDelete(vol, 0); err != nil && !isCode(err, golibvirt.ErrNoStorageVol) {
			return fmt.Errorf("delete volume %s: %w", vol.Name, err)
		}
	}
	return nil
}

// Volumes lists the names of an instance's own volumes that exist in the
// pool (for checks that nothing was left behind).
func (d *Driver) Volumes(name string) ([]string, error) {
	vols, err := d.instanceVolumes(name)
	var names []string
	for _, vol := range vols {
		names = append(names, vol.Name)
	}
	return names, err
}

// instanceVolumes finds the instance's disk and seed volumes that exist.
func (d *Driver) instanceVolumes(name string) ([]golibvirt.StorageVol, error) {
	pool, err := d.l.StoragePoolLookupByName(PoolName)
	if err != nil {
		if isCode(err, golibvirt.ErrNoStoragePool) {
			return nil, nil
		}
		return nil, fmt.Errorf("look up storage pool %s: %w", PoolName, err)
	}
	d.refreshPool(pool)
	var vols []golibvirt.StorageVol
	for _, v := range []string{diskVolume(name), seedVolume(name), exportVolume(name)} {
		vol, err := d.l.StorageVolLookupByName(pool, v)
		if isCode(err, golibvirt.ErrNoStorageVol) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("look up volume %s: %w", v, err)
		}
		vols = append(vols, vol)
	}
	return vols, nil
}

// portFree reports whether port can be bound on 127.0.0.1 now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// freePort asks the kernel for a free port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// firmwareHint names the package that brings UEFI firmware when libvirt
// found none for the guest (aarch64 guests boot UEFI), or returns "".
func firmwareHint(err error, goos string) string {
	if !strings.Contains(strings.ToLower(err.Error()), "firmware") {
		return ""
	}
	if goos == "darwin" {
		return "libvirt found no UEFI firmware for this guest: brew install qemu brings it; devbox doctor checks"
	}
	return "libvirt found no UEFI firmware for this guest: sudo apt install qemu-efi-aarch64 (aarch64 guests); devbox doctor checks"
}

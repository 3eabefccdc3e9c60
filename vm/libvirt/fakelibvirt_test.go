package libvirt

import (
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// fakeLibvirt is an in-memory libvirt with one storage pool, enough for
// the driver's create and delete paths. It answers with libvirt's error
// codes and records the calls that change something.
type fakeLibvirt struct {
	mu      sync.Mutex
	pool    bool // the devbox pool is defined (and running)
	vols    map[string][]byte
	volXML  map[string]string // the XML each volume was created from
	domains map[string]string // name → XML
	calls   []string
	// lookupDomainErr, if set, is what DomainLookupByName fails with.
	lookupDomainErr error
	// dir, when set, holds a real (empty) file for each created volume,
	// which StorageVolGetPath names, as a local dir pool does.
	dir string
	// udp holds the host forwards the monitor commands made, as
	// "127.0.0.1:5353" → guest port; taken lists host addresses that
	// fail to bind.
	udp   map[string]string
	taken map[string]bool
}

var _ api = (*fakeLibvirt)(nil)

func newFakeLibvirt() *fakeLibvirt {
	return &fakeLibvirt{vols: map[string][]byte{}, volXML: map[string]string{}, domains: map[string]string{}}
}

// driver returns a Driver talking to f.
func (f *fakeLibvirt) driver() *Driver {
	u, _ := url.Parse("qemu:///system")
	return &Driver{l: f, uri: u}
}

func libvirtErr(code golibvirt.ErrorNumber, format string, args ...any) error {
	return golibvirt.Error{Code: uint32(code), Message: fmt.Sprintf(format, args...)}
}

func (f *fakeLibvirt) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// volumes lists the volumes in the pool, sorted.
func (f *fakeLibvirt) volumes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for n := range f.vols {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (f *fakeLibvirt) Disconnect() error { return nil }

func (f *fakeLibvirt) ConnectGetDomainCapabilities(_, _, _, _ golibvirt.OptString, _ golibvirt.ConnectGetDomainCapabilitiesFlags) (string, error) {
	return "<domainCapabilities/>", nil
}

func (f *fakeLibvirt) DomainLookupByName(name string) (golibvirt.Domain, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lookupDomainErr != nil {
		return golibvirt.Domain{}, f.lookupDomainErr
	}
	if _, ok := f.domains[name]; !ok {
		return golibvirt.Domain{}, libvirtErr(golibvirt.ErrNoDomain, "Domain not found: no domain with matching name '%s'", name)
	}
	return golibvirt.Domain{Name: name}, nil
}

func (f *fakeLibvirt) DomainDefineXML(x string) (golibvirt.Domain, error) {
	var desc struct {
		Name string `xml:"name"`
	}
	if err := xml.Unmarshal([]byte(x), &desc); err != nil || desc.Name == "" {
		return golibvirt.Domain{}, libvirtErr(golibvirt.ErrXMLError, "bad domain XML: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("define %s", desc.Name)
	f.domains[desc.Name] = x
	return golibvirt.Domain{Name: desc.Name}, nil
}

func (f *fakeLibvirt) domain(dom golibvirt.Domain) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	x, ok := f.domains[dom.Name]
	if !ok {
		return "", libvirtErr(golibvirt.ErrNoDomain, "Domain not found: %s", dom.Name)
	}
	return x, nil
}

func (f *fakeLibvirt) DomainGetXMLDesc(dom golibvirt.Domain, _ golibvirt.DomainXMLFlags) (string, error) {
	return f.domain(dom)
}

// Domains are always shut off: the driver's paths under test do not boot.
func (f *fakeLibvirt) DomainGetState(dom golibvirt.Domain, _ uint32) (int32, int32, error) {
	_, err := f.domain(dom)
	return int32(golibvirt.DomainShutoff), 0, err
}

func (f *fakeLibvirt) DomainCreate(golibvirt.Domain) error { panic("fake: DomainCreate") }
func (f *fakeLibvirt) DomainResume(golibvirt.Domain) error { panic("fake: DomainResume") }

// QEMUDomainMonitorCommand answers the human monitor's hostfwd_add,
// hostfwd_remove and info usernet as QEMU 7.2 does (its errors are
// printed, not returned).
func (f *fakeLibvirt) QEMUDomainMonitorCommand(dom golibvirt.Domain, cmd string, flags uint32) (string, error) {
	if _, err := f.domain(dom); err != nil {
		return "", err
	}
	if flags != monitorHMP {
		return "", fmt.Errorf("fake: QMP not spoken")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.udp == nil {
		f.udp = map[string]string{}
	}
	w := strings.Fields(cmd)
	switch {
	case cmd == "info usernet":
		out := "Hub -1 (devboxnet0):\r\n  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n" +
			"  TCP[HOST_FORWARD]  13       127.0.0.1 40213       10.0.2.15    22     0     0\r\n"
		for host, guest := range f.udp {
			h, p, _ := net.SplitHostPort(host)
			out += fmt.Sprintf("  UDP[HOST_FORWARD]  15 %15s %5s       10.0.2.15 %5s     0     0\r\n", h, p, guest)
		}
		return out, nil
	case len(w) == 3 && w[0] == "hostfwd_add" && w[1] == netdevID && strings.HasPrefix(w[2], "udp:"):
		host, guest, _ := strings.Cut(strings.TrimPrefix(w[2], "udp:"), "-:")
		if _, dup := f.udp[host]; dup || f.taken[host] {
			return "Could not set up host forwarding rule '" + w[2] + "'\r\n", nil
		}
		f.udp[host] = guest
		return "", nil
	case len(w) == 3 && w[0] == "hostfwd_remove" && w[1] == netdevID:
		host := strings.TrimPrefix(w[2], "udp:")
		if _, ok := f.udp[host]; !ok {
			return "host forwarding rule for " + w[2] + " not found\r\n", nil
		}
		delete(f.udp, host)
		return "host forwarding rule for " + w[2] + " removed\r\n", nil
	}
	return "unknown command: '" + cmd + "'\r\n", nil
}

// DomainAttachDeviceFlags adds a live device to the domain's XML, refusing
// virtio-fs without shared memory as libvirt 9.0 does.
func (f *fakeLibvirt) DomainAttachDeviceFlags(dom golibvirt.Domain, dev string, flags uint32) error {
	x, err := f.domain(dom)
	if err != nil {
		return err
	}
	if flags != affectLive {
		return fmt.Errorf("fake: only live attaches")
	}
	if strings.Contains(dev, "virtiofs") && !strings.Contains(x, "<access mode='shared'/>") {
		return libvirtErr(golibvirt.ErrConfigUnsupported, "unsupported configuration: 'virtiofs' requires shared memory")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("attach %s", dom.Name)
	f.domains[dom.Name] = strings.Replace(x, "</devices>", dev+"</devices>", 1)
	return nil
}

// DomainDetachDeviceFlags removes a device attached with exactly that XML.
func (f *fakeLibvirt) DomainDetachDeviceFlags(dom golibvirt.Domain, dev string, flags uint32) error {
	x, err := f.domain(dom)
	if err != nil {
		return err
	}
	if !strings.Contains(x, dev) {
		return libvirtErr(golibvirt.ErrOperationFailed, "operation failed: matching device not found")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("detach %s", dom.Name)
	f.domains[dom.Name] = strings.Replace(x, dev, "", 1)
	return nil
}

func (f *fakeLibvirt) DomainShutdown(golibvirt.Domain) error      { panic("fake: DomainShutdown") }
func (f *fakeLibvirt) DomainDestroy(golibvirt.Domain) error       { panic("fake: DomainDestroy") }
func (f *fakeLibvirt) DomainReset(golibvirt.Domain, uint32) error { panic("fake: DomainReset") }

func (f *fakeLibvirt) DomainUndefineFlags(dom golibvirt.Domain, _ golibvirt.DomainUndefineFlagsValues) error {
	if _, err := f.domain(dom); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("undefine %s", dom.Name)
	delete(f.domains, dom.Name)
	return nil
}

var fakePool = golibvirt.StoragePool{Name: PoolName}

func (f *fakeLibvirt) StoragePoolLookupByName(name string) (golibvirt.StoragePool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name != PoolName || !f.pool {
		return golibvirt.StoragePool{}, libvirtErr(golibvirt.ErrNoStoragePool, "Storage pool not found: %s", name)
	}
	return fakePool, nil
}

func (f *fakeLibvirt) StoragePoolDefineXML(string, uint32) (golibvirt.StoragePool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("define pool")
	f.pool = true
	return fakePool, nil
}

func (f *fakeLibvirt) StoragePoolBuild(golibvirt.StoragePool, golibvirt.StoragePoolBuildFlags) error {
	return nil
}
func (f *fakeLibvirt) StoragePoolSetAutostart(golibvirt.StoragePool, int32) error { return nil }
func (f *fakeLibvirt) StoragePoolGetInfo(golibvirt.StoragePool) (uint8, uint64, uint64, uint64, error) {
	return uint8(golibvirt.StoragePoolRunning), 0, 0, 0, nil
}
func (f *fakeLibvirt) StoragePoolCreate(golibvirt.StoragePool, golibvirt.StoragePoolCreateFlags) error {
	return nil
}
func (f *fakeLibvirt) StoragePoolRefresh(golibvirt.StoragePool, uint32) error { return nil }

func (f *fakeLibvirt) StorageVolLookupByName(_ golibvirt.StoragePool, name string) (golibvirt.StorageVol, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vols[name]; !ok {
		return golibvirt.StorageVol{}, libvirtErr(golibvirt.ErrNoStorageVol, "Storage volume not found: no storage vol with matching name '%s'", name)
	}
	return golibvirt.StorageVol{Pool: PoolName, Name: name, Key: "/pool/" + name}, nil
}

func (f *fakeLibvirt) StorageVolCreateXML(_ golibvirt.StoragePool, x string, _ golibvirt.StorageVolCreateFlags) (golibvirt.StorageVol, error) {
	var desc struct {
		Name string `xml:"name"`
	}
	if err := xml.Unmarshal([]byte(x), &desc); err != nil || desc.Name == "" {
		return golibvirt.StorageVol{}, libvirtErr(golibvirt.ErrXMLError, "bad volume XML: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vols[desc.Name]; ok {
		return golibvirt.StorageVol{}, libvirtErr(golibvirt.ErrStorageVolExist, "storage volume '%s' exists already", desc.Name)
	}
	f.record("create volume %s", desc.Name)
	f.vols[desc.Name] = []byte{}
	f.volXML[desc.Name] = x
	if f.dir != "" {
		if err := os.WriteFile(filepath.Join(f.dir, desc.Name), nil, 0o600); err != nil {
			return golibvirt.StorageVol{}, libvirtErr(golibvirt.ErrInternalError, "%v", err)
		}
	}
	return golibvirt.StorageVol{Pool: PoolName, Name: desc.Name, Key: "/pool/" + desc.Name}, nil
}

func (f *fakeLibvirt) StorageVolUpload(vol golibvirt.StorageVol, r io.Reader, offset, length uint64, _ golibvirt.StorageVolUploadFlags) error {
	data, err := io.ReadAll(io.LimitReader(r, int64(length)))
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vols[vol.Name]; !ok {
		return libvirtErr(golibvirt.ErrNoStorageVol, "Storage volume not found: %s", vol.Name)
	}
	f.record("upload %s", vol.Name)
	f.vols[vol.Name] = data
	return nil
}

// With StorageVolGetPhysical, libvirt reports the file's size in the
// allocation field.
func (f *fakeLibvirt) StorageVolGetInfoFlags(vol golibvirt.StorageVol, _ uint32) (int8, uint64, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, ok := f.vols[vol.Name]
	if !ok {
		return 0, 0, 0, libvirtErr(golibvirt.ErrNoStorageVol, "Storage volume not found: %s", vol.Name)
	}
	return 0, uint64(len(data)), uint64(len(data)), nil
}

func (f *fakeLibvirt) StorageVolGetPath(vol golibvirt.StorageVol) (string, error) {
	if f.dir != "" {
		return filepath.Join(f.dir, vol.Name), nil
	}
	return "/pool/" + vol.Name, nil
}

func (f *fakeLibvirt) StorageVolDelete(vol golibvirt.StorageVol, _ golibvirt.StorageVolDeleteFlags) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vols[vol.Name]; !ok {
		return libvirtErr(golibvirt.ErrNoStorageVol, "Storage volume not found: %s", vol.Name)
	}
	f.record("delete volume %s", vol.Name)
	delete(f.vols, vol.Name)
	return nil
}

func (f *fakeLibvirt) StorageVolGetXMLDesc(vol golibvirt.StorageVol, _ uint32) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vols[vol.Name]; !ok {
		return "", libvirtErr(golibvirt.ErrNoStorageVol, "Storage volume not found: %s", vol.Name)
	}
	if x, ok := f.volXML[vol.Name]; ok {
		return x, nil
	}
	return "<volume><name>" + vol.Name + "</name></volume>", nil
}

func (f *fakeLibvirt) StoragePoolListAllVolumes(golibvirt.StoragePool, int32, uint32) ([]golibvirt.StorageVol, uint32, error) {
	var vols []golibvirt.StorageVol
	for _, n := range f.volumes() {
		vols = append(vols, golibvirt.StorageVol{Pool: PoolName, Name: n, Key: "/pool/" + n})
	}
	return vols, uint32(len(vols)), nil
}

func (f *fakeLibvirt) StorageVolCreateXMLFrom(p golibvirt.StoragePool, x string, clone golibvirt.StorageVol, fl golibvirt.StorageVolCreateFlags) (golibvirt.StorageVol, error) {
	vol, err := f.StorageVolCreateXML(p, x, fl)
	if err != nil {
		return vol, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vols[vol.Name] = append([]byte("flattened:"), f.vols[clone.Name]...)
	return vol, nil
}

func (f *fakeLibvirt) StorageVolDownload(vol golibvirt.StorageVol, w io.Writer, _, _ uint64, _ golibvirt.StorageVolDownloadFlags) error {
	f.mu.Lock()
	data, ok := f.vols[vol.Name]
	f.mu.Unlock()
	if !ok {
		return libvirtErr(golibvirt.ErrNoStorageVol, "Storage volume not found: %s", vol.Name)
	}
	_, err := w.Write(data)
	return err
}

package libvirt

import (
	"io"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// api is the part of *golibvirt.Libvirt the driver uses: the seam that
// lets unit tests run the driver against an in-memory libvirt.
type api interface {
	Disconnect() error
	ConnectGetDomainCapabilities(emulatorbin, arch, machine, virttype golibvirt.OptString, flags golibvirt.ConnectGetDomainCapabilitiesFlags) (string, error)

	DomainLookupByName(name string) (golibvirt.Domain, error)
	DomainDefineXML(xml string) (golibvirt.Domain, error)
	DomainGetXMLDesc(dom golibvirt.Domain, flags golibvirt.DomainXMLFlags) (string, error)
	DomainGetState(dom golibvirt.Domain, flags uint32) (int32, int32, error)
	DomainCreate(dom golibvirt.Domain) error
	QEMUDomainMonitorCommand(dom golibvirt.Domain, cmd string, flags uint32) (string, error)
	DomainAttachDeviceFlags(dom golibvirt.Domain, xml string, flags uint32) error
	DomainDetachDeviceFlags(dom golibvirt.Domain, xml string, flags uint32) error
	DomainResume(dom golibvirt.Domain) error
	DomainShutdown(dom golibvirt.Domain) error
	DomainDestroy(dom golibvirt.Domain) error
	DomainReset(dom golibvirt.Domain, flags uint32) error
	DomainUndefineFlags(dom golibvirt.Domain, flags golibvirt.DomainUndefineFlagsValues) error

	StoragePoolLookupByName(name string) (golibvirt.StoragePool, error)
	StoragePoolDefineXML(xml string, flags uint32) (golibvirt.StoragePool, error)
	StoragePoolBuild(pool golibvirt.StoragePool, flags golibvirt.StoragePoolBuildFlags) error
	StoragePoolSetAutostart(pool golibvirt.StoragePool, autostart int32) error
	StoragePoolGetInfo(pool golibvirt.StoragePool) (uint8, uint64, uint64, uint64, error)
	StoragePoolCreate(pool golibvirt.StoragePool, flags golibvirt.StoragePoolCreateFlags) error
	StoragePoolRefresh(pool golibvirt.StoragePool, flags uint32) error

	StorageVolLookupByName(pool golibvirt.StoragePool, name string) (golibvirt.StorageVol, error)
	StorageVolCreateXML(pool golibvirt.StoragePool, xml string, flags golibvirt.StorageVolCreateFlags) (golibvirt.StorageVol, error)
	StorageVolUpload(vol golibvirt.StorageVol, r io.Reader, offset, length uint64, flags golibvirt.StorageVolUploadFlags) error
	StorageVolGetInfoFlags(vol golibvirt.StorageVol, flags uint32) (int8, uint64, uint64, error)
	StorageVolGetPath(vol golibvirt.StorageVol) (string, error)
	StorageVolDelete(vol golibvirt.StorageVol, flags golibvirt.StorageVolDeleteFlags) error
	StorageVolGetXMLDesc(vol golibvirt.StorageVol, flags uint32) (string, error)
	StorageVolCreateXMLFrom(pool golibvirt.StoragePool, xml string, clone golibvirt.StorageVol, flags golibvirt.StorageVolCreateFlags) (golibvirt.StorageVol, error)
	StorageVolDownload(vol golibvirt.StorageVol, w io.Writer, offset, length uint64, flags golibvirt.StorageVolDownloadFlags) error
	StoragePoolListAllVolumes(pool golibvirt.StoragePool, needResults int32, flags uint32) ([]golibvirt.StorageVol, uint32, error)
}

var _ api = (*golibvirt.Libvirt)(nil)

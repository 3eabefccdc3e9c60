package libvirt

import (
	"fmt"

	"github.com/devbox-vm/devbox/templates"
	"github.com/devbox-vm/devbox/vm"
)

// DomainData is what domain.xml.tmpl is rendered from.
type DomainData struct {
	vm.Spec
	DomainType string
	// CPUMode is the <cpu mode>, or empty for QEMU's default model.
	CPUMode string
	// GIC is the aarch64 interrupt controller's version.
	GIC string
	// NetROM ends the network device's QEMU options.
	NetROM     string
	Pool       string
	DiskVolume string
	SeedVolume string
	MetadataNS string
}

// x86TCGCPU is the CPU an x86_64 guest gets under tcg: "qemu64", QEMU's
// default for machine pc (no <cpu> element: what devbox has always
// rendered), or "max", every feature TCG emulates (libvirt's mode
// maximum). Which boots and builds faster is for the benchmark to say.
const x86TCGCPU = "qemu64"

// cpuMode picks the guest CPU for arch and accel.
func cpuMode(arch, accel string) string {
	switch {
	case accel != "tcg":
		return "host-passthrough" // kvm, hvf: the host's own CPU
	case arch == "aarch64":
		// QEMU's default for virt is a 32-bit cortex-a15; max also beats
		// cortex-a57 under TCG.
		return "maximum"
	case x86TCGCPU == "max":
		return "maximum"
	}
	return ""
}

// gicVersion picks the aarch64 interrupt controller: the host's under kvm;
// otherwise QEMU's emulated GICv3 (GICv2 caps a guest at 8 vCPUs).
func gicVersion(accel string) string {
	if accel == "kvm" {
		return "host"
	}
	return "3"
}

// checkArch refuses an architecture the domain template does not know.
func checkArch(arch string) error {
	if arch != "x86_64" && arch != "aarch64" {
		return fmt.Errorf("arch %q is not x86_64 or aarch64 (hint: set arch in devbox.yaml)", arch)
	}
	return nil
}

// RenderDomain renders the libvirt domain XML for spec.
func RenderDomain(spec vm.Spec) ([]byte, error) {
	if err := checkArch(spec.Arch); err != nil {
		return nil, fmt.Errorf("render domain %s: %w", spec.Name, err)
	}
	data := DomainData{
		Spec:       spec,
		DomainType: domainType(spec.Accel),
		CPUMode:    cpuMode(spec.Arch, spec.Accel),
		Pool:       PoolName,
		DiskVolume: diskVolume(spec.Name),
		SeedVolume: seedVolume(spec.Name),
		MetadataNS: MetadataNS,
	}
	if spec.Arch == "aarch64" {
		data.GIC = gicVersion(spec.Accel)
		// No option ROM: devbox never boots from the network, and the
		// iPXE ROMs are only a recommendation of Debian's qemu-system-arm.
		data.NetROM = ",romfile="
	}
	return templates.Render("domain.xml.tmpl", data)
}

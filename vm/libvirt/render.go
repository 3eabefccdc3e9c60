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
	// CPUModelName is the named model of mode custom, else empty.
	CPUModelName string
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

// cpuMode is the guest CPU for arch and accel: the <cpu> mode, and the
// model's name for mode custom. model is the user's choice (vm.Spec's
// CPUModel), empty for devbox's.
func cpuMode(arch, accel, model string) (mode, name string, err error) {
	switch model {
	case "":
		return defaultCPUMode(arch, accel), "", nil
	case "host":
		if accel == "tcg" {
			return "", "", fmt.Errorf("cpu_model host needs kvm or hvf, and this instance runs under tcg (hint: remove cpu_model, or use max or a model QEMU emulates)")
		}
		return "host-passthrough", "", nil
	case "max":
		return "maximum", "", nil
	}
	return "custom", model, nil
}

// defaultCPUMode picks the guest CPU for arch and accel.
func defaultCPUMode(arch, accel string) string {
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
	mode, model, err := cpuMode(spec.Arch, spec.Accel, spec.CPUModel)
	if err != nil {
		return nil, fmt.Errorf("render domain %s: %w", spec.Name, err)
	}
	data := DomainData{
		Spec:         spec,
		DomainType:   domainType(spec.Accel),
		CPUMode:      mode,
		CPUModelName: model,
		Pool:         PoolName,
		DiskVolume:   diskVolume(spec.Name),
		SeedVolume:   seedVolume(spec.Name),
		MetadataNS:   MetadataNS,
	}
	if spec.Arch == "aarch64" {
		data.GIC = gicVersion(spec.Accel)
		// No option ROM: devbox never boots from the network, and the
		// iPXE ROMs are only a recommendation of Debian's qemu-system-arm.
		data.NetROM = ",romfile="
	}
	return templates.Render("domain.xml.tmpl", data)
}

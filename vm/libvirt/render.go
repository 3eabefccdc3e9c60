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

// tcgCPUModel is a guest's CPU under tcg when cpu_model is not set, per
// arch, as make bench (BenchmarkBoot) measured it on a 2-core x86_64 host
// with QEMU 7.2, boot→SSH of a fresh instance and CPU-bound guest work:
//   - x86_64: QEMU's default for pc, qemu64 (no <cpu> element, as devbox
//     always rendered): 34 s, against 40-50 s and 1.05-1.2x the work
//     for max.
//   - aarch64: neoverse-n1 (ARMv8.2, what arm64 servers run): 60 s and
//     9.8 s of work, against 97 s and 17.7 s for max, whose pointer
//     authentication TCG computes in software (cortex-a72, Lima's pick,
//     ARMv8.0: 52 s, 11.0 s).
var tcgCPUModel = map[string]string{"x86_64": "", "aarch64": "neoverse-n1"}

// cpuMode is the guest CPU for arch and accel: the <cpu> mode (empty for
// QEMU's default) and the model's name for mode custom. model is the
// user's choice (vm.Spec's CPUModel), empty for devbox's: the host's own
// CPU under kvm and hvf, tcgCPUModel under tcg.
func cpuMode(arch, accel, model string) (mode, name string, err error) {
	if model == "" {
		if accel != "tcg" {
			return "host-passthrough", "", nil
		}
		model = tcgCPUModel[arch]
	}
	switch model {
	case "":
		return "", "", nil
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

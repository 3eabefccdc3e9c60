package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/vm/libvirt"
)

// Free space below which up fails (a box and one instance's disk hardly
// fit) or soon will (each instance's disk grows to its size).
const (
	failBelow = 2 << 30
	warnBelow = 10 << 30
)

const notReachable = "not checked: libvirt is not reachable (see libvirt)"

func checkConfig(in Input, s Settings) Result {
	r := Result{Name: "config"}
	defaults := fmt.Sprintf("checking this host with the defaults: %s guests, %s", s.Arch, s.URI)
	switch {
	case in.Config != nil:
		r.Status = OK
		r.Found = fmt.Sprintf("%s (instance %s, %s guest, accel %s, %s)", in.ConfigFile, in.Config.Name, s.Arch, s.Accel, s.URI)
	case in.ConfigFile == "":
		r.Status = Warn
		r.Found = fmt.Sprintf("no %s in this folder or a parent: %s", config.FileName, defaults)
		r.Fix = "devbox up needs one: copy devbox.yaml.example, or pass -c FILE"
	default:
		r.Status = Fail
		r.Found = fmt.Sprintf("%v\n(%s)", in.ConfigErr, defaults)
		r.Fix = fmt.Sprintf("edit %s: devbox.yaml.example documents every field", in.ConfigFile)
		if errors.Is(in.ConfigErr, fs.ErrNotExist) {
			r.Fix = "pass -c an existing file, or copy devbox.yaml.example there"
		}
	}
	return r
}

func checkLibvirt(s Settings, lf libvirtFacts) Result {
	r := Result{Name: "libvirt"}
	where := s.URI + " (remote)"
	if lf.Socket != "" {
		where = s.URI + " at " + lf.Socket
	}
	switch {
	case lf.ConnectErr != nil:
		r.Status = Fail
		r.Found, r.Fix = libvirtMessage(lf.ConnectErr)
	case lf.ProbeErr != nil:
		r.Status = Fail
		r.Found = fmt.Sprintf("%s: connected, but %v", where, lf.ProbeErr)
		r.Fix = "see the libvirt daemon's log"
	default:
		r.Status, r.Found = OK, where
		if v := lf.Probe.LibvirtVersion; v != "" {
			r.Found += " (libvirt " + v + ")"
		}
	}
	return r
}

func checkEmulator(env Env, s Settings, lf libvirtFacts) Result {
	r := Result{Name: "qemu"}
	bin := "qemu-system-" + s.Arch
	local := lf.Socket != ""
	p := lf.Probe
	switch {
	case p == nil && !local:
		r.Status, r.Found = Warn, notReachable
	case p == nil:
		// libvirt is down: say at least whether QEMU is installed, so a
		// bare host learns everything it lacks at once.
		if path, err := env.LookPath(bin); err == nil {
			r.Status, r.Found = OK, fmt.Sprintf("%s for %s guests (on PATH; libvirt not asked)", path, s.Arch)
		} else {
			r.Status, r.Found = Fail, fmt.Sprintf("%s is not on PATH", bin)
			r.Fix = env.install(qemuFor(s.Arch))
		}
	case p.Emulator == "":
		r.Status = Fail
		r.Found = fmt.Sprintf("libvirt knows no QEMU for %s guests (%s)", s.Arch, bin)
		r.Fix = env.installOn(local, qemuFor(s.Arch))
	case len(p.DomainTypes) == 0:
		r.Status = Fail
		r.Found = fmt.Sprintf("libvirt finds %s but runs no %s guest with it: %s", p.Emulator, s.Arch, p.Refused["qemu"])
		r.Fix = env.installOn(local, qemuFor(s.Arch))
	default:
		r.Status, r.Found = OK, fmt.Sprintf("%s for %s guests", p.Emulator, s.Arch)
	}
	return r
}

// checkFirmware: aarch64 guests boot UEFI firmware that libvirt picks
// from QEMU's firmware descriptors (<os firmware='efi'>).
func checkFirmware(env Env, s Settings, lf libvirtFacts) Result {
	r := Result{Name: "firmware"}
	p := lf.Probe
	switch {
	case p == nil:
		r.Status, r.Found = Warn, notReachable
	case len(p.DomainTypes) == 0:
		r.Status, r.Found = Warn, fmt.Sprintf("not checked: no QEMU for %s guests (see qemu)", s.Arch)
	case p.FirmwareAuto:
		r.Status, r.Found = OK, fmt.Sprintf("UEFI for %s guests, picked by libvirt", s.Arch)
		if len(p.Loaders) > 0 {
			r.Found += " from " + strings.Join(p.Loaders, ", ")
		}
	default:
		r.Status = Fail
		r.Found = fmt.Sprintf("libvirt has no UEFI firmware it can pick for %s guests", s.Arch)
		if len(p.Loaders) > 0 {
			r.Found += fmt.Sprintf(" (it lists %s, but no firmware descriptor describes it)", strings.Join(p.Loaders, ", "))
		}
		r.Fix = env.installOn(lf.Socket != "", efiArm)
	}
	return r
}

// hwAccel is the hardware accelerator of this host's OS.
func (e Env) hwAccel() string {
	if e.GOOS == "darwin" {
		return "hvf"
	}
	return "kvm"
}

const tcgFallback = "DEVBOX_ACCEL=tcg devbox up, or accel: tcg in devbox.yaml (software emulation, several times slower)"

func checkAccel(env Env, s Settings, p *libvirt.Probe) Result {
	r := Result{Name: "accelerator"}
	hw := env.hwAccel()
	offered := func(t string) bool { return p != nil && containsString(p.DomainTypes, t) }
	asked := "the default"
	switch s.AccelFrom {
	case "DEVBOX_ACCEL":
		asked = "DEVBOX_ACCEL=" + s.Accel
	case "devbox.yaml":
		asked = "accel: " + s.Accel + " in devbox.yaml"
	}
	switch s.Accel {
	case "tcg":
		r.Status, r.Found = OK, "tcg (software emulation, several times slower), as "+asked+" asks"
		if s.Arch == env.HostArch && offered(hw) {
			r.Found += "; " + hw + " is offered: accel auto would use it"
		}
	case "kvm", "hvf":
		switch {
		case p == nil:
			r.Status, r.Found = Warn, notReachable
		case offered(s.Accel):
			r = env.hwOK(s.Accel, s)
		default:
			r.Status = Fail
			r.Found = fmt.Sprintf("%s, as %s asks, is not offered for %s guests: %s", s.Accel, asked, s.Arch, p.Refused[s.Accel])
			fix := ""
			if s.Accel == hw && s.Arch == env.HostArch {
				var reason string
				reason, fix = env.noHW(s)
				r.Found += "; " + reason
			}
			r.Fix = joinFix(fix, "or use accel: auto (tcg when nothing better is offered)")
		}
	case "auto":
		switch {
		case s.Arch != env.HostArch:
			r.Status = Warn
			r.Found = fmt.Sprintf("tcg: %s guests on this %s host run under software emulation only, several times slower", s.Arch, env.HostArch)
			r.Fix = fmt.Sprintf("to get %s, use a box for %s (arch: %s)", hw, env.HostArch, env.HostArch)
		case p == nil:
			reason, fix := env.hostHW(s)
			r.Status, r.Found, r.Fix = Warn, notReachable+"; this host: "+reason, fix
		case offered("kvm"):
			r = env.hwOK("kvm", s)
		case offered("hvf"):
			r = env.hwOK("hvf", s)
		default:
			reason, fix := env.noHW(s)
			r.Status = Warn
			r.Found = fmt.Sprintf("tcg only (software emulation), several times slower: libvirt offers no %s (%s); %s", hw, p.Refused[hw], reason)
			r.Fix = fix
		}
	default:
		r.Status = Fail
		r.Found = fmt.Sprintf("accel %q, as %s asks, is not one of %s", s.Accel, asked, strings.Join(config.Accelerators, ", "))
		r.Fix = "use accel: auto"
	}
	return r
}

func joinFix(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// hwOK reports an offered hardware accelerator. A KVM inside a VM is
// nested, and some nested KVMs never boot a stock guest kernel: the guest
// hangs silently, which only tcg avoids.
func (e Env) hwOK(accel string, s Settings) Result {
	r := Result{Name: "accelerator", Status: OK, Found: accel}
	switch {
	case accel == "hvf":
		r.Found = "hvf (Hypervisor.framework)"
	case e.GOOS == "linux" && runsInVM(e.CPUInfo):
		r.Status = Warn
		r.Found = "kvm, nested: this host is itself a VM, and a nested KVM may fail to boot a stock guest kernel (the guest hangs, its console log stays empty)"
		r.Fix = "if devbox up waits for SSH until it times out: " + tcgFallback
	default:
		r.Found = "kvm (/dev/kvm)"
	}
	return r
}

// hostHW says what this host has for a hardware accelerator when libvirt
// cannot be asked.
func (e Env) hostHW(s Settings) (reason, fix string) {
	if e.GOOS == "darwin" {
		if hv, err := e.HVSupport(); err == nil && hv {
			return "kern.hv_support is 1", ""
		}
	}
	return e.noHW(s)
}

// noHW says why libvirt offers no hardware accelerator, and what fixes it.
func (e Env) noHW(s Settings) (reason, fix string) {
	if e.GOOS == "darwin" {
		hv, err := e.HVSupport()
		switch {
		case err != nil:
			return fmt.Sprintf("kern.hv_support: %v", err), ""
		case !hv:
			return "kern.hv_support is 0: this Mac offers no Hypervisor.framework (a VM without nested virtualization?)", ""
		}
		return "kern.hv_support is 1, so QEMU or libvirt lack hvf", "brew upgrade qemu libvirt (hvf needs libvirt 8.1 or later)"
	}
	exists, usable := e.KVM()
	switch {
	case !exists:
		fix := "enable virtualization (VT-x/AMD-V) in the firmware settings, or nested virtualization for this VM"
		if m := kvmModule(e.CPUInfo); m != "" {
			fix = e.sudo("modprobe "+m) + "; if /dev/kvm is still missing, " + fix
		}
		return "/dev/kvm does not exist", fix
	case !usable && isSession(s.URI):
		return "/dev/kvm exists but you may not open it", "sudo usermod -aG kvm $USER, then log in again"
	}
	return "/dev/kvm exists", ""
}

func isSession(uri string) bool {
	u, err := url.Parse(uri)
	return err == nil && u.Path == "/session"
}

// runsInVM reports whether /proc/cpuinfo shows the hypervisor flag that
// x86 CPUs set inside a VM.
func runsInVM(cpuinfo string) bool {
	for _, line := range strings.Split(cpuinfo, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			return containsString(strings.Fields(v), "hypervisor")
		}
	}
	return false
}

// kvmModule is the kvm module for this x86 CPU; "" for others.
func kvmModule(cpuinfo string) string {
	for _, line := range strings.Split(cpuinfo, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "vendor_id" {
			switch strings.TrimSpace(v) {
			case "GenuineIntel":
				return "kvm_intel"
			case "AuthenticAMD":
				return "kvm_amd"
			}
		}
	}
	return ""
}

func checkPool(env Env, lf libvirtFacts) Result {
	r := Result{Name: "storage pool"}
	if lf.Probe == nil {
		r.Status, r.Found = Warn, notReachable
		return r
	}
	pp := lf.Probe.Pool
	switch {
	case pp.Err != nil:
		r.Status, r.Found = Fail, pp.Err.Error()
		return r
	case !pp.Exists:
		r.Status, r.Found = Warn, fmt.Sprintf("%s does not exist yet: devbox up creates it at %s", pp.Name, pp.Path)
	case !pp.Active:
		r.Status, r.Found = Warn, fmt.Sprintf("%s at %s is not active: devbox up starts it", pp.Name, pp.Path)
	default:
		r.Status, r.Found = OK, fmt.Sprintf("%s at %s", pp.Name, pp.Path)
	}
	free, known := uint64(0), false
	if pp.Local {
		free, known = env.freeAt(pp.Path)
	}
	if !known && pp.Active {
		free, known = pp.Available, true
	}
	if known {
		spaceCheck(&r, free, pp.Path, "boxes and instance disks are kept there")
	}
	return r
}

// spaceCheck adds free space to r, and fails or warns when it is short.
func spaceCheck(r *Result, free uint64, path, why string) {
	r.Found += fmt.Sprintf(", %s free", human(free))
	var s Status
	switch {
	case free < failBelow:
		s = Fail
	case free < warnBelow:
		s = Warn
	default:
		return
	}
	if s == Fail || r.Status == OK {
		r.Status = s
	}
	r.Fix = joinFix(r.Fix, fmt.Sprintf("free space on the filesystem of %s, %s: at least %s is comfortable", path, why, human(warnBelow)))
}

// freeAt is the free space where path is, or would be created.
func (e Env) freeAt(path string) (uint64, bool) {
	free, err := e.FreeSpace(e.nearestExisting(path))
	return free, err == nil
}

// nearestExisting is path, or its nearest parent that exists.
func (e Env) nearestExisting(path string) string {
	p := filepath.Clean(path)
	for !e.Exists(p) {
		parent := filepath.Dir(p)
		if parent == p {
			break
		}
		p = parent
	}
	return p
}

func checkHome(env Env, in Input) Result {
	r := Result{Name: "devbox home"}
	if in.HomeErr != nil {
		r.Status, r.Found, r.Fix = Fail, in.HomeErr.Error(), "set DEVBOX_HOME to a folder of yours"
		return r
	}
	h := in.Home
	for _, dir := range []string{h.State, h.Cache} {
		if p := env.nearestExisting(dir); !env.Writable(p) {
			r.Status = Fail
			r.Found = fmt.Sprintf("%s cannot be made: %s is not writable", dir, p)
			r.Fix = "set DEVBOX_HOME to a folder you can write"
			return r
		}
	}
	r.Status, r.Found = OK, fmt.Sprintf("instances in %s, boxes in %s", h.State, h.Cache)
	if free, ok := env.freeAt(h.Cache); ok {
		spaceCheck(&r, free, h.Cache, "downloaded boxes are kept there")
	}
	return r
}

func checkDocker(env Env) Result {
	r := Result{Name: "docker"}
	if path, err := env.LookPath("docker"); err == nil {
		r.Status, r.Found = OK, "docker CLI at "+path
		return r
	}
	r.Status = Warn
	r.Found = "no docker command on PATH: devbox up makes no docker context; devbox docker still works"
	r.Fix = env.install(env.dockerCLI())
	return r
}

// human writes a byte count the way df -h does, in binary units.
func human(b uint64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%d MiB", b>>20)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

package doctor

import (
	"fmt"
	"strconv"
	"strings"
)

// pkg names one thing to install, in each package manager's words.
type pkg struct {
	what string // for hosts whose package manager doctor does not know
	apt  string // Debian and Ubuntu
	brew string // macOS
}

// Packages the fixes name.
var (
	qemuX86 = pkg{"QEMU's x86_64 emulator (qemu-system-x86_64)", "qemu-system-x86", "qemu"}
	qemuArm = pkg{"QEMU's aarch64 emulator (qemu-system-aarch64)", "qemu-system-arm", "qemu"}
	efiArm  = pkg{"UEFI firmware for aarch64 guests (edk2, AAVMF)", "qemu-efi-aarch64", "qemu"}
)

// qemuFor is the QEMU package that runs guests of arch.
func qemuFor(arch string) pkg {
	if arch == "aarch64" {
		return qemuArm
	}
	return qemuX86
}

// dockerCLI is the docker command's package: Debian 13 on ships the CLI
// alone; before, and on Ubuntu, it comes with the engine in docker.io.
func (e Env) dockerCLI() pkg {
	p := pkg{"the docker CLI", "docker.io", "docker"}
	if e.OSRelease["ID"] == "debian" {
		if v, err := strconv.Atoi(e.OSRelease["VERSION_ID"]); err == nil && v >= 13 {
			p.apt = "docker-cli"
		}
	}
	return p
}

// debianLike reports whether apt is this host's package manager.
func (e Env) debianLike() bool {
	for _, id := range append([]string{e.OSRelease["ID"]}, strings.Fields(e.OSRelease["ID_LIKE"])...) {
		if id == "debian" || id == "ubuntu" {
			return true
		}
	}
	return false
}

// sudo prefixes a command that needs root, unless we are root.
func (e Env) sudo(cmd string) string {
	if e.Root {
		return cmd
	}
	return "sudo " + cmd
}

// install is the command that installs p here.
func (e Env) install(p pkg) string {
	switch {
	case e.GOOS == "darwin":
		return "brew install " + p.brew
	case e.debianLike():
		return e.sudo("apt install " + p.apt)
	}
	return fmt.Sprintf("install %s with your package manager (Debian/Ubuntu: apt install %s; macOS: brew install %s)", p.what, p.apt, p.brew)
}

// installOn is install for the host libvirt runs on: this one, or a
// remote one whose system doctor cannot see.
func (e Env) installOn(local bool, p pkg) string {
	if local {
		return e.install(p)
	}
	return fmt.Sprintf("on the libvirt host, install %s (Debian/Ubuntu: apt install %s)", p.what, p.apt)
}

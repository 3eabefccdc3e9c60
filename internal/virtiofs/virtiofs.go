// Package virtiofs serves a host folder to a VM through virtiofsd, boxed in
// so that a hostile guest gets no more from it than from the reverse-SSHFS
// server: no file outside the folder, no file owned by anyone but the host
// user, no set-user-ID bit, no extended attribute.
//
// QEMU's virtiofsd (the C one, QEMU ≤ 8.0) acts as the guest's caller for
// each request and has no id translation, so run as root it would let a
// guest's root make root-owned setuid files in the project. Here devbox
// starts it itself, as the user who runs devbox: in a user namespace that
// maps that user, and nobody else, to the guest user's uid (files appear
// as the guest user's, and every file written is the host user's), with
// the namespace's capabilities virtiofsd needs for its own sandbox (a mount
// namespace with pivot_root into the folder), under a seccomp filter that
// refuses set-ID bits and xattrs whatever virtiofsd is asked. libvirt then
// connects the VM to its socket (<source socket=…/>).
package virtiofs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// HelperArg is the first argument that makes devbox run Helper (the
// seccomp-installing step between devbox and virtiofsd) instead of a
// command.
const HelperArg = "__virtiofsd-helper"

// ErrUnsupported: this platform cannot run virtiofsd (not Linux, or an
// arch the filter is not written for).
var ErrUnsupported = errors.New("virtiofs needs a Linux host (amd64 or arm64)")

// Config is one virtiofsd: one folder for one VM.
type Config struct {
	Binary string // virtiofsd; "" finds it (FindBinary)
	Source string // the host folder served
	Socket string // where virtiofsd listens for QEMU (its folder must exist)
	Log    string // virtiofsd's output

	// The guest user's ids: the host user's files appear as theirs.
	GuestUID, GuestGID int
	// SocketGID, when ≥ 0, is given the socket (group read-write): QEMU's
	// group, when libvirt runs QEMU as another user.
	SocketGID int
	// ReadOnly has virtiofsd refuse every write (only a virtiofsd that
	// RefusesWrites can).
	ReadOnly bool
}

// binaries are where distributions put virtiofsd: QEMU's C one (Debian 12,
// Ubuntu 22.04) and the Rust one's packages.
var binaries = []string{
	"/usr/lib/qemu/virtiofsd",
	"/usr/libexec/virtiofsd",
	"/usr/lib/virtiofsd",
}

// FindBinary is the host's virtiofsd (DEVBOX_VIRTIOFSD, else where
// distributions put it), or an error naming the package or the variable.
func FindBinary() (string, error) {
	if p := os.Getenv("DEVBOX_VIRTIOFSD"); p != "" {
		if !executable(p) {
			return "", fmt.Errorf("DEVBOX_VIRTIOFSD=%s is not an executable file (hint: point it at virtiofsd, or unset it)", p)
		}
		return p, nil
	}
	for _, p := range binaries {
		if executable(p) {
			return p, nil
		}
	}
	return "", errors.New("no virtiofsd on this host (hint: it comes with QEMU: Debian's qemu-system-common, or the virtiofsd package)")
}

// RefusesWrites says whether virtiofsd bin can serve a folder read-only
// (--readonly): the Rust virtiofsd can, QEMU's C one cannot.
func RefusesWrites(bin string) bool { return isRust(bin) }

// isRust tells the Rust virtiofsd ("virtiofsd 1.13.2") from QEMU's C one
// ("virtiofsd version 7.2.22 (...)") by what --version prints.
func isRust(bin string) bool {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return false
	}
	f := strings.Fields(string(out))
	return len(f) >= 2 && f[0] == "virtiofsd" && f[1] != "version"
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// SocketPath is the socket for share tag in dir, kept short: a Unix
// socket path has room for 107 bytes.
func SocketPath(dir, tag string) string {
	return filepath.Join(dir, tag+".sock")
}

//go:build linux && (amd64 || arm64)

package virtiofs

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// caps are the capabilities virtiofsd gets, in its user namespace only
// (where they reach no file but the host user's): its sandbox (unshare,
// mount, pivot_root), dropping the rest, and reaching the user's own files
// whatever their modes say, as the owner could by chmod. Not CAP_CHOWN,
// CAP_MKNOD, CAP_FSETID or CAP_SETFCAP: no file is given away, no device
// made, no set-ID bit kept, no file capability set.
var caps = []uintptr{
	unix.CAP_SYS_ADMIN, unix.CAP_SYS_CHROOT, unix.CAP_SETPCAP,
	unix.CAP_DAC_OVERRIDE, unix.CAP_DAC_READ_SEARCH, unix.CAP_FOWNER,
	unix.CAP_SETUID, unix.CAP_SETGID,
}

// socketEnv marks a virtiofsd with the socket it serves (Running reads it
// back from /proc: a pid file's number may belong to another program).
const socketEnv = "DEVBOX_VIRTIOFS_SOCKET"

// Start starts virtiofsd for c, detached from this process (it serves the
// VM until QEMU lets go of its socket, through agent restarts). The
// socket is made here and handed over (--fd), so it is ready when Start
// returns, with the right owner from the start; virtiofsd then writes no
// pid file of its own (it would in /var/run, out of an ordinary user's
// reach). The caller owns the process: it must stop it if the VM never
// connects.
func Start(c Config) (pid int, err error) {
	bin := c.Binary
	if bin == "" {
		if bin, err = FindBinary(); err != nil {
			return 0, err
		}
	}
	rust := isRust(bin)
	if c.ReadOnly && !rust {
		return 0, fmt.Errorf("virtiofsd %s cannot serve %s read-only (QEMU's C virtiofsd has no --readonly)", bin, c.Source)
	}
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	listener, err := listen(c)
	if err != nil {
		return 0, err
	}
	defer listener.Close()
	logf, err := os.OpenFile(c.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		os.Remove(c.Socket)
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(self, append([]string{HelperArg, bin}, daemonArgs(c, rust)...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{listener} // fd 3
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", socketEnv + "=" + c.Socket}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid:     true,
		Cloneflags: syscall.CLONE_NEWUSER,
		// The host user is the guest user; nobody else exists in here.
		UidMappings: []syscall.SysProcIDMap{{ContainerID: c.GuestUID, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: c.GuestGID, HostID: os.Getgid(), Size: 1}},
		Credential:  &syscall.Credential{Uid: uint32(c.GuestUID), Gid: uint32(c.GuestGID), NoSetGroups: true},
		AmbientCaps: caps,
	}
	if err := cmd.Start(); err != nil {
		os.Remove(c.Socket)
		return 0, fmt.Errorf("start virtiofsd for %s: %w (hint: virtiofs needs user namespaces: sysctl user.max_user_namespaces above 0)", c.Source, err)
	}
	// Until it exits or takes the socket, an early failure is reported.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		os.Remove(c.Socket)
		return 0, fmt.Errorf("virtiofsd for %s exited at once (%v): see %s", c.Source, err, c.Log)
	case <-time.After(300 * time.Millisecond):
	}
	pid = cmd.Process.Pid
	if err := os.WriteFile(pidFile(c.Socket), []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		cmd.Process.Kill()
		os.Remove(c.Socket)
		return 0, err
	}
	return pid, nil
}

// listen makes virtiofsd's listening socket, open to QEMU's group when
// c.SocketGID says so, else to this user alone.
func listen(c Config) (*os.File, error) {
	if err := os.Remove(c.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: c.Socket, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("virtiofsd's socket: %w", err)
	}
	l.SetUnlinkOnClose(false)
	defer l.Close()
	mode := os.FileMode(0o600)
	if c.SocketGID >= 0 {
		mode = 0o660
		err = os.Chown(c.Socket, -1, c.SocketGID)
	}
	if err == nil {
		err = os.Chmod(c.Socket, mode)
	}
	var f *os.File
	if err == nil {
		f, err = l.File()
	}
	if err != nil {
		os.Remove(c.Socket)
		return nil, fmt.Errorf("virtiofsd's socket: %w", err)
	}
	return f, nil
}

// daemonArgs are virtiofsd's options for c: the Rust one's, or the same
// in the C one's form (which the Rust one accepts too, as deprecated).
func daemonArgs(c Config, rust bool) []string {
	if rust {
		args := []string{
			"--fd=3",
			"--shared-dir=" + c.Source,
			"--sandbox=namespace",
			"--cache=auto", // extended attributes, posix locks and flock are off by default
			"--modcaps=-chown:-mknod:-fsetid:-setfcap",
			"--rlimit-nofile=0",
		}
		if c.ReadOnly {
			args = append(args, "--readonly")
		}
		return args
	}
	return []string{
		"--fd=3",
		"-o", "source=" + c.Source,
		"-o", "sandbox=namespace",
		"-o", "cache=auto",
		"-o", "no_xattr",
		"-o", "no_posix_lock", "-o", "no_flock",
		// Its own capability list, trimmed as ours is.
		"-o", "modcaps=-chown:-mknod:-fsetid:-setfcap",
		// The open-file limit as it is: raising it needs the host's
		// CAP_SYS_RESOURCE, which virtiofsd does not have here.
		"--rlimit-nofile=0",
	}
}

// Helper runs in the user namespace Start made: it puts itself under the
// filter and becomes virtiofsd (args: its path, then its arguments). It
// returns only on failure.
func Helper(args []string) error {
	if len(args) < 1 {
		return errors.New("virtiofsd helper: no virtiofsd given")
	}
	if err := installFilter(); err != nil {
		return err
	}
	return unix.Exec(args[0], args, os.Environ())
}

// pidFile records the pid of the virtiofsd serving socket.
func pidFile(socket string) string { return socket + ".pid" }

// recordedPID is the pid recorded for the virtiofsd serving socket, if it
// is still that virtiofsd (a pid file's number may belong to another
// program by now).
func recordedPID(socket string) (int, bool) {
	b, err := os.ReadFile(pidFile(socket))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, false
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return 0, false
	}
	for _, kv := range bytes.Split(environ, []byte{0}) {
		if string(kv) == socketEnv+"="+socket {
			return pid, true
		}
	}
	return 0, false
}

// Serving reports whether the virtiofsd Start made for socket still runs.
func Serving(socket string) bool {
	_, ok := recordedPID(socket)
	return ok
}

// Stop ends the virtiofsd serving socket, if it still runs, and removes
// its pid file and the socket.
func Stop(socket string) {
	if pid, ok := recordedPID(socket); ok {
		unix.Kill(pid, unix.SIGTERM)
	}
	os.Remove(pidFile(socket))
	os.Remove(socket)
}

// StopAll stops every virtiofsd whose socket is in dir.
func StopAll(dir string) {
	pidFiles, _ := filepath.Glob(filepath.Join(dir, "*.sock.pid"))
	for _, p := range pidFiles {
		Stop(strings.TrimSuffix(p, ".pid"))
	}
}

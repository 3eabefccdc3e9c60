//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/filenames"
)

// hostUser is an ordinary user of this host that devbox runs as, with
// the environment a login would give it.
type hostUser struct {
	name       string
	uid, gid   int
	home       string
	runtimeDir string
}

func (u *hostUser) environ(extra ...string) []string {
	env := []string{
		"HOME=" + u.home, "USER=" + u.name, "LOGNAME=" + u.name,
		"XDG_RUNTIME_DIR=" + u.runtimeDir, "PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8",
	}
	return append(env, extra...)
}

func (u *hostUser) procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}}
}

// ordinaryUser makes (once) the host user the session tests run as, with
// the runtime folder a login session would have. It needs root.
func ordinaryUser(t *testing.T) *hostUser {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating the test user needs root")
	}
	const name = "devbox-e2e"
	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v\n%s", name, err, out)
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	h := &hostUser{name: name, home: u.HomeDir}
	h.uid, _ = strconv.Atoi(u.Uid)
	h.gid, _ = strconv.Atoi(u.Gid)
	h.runtimeDir = fmt.Sprintf("/run/user/%d", h.uid)
	if err := os.MkdirAll(h.runtimeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(h.runtimeDir, h.uid, h.gid)
	os.Chmod(h.runtimeDir, 0o700)
	return h
}

// userDir is a fresh folder owned by u, removed at the end of the test.
func (u *hostUser) dir(t *testing.T, name string) string {
	t.Helper()
	d := filepath.Join(u.home, "e2e-"+name+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(d, u.uid, u.gid)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// TestSessionLifecycle: an ordinary user, libvirt's per-user session
// daemon (qemu:///session, started by devbox itself), no sudo: up, ssh,
// run in the shared folder, the host's docker through the socket, halt,
// up, destroy; nothing the run creates is owned by root.
func TestSessionLifecycle(t *testing.T) {
	box := boxPath(t)
	u := ordinaryUser(t)
	// No session daemon is running: devbox must start it.
	exec.Command("pkill", "-u", u.name, "-x", "libvirtd").Run()

	bin := filepath.Join(u.dir(t, "bin"), "devbox")
	data, err := os.ReadFile(builtBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, bin: bin, home: u.dir(t, "home"), project: u.dir(t, "project"), as: u}
	// virtio-fs as an ordinary user: QEMU runs as the user, and so does
	// virtiofsd, with the socket in the instance folder.
	config := func(mountType string) {
		e.writeConfig(fmt.Sprintf("name: session\nbox: %s\ncpus: 2\nmemory: 2GiB\ndisk: 8GiB\nmount_type: %s\nuser:\n  name: dev\n", box, mountType))
		os.Chown(filepath.Join(e.project, "devbox.yaml"), u.uid, u.gid)
	}
	config("virtiofs")
	e.cleanup("session")

	r := e.ok(20*time.Minute, "up")
	contains(t, "up", r.stderr, "Installing Docker engine", "shared folder "+e.project+": virtio-fs")
	st := e.status()
	if st.State != "running" {
		t.Fatalf("status: %+v", st)
	}
	contains(t, "status", e.ok(time.Minute, "status").stdout, "qemu:///session")

	if r := e.ok(time.Minute, "ssh", "--", "id", "-un"); strings.TrimSpace(r.stdout) != "dev" {
		t.Errorf("ssh id: %s", r)
	}
	hostFile := filepath.Join(e.project, "from-host.txt")
	os.WriteFile(hostFile, []byte("written by the host user"), 0o644)
	os.Chown(hostFile, u.uid, u.gid)
	// What the VM writes, as its user or as its root, is the host user's:
	// through virtio-fs, then through reverse SSHFS.
	writes := func(how string) {
		t.Helper()
		if r := e.ok(time.Minute, "run", "sh", "-c", "cat from-host.txt && echo made-in-vm > from-vm-"+how+" && sudo sh -c 'echo made-by-root > from-root-"+how+"'"); r.stdout != "written by the host user" {
			t.Errorf("run in the shared folder (%s): %s", how, r)
		}
		for _, name := range []string{"from-vm-" + how, "from-root-" + how} {
			if fi, err := os.Stat(filepath.Join(e.project, name)); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(u.uid) {
				t.Errorf("%s, written in the VM through %s: %v %v, want owned by uid %d", name, how, fi, err, u.uid)
			}
		}
	}
	writes("virtiofs")
	config("sshfs")
	contains(t, "up", e.ok(5*time.Minute, "up").stderr, "shared folder "+e.project+": reverse SSHFS")
	writes("sshfs")
	config("virtiofs")
	// The host's docker CLI, as the user, through the instance's socket.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	docker := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Os}}")
	docker.Env = u.environ("DOCKER_HOST=unix://"+filepath.Join(e.instanceDir("session"), filenames.DockerSocket), "DOCKER_CONTEXT=")
	docker.SysProcAttr = u.procAttr()
	if out, err := docker.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "linux" {
		t.Errorf("docker version as the user through the socket: %v\n%s", err, out)
	}

	e.ok(3*time.Minute, "halt")
	if st := e.status(); st.State != "stopped" {
		t.Errorf("after halt: %+v", st)
	}
	r = e.ok(10*time.Minute, "up")
	contains(t, "warm up", r.stderr, "Starting the VM", "already provisioned", "shared folder "+e.project+": virtio-fs")

	// Nothing of the run is root's.
	for _, root := range []string{e.home, e.project, filepath.Join(u.home, ".local", "share", "libvirt")} {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if fi, err := d.Info(); err == nil && fi.Sys().(*syscall.Stat_t).Uid == 0 {
				t.Errorf("%s is owned by root", p)
			}
			return nil
		})
	}
	e.ok(3*time.Minute, "destroy", "-f")
	if st := e.status(); st.State != "not created" {
		t.Errorf("after destroy: %+v", st)
	}
	if _, err := os.Stat(e.instanceDir("session")); !os.IsNotExist(err) {
		t.Errorf("instance folder left: %v", err)
	}
	for _, l := range virtiofsLeft(e.domain("session")) {
		t.Errorf("%s left of the virtio-fs share", l)
	}
}

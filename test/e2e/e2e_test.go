//go:build e2e

package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/internal/instance"
)

// TestBadInput: each mistake gets a clear error and creates nothing.
func TestBadInput(t *testing.T) {
	box := boxPath(t)
	cases := []struct {
		name, config string
		env          []string
		wants        []string
	}{
		{"invalid config", "name: Bad_Name\nbox: " + box + "\ncpus: -1\nmemroy: 1GiB\n", nil,
			[]string{`unknown field "memroy"`}},
		{"invalid values", "name: Bad_Name\nbox: " + box + "\ncpus: -1\nmemory: 1 lot\n", nil,
			[]string{"name:", "cpus:", "memory:"}},
		{"missing box", "name: nobox\nbox: /nonexistent/box.qcow2\n", nil,
			[]string{"/nonexistent/box.qcow2", "hint"}},
		{"checksum mismatch", "name: badsum\nbox: " + box + "\nbox_sha256: " + strings.Repeat("0", 64) + "\n", nil,
			[]string{"sha256 mismatch", "box_sha256"}},
		{"libvirt socket absent", "name: nosock\nbox: " + box + "\n",
			[]string{"LIBVIRT_DEFAULT_URI=qemu:///system?socket=/nonexistent/libvirt-sock"},
			[]string{"/nonexistent/libvirt-sock", "hint: start the libvirt daemon"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.config)
			e.extra = tc.env
			r := e.run(5*time.Minute, nil, "up")
			if r.code != 1 {
				t.Fatalf("want exit 1:\n%s", r)
			}
			contains(t, "error", r.stderr, tc.wants...)
			entries, _ := os.ReadDir(instance.Home{State: e.home}.Instances())
			if len(entries) > 0 {
				t.Errorf("instance folders created: %v", entries)
			}
			for _, name := range []string{"bad-name", "nobox", "badsum", "nosock"} {
				e.assertGone(name)
			}
		})
	}
}

// TestSSHNeverUp: a box that cannot boot gives a timeout naming the console
// log; the instance is kept for inspection until destroy.
func TestSSHNeverUp(t *testing.T) {
	dir := t.TempDir()
	blank := filepath.Join(dir, "blank.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", blank, "1G").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	e := newEnv(t, "name: noboot\nbox: "+blank+"\nmemory: 256MiB\ncpus: 1\ndisk: 1GiB\nboot_timeout: 15s\n")
	e.cleanup("noboot")
	r := e.run(5*time.Minute, nil, "up")
	if r.code != 1 {
		t.Fatalf("want exit 1:\n%s", r)
	}
	contains(t, "error", r.stderr, "did not answer within boot_timeout 15s", "console log", filepath.Join(e.instanceDir("noboot"), filenames.ConsoleLog),
		"no Linux kernel starting: the box may be for another arch than x86_64")
	if st := e.status(); st.State != "running" && st.State != "stopped" {
		t.Errorf("instance not kept for inspection: %+v", st)
	}
	e.ok(2*time.Minute, "destroy", "-f")
	e.assertGone("noboot")
}

// TestLifecycle is the whole slice on one VM: up (with a user step that
// fails first), provision, ssh, docker as the user, halt, up on a taken
// port without reprovisioning, destroy.
func TestLifecycle(t *testing.T) {
	box := boxPath(t)
	busybox := hostBusybox(t)
	forwardPort, publishPort := freePort(t), freePort(t)
	udpForwardPort, udpGuestPort := freeUDPPort(t), freeUDPPort(t)
	config := fmt.Sprintf(`name: life
box: %s
cpus: 2
memory: 2GiB
disk: 8GiB
user:
  name: dev
forwards:
  - host: 127.0.0.1:%d
    guest: %d
  - {host: "%d", guest: %d, proto: udp}
provision:
  - name: needs-fix
    script: |
      echo "step output before failure"
      test -e /etc/devbox-fixed || exit 5
      echo fixed > /etc/devbox-step-ran
`, box, forwardPort, publishPort, udpForwardPort, udpGuestPort)
	e := newEnv(t, config)
	e.forwardPort, e.publishPort = forwardPort, publishPort
	e.udpForwardPort, e.udpGuestPort = udpForwardPort, udpGuestPort
	e.cleanup("life")

	// First up: the engine is installed, then the user's step fails.
	r := e.run(20*time.Minute, nil, "up")
	if r.code != 1 {
		t.Fatalf("up with a failing step: want exit 1:\n%s", r)
	}
	contains(t, "up output", r.stderr, "Installing Docker engine", `provision step "needs-fix" failed with exit status 5`,
		"step output before failure", "devbox provision")
	if st := e.status(); st.State != "running" || st.User != "dev" || st.Accel != "tcg" {
		t.Fatalf("instance not kept running after a failed step: %+v", st)
	}

	// Fix it in the guest, then provision again.
	e.ok(time.Minute, "ssh", "--", "sudo", "touch", "/etc/devbox-fixed")
	r = e.ok(10*time.Minute, "provision")
	contains(t, "provision output", r.stderr, "✓ needs-fix", "✓ Installing Docker engine (already done)")
	r = e.ok(time.Minute, "ssh", "--", "cat", "/etc/devbox-step-ran")
	if strings.TrimSpace(r.stdout) != "fixed" {
		t.Errorf("step did not run: %s", r)
	}

	t.Run("the guest reaches the host's loopback (offline is off)", func(t *testing.T) {
		// The control for TestBakedBoxOffline's check that it cannot.
		if reached, accepted := guestReachesHost(t, e); !reached || accepted == 0 {
			t.Errorf("guest could not connect to 10.0.2.2 (reached=%v, host accepted %d)", reached, accepted)
		}
	})
	t.Run("ssh runs as the docker-group user", func(t *testing.T) {
		r := e.ok(time.Minute, "ssh", "--", "id")
		contains(t, "id", r.stdout, "(dev)", "(docker)")
	})
	t.Run("ssh returns the exit status", func(t *testing.T) {
		r := e.run(time.Minute, nil, "ssh", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
		if r.code != 3 || strings.TrimSpace(r.stdout) != "out" || !strings.Contains(r.stderr, "err") {
			t.Errorf("want exit 3 with out/err split:\n%s", r)
		}
	})
	t.Run("docker build and run from a piped tar", func(t *testing.T) {
		ctx := scratchImage(t, busybox)
		tarball, err := exec.Command("tar", "c", "-C", ctx, ".").Output()
		if err != nil {
			t.Fatal(err)
		}
		r := e.run(2*time.Minute, bytes.NewReader(tarball), "ssh", "--", "sh", "-c", "rm -rf /tmp/x && mkdir /tmp/x && tar x -C /tmp/x")
		if r.code != 0 {
			t.Fatalf("tar through ssh:\n%s", r)
		}
		e.ok(5*time.Minute, "ssh", "--", "docker", "build", "-q", "-t", "e2e-busybox", "/tmp/x")
		r = e.ok(2*time.Minute, "ssh", "--", "docker", "run", "--rm", "e2e-busybox", "sh", "-c", "echo hello from $(uname -s)")
		if strings.TrimSpace(r.stdout) != "hello from Linux" {
			t.Errorf("container output: %s", r)
		}
	})
	t.Run("up of a running instance is a no-op", func(t *testing.T) {
		r := e.ok(2*time.Minute, "up")
		contains(t, "up", r.stderr, "already running", "already provisioned")
		if strings.Contains(r.stderr, "Installing Docker") || strings.Contains(r.stderr, "Starting the VM") {
			t.Errorf("second up did work:\n%s", r)
		}
	})

	t.Run("transparent proxy", func(t *testing.T) { testProxy(t, e, busybox) })
	t.Run("udp", func(t *testing.T) { testUDP(t, e) })
	t.Run("host names", func(t *testing.T) { testHostNames(t, e, busybox) })
	t.Run("hardening", func(t *testing.T) { testHardening(t, e) })

	// Halt, then take the instance's SSH port before starting it again.
	e.ok(3*time.Minute, "halt")
	st := e.status()
	if st.State != "stopped" {
		t.Fatalf("after halt: %+v", st)
	}
	squatter, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", st.SSHPort))
	if err != nil {
		t.Fatalf("take port %d: %v", st.SSHPort, err)
	}
	defer squatter.Close()
	r = e.ok(10*time.Minute, "up")
	contains(t, "warm up", r.stderr, "Starting the VM", "already provisioned")
	if strings.Contains(r.stderr, "Installing Docker") {
		t.Errorf("warm up reprovisioned:\n%s", r)
	}
	st2 := e.status()
	if st2.State != "running" || st2.SSHPort == st.SSHPort {
		t.Errorf("want running on a new port (old %d): %+v", st.SSHPort, st2)
	}
	r = e.ok(2*time.Minute, "ssh", "--", "docker", "run", "--rm", "e2e-busybox", "echo", "still here")
	if strings.TrimSpace(r.stdout) != "still here" {
		t.Errorf("docker after halt/up: %s", r)
	}
	// The agent came back with the VM: the host's docker works again, and
	// the shared folder is mounted again.
	if out := hostDocker(t, e, "run", "--rm", "-v", e.project+":/w", "e2e-busybox", "cat", "/w/from-host.txt"); out != "written on the host" {
		t.Errorf("docker through the socket after halt/up: %q", out)
	}

	t.Run("box package makes a box that comes up provisioned", func(t *testing.T) { testPackage(t, e, config) })

	r = e.run(time.Minute, nil, "destroy")
	if r.code == 0 || !strings.Contains(r.stderr, "destroy -f") {
		t.Errorf("destroy without -f and without a terminal must refuse:\n%s", r)
	}
	e.ok(3*time.Minute, "destroy", "-f")
	if st := e.status(); st.State != "not created" {
		t.Errorf("after destroy: %+v", st)
	}
	e.assertGone("life")
}

// testPackage packages the provisioned instance of e (which it leaves
// stopped) and brings a second instance up from the box: new machine-id,
// no provisioning work, the engine and its images there.
func testPackage(t *testing.T, e *env, config string) {
	idBefore := strings.TrimSpace(e.ok(time.Minute, "ssh", "--", "cat", "/etc/machine-id").stdout)
	out := filepath.Join(t.TempDir(), "life.qcow2")
	r := e.ok(10*time.Minute, "box", "package", out)
	fields := strings.Fields(r.stdout)
	data, err := os.ReadFile(out)
	if err != nil || len(fields) == 0 || fields[0] != fmt.Sprintf("%x", sha256.Sum256(data)) {
		t.Fatalf("box package printed %q for %s (%v)", r.stdout, out, err)
	}
	// fstrim through the disk's discard=unmap: free blocks are not copied.
	contains(t, "box package", r.stderr, "trimmed on /dev/vda1")
	if st := e.status(); st.State != "stopped" {
		t.Errorf("after package the instance is %s, want stopped", st.State)
	}
	p := newEnv(t, strings.Replace(strings.Replace(config, "name: life\n", "name: life2\n", 1), boxPath(t), out, 1))
	p.cleanup("life2")
	r = p.ok(15*time.Minute, "up")
	contains(t, "up from the packaged box", r.stderr, "already provisioned")
	if strings.Contains(r.stderr, "Installing Docker") {
		t.Errorf("up from the packaged box installed the engine:\n%s", r)
	}
	if id := strings.TrimSpace(p.ok(time.Minute, "ssh", "--", "cat", "/etc/machine-id").stdout); id == "" || id == idBefore {
		t.Errorf("machine-id of the new instance %q (the packaged one had %q)", id, idBefore)
	}
	if r := p.ok(2*time.Minute, "ssh", "--", "docker", "run", "--rm", "e2e-busybox", "echo", "packaged"); strings.TrimSpace(r.stdout) != "packaged" {
		t.Errorf("the packaged engine's image: %s", r)
	}
	p.ok(3*time.Minute, "destroy", "-f")
	p.assertGone("life2")
}

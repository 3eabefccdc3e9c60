//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/internal/lockfile"
	"github.com/devbox-vm/devbox/internal/testutil"
	"github.com/devbox-vm/devbox/vm/libvirt"
)

// agentStatus is the part of status --json the hardening tests read.
type agentStatus struct {
	State       string `json:"state"`
	Agent       string `json:"agent"`
	AgentStatus *struct {
		Connection struct {
			State  string `json:"state"`
			Reason string `json:"reason"`
		} `json:"connection"`
		Docker struct {
			State string `json:"state"`
		} `json:"docker_socket"`
		Mounts []struct {
			Host   string `json:"host"`
			State  string `json:"state"`
			Reason string `json:"reason"`
			Type   string `json:"type"`
			Events string `json:"events"`
		} `json:"mounts"`
	} `json:"agent_status"`
}

func (e *env) agentStatus() agentStatus {
	e.t.Helper()
	r := e.ok(time.Minute, "status", "--json")
	var s agentStatus
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		e.t.Fatalf("status --json: %v\n%s", err, r)
	}
	return s
}

// agentPID is the pid the running agent of the env's instance recorded.
func (e *env) agentPID() string {
	b, _ := os.ReadFile(filepath.Join(e.instanceDir(e.name), filenames.AgentPID))
	pid, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	return pid
}

// killAgent kills the agent of the env's instance with SIGKILL and waits
// until it is gone.
func (e *env) killAgent(t *testing.T) {
	t.Helper()
	pid, err := strconv.Atoi(e.agentPID())
	if err != nil {
		t.Fatalf("agent pid of %s: %v", e.name, err)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(t, pid)
}

// testHardening: the VM acting against the host through its share, and
// the agent's state, on the running, provisioned instance of e.
func testHardening(t *testing.T, e *env) {
	cfgPath := filepath.Join(e.project, "devbox.yaml")
	orig, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	restore := func() {
		os.WriteFile(cfgPath, orig, 0o644)
		os.Remove(filepath.Join(e.project, "escape"))
	}

	t.Run("status shows what the agent serves", func(t *testing.T) {
		s := e.agentStatus()
		if s.AgentStatus == nil || s.AgentStatus.Connection.State != "up" || s.AgentStatus.Docker.State != "listening" ||
			len(s.AgentStatus.Mounts) != 1 || s.AgentStatus.Mounts[0].State != "mounted" || s.AgentStatus.Mounts[0].Host != e.project {
			t.Errorf("agent status: %+v", s.AgentStatus)
		}
	})

	t.Run("the VM cannot widen its share to the host's /", func(t *testing.T) {
		defer restore()
		pid := e.agentPID()
		hostile := string(orig) + "mounts:\n  - host: .\n  - host: ./escape\n"
		r := e.run(time.Minute, strings.NewReader(hostile), "run", "sh", "-c", "ln -s / escape && cat > devbox.yaml")
		if r.code != 0 {
			t.Fatalf("writing from the guest:\n%s", r)
		}
		if target, err := os.Readlink(filepath.Join(e.project, "escape")); err != nil || target != "/" {
			t.Fatalf("the guest's symlink on the host: %q %v", target, err)
		}
		r = e.run(5*time.Minute, nil, "up")
		if r.code != 1 {
			t.Fatalf("up served a share that leads to /:\n%s", r)
		}
		contains(t, "up", r.stderr, "escape (really /): the whole filesystem cannot be shared")
		if now := e.agentPID(); now != pid {
			t.Errorf("the agent was restarted (%s → %s)", pid, now)
		}
	})

	t.Run("new shares and forwards need the user's yes", func(t *testing.T) {
		defer restore()
		pid := e.agentPID()
		outside := t.TempDir()
		port := freePort(t)
		hostile := strings.Replace(string(orig), "forwards:\n", fmt.Sprintf("forwards:\n  - host: \"0.0.0.0:%d\"\n    guest: 22\n", port), 1) +
			"mounts:\n  - host: .\n  - host: ./escape\n"
		script := fmt.Sprintf("ln -s %s escape && cat > devbox.yaml", outside)
		if r := e.run(time.Minute, strings.NewReader(hostile), "run", "sh", "-c", script); r.code != 0 {
			t.Fatalf("writing from the guest:\n%s", r)
		}
		r := e.run(5*time.Minute, nil, "up")
		if r.code != 1 {
			t.Fatalf("up accepted wider shares without a yes:\n%s", r)
		}
		contains(t, "up", r.stderr, "+ shared folder "+outside+" (rw)", fmt.Sprintf("0.0.0.0:%d", port), "NOT loopback", "devbox up --accept-shares")
		if now := e.agentPID(); now != pid {
			t.Errorf("the agent was restarted (%s → %s)", pid, now)
		}
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second); err == nil {
			c.Close()
			t.Errorf("port %d listens although the forward was refused", port)
		}
		// Undoing the change needs no question.
		restore()
		r = e.ok(5*time.Minute, "up")
		if strings.Contains(r.stderr, "restarting the agent") {
			t.Errorf("the original config restarted the agent:\n%s", r)
		}
	})

	t.Run("run works from a folder reached through a symlink", func(t *testing.T) {
		link := filepath.Join(t.TempDir(), "project-link")
		if err := os.Symlink(e.project, link); err != nil {
			t.Fatal(err)
		}
		r := e.runIn(link, time.Minute, nil, "run", "pwd")
		if r.code != 0 || strings.TrimSpace(r.stdout) != e.project {
			t.Errorf("run through a symlink:\n%s", r)
		}
	})

	t.Run("the VM cannot plant setuid files or give files away", func(t *testing.T) {
		defer os.Remove(filepath.Join(e.project, "suid"))
		e.run(time.Minute, nil, "run", "sh", "-c",
			"cp /bin/true suid; chmod 4755 suid; chmod 6755 suid; sudo -n chmod 4755 suid; sudo -n chown 12345:12345 suid; true")
		fi, err := os.Lstat(filepath.Join(e.project, "suid"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
			t.Errorf("the guest made a setuid/setgid file on the host: %v", fi.Mode())
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Getuid() || int(st.Gid) != os.Getgid() {
			t.Errorf("the guest gave the file away: owner %d:%d, want %d:%d", st.Uid, st.Gid, os.Getuid(), os.Getgid())
		}
	})

	t.Run("a second command waits for the first, saying for whom", func(t *testing.T) {
		lk, err := lockfile.TryLock(e.instanceDir("life.lock"), "devbox up of life")
		if err != nil {
			t.Fatal(err)
		}
		var stderr testutil.Buffer
		cmd := exec.Command(e.bin, "up")
		cmd.Dir = e.project
		cmd.Env = append(os.Environ(), "DEVBOX_HOME="+e.home)
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Should the second up not say it waits, stop it with the test;
		// once waited for, it is done and Kill does nothing.
		t.Cleanup(func() { cmd.Process.Kill() })
		stderr.WaitFor(t, "waiting for devbox up of life, pid", time.Minute)
		if cmd.ProcessState != nil {
			t.Fatal("the second up ended while the instance was locked")
		}
		lk.Unlock()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("the second up after the first finished: %v\n%s", err, stderr.String())
		}
	})

	t.Run("a mount that cannot be served fails up, naming it", func(t *testing.T) {
		defer restore()
		e.ok(time.Minute, "ssh", "--", "sudo", "mv", "/usr/bin/sshfs", "/usr/bin/sshfs.off")
		// sync: a later subtest pulls the VM's plug, and a rename still in
		// the guest's journal would be lost with it.
		defer func() {
			if r := e.run(time.Minute, nil, "ssh", "--", "sudo", "sh", "-c", "mv /usr/bin/sshfs.off /usr/bin/sshfs && sync"); r.code != 0 {
				t.Errorf("putting sshfs back:\n%s", r)
			}
		}()
		extra := t.TempDir()
		os.WriteFile(cfgPath, []byte(string(orig)+fmt.Sprintf("mounts:\n  - host: .\n  - host: %s\n", extra)), 0o644)
		r := e.run(5*time.Minute, nil, "up", "--accept-shares")
		if r.code != 1 {
			t.Fatalf("up with a mount that cannot work:\n%s", r)
		}
		contains(t, "up", r.stderr, "shared folder "+extra+":")
		if st := e.status(); st.State != "running" {
			t.Errorf("the VM was not left running: %+v", st)
		}
		s := e.agentStatus()
		if s.AgentStatus == nil || len(s.AgentStatus.Mounts) != 2 || s.AgentStatus.Mounts[1].State != "failed" {
			t.Errorf("status does not show the failed mount: %+v", s.AgentStatus)
		}
	})
	// sshfs is back: the original config brings every mount back.
	e.ok(5*time.Minute, "up")
	if s := e.agentStatus(); s.AgentStatus == nil || len(s.AgentStatus.Mounts) != 1 || s.AgentStatus.Mounts[0].State != "mounted" {
		t.Fatalf("mounts after restoring: %+v", s.AgentStatus)
	}

	t.Run("a libvirtd restart does not disturb run or the socket", func(t *testing.T) {
		restartLibvirtd(t)
		if r := e.run(time.Minute, nil, "run", "true"); r.code != 0 {
			t.Errorf("run after a libvirtd restart:\n%s", r)
		}
		hostDocker(t, e, "ps")
		deadline := time.Now().Add(time.Minute)
		for {
			r := e.run(time.Minute, nil, "status", "--json")
			if r.code == 0 && strings.Contains(r.stdout, `"state": "running"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("status did not recover after a libvirtd restart:\n%s", r)
			}
			time.Sleep(time.Second)
		}
	})

	t.Run("a VM forced off: run and the socket fail at once, up brings them back", func(t *testing.T) {
		forceOff(t, e.domain(e.name))
		// A deadline, not a speed target: today they hang on.
		r := e.run(20*time.Second, nil, "run", "true")
		if r.code == 0 {
			t.Fatalf("run succeeded on a VM that is off:\n%s", r)
		}
		contains(t, "run", r.stderr, "devbox up")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := dockerCmd(ctx, e, "ps").CombinedOutput()
		if ctx.Err() != nil || err == nil {
			t.Errorf("docker ps on a VM that is off: %v (ctx %v)\n%s", err, ctx.Err(), out)
		}
		s := e.agentStatus()
		if s.State != "stopped" || s.AgentStatus == nil || s.AgentStatus.Connection.State == "up" {
			t.Errorf("status of a VM that is off: %+v", s)
		}
		e.ok(10*time.Minute, "up")
		if out := hostDocker(t, e, "run", "--rm", "-v", e.project+":/w", "e2e-busybox", "cat", "/w/from-host.txt"); out != "written on the host" {
			t.Errorf("docker through the socket after up: %q", out)
		}
	})
}

// forceOff pulls the plug on a domain through libvirt, as a crash would.
func forceOff(t *testing.T, domain string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := libvirt.Connect(ctx, "qemu:///system")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Kill(ctx, domain); err != nil {
		t.Fatal(err)
	}
}

// restartLibvirtd stops libvirtd and starts it again, then waits for its
// socket to answer.
func restartLibvirtd(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		if out, err := exec.Command("systemctl", "restart", "libvirtd").CombinedOutput(); err != nil {
			t.Fatalf("restart libvirtd: %v\n%s", err, out)
		}
	} else {
		exec.Command("pkill", "-x", "libvirtd").Run()
		deadline := time.Now().Add(30 * time.Second)
		for exec.Command("pgrep", "-x", "libvirtd").Run() == nil {
			if time.Now().After(deadline) {
				t.Fatal("libvirtd did not stop")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if out, err := exec.Command("libvirtd", "-d").CombinedOutput(); err != nil {
			t.Fatalf("start libvirtd: %v\n%s", err, out)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		d, err := libvirt.Connect(ctx, "qemu:///system")
		cancel()
		if err == nil {
			d.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("libvirtd does not answer after a restart: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

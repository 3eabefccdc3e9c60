//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testVirtioFS switches the running instance e ("baked", with the
// e2e-baked busybox image built) to mount_type: virtiofs, with a second,
// read-only folder, and checks what the guest can do through the
// virtio-fs share: everything a project needs, nothing against the host.
// It leaves the config switched: the caller destroys the instance next.
func testVirtioFS(t *testing.T, e *env) {
	cfgPath := filepath.Join(e.project, "devbox.yaml")
	orig, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// Put back for the caller's destroy: the read-only folder goes with
	// this test.
	defer os.WriteFile(cfgPath, orig, 0o644)
	ro := t.TempDir()
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("the host's secret\n"), 0o644)
	os.WriteFile(cfgPath, []byte(string(orig)+"mount_type: virtiofs\nmounts:\n  - host: .\n  - host: "+ro+"\n    mode: ro\n"), 0o644)

	r := e.ok(5*time.Minute, "up", "--accept-shares")
	contains(t, "up", r.stderr, "shared folder "+e.project+": virtio-fs",
		"shared folder "+ro+": reverse SSHFS, not virtio-fs: a read-only folder")
	if s := e.agentStatus(); s.AgentStatus == nil || len(s.AgentStatus.Mounts) != 2 ||
		s.AgentStatus.Mounts[0].Type != "virtiofs" || s.AgentStatus.Mounts[1].Type != "sshfs" {
		t.Fatalf("status after switching to virtiofs: %+v", s.AgentStatus)
	}
	if r := e.ok(time.Minute, "ssh", "--", "findmnt", "-rn", "-o", "FSTYPE", "-M", e.project); strings.TrimSpace(r.stdout) != "virtiofs" {
		t.Fatalf("the project folder in the guest is mounted as %q, want virtiofs", r.stdout)
	}

	t.Run("files go both ways, and every file the VM writes is the host user's", func(t *testing.T) {
		os.WriteFile(filepath.Join(e.project, "vfs-host"), []byte("from the host\n"), 0o644)
		if r := e.ok(time.Minute, "run", "--", "cat", "vfs-host"); r.stdout != "from the host\n" {
			t.Errorf("the VM reads %q", r.stdout)
		}
		e.ok(time.Minute, "run", "--", "sh", "-c", "echo user > vfs-user && sudo sh -c 'echo root > vfs-root && mkdir vfs-dir'")
		hostDocker(t, e, "run", "--rm", "-v", e.project+":/w", "e2e-baked", "sh", "-c", "echo container > /w/vfs-container")
		for _, name := range []string{"vfs-user", "vfs-root", "vfs-dir", "vfs-container"} {
			fi, err := os.Stat(filepath.Join(e.project, name))
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			// The guest user is uid 1000 and root 0 in the VM: on the host
			// both are the user who ran devbox.
			if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Getuid() || int(st.Gid) != os.Getgid() {
				t.Errorf("%s is owned by %d:%d on the host, want the devbox user %d:%d", name, st.Uid, st.Gid, os.Getuid(), os.Getgid())
			}
		}
		// In the VM the host user's files are the guest user's.
		if r := e.ok(time.Minute, "ssh", "--", "stat", "-c", "%U", e.project+"/vfs-root"); strings.TrimSpace(r.stdout) != "dev" {
			t.Errorf("in the VM vfs-root belongs to %q, want dev", r.stdout)
		}
	})

	t.Run("no setuid file, no device, no file given away", func(t *testing.T) {
		p := e.project + "/vfs-root"
		for _, cmd := range [][]string{
			{"sudo", "chmod", "4755", p},
			{"sudo", "chmod", "g+s", p},
			{"sudo", "python3", "-c", "import os; os.open('" + e.project + "/vfs-suid', os.O_CREAT | os.O_WRONLY, 0o4755)"},
			{"sudo", "mknod", e.project + "/vfs-null", "c", "1", "3"},
			{"sudo", "chown", "0:0", p},
		} {
			if r := e.run(time.Minute, nil, append([]string{"ssh", "--"}, cmd...)...); r.code == 0 {
				t.Errorf("in the VM %q succeeded on the share", strings.Join(cmd, " "))
			}
		}
		if r := e.run(time.Minute, nil, "run", "--", "sh", "-c", "docker run --rm -v $PWD:/w e2e-baked chmod u+s /w/vfs-container"); r.code == 0 {
			t.Error("a container made a setuid file on the share")
		}
		filepath.Walk(e.project, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeDevice|os.ModeCharDevice) != 0 {
				t.Errorf("%s has mode %v on the host", p, fi.Mode())
			}
			return nil
		})
	})

	t.Run("a symlink in the share does not lead to the host's files", func(t *testing.T) {
		os.Symlink(filepath.Join(outside, "secret"), filepath.Join(e.project, "vfs-link"))
		if r := e.run(time.Minute, nil, "run", "--", "cat", "vfs-link"); strings.Contains(r.stdout, "secret") {
			t.Errorf("the VM read a host file outside the share through a symlink: %q", r.stdout)
		}
		sibling := filepath.Join(filepath.Dir(e.project), "vfs-sibling")
		os.Mkdir(sibling, 0o755)
		defer os.Remove(sibling)
		if r := e.run(time.Minute, nil, "ssh", "--", "ls", "-a", e.project+"/.."); strings.Contains(r.stdout, "vfs-sibling") {
			t.Errorf("the VM sees the host's %s beside the share:\n%s", sibling, r.stdout)
		}
	})

	t.Run("the read-only folder stays read-only", func(t *testing.T) {
		if r := e.run(time.Minute, nil, "ssh", "--", "sudo", "touch", ro+"/vfs-ro"); r.code == 0 {
			t.Error("the VM wrote into the read-only folder")
		}
	})

	t.Run("host edits raise close_write and attrib in the VM, the guest's own writes no echo", func(t *testing.T) {
		watched := filepath.Join(e.project, "vwatched")
		os.MkdirAll(watched, 0o755)
		os.WriteFile(filepath.Join(watched, "a.txt"), []byte("before\n"), 0o644)
		bin := buildTool(t, "inotifylog", "amd64", t.TempDir())
		tool := filepath.Join(e.project, "vfs-inotifylog")
		data, _ := os.ReadFile(bin)
		os.WriteFile(tool, data, 0o755)
		ctx, cancel := context.WithCancel(context.Background())
		cmd := e.command(ctx, e.project, "ssh", "--", tool, watched)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); cmd.Wait() }()
		inVM := &eventLog{}
		go inVM.follow(out)
		inVM.await(t, "the VM", time.Minute, "ready")
		if s := e.agentStatus(); !strings.Contains(s.AgentStatus.Mounts[0].Events, "close_write and attrib") {
			t.Errorf("status of the virtio-fs folder's events: %q", s.AgentStatus.Mounts[0].Events)
		}

		a := filepath.Join(watched, "a.txt")
		os.WriteFile(a, []byte("edited on the host\n"), 0o644)
		took := inVM.await(t, "the VM", 10*time.Second, "CLOSE_WRITE "+a, "ATTRIB "+a)
		t.Logf("an edit on the host was seen by inotify in the VM after %v", took.Round(time.Millisecond))
		if r := e.ok(time.Minute, "run", "--", "cat", "vwatched/a.txt"); r.stdout != "edited on the host\n" {
			t.Errorf("after the replay the VM reads %q", r.stdout)
		}

		g := filepath.Join(watched, "guest.txt")
		e.ok(time.Minute, "ssh", "--", "sh", "-c", "echo from the guest > "+g)
		time.Sleep(3 * time.Second) // past the echo window: an echo would have come by now
		marker := filepath.Join(watched, "marker.txt")
		os.WriteFile(marker, []byte("last\n"), 0o644)
		inVM.await(t, "the VM", 10*time.Second, "CLOSE_WRITE "+marker)
		if n, m := inVM.count("CLOSE_WRITE "+g), inVM.count("ATTRIB "+g); n != 1 || m != 0 {
			t.Errorf("the guest's own write: close_write seen %d times and attrib %d, want once and none (no echo)", n, m)
		}
	})

	t.Run("the share outlives the agent", func(t *testing.T) {
		// virtiofsd serves the VM, not the agent: a killed agent's
		// successor finds the device and mounts nothing again.
		e.killAgent(t)
		os.WriteFile(filepath.Join(e.project, "vfs-after"), []byte("after\n"), 0o644)
		e.ok(5*time.Minute, "up")
		if r := e.ok(time.Minute, "run", "--", "cat", "vfs-after"); r.stdout != "after\n" {
			t.Errorf("after the agent's restart the VM reads %q", r.stdout)
		}
		if r := e.ok(time.Minute, "ssh", "--", "sh", "-c", "findmnt -rn -t virtiofs | wc -l"); strings.TrimSpace(r.stdout) != "1" {
			t.Errorf("virtio-fs mounts in the guest after the agent's restart: %s", r.stdout)
		}
	})

	t.Run("with the Rust virtiofsd a read-only folder is virtio-fs, and refuses writes", func(t *testing.T) {
		rust := os.Getenv("DEVBOX_E2E_VIRTIOFSD_RUST")
		if rust == "" {
			t.Skip("DEVBOX_E2E_VIRTIOFSD_RUST is not set (make test-e2e fetches Debian 13's virtiofsd and sets it)")
		}
		os.WriteFile(filepath.Join(ro, "ro-file"), []byte("read only\n"), 0o644)
		// The agent starts virtiofsd: a new agent, with the Rust one named.
		extra := e.extra
		e.extra = append(append([]string{}, extra...), "DEVBOX_VIRTIOFSD="+rust)
		e.killAgent(t)
		contains(t, "up", e.ok(5*time.Minute, "up").stderr, "shared folder "+ro+": virtio-fs")
		if r := e.ok(time.Minute, "ssh", "--", "findmnt", "-rn", "-o", "FSTYPE", "-M", ro); strings.TrimSpace(r.stdout) != "virtiofs" {
			t.Errorf("the read-only folder is mounted as %q, want virtiofs", r.stdout)
		}
		if r := e.ok(time.Minute, "ssh", "--", "cat", ro+"/ro-file"); r.stdout != "read only\n" {
			t.Errorf("the VM reads %q", r.stdout)
		}
		// The guest's root may remount it read-write: virtiofsd refuses
		// the writes itself.
		r := e.run(time.Minute, nil, "ssh", "--", "sh", "-c", "touch "+ro+"/by-user; sudo mount -o remount,rw "+ro+"; sudo touch "+ro+"/by-root; sudo rm "+ro+"/ro-file; true")
		contains(t, "writes into the read-only folder", r.stderr, "Read-only file system")
		entries, _ := os.ReadDir(ro)
		if len(entries) != 1 || entries[0].Name() != "ro-file" {
			t.Errorf("the read-only folder holds %v on the host, want only ro-file", entries)
		}
		if !virtiofsdServes(ro, "--readonly") {
			t.Errorf("no virtiofsd serving %s with --readonly", ro)
		}

		// Back to QEMU's virtiofsd: the folder goes back to SSHFS, and its
		// virtio-fs device is removed.
		e.extra = extra
		e.killAgent(t)
		contains(t, "up", e.ok(5*time.Minute, "up").stderr, "shared folder "+ro+": reverse SSHFS")
		if r := e.ok(time.Minute, "ssh", "--", "findmnt", "-rn", "-o", "FSTYPE", "-M", ro); strings.TrimSpace(r.stdout) != "fuse.sshfs" {
			t.Errorf("the read-only folder is mounted as %q after the switch back, want fuse.sshfs", r.stdout)
		}
	})
}

// virtiofsdServes says whether a virtiofsd process serves folder with
// option in its command line.
func virtiofsdServes(folder, option string) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		args := strings.Split(string(b), "\x00")
		if err == nil && strings.Contains(string(b), "virtiofsd") && slices.Contains(args, "--shared-dir="+folder) && slices.Contains(args, option) {
			return true
		}
	}
	return false
}

// virtiofsLeft names what of domain's virtio-fs shares is left on the
// host: the sockets' folder of a root devbox, and virtiofsd processes.
func virtiofsLeft(domain string) []string {
	var left []string
	if _, err := os.Stat(filepath.Join("/run", domain)); err == nil {
		left = append(left, "/run/"+domain)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), "DEVBOX_VIRTIOFS_SOCKET=") && strings.Contains(string(b), domain) {
			left = append(left, "virtiofsd "+filepath.Base(filepath.Dir(p)))
		}
	}
	return left
}

//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/filenames"
)

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// dockerCmd is the host's docker CLI pointed at the instance's socket.
func dockerCmd(ctx context.Context, e *env, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+filepath.Join(e.instanceDir(e.name), filenames.DockerSocket), "DOCKER_CONTEXT=")
	cmd.Dir = e.project
	return cmd
}

// hostDocker runs the host's docker CLI against the instance's socket.
func hostDocker(t *testing.T, e *env, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := dockerCmd(ctx, e, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker %s: %v\n%s\n%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return strings.TrimSpace(out.String())
}

// httpGet polls url until it answers 200 or the deadline passes.
func httpGet(t *testing.T, url string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return string(body)
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("GET %s: no answer within %s: %v", url, within, last)
	return ""
}

// testProxy: the host's docker, devbox run, shared folders and port
// forwards against the running, provisioned instance e.
func testProxy(t *testing.T, e *env, busybox string) {
	os.WriteFile(filepath.Join(e.project, "from-host.txt"), []byte("written on the host"), 0o644)
	sock := filepath.Join(e.instanceDir(e.name), filenames.DockerSocket)
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("docker socket %s: %v %v", sock, fi, err)
	}
	if fi, _ := os.Stat(filepath.Dir(sock)); fi.Mode().Perm() != 0o700 {
		t.Errorf("socket folder mode %v, want 0700", fi.Mode().Perm())
	}
	contains(t, "status", e.ok(time.Minute, "status").stdout, "agent:", "running (pid")
	// The image every subtest runs, built through the socket: each subtest
	// needs only this, not what another subtest left.
	hostDocker(t, e, "build", "-q", "-t", "e2e-host", scratchImage(t, busybox))

	t.Run("host docker runs and attaches through the socket", func(t *testing.T) {
		if out := hostDocker(t, e, "run", "--rm", "e2e-host", "echo", "hi"); out != "hi" {
			t.Errorf("docker run: %q", out)
		}
		// Attach with stdin: the hijacked stream and its half-close.
		cmd := dockerCmd(context.Background(), e, "run", "--rm", "-i", "e2e-host", "tr", "a-z", "A-Z")
		cmd.Stdin = strings.NewReader("through the socket\n")
		if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "THROUGH THE SOCKET" {
			t.Errorf("docker run -i: %v %q", err, out)
		}
	})
	t.Run("containers see the shared folder and write as the host user", func(t *testing.T) {
		out := hostDocker(t, e, "run", "--rm", "-v", e.project+":/w", "e2e-host", "sh", "-c", "cat /w/from-host.txt && echo from the container > /w/from-container.txt")
		if out != "written on the host" {
			t.Errorf("container read %q", out)
		}
		p := filepath.Join(e.project, "from-container.txt")
		data, err := os.ReadFile(p)
		if err != nil || strings.TrimSpace(string(data)) != "from the container" {
			t.Fatalf("file written in the container: %q, %v", data, err)
		}
		var fi syscall.Stat_t
		syscall.Stat(p, &fi)
		if int(fi.Uid) != os.Getuid() {
			t.Errorf("file owned by uid %d, want the host user %d", fi.Uid, os.Getuid())
		}
	})
	t.Run("devbox run: folder, exit status, stdin", func(t *testing.T) {
		sub := filepath.Join(e.project, "sub dir")
		os.MkdirAll(sub, 0o755)
		r := e.runIn(sub, time.Minute, nil, "run", "sh", "-c", "pwd; exit 3")
		if r.code != 3 || strings.TrimSpace(r.stdout) != sub {
			t.Errorf("want pwd %s and exit 3:\n%s", sub, r)
		}
		r = e.runIn(sub, time.Minute, strings.NewReader("piped\ndata\n"), "run", "wc", "-l")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "2" {
			t.Errorf("stdin not piped:\n%s", r)
		}
		r = e.runIn(t.TempDir(), time.Minute, nil, "-c", filepath.Join(e.project, "devbox.yaml"), "run", "true")
		if r.code != 1 || !strings.Contains(r.stderr, "is not shared with the VM") {
			t.Errorf("unshared folder:\n%s", r)
		}
		r = e.run(time.Minute, nil, "docker", "image", "inspect", "--format", "{{.Id}}", "e2e-host")
		if r.code != 0 || !strings.HasPrefix(strings.TrimSpace(r.stdout), "sha256:") {
			t.Errorf("devbox docker:\n%s", r)
		}
	})
	t.Run("Ctrl-C reaches the remote process, whose status devbox returns", func(t *testing.T) {
		cmd, stdout := startRun(t, e, "trap 'echo got-int; exit 7' INT; echo started; while :; do sleep 0.2; done")
		cmd.Process.Signal(os.Interrupt)
		rest, _ := io.ReadAll(stdout)
		err := cmd.Wait()
		if cmd.ProcessState.ExitCode() != 7 || strings.TrimSpace(string(rest)) != "got-int" {
			t.Errorf("want the trap's output and exit 7: %q, %v", rest, err)
		}
	})
	t.Run("Ctrl-C ends the remote command", func(t *testing.T) {
		cmd, _ := startRun(t, e, "echo started; exec sleep 1000")
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatal("devbox run sleep 1000 still running 20s after SIGINT")
		}
		r := e.run(time.Minute, nil, "ssh", "--", "pgrep", "-x", "sleep")
		if r.code != 1 {
			t.Errorf("remote sleep still running after Ctrl-C:\n%s", r)
		}
	})
	t.Run("published and configured ports answer on 127.0.0.1", func(t *testing.T) {
		hostDocker(t, e, "run", "-d", "--name", "web", "-p", strconv.Itoa(e.publishPort)+":80", "-v", e.project+":/w",
			"e2e-host", "httpd", "-f", "-p", "80", "-h", "/w")
		defer hostDocker(t, e, "rm", "-f", "web")
		if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/from-host.txt", e.publishPort), time.Minute); body != "written on the host" {
			t.Errorf("published port served %q", body)
		}
		if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/from-host.txt", e.forwardPort), time.Minute); body != "written on the host" {
			t.Errorf("configured forward served %q", body)
		}
	})
	t.Run("ssh-config works with OpenSSH and the pinned key", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "ssh_config")
		os.WriteFile(cfg, []byte(e.ok(time.Minute, "ssh-config").stdout), 0o600)
		out, err := exec.Command("ssh", "-F", cfg, "-o", "BatchMode=yes", "devbox-"+e.name, "echo", "via-openssh").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "via-openssh" {
			t.Errorf("ssh -F: %v\n%s", err, out)
		}
	})
	t.Run("run falls back when the agent is killed; up restarts it", func(t *testing.T) {
		e.killAgent(t)
		r := e.run(2*time.Minute, nil, "run", "cat", "from-host.txt")
		if r.code != 0 || r.stdout != "written on the host" || !strings.Contains(r.stderr, "direct connection") {
			t.Errorf("run with the agent killed:\n%s", r)
		}
		e.ok(5*time.Minute, "up")
		contains(t, "status", e.ok(time.Minute, "status").stdout, "running (pid")
		if out := hostDocker(t, e, "run", "--rm", "e2e-host", "echo", "back"); out != "back" {
			t.Errorf("docker after agent restart: %q", out)
		}
	})
	t.Run("up restarts the agent when forwards change", func(t *testing.T) {
		cfgPath := filepath.Join(e.project, "devbox.yaml")
		orig, _ := os.ReadFile(cfgPath)
		defer func() {
			os.WriteFile(cfgPath, orig, 0o644)
			e.ok(5*time.Minute, "up")
		}()
		sshPort := freePort(t)
		changed := strings.Replace(string(orig), "forwards:\n", fmt.Sprintf("forwards:\n  - host: 127.0.0.1:%d\n    guest: 22\n", sshPort), 1)
		os.WriteFile(cfgPath, []byte(changed), 0o644)
		// A new forward widens what reaches the VM: it needs a yes.
		r := e.ok(5*time.Minute, "up", "--accept-shares")
		contains(t, "up", r.stderr, "+ forward 127.0.0.1:", "restarting the agent")
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", sshPort), 10*time.Second)
		if err != nil {
			t.Fatalf("new forward: %v", err)
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		banner := make([]byte, 8)
		if _, err := io.ReadFull(conn, banner); err != nil || string(banner) != "SSH-2.0-" {
			t.Errorf("new forward to the guest's port 22 read %q, %v", banner, err)
		}
		r = e.ok(time.Minute, "up")
		if strings.Contains(r.stderr, "restarting the agent") {
			t.Errorf("unchanged config restarted the agent:\n%s", r)
		}
	})
	t.Run("the agent reconnects by itself after a guest reboot", func(t *testing.T) {
		pid, _ := os.ReadFile(filepath.Join(e.instanceDir(e.name), filenames.AgentPID))
		logPath := filepath.Join(e.instanceDir(e.name), filenames.AgentLog)
		connections := func() int {
			b, _ := os.ReadFile(logPath)
			return strings.Count(string(b), "connected to guest")
		}
		before := connections()
		e.run(time.Minute, nil, "ssh", "--", "sudo", "systemctl", "reboot", "--no-block")
		// The agent notices the reboot and connects again by itself (no
		// devbox up); then docker and the shared folder work again.
		reconnected := time.Now().Add(5 * time.Minute)
		for connections() <= before {
			if time.Now().After(reconnected) {
				b, _ := os.ReadFile(logPath)
				t.Fatalf("agent did not reconnect within 5m of a guest reboot:\n%s", b)
			}
			time.Sleep(500 * time.Millisecond)
		}
		deadline := time.Now().Add(5 * time.Minute)
		var out string
		var err error
		for time.Now().Before(deadline) {
			out, err = tryHostDocker(e, "run", "--rm", "-v", e.project+":/w", "e2e-host", "cat", "/w/from-host.txt")
			if err == nil && out == "written on the host" {
				break
			}
			time.Sleep(2 * time.Second)
		}
		if err != nil || out != "written on the host" {
			t.Fatalf("docker and the shared folder not back 5m after a reboot: %v %q", err, out)
		}
		if now, _ := os.ReadFile(filepath.Join(e.instanceDir(e.name), filenames.AgentPID)); string(now) != string(pid) {
			t.Errorf("a new agent was started (%q → %q); the old one should have reconnected", pid, now)
		}
	})
}

// startRun starts `devbox run sh -c script` and returns once the script
// has printed "started" (so signals reach a running remote command).
func startRun(t *testing.T, e *env, script string) (*exec.Cmd, io.Reader) {
	t.Helper()
	cmd := e.command(context.Background(), e.project, "run", "sh", "-c", script)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("started\n"))
	if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != "started\n" {
		cmd.Process.Kill()
		t.Fatalf("remote command did not start: %q %v", buf, err)
	}
	return cmd, stdout
}

// tryHostDocker runs the host's docker CLI once, reporting success.
func tryHostDocker(e *env, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := dockerCmd(ctx, e, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func waitGone(t *testing.T, pid int) {
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/sshutil"
)

func fingerprint(t *testing.T, pub string) string {
	t.Helper()
	fp, err := sshutil.Fingerprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// dialControl connects to the agent's multiplexer as devbox run does.
func dialControl(t *testing.T, a *Agent) *sshutil.Client {
	t.Helper()
	kp, err := sshutil.ReadKeyPair(filepath.Join(a.Dir, filenames.AgentHostKey))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sock, err := SocketPath(a.Dir, filenames.AgentSocket)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sshutil.DialProxy(ctx, sock, kp.Public)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestHostKeyMismatchBacksOff(t *testing.T) {
	g, target := newFakeGuest(t)
	pinned, orig := target.HostKey, g.hostKey
	g.setHostKey(newKey(t)) // the guest now shows another key
	gotFP := fingerprint(t, g.hostKey.Public)

	a := &Agent{Target: target, timing: timing{mismatchBase: 10 * time.Millisecond}}
	logs := startAgent(t, a)
	st := waitStatus(t, a, "host key mismatch", 10*time.Second, func(st Status) bool {
		return st.Connection.State == ConnHostKeyMismatch
	})
	if st.Connection.WantHostKey != fingerprint(t, pinned) || st.Connection.GotHostKey != gotFP {
		t.Errorf("status keys: want %q got %q; expected %q and %q", st.Connection.WantHostKey, st.Connection.GotHostKey, fingerprint(t, pinned), gotFP)
	}

	// Over a second, a backoff from 10ms allows about 7 attempts; the
	// loop without one made hundreds.
	start := g.handshakeCount()
	window := time.NewTimer(time.Second)
	<-window.C
	if n := g.handshakeCount() - start; n > 10 {
		t.Errorf("%d handshakes within 1s of a host key mismatch, want a backoff (at most 10)", n)
	}
	if n := countLines(logs, "presents host key"); n != 1 {
		t.Errorf("%d log lines about the mismatch, want 1:\n%s", n, logs.String())
	}

	// Before any connection, a mismatch is not waited out: devbox run
	// is told at once.
	c := dialControl(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	_, err := c.Run(ctx, sshutil.Cmd{Script: "true"})
	if err == nil || !strings.Contains(err.Error(), "instance not reachable") || !strings.Contains(err.Error(), "host key mismatch since") {
		t.Errorf("run during a mismatch: %v", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("run during a mismatch took %v to fail", d)
	}

	// A different wrong key is news, and is logged once more; status
	// over the control socket shows it.
	other := newKey(t)
	g.setHostKey(other)
	logs.WaitFor(t, fingerprint(t, other.Public), 20*time.Second)
	qs, err := QueryStatus(ctx, a.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if qs.Connection.State != ConnHostKeyMismatch || qs.Connection.GotHostKey != fingerprint(t, other.Public) ||
		qs.Connection.WantHostKey != fingerprint(t, pinned) {
		t.Errorf("QueryStatus connection = %+v, want a mismatch showing %s", qs.Connection, fingerprint(t, other.Public))
	}
	if n := countLines(logs, "presents host key"); n != 2 {
		t.Errorf("%d log lines about the mismatch after a second key, want 2:\n%s", n, logs.String())
	}

	// The right key again (the port was given back): connected.
	g.setHostKey(orig)
	st = waitStatus(t, a, "up", 40*time.Second, func(st Status) bool { return st.Connection.State == ConnUp })
	if st.Connection.GotHostKey != "" || st.Connection.Reason != "" {
		t.Errorf("connection up but still shows %+v", st.Connection)
	}
}

// guestCommands answers the commands the agent runs: ids, sshfs (failing
// for folders in broken), mountpoint (true for folders in mounted).
func guestCommands(mounted, broken []string) func(cmd string, stdin io.Reader, stdout, stderr io.Writer) int {
	in := func(cmd string, dirs []string) bool {
		for _, d := range dirs {
			if strings.Contains(cmd, d) {
				return true
			}
		}
		return false
	}
	return func(cmd string, stdin io.Reader, stdout, stderr io.Writer) int {
		switch {
		case cmd == "id -u; id -g":
			io.WriteString(stdout, "1000\n1000\n")
		case strings.HasPrefix(cmd, "echo "):
			io.WriteString(stdout, strings.TrimPrefix(cmd, "echo ")+"\n")
		case strings.Contains(cmd, "sshfs") && in(cmd, broken):
			io.WriteString(stderr, "sh: 1: sshfs: not found\n")
			return 127
		case strings.Contains(cmd, "sshfs"):
			io.Copy(io.Discard, stdin) // "serves" until the agent hangs up
		case strings.Contains(cmd, "mountpoint -q"):
			if !in(cmd, mounted) {
				return 1
			}
		default:
			return 127
		}
		return 0
	}
}

func TestStatusFollowsTheConnection(t *testing.T) {
	g, target := newFakeGuest(t)
	okDir, brokenDir, slowDir := t.TempDir(), t.TempDir(), t.TempDir()
	g.setExec(guestCommands([]string{okDir}, []string{brokenDir}))
	squat, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer squat.Close()
	free := "127.0.0.1:" + strconv.Itoa(freePort(t))

	a := &Agent{
		Target:   target,
		Mounts:   []config.Mount{{Host: okDir}, {Host: brokenDir, Mode: "ro"}, {Host: slowDir}},
		Forwards: []config.Forward{{Host: squat.Addr().String(), Guest: 80}, {Host: free, Guest: 81}},
		timing:   timing{dialBase: 20 * time.Millisecond, dialMax: 100 * time.Millisecond, mountTimeout: 200 * time.Millisecond},
	}
	logs := startAgent(t, a)
	settled := func(st Status) bool {
		return st.Connection.State == ConnUp && st.Mounts[0].State == Mounted &&
			strings.Contains(st.Mounts[1].Reason, "sshfs: not found") && st.Mounts[2].State == Failed
	}
	st := waitStatus(t, a, "up with every folder settled", 20*time.Second, settled)
	if m := st.Mounts[1]; m.State != Failed || !strings.Contains(m.Reason, "sshfs in the guest exited with status 127: sh: 1: sshfs: not found") || !strings.Contains(m.Reason, "devbox provision") || m.Mode != "ro" {
		t.Errorf("folder whose sshfs is missing: %+v", m)
	}
	if m := st.Mounts[2]; !strings.Contains(m.Reason, "not a mount point after 200ms") || !strings.Contains(m.Reason, "sshfs installed") {
		t.Errorf("folder that never became a mount point: %+v", m)
	}
	if f := st.Forwards[0]; f.State != Failed || !strings.Contains(f.Reason, "address already in use") || f.Guest != 80 {
		t.Errorf("forward from a taken port: %+v", f)
	}
	if f := st.Forwards[1]; f.State != Listening || f.Host != free {
		t.Errorf("forward from a free port: %+v", f)
	}
	if st.Docker.State != Listening || st.Docker.Path != filepath.Join(a.Dir, filenames.DockerSocket) || st.PID != os.Getpid() {
		t.Errorf("status: docker %+v, pid %d", st.Docker, st.PID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	qs, err := QueryStatus(ctx, a.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if qs.Connection.State != ConnUp || len(qs.Mounts) != 3 || qs.Mounts[1].Reason != st.Mounts[1].Reason || len(qs.Forwards) != 2 || qs.PID != os.Getpid() {
		t.Errorf("QueryStatus = %+v, want %+v", qs, st)
	}
	c := dialControl(t, a)
	if out, err := c.Output(ctx, sshutil.Cmd{Script: "echo hi"}); err != nil || string(out) != "hi\n" {
		t.Fatalf("run via the agent = %q, %v", out, err)
	}

	// The guest goes away (forced off): everything says so at once.
	g.setDown(true)
	st = waitStatus(t, a, "reconnecting", 10*time.Second, func(st Status) bool { return st.Connection.State == ConnReconnecting })
	for _, m := range st.Mounts {
		if m.State != Pending {
			t.Errorf("folder %s is %s while the connection is down, want pending", m.Host, m.State)
		}
	}
	began := time.Now()
	_, err = c.Run(ctx, sshutil.Cmd{Script: "true"})
	if err == nil || !strings.Contains(err.Error(), "instance not reachable: the agent has no connection to the guest (reconnecting since") ||
		!strings.Contains(err.Error(), "run devbox up") {
		t.Errorf("run while the guest is gone: %v", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("run while the guest is gone took %v to fail, want at once", d)
	}
	for range 3 {
		expectClosedAtOnce(t, "unix", filepath.Join(a.Dir, filenames.DockerSocket))
		expectClosedAtOnce(t, "tcp", free)
	}
	if n := countLines(logs, "docker socket: instance not reachable"); n != 1 {
		t.Errorf("%d log lines for refused docker connections, want 1 per outage:\n%s", n, logs.String())
	}

	// Back: reconnected, folders mounted again.
	g.setDown(false)
	waitStatus(t, a, "up again with every folder settled", 20*time.Second, settled)
	if out, err := c.Output(ctx, sshutil.Cmd{Script: "echo again"}); err != nil || string(out) != "again\n" {
		t.Errorf("run via the agent after the reconnect = %q, %v", out, err)
	}
}

// expectClosedAtOnce connects to a forward and expects it closed at once.
func expectClosedAtOnce(t *testing.T, network, addr string) {
	t.Helper()
	conn, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := conn.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("%s %s while the guest is gone: read %d, %v; want EOF at once", network, addr, n, err)
	}
}

func TestFirstConnectionIsWaitedFor(t *testing.T) {
	g, target := newFakeGuest(t)
	g.setDown(true) // still booting
	a := &Agent{Target: target, timing: timing{dialBase: 20 * time.Millisecond, dialMax: 100 * time.Millisecond}}
	logs := startAgent(t, a)
	logs.WaitFor(t, "connect to guest", 10*time.Second)
	c := dialControl(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := c.Output(ctx, sshutil.Cmd{Script: "echo first"})
		done <- result{out, err}
	}()
	// Still connecting: the run waits rather than failing...
	st := waitStatus(t, a, "connecting after a failed dial", 10*time.Second, func(st Status) bool {
		return st.Connection.State == ConnConnecting && st.Connection.Reason != ""
	})
	select {
	case r := <-done:
		t.Fatalf("run before the first connection returned at once: %q, %v (status %+v)", r.out, r.err, st.Connection)
	default:
	}
	// ...and goes through once the guest answers.
	g.setDown(false)
	select {
	case r := <-done:
		if r.err != nil || string(r.out) != "first\n" {
			t.Errorf("run before the first connection = %q, %v", r.out, r.err)
		}
	case <-ctx.Done():
		t.Fatal("run before the first connection never finished")
	}
}

func TestUnansweredKeepalivesReconnect(t *testing.T) {
	g, target := newFakeGuest(t)
	a := &Agent{Target: target, timing: timing{keepaliveEvery: 50 * time.Millisecond, keepaliveMissed: 2, dialBase: 20 * time.Millisecond}}
	logs := startAgent(t, a)
	first := waitStatus(t, a, "up", 10*time.Second, func(st Status) bool { return st.Connection.State == ConnUp })
	g.freeze()
	logs.WaitFor(t, "keepalives unanswered; reconnecting", 10*time.Second)
	st := waitStatus(t, a, "up again", 10*time.Second, func(st Status) bool {
		return st.Connection.State == ConnUp && st.Connection.Since.After(first.Connection.Since)
	})
	c := dialControl(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := c.Output(ctx, sshutil.Cmd{Script: "echo back"}); err != nil || string(out) != "back\n" {
		t.Errorf("run after reconnecting = %q, %v (status %+v)", out, err, st.Connection)
	}
}

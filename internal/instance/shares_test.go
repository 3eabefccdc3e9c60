package instance

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/cli"
	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/internal/lockfile"
	"github.com/devbox-vm/devbox/vm"
	"github.com/devbox-vm/devbox/vm/fake"
)

func TestWidening(t *testing.T) {
	rw := func(h string) config.Mount { return config.Mount{Host: h, Mode: "rw"} }
	ro := func(h string) config.Mount { return config.Mount{Host: h, Mode: "ro"} }
	fwd := func(h string, g int) config.Forward { return config.Forward{Host: h, Guest: g, Proto: "tcp"} }
	base := Shares{Mounts: []config.Mount{rw("/p"), ro("/data")}, Forwards: []config.Forward{fwd("127.0.0.1:8080", 80)}}
	cases := []struct {
		name   string
		wanted Shares
		want   []string
	}{
		{"same", base, nil},
		{"narrower", Shares{Mounts: []config.Mount{ro("/p")}}, nil},
		{"new mount", Shares{Mounts: []config.Mount{rw("/p"), ro("/data"), ro("/other")}, Forwards: base.Forwards}, []string{"+ shared folder /other (ro)"}},
		{"ro to rw", Shares{Mounts: []config.Mount{rw("/p"), rw("/data")}, Forwards: base.Forwards}, []string{"~ shared folder /data: ro → rw"}},
		{"new forward", Shares{Mounts: base.Mounts, Forwards: []config.Forward{fwd("127.0.0.1:8080", 80), fwd("127.0.0.1:2222", 22)}}, []string{"+ forward 127.0.0.1:2222 → guest port 22 (tcp)"}},
		{"moved forward", Shares{Mounts: base.Mounts, Forwards: []config.Forward{fwd("127.0.0.1:8080", 22)}}, []string{"+ forward 127.0.0.1:8080 → guest port 22"}},
		{"not loopback", Shares{Mounts: base.Mounts, Forwards: []config.Forward{fwd("0.0.0.0:2222", 22)}}, []string{"+ forward 0.0.0.0:2222 → guest port 22 (tcp): NOT loopback"}},
	}
	for _, tc := range cases {
		got := Widening(base, tc.wanted)
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if !strings.HasPrefix(got[i], tc.want[i]) {
				t.Errorf("%s: line %q, want prefix %q", tc.name, got[i], tc.want[i])
			}
		}
	}
}

// existing makes a stopped instance in a fake driver, created from
// firstConfig, whose project folder the test may then rewrite (as the
// guest could) and load again.
type existing struct {
	t       *testing.T
	project string
	home    Home
	d       *fake.Driver
	status  bytes.Buffer
}

func newExisting(t *testing.T, firstConfig string) *existing {
	e := &existing{t: t, project: t.TempDir(), d: fake.New()}
	root := t.TempDir()
	e.home = Home{State: filepath.Join(root, "state"), Cache: filepath.Join(root, "cache")}
	in := e.load(firstConfig)
	e.d.Instances[in.Domain()] = &vm.Info{Name: in.Domain(), State: vm.StateStopped, SSHPort: 1}
	if err := os.MkdirAll(in.Dir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := in.recordShares(in.wantedShares()); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *existing) load(yaml string) *Instance {
	e.t.Helper()
	cfg, err := config.Parse(strings.NewReader(yaml), filepath.Join(e.project, "devbox.yaml"))
	if err != nil {
		e.t.Fatal(err)
	}
	return New(cfg, e.home, cli.NewStatus(&e.status), func(context.Context, string) (vm.Driver, error) { return e.d, nil })
}

// up runs Up, stopping it (as Ctrl-C would) once it starts the VM, and
// reports whether it got that far.
func (e *existing) up(in *Instance, opts UpOptions) (started bool, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.d.OnCall = func(call string) {
		if strings.HasPrefix(call, "Start ") {
			started = true
			cancel()
		}
	}
	opts.NoAgent = true
	err = in.Up(ctx, opts)
	return started, err
}

// The VM rewrites devbox.yaml through the share to reach the host's / and
// to open a port to the world: a routine up refuses before touching the
// VM, naming the flag; a yes on a terminal or --accept-shares accepts it.
func TestUpRefusesWideningWithoutAYes(t *testing.T) {
	e := newExisting(t, "name: demo\nbox: /x.qcow2\n")
	other := t.TempDir()
	os.Symlink(other, filepath.Join(e.project, "escape"))
	hostile := "name: demo\nbox: /x.qcow2\nmounts:\n  - {host: .}\n  - {host: ./escape}\nforwards:\n  - {host: \"0.0.0.0:2222\", guest: 22}\n"

	in := e.load(hostile)
	started, err := e.up(in, UpOptions{})
	if err == nil || started {
		t.Fatalf("widening accepted without a yes (started %v, err %v)", started, err)
	}
	realOther, _ := filepath.EvalSymlinks(other)
	for _, want := range []string{"+ shared folder " + realOther + " (rw)", "0.0.0.0:2222", "NOT loopback", "--accept-shares"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if s, _, _ := in.AcceptedShares(); len(s.Mounts) != 1 || len(s.Forwards) != 0 {
		t.Errorf("record changed by a refused up: %+v", s)
	}

	asked := ""
	started, _ = e.up(in, UpOptions{Confirm: func(q string) bool { asked = q; return false }})
	if started || !strings.Contains(asked, realOther) {
		t.Fatalf("a no on the terminal: started %v, asked %q", started, asked)
	}

	started, _ = e.up(in, UpOptions{Confirm: func(string) bool { return true }})
	if !started {
		t.Fatal("a yes on the terminal did not go on")
	}
	if s, _, _ := in.AcceptedShares(); len(s.Mounts) != 2 || len(s.Forwards) != 1 {
		t.Errorf("accepted record after yes: %+v", s)
	}

	// Narrowing needs no question, and is recorded.
	in = e.load("name: demo\nbox: /x.qcow2\nmounts:\n  - {host: ., mode: ro}\n")
	if started, _ := e.up(in, UpOptions{}); !started {
		t.Fatal("narrowing was refused")
	}
	// ro back to rw is widening again.
	in = e.load("name: demo\nbox: /x.qcow2\n")
	if _, err := e.up(in, UpOptions{}); err == nil || !strings.Contains(err.Error(), "ro → rw") {
		t.Fatalf("ro → rw: %v", err)
	}
	if started, _ := e.up(in, UpOptions{AcceptShares: true}); !started {
		t.Fatal("--accept-shares did not accept")
	}
}

// A share holding devbox's own folder (keys, sockets) is refused even
// with --accept-shares.
func TestShareHoldingDevboxHomeIsRefused(t *testing.T) {
	e := newExisting(t, "name: demo\nbox: /x.qcow2\n")
	e.home = Home{State: filepath.Join(e.project, "state"), Cache: filepath.Join(e.project, "cache")}
	in := e.load("name: demo\nbox: /x.qcow2\n")
	_, err := e.up(in, UpOptions{AcceptShares: true})
	if err == nil || !strings.Contains(err.Error(), "holds devbox's own folder") {
		t.Fatalf("up = %v", err)
	}
	if len(e.d.Calls) > 0 && strings.Contains(strings.Join(e.d.Calls, ","), "Start") {
		t.Errorf("the VM was started: %v", e.d.Calls)
	}
}

// A second command on a busy instance waits, saying for whom, and gives
// up with a clear error at its timeout.
func TestCommandsOnOneInstanceTakeTurns(t *testing.T) {
	e := newExisting(t, "name: demo\nbox: /x.qcow2\n")
	in := e.load("name: demo\nbox: /x.qcow2\n")
	held, err := lockfile.TryLock(in.lockFile(), "devbox up of demo")
	if err != nil {
		t.Fatal(err)
	}
	in.LockTimeout = 300 * time.Millisecond
	err = in.Halt(context.Background(), true, time.Second)
	if err == nil || !strings.Contains(err.Error(), `instance "demo" is busy: devbox up of demo, pid `+strconv.Itoa(os.Getpid())) {
		t.Fatalf("halt on a busy instance: %v", err)
	}
	if !strings.Contains(e.status.String(), "waiting for devbox up of demo, pid") {
		t.Errorf("status did not say for whom it waits:\n%s", e.status.String())
	}
	if strings.Contains(strings.Join(e.d.Calls, ","), "Kill") {
		t.Errorf("halt acted while another command held the instance: %v", e.d.Calls)
	}
	held.Unlock()
	in.LockTimeout = 10 * time.Second
	if err := in.Halt(context.Background(), true, time.Second); err != nil {
		t.Fatalf("halt after the lock was released: %v", err)
	}
}

// A stale agent.pid whose pid now belongs to another program: stopping
// the agent must not signal that program.
func TestStopAgentSparesAReusedPID(t *testing.T) {
	e := newExisting(t, "name: demo\nbox: /x.qcow2\n")
	in := e.load("name: demo\nbox: /x.qcow2\n")
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(in.Dir(), filenames.AgentPID), []byte(strconv.Itoa(other.Process.Pid)+" devbox agent of demo\n"), 0o600)
	if st := in.Supervisor().State(context.Background()); st.Running {
		t.Errorf("agent state from a stale pid file: %+v", st)
	}
	in.Supervisor().Stop()
	other.Process.Signal(syscall.SIGKILL)
	err := other.Wait()
	ws, _ := other.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the unrelated process was signalled by StopAgent (wait: %v, status %v)", err, ws)
	}
	if _, err := os.Stat(filepath.Join(in.Dir(), filenames.AgentPID)); !os.IsNotExist(err) {
		t.Errorf("stale pid file kept: %v", err)
	}
}

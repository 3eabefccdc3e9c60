package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/internal/lockfile"
	"github.com/devbox-vm/devbox/sshutil"
	"github.com/devbox-vm/devbox/vm"
)

// Supervisor runs the agent of one instance from outside it: devbox up
// starts it (detached) and waits until it serves, status asks how it is,
// run dials it, halt and destroy stop it. Everything it knows is in the
// instance folder Dir: the agent's pid file (locked for as long as the
// agent lives), its sockets, log and config.
type Supervisor struct {
	Dir string
}

// Socket is the agent's SSH multiplexer; DockerSocket its forward of the
// guest's Docker socket. A deep instance folder has them in a short
// folder of their own (see SocketDir); if even that cannot be made, the
// agent says why.
func (s Supervisor) Socket() string       { return s.socketPath(filenames.AgentSocket) }
func (s Supervisor) DockerSocket() string { return s.socketPath(filenames.DockerSocket) }

func (s Supervisor) socketPath(name string) string {
	if p, err := SocketPath(s.Dir, name); err == nil {
		return p
	}
	return filepath.Join(s.Dir, name)
}

// Log is the agent's log; PIDFile its pid file; Stderr where its stderr
// goes (an error before the log is open, a panic: rotation never moves
// it); ConfigFile what it serves.
func (s Supervisor) Log() string        { return filepath.Join(s.Dir, filenames.AgentLog) }
func (s Supervisor) PIDFile() string    { return filepath.Join(s.Dir, filenames.AgentPID) }
func (s Supervisor) Stderr() string     { return filepath.Join(s.Dir, filenames.AgentStderr) }
func (s Supervisor) ConfigFile() string { return filepath.Join(s.Dir, filenames.AgentConfig) }

// State is the agent's status from live facts: its process and its
// socket.
type State struct {
	Running bool
	PID     int
	Reason  string // why it is not running
}

func (st State) String() string {
	if st.Running {
		return fmt.Sprintf("running (pid %d)", st.PID)
	}
	return "not running: " + st.Reason
}

// State reports whether the agent runs and answers on its socket. A
// stale pid file whose pid was reused by another process is never taken
// for it: the agent holds a lock on the file.
func (s Supervisor) State(ctx context.Context) State {
	h, ok := lockfile.ReadHolder(s.PIDFile())
	if !ok {
		return State{Reason: "never started (devbox up starts it)"}
	}
	if !lockfile.Held(s.PIDFile()) {
		return State{PID: h.PID, Reason: fmt.Sprintf("process %d is gone (see %s; devbox up restarts it)", h.PID, s.Log())}
	}
	c, err := s.Dial(ctx)
	if err != nil {
		return State{PID: h.PID, Reason: fmt.Sprintf("process %d does not answer on %s: %v", h.PID, s.Socket(), err)}
	}
	c.Close()
	return State{Running: true, PID: h.PID}
}

// Dial connects to the agent's multiplexer, pinning its host key.
func (s Supervisor) Dial(ctx context.Context) (*sshutil.Client, error) {
	kp, err := sshutil.ReadKeyPair(filepath.Join(s.Dir, filenames.AgentHostKey))
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return sshutil.DialProxy(dctx, s.Socket(), kp.Public)
}

// Start starts cmd (devbox agent, serving config) detached, unless an
// agent already answers that serves config and failed at nothing; note
// says why a running one is replaced. Then it waits until the agent
// serves (see Wait).
func (s Supervisor) Start(ctx context.Context, cmd *exec.Cmd, config string, note func(string)) error {
	if s.State(ctx).Running {
		served, _ := os.ReadFile(s.ConfigFile())
		st, qerr := QueryStatus(ctx, s.Dir)
		switch {
		case string(served) != config:
			note("shared folders, forwards, host_names, file_events, mount_type or the SSH port changed: restarting the agent")
		case qerr == nil && Failures(st) != nil:
			note("the agent could not serve everything before: restarting it")
		default:
			return s.Wait(ctx, nil)
		}
	}
	s.Stop() // a stale, hung or outdated one
	logf, err := os.OpenFile(s.Stderr(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // it outlives the terminal
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	vm.Checkpoint("agent")
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := s.Wait(ctx, exited); err != nil {
		if ctx.Err() != nil {
			cmd.Process.Kill()
		}
		return err
	}
	return nil
}

// Wait waits until the agent is connected to the guest and every shared
// folder is mounted or has failed, then reports what failed. exited, when
// not nil, tells that the agent's process ended.
func (s Supervisor) Wait(ctx context.Context, exited <-chan error) error {
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last Status
	var lastErr error
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("agent exited at start (%v): %s (hint: full log in %s)", err, lastLines(s.Stderr(), 5), s.Log())
		case <-deadline.C:
			why := fmt.Sprintf("connection %s", last.Connection.State)
			if last.Connection.Reason != "" {
				why += ": " + last.Connection.Reason
			}
			if lastErr != nil {
				why = lastErr.Error()
			}
			return fmt.Errorf("agent did not serve within 2m (%s) (hint: see %s)", why, s.Log())
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		st, err := QueryStatus(ctx, s.Dir)
		if err != nil {
			lastErr = err
			continue
		}
		last, lastErr = st, nil
		if st.Connection.State != ConnUp || pending(st) {
			continue
		}
		return Failures(st)
	}
}

// Stop ends the agent (TERM, then KILL after 10 s) and removes its
// sockets, pid file and config. A missing agent is fine, and a pid file
// nobody holds is stale: its pid may belong to another program by now,
// which is never signalled.
func (s Supervisor) Stop() {
	defer func() {
		os.Remove(s.PIDFile())
		os.Remove(s.ConfigFile())
		os.Remove(s.Socket())
		os.Remove(s.DockerSocket())
		if dir := filepath.Dir(s.DockerSocket()); dir != s.Dir {
			os.Remove(dir) // a short socket folder of its own, now empty
		}
	}()
	h, ok := lockfile.ReadHolder(s.PIDFile())
	if !ok || !lockfile.Held(s.PIDFile()) {
		return
	}
	syscall.Kill(h.PID, syscall.SIGTERM)
	for i := 0; i < 100; i++ {
		if !lockfile.Held(s.PIDFile()) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lockfile.Held(s.PIDFile()) {
		syscall.Kill(h.PID, syscall.SIGKILL)
	}
}

// pending reports whether a shared folder is neither mounted nor failed
// yet, or a forward not yet served (UDP ones are added once connected).
func pending(st Status) bool {
	for _, m := range st.Mounts {
		if m.State != Mounted && m.State != Failed {
			return true
		}
	}
	for _, f := range st.Forwards {
		if f.State == Pending {
			return true
		}
	}
	return false
}

// Failures names every shared folder and forward the agent could not
// serve, with the reason, or returns nil.
func Failures(st Status) error {
	var lines []string
	for _, m := range st.Mounts {
		if m.State == Failed {
			lines = append(lines, fmt.Sprintf("shared folder %s: %s", m.Host, m.Reason))
		}
	}
	for _, f := range st.Forwards {
		// A port a container publishes may be taken by another program on
		// the host; status shows it, but up cannot fix it.
		if f.State == Failed && f.Container == "" {
			what := fmt.Sprintf("forward %s → guest port %d (%s)", f.Host, f.Guest, f.Proto)
			lines = append(lines, what+": "+f.Reason)
		}
	}
	if st.Docker.State == Failed {
		lines = append(lines, fmt.Sprintf("docker socket %s: %s", st.Docker.Path, st.Docker.Reason))
	}
	if len(lines) == 0 {
		return nil
	}
	return fmt.Errorf("the VM is up, but the agent could not serve:\n  - %s\n(hint: fix the cause, then devbox up again; devbox status shows the agent's state)", strings.Join(lines, "\n  - "))
}

// lastLines is the end of a log file, for error messages.
func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	return tailLines(strings.TrimRight(string(b), "\n"), n)
}

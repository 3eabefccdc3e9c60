package instance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/devbox-vm/devbox/internal/agent"
	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/internal/lockfile"
	"github.com/devbox-vm/devbox/sshutil"
	"github.com/devbox-vm/devbox/vm"
)

// AgentSocket is the agent's SSH multiplexer; DockerSocket its forward.
// A deep instance folder has them in a short folder of their own (see
// agent.SocketDir); if even that cannot be made, the agent says why.
func (in *Instance) AgentSocket() string  { return in.socketPath(filenames.AgentSocket) }
func (in *Instance) DockerSocket() string { return in.socketPath(filenames.DockerSocket) }

func (in *Instance) socketPath(name string) string {
	if p, err := agent.SocketPath(in.Dir(), name); err == nil {
		return p
	}
	return filepath.Join(in.Dir(), name)
}
func (in *Instance) agentLog() string     { return filepath.Join(in.Dir(), filenames.AgentLog) }
func (in *Instance) agentPIDFile() string { return filepath.Join(in.Dir(), filenames.AgentPID) }
func (in *Instance) agentStderr() string  { return filepath.Join(in.Dir(), filenames.AgentStderr) }

// AgentState is the agent's status from live facts: its process and its
// socket.
type AgentState struct {
	Running bool
	PID     int
	Reason  string // why it is not running
}

func (s AgentState) String() string {
	if s.Running {
		return fmt.Sprintf("running (pid %d)", s.PID)
	}
	return "not running: " + s.Reason
}

// Agent reports whether the agent runs and answers on its socket. The
// agent holds a lock on its pid file for as long as it lives, so a stale
// file whose pid was reused by another process is never taken for it.
func (in *Instance) Agent(ctx context.Context) AgentState {
	h, ok := lockfile.ReadHolder(in.agentPIDFile())
	if !ok {
		return AgentState{Reason: "never started (devbox up starts it)"}
	}
	if !lockfile.Held(in.agentPIDFile()) {
		return AgentState{PID: h.PID, Reason: fmt.Sprintf("process %d is gone (see %s; devbox up restarts it)", h.PID, in.agentLog())}
	}
	c, err := in.dialAgent(ctx)
	if err != nil {
		return AgentState{PID: h.PID, Reason: fmt.Sprintf("process %d does not answer on %s: %v", h.PID, in.AgentSocket(), err)}
	}
	c.Close()
	return AgentState{Running: true, PID: h.PID}
}

// dialAgent connects to the agent's multiplexer, pinning its host key.
func (in *Instance) dialAgent(ctx context.Context) (*sshutil.Client, error) {
	kp, err := sshutil.ReadKeyPair(filepath.Join(in.Dir(), filenames.AgentHostKey))
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return sshutil.DialProxy(dctx, in.AgentSocket(), kp.Public)
}

// agentConfigFile records what the running agent serves, so that newly
// accepted shares (mounts, forwards) get a fresh agent on the next up.
func (in *Instance) agentConfigFile() string { return filepath.Join(in.Dir(), filenames.AgentConfig) }

// agentConfig is what an agent serves: the accepted shares and the
// guest's SSH port (which moves when it was taken while the VM was off).
func (in *Instance) agentConfig(sshPort int) (string, error) {
	accepted, err := os.ReadFile(in.sharesFile())
	if err != nil {
		return "", fmt.Errorf("start agent: accepted shares: %w (hint: devbox up records them)", err)
	}
	return fmt.Sprintf("%sssh-port=%d\nhost-names=%v\nfile-events=%v %q\nmount-type=%s\n", accepted, sshPort, in.Cfg.HostNames(),
		in.Cfg.FileEvents.Enabled(), in.Cfg.FileEvents.Ignore, in.Cfg.MountType), nil
}

// StartAgent starts the agent detached unless one already answers with
// the accepted shares, and waits until it serves them: connected to the
// guest, every shared folder mounted or failed. A folder or forward that
// failed is an error naming it; the VM and the agent are left running.
func (in *Instance) StartAgent(ctx context.Context) error {
	info, err := in.Inspect(ctx)
	if err != nil {
		return err
	}
	want, err := in.agentConfig(info.SSHPort)
	if err != nil {
		return err
	}
	if in.Agent(ctx).Running {
		served, _ := os.ReadFile(in.agentConfigFile())
		st, qerr := agent.QueryStatus(ctx, in.Dir())
		switch {
		case string(served) != want:
			in.Status.Infof("shared folders, forwards, host_names, file_events, mount_type or the SSH port changed: restarting the agent")
		case qerr == nil && agentFailures(st) != nil:
			in.Status.Infof("the agent could not serve everything before: restarting it")
		default:
			return in.waitAgent(ctx, nil)
		}
	}
	in.StopAgent() // a stale, hung or outdated one
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	// The agent writes and rotates agent.log itself; its stderr (an
	// error before the log is open, a panic) goes to a file of its own
	// that rotation never moves.
	logf, err := os.OpenFile(in.agentStderr(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(self, "agent", "--config", in.Cfg.File)
	cmd.Env = append(os.Environ(), "DEVBOX_HOME="+in.Home.State)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	setDetached(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	vm.Checkpoint("agent")
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := in.waitAgent(ctx, exited); err != nil {
		if ctx.Err() != nil {
			cmd.Process.Kill()
		}
		return err
	}
	return nil
}

// waitAgent waits until the agent is connected to the guest and every
// shared folder is mounted or has failed, then reports what failed.
// exited, when not nil, tells that the agent process ended.
func (in *Instance) waitAgent(ctx context.Context, exited <-chan error) error {
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last agent.Status
	var lastErr error
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("agent exited at start (%v): %s (hint: full log in %s)", err, lastLines(in.agentStderr(), 5), in.agentLog())
		case <-deadline.C:
			why := fmt.Sprintf("connection %s", last.Connection.State)
			if last.Connection.Reason != "" {
				why += ": " + last.Connection.Reason
			}
			if lastErr != nil {
				why = lastErr.Error()
			}
			return fmt.Errorf("agent did not serve within 2m (%s) (hint: see %s)", why, in.agentLog())
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		st, err := agent.QueryStatus(ctx, in.Dir())
		if err != nil {
			lastErr = err
			continue
		}
		last, lastErr = st, nil
		if st.Connection.State != agent.ConnUp || pending(st) {
			continue
		}
		return agentFailures(st)
	}
}

// StopAgent ends the agent of this instance (TERM, then KILL after 10 s)
// and removes its sockets and pid file. A missing agent is fine, and a
// pid file nobody holds is stale: its pid may belong to another program
// by now, which is never signalled.
func (in *Instance) StopAgent() {
	defer func() {
		for _, f := range []string{filenames.AgentPID, filenames.AgentConfig} {
			os.Remove(filepath.Join(in.Dir(), f))
		}
		os.Remove(in.AgentSocket())
		os.Remove(in.DockerSocket())
		if dir := filepath.Dir(in.DockerSocket()); dir != in.Dir() {
			os.Remove(dir) // a short socket folder of its own, now empty
		}
	}()
	pidFile := in.agentPIDFile()
	h, ok := lockfile.ReadHolder(pidFile)
	if !ok || !lockfile.Held(pidFile) {
		return
	}
	syscall.Kill(h.PID, syscall.SIGTERM)
	for i := 0; i < 100; i++ {
		if !lockfile.Held(pidFile) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lockfile.Held(pidFile) {
		syscall.Kill(h.PID, syscall.SIGKILL)
	}
}

// ServeAgent is the body of the hidden `devbox agent` command: it serves
// the running instance's accepted shares until ctx ends or the instance
// folder goes (destroy).
func (in *Instance) ServeAgent(ctx context.Context) error {
	logger, closeLog, err := agent.OpenLog(in.agentLog(), agent.DefaultLogMax)
	if err != nil {
		return err
	}
	defer closeLog.Close()
	pid, err := lockfile.TryLock(in.agentPIDFile(), "devbox agent of "+in.Name())
	if errors.Is(err, lockfile.ErrHeld) {
		h, _ := lockfile.ReadHolder(in.agentPIDFile())
		return fmt.Errorf("another agent serves instance %q (%s)", in.Name(), h)
	}
	if err != nil {
		return err
	}
	defer pid.Unlock()
	info, err := in.Running(ctx)
	if err != nil {
		return err
	}
	t, err := in.target(info)
	if err != nil {
		return err
	}
	in.Close() // libvirt is not needed any more
	// Serve what the user accepted, never devbox.yaml directly: the VM
	// can write that file.
	shares, ok, err := in.AcceptedShares()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("instance %q has no accepted shares (hint: devbox up)", in.Name())
	}
	served, err := in.agentConfig(info.SSHPort)
	if err != nil {
		return err
	}
	if err := os.WriteFile(in.agentConfigFile(), []byte(served), 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go in.exitWhenDestroyed(ctx, cancel)
	devices := udpForwards{connect: in.Connect, uri: in.Cfg.LibvirtURI, domain: in.Domain()}
	a := &agent.Agent{Dir: in.Dir(), Target: t, Mounts: shares.Mounts, Forwards: shares.Forwards, Log: logger, KeepClock: true,
		UDP: devices, NameHost: in.Cfg.HostNames(),
		FileEvents: in.Cfg.FileEvents.Enabled(), EventsIgnore: in.Cfg.FileEvents.Ignore,
		MountType: in.Cfg.MountType, ShareDir: in.shareDir()}
	if a.NoVirtioFS = in.noVirtioFS(); a.NoVirtioFS == "" {
		a.Devices = shareDevices{devices}
	}
	a.Log.Printf("agent for instance %q starting (pid %d)", in.Name(), os.Getpid())
	err = a.Run(ctx)
	a.Log.Printf("agent stopping: %v", errOrNil(err))
	return err
}

// exitWhenDestroyed ends the agent when its pid file is gone: a destroy
// that ran while the agent was still starting (after a kill -9 of up)
// could not signal it, and nothing may be left serving a removed instance.
func (in *Instance) exitWhenDestroyed(ctx context.Context, stop func()) {
	first, err := os.Stat(in.agentPIDFile())
	if err != nil {
		stop()
		return
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now, err := os.Stat(in.agentPIDFile()); err != nil || !os.SameFile(first, now) {
			stop()
			return
		}
	}
}

func errOrNil(err error) string {
	if err == nil {
		return "asked to"
	}
	return err.Error()
}

// lastLines is the end of a log file, for error messages.
func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// setDetached makes cmd its own session, so it outlives the terminal.
func setDetached(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
}

// pending reports whether a shared folder is neither mounted nor failed
// yet, or a forward not yet served (UDP ones are added once connected).
func pending(st agent.Status) bool {
	for _, m := range st.Mounts {
		if m.State != agent.Mounted && m.State != agent.Failed {
			return true
		}
	}
	for _, f := range st.Forwards {
		if f.State == agent.Pending {
			return true
		}
	}
	return false
}

// reportMounts says how each shared folder reaches the guest, and why
// not through virtio-fs when mount_type asks for it.
func (in *Instance) reportMounts(ctx context.Context) {
	st, err := agent.QueryStatus(ctx, in.Dir())
	if err != nil {
		return
	}
	for _, m := range st.Mounts {
		switch {
		case m.State != agent.Mounted:
		case m.Type == config.MountVirtioFS:
			in.Status.Infof("shared folder %s: virtio-fs", m.Host)
		case m.Note != "" && in.Cfg.MountType == config.MountVirtioFS:
			in.Status.Infof("shared folder %s: reverse SSHFS, not virtio-fs: %s", m.Host, m.Note)
		default:
			in.Status.Infof("shared folder %s: reverse SSHFS", m.Host)
		}
	}
}

// agentFailures names every shared folder and forward the agent could not
// serve, with the reason, or returns nil.
func agentFailures(st agent.Status) error {
	var lines []string
	for _, m := range st.Mounts {
		if m.State == agent.Failed {
			lines = append(lines, fmt.Sprintf("shared folder %s: %s", m.Host, m.Reason))
		}
	}
	for _, f := range st.Forwards {
		// A port a container publishes may be taken by another program on
		// the host; status shows it, but up cannot fix it.
		if f.State == agent.Failed && f.Container == "" {
			what := fmt.Sprintf("forward %s → guest port %d (%s)", f.Host, f.Guest, f.Proto)
			lines = append(lines, what+": "+f.Reason)
		}
	}
	if st.Docker.State == agent.Failed {
		lines = append(lines, fmt.Sprintf("docker socket %s: %s", st.Docker.Path, st.Docker.Reason))
	}
	if len(lines) == 0 {
		return nil
	}
	return fmt.Errorf("the VM is up, but the agent could not serve:\n  - %s\n(hint: fix the cause, then devbox up again; devbox status shows the agent's state)", strings.Join(lines, "\n  - "))
}

// udpForwards changes the VM's UDP forwards through its driver, opening
// a connection for each change: the agent holds none between them, so a
// restarted libvirtd costs nothing.
type udpForwards struct {
	connect Connector
	uri     string
	domain  string
}

func (u udpForwards) with(ctx context.Context, fn func(vm.Driver) error) error {
	d, err := u.connect(ctx, u.uri)
	if err != nil {
		return err
	}
	defer d.Close()
	return fn(d)
}

func (u udpForwards) UDPForwards(ctx context.Context) (fwds []vm.UDPForward, err error) {
	err = u.with(ctx, func(d vm.Driver) error {
		fwds, err = d.UDPForwards(ctx, u.domain)
		return err
	})
	return fwds, err
}

func (u udpForwards) AddUDPForward(ctx context.Context, f vm.UDPForward) error {
	return u.with(ctx, func(d vm.Driver) error { return d.AddUDPForward(ctx, u.domain, f) })
}

func (u udpForwards) RemoveUDPForward(ctx context.Context, host string) error {
	return u.with(ctx, func(d vm.Driver) error { return d.RemoveUDPForward(ctx, u.domain, host) })
}

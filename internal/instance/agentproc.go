package instance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/devbox-vm/devbox/internal/agent"
	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/lockfile"
	"github.com/devbox-vm/devbox/internal/virtiofs"
)

// Supervisor starts, stops and inspects the instance's agent.
func (in *Instance) Supervisor() agent.Supervisor { return agent.Supervisor{Dir: in.Dir()} }

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
// The agent's config (what it serves) changes with newly accepted shares
// and the guest's SSH port, which moves when it was taken while the VM
// was off.
func (in *Instance) StartAgent(ctx context.Context) error {
	info, err := in.Inspect(ctx)
	if err != nil {
		return err
	}
	want, err := in.agentConfig(info.SSHPort)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	cmd := exec.Command(self, "agent", "--config", in.Cfg.File)
	cmd.Env = append(os.Environ(), "DEVBOX_HOME="+in.Home.State)
	return in.Supervisor().Start(ctx, cmd, want, func(msg string) { in.Status.Infof("%s", msg) })
}

// ServeAgent is the body of the hidden `devbox agent` command: it serves
// the running instance's accepted shares until ctx ends or the instance
// folder goes (destroy).
func (in *Instance) ServeAgent(ctx context.Context) error {
	logger, closeLog, err := agent.OpenLog(in.Supervisor().Log(), agent.DefaultLogMax)
	if err != nil {
		return err
	}
	defer closeLog.Close()
	pid, err := lockfile.TryLock(in.Supervisor().PIDFile(), "devbox agent of "+in.Name())
	if errors.Is(err, lockfile.ErrHeld) {
		h, _ := lockfile.ReadHolder(in.Supervisor().PIDFile())
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
	if err := os.WriteFile(in.Supervisor().ConfigFile(), []byte(served), 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go in.exitWhenDestroyed(ctx, cancel)
	live := liveVM{connect: in.Connect, uri: in.Cfg.LibvirtURI, domain: in.Domain()}
	a := &agent.Agent{Dir: in.Dir(), Target: t, Mounts: shares.Mounts, Forwards: shares.Forwards, Log: logger, KeepClock: true,
		UDP: live, NameHost: in.Cfg.HostNames(),
		FileEvents: in.Cfg.FileEvents.Enabled(), EventsIgnore: in.Cfg.FileEvents.Ignore,
		MountType: in.Cfg.MountType, ShareDir: in.shareDir()}
	if a.NoVirtioFS = in.noVirtioFS(); a.NoVirtioFS == "" {
		a.Devices = live
		bin, _ := virtiofs.FindBinary()
		a.VirtioFSReadOnly = virtiofs.RefusesWrites(bin)
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
	first, err := os.Stat(in.Supervisor().PIDFile())
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
		if now, err := os.Stat(in.Supervisor().PIDFile()); err != nil || !os.SameFile(first, now) {
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

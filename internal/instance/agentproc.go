package instance

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/devbox-vm/devbox/internal/agent"
	"github.com/devbox-vm/devbox/sshutil"
)

// AgentSocket is the agent's SSH multiplexer; DockerSocket its forward.
func (in *Instance) AgentSocket() string  { return filepath.Join(in.Dir(), agent.ControlSocket) }
func (in *Instance) DockerSocket() string { return filepath.Join(in.Dir(), agent.DockerSocket) }
func (in *Instance) agentLog() string     { return filepath.Join(in.Dir(), agent.LogFile) }
func (in *Instance) agentPIDFile() string { return filepath.Join(in.Dir(), agent.PIDFile) }

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

// Agent reports whether the agent runs and answers on its socket.
func (in *Instance) Agent(ctx context.Context) AgentState {
	pid, err := readPID(in.agentPIDFile())
	if err != nil {
		return AgentState{Reason: "never started (devbox up starts it)"}
	}
	if syscall.Kill(pid, 0) != nil {
		return AgentState{PID: pid, Reason: fmt.Sprintf("process %d is gone (see %s; devbox up restarts it)", pid, in.agentLog())}
	}
	c, err := in.dialAgent(ctx)
	if err != nil {
		return AgentState{PID: pid, Reason: fmt.Sprintf("process %d does not answer on %s: %v", pid, in.AgentSocket(), err)}
	}
	c.Close()
	return AgentState{Running: true, PID: pid}
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// dialAgent connects to the agent's multiplexer, pinning its host key.
func (in *Instance) dialAgent(ctx context.Context) (*sshutil.Client, error) {
	kp, err := sshutil.ReadKeyPair(filepath.Join(in.Dir(), agent.HostKeyFile))
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return sshutil.DialProxy(dctx, in.AgentSocket(), kp.Public)
}

// agentConfigFile records what the running agent serves, so a changed
// devbox.yaml (mounts, forwards) gets a fresh agent on the next up.
func (in *Instance) agentConfigFile() string { return filepath.Join(in.Dir(), "agent.config") }

// agentConfig is the part of the config the agent serves, as one line.
func (in *Instance) agentConfig() string {
	return fmt.Sprintf("mounts=%v forwards=%v\n", in.Cfg.Mounts, in.Cfg.Forwards)
}

// StartAgent starts the agent detached unless one already answers with
// the current mounts and forwards, and waits until it serves (shared
// folders mounted) or fails.
func (in *Instance) StartAgent(ctx context.Context) error {
	if in.Agent(ctx).Running {
		served, _ := os.ReadFile(in.agentConfigFile())
		if string(served) == in.agentConfig() {
			return nil
		}
		in.Status.Infof("mounts or forwards changed in %s: restarting the agent", in.Cfg.File)
	}
	in.StopAgent() // a stale, hung or outdated one
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	logf, err := os.OpenFile(in.agentLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	defer logf.Close()
	os.Remove(filepath.Join(in.Dir(), agent.ReadyFile))
	cmd := exec.Command(self, "agent", "--config", in.Cfg.File)
	cmd.Env = append(os.Environ(), "DEVBOX_HOME="+in.Home.State)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	setDetached(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("agent exited at start (%v): %s (hint: full log in %s)", err, lastLines(in.agentLog(), 5), in.agentLog())
		case <-deadline.C:
			return fmt.Errorf("agent did not become ready within 2m (hint: see %s)", in.agentLog())
		case <-ctx.Done():
			cmd.Process.Kill()
			return ctx.Err()
		case <-tick.C:
			if b, err := os.ReadFile(filepath.Join(in.Dir(), agent.ReadyFile)); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(cmd.Process.Pid) {
				return nil
			}
		}
	}
}

// StopAgent ends the agent (TERM, then KILL after 10 s) and removes its
// sockets and pid file. A missing agent is fine.
func (in *Instance) StopAgent() {
	defer func() {
		for _, f := range []string{agent.PIDFile, agent.ReadyFile, agent.ControlSocket, agent.DockerSocket, "agent.config"} {
			os.Remove(filepath.Join(in.Dir(), f))
		}
	}()
	pid, err := readPID(in.agentPIDFile())
	if err != nil || syscall.Kill(pid, 0) != nil {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 100; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// ServeAgent is the body of the hidden `devbox agent` command: it serves
// the running instance until ctx ends.
func (in *Instance) ServeAgent(ctx context.Context) error {
	info, err := in.running(ctx)
	if err != nil {
		return err
	}
	t, err := in.target(info)
	if err != nil {
		return err
	}
	in.Close() // libvirt is not needed any more
	if err := os.WriteFile(in.agentPIDFile(), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(in.agentConfigFile(), []byte(in.agentConfig()), 0o600); err != nil {
		return err
	}
	a := &agent.Agent{Dir: in.Dir(), Target: t, Mounts: in.Cfg.Mounts, Forwards: in.Cfg.Forwards, Log: newAgentLogger()}
	a.Log.Printf("agent for instance %q starting (pid %d)", in.Name(), os.Getpid())
	err = a.Run(ctx)
	a.Log.Printf("agent stopping: %v", errOrNil(err))
	return err
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

func newAgentLogger() *log.Logger { return log.New(os.Stderr, "", log.LstdFlags) }

// setDetached makes cmd its own session, so it outlives the terminal.
func setDetached(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
}

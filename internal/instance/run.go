package instance

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/devbox-vm/devbox/internal/agent"
	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/sshutil"
)

// RunOptions are devbox run's stdio and terminal.
type RunOptions struct {
	Dir     string // host folder the command runs in (its twin in the VM)
	Stdin   *os.File
	Stdout  io.Writer
	Stderr  io.Writer
	PTY     *sshutil.PTY     // nil: no terminal (see sshutil.TerminalPTY)
	Signals <-chan os.Signal // passed on to the remote process
}

// Run runs args in the VM, in the folder matching opts.Dir, as the
// docker-group user, and returns the remote exit status. It uses the
// agent's open connection; when the agent is down it says so, starts it
// again in the background and uses a direct connection.
func (in *Instance) Run(ctx context.Context, args []string, opts RunOptions) (int, error) {
	dir, err := filepath.EvalSymlinks(opts.Dir)
	if err != nil {
		return 1, err
	}
	// Only what the user accepted is shared, whatever devbox.yaml says now.
	shares, ok, err := in.AcceptedShares()
	if err != nil {
		return 1, err
	}
	if !ok {
		if _, err := in.Running(ctx); err != nil {
			return 1, err
		}
		return 1, fmt.Errorf("instance %q has no accepted shared folders yet (hint: devbox up)", in.Name())
	}
	m, ok := config.FindMount(shares.Mounts, dir)
	if !ok {
		return 1, fmt.Errorf("the current folder %s is not shared with the VM (hint: run from inside %s, or add it to mounts in %s and run devbox up)", dir, mountList(shares.Mounts), in.Cfg.File)
	}
	withStdio := func(cmd sshutil.Cmd) sshutil.Cmd {
		cmd.Stdin, cmd.Stdout, cmd.Stderr, cmd.PTY, cmd.Signals = opts.Stdin, opts.Stdout, opts.Stderr, opts.PTY, opts.Signals
		return cmd
	}
	c, err := in.Supervisor().Dial(ctx)
	if err == nil {
		defer c.Close()
		return c.Run(ctx, withStdio(sshutil.Cmd{Args: args, Dir: dir}))
	}
	fmt.Fprintf(opts.Stderr, "devbox: the agent of %q does not answer (%v): using a direct connection (devbox up restarts the agent)\n", in.Name(), err)
	info, err := in.Running(ctx)
	if err != nil {
		return 1, err
	}
	if c, err = in.dial(ctx, info); err != nil {
		return 1, err
	}
	defer c.Close()
	// Without the agent nobody serves the folder: serve it from here for
	// as long as the command runs.
	uid, gid, err := agent.GuestIDs(ctx, c)
	if err != nil {
		return 1, err
	}
	mctx, stopMount := context.WithCancel(ctx)
	mounted := make(chan error, 1)
	go func() { mounted <- agent.ServeMount(mctx, c, m, uid, gid, nil) }()
	defer func() { stopMount(); <-mounted }()
	// Up to 30 s for the folder to be mounted, then the command.
	wait := agent.WaitMount(m.Host, 300, "devbox: "+m.Host+" is not mounted in the VM (hint: devbox up restarts the agent that serves it)", dir, args...)
	return c.Run(ctx, withStdio(wait))
}

func mountList(mounts []config.Mount) string {
	var hosts []string
	for _, m := range mounts {
		hosts = append(hosts, m.Host)
	}
	if len(hosts) == 0 {
		return "a shared folder (none is configured)"
	}
	return strings.Join(hosts, " or ")
}

package instance

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/devbox-vm/devbox/internal/agent"
	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/internal/shell"
	"github.com/devbox-vm/devbox/sshutil"
)

// RunOptions are devbox run's stdio and terminal.
type RunOptions struct {
	Dir     string // host folder the command runs in (its twin in the VM)
	Stdin   *os.File
	Stdout  io.Writer
	Stderr  io.Writer
	PTY     *sshutil.PTY     // nil: no terminal
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
		if _, err := in.running(ctx); err != nil {
			return 1, err
		}
		return 1, fmt.Errorf("instance %q has no accepted shared folders yet (hint: devbox up)", in.Name())
	}
	m, ok := config.FindMount(shares.Mounts, dir)
	if !ok {
		return 1, fmt.Errorf("the current folder %s is not shared with the VM (hint: run from inside %s, or add it to mounts in %s and run devbox up)", dir, mountList(shares.Mounts), in.Cfg.File)
	}
	cmd := "cd " + shell.Quote(dir) + " && exec " + shell.Join(args)
	c, err := in.dialAgent(ctx)
	if err == nil {
		defer c.Close()
		return c.RunSignals(ctx, cmd, stdinOrNil(opts.Stdin), opts.Stdout, opts.Stderr, opts.PTY, opts.Signals)
	}
	fmt.Fprintf(opts.Stderr, "devbox: the agent of %q does not answer (%v): using a direct connection (devbox up restarts the agent)\n", in.Name(), err)
	info, err := in.running(ctx)
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
	return c.RunSignals(ctx, waitMountScript(m.Host)+cmd, stdinOrNil(opts.Stdin), opts.Stdout, opts.Stderr, opts.PTY, opts.Signals)
}

func stdinOrNil(f *os.File) io.Reader {
	if f == nil {
		return nil
	}
	return f
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

// waitMountScript waits up to 30 s for path to be a mount point in the
// guest, so a command never runs against the empty folder underneath.
func waitMountScript(path string) string {
	q := shell.Quote(path)
	return "i=0; until mountpoint -q " + q + "; do i=$((i+1)); if [ $i -gt 300 ]; then echo " +
		shell.Quote("devbox: "+path+" is not mounted in the VM (hint: devbox up restarts the agent that serves it)") +
		" >&2; exit 125; fi; sleep 0.1; done; "
}

// DockerEnv is the line that points a shell's docker CLI at the VM.
func (in *Instance) DockerEnv(shellName string) (string, error) {
	host := "unix://" + in.DockerSocket()
	switch shellName {
	case "bash", "zsh", "sh":
		return fmt.Sprintf("export DOCKER_HOST=%s\n# Run this command to configure your shell:\n# eval \"$(devbox docker-env)\"\n", shell.Quote(host)), nil
	case "fish":
		return fmt.Sprintf("set -gx DOCKER_HOST %s;\n# Run this command to configure your shell:\n# devbox docker-env --shell fish | source\n", shell.Quote(host)), nil
	case "powershell", "pwsh":
		return fmt.Sprintf("$Env:DOCKER_HOST = \"%s\"\n# Run this command to configure your shell:\n# & devbox docker-env --shell powershell | Invoke-Expression\n", strings.ReplaceAll(host, `"`, "`\"")), nil
	}
	return "", fmt.Errorf("shell %q: devbox knows bash, zsh, fish and powershell", shellName)
}

// ContextName is the Docker context devbox keeps for the instance.
func (in *Instance) ContextName() string { return "devbox-" + in.Name() }

// UpdateDockerContext creates or updates the instance's Docker context
// when a docker CLI is on the host; it reports whether it did.
func (in *Instance) UpdateDockerContext(ctx context.Context) (bool, error) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		return false, nil
	}
	endpoint := "host=unix://" + in.DockerSocket()
	verb := "create"
	if exec.CommandContext(ctx, docker, "context", "inspect", in.ContextName()).Run() == nil {
		verb = "update"
	}
	out, err := exec.CommandContext(ctx, docker, "context", verb, in.ContextName(),
		"--description", "devbox instance "+in.Name(), "--docker", endpoint).CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("docker context %s %s: %v: %s", verb, in.ContextName(), err, strings.TrimSpace(string(out)))
	}
	return true, nil
}

// RemoveDockerContext removes the instance's Docker context, if any.
func (in *Instance) RemoveDockerContext(ctx context.Context) {
	if docker, err := exec.LookPath("docker"); err == nil {
		exec.CommandContext(ctx, docker, "context", "rm", "-f", in.ContextName()).Run()
	}
}

// SSHConfig is an OpenSSH Host block for the running instance, with the
// pinned host key in a known-hosts file of its own.
func (in *Instance) SSHConfig(ctx context.Context) (string, error) {
	info, err := in.running(ctx)
	if err != nil {
		return "", err
	}
	host, err := sshutil.ReadKeyPair(in.hostKeyFile())
	if err != nil {
		return "", err
	}
	alias := "devbox-" + in.Name()
	known := filepath.Join(in.Dir(), filenames.KnownHosts)
	if err := os.WriteFile(known, []byte(sshutil.HostKeyLine(alias, host.Public)+"\n"), 0o600); err != nil {
		return "", err
	}
	return fmt.Sprintf(`Host %s
  HostName 127.0.0.1
  Port %d
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  HostKeyAlias %s
  UserKnownHostsFile %s
  StrictHostKeyChecking yes
  LogLevel ERROR
`, alias, info.SSHPort, info.User, sshConfigQuote(in.keyFile()), alias, sshConfigQuote(known)), nil
}

// sshConfigQuote quotes a path for ssh_config when it has spaces.
func sshConfigQuote(p string) string {
	if strings.ContainsAny(p, " \t") {
		return `"` + p + `"`
	}
	return p
}

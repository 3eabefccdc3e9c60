package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/internal/instance"
	"github.com/devbox-vm/devbox/internal/shell"
	"github.com/devbox-vm/devbox/sshutil"
)

func (a *app) dockerEnvCommand() *cobra.Command {
	var shell string
	cmd := &cobra.Command{
		Use:   "docker-env [--shell bash|zsh|fish|powershell]",
		Short: "Print the DOCKER_HOST line that points docker at the VM: eval \"$(devbox docker-env)\"",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if shell == "" {
				shell = filepath.Base(os.Getenv("SHELL"))
				if shell == "." || shell == "" {
					shell = "bash"
				}
			}
			return a.withInstance(func(in *instance.Instance) error {
				line, err := dockerEnvLine(shell, in.Supervisor().DockerSocket())
				if err != nil {
					return err
				}
				if !in.Supervisor().State(a.ctx).Running {
					fmt.Fprintf(a.stderr, "devbox: note: the agent of %q is not running, so the socket does not answer yet (devbox up starts it)\n", in.Name())
				}
				_, err = fmt.Fprint(a.stdout, line)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&shell, "shell", "", "shell syntax: bash, zsh, fish or powershell (default: from $SHELL)")
	return cmd
}

func (a *app) sshConfigCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ssh-config",
		Short: "Print an OpenSSH Host block for the instance (for ssh -F, scp, rsync, editors)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withInstance(func(in *instance.Instance) error {
				block, err := sshConfigBlock(a.ctx, in)
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(a.stdout, block)
				return err
			})
		},
	}
}

// dockerEnvLine is the line that points a shell's docker CLI at socket.
func dockerEnvLine(shellName, socket string) (string, error) {
	host := "unix://" + socket
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

// sshConfigBlock is an OpenSSH Host block for the running instance, with
// the pinned host key in a known-hosts file of its own.
func sshConfigBlock(ctx context.Context, in *instance.Instance) (string, error) {
	info, err := in.Running(ctx)
	if err != nil {
		return "", err
	}
	host, err := sshutil.ReadKeyPair(in.HostKeyFile())
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
`, alias, info.SSHPort, info.User, sshConfigQuote(in.KeyFile()), alias, sshConfigQuote(known)), nil
}

// sshConfigQuote quotes a path for ssh_config when it has spaces.
func sshConfigQuote(p string) string {
	if strings.ContainsAny(p, " \t") {
		return `"` + p + `"`
	}
	return p
}

package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/devbox-vm/devbox/internal/instance"
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
				line, err := in.DockerEnv(shell)
				if err != nil {
					return err
				}
				if !in.Agent(a.ctx).Running {
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
				block, err := in.SSHConfig(a.ctx)
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(a.stdout, block)
				return err
			})
		},
	}
}

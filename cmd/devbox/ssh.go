package main

import (
	"github.com/spf13/cobra"

	"github.com/devbox-vm/devbox/internal/instance"
	"github.com/devbox-vm/devbox/sshutil"
)

func (a *app) sshCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ssh [-- COMMAND [ARGS...]]",
		Short: "Open a shell in the instance, or run a command there with its exit status",
		Long: "Without a command, opens an interactive shell. With one (after --), runs it as the\n" +
			"instance's user with stdin, stdout and stderr passed through; devbox exits with its status.",
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withInstance(func(in *instance.Instance) error {
				code, err := in.SSH(a.ctx, args, a.stdin, a.stdout, a.stderr, sshutil.TerminalPTY(a.stdin))
				if err != nil {
					return err
				}
				if code != 0 {
					return exitError{code}
				}
				return nil
			})
		},
	}
	cmd.Flags().SetInterspersed(false)
	return cmd
}

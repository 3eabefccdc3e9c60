package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/devbox-vm/devbox/internal/instance"
	"github.com/devbox-vm/devbox/sshutil"
)

func (a *app) runCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run [--] COMMAND [ARGS...]",
		Short: "Run a command in the VM, in the folder matching this one, as the docker-group user",
		Long: "Runs COMMAND inside the VM in the shared folder that corresponds to the current folder,\n" +
			"with stdin, stdout and stderr streamed, a terminal when stdin is one, Ctrl-C and SIGTERM\n" +
			"passed to the remote process, and its exit status as devbox's own.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runInVM(args)
		},
	}
	// Everything after the command's name is the command's: `devbox run wc -l`.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func (a *app) dockerCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "docker [ARGS...]",
		Short:              "Shorthand for devbox run docker ARGS...",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runInVM(append([]string{"docker"}, args...))
		},
	}
}

// runInVM runs args through the agent and exits with their status.
func (a *app) runInVM(args []string) error {
	return a.withInstance(func(in *instance.Instance) error {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		// Signals go to the remote process (which may well survive a
		// Ctrl-C, like a REPL); devbox stays to report its exit status, so
		// they must not cancel devbox's own context.
		passed := []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}
		signal.Reset(passed...)
		sigs := make(chan os.Signal, 4)
		signal.Notify(sigs, passed...)
		defer signal.Stop(sigs)
		opts := instance.RunOptions{Dir: wd, Stdin: a.stdin, Stdout: a.stdout, Stderr: a.stderr, PTY: sshutil.TerminalPTY(a.stdin), Signals: sigs}
		code, err := in.Run(a.ctx, args, opts)
		if err != nil {
			return err
		}
		if code != 0 {
			return exitError{code}
		}
		return nil
	})
}

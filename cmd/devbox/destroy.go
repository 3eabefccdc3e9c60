package main

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/devbox-vm/devbox/internal/instance"
	"github.com/devbox-vm/devbox/vm"
)

func (a *app) destroyCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "destroy",
		Short: "Remove the instance: its VM, disk, seed, keys and logs (the box cache stays)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withInstance(func(in *instance.Instance) error {
				info, err := in.Inspect(a.ctx)
				if err != nil {
					return err
				}
				if info.State == vm.StateNotCreated {
					// Still clear a stale folder, if any.
					fmt.Fprintf(a.stderr, "instance %q does not exist\n", in.Name())
					return in.Destroy(a.ctx)
				}
				if !force {
					if a.stdin == nil || !term.IsTerminal(int(a.stdin.Fd())) {
						return fmt.Errorf("destroy instance %q: refusing without confirmation (hint: devbox destroy -f)", in.Name())
					}
					fmt.Fprintf(a.stderr, "Destroy instance %q and everything in it? [y/N] ", in.Name())
					answer, _ := bufio.NewReader(a.stdin).ReadString('\n')
					if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
						return fmt.Errorf("destroy instance %q: not confirmed", in.Name())
					}
				}
				return in.Destroy(a.ctx)
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	return cmd
}

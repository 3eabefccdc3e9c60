package main

import (
	"fmt"

	"github.com/spf13/cobra"

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
			return a.withInstanceToRemove(func(in *instance.Instance) error {
				info, err := in.Inspect(a.ctx)
				if err != nil {
					return err
				}
				if info.State == vm.StateNotCreated {
					// Still clear a stale folder, if any.
					fmt.Fprintf(a.stderr, "instance %q does not exist\n", in.Name())
					removeDockerContext(a.ctx, in.Name())
					return in.Destroy(a.ctx)
				}
				if !force {
					if !a.onTerminal() {
						return fmt.Errorf("destroy instance %q: refusing without confirmation (hint: devbox destroy -f)", in.Name())
					}
					if !a.confirm(fmt.Sprintf("Destroy instance %q and everything in it?", in.Name())) {
						return fmt.Errorf("destroy instance %q: not confirmed", in.Name())
					}
				}
				removeDockerContext(a.ctx, in.Name())
				return in.Destroy(a.ctx)
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	return cmd
}

package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/devbox-vm/devbox/internal/instance"
)

func (a *app) haltCommand() *cobra.Command {
	var force bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "halt",
		Short: "Stop the instance (a clean poweroff, forced after --timeout)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withInstance(func(in *instance.Instance) error {
				return in.Halt(a.ctx, force, timeout)
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "power off at once, like pulling the plug")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long to wait for a clean poweroff before forcing it")
	return cmd
}

package main

import (
	"github.com/spf13/cobra"

	"github.com/devbox-vm/devbox/internal/instance"
)

func (a *app) agentCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "agent",
		Short:  "Serve the instance's docker socket, shared folders and ports (started by up)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withInstance(func(in *instance.Instance) error {
				return in.ServeAgent(a.ctx)
			})
		},
	}
}

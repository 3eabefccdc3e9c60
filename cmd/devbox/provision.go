package main

import (
	"github.com/spf13/cobra"

	"github.com/devbox-vm/devbox/internal/instance"
)

func (a *app) provisionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "provision",
		Short: "Run provisioning on the running instance again (done run-once steps are skipped)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withInstance(func(in *instance.Instance) error {
				return in.Provision(a.ctx)
			})
		},
	}
}

package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/devbox-vm/devbox/internal/instance"
)

func (a *app) upCommand() *cobra.Command {
	var prov, noProv, noContext, acceptShares bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Create, start and provision the instance (a running one is left as it is)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if prov && noProv {
				return fmt.Errorf("--provision and --no-provision cannot be used together")
			}
			mode := instance.ProvisionAuto
			if prov {
				mode = instance.ProvisionForce
			} else if noProv {
				mode = instance.ProvisionSkip
			}
			return a.withInstance(func(in *instance.Instance) error {
				opts := instance.UpOptions{Provision: mode, AcceptShares: acceptShares}
				if a.onTerminal() {
					opts.Confirm = a.confirm
				}
				if err := in.Up(a.ctx, opts); err != nil {
					return err
				}
				if !noContext {
					if ok, err := updateDockerContext(a.ctx, in.Name(), in.Supervisor().DockerSocket()); err != nil {
						in.Status.Warnf("%v", err)
					} else if ok {
						c := contextName(in.Name())
						in.Status.Infof("docker context %q points at the VM: docker --context %s ps, or eval \"$(devbox docker-env)\"", c, c)
					}
				}
				fmt.Fprintf(a.stderr, "instance %q is up: devbox ssh opens a shell\n", in.Name())
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&prov, "provision", false, "run provisioning even if the instance was provisioned before")
	cmd.Flags().BoolVar(&noProv, "no-provision", false, "do not provision")
	cmd.Flags().BoolVar(&noContext, "no-context", false, "do not create or update the instance's Docker context")
	cmd.Flags().BoolVar(&acceptShares, "accept-shares", false, "accept shared folders and forwards in devbox.yaml that reach further than accepted before")
	return cmd
}

package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/devbox-vm/devbox/internal/instance"
	"github.com/devbox-vm/devbox/vm"
)

// statusReport is devbox status --json; every field comes from libvirt.
type statusReport struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	Domain     string `json:"domain"`
	LibvirtURI string `json:"libvirt_uri"`
	SSHPort    int    `json:"ssh_port,omitempty"`
	User       string `json:"user,omitempty"`
	Accel      string `json:"accel,omitempty"`
	CPUs       int    `json:"cpus,omitempty"`
	MemoryMiB  int64  `json:"memory_mib,omitempty"`
	ConsoleLog string `json:"console_log,omitempty"`
	Agent      string `json:"agent,omitempty"`
	DockerHost string `json:"docker_host,omitempty"`
}

func (a *app) statusCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the instance's state, read live from libvirt",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withInstance(func(in *instance.Instance) error {
				info, err := in.Inspect(a.ctx)
				if err != nil {
					return err
				}
				r := statusReport{Name: in.Name(), State: string(info.State), Domain: in.Domain(), LibvirtURI: in.Cfg.LibvirtURI}
				if info.State != vm.StateNotCreated {
					r.SSHPort, r.User, r.Accel = info.SSHPort, info.User, info.Accel
					r.CPUs, r.MemoryMiB, r.ConsoleLog = info.CPUs, info.MemoryMiB, info.ConsoleLog
					r.Agent = in.Agent(a.ctx).String()
					r.DockerHost = "unix://" + in.DockerSocket()
				}
				if asJSON {
					enc := json.NewEncoder(a.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(r)
				}
				return printStatus(a, r)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStatus(a *app, r statusReport) error {
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "name:\t%s\n", r.Name)
	fmt.Fprintf(w, "state:\t%s\n", r.State)
	fmt.Fprintf(w, "libvirt:\t%s (domain %s)\n", r.LibvirtURI, r.Domain)
	if r.State != string(vm.StateNotCreated) {
		fmt.Fprintf(w, "resources:\t%d CPUs, %d MiB memory, accel %s\n", r.CPUs, r.MemoryMiB, r.Accel)
		fmt.Fprintf(w, "ssh:\t%s@127.0.0.1:%d\n", r.User, r.SSHPort)
		fmt.Fprintf(w, "console log:\t%s\n", r.ConsoleLog)
		fmt.Fprintf(w, "agent:\t%s\n", r.Agent)
		fmt.Fprintf(w, "docker host:\t%s\n", r.DockerHost)
	}
	return w.Flush()
}

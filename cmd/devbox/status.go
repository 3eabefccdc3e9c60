package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/devbox-vm/devbox/internal/agent"
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
	Arch       string `json:"arch,omitempty"`
	CPUs       int    `json:"cpus,omitempty"`
	MemoryMiB  int64  `json:"memory_mib,omitempty"`
	ConsoleLog string `json:"console_log,omitempty"`
	Agent      string `json:"agent,omitempty"`
	DockerHost string `json:"docker_host,omitempty"`
	// AgentStatus is what the running agent reports of itself.
	AgentStatus *agent.Status `json:"agent_status,omitempty"`
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
					r.SSHPort, r.User, r.Accel, r.Arch = info.SSHPort, info.User, info.Accel, info.Arch
					r.CPUs, r.MemoryMiB, r.ConsoleLog = info.CPUs, info.MemoryMiB, info.ConsoleLog
					as := in.Supervisor().State(a.ctx)
					r.Agent = as.String()
					r.DockerHost = "unix://" + in.Supervisor().DockerSocket()
					if as.Running {
						if st, err := agent.QueryStatus(a.ctx, in.Dir()); err == nil {
							r.AgentStatus = &st
						} else {
							r.Agent += fmt.Sprintf(" (status: %v)", err)
						}
					}
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
		fmt.Fprintf(w, "resources:\t%d CPUs, %d MiB memory, %s, accel %s\n", r.CPUs, r.MemoryMiB, r.Arch, r.Accel)
		fmt.Fprintf(w, "ssh:\t%s@127.0.0.1:%d\n", r.User, r.SSHPort)
		fmt.Fprintf(w, "console log:\t%s\n", r.ConsoleLog)
		fmt.Fprintf(w, "agent:\t%s\n", r.Agent)
		fmt.Fprintf(w, "docker host:\t%s\n", r.DockerHost)
		if st := r.AgentStatus; st != nil {
			printAgentStatus(w, st)
		}
	}
	return w.Flush()
}

// printAgentStatus shows what the agent serves and what failed, and why.
func printAgentStatus(w io.Writer, st *agent.Status) {
	c := st.Connection
	line := fmt.Sprintf("%s since %s", c.State, c.Since.Local().Format("15:04:05"))
	if c.Reason != "" {
		line += ": " + c.Reason
	}
	if c.WantHostKey != "" || c.GotHostKey != "" {
		line += fmt.Sprintf(" (pinned %s, the guest showed %s)", c.WantHostKey, c.GotHostKey)
	}
	fmt.Fprintf(w, "connection:\t%s\n", line)
	fmt.Fprintf(w, "docker socket:\t%s\n", stateLine(st.Docker.State, st.Docker.Reason))
	for _, m := range st.Mounts {
		line := stateLine(m.State, m.Reason)
		if m.Events != "" {
			line += "; file events " + m.Events
		}
		how := m.Mode
		if m.Type != "" {
			how += ", " + m.Type
		}
		fmt.Fprintf(w, "shared folder:\t%s (%s): %s\n", m.Host, how, line)
	}
	for _, f := range st.Forwards {
		what := fmt.Sprintf("%s → guest port %d", f.Host, f.Guest)
		if f.Container != "" {
			what = fmt.Sprintf("%s → container %s", f.Host, f.Container)
		}
		if f.Proto == "udp" {
			what += " (udp)"
		}
		fmt.Fprintf(w, "forward:\t%s: %s\n", what, stateLine(f.State, f.Reason))
	}
}

func stateLine(state, reason string) string {
	if reason == "" {
		return state
	}
	return state + ": " + reason
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/doctor"
	"github.com/devbox-vm/devbox/internal/instance"
)

// doctorEnv is the host doctor examines; tests swap in another.
var doctorEnv = doctor.HostEnv

func (a *app) doctorCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check that devbox up can work on this host, and say how to fix what cannot",
		Long: "doctor checks the config, libvirt, QEMU for the guest's architecture (and its UEFI\n" +
			"firmware for aarch64), the accelerators, the storage pool, devbox's home and the docker\n" +
			"CLI. It exits non-zero when devbox up would fail; warnings alone exit zero.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs := doctor.Run(a.ctx, doctorEnv(), a.doctorInput())
			if err := a.ctx.Err(); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rs); err != nil {
					return err
				}
			} else {
				printDoctor(a.stdout, rs)
			}
			if failed := doctor.Failed(rs); len(failed) > 0 {
				return fmt.Errorf("devbox up would fail: see %s", strings.Join(failed, ", "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: [{name, status, found, fix}]")
	return cmd
}

// doctorInput finds the config the way every command does, but tells a
// missing one (the host is still checked) from an invalid one.
func (a *app) doctorInput() doctor.Input {
	var in doctor.Input
	in.ConfigFile = a.configFile
	if in.ConfigFile == "" {
		wd, err := os.Getwd()
		if err == nil {
			in.ConfigFile, err = config.Find(wd)
		}
		if err != nil {
			in.ConfigFile, in.ConfigErr = "", err
		}
	}
	if in.ConfigFile != "" {
		in.Config, in.ConfigErr = config.Load(in.ConfigFile)
	}
	in.Home, in.HomeErr = instance.DefaultHome()
	return in
}

// printDoctor writes one line per check, kind-style, and a problem's fix
// indented under it.
func printDoctor(w io.Writer, rs []doctor.Result) {
	marks := map[doctor.Status]string{doctor.OK: "✓", doctor.Warn: "!", doctor.Fail: "✗"}
	for _, r := range rs {
		found := strings.ReplaceAll(r.Found, "\n", "\n   ")
		fmt.Fprintf(w, " %s %s: %s\n", marks[r.Status], r.Name, found)
		if r.Fix != "" {
			fmt.Fprintf(w, "   fix: %s\n", r.Fix)
		}
	}
}

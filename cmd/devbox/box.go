package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/devbox-vm/devbox/boxes"
	"github.com/devbox-vm/devbox/internal/boxstore"
	"github.com/devbox-vm/devbox/internal/cli"
	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/instance"
	"github.com/devbox-vm/devbox/vm"
)

func (a *app) boxCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "box",
		Short: "The boxes in this devbox home's cache and in libvirt's pool: list, add, remove, prune; package an instance as a box",
	}
	cmd.PersistentFlags().StringVar(&a.boxURI, "libvirt-uri", "", "libvirt to look at (default: devbox.yaml's, else "+config.DefaultLibvirtURI()+")")
	cmd.AddCommand(a.boxListCommand(), a.boxAddCommand(), a.boxRemoveCommand(), a.boxPruneCommand(), a.boxPackageCommand(), a.boxBuildCommand())
	return cmd
}

// withBoxes runs fn with the home and a driver for the libvirt in use.
func (a *app) withBoxes(fn func(home instance.Home, d vm.Driver) error) error {
	home, err := instance.DefaultHome()
	if err != nil {
		return err
	}
	uri := a.boxURI
	if uri == "" {
		uri = config.DefaultLibvirtURI()
		if cfg, err := a.loadConfig(); err == nil {
			uri = cfg.LibvirtURI
		}
	}
	d, err := connect(a.ctx, uri)
	if err != nil {
		return err
	}
	defer d.Close()
	return fn(home, d)
}

func (a *app) boxListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Boxes cached here or based in libvirt's pool, with the instances using each",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withBoxes(func(home instance.Home, d vm.Driver) error {
				list, err := boxstore.List(a.ctx, home, d)
				if err != nil {
					return err
				}
				if asJSON {
					if list == nil {
						list = []boxstore.Box{}
					}
					enc := json.NewEncoder(a.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(list)
				}
				if len(list) == 0 {
					fmt.Fprintln(a.stderr, "no boxes (a box is cached by devbox up or devbox box add)")
					return nil
				}
				w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "BOX\tSIZE\tCACHED\tIN POOL\tUSED BY\tSOURCE")
				for _, b := range list {
					used := strings.Join(b.Instances, ",")
					if b.PoolUsers > 0 {
						used = strings.TrimPrefix(used+fmt.Sprintf(", %d volume(s) in the pool", b.PoolUsers), ", ")
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", b.SHA256[:16], mib(b.Size), yesNo(b.Cached), yesNo(b.InPool), dash(used), dash(b.Source))
				}
				return w.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) boxAddCommand() *cobra.Command {
	var arch, sha string
	cmd := &cobra.Command{
		Use:   "add NAME|URL|PATH",
		Short: "Cache a box before up needs it: a catalog name, an https:// URL (with --sha256) or a Vagrant .box file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			home, err := instance.DefaultHome()
			if err != nil {
				return err
			}
			source := args[0]
			if !boxes.IsName(source) && !strings.Contains(source, "://") {
				if _, err := os.Stat(source); err != nil {
					return fmt.Errorf("box %q: %w", source, err)
				}
			}
			// On a terminal the download is a bar redrawn on the step's line.
			st := cli.NewStatus(a.stderr)
			var box boxes.Box
			if err := st.Step("Adding box "+source, func() (err error) {
				box, err = home.ResolveBox(a.ctx, source, sha, arch, st.Writer())
				return err
			}); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s\t%s\t%s\n", box.SHA256, mib(box.Size), box.Path)
			return nil
		},
	}
	cmd.Flags().StringVar(&arch, "arch", config.HostArch(), "the image of a catalog name for this guest arch (x86_64 or aarch64)")
	cmd.Flags().StringVar(&sha, "sha256", "", "the sha256 a URL's image (or a .box file) must have")
	return cmd
}

func (a *app) boxRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "remove SHA256|NAME...",
		Short: "Remove boxes (cached image and base volume) by the start of their sha256 or the name box build gave them; refused while an instance uses one",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withBoxes(func(home instance.Home, d vm.Driver) error {
				list, err := boxstore.List(a.ctx, home, d)
				if err != nil {
					return err
				}
				for _, prefix := range args {
					b, err := boxstore.Find(list, prefix)
					if err != nil {
						return err
					}
					if err := boxstore.Remove(a.ctx, home, d, b); err != nil {
						return err
					}
					fmt.Fprintf(a.stderr, "removed box %s (%s)\n", b.SHA256[:16], mib(b.Size))
				}
				return nil
			})
		},
	}
}

func (a *app) boxPruneCommand() *cobra.Command {
	var dryRun bool
	var keep time.Duration
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove every box no instance uses: cached images, and base volumes in libvirt's pool that no volume backs onto",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withBoxes(func(home instance.Home, d vm.Driver) error {
				var freed int64
				verb := "removed"
				if dryRun {
					verb = "would remove"
				}
				err := boxstore.Prune(a.ctx, home, d, keep, dryRun, func(b boxstore.Box) {
					freed += b.Size
					what := []string{mib(b.Size)}
					if b.Source != "" {
						what = append(what, b.Source)
					}
					fmt.Fprintf(a.stderr, "%s box %s (%s)\n", verb, b.SHA256[:16], strings.Join(what, ", "))
				})
				if n := boxstore.PrunePartials(home, dryRun); n > 0 {
					fmt.Fprintf(a.stderr, "%s downloads cut short (%s)\n", verb, mib(n))
					freed += n
				}
				fmt.Fprintf(a.stderr, "%s %s in all\n", verb, mib(freed))
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only say what would be removed")
	cmd.Flags().DurationVar(&keep, "keep-recent", 10*time.Minute, "keep base volumes written this recently (another devbox may be uploading one)")
	return cmd
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) boxPackageCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "package OUT.qcow2",
		Short: "Make a box of this project's running instance (cleaned, powered off, flattened into one qcow2) and print its sha256",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withInstance(func(in *instance.Instance) error {
				out, err := filepath.Abs(args[0])
				if err != nil {
					return err
				}
				if _, err := os.Stat(out); err == nil {
					return fmt.Errorf("box package: %s exists already (hint: remove it or pick another name)", out)
				}
				sha, size, err := in.Package(a.ctx, out)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "%s\t%s\t%s\n", sha, mib(size), out)
				fmt.Fprintf(a.stderr, "box: %s, box_sha256: %s (devbox up brings the instance back)\n", out, sha)
				return nil
			})
		},
	}
}

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/devbox-vm/devbox/boxes"
	"github.com/devbox-vm/devbox/boxes/build"
	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/instance"
	"github.com/devbox-vm/devbox/internal/lockfile"
)

func (a *app) boxBuildCommand() *cobra.Command {
	var o build.Options
	var name, output string
	var force bool
	cmd := &cobra.Command{
		Use:   "build DISTRO",
		Short: "Build a box from the distribution's packages (Linux host, root), with the Docker engine baked in: up from it installs nothing",
		Long: `Build a bootable cloud-init box from the distribution's own packages
(debootstrap, its cloud kernel, cloud-init), with the Docker engine and sshfs
baked in (--engine docker, the default), so devbox up from it installs no
package and works with no network in the guest.

The box goes into this user's cache under --name (default DISTRO-ENGINE,
e.g. debian-12-docker): put "box: debian-12-docker" in devbox.yaml. Run
through sudo, it goes to the cache of the user who ran sudo. A box built
from the same inputs (the build scripts, the guest's APT sources, the engine)
is not built again unless --force.

The Debian mirror is the host's APT sources' entry for the suite, or --mirror.
The installed packages, their versions and the archive's date are recorded
with the box (devbox box list --json shows the record's path).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Distro, o.Log = args[0], a.stderr
			if name == "" {
				suffix := o.Engine
				if suffix == "none" {
					suffix = "base"
				}
				name = o.Distro + "-" + suffix
			}
			if !boxes.IsName(name) {
				return fmt.Errorf("--name %q: a box name is lower-case letters, digits, dots and dashes, starting with a letter", name)
			}
			if err := o.Check(); err != nil {
				return err
			}
			if output != "" {
				return a.buildToFile(o, output)
			}
			return a.buildIntoCache(o, name, force)
		},
	}
	cmd.Flags().StringVar(&o.Arch, "arch", config.HostArch(), "guest arch: x86_64 or aarch64 (a foreign arch needs qemu-user-static on this host)")
	cmd.Flags().StringVar(&o.Engine, "engine", "docker", "engine to bake in: docker or none")
	cmd.Flags().StringVar(&o.Mirror, "mirror", "", "Debian archive URL (default: this host's APT sources' entry for the suite)")
	cmd.Flags().StringVar(&name, "name", "", "the box's name for devbox.yaml (default DISTRO-ENGINE)")
	cmd.Flags().StringVar(&output, "output", "", "write the box to this qcow2 file (and FILE.manifest) instead of the cache; rebuilt only if its inputs changed")
	cmd.Flags().BoolVar(&force, "force", false, "build even if a box from the same inputs is cached")
	return cmd
}

// buildToFile builds o into path; the script skips the build when path's
// stamp matches its inputs.
func (a *app) buildToFile(o build.Options, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	o.Out = abs
	m, err := build.Run(a.ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%s\t%s, %d packages\n", abs, describeManifest(m), len(m.Packages))
	return nil
}

// buildIntoCache builds o in a folder of the cache and moves the box into
// the cache as name. The folder is locked while the build runs; folders
// of builds that were killed are removed by the next build.
func (a *app) buildIntoCache(o build.Options, name string, force bool) error {
	home, owner, err := buildHome()
	if err != nil {
		return err
	}
	cache := home.BoxCache()
	stamp, err := build.Stamp(a.ctx, o)
	if err != nil {
		return err
	}
	if b, ok := boxes.FindBuilt(cache, name, o.Arch); ok && b.Stamp == stamp && !force {
		if _, err := os.Stat(filepath.Join(cache, b.SHA256+".img")); err == nil {
			fmt.Fprintf(a.stderr, "box %s (%s) is up to date: built %s from the same inputs (--force builds it again)\n", name, o.Arch, b.Created.Format(time.DateTime))
			fmt.Fprintf(a.stdout, "%s\t%s\n", name, b.SHA256)
			return nil
		}
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return fmt.Errorf("box cache %s: %w", cache, err)
	}
	sweepBuilds(cache)
	dir, err := os.MkdirTemp(cache, ".build-")
	if err != nil {
		return fmt.Errorf("box cache %s: %w", cache, err)
	}
	defer os.RemoveAll(dir)
	lock, err := lockfile.TryLock(filepath.Join(dir, "lock"), "devbox box build "+name)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	o.Out = filepath.Join(dir, "box.qcow2")
	m, err := build.Run(a.ctx, o)
	if err != nil {
		return err
	}
	b, err := boxes.AddBuilt(a.ctx, cache, o.Out, boxes.Built{
		Name: name, Arch: o.Arch, Distro: o.Distro, Stamp: stamp, Created: time.Now().UTC(), Manifest: m,
	})
	if err != nil {
		return err
	}
	if owner != nil {
		if err := chownTree(home.Cache, owner.uid, owner.gid); err != nil {
			return err
		}
	}
	fmt.Fprintf(a.stderr, "box %s (%s) built: %s, %d packages; use it with \"box: %s\" in devbox.yaml\n", name, o.Arch, describeManifest(m), len(m.Packages), name)
	fmt.Fprintf(a.stdout, "%s\t%s\n", name, b.SHA256)
	return nil
}

// describeManifest names the suite, arch and engine version of a build.
func describeManifest(m build.Manifest) string {
	s := fmt.Sprintf("Debian %s %s", m.Suite, m.Arch)
	for _, p := range m.Packages {
		if f := strings.Fields(p); len(f) >= 2 && f[0] == "docker.io" {
			s += ", docker.io " + f[1]
		}
	}
	return s
}

// sweepBuilds removes the build folders in cache no build holds (left by
// a build that was killed).
func sweepBuilds(cache string) {
	dirs, _ := filepath.Glob(filepath.Join(cache, ".build-*"))
	for _, d := range dirs {
		if !lockfile.Held(filepath.Join(d, "lock")) {
			os.RemoveAll(d)
		}
	}
}

type ids struct{ uid, gid int }

// buildHome is the devbox home a build puts its box in: the home of the
// user who ran sudo when run through sudo (a build needs root, the box is
// for that user), with that user as the owner of what it writes there.
func buildHome() (instance.Home, *ids, error) {
	uidText := os.Getenv("SUDO_UID")
	if os.Geteuid() != 0 || uidText == "" || uidText == "0" || os.Getenv("DEVBOX_HOME") != "" {
		h, err := instance.DefaultHome()
		return h, nil, err
	}
	u, err := user.LookupId(uidText)
	if err != nil {
		return instance.Home{}, nil, fmt.Errorf("SUDO_UID %s: %w (hint: set DEVBOX_HOME to the devbox home to build into)", uidText, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return instance.HomeOf(u.HomeDir), &ids{uid, gid}, nil
}

// chownTree gives everything under dir (the user's own devbox cache, where
// root just wrote the box) to uid and gid.
func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// Package build makes a box from a Linux distribution's own packages: the
// scripts in this folder (debootstrap, the distribution's cloud kernel,
// cloud-init, optionally the Docker engine), run as root on a Linux host.
// The scripts are embedded so devbox box build needs nothing but the host
// tools they check for.
package build

import (
	"bufio"
	"embed"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
)

//go:embed lib.sh debian-amd64.sh debian-arm64.sh
var scripts embed.FS

// Distros maps the box names box build makes to their Debian suites.
var Distros = map[string]string{
	"debian-12": "bookworm",
	"debian-13": "trixie",
}

// Engines are what box build can bake in: none, or docker (the
// distribution's docker.io, with sshfs for shared folders).
var Engines = []string{"docker", "none"}

// scriptFor is the build script for a guest arch.
var scriptFor = map[string]string{
	"x86_64":  "debian-amd64.sh",
	"aarch64": "debian-arm64.sh",
}

// Options describe one build.
type Options struct {
	Distro string // a key of Distros
	Arch   string // x86_64 or aarch64
	Engine string // docker or none
	// Mirror is the Debian archive to build from; empty means the host's
	// APT sources' entry for the suite.
	Mirror string
	// Out is the qcow2 to write; Out.manifest and Out.stamp are written
	// beside it.
	Out string
	// Log gets the build's progress lines and, on failure, its error output.
	Log io.Writer
}

// Check refuses options a build cannot use, before anything runs.
func (o Options) Check() error {
	if runtime.GOOS != "linux" {
		return errors.New("box build runs on a Linux host (it needs debootstrap, chroot and loop devices; hint: build the box on a Linux machine and copy it here, or use a catalog box such as debian-12)")
	}
	if _, ok := Distros[o.Distro]; !ok {
		return fmt.Errorf("box build %q: can build %s", o.Distro, strings.Join(names(Distros), ", "))
	}
	if _, ok := scriptFor[o.Arch]; !ok {
		return fmt.Errorf("box build: arch %q: want x86_64 or aarch64", o.Arch)
	}
	if o.Engine != "docker" && o.Engine != "none" {
		return fmt.Errorf("box build: engine %q: want %s", o.Engine, strings.Join(Engines, " or "))
	}
	if o.Mirror != "" && !strings.HasPrefix(o.Mirror, "http://") && !strings.HasPrefix(o.Mirror, "https://") && !strings.HasPrefix(o.Mirror, "file:/") {
		return fmt.Errorf("box build: mirror %q: want an http(s):// or file:/ URL of a Debian archive", o.Mirror)
	}
	if os.Geteuid() != 0 {
		return errors.New("box build needs root (debootstrap, chroot, loop devices; hint: sudo devbox box build ...; the box goes to the cache of the user who ran sudo)")
	}
	return nil
}

// env is the scripts' environment for o.
func (o Options) env() []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LC_ALL=C.UTF-8",
		"BOX_SUITE=" + Distros[o.Distro],
		"BOX_ENGINE=" + o.Engine,
	}
	if o.Mirror != "" {
		env = append(env, "DEBIAN_MIRROR="+o.Mirror)
	}
	return env
}

// Manifest is what went into a box, as its build recorded it.
type Manifest struct {
	Suite  string `json:"suite"`
	Arch   string `json:"arch"` // Debian's name: amd64, arm64
	Engine string `json:"engine"`
	Mirror string `json:"mirror"`
	// Archives are "SUITE DATE": the Date of each archive's Release file,
	// the state of the archive the packages came from.
	Archives []string `json:"archives"`
	// Packages are "NAME VERSION ARCH", sorted: the same inputs give the
	// same list.
	Packages []string `json:"packages"`
}

// ReadManifest parses the OUT.manifest a build writes.
func ReadManifest(path string) (Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return Manifest{}, err
	}
	defer f.Close()
	return parseManifest(f, path)
}

func parseManifest(r io.Reader, what string) (Manifest, error) {
	var m Manifest
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		key, val, _ := strings.Cut(sc.Text(), " ")
		switch key {
		case "suite":
			m.Suite = val
		case "arch":
			m.Arch = val
		case "engine":
			m.Engine = val
		case "mirror":
			m.Mirror = val
		case "archive":
			m.Archives = append(m.Archives, val)
		case "package":
			m.Packages = append(m.Packages, val)
		default:
			return Manifest{}, fmt.Errorf("%s:%d: unknown line %q", what, n, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return Manifest{}, err
	}
	if m.Suite == "" || len(m.Packages) == 0 {
		return Manifest{}, fmt.Errorf("%s: no suite or no packages: not a box build's manifest", what)
	}
	sort.Strings(m.Packages)
	return m, nil
}

// HasPackage reports whether the box has package name installed.
func (m Manifest) HasPackage(name string) bool {
	for _, p := range m.Packages {
		if n, _, _ := strings.Cut(p, " "); n == name {
			return true
		}
	}
	return false
}

func names(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

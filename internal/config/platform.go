package config

import "sort"

// platform is how a guest runs images of one Docker platform.
type platform struct {
	emulator string   // QEMU's user-mode emulator (binfmt_misc entry qemu-NAME)
	native   []string // guest arches whose kernel runs it without one
}

// platforms are the image platforms docker.platforms may name. 32-bit Arm
// counts as native on aarch64: Debian registers no emulator for it there
// (the CPU runs AArch32 itself, where it has it).
var platforms = map[string]platform{
	"linux/amd64":   {"x86_64", []string{"x86_64"}},
	"linux/386":     {"i386", []string{"x86_64"}},
	"linux/arm64":   {"aarch64", []string{"aarch64"}},
	"linux/arm/v7":  {"arm", []string{"aarch64"}},
	"linux/arm/v6":  {"arm", []string{"aarch64"}},
	"linux/ppc64le": {"ppc64le", nil},
	"linux/s390x":   {"s390x", nil},
	"linux/riscv64": {"riscv64", nil},
}

func knownPlatforms() []string {
	var names []string
	for p := range platforms {
		names = append(names, p)
	}
	sort.Strings(names)
	return names
}

// Emulators are the QEMU user-mode emulators (x86_64, aarch64, ...) the
// guest needs for the platforms in docker.platforms that its own arch does
// not run, sorted and without repeats. Call it after Validate.
func (c *Config) Emulators() []string {
	seen := map[string]bool{}
	var out []string
	for _, name := range c.Docker.Platforms {
		p, ok := platforms[name]
		if !ok || contains(p.native, c.Arch) || seen[p.emulator] {
			continue
		}
		seen[p.emulator] = true
		out = append(out, p.emulator)
	}
	sort.Strings(out)
	return out
}

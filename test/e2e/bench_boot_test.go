//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// bootVariant is one guest CPU devbox may give a guest under tcg.
type bootVariant struct {
	arch, cpuModel, box string
	isDefault           bool
}

// bootFigures are one variant's measurements.
type bootFigures struct {
	bootToSSH        time.Duration // devbox's own "Waiting for SSH" step, first boot
	sha, gzip, execs time.Duration // CPU-bound guest work, guest clock
	v                bootVariant
}

// TestBenchBoot measures, in one run, boot→SSH of a fresh instance and
// three CPU-bound jobs in the guest for each CPU model devbox could pick
// under tcg: for x86_64 qemu64 (QEMU's default) and max, and, when the
// arm64 test box is there (DEVBOX_E2E_BOX_ARM64), for aarch64
// neoverse-n1, max and cortex-a72 (Lima's pick). The default devbox
// renders (vm/libvirt's tcgCPUModel) is marked.
func TestBenchBoot(t *testing.T) {
	benchmark(t)
	variants := []bootVariant{
		{"x86_64", "qemu64", boxPath(t), true},
		{"x86_64", "max", boxPath(t), false},
	}
	if arm := os.Getenv("DEVBOX_E2E_BOX_ARM64"); arm != "" {
		variants = append(variants, bootVariant{"aarch64", "neoverse-n1", arm, true},
			bootVariant{"aarch64", "max", arm, false}, bootVariant{"aarch64", "cortex-a72", arm, false})
	} else {
		t.Log("DEVBOX_E2E_BOX_ARM64 is not set: no aarch64 figures (make bench sets it)")
	}
	home := t.TempDir() // one home: each box is uploaded to the pool once
	var figs []bootFigures
	for _, v := range variants {
		figs = append(figs, measureBoot(t, home, v))
	}

	var table strings.Builder
	fmt.Fprintf(&table, "\n%-26s %12s %12s %12s %12s", "tcg guest CPU", "boot→SSH", "sha256 64M", "gzip 16M", "300 execs")
	for _, f := range figs {
		label := f.v.arch + " " + f.v.cpuModel
		if f.v.isDefault {
			label += " (default)"
		}
		fmt.Fprintf(&table, "\n%-26s %12s %12s %12s %12s", label, f.bootToSSH.Round(100*time.Millisecond),
			f.sha.Round(10*time.Millisecond), f.gzip.Round(10*time.Millisecond), f.execs.Round(10*time.Millisecond))
		metric := strings.ReplaceAll(f.v.arch+"-"+f.v.cpuModel, "_", "")
		figure(t, metric+"-boot-s", f.bootToSSH.Seconds())
		figure(t, metric+"-work-s", f.work().Seconds())
	}
	fig := func(arch, model string) (bootFigures, bool) {
		for _, f := range figs {
			if f.v.arch == arch && (f.v.cpuModel == model || model == "" && f.v.isDefault) {
				return f, true
			}
		}
		return bootFigures{}, false
	}
	x86, _ := fig("x86_64", "")
	if arm, ok := fig("aarch64", ""); ok {
		fmt.Fprintf(&table, "\naarch64/x86_64 boot→SSH (defaults): %.2f", arm.bootToSSH.Seconds()/x86.bootToSSH.Seconds())
		figure(t, "boot-ratio-aarch64-vs-x86_64", arm.bootToSSH.Seconds()/x86.bootToSSH.Seconds())
	}
	// Each other model against its arch's default.
	for _, f := range figs {
		if def, _ := fig(f.v.arch, ""); !f.v.isDefault {
			fmt.Fprintf(&table, "\n%s %s/%s: boot→SSH %.2f, work %.2f", f.v.arch, f.v.cpuModel, def.v.cpuModel,
				f.bootToSSH.Seconds()/def.bootToSSH.Seconds(), f.work().Seconds()/def.work().Seconds())
		}
	}
	t.Log(table.String())
}

func (f bootFigures) work() time.Duration { return f.sha + f.gzip + f.execs }

var sshStepRE = regexp.MustCompile(`✓ Waiting for SSH on \S+ \(([^)]+)\)`)

// measureBoot brings up a fresh instance of v without provisioning, reads
// how long devbox waited for SSH, times the guest jobs, and destroys it.
func measureBoot(t testing.TB, home string, v bootVariant) bootFigures {
	name := "boot-" + map[string]string{"x86_64": "x86", "aarch64": "arm"}[v.arch] + "-" + strings.ToLower(v.cpuModel)
	e := &env{t: t, bin: builtBin, home: home, project: t.TempDir()}
	e.writeConfig(fmt.Sprintf("name: %s\nbox: %s\narch: %s\ncpu_model: %s\ncpus: 2\nmemory: 2GiB\ndisk: 8GiB\nboot_timeout: 15m\nmounts: []\nuser: {name: dev}\n",
		name, v.box, v.arch, v.cpuModel))
	e.cleanup(name)
	r := e.ok(30*time.Minute, "up", "--no-provision")
	m := sshStepRE.FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("%s: no SSH step in up's output:\n%s", name, r)
	}
	boot, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatalf("%s: SSH step duration %q: %v", name, m[1], err)
	}
	f := bootFigures{v: v, bootToSSH: boot}
	f.sha = guestTimed(t, e, 3, "head -c 64M /dev/zero | sha256sum >/dev/null")
	f.gzip = guestTimed(t, e, 3, "head -c 16M /dev/urandom | gzip -6 >/dev/null")
	f.execs = guestTimed(t, e, 3, "i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done")
	e.ok(3*time.Minute, "destroy", "-f")
	return f
}

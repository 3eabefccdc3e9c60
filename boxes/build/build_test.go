package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestParseManifest(t *testing.T) {
	m, err := parseManifest(strings.NewReader(`suite bookworm
arch amd64
engine docker
mirror http://mirror.invalid/debian
archive bookworm Sat,_11_Jul_2026_10:16:37_UTC
package sshfs 3.7.3-1.1 amd64
package docker.io 20.10.24+dfsg1-1+deb12u1+b6 amd64
`), "m")
	if err != nil {
		t.Fatal(err)
	}
	if m.Suite != "bookworm" || m.Arch != "amd64" || m.Engine != "docker" || len(m.Archives) != 1 ||
		m.Packages[0] != "docker.io 20.10.24+dfsg1-1+deb12u1+b6 amd64" || !m.HasPackage("sshfs") || m.HasPackage("docker") {
		t.Errorf("manifest = %+v", m)
	}
	for _, bad := range []string{"", "suite bookworm\n", "suite x\npackage a 1 all\nfrobnicate\n"} {
		if _, err := parseManifest(strings.NewReader(bad), "bad"); err == nil {
			t.Errorf("manifest %q accepted", bad)
		}
	}
}

func TestCheckRefusesBadOptions(t *testing.T) {
	ok := Options{Distro: "debian-12", Arch: "x86_64", Engine: "docker"}
	for _, tc := range []struct {
		edit func(*Options)
		want string
	}{
		{func(o *Options) { o.Distro = "ubuntu-24.04" }, "can build debian-12, debian-13"},
		{func(o *Options) { o.Arch = "riscv64" }, "want x86_64 or aarch64"},
		{func(o *Options) { o.Engine = "podman" }, "want docker or none"},
		{func(o *Options) { o.Mirror = "deb.example/debian" }, "want an http(s)://"},
	} {
		o := ok
		tc.edit(&o)
		if err := o.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", o, err, tc.want)
		}
	}
	if err := ok.Check(); os.Geteuid() != 0 && (err == nil || !strings.Contains(err.Error(), "needs root")) {
		t.Errorf("as a user: %v", err)
	}
}

// TestScriptsParse: the embedded scripts are valid bash.
func TestScriptsParse(t *testing.T) {
	for _, f := range []string{"lib.sh", "debian-amd64.sh", "debian-arm64.sh"} {
		if out, err := exec.Command("bash", "-n", f).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", f, err, out)
		}
	}
}

// TestStampFollowsInputs: the stamp (what decides a rebuild) changes with
// the engine and the mirror, and not between two runs with the same.
func TestStampFollowsInputs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("box build runs on Linux")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("no apt-get: the stamp reads the host's APT sources")
	}
	o := Options{Distro: "debian-12", Arch: "x86_64", Engine: "docker", Mirror: "http://mirror.invalid/debian", Out: filepath.Join(t.TempDir(), "box.qcow2")}
	stamp := func(o Options) string {
		s, err := Stamp(t.Context(), o)
		if err != nil || len(s) != 64 {
			t.Fatalf("Stamp(%+v) = %q, %v", o, s, err)
		}
		return s
	}
	a, b := stamp(o), stamp(o)
	noOut := o
	noOut.Out = ""
	if got := stamp(noOut); got != a {
		t.Errorf("the stamp depends on the output path: %s vs %s", got, a)
	}
	none := o
	none.Engine = "none"
	other := o
	other.Mirror = "http://other.invalid/debian"
	if a != b || a == stamp(none) || a == stamp(other) {
		t.Errorf("stamps: same inputs %s/%s, engine none %s, other mirror %s", a, b, stamp(none), stamp(other))
	}
	if _, err := os.Stat(o.Out); err == nil {
		t.Error("the stamp run wrote the box")
	}
}

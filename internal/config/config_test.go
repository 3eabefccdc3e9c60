package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// parse reads yaml as the devbox.yaml of a real folder named "My Project".
func parse(t *testing.T, yaml string) (*Config, error) {
	t.Helper()
	dir := projectDir(t)
	return Parse(strings.NewReader(yaml), filepath.Join(dir, "devbox.yaml"))
}

func projectDir(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "My Project")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestExampleLoads(t *testing.T) {
	c, err := Load("../../devbox.yaml.example")
	if err != nil {
		t.Fatalf("devbox.yaml.example does not load: %v", err)
	}
	if c.Name != "demo" || c.CPUs != 2 || c.Memory != 2*GiB || c.Disk != 20*GiB || c.BootTimeout != 5*time.Minute || c.Arch != "x86_64" {
		t.Errorf("unexpected values: %+v", c)
	}
	if len(c.Provision) != 2 || c.Provision[1].AsRoot() || !c.Provision[0].AsRoot() {
		t.Errorf("provision steps: %+v", c.Provision)
	}
}

func TestDefaults(t *testing.T) {
	t.Setenv("DEVBOX_ACCEL", "")
	t.Setenv("LIBVIRT_DEFAULT_URI", "qemu+ssh://builder/system")
	c, err := parse(t, "box: images/debian.qcow2\n")
	if err != nil {
		t.Fatal(err)
	}
	dir := c.Dir
	want := map[string][2]any{
		"name":        {c.Name, "my-project"},
		"box":         {c.Box, filepath.Join(dir, "images/debian.qcow2")},
		"cpus":        {c.CPUs, 2},
		"memory":      {c.Memory, 2 * GiB},
		"disk":        {c.Disk, 20 * GiB},
		"accel":       {c.Accel, "auto"},
		"arch":        {c.Arch, HostArch()},
		"libvirt_uri": {c.LibvirtURI, "qemu+ssh://builder/system"},
		"source":      {c.Docker.Source, "auto"},
		"dir":         {filepath.Base(c.Dir), "My Project"},
		"mounts":      {len(c.Mounts), 1},
		"mount":       {c.Mounts[0], Mount{Host: dir, Mode: "rw"}},
		"forwards":    {len(c.Forwards), 0},
	}
	for field, v := range want {
		if v[0] != v[1] {
			t.Errorf("%s = %v, want %v", field, v[0], v[1])
		}
	}
	if c.User.Name == "" {
		t.Error("user.name has no default")
	}
}

func TestAccelFromEnvironment(t *testing.T) {
	t.Setenv("DEVBOX_ACCEL", "tcg")
	c, err := parse(t, "box: x.qcow2\naccel: kvm\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Accel != "tcg" {
		t.Errorf("accel = %q, want DEVBOX_ACCEL's tcg", c.Accel)
	}
	t.Setenv("DEVBOX_ACCEL", "warp")
	if _, err := parse(t, "box: x.qcow2\n"); err == nil || !strings.Contains(err.Error(), "accel") {
		t.Errorf("bad DEVBOX_ACCEL accepted: %v", err)
	}
}

func TestArch(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"x86_64", "x86_64"}, {"aarch64", "aarch64"}, {"amd64", "x86_64"}, {"arm64", "aarch64"},
	} {
		c, err := parse(t, "box: x.qcow2\narch: "+tc.in+"\n")
		if err != nil {
			t.Fatalf("arch %s: %v", tc.in, err)
		}
		if c.Arch != tc.want {
			t.Errorf("arch %s = %q, want %q", tc.in, c.Arch, tc.want)
		}
	}
	_, err := parse(t, "box: x.qcow2\narch: riscv64\n")
	if err == nil || !strings.Contains(err.Error(), `arch: "riscv64" must be x86_64 or aarch64`) {
		t.Errorf("arch riscv64: %v, want an error naming the field and the choices", err)
	}
	if got := HostArch(); runtime.GOARCH == "amd64" && got != "x86_64" || runtime.GOARCH == "arm64" && got != "aarch64" {
		t.Errorf("HostArch() = %q on %s", got, runtime.GOARCH)
	}
}

func TestUnknownFieldIsNamed(t *testing.T) {
	_, err := parse(t, "box: x.qcow2\nmemroy: 2GiB\n")
	if err == nil {
		t.Fatal("misspelt field accepted")
	}
	if !strings.Contains(err.Error(), `unknown field "memroy"`) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error does not name the field and line: %v", err)
	}
}

func TestEveryProblemReportedWithPath(t *testing.T) {
	t.Setenv("DEVBOX_ACCEL", "")
	_, err := parse(t, `
name: Bad_Name
box: https://example.invalid/x.qcow2
cpus: -1
memory: lots
disk: 100MiB
accel: turbo
arch: sparc
boot_timeout: 1s
user: {name: root}
docker: {source: snap}
provision:
  - name: a
    run: sometimes
    script: ""
  - name: a
    script: "true"
`)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{
		"name:", "box_sha256: is required", "cpus:", "memory:", "disk:", "accel:", "arch:", "boot_timeout:",
		"user.name:", "docker.source:", "provision[0].run:", "provision[0].script:", "provision[1].name:",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestBoxRules(t *testing.T) {
	for _, tc := range []struct{ yaml, wantErr string }{
		{"box: ''\n", "box: is required"},
		{"box: ftp://x/y.qcow2\n", "unsupported scheme"},
		{"box: x.qcow2\nbox_sha256: abc\n", "box_sha256"},
		{"box: file:///x.qcow2\n", ""},
		{"box: https://x/y.qcow2\nbox_sha256: sha256:" + strings.Repeat("ab", 32) + "\n", ""},
	} {
		_, err := parse(t, tc.yaml)
		if tc.wantErr == "" && err != nil {
			t.Errorf("%q: %v", tc.yaml, err)
		}
		if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.wantErr)
		}
	}
}

// TestBoxName: a box name stays a name (the catalog resolves it), unless
// a file of that name is in the project folder.
func TestBoxName(t *testing.T) {
	c, err := parse(t, "box: debian-12\n")
	if err != nil || c.Box != "debian-12" || !c.BoxIsName() {
		t.Errorf("box: debian-12 → %q (name %v), %v", c.Box, c != nil && c.BoxIsName(), err)
	}
	if _, err := parse(t, "box: debian-12\nbox_sha256: "+strings.Repeat("ab", 32)+"\n"); err == nil ||
		!strings.Contains(err.Error(), "box_sha256: is for a file or URL box; the catalog pins debian-12's digest") {
		t.Errorf("box_sha256 with a box name: %v", err)
	}
	dir := projectDir(t)
	os.WriteFile(filepath.Join(dir, "debian-12"), []byte("an image"), 0o644)
	c, err = Parse(strings.NewReader("box: debian-12\n"), filepath.Join(dir, "devbox.yaml"))
	if err != nil || c.Box != filepath.Join(dir, "debian-12") {
		t.Errorf("box: debian-12 beside a file of that name → %q, %v; want the file", c.Box, err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"512MiB": 512 * MiB, "2GiB": 2 * GiB, "2G": 2 * GiB, "1024": 1024, "1TiB": TiB, "64KiB": 64 * KiB} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "2 gigs", "-1GiB", "1.5GiB", "iB", "99999999999999TiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
	if s := (1536 * MiB).String(); s != "1536MiB" {
		t.Errorf("String = %s", s)
	}
}

func TestSafeName(t *testing.T) {
	for in, want := range map[string]string{"My Project": "my-project", "--x__y--": "x-y", "": "devbox", "ÄÖ": "devbox", strings.Repeat("a", 50): strings.Repeat("a", 40)} {
		if got := SafeName(in); got != want {
			t.Errorf("SafeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFindWalksUp(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Find(sub); err == nil || !strings.Contains(err.Error(), "hint") {
		t.Errorf("missing config: %v", err)
	}
	want := filepath.Join(root, FileName)
	if err := os.WriteFile(want, []byte("box: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Find(sub)
	if err != nil || got != want {
		t.Errorf("Find = %q, %v; want %q", got, err, want)
	}
}

func TestMountsAndForwards(t *testing.T) {
	c, err := parse(t, "box: x.qcow2\nmounts:\n  - {host: ., mode: ro}\nforwards:\n  - {host: 8080, guest: 80}\n  - {host: 127.0.0.1:8443, guest: 443}\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Mounts) != 1 || c.Mounts[0].Host != c.Dir || !c.Mounts[0].ReadOnly() {
		t.Errorf("mounts = %+v", c.Mounts)
	}
	if c.Forwards[0] != (Forward{Host: "127.0.0.1:8080", Guest: 80, Proto: "tcp"}) || c.Forwards[1].Host != "127.0.0.1:8443" {
		t.Errorf("forwards = %+v", c.Forwards)
	}
	if m, ok := c.MountFor(filepath.Join(c.Dir, "sub", "dir")); !ok || m.Host != c.Dir {
		t.Errorf("MountFor inside = %+v %v", m, ok)
	}
	if _, ok := c.MountFor(c.Dir + "-other"); ok {
		t.Error("MountFor matched a sibling folder with the same prefix")
	}
	// No mounts at all is allowed.
	c, err = parse(t, "box: x.qcow2\nmounts: []\n")
	if err != nil || len(c.Mounts) != 0 {
		t.Errorf("mounts: [] = %+v, %v", c.Mounts, err)
	}
}

func TestMountAndForwardProblems(t *testing.T) {
	dir := projectDir(t)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	yaml := `box: x.qcow2
mounts:
  - {host: /nonexistent/folder}
  - {host: /etc}
  - {host: /}
  - {host: file}
  - {host: ., mode: rx}
  - {host: sub}
forwards:
  - {host: "127.0.0.1:80800", guest: 80}
  - {host: "8080", guest: 0}
  - {host: "8080", guest: 81}
  - {host: "8080", guest: 81, proto: udp}
  - {host: "8081", guest: 81, proto: sctp}
`
	_, err := Parse(strings.NewReader(yaml), filepath.Join(dir, "devbox.yaml"))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"mounts[0].host: /nonexistent/folder does not exist", "mounts[1].host: /etc: is inside the system folder /etc", "mounts[2].host: /: the whole filesystem",
		"mounts[3].host: " + file + " is not a folder", "mounts[4].mode:", "mounts[5].host: " + filepath.Join(dir, "sub") + " overlaps mounts[4]",
		"forwards[0].host:", "forwards[1].guest:", "forwards[2].host: tcp port 8080 is already forwarded by forwards[1]", "forwards[4].proto: \"sctp\": tcp or udp",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// The same port as udp is another forward.
	if strings.Contains(err.Error(), "forwards[3]") {
		t.Errorf("udp 8080 beside tcp 8080 refused:\n%v", err)
	}
}

// A symlink in the project (which the VM can write) is followed before the
// mount is checked: it cannot widen the share to /, the home folder, /tmp
// or a system folder, and a link to an ordinary folder shares that folder
// under its real path.
func TestMountsAreResolvedBeforeTheyAreChecked(t *testing.T) {
	dir := projectDir(t)
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip("no home folder")
	}
	other := t.TempDir()
	for link, target := range map[string]string{"to-root": "/", "to-home": home, "to-tmp": "/tmp", "to-etc": "/etc/ssh", "to-other": other} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	yaml := `box: x.qcow2
mounts:
  - {host: to-root}
  - {host: to-home}
  - {host: to-tmp}
  - {host: to-etc/..}
  - {host: ./to-etc}
`
	_, err = Parse(strings.NewReader(yaml), filepath.Join(dir, "devbox.yaml"))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"mounts[0].host: " + filepath.Join(dir, "to-root") + " (really /): the whole filesystem",
		"mounts[1].host: " + filepath.Join(dir, "to-home") + " (really " + home + "): is your home folder",
		"mounts[2].host: " + filepath.Join(dir, "to-tmp") + " (really /tmp): /tmp cannot be shared as a whole",
		"mounts[3].host: " + dir + "/to-etc/.. (really /etc): is inside the system folder /etc",
		"mounts[4].host: " + dir + "/./to-etc (really /etc/ssh): is inside the system folder /etc",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	c, err := Parse(strings.NewReader("box: x.qcow2\nmounts:\n  - {host: to-other}\n"), filepath.Join(dir, "devbox.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(other)
	if c.Mounts[0].Host != real {
		t.Errorf("mount host = %s, want the resolved %s", c.Mounts[0].Host, real)
	}
	if _, ok := c.MountFor(filepath.Join(real, "sub")); !ok {
		t.Error("MountFor does not match a path inside the resolved folder")
	}
}

func TestDockerPlatforms(t *testing.T) {
	for _, tc := range []struct {
		arch, platforms, want string
	}{
		{"aarch64", "[linux/amd64]", "x86_64"},
		{"aarch64", "[linux/arm64, linux/amd64, linux/386, linux/arm/v7]", "i386 x86_64"},
		{"x86_64", "[linux/amd64, linux/386]", ""},
		{"x86_64", "[linux/arm64, linux/arm/v7, linux/arm/v6]", "aarch64 arm"},
		{"x86_64", "[]", ""},
	} {
		c, err := parse(t, "box: x.qcow2\narch: "+tc.arch+"\ndocker:\n  platforms: "+tc.platforms+"\n")
		if err != nil {
			t.Fatalf("%s %s: %v", tc.arch, tc.platforms, err)
		}
		if got := strings.Join(c.Emulators(), " "); got != tc.want {
			t.Errorf("%s guest, platforms %s: emulators %q, want %q", tc.arch, tc.platforms, got, tc.want)
		}
	}
	_, err := parse(t, "box: x.qcow2\ndocker:\n  platforms: [linux/amd64, windows/amd64]\n")
	if err == nil || !strings.Contains(err.Error(), `docker.platforms[1]: "windows/amd64" is not a platform`) || !strings.Contains(err.Error(), "linux/riscv64") {
		t.Errorf("windows/amd64: %v, want an error naming the entry and the known platforms", err)
	}
}

func TestCPUModel(t *testing.T) {
	for _, m := range []string{"host", "max", "cortex-a72", "Haswell-v4", "qemu64"} {
		c, err := parse(t, "box: x.qcow2\ncpu_model: "+m+"\n")
		if err != nil || c.CPUModel != m {
			t.Errorf("cpu_model %s: %v, %q", m, err, c.CPUModel)
		}
	}
	for _, m := range []string{`"max'/><x"`, `"-cpu"`, `"a b"`} {
		if _, err := parse(t, "box: x.qcow2\ncpu_model: "+m+"\n"); err == nil || !strings.Contains(err.Error(), "cpu_model:") {
			t.Errorf("cpu_model %s: %v, want refused", m, err)
		}
	}
}

func TestHostNames(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want bool
	}{
		{"", true},
		{"host_names: true\n", true},
		{"host_names: false\n", false},
		{"offline: true\n", false}, // an offline VM cannot reach the host
		{"offline: true\nhost_names: true\n", false},
	} {
		c, err := parse(t, "box: x.qcow2\n"+tc.yaml)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.HostNames(); got != tc.want {
			t.Errorf("%q: HostNames() = %v, want %v", tc.yaml, got, tc.want)
		}
	}
}

// ca_certs are read at validation: relative to the project, and nothing
// but CA certificates (devbox.yaml, which the VM can write, names them).
func TestCACertsRefused(t *testing.T) {
	dir := projectDir(t)
	os.WriteFile(filepath.Join(dir, "key.pem"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	_, err := Parse(strings.NewReader("box: x.qcow2\nca_certs: [key.pem, /nonexistent/ca.pem, /dev/zero]\n"), filepath.Join(dir, "devbox.yaml"))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"ca_certs[0]: " + filepath.Join(dir, "key.pem") + " holds a PRIVATE KEY block",
		"ca_certs[1]: /nonexistent/ca.pem",
		"ca_certs[2]: /dev/zero: not a PEM certificate file",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestFileEvents(t *testing.T) {
	c, err := parse(t, "box: x.qcow2\n")
	if err != nil {
		t.Fatal(err)
	}
	if !c.FileEvents.Enabled() || strings.Join(c.FileEvents.Ignore, ",") != ".git,node_modules" {
		t.Errorf("defaults: %+v", c.FileEvents)
	}
	c, err = parse(t, "box: x.qcow2\nfile_events: {enabled: false, ignore: []}\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.FileEvents.Enabled() || len(c.FileEvents.Ignore) != 0 {
		t.Errorf("off, nothing ignored: %+v", c.FileEvents)
	}
	_, err = parse(t, "box: x.qcow2\nfile_events: {ignore: [dist, /etc, ../x, \"\"]}\n")
	for _, want := range []string{"file_events.ignore[1]", "file_events.ignore[2]", "file_events.ignore[3]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "ignore[0]") {
		t.Errorf("a plain name refused: %v", err)
	}
}

// TestValidateChangesNothing: defaults, then a validation that only
// reads, then the parsed forms and resolved paths.
func TestValidateChangesNothing(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	os.Mkdir(real, 0o755)
	os.Symlink(real, filepath.Join(dir, "link"))
	c, err := Parse(strings.NewReader("box: debian-12\nmemory: 1GiB\nboot_timeout: 90s\nmounts:\n  - host: link\n"), filepath.Join(dir, "devbox.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Memory != 1*GiB || c.BootTimeout != 90*time.Second || c.Mounts[0].Host != real {
		t.Errorf("parsed: memory %v, boot_timeout %v, mount %q; want 1GiB, 90s, %q", c.Memory, c.BootTimeout, c.Mounts[0].Host, real)
	}
	unparsed := *c
	unparsed.Memory, unparsed.BootTimeout = 0, 0
	unparsed.Mounts = []Mount{{Host: filepath.Join(dir, "link"), Mode: "rw"}}
	before := fmt.Sprintf("%+v", unparsed)
	if err := unparsed.Validate(); err != nil {
		t.Fatal(err)
	}
	if after := fmt.Sprintf("%+v", unparsed); after != before {
		t.Errorf("Validate changed the config:\n%s\nwas\n%s", after, before)
	}
}

//go:build e2e

// Package e2e drives the built devbox binary against a real libvirtd and
// real QEMU VMs (software emulation), from a test box built from Debian's
// packages (see test/box). Run it with make test-e2e.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/internal/instance"
	"github.com/devbox-vm/devbox/vm"
	"github.com/devbox-vm/devbox/vm/libvirt"
)

// env is one devbox home and project folder, with the binary to run.
type env struct {
	t       testing.TB
	bin     string
	home    string // DEVBOX_HOME
	project string // folder holding devbox.yaml
	name    string // the instance its devbox.yaml names
	extra   []string
	// as, when set, runs devbox as this ordinary host user.
	as *hostUser
	// Ports the proxy test uses: a configured forward to publishPort.
	forwardPort, publishPort int
	// The UDP test's: a configured udp forward to udpGuestPort, which a
	// container publishes.
	udpForwardPort, udpGuestPort int
	mu                           sync.Mutex      // guards watched and destroyed
	watched                      bool            // its end-of-test folder check is registered
	destroyed                    map[string]bool // instances cleanup destroys
}

var builtBin string

// libvirtURI is where the harness checks for, and deletes, leftovers.
const libvirtURI = "qemu:///system"

// destroyTimeout bounds the devbox destroy -f that cleanup runs.
const destroyTimeout = 3 * time.Minute

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "devbox-e2e-bin")
	if err != nil {
		panic(err)
	}
	builtBin = filepath.Join(dir, "devbox")
	build := exec.Command("go", "build", "-o", builtBin, "../../cmd/devbox")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build devbox:", err)
		os.Exit(2)
	}
	contextsBefore = dockerContexts()
	code := m.Run()
	// Before the binary goes: agents are found by its path.
	if left := leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "\nFAIL: this run left %d thing(s) behind:\n", len(left))
		for _, l := range left {
			fmt.Fprintf(os.Stderr, "  - %s\n      remove: %s\n", l.what, l.fix)
		}
		if code == 0 {
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// hostBusybox is the host's static busybox, for FROM-scratch images of
// the host's architecture.
func hostBusybox(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox not found (hint: apt-get install busybox-static)")
	}
	return p
}

// boxPath is the test box; the e2e tests cannot run without one.
func boxPath(t testing.TB) string {
	p := os.Getenv("DEVBOX_E2E_BOX")
	if p == "" {
		t.Fatal("DEVBOX_E2E_BOX is not set (hint: make test-e2e builds the box and sets it)")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("test box: %v (hint: make box)", err)
	}
	return p
}

func newEnv(t *testing.T, config string) *env {
	t.Helper()
	e := &env{t: t, bin: builtBin, home: t.TempDir(), project: t.TempDir()}
	e.watch()
	e.writeConfig(config)
	return e
}

func (e *env) writeConfig(config string) {
	e.t.Helper()
	e.name = configName(config)
	e.watch(e.name)
	if err := os.WriteFile(filepath.Join(e.project, "devbox.yaml"), []byte(config), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s\n--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// run runs devbox with args in the project folder, stdin from in.
func (e *env) run(timeout time.Duration, in io.Reader, args ...string) result {
	e.t.Helper()
	return e.runIn(e.project, timeout, in, args...)
}

// runIn runs devbox with args in dir.
func (e *env) runIn(dir string, timeout time.Duration, in io.Reader, args ...string) result {
	e.t.Helper()
	e.watch()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := e.command(ctx, dir, args...)
	cmd.Stdin = in
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		e.t.Fatalf("devbox %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		e.t.Fatalf("devbox %s: still running after %s\n%s", strings.Join(args, " "), timeout, r)
	}
	e.t.Logf("devbox %s → exit %d in %s", strings.Join(args, " "), r.code, time.Since(start).Round(100*time.Millisecond))
	return r
}

// command is devbox with args in dir, with the env's DEVBOX_HOME, killed
// when ctx ends.
func (e *env) command(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEVBOX_HOME="+e.home, "DEVBOX_ACCEL=tcg")
	if e.as != nil {
		cmd.Env = e.as.environ("DEVBOX_HOME="+e.home, "DEVBOX_ACCEL=tcg")
		cmd.SysProcAttr = e.as.procAttr()
	}
	cmd.Env = append(cmd.Env, e.extra...)
	// A child that kept devbox's output open must not hang the test.
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// ok runs devbox and fails the test unless it exits 0.
func (e *env) ok(timeout time.Duration, args ...string) result {
	e.t.Helper()
	r := e.run(timeout, nil, args...)
	if r.code != 0 {
		e.t.Fatalf("devbox %s failed:\n%s%s", strings.Join(args, " "), r, e.consoleEnd())
	}
	return r
}

// consoleEnd is the last lines of the instance's console log, for a
// failure's message: what the guest was doing when devbox gave up.
func (e *env) consoleEnd() string {
	b, err := os.ReadFile(filepath.Join(e.instanceDir(e.name), filenames.ConsoleLog))
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return "\n--- the console log's last lines\n" + strings.Join(lines, "\n")
}

type status struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	Domain     string `json:"domain"`
	SSHPort    int    `json:"ssh_port"`
	User       string `json:"user"`
	Accel      string `json:"accel"`
	ConsoleLog string `json:"console_log"`
}

func (e *env) status() status {
	e.t.Helper()
	r := e.ok(time.Minute, "status", "--json")
	var s status
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		e.t.Fatalf("status --json: %v\n%s", err, r)
	}
	e.watch(s.Name)
	return s
}

// instanceDir is the instance's folder, as devbox lays it out.
func (e *env) instanceDir(name string) string {
	return instance.Home{State: e.home}.InstanceDir(name)
}

// domain is the instance's libvirt name, as devbox derives it.
func (e *env) domain(name string) string {
	return instance.Home{State: e.home}.DomainName(name)
}

// assertGone checks that libvirt has no domain or volume of the instance
// and that its folder is gone.
func (e *env) assertGone(name string) {
	e.t.Helper()
	e.watch(name)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := libvirt.Connect(ctx, libvirtURI)
	if err != nil {
		e.t.Fatal(err)
	}
	defer d.Close()
	for _, l := range libvirtLeft(ctx, d, e.home, name) {
		e.t.Errorf("%s (remove: %s)", l.what, l.fix)
	}
	if _, err := os.Stat(e.instanceDir(name)); !os.IsNotExist(err) {
		e.t.Errorf("instance folder of %s left on disk (stat: %v)", name, err)
	}
	for _, l := range virtiofsLeft(e.domain(name)) {
		e.t.Errorf("%s left of %s's virtio-fs shares", l, name)
	}
}

// cleanup destroys the instance when the test ends, whatever happened:
// devbox destroy -f in the project folder, and only when that fails or
// leaves the domain or its volumes, a delete through the libvirt driver.
func (e *env) cleanup(name string) {
	e.watch(name)
	e.mu.Lock()
	if e.destroyed == nil {
		e.destroyed = map[string]bool{}
	}
	e.destroyed[name] = true
	e.mu.Unlock()
	e.t.Cleanup(func() { e.destroy(name) })
}

func (e *env) destroy(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), destroyTimeout)
	defer cancel()
	out, err := e.command(ctx, e.project, "destroy", "-f").CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("still running after %s", destroyTimeout)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer dcancel()
	d, cerr := libvirt.Connect(dctx, libvirtURI)
	if cerr != nil {
		e.t.Errorf("cleanup of %s: %v", name, cerr)
		return
	}
	defer d.Close()
	left := libvirtLeft(dctx, d, e.home, name)
	if err == nil && len(left) == 0 {
		return
	}
	dom := e.domain(name)
	if err != nil {
		e.t.Logf("cleanup of %s: devbox destroy -f: %v\n%s", name, err, out)
	}
	e.t.Logf("cleanup of %s: deleting domain %s through the libvirt driver", name, dom)
	if err := d.Delete(dctx, dom); err != nil && !errors.Is(err, vm.ErrNotFound) {
		e.t.Errorf("cleanup of %s: delete domain %s: %v", name, dom, err)
	}
}

// watch records the env's home and the instance names it may hold, for
// the leak check at the end of the run, and on first use registers the
// end-of-test check of its instance folders. It costs no I/O.
func (e *env) watch(names ...string) {
	record(e.home, names...)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.watched {
		return
	}
	e.watched = true
	record(e.home, config.SafeName(filepath.Base(e.project))) // the default name
	// Registered before any cleanup(name) of the env, so it runs after
	// their destroys, and before the testing package removes the home.
	e.t.Cleanup(e.checkFolders)
}

// checkFolders fails the test for every instance folder left in the home,
// and records the instance names found there for the end-of-run check.
func (e *env) checkFolders() {
	dir := instance.Home{State: e.home}.Instances()
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		e.t.Errorf("leak check: %v", err)
		return
	}
	for _, ent := range entries {
		name := strings.TrimSuffix(ent.Name(), ".lock")
		record(e.home, name)
		if !ent.IsDir() {
			continue
		}
		e.mu.Lock()
		destroyed := e.destroyed[name]
		e.mu.Unlock()
		var l leftover
		if destroyed {
			l = leftover{fmt.Sprintf("instance folder %s left by %s: devbox destroy -f in its cleanup did not remove it (see the test's log)", filepath.Join(dir, ent.Name()), e.t.Name()),
				"nothing now (the testing package removes the home); find why destroy failed"}
		} else {
			l = leftover{fmt.Sprintf("instance folder %s left by %s, which never destroys instance %q", filepath.Join(dir, ent.Name()), e.t.Name(), name),
				fmt.Sprintf("call e.cleanup(%q) in %s", name, e.t.Name())}
		}
		e.t.Errorf("%s (hint: %s)", l.what, l.fix)
		leftMu.Lock()
		leftFolders = append(leftFolders, l)
		leftMu.Unlock()
	}
}

// What this run created, for the leak check at its end.
var (
	recordMu sync.Mutex
	// homes maps every DEVBOX_HOME of the run to the instance names seen
	// in it (configs written, cleanup, assertGone, status, instances/).
	homes = map[string]map[string]bool{}

	leftMu      sync.Mutex
	leftFolders []leftover // found by checkFolders, at the end of each test

	contextsBefore map[string]bool // docker contexts before the run
)

func record(home string, names ...string) {
	recordMu.Lock()
	defer recordMu.Unlock()
	if homes[home] == nil {
		homes[home] = map[string]bool{}
	}
	for _, n := range names {
		if n != "" {
			homes[home][n] = true
		}
	}
}

var configNameRE = regexp.MustCompile(`(?m)^name:[ \t]*["']?([^"'\s#]+)`)

// configName is the name: of a devbox.yaml, or "" (the default name is
// recorded apart).
func configName(config string) string {
	if m := configNameRE.FindStringSubmatch(config); m != nil {
		return m[1]
	}
	return ""
}

// leftover is something the run left behind, and how to remove it.
type leftover struct{ what, fix string }

// leftovers lists what this run created and left: instance folders (found
// at each test's end), libvirt domains and volumes of its homes, agent
// processes of its binary, and Docker contexts of its instances.
func leftovers() []leftover {
	leftMu.Lock()
	left := append([]leftover(nil), leftFolders...)
	leftMu.Unlock()

	recordMu.Lock()
	names := map[string]bool{}    // every instance name of the run
	suffixes := map[string]bool{} // "-<6 hex>" of every home
	var pairs [][2]string         // home, name
	for home, ns := range homes {
		suffixes[strings.TrimPrefix(instance.Home{State: home}.DomainName(""), "devbox-")] = true
		for n := range ns {
			names[n] = true
			pairs = append(pairs, [2]string{home, n})
		}
	}
	recordMu.Unlock()
	sort.Slice(pairs, func(i, j int) bool { return pairs[i][0]+pairs[i][1] < pairs[j][0]+pairs[j][1] })

	if len(pairs) > 0 {
		left = append(left, libvirtLeftovers(pairs, suffixes)...)
	}
	left = append(left, agentLeftovers()...)
	left = append(left, contextLeftovers(names)...)
	return left
}

// libvirtLeft lists the domain and volumes of instance name in home that
// libvirt still has.
func libvirtLeft(ctx context.Context, d *libvirt.Driver, home, name string) []leftover {
	dom := instance.Home{State: home}.DomainName(name)
	var left []leftover
	info, err := d.Inspect(ctx, dom)
	switch {
	case err == nil:
		left = append(left, leftover{fmt.Sprintf("libvirt domain %s (%s)", dom, info.State), virshDomainFix(dom)})
	case !errors.Is(err, vm.ErrNotFound):
		left = append(left, leftover{fmt.Sprintf("libvirt domain %s: cannot tell whether it is gone: %v", dom, err), virshDomainFix(dom)})
	}
	vols, err := d.Volumes(dom)
	if err != nil {
		left = append(left, leftover{fmt.Sprintf("volumes of %s: cannot tell whether they are gone: %v", dom, err), virshVolFix(dom + ".qcow2")})
	}
	for _, v := range vols {
		left = append(left, leftover{fmt.Sprintf("libvirt volume %s in pool %s", v, libvirt.PoolName), virshVolFix(v)})
	}
	return left
}

func virshDomainFix(dom string) string {
	return fmt.Sprintf("virsh -c %s destroy %s; virsh -c %s undefine --nvram %s", libvirtURI, dom, libvirtURI, dom)
}

func virshVolFix(vol string) string {
	return fmt.Sprintf("virsh -c %s vol-delete --pool %s %s", libvirtURI, libvirt.PoolName, vol)
}

// libvirtLeftovers checks every recorded instance through the driver and,
// when virsh is installed, also lists every domain and volume to catch
// names the harness never saw (the shared devbox-base-* volumes stay).
func libvirtLeftovers(pairs [][2]string, suffixes map[string]bool) []leftover {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := libvirt.Connect(ctx, libvirtURI)
	if err != nil {
		return []leftover{{fmt.Sprintf("cannot check libvirt for leftover domains and volumes: %v", err), "start libvirtd, then look for devbox-* domains and volumes: virsh list --all; virsh vol-list " + libvirt.PoolName}}
	}
	defer d.Close()
	var left []leftover
	seen := map[string]bool{} // by fix: one per domain or volume
	add := func(l leftover) {
		if !seen[l.fix] {
			seen[l.fix] = true
			left = append(left, l)
		}
	}
	for _, p := range pairs {
		for _, l := range libvirtLeft(ctx, d, p[0], p[1]) {
			add(l)
		}
	}
	if _, err := exec.LookPath("virsh"); err != nil {
		return left
	}
	ours := func(name string) bool {
		for s := range suffixes {
			if strings.HasPrefix(name, "devbox-") && strings.HasSuffix(name, s) {
				return true
			}
		}
		return false
	}
	if out, err := exec.CommandContext(ctx, "virsh", "-c", libvirtURI, "list", "--all", "--name").Output(); err == nil {
		for _, dom := range strings.Fields(string(out)) {
			if ours(dom) {
				add(leftover{fmt.Sprintf("libvirt domain %s, of an instance the harness did not record", dom), virshDomainFix(dom)})
			}
		}
	}
	if out, err := exec.CommandContext(ctx, "virsh", "-c", libvirtURI, "vol-list", libvirt.PoolName).Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			v := f[0]
			disk, isDisk := strings.CutSuffix(v, ".qcow2")
			seed, isSeed := strings.CutSuffix(v, "-seed.iso")
			if (isDisk && ours(disk)) || (isSeed && ours(seed)) {
				add(leftover{fmt.Sprintf("libvirt volume %s in pool %s", v, libvirt.PoolName), virshVolFix(v)})
			}
		}
	}
	return left
}

// agentLeftovers lists the processes running the run's binary as an
// agent. destroy stops an agent and waits for its lock, not for its exit:
// give the last ones a few seconds.
func agentLeftovers() []leftover {
	bins := map[string]bool{builtBin: true}
	if r, err := filepath.EvalSymlinks(builtBin); err == nil {
		bins[r] = true
	}
	var pids []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		pids = agentPIDs(bins)
		if len(pids) == 0 || time.Now().After(deadline) {
			break
		}
	}
	var left []leftover
	for _, pid := range pids {
		cmdline, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		left = append(left, leftover{fmt.Sprintf("agent process %s: %s", pid, strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")), "kill " + pid})
	}
	return left
}

func agentPIDs(bins map[string]bool) []string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []string
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil || len(data) == 0 { // gone, or a zombie
			continue
		}
		argv := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if len(argv) < 2 || !bins[argv[0]] {
			continue
		}
		for _, a := range argv[1:] {
			if a == "agent" {
				pids = append(pids, filepath.Base(filepath.Dir(p)))
				break
			}
		}
	}
	return pids
}

// dockerContexts lists the docker CLI's contexts; nil without a docker CLI.
func dockerContexts() map[string]bool {
	cs, _ := listDockerContexts()
	return cs
}

func listDockerContexts() (map[string]bool, error) {
	if _, err := exec.LookPath("docker"); err != nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "context", "ls", "--format", "{{.Name}}").Output()
	if err != nil {
		return nil, fmt.Errorf("docker context ls: %w", err)
	}
	cs := map[string]bool{}
	for _, n := range strings.Fields(string(out)) {
		cs[n] = true
	}
	return cs, nil
}

// contextLeftovers lists the Docker contexts devbox-<name> of the run's
// instances.
func contextLeftovers(names map[string]bool) []leftover {
	cs, err := listDockerContexts()
	if err != nil {
		return []leftover{{fmt.Sprintf("cannot check for leftover docker contexts: %v", err), "docker context ls; docker context rm -f devbox-NAME"}}
	}
	var left []leftover
	for n := range names {
		c := "devbox-" + n
		if !cs[c] {
			continue
		}
		what := "docker context " + c
		if contextsBefore[c] {
			what += " (it existed before this run too)"
		}
		left = append(left, leftover{what, "docker context rm -f " + c})
	}
	sort.Slice(left, func(i, j int) bool { return left[i].what < left[j].what })
	return left
}

func contains(t testing.TB, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, s)
		}
	}
}

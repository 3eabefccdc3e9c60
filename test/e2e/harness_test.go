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
	"strings"
	"testing"
	"time"

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
	extra   []string
	// Ports the proxy test uses: a configured forward to publishPort.
	forwardPort, publishPort int
}

var builtBin string

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
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
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
	e.writeConfig(config)
	return e
}

func (e *env) writeConfig(config string) {
	e.t.Helper()
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
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEVBOX_HOME="+e.home, "DEVBOX_ACCEL=tcg")
	cmd.Env = append(cmd.Env, e.extra...)
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

// ok runs devbox and fails the test unless it exits 0.
func (e *env) ok(timeout time.Duration, args ...string) result {
	e.t.Helper()
	r := e.run(timeout, nil, args...)
	if r.code != 0 {
		e.t.Fatalf("devbox %s failed:\n%s", strings.Join(args, " "), r)
	}
	return r
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
	return s
}

// domain is the instance's libvirt name, as devbox derives it.
func (e *env) domain(name string) string {
	return instance.Home{State: e.home}.DomainName(name)
}

// assertGone checks that libvirt has no domain or volume of the instance
// and that its folder is gone.
func (e *env) assertGone(name string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := libvirt.Connect(ctx, "qemu:///system")
	if err != nil {
		e.t.Fatal(err)
	}
	defer d.Close()
	dom := e.domain(name)
	if _, err := d.Inspect(ctx, dom); !errors.Is(err, vm.ErrNotFound) {
		e.t.Errorf("domain %s still in libvirt (inspect: %v)", dom, err)
	}
	vols, err := d.Volumes(dom)
	if err != nil || len(vols) > 0 {
		e.t.Errorf("volumes of %s left in the pool: %v %v", dom, vols, err)
	}
	if _, err := os.Stat(filepath.Join(e.home, "instances", name)); !os.IsNotExist(err) {
		e.t.Errorf("instance folder of %s left on disk (stat: %v)", name, err)
	}
}

// cleanup destroys the instance when the test ends, whatever happened.
func (e *env) cleanup(name string) {
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		d, err := libvirt.Connect(ctx, "qemu:///system")
		if err != nil {
			return
		}
		defer d.Close()
		d.Delete(ctx, e.domain(name))
	})
}

func contains(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, s)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/internal/instance"
	"github.com/devbox-vm/devbox/vm"
	"github.com/devbox-vm/devbox/vm/fake"
)

// setup points devbox at a temp home and project and a fake driver.
func setup(t *testing.T, config string) (*fake.Driver, string) {
	t.Helper()
	home, project := t.TempDir(), t.TempDir()
	t.Setenv("DEVBOX_HOME", home)
	t.Setenv("DEVBOX_ACCEL", "")
	if err := os.WriteFile(filepath.Join(project, "devbox.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(project)
	d := fake.New()
	old := connect
	connect = func(ctx context.Context, uri string) (vm.Driver, error) {
		d.Calls = append(d.Calls, "Connect "+uri)
		return d, nil
	}
	t.Cleanup(func() { connect = old })
	return d, home
}

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, nil, &out, &errb)
	return code, out.String(), errb.String()
}

func TestInvalidConfigTouchesNothing(t *testing.T) {
	d, home := setup(t, "name: x\nbox: b.qcow2\ncpus: 0.5\nmemroy: 1GiB\n")
	for _, cmd := range []string{"up", "status", "halt", "destroy", "provision", "ssh"} {
		code, _, errOut := run(t, cmd)
		if code != 1 || !strings.Contains(errOut, "devbox.yaml") {
			t.Errorf("%s: exit %d, %q", cmd, code, errOut)
		}
	}
	if len(d.Calls) != 0 {
		t.Errorf("libvirt was used: %v", d.Calls)
	}
	if entries, _ := os.ReadDir(home); len(entries) != 0 {
		t.Errorf("home not empty: %v", entries)
	}
}

func TestStatusJSONComesFromDriver(t *testing.T) {
	d, home := setup(t, "name: demo\nbox: b.qcow2\nlibvirt_uri: qemu:///session\n")
	code, out, _ := run(t, "status", "--json")
	if code != 0 || !strings.Contains(out, `"state": "not created"`) {
		t.Fatalf("exit %d: %s", code, out)
	}
	dom := instance.Home{State: home}.DomainName("demo")
	d.Instances[dom] = &vm.Info{Name: dom, State: vm.StateRunning, SSHPort: 40022, User: "dev", Accel: "tcg", CPUs: 2, MemoryMiB: 2048}
	code, out, _ = run(t, "status", "--json")
	var got statusReport
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 {
		t.Fatalf("exit %d, %v: %s", code, err, out)
	}
	want := statusReport{Name: "demo", State: "running", Domain: dom, LibvirtURI: "qemu:///session", SSHPort: 40022, User: "dev", Accel: "tcg", CPUs: 2, MemoryMiB: 2048,
		Agent: "not running: never started (devbox up starts it)", DockerHost: "unix://" + filepath.Join(instance.Home{State: home}.InstanceDir("demo"), filenames.DockerSocket)}
	if got != want {
		t.Errorf("status = %+v\nwant %+v", got, want)
	}
	if d.Calls[0] != "Connect qemu:///session" {
		t.Errorf("calls: %v", d.Calls)
	}
}

func TestDestroyNeedsConfirmation(t *testing.T) {
	d, home := setup(t, "name: demo\nbox: b.qcow2\n")
	dom := instance.Home{State: home}.DomainName("demo")
	d.Instances[dom] = &vm.Info{Name: dom, State: vm.StateStopped}
	dir := instance.Home{State: home}.InstanceDir("demo")
	os.MkdirAll(dir, 0o700)

	code, _, errOut := run(t, "destroy")
	if code != 1 || !strings.Contains(errOut, "destroy -f") || d.Instances[dom] == nil {
		t.Fatalf("destroy without -f: exit %d, %q", code, errOut)
	}
	code, _, errOut = run(t, "destroy", "-f")
	if code != 0 || d.Instances[dom] != nil {
		t.Fatalf("destroy -f: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("instance folder left: %v", err)
	}
}

func TestHaltForceAndNotCreated(t *testing.T) {
	d, home := setup(t, "name: demo\nbox: b.qcow2\n")
	code, _, errOut := run(t, "halt")
	if code != 1 || !strings.Contains(errOut, "not created") || !strings.Contains(errOut, "devbox up") {
		t.Errorf("halt of nothing: exit %d, %q", code, errOut)
	}
	dom := instance.Home{State: home}.DomainName("demo")
	d.Instances[dom] = &vm.Info{Name: dom, State: vm.StateRunning}
	code, _, errOut = run(t, "halt", "--force")
	if code != 0 || d.Instances[dom].State != vm.StateStopped {
		t.Fatalf("halt --force: exit %d, %q", code, errOut)
	}
	if !strings.Contains(strings.Join(d.Calls, ","), "Kill "+dom) {
		t.Errorf("calls: %v", d.Calls)
	}
}

func TestSSHNeedsRunningInstance(t *testing.T) {
	d, home := setup(t, "name: demo\nbox: b.qcow2\n")
	dom := instance.Home{State: home}.DomainName("demo")
	d.Instances[dom] = &vm.Info{Name: dom, State: vm.StateStopped}
	code, _, errOut := run(t, "ssh", "--", "true")
	if code != 1 || !strings.Contains(errOut, "is stopped") {
		t.Errorf("ssh to stopped: exit %d, %q", code, errOut)
	}
}

func TestUpFlagsConflict(t *testing.T) {
	setup(t, "name: demo\nbox: b.qcow2\n")
	code, _, errOut := run(t, "up", "--provision", "--no-provision")
	if code != 1 || !strings.Contains(errOut, "cannot be used together") {
		t.Errorf("exit %d, %q", code, errOut)
	}
}

func TestRunPassesFlagsToTheCommand(t *testing.T) {
	d, home := setup(t, "name: demo\nbox: b.qcow2\n")
	dom := instance.Home{State: home}.DomainName("demo")
	d.Instances[dom] = &vm.Info{Name: dom, State: vm.StateStopped}
	for _, args := range [][]string{{"run", "wc", "-l"}, {"run", "--", "sh", "-c", "true"}, {"ssh", "ls", "-la"}, {"docker", "ps", "-a"}} {
		code, _, errOut := run(t, args...)
		// The flags reach the instance (stopped here), not devbox's parser.
		if code != 1 || !strings.Contains(errOut, "is stopped") {
			t.Errorf("%v: exit %d, %q", args, code, errOut)
		}
	}
}

// TestDestroyWithAConfigGoneInvalid: a devbox.yaml that no longer
// validates (its shared folder was deleted) but still names the instance
// lets destroy remove it, with a warning; one whose name is bad does not.
func TestDestroyWithAConfigGoneInvalid(t *testing.T) {
	d, home := setup(t, "name: gone\nbox: b.qcow2\nmounts:\n  - host: ./deleted\n")
	dom := instance.Home{State: home}.DomainName("gone")
	d.Instances[dom] = &vm.Info{Name: dom, State: vm.StateStopped}
	if code, _, errOut := run(t, "up"); code != 1 || !strings.Contains(errOut, "deleted") {
		t.Fatalf("up with the folder gone: exit %d, %q; want it refused, naming the folder", code, errOut)
	}
	code, _, errOut := run(t, "destroy", "-f")
	if code != 0 || !strings.Contains(errOut, "warning") || !strings.Contains(errOut, `still names instance "gone"`) {
		t.Fatalf("destroy: exit %d, %q; want 0 and a warning", code, errOut)
	}
	if _, ok := d.Instances[dom]; ok {
		t.Errorf("instance still defined after destroy: %v", d.Calls)
	}

	d, _ = setup(t, "name: Bad_Name\nbox: b.qcow2\nmounts:\n  - host: ./deleted\n")
	if code, _, errOut := run(t, "destroy", "-f"); code != 1 || !strings.Contains(errOut, "name:") {
		t.Errorf("destroy with a bad name: exit %d, %q; want refused naming the field", code, errOut)
	}
	if len(d.Calls) != 0 {
		t.Errorf("libvirt was used with a bad name: %v", d.Calls)
	}
}

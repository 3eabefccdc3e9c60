package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/sshutil"
)

// shellRunner runs commands with the local sh, with a sudo that just runs
// its command, in a temp folder standing in for the guest.
type shellRunner struct {
	t    *testing.T
	env  []string
	cmds []string
}

func newShellRunner(t *testing.T) *shellRunner {
	bin := t.TempDir()
	sudo := "#!/bin/sh\nwhile [ $# -gt 0 ]; do case $1 in -n|-H) shift;; -u) shift 2;; *) break;; esac; done\nexec \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "sudo"), []byte(sudo), 0o755); err != nil {
		t.Fatal(err)
	}
	return &shellRunner{t: t, env: append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "HOME="+t.TempDir())}
}

func (r *shellRunner) Run(ctx context.Context, cmd sshutil.Cmd) (int, error) {
	line, err := cmd.Line()
	if err != nil {
		return -1, err
	}
	r.cmds = append(r.cmds, line)
	c := exec.CommandContext(ctx, "sh", "-c", line)
	c.Env, c.Stdin, c.Stdout, c.Stderr = r.env, cmd.Stdin, cmd.Stdout, cmd.Stderr
	err = c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

type recorder struct{ events []string }

func (r *recorder) Start(step string) { r.events = append(r.events, "start "+step) }
func (r *recorder) End(step string, skipped bool, _ time.Duration, err error) {
	r.events = append(r.events, fmt.Sprintf("end %s skipped=%v err=%v", step, skipped, err != nil))
}

func withStateDir(t *testing.T) string {
	dir := t.TempDir()
	old := StateDir
	StateDir = dir
	t.Cleanup(func() { StateDir = old })
	return dir
}

func TestRunSkipsDoneStepsAndStamps(t *testing.T) {
	state := withStateDir(t)
	out := filepath.Join(t.TempDir(), "out")
	steps := []Step{
		{Name: "done already", Check: "true", Script: "echo ran >> " + out},
		{Name: "needed", Check: "false", Script: "read x || echo stdin-is-empty >> " + out + "\necho needed >> " + out},
		{Name: "as user", Script: "echo \"user $HOME\" >> " + out, AsUser: true},
	}
	rep := &recorder{}
	var log bytes.Buffer
	if err := Run(context.Background(), newShellRunner(t), steps, rep, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	got, _ := os.ReadFile(out)
	if s := string(got); strings.Contains(s, "ran") || !strings.Contains(s, "stdin-is-empty\nneeded\n") || !strings.Contains(s, "user /") {
		t.Errorf("steps ran wrongly:\n%s", s)
	}
	want := []string{"start done already", "end done already skipped=true err=false", "start needed", "end needed skipped=false err=false", "start as user", "end as user skipped=false err=false"}
	if strings.Join(rep.events, "|") != strings.Join(want, "|") {
		t.Errorf("events = %q", rep.events)
	}
	stamp, err := os.ReadFile(filepath.Join(state, "provisioned"))
	if err != nil || strings.TrimSpace(string(stamp)) != Stamp(steps) {
		t.Errorf("stamp = %q, %v; want %s", stamp, err, Stamp(steps))
	}
	st, err := Check(context.Background(), newShellRunner(t), steps)
	if err != nil || st != Provisioned {
		t.Errorf("Check = %v, %v", st, err)
	}
	st, _ = Check(context.Background(), newShellRunner(t), steps[:1])
	if st != Changed {
		t.Errorf("Check with another plan = %v, want Changed", st)
	}
}

func TestFailingStepStopsWithOutputAndStatus(t *testing.T) {
	state := withStateDir(t)
	steps := []Step{
		{Name: "breaks", Script: "echo working\necho 'E: no such package' >&2\nexit 7"},
		{Name: "never", Script: "touch " + filepath.Join(state, "never")},
	}
	err := Run(context.Background(), newShellRunner(t), steps, &recorder{}, nil)
	var se *StepError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *StepError", err)
	}
	if se.Status != 7 || se.Step != "breaks" || !strings.Contains(se.Tail, "working") || !strings.Contains(se.Tail, "E: no such package") {
		t.Errorf("StepError = %+v", se)
	}
	if !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("message: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "never")); err == nil {
		t.Error("a step after the failure ran")
	}
	if _, err := os.Stat(filepath.Join(state, "provisioned")); err == nil {
		t.Error("stamp written after a failure")
	}
	st, _ := Check(context.Background(), newShellRunner(t), steps)
	if st != NotProvisioned {
		t.Errorf("Check = %v, want NotProvisioned", st)
	}
}

func TestUserStepsOnceAndAlways(t *testing.T) {
	withStateDir(t)
	count := filepath.Join(t.TempDir(), "count")
	steps, err := Plan(Options{User: "dev", DockerSource: "distro", Steps: []UserStep{
		{Name: "once step", Script: "echo once >> " + count, AsRoot: true},
		{Name: "always step", Always: true, Script: "echo always >> " + count},
	}})
	if err != nil {
		t.Fatal(err)
	}
	user := steps[len(steps)-2:]
	r := newShellRunner(t)
	for i := 0; i < 2; i++ {
		if err := Run(context.Background(), r, user, &recorder{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(count)
	if string(got) != "once\nalways\nalways\n" {
		t.Errorf("runs = %q", got)
	}
	// A changed script is a new step: it runs again.
	changed, _ := Plan(Options{User: "dev", DockerSource: "distro", Steps: []UserStep{{Name: "once step", Script: "echo twice >> " + count, AsRoot: true}}})
	if err := Run(context.Background(), r, changed[len(changed)-1:], &recorder{}, nil); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(count)
	if !strings.HasSuffix(string(got), "twice\n") {
		t.Errorf("changed once-step did not run: %q", got)
	}
}

func TestPlanOrderAndEngineSource(t *testing.T) {
	steps, err := Plan(Options{User: "dev", DockerSource: "distro"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range steps {
		names = append(names, s.Name)
	}
	want := "Waiting for cloud-init to finish|Creating docker-group user dev|Installing Docker engine|Checking docker as dev"
	if strings.Join(names, "|") != want {
		t.Errorf("plan = %q", names)
	}
	if !strings.HasPrefix(steps[2].Script, "source=distro\n") {
		t.Error("docker source not passed to the install script")
	}
	other, _ := Plan(Options{User: "dev", DockerSource: "docker"})
	if Stamp(other) == Stamp(steps) {
		t.Error("stamp does not change with the plan")
	}
}

func TestSSHFSStepPausesInitramfsAndRestoresIt(t *testing.T) {
	steps, _ := Plan(Options{User: "dev", DockerSource: "distro", SharedFolders: true})
	sshfs := steps[len(steps)-1]
	if !strings.Contains(sshfs.Name, "sshfs") {
		t.Fatalf("last step = %q", sshfs.Name)
	}
	// Run it against a fake conf and a fake apt-get: the conf must say
	// "no" while apt runs and "yes" again afterwards.
	dir := t.TempDir()
	conf := filepath.Join(dir, "update-initramfs.conf")
	os.WriteFile(conf, []byte("update_initramfs=yes\nbackup_initramfs=no\n"), 0o644)
	seen := filepath.Join(dir, "seen")
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, "apt-get"), []byte("#!/bin/sh\ncat "+conf+" > "+seen+"\n"), 0o755)
	script := strings.ReplaceAll(sshfs.Script, "/etc/initramfs-tools/update-initramfs.conf", conf)
	r := newShellRunner(t)
	r.env = append(r.env, "PATH="+bin+":"+os.Getenv("PATH"))
	if code, err := r.Run(context.Background(), sshutil.Cmd{Args: []string{"bash", "-e"}, Stdin: strings.NewReader(script)}); code != 0 || err != nil {
		t.Fatalf("exit %d, %v", code, err)
	}
	during, _ := os.ReadFile(seen)
	after, _ := os.ReadFile(conf)
	if !strings.HasPrefix(string(during), "update_initramfs=no\n") || string(after) != "update_initramfs=yes\nbackup_initramfs=no\n" {
		t.Errorf("during apt: %q; after: %q", during, after)
	}
	without, _ := Plan(Options{User: "dev", DockerSource: "distro"})
	if len(without) != len(steps)-1 {
		t.Error("sshfs installed without shared folders")
	}
}

func TestEmulatorStepRegistersAndChecksTheFFlag(t *testing.T) {
	steps, _ := Plan(Options{User: "dev", DockerSource: "distro", Emulators: []string{"x86_64"}})
	emu := steps[len(steps)-1]
	if !strings.Contains(emu.Name, "x86_64") {
		t.Fatalf("last step = %q", emu.Name)
	}
	without, _ := Plan(Options{User: "dev", DockerSource: "distro"})
	if len(without) != len(steps)-1 || Stamp(without) == Stamp(steps) {
		t.Error("the emulator step is planned without emulators, or does not change the stamp")
	}

	binfmt := t.TempDir()
	old := BinfmtDir
	t.Cleanup(func() { BinfmtDir = old })
	BinfmtDir = binfmt
	steps, _ = Plan(Options{User: "dev", DockerSource: "distro", Emulators: []string{"x86_64"}})
	emu = steps[len(steps)-1]

	// A fake apt-get and systemctl: systemd-binfmt "registers" what the
	// test puts in entry, as the kernel would show it.
	bin := t.TempDir()
	entry := filepath.Join(t.TempDir(), "entry")
	os.WriteFile(filepath.Join(bin, "apt-get"), []byte("#!/bin/sh\ntouch "+bin+"/apt-ran\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "dpkg-query"), []byte("#!/bin/sh\nexit 1\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "systemctl"), []byte("#!/bin/sh\ncp "+entry+" "+binfmt+"/qemu-x86_64\n"), 0o755)
	r := newShellRunner(t)
	r.env = append(r.env, "PATH="+bin+":"+os.Getenv("PATH"))
	run := func(script string) (int, string) {
		var out bytes.Buffer
		code, err := r.Run(context.Background(), sshutil.Cmd{Args: []string{"bash", "-e"}, Stdin: strings.NewReader(script), Stdout: &out, Stderr: &out})
		if err != nil {
			t.Fatal(err)
		}
		return code, out.String()
	}
	if code, _ := run(emu.Check); code == 0 {
		t.Error("check passes with nothing registered")
	}
	// Registered without F: containers could not use it; the step says so.
	os.WriteFile(entry, []byte("enabled\ninterpreter /usr/libexec/qemu-binfmt/x86_64-binfmt-P\nflags: OP\n"), 0o644)
	if code, out := run(emu.Script); code == 0 || !strings.Contains(out, "without the F flag") {
		t.Errorf("no F flag: exit %d, %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(bin, "apt-ran")); err != nil {
		t.Error("qemu-user-static was not installed")
	}
	if code, _ := run(emu.Check); code == 0 {
		t.Error("check passes without the F flag")
	}
	os.WriteFile(entry, []byte("enabled\ninterpreter /usr/libexec/qemu-binfmt/x86_64-binfmt-P\nflags: OPF\n"), 0o644)
	if code, out := run(emu.Script); code != 0 || !strings.Contains(out, "qemu-x86_64: registered") {
		t.Errorf("registered with F: exit %d, %q", code, out)
	}
	if code, _ := run(emu.Check); code != 0 {
		t.Error("check fails on a registered emulator")
	}
}

// TestGateWaitsOnlyForWork: the gate (waiting for cloud-init) runs just
// before the first step that needs it and has work, once; a guest where
// every such step is done never waits at it.
func TestGateWaitsOnlyForWork(t *testing.T) {
	withStateDir(t)
	out := filepath.Join(t.TempDir(), "out")
	gate := Step{Name: "gate", Gate: true, Check: "false", Script: "echo gate >> " + out}
	ungated := Step{Name: "user", Check: "false", Script: "echo user >> " + out}
	doneGated := Step{Name: "engine", NeedsGate: true, Check: "true", Script: "echo engine >> " + out}
	workGated := Step{Name: "sshfs", NeedsGate: true, Check: "false", Script: "echo sshfs >> " + out}
	laterGated := Step{Name: "mine", NeedsGate: true, Script: "echo mine >> " + out}
	for _, tc := range []struct {
		name   string
		steps  []Step
		ran    string
		events string
	}{
		{"nothing to install", []Step{gate, ungated, doneGated}, "user\n",
			"start user|end user skipped=false err=false|start engine|end engine skipped=true err=false"},
		{"work after a done step", []Step{gate, ungated, doneGated, workGated, laterGated}, "user\ngate\nsshfs\nmine\n",
			"start user|end user skipped=false err=false|start engine|end engine skipped=true err=false|" +
				"start gate|end gate skipped=false err=false|start sshfs|end sshfs skipped=false err=false|start mine|end mine skipped=false err=false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(out)
			rep := &recorder{}
			if err := Run(context.Background(), newShellRunner(t), tc.steps, rep, nil); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(out)
			if string(got) != tc.ran {
				t.Errorf("ran %q, want %q", got, tc.ran)
			}
			if ev := strings.Join(rep.events, "|"); ev != tc.events {
				t.Errorf("events:\n%s\nwant:\n%s", ev, tc.events)
			}
		})
	}
}

// TestEngineCheckTakesAStartingDaemon: a baked engine whose daemon is
// still starting (first boot under emulation) counts as installed; a
// failed or stopped one does not (the install script starts it).
func TestEngineCheckTakesAStartingDaemon(t *testing.T) {
	steps, err := Plan(Options{User: "dev", DockerSource: "distro"})
	if err != nil {
		t.Fatal(err)
	}
	var check string
	for _, s := range steps {
		if s.Name == "Installing Docker engine" {
			check = s.Check
		}
	}
	for state, want := range map[string]int{"active": 0, "activating": 0, "failed": 1, "inactive": 1} {
		r := newShellRunner(t)
		bin := t.TempDir()
		os.WriteFile(filepath.Join(bin, "dockerd"), []byte("#!/bin/sh\n"), 0o755)
		os.WriteFile(filepath.Join(bin, "systemctl"), []byte(fmt.Sprintf(
			"#!/bin/sh\ncase $1 in is-enabled) exit 0;; is-active) echo %s; [ %s = active ];; esac\n", state, state)), 0o755)
		for i, e := range r.env {
			if strings.HasPrefix(e, "PATH=") {
				r.env[i] = "PATH=" + bin + ":" + strings.TrimPrefix(e, "PATH=")
			}
		}
		code, err := r.Run(context.Background(), sshutil.Cmd{Script: check})
		if err != nil || (code == 0) != (want == 0) {
			t.Errorf("docker %s: check exit %d (%v), want %d", state, code, err, want)
		}
	}
}

// TestScriptsParse: every step's script and check, as sent to the guest,
// is valid bash (the embedded files with their variables set).
func TestScriptsParse(t *testing.T) {
	steps, err := Plan(Options{User: "o'brien", DockerSource: "distro", SharedFolders: true, Emulators: []string{"aarch64", "x86_64"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		for what, text := range map[string]string{"script": s.Script, "check": s.Check} {
			if out, err := exec.Command("bash", "-n", "-c", text).CombinedOutput(); err != nil {
				t.Errorf("%s of %q does not parse: %v\n%s", what, s.Name, err, out)
			}
		}
	}
	if !strings.Contains(steps[1].Script, `user='o'\''brien'`) {
		t.Errorf("the user is not set, quoted, before the script:\n%s", steps[1].Script)
	}
}

// Package provision runs ordered, idempotent provisioning steps in a guest
// through a small Runner (in practice an SSH connection). It knows nothing
// of libvirt or SSH.
package provision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/devbox-vm/devbox/internal/shell"
	"github.com/devbox-vm/devbox/sshutil"
)

// Runner runs a command in the guest and returns its exit status; err is
// for transport failures only (sshutil.Client does).
type Runner interface {
	Run(ctx context.Context, cmd sshutil.Cmd) (int, error)
}

// StateDir holds devbox's markers inside the guest (a variable for tests).
var StateDir = "/var/lib/devbox"

// BinfmtDir is where the guest's kernel lists binfmt_misc entries (a
// variable for tests).
var BinfmtDir = "/proc/sys/fs/binfmt_misc"

// stampFile records the plan a guest was last fully provisioned with.
func stampFile() string { return StateDir + "/provisioned" }

// Step is one provisioning step.
type Step struct {
	Name string
	// Check is a shell command that exits 0 when the step is already done;
	// empty means the step always runs.
	Check string
	// Script is a bash script; it runs as root unless AsUser is set.
	Script string
	AsUser bool
	// Marker, when set, is a file written after success; its presence
	// makes Check pass on later runs (for the user's run-once steps).
	Marker string
	// Gate marks a step that only waits (for cloud-init to finish): Run
	// runs it just before the first later NeedsGate step that has work
	// to do, and not at all when none has.
	Gate bool
	// NeedsGate: the step's script must not run before the gate (it
	// installs packages, or is the user's).
	NeedsGate bool
}

// UserStep is one of the user's own steps from devbox.yaml.
type UserStep struct {
	Name   string
	Always bool // run on every provisioning pass, not only once
	Script string
	AsRoot bool
}

// Options describe the guest to provision.
type Options struct {
	User          string // the docker-group user
	DockerSource  string // auto, docker or distro
	SharedFolders bool   // install sshfs for reverse-SSHFS mounts
	// Emulators are QEMU user-mode emulators (x86_64, aarch64, ...) to
	// register with binfmt_misc, so images of those platforms run.
	Emulators []string
	Steps     []UserStep
}

// Plan is the ordered list of steps for opts.
func Plan(opts Options) ([]Step, error) {
	u := shell.Quote(opts.User)
	steps := []Step{
		{
			Name: "Waiting for cloud-init to finish",
			Gate: true,
			// result.json is written in /run when cloud-init ends this boot.
			Check:  "test -e /run/cloud-init/result.json || ! command -v cloud-init >/dev/null",
			Script: script("cloud-init-wait.sh"),
		},
		{
			Name:   "Creating docker-group user " + opts.User,
			Check:  "id -nG " + u + " | tr ' ' '\\n' | grep -qx docker",
			Script: script("docker-user.sh", "user", opts.User),
		},
		{
			Name: "Installing Docker engine",
			// Installed and enabled, and running or on its way (on a first
			// boot under emulation the daemon is still starting when we get
			// here; the next step waits for it).
			Check:     "command -v dockerd >/dev/null && systemctl is-enabled -q docker && case $(systemctl is-active docker) in active|activating|reloading) ;; *) exit 1;; esac",
			Script:    script("install-docker.sh", "source", opts.DockerSource),
			NeedsGate: true,
		},
		{
			Name: "Checking docker as " + opts.User,
			// The daemon may still be starting: wait for it, bounded.
			Script: script("docker-works.sh", "user", opts.User),
		},
	}
	if opts.SharedFolders {
		steps = append(steps, Step{
			Name:      "Installing sshfs for shared folders",
			Check:     "command -v sshfs >/dev/null",
			Script:    script("apt.sh") + script("sshfs.sh"),
			NeedsGate: true,
		})
	}
	if len(opts.Emulators) > 0 {
		steps = append(steps, emulatorStep(opts.Emulators))
	}
	for _, s := range opts.Steps {
		st := Step{Name: s.Name, Script: s.Script, AsUser: !s.AsRoot, NeedsGate: true}
		if !s.Always {
			st.Marker = fmt.Sprintf("%s/steps/%s.%s", StateDir, markerName(s.Name), shortHash(s.Script))
			st.Check = "test -e " + shell.Quote(st.Marker)
		}
		steps = append(steps, st)
	}
	return steps, nil
}

// emulatorStep installs Debian's qemu-user-static and has systemd-binfmt
// register its emulators. Their entries carry the F flag (the kernel opens
// the emulator at registration), which is what lets a container, whose
// root has no /usr/bin/qemu-*, run a foreign binary.
func emulatorStep(names []string) Step {
	var quoted []string
	for _, n := range names {
		quoted = append(quoted, shell.Quote(n))
	}
	list := strings.Join(quoted, " ")
	check := "for n in " + list + "; do f=" + BinfmtDir + "/qemu-$n; " +
		"grep -qx enabled \"$f\" && grep -q '^flags: .*F' \"$f\" || exit 1; done"
	return Step{
		Name:      "Registering emulators for foreign images (" + strings.Join(names, ", ") + ")",
		NeedsGate: true,
		Check:     check,
		Script:    script("apt.sh") + script("emulators.sh", "names", strings.Join(names, " "), "binfmt_dir", BinfmtDir),
	}
}

//go:embed scripts/*.sh
var scripts embed.FS

// script is the embedded guest script name, after lines that set the
// shell variables vars (name, value, name, value...) it reads.
func script(name string, vars ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(vars); i += 2 {
		fmt.Fprintf(&b, "%s=%s\n", vars[i], shell.Quote(vars[i+1]))
	}
	data, err := scripts.ReadFile("scripts/" + name)
	if err != nil {
		panic(err) // a name that is not embedded: a bug the tests catch
	}
	b.Write(data)
	return b.String()
}

// Stamp identifies a plan: a guest stamped with it needs no provisioning.
func Stamp(steps []Step) string {
	h := sha256.New()
	for _, s := range steps {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%v\x00%s\x00%v\x00%v\x00", s.Name, s.Check, s.Script, s.AsUser, s.Marker, s.Gate, s.NeedsGate)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Status is what Provisioned finds in the guest.
type Status int

// Provisioning states of a guest.
const (
	NotProvisioned Status = iota // never finished a provisioning pass
	Provisioned                  // finished one with this plan
	Changed                      // finished one with another plan
)

// Check reads the guest's stamp and compares it with the plan's.
func Check(ctx context.Context, r Runner, steps []Step) (Status, error) {
	var out bytes.Buffer
	code, err := r.Run(ctx, sshutil.Cmd{Args: []string{"cat", stampFile()}, Stdout: &out})
	if err != nil {
		return NotProvisioned, fmt.Errorf("read provisioning stamp: %w", err)
	}
	got := strings.TrimSpace(out.String())
	switch {
	case code != 0 || got == "":
		return NotProvisioned, nil
	case got == Stamp(steps):
		return Provisioned, nil
	}
	return Changed, nil
}

// Reporter is told when each step starts and ends.
type Reporter interface {
	Start(step string)
	End(step string, skipped bool, took time.Duration, err error)
}

// StepError is a step that failed in the guest.
type StepError struct {
	Step   string
	Status int
	Tail   string // the last lines of its output
}

func (e *StepError) Error() string {
	return fmt.Sprintf("provision step %q failed with exit status %d:\n%s", e.Step, e.Status, indentLines(e.Tail, "    "))
}

// Run runs the steps in order, skipping those whose Check passes, and
// stamps the guest when all succeed. Each step's output goes to log.
// It stops at the first failing step, whose error is a *StepError.
// A Gate step waits until a later NeedsGate step has work to do: a guest
// that needs nothing installed (a box with the engine baked in) does not
// wait for cloud-init's last stages.
func Run(ctx context.Context, r Runner, steps []Step, rep Reporter, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	var gate *Step // a gate not passed yet
	for _, s := range steps {
		if s.Gate {
			gate = &s
			continue
		}
		if s.NeedsGate && gate != nil {
			// Is there work? Only then wait at the gate, as its own step.
			done, err := checkStep(ctx, r, s, log)
			if err != nil || done {
				rep.Start(s.Name)
				rep.End(s.Name, done, 0, err)
				if err != nil {
					return err
				}
				continue
			}
			if err := runStep(ctx, r, *gate, rep, log); err != nil {
				return err
			}
			gate = nil
			rep.Start(s.Name)
			start := time.Now()
			err = execStep(ctx, r, s, log)
			rep.End(s.Name, false, time.Since(start), err)
			if err != nil {
				return err
			}
			continue
		}
		if err := runStep(ctx, r, s, rep, log); err != nil {
			return err
		}
	}
	stamp := "mkdir -p " + StateDir + " && echo " + Stamp(steps) + " > " + stampFile()
	if code, err := r.Run(ctx, sshutil.Cmd{Script: stamp, Root: true}); err != nil || code != 0 {
		return fmt.Errorf("write provisioning stamp (exit %d): %v", code, err)
	}
	return nil
}

// runStep runs s (unless its check passes) as a reported step.
func runStep(ctx context.Context, r Runner, s Step, rep Reporter, log io.Writer) error {
	rep.Start(s.Name)
	start := time.Now()
	done, err := checkStep(ctx, r, s, log)
	if err == nil && !done {
		err = execStep(ctx, r, s, log)
	}
	rep.End(s.Name, done, time.Since(start), err)
	return err
}

// checkStep runs s's Check: whether s is done already.
func checkStep(ctx context.Context, r Runner, s Step, log io.Writer) (done bool, err error) {
	fmt.Fprintf(log, "==> %s (%s)\n", s.Name, time.Now().Format(time.RFC3339))
	if s.Check == "" {
		return false, nil
	}
	code, err := r.Run(ctx, sshutil.Cmd{Script: s.Check, Root: true, Stdout: log, Stderr: log})
	if err != nil {
		return false, fmt.Errorf("provision step %q: check: %w", s.Name, err)
	}
	if code == 0 {
		fmt.Fprintln(log, "already done")
		return true, nil
	}
	return false, nil
}

// execStep runs s's script, then writes its marker.
func execStep(ctx context.Context, r Runner, s Step, log io.Writer) error {
	// The script travels on stdin into a temp file and runs with stdin
	// from /dev/null, so nothing in it can swallow the rest of the script.
	var out tail
	w := io.MultiWriter(log, &out)
	code, err := r.Run(ctx, stepCommand(s.AsUser, s.Script, w))
	if err != nil {
		return fmt.Errorf("provision step %q: %w", s.Name, err)
	}
	if code != 0 {
		return &StepError{Step: s.Name, Status: code, Tail: out.String()}
	}
	if s.Marker != "" {
		mark := "mkdir -p \"$(dirname " + shell.Quote(s.Marker) + ")\" && touch " + shell.Quote(s.Marker)
		if code, err := r.Run(ctx, sshutil.Cmd{Script: mark, Root: true, Stdout: log, Stderr: log}); err != nil || code != 0 {
			return fmt.Errorf("provision step %q: write marker %s (exit %d): %v", s.Name, s.Marker, code, err)
		}
	}
	return nil
}

// stepCommand runs a step's script with bash -e, as root unless asUser
// (see run-step.sh), its output to out.
func stepCommand(asUser bool, body string, out io.Writer) sshutil.Cmd {
	as := "root"
	if asUser {
		as = "user"
	}
	return sshutil.Cmd{Script: script("run-step.sh"), Args: []string{as}, Stdin: strings.NewReader(body), Stdout: out, Stderr: out}
}

var unsafeRE = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func markerName(name string) string { return unsafeRE.ReplaceAllString(name, "_") }

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])[:12]
}

func indentLines(s, pad string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = pad + lines[i]
	}
	return strings.Join(lines, "\n")
}

// tail keeps the last lines written to it.
type tail struct {
	lines   []string
	partial string
}

const tailLines = 25

func (t *tail) Write(p []byte) (int, error) {
	parts := strings.Split(t.partial+string(p), "\n")
	t.partial = parts[len(parts)-1]
	t.lines = append(t.lines, parts[:len(parts)-1]...)
	if len(t.lines) > tailLines {
		t.lines = t.lines[len(t.lines)-tailLines:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	out := strings.Join(t.lines, "\n")
	if t.partial != "" {
		out += "\n" + t.partial
	}
	if strings.TrimSpace(out) == "" {
		return "(no output)"
	}
	return out
}

//go:build linux

package agent

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/sshutil"
)

// TestWaitMount runs the guest's wait loop here, through the command line
// the guest is given: a mount point passes at once and runs the command
// in its folder; a plain folder fails after its time with the message
// and exit 125, and the command never runs.
func TestWaitMount(t *testing.T) {
	if _, err := exec.LookPath("mountpoint"); err != nil {
		t.Skip("no mountpoint command")
	}
	run := func(c sshutil.Cmd) (string, error) {
		line, err := c.Line()
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("sh", "-c", line).CombinedOutput()
		return string(out), err
	}
	if out, err := run(WaitMount("/proc", 1, "", "")); err != nil {
		t.Errorf("/proc is a mount point: %v %s", err, out)
	}
	if out, err := run(WaitMount("/proc", 1, "", "/proc/self", "sh", "-c", `pwd; echo "$1"`, "sh", "it's an arg")); err != nil || out != "/proc/self\nit's an arg\n" {
		t.Errorf("the command after the wait: %v %q", err, out)
	}
	dir := t.TempDir()
	out, err := run(WaitMount(dir, 2, "devbox: "+dir+" is not mounted", dir, "echo", "ran"))
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 125 || strings.Contains(out, "ran") || !strings.Contains(out, dir+" is not mounted") {
		t.Errorf("a plain folder: %v %q; want exit 125 with the message and no command", err, out)
	}
}

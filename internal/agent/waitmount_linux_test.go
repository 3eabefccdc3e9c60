//go:build linux

package agent

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWaitMount runs the guest's wait loop here: a mount point passes at
// once, a plain folder fails after its time with the message.
func TestWaitMount(t *testing.T) {
	if _, err := exec.LookPath("mountpoint"); err != nil {
		t.Skip("no mountpoint command")
	}
	if out, err := exec.Command("sh", "-c", WaitMount("/proc", 1, "")).CombinedOutput(); err != nil {
		t.Errorf("/proc is a mount point: %v %s", err, out)
	}
	dir := t.TempDir()
	out, err := exec.Command("sh", "-c", WaitMount(dir, 2, "devbox: "+dir+" is not mounted")+" || exit 125\necho ran").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 125 || strings.Contains(string(out), "ran") || !strings.Contains(string(out), dir+" is not mounted") {
		t.Errorf("a plain folder: %v %q; want exit 125 with the message and no command", err, out)
	}
}

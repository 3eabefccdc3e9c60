//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/boxes"
	"github.com/devbox-vm/devbox/internal/seed"
	"github.com/devbox-vm/devbox/sshutil"
)

// TestBenchBakedBox measures, in one run, the box devbox box build makes
// with the engine baked in (DEVBOX_E2E_BOX_BAKED), by hand and through
// devbox. By hand: QEMU started directly on an overlay of the box with a
// cloud-init seed, the time to the SSH banner on first boot, an ACPI
// shutdown (system_powerdown), and the second boot to the banner. Through
// devbox: cold up to Docker ready (the box's base not yet in the pool),
// halt, warm up, destroy of the running instance. TestBenchDevbox's cold
// up (same run) is the plain box with the engine installed at first boot.
func TestBenchBakedBox(t *testing.T) {
	benchmark(t)
	box := os.Getenv("DEVBOX_E2E_BOX_BAKED")
	if box == "" {
		t.Skip("DEVBOX_E2E_BOX_BAKED is not set (make bench sets it)")
	}
	hand := bootByHand(t, box)

	e := &env{t: t, bin: builtBin, home: t.TempDir(), project: t.TempDir()}
	e.writeConfig(fmt.Sprintf("name: bakedbench\nbox: %s\ncpus: 2\nmemory: 2GiB\ndisk: 8GiB\nmounts: []\nuser: {name: dev}\n", box))
	e.cleanup("bakedbench")
	removeBase(t, e, box)
	var up result
	cold := timed(func() { up = e.ok(20*time.Minute, "up") })
	t.Logf("cold up's steps:\n%s", up.stderr)
	// The same boot's boot→SSH, as devbox waited for it: what devbox adds
	// to the boot itself, free of the noise between two boots.
	m := sshStepRE.FindStringSubmatch(up.stderr)
	if m == nil {
		t.Fatalf("no SSH step in up's output:\n%s", up.stderr)
	}
	bootSSH, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatal(err)
	}
	halt := timed(func() { e.ok(5*time.Minute, "halt") })
	warm := timed(func() { e.ok(10*time.Minute, "up") })
	destroy := timed(func() { e.ok(3*time.Minute, "destroy", "-f") })
	e.assertGone("bakedbench")

	figure(t, "hand-boot-s", hand.first.Seconds())
	figure(t, "baked-cold-up-over-own-boot-s", (cold - bootSSH).Seconds())
	figure(t, "baked-cold-up-s", cold.Seconds())
	figure(t, "baked-cold-up-over-hand-boot-s", (cold - hand.first).Seconds())
	figure(t, "warm-up-over-hand-second-boot-s", (warm - hand.second).Seconds())
	figure(t, "baked-halt-s", halt.Seconds())
	figure(t, "destroy-running-s", destroy.Seconds())
	row := func(what string, d time.Duration) string {
		return fmt.Sprintf("\n%-52s %10s", what, d.Round(100*time.Millisecond))
	}
	t.Log(row("by hand: QEMU start to SSH banner, first boot", hand.first) +
		row("devbox cold up to Docker ready (base not in pool)", cold) +
		fmt.Sprintf("\n%-52s %+10.1fs (target ≤ +10 s)", "  cold up − hand first boot", (cold-hand.first).Seconds()) +
		row("  of which the same boot's boot→SSH", bootSSH) +
		fmt.Sprintf("\n%-52s %+10.1fs", "  cold up − its own boot→SSH (devbox's part)", (cold-bootSSH).Seconds()) +
		row("by hand: ACPI shutdown (system_powerdown to exit)", hand.shutdown) +
		row("devbox halt", halt) +
		row("by hand: second boot to SSH banner", hand.second) +
		row("devbox warm up of the halted instance", warm) +
		fmt.Sprintf("\n%-52s %+10.1fs (target ≤ +3 s)", "  warm up − hand second boot", (warm-hand.second).Seconds()) +
		row("devbox destroy -f of the running instance", destroy))
}

// removeBase removes box's base volume from the pool (left by an earlier
// test or run), so up measures a cold start.
func removeBase(t testing.TB, e *env, box string) {
	sum, err := boxes.HashFile(context.Background(), box)
	if err != nil {
		t.Fatal(err)
	}
	sha := sum[:16]
	if r := e.run(time.Minute, nil, "box", "remove", sha); r.code != 0 && !strings.Contains(r.stderr, "no such box") {
		t.Fatalf("remove the base of %s: %s", box, r)
	}
}

type handFigures struct{ first, shutdown, second time.Duration }

// bootByHand boots box with QEMU directly (tcg, the CPU, memory, disk and
// devices devbox gives it) on an overlay with a cloud-init seed: first
// boot to the SSH banner, ACPI shutdown, second boot to the banner.
func bootByHand(t testing.TB, box string) handFigures {
	dir := t.TempDir()
	overlay, iso, mon := filepath.Join(dir, "disk.qcow2"), filepath.Join(dir, "seed.iso"), filepath.Join(dir, "monitor")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", box, overlay, "8G").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	userKey, err := sshutil.NewEd25519("bench")
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := sshutil.NewEd25519("bench-host")
	if err != nil {
		t.Fatal(err)
	}
	if err := seed.WriteFile(iso, seed.Data{Instance: "hand", InstanceID: "hand-1", Hostname: "hand", User: "dev",
		AuthorizedKey: userKey.Public, HostKeyPrivate: string(hostKey.Private), HostKeyPublic: hostKey.Public}); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	boot := func() (*exec.Cmd, time.Duration) {
		cmd := exec.Command("qemu-system-x86_64", "-machine", "pc,accel=tcg", "-cpu", "qemu64", "-smp", "2", "-m", "2048",
			"-display", "none", "-serial", "null", "-monitor", "unix:"+mon+",server,nowait",
			"-drive", "file="+overlay+",if=virtio,format=qcow2,discard=unmap",
			"-drive", "file="+iso+",if=virtio,format=raw,readonly=on",
			"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:22", port),
			"-device", "virtio-net-pci,netdev=n0", "-device", "virtio-rng-pci")
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		if err := awaitSSHBanner(fmt.Sprintf("127.0.0.1:%d", port), 10*time.Minute); err != nil {
			t.Fatalf("booting %s by hand: %v", box, err)
		}
		return cmd, time.Since(start)
	}
	var f handFigures
	var cmd *exec.Cmd
	cmd, f.first = boot()
	f.shutdown = timed(func() { acpiShutdown(t, cmd, mon) })
	cmd, f.second = boot()
	acpiShutdown(t, cmd, mon)
	return f
}

// awaitSSHBanner waits until addr answers with an SSH banner (QEMU's
// forward accepts connections before the guest listens).
func awaitSSHBanner(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "SSH-") {
				return nil
			}
			err = fmt.Errorf("no banner: %q %v", line, rerr)
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("no SSH banner on %s within %s: %v", addr, within, last)
}

// acpiShutdown presses the ACPI power button through QEMU's monitor and
// waits for QEMU to exit.
func acpiShutdown(t testing.TB, cmd *exec.Cmd, monitor string) {
	c, err := net.Dial("unix", monitor)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "system_powerdown\n"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		t.Fatal("the guest did not power off within 3 minutes of the ACPI power button")
	}
}

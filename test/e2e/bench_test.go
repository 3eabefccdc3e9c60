//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/filenames"
)

// TestBenchDevbox measures, in one run on one VM: cold up (box cached) to
// Docker ready, halt, warm up of the halted instance, and devbox ssh --
// true beside plain OpenSSH to the same guest (the baseline). Run it with
// make bench; it prints each figure.
func TestBenchDevbox(t *testing.T) {
	benchmark(t)
	box := boxPath(t)
	e := &env{t: t, bin: builtBin, home: t.TempDir(), project: t.TempDir()}
	e.writeConfig(fmt.Sprintf("name: bench\nbox: %s\ncpus: 2\nmemory: 2GiB\ndisk: 8GiB\nuser: {name: dev}\n", box))
	e.cleanup("bench")

	cold := timed(func() { e.ok(20*time.Minute, "up") })
	st := e.status()
	devboxSSH := median(15, func() { e.ok(time.Minute, "ssh", "--", "true") })
	sshArgs := openSSHArgs(t, e, st)
	openSSH := median(15, func() { openSSHTrue(t, st, sshArgs) })
	proxy := benchProxy(t, e, st, sshArgs)
	halt := timed(func() { e.ok(5*time.Minute, "halt") })
	warm := timed(func() { e.ok(10*time.Minute, "up") })
	e.ok(3*time.Minute, "destroy", "-f")

	figure(t, "cold-up-s", cold.Seconds())
	figure(t, "halt-s", halt.Seconds())
	figure(t, "warm-up-s", warm.Seconds())
	figure(t, "devbox-ssh-true-ms", devboxSSH.Seconds()*1000)
	figure(t, "openssh-true-ms", openSSH.Seconds()*1000)
	figure(t, "ssh-ratio-vs-openssh", devboxSSH.Seconds()/openSSH.Seconds())
	t.Logf("\n%-34s %10s\n%-34s %10s\n%-34s %10s\n%-34s %10s\n%-34s %10s\n%-34s %10.2f",
		"cold up (box cached) to Docker", cold.Round(100*time.Millisecond),
		"halt", halt.Round(100*time.Millisecond),
		"warm up of the halted instance", warm.Round(100*time.Millisecond),
		"devbox ssh -- true (median of 15)", devboxSSH.Round(time.Millisecond),
		"OpenSSH ssh true (median of 15)", openSSH.Round(time.Millisecond),
		"ratio devbox / OpenSSH", devboxSSH.Seconds()/openSSH.Seconds())
	proxy.report(t)
}

// openSSHArgs are OpenSSH options for the instance: its key, its pinned
// host key, nothing from the user's own config.
func openSSHArgs(t testing.TB, e *env, st status) []string {
	dir := e.instanceDir(st.Name)
	pub, err := os.ReadFile(filepath.Join(dir, filenames.HostKey+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(pub))
	known := filepath.Join(dir, "bench_known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s %s\n", st.SSHPort, fields[0], fields[1])
	if err := os.WriteFile(known, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"-F", "/dev/null", "-i", filepath.Join(dir, filenames.UserKey),
		"-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + known,
		"-o", "BatchMode=yes", "-p", fmt.Sprint(st.SSHPort)}
}

// openSSHTrue runs `ssh … true` with sshArgs (from openSSHArgs, made once
// outside the timed loop) and extra options.
func openSSHTrue(t testing.TB, st status, sshArgs []string, extra ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append(append(append([]string{}, sshArgs...), extra...), st.User+"@127.0.0.1", "true")
	out, err := exec.CommandContext(ctx, "ssh", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssh: %v\n%s", err, out)
	}
}

func timed(fn func()) time.Duration {
	start := time.Now()
	fn()
	return time.Since(start)
}

func median(n int, fn func()) time.Duration {
	ds := make([]time.Duration, n)
	for i := range ds {
		ds[i] = timed(fn)
	}
	return medianOf(ds)
}

func medianOf(ds []time.Duration) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// benchmark skips t unless make bench runs it (DEVBOX_E2E_BENCH=1). The
// TestBench tests are measurements, each one run of minutes of VMs, that
// print their figures beside a baseline measured in the same run; they
// check only that the work itself succeeds.
func benchmark(t *testing.T) {
	if os.Getenv("DEVBOX_E2E_BENCH") == "" {
		t.Skip("a measurement: make bench runs it (DEVBOX_E2E_BENCH=1)")
	}
}

// figure prints one measured figure as "figure NAME VALUE", one a line,
// for comparing runs with grep.
func figure(t testing.TB, name string, value float64) {
	t.Logf("figure %s %.3f", name, value)
}

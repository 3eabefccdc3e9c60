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

// BenchmarkDevbox measures, in one run on one VM: cold up (box cached) to
// Docker ready, halt, warm up of the halted instance, and devbox ssh --
// true beside plain OpenSSH to the same guest (the baseline). Run it with
// make bench; each figure is reported as a metric.
func BenchmarkDevbox(b *testing.B) {
	box := boxPath(b)
	e := &env{t: b, bin: builtBin, home: b.TempDir(), project: b.TempDir()}
	e.writeConfig(fmt.Sprintf("name: bench\nbox: %s\ncpus: 2\nmemory: 2GiB\ndisk: 8GiB\nuser: {name: dev}\n", box))
	e.cleanup("bench")
	b.ResetTimer()

	cold := timed(func() { e.ok(20*time.Minute, "up") })
	st := e.status()
	devboxSSH := median(15, func() { e.ok(time.Minute, "ssh", "--", "true") })
	sshArgs := openSSHArgs(b, e, st)
	openSSH := median(15, func() { openSSHTrue(b, st, sshArgs) })
	proxy := benchProxy(b, e, st, sshArgs)
	halt := timed(func() { e.ok(5*time.Minute, "halt") })
	warm := timed(func() { e.ok(10*time.Minute, "up") })
	b.StopTimer()
	e.ok(3*time.Minute, "destroy", "-f")

	b.ReportMetric(cold.Seconds(), "cold-up-s")
	b.ReportMetric(halt.Seconds(), "halt-s")
	b.ReportMetric(warm.Seconds(), "warm-up-s")
	b.ReportMetric(devboxSSH.Seconds()*1000, "devbox-ssh-true-ms")
	b.ReportMetric(openSSH.Seconds()*1000, "openssh-true-ms")
	b.ReportMetric(devboxSSH.Seconds()/openSSH.Seconds(), "ssh-ratio-vs-openssh")
	b.Logf("\n%-34s %10s\n%-34s %10s\n%-34s %10s\n%-34s %10s\n%-34s %10s\n%-34s %10.2f",
		"cold up (box cached) to Docker", cold.Round(100*time.Millisecond),
		"halt", halt.Round(100*time.Millisecond),
		"warm up of the halted instance", warm.Round(100*time.Millisecond),
		"devbox ssh -- true (median of 15)", devboxSSH.Round(time.Millisecond),
		"OpenSSH ssh true (median of 15)", openSSH.Round(time.Millisecond),
		"ratio devbox / OpenSSH", devboxSSH.Seconds()/openSSH.Seconds())
	proxy.report(b)
}

// openSSHArgs are OpenSSH options for the instance: its key, its pinned
// host key, nothing from the user's own config.
func openSSHArgs(b *testing.B, e *env, st status) []string {
	dir := e.instanceDir(st.Name)
	pub, err := os.ReadFile(filepath.Join(dir, filenames.HostKey+".pub"))
	if err != nil {
		b.Fatal(err)
	}
	fields := strings.Fields(string(pub))
	known := filepath.Join(dir, "bench_known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s %s\n", st.SSHPort, fields[0], fields[1])
	if err := os.WriteFile(known, []byte(line), 0o600); err != nil {
		b.Fatal(err)
	}
	return []string{"-F", "/dev/null", "-i", filepath.Join(dir, filenames.UserKey),
		"-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + known,
		"-o", "BatchMode=yes", "-p", fmt.Sprint(st.SSHPort)}
}

// openSSHTrue runs `ssh … true` with sshArgs (from openSSHArgs, made once
// outside the timed loop) and extra options.
func openSSHTrue(b *testing.B, st status, sshArgs []string, extra ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append(append(append([]string{}, sshArgs...), extra...), st.User+"@127.0.0.1", "true")
	out, err := exec.CommandContext(ctx, "ssh", args...).CombinedOutput()
	if err != nil {
		b.Fatalf("openssh: %v\n%s", err, out)
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

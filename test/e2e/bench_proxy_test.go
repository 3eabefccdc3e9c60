//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/filenames"
)

// proxyFigures are issue 3's measurements, all from one run on one VM.
type proxyFigures struct {
	run, controlMaster, newSSH time.Duration // one `true`
	dockerHost, dockerGuest    time.Duration // one `docker version`
}

func benchProxy(b *testing.B, e *env, st status, sshArgs []string) proxyFigures {
	var f proxyFigures
	f.run = median(15, func() { e.ok(time.Minute, "run", "true") })
	f.newSSH = median(15, func() { openSSHTrue(b, st, sshArgs) })

	// A reused OpenSSH ControlMaster channel: the baseline devbox run aims at.
	ctl := filepath.Join(b.TempDir(), "ctl")
	master := exec.Command("ssh", append(append([]string{}, sshArgs...), "-o", "ControlMaster=yes", "-o", "ControlPath="+ctl, "-N", st.User+"@127.0.0.1")...)
	if err := master.Start(); err != nil {
		b.Fatal(err)
	}
	defer master.Process.Kill()
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(ctl); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("ControlMaster socket never appeared")
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.controlMaster = median(15, func() { openSSHTrue(b, st, sshArgs, "-o", "ControlPath="+ctl) })

	sock := filepath.Join(e.instanceDir(st.Name), filenames.DockerSocket)
	f.dockerHost = median(9, func() {
		cmd := exec.Command("docker", "version")
		cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+sock, "DOCKER_CONTEXT=")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("docker version: %v\n%s", err, out)
		}
	})
	f.dockerGuest = guestTimed(b, e, 9, "docker version >/dev/null")

	return f
}

// guestTimed runs script n times inside the VM and returns the median of
// the guest's own clock, so no host or SSH overhead is counted.
func guestTimed(b *testing.B, e *env, n int, script string) time.Duration {
	ds := make([]time.Duration, n)
	for i := range ds {
		r := e.run(10*time.Minute, nil, "ssh", "--", "sh", "-c", "s=$(date +%s%N); "+script+"; e=$(date +%s%N); echo $((e-s))")
		if r.code != 0 {
			b.Fatalf("in the VM: %s\n%s", script, r)
		}
		lines := strings.Fields(r.stdout)
		ns, err := strconv.ParseInt(lines[len(lines)-1], 10, 64)
		if err != nil {
			b.Fatalf("timing %q: %v", r.stdout, err)
		}
		ds[i] = time.Duration(ns)
	}
	return medianOf(ds)
}

func (f proxyFigures) report(b *testing.B) {
	b.ReportMetric(f.run.Seconds()*1000, "devbox-run-true-ms")
	b.ReportMetric(f.controlMaster.Seconds()*1000, "controlmaster-true-ms")
	b.ReportMetric(f.run.Seconds()/f.controlMaster.Seconds(), "run-ratio-vs-controlmaster")
	b.ReportMetric(f.run.Seconds()/f.newSSH.Seconds(), "run-ratio-vs-new-ssh")
	b.ReportMetric(f.dockerHost.Seconds()/f.dockerGuest.Seconds(), "docker-version-ratio-host-vs-guest")
	b.Logf("\n%-44s %10s\n%-44s %10s\n%-44s %10s   ratio run/ControlMaster %.2f, run/new ssh %.2f\n"+
		"%-44s %10s\n%-44s %10s   ratio %.2f",
		"devbox run true (median of 15)", f.run.Round(time.Millisecond),
		"OpenSSH, new connection (median of 15)", f.newSSH.Round(time.Millisecond),
		"OpenSSH, reused ControlMaster (median of 15)", f.controlMaster.Round(time.Millisecond),
		f.run.Seconds()/f.controlMaster.Seconds(), f.run.Seconds()/f.newSSH.Seconds(),
		"docker version via the socket (median of 9)", f.dockerHost.Round(time.Millisecond),
		"docker version inside the VM (median of 9)", f.dockerGuest.Round(time.Millisecond), f.dockerHost.Seconds()/f.dockerGuest.Seconds())
}

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

func benchProxy(t testing.TB, e *env, st status, sshArgs []string) proxyFigures {
	var f proxyFigures
	f.run = median(15, func() { e.ok(time.Minute, "run", "true") })
	f.newSSH = median(15, func() { openSSHTrue(t, st, sshArgs) })

	// A reused OpenSSH ControlMaster channel: the baseline devbox run aims at.
	ctl := filepath.Join(t.TempDir(), "ctl")
	master := exec.Command("ssh", append(append([]string{}, sshArgs...), "-o", "ControlMaster=yes", "-o", "ControlPath="+ctl, "-N", st.User+"@127.0.0.1")...)
	if err := master.Start(); err != nil {
		t.Fatal(err)
	}
	defer master.Process.Kill()
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(ctl); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ControlMaster socket never appeared")
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.controlMaster = median(15, func() { openSSHTrue(t, st, sshArgs, "-o", "ControlPath="+ctl) })

	sock := filepath.Join(e.instanceDir(st.Name), filenames.DockerSocket)
	f.dockerHost = median(9, func() {
		cmd := exec.Command("docker", "version")
		cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+sock, "DOCKER_CONTEXT=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docker version: %v\n%s", err, out)
		}
	})
	f.dockerGuest = guestTimed(t, e, 9, "docker version >/dev/null")

	return f
}

// guestTimed runs script n times inside the VM and returns the median of
// the guest's own clock, so no host or SSH overhead is counted.
func guestTimed(t testing.TB, e *env, n int, script string) time.Duration {
	ds := make([]time.Duration, n)
	for i := range ds {
		r := e.run(10*time.Minute, nil, "ssh", "--", "sh", "-c", "s=$(date +%s%N); "+script+"; e=$(date +%s%N); echo $((e-s))")
		if r.code != 0 {
			t.Fatalf("in the VM: %s\n%s", script, r)
		}
		lines := strings.Fields(r.stdout)
		ns, err := strconv.ParseInt(lines[len(lines)-1], 10, 64)
		if err != nil {
			t.Fatalf("timing %q: %v", r.stdout, err)
		}
		ds[i] = time.Duration(ns)
	}
	return medianOf(ds)
}

func (f proxyFigures) report(t testing.TB) {
	figure(t, "devbox-run-true-ms", f.run.Seconds()*1000)
	figure(t, "controlmaster-true-ms", f.controlMaster.Seconds()*1000)
	figure(t, "run-ratio-vs-controlmaster", f.run.Seconds()/f.controlMaster.Seconds())
	figure(t, "run-ratio-vs-new-ssh", f.run.Seconds()/f.newSSH.Seconds())
	figure(t, "docker-version-ratio-host-vs-guest", f.dockerHost.Seconds()/f.dockerGuest.Seconds())
	t.Logf("\n%-44s %10s\n%-44s %10s\n%-44s %10s   ratio run/ControlMaster %.2f, run/new ssh %.2f\n"+
		"%-44s %10s\n%-44s %10s   ratio %.2f",
		"devbox run true (median of 15)", f.run.Round(time.Millisecond),
		"OpenSSH, new connection (median of 15)", f.newSSH.Round(time.Millisecond),
		"OpenSSH, reused ControlMaster (median of 15)", f.controlMaster.Round(time.Millisecond),
		f.run.Seconds()/f.controlMaster.Seconds(), f.run.Seconds()/f.newSSH.Seconds(),
		"docker version via the socket (median of 9)", f.dockerHost.Round(time.Millisecond),
		"docker version inside the VM (median of 9)", f.dockerGuest.Round(time.Millisecond), f.dockerHost.Seconds()/f.dockerGuest.Seconds())
}

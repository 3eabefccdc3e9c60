//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// TestBakedBoxOffline brings an instance up from a box made by devbox box
// build --engine docker with the guest cut off from the network (offline:
// true, QEMU user net restrict=on): provisioning finds the engine and
// sshfs and installs nothing (it could not: the guest reaches nothing), the
// project folder is shared, the host's docker builds and runs an image
// through the socket, and after the VM is paused for a minute (as by the
// host's sleep) the agent sets the guest's clock back to the host's. DEVBOX_E2E_BOX_BAKED names the box (make test builds
// it, cached by its inputs).
func TestBakedBoxOffline(t *testing.T) {
	box := os.Getenv("DEVBOX_E2E_BOX_BAKED")
	if box == "" {
		t.Skip("DEVBOX_E2E_BOX_BAKED is not set (make test builds the box and sets it)")
	}
	if _, err := os.Stat(box); err != nil {
		t.Fatalf("baked box: %v (hint: make box-baked)", err)
	}
	e := newEnv(t, fmt.Sprintf(`name: baked
box: %s
offline: true
cpus: 2
memory: 2GiB
disk: 8GiB
user:
  name: dev
`, box))
	e.cleanup("baked")
	r := e.ok(15*time.Minute, "up")
	contains(t, "up", r.stderr, "✓ Installing Docker engine (already done)", "✓ Installing sshfs for shared folders (already done)")

	t.Run("the guest reaches nothing beyond the VM", func(t *testing.T) {
		if reached, accepted := guestReachesHost(t, e); reached || accepted > 0 {
			t.Errorf("an offline guest connected to the host's loopback through 10.0.2.2 (guest says reached=%v, host accepted %d)", reached, accepted)
		}
	})
	t.Run("an offline VM gets no host names", func(t *testing.T) {
		if r := e.run(time.Minute, nil, "ssh", "--", "getent", "hosts", "host.devbox.internal"); r.code == 0 {
			t.Errorf("host.devbox.internal resolves in an offline VM: %s", r.stdout)
		}
	})
	t.Run("no package was installed in the guest", func(t *testing.T) {
		// The box ships no apt log; any install at provisioning writes one.
		r := e.run(time.Minute, nil, "ssh", "--", "cat", "/var/log/apt/history.log")
		if r.code == 0 {
			t.Errorf("apt ran in the guest:\n%s", r.stdout)
		}
	})
	t.Run("the project folder is shared", func(t *testing.T) {
		os.WriteFile(filepath.Join(e.project, "from-host"), []byte("hello\n"), 0o644)
		r := e.ok(time.Minute, "run", "--", "cat", "from-host")
		if strings.TrimSpace(r.stdout) != "hello" {
			t.Errorf("cat from-host in the guest: %s", r)
		}
	})
	t.Run("host docker builds and runs through the socket", func(t *testing.T) {
		hostDocker(t, e, "build", "-q", "-t", "e2e-baked", scratchImage(t, hostBusybox(t)))
		if got := hostDocker(t, e, "run", "--rm", "e2e-baked", "echo", "baked"); got != "baked" {
			t.Errorf("docker run: %q", got)
		}
	})
	t.Run("host changes raise inotify events in the VM and in containers", func(t *testing.T) { testFileEvents(t, e) })
	t.Run("the guest's clock is set after a pause", func(t *testing.T) {
		// Offline: no NTP could fix it. The agent notices and sets it.
		if off, err := guestClockOffset(e); err != nil || off > time.Second || off < -time.Second {
			t.Fatalf("before the pause the guest clock is %v off (%v)", off, err)
		}
		pauseDomain(t, e.domain("baked"), 60*time.Second)
		resumed := time.Now()
		deadline := resumed.Add(45 * time.Second)
		for {
			// Right after the resume the agent may still be reconnecting:
			// a failed run is logged and tried again.
			off, err := guestClockOffset(e)
			if err != nil {
				t.Logf("%s after resume: %v", time.Since(resumed).Round(100*time.Millisecond), err)
			} else if off <= time.Second && off >= -time.Second {
				t.Logf("guest clock within 1 s of the host's %s after resume (off by %v)", time.Since(resumed).Round(100*time.Millisecond), off)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("45 s after resuming a 60 s pause the guest clock is still %v off (%v)", off, err)
			}
			time.Sleep(time.Second)
		}
	})
	t.Run("mount_type: virtiofs", func(t *testing.T) { testVirtioFS(t, e) })
	e.ok(3*time.Minute, "destroy", "-f")
	e.assertGone("baked")
}

// guestClockOffset is the guest's clock minus the host's, the host's taken
// at the midpoint of the round trip.
func guestClockOffset(e *env) (time.Duration, error) {
	before := time.Now()
	r := e.run(time.Minute, nil, "run", "--", "date", "+%s.%N") // the agent's open connection: a short round trip
	rtt := time.Since(before)
	if r.code != 0 {
		return 0, fmt.Errorf("devbox run date: %s", r)
	}
	sec, frac, _ := strings.Cut(strings.TrimSpace(r.stdout), ".")
	s, err1 := strconv.ParseInt(sec, 10, 64)
	ns, err2 := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("guest date: %q", r.stdout)
	}
	return time.Unix(s, ns).Sub(before.Add(rtt / 2)), nil
}

// pauseDomain pauses a domain for d (as a host's sleep does) and resumes it.
func pauseDomain(t *testing.T, domain string, d time.Duration) {
	t.Helper()
	l, err := golibvirt.ConnectToURI(&url.URL{Scheme: "qemu", Path: "/system"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Disconnect()
	dom, err := l.DomainLookupByName(domain)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.DomainSuspend(dom); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d) // the pause itself is what is tested
	if err := l.DomainResume(dom); err != nil {
		t.Fatal(err)
	}
}

// guestReachesHost has the guest open a TCP connection to 10.0.2.2 (QEMU
// user networking's name for the host's loopback) on a port the test
// listens on at 127.0.0.1: whether the guest says it connected, and how
// many connections the host accepted.
func guestReachesHost(t *testing.T, e *env) (reached bool, accepted int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	probe := fmt.Sprintf("if timeout 10 bash -c 'exec 3<>/dev/tcp/10.0.2.2/%d'; then echo reached; else echo blocked; fi", port)
	r := e.ok(time.Minute, "ssh", "--", "bash", "-c", probe)
	reached = strings.TrimSpace(r.stdout) == "reached"
	if reached { // the host side may lag the guest's connect by a moment
		deadline := time.Now().Add(5 * time.Second)
		for n.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return reached, n.Load()
}

//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// freeUDPPort is a UDP port nothing on the host's loopback holds now.
func freeUDPPort(t testing.TB) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// buildTool builds the test command in ./name (a static Linux binary for
// goarch) into dir and returns its path.
func buildTool(t *testing.T, name, goarch, dir string) string {
	bin := filepath.Join(dir, name)
	build := exec.Command("go", "build", "-o", bin, "./"+name)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	return bin
}

// toolImage is a build folder for a FROM-scratch image whose entry point
// is the test command name, built for goarch.
func toolImage(t *testing.T, name, goarch string) string {
	dir := t.TempDir()
	buildTool(t, name, goarch, dir)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(fmt.Sprintf("FROM scratch\nCOPY %s /%s\nENTRYPOINT [\"/%s\"]\n", name, name, name)), 0o644)
	return dir
}

// udpAsk sends msg to addr until an answer comes, or within passes; it
// returns the answer, or the last error (a refused port is
// ECONNREFUSED: the host answered that nothing listens).
func udpAsk(addr, msg string, within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return "", err
		}
		c.SetDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 1500)
		_, err = c.Write([]byte(msg))
		if err == nil {
			var n int
			n, err = c.Read(buf)
			if err == nil {
				c.Close()
				return string(buf[:n]), nil
			}
		}
		c.Close()
		last = err
		if !errors.Is(err, syscall.ECONNREFUSED) {
			continue // timed out: read again at once
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "", last
}

// testUDP: a container publishing a UDP port answers on the host's
// 127.0.0.1, and a server on the guest's network (a container sharing
// it) answers through the configured forward with proto: udp; when the
// container goes, its port is no longer forwarded.
func testUDP(t *testing.T, e *env) {
	hostDocker(t, e, "build", "-q", "-t", "e2e-udpecho", toolImage(t, "udpecho", "amd64"))
	published := strconv.Itoa(freeUDPPort(t))
	hostDocker(t, e, "run", "-d", "--name", "udpecho", "-p", published+":7/udp", "e2e-udpecho")
	t.Cleanup(func() { dockerCmd(context.Background(), e, "rm", "-f", "udpecho").Run() })
	hostDocker(t, e, "run", "-d", "--name", "udpecho-guest", "--network", "host", "e2e-udpecho", ":"+strconv.Itoa(e.udpGuestPort))
	t.Cleanup(func() { dockerCmd(context.Background(), e, "rm", "-f", "udpecho-guest").Run() })

	for _, addr := range []string{"127.0.0.1:" + published, "127.0.0.1:" + strconv.Itoa(e.udpForwardPort)} {
		got, err := udpAsk(addr, "ping "+addr, time.Minute)
		if want := "echo: ping " + addr; got != want {
			t.Errorf("udp %s: got %q (%v), want %q", addr, got, err, want)
		}
	}
	// A large datagram (QEMU's user network carries up to its MTU, 1500).
	big := string(make([]byte, 1200))
	if got, err := udpAsk("127.0.0.1:"+published, big, 30*time.Second); got != "echo: "+big {
		t.Errorf("1200-byte datagram: got %d bytes (%v)", len(got), err)
	}

	hostDocker(t, e, "rm", "-f", "udpecho")
	// Gone: the host port is let go, so the host itself refuses.
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := udpAsk("127.0.0.1:"+published, "still there?", 2*time.Second)
		if errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("udp %s still forwarded a minute after its container went (last: %v)", published, err)
		}
	}
}

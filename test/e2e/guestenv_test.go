//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/testutil"
)

// recordingProxy is an HTTP proxy on the host's loopback that answers
// every request with an error and remembers its request line
// ("CONNECT registry.example:443", "GET http://…").
type recordingProxy struct {
	addr  string
	mu    sync.Mutex
	lines []string
}

func startRecordingProxy(t *testing.T) *recordingProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &recordingProxy{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				p.mu.Lock()
				p.lines = append(p.lines, strings.TrimSpace(line))
				p.mu.Unlock()
				fmt.Fprint(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			}()
		}
	}()
	return p
}

// saw waits until a request line starting with prefix came.
func (p *recordingProxy) saw(prefix string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, l := range p.lines {
			if strings.HasPrefix(l, prefix) {
				p.mu.Unlock()
				return true
			}
		}
		p.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// reset forgets the requests seen so far.
func (p *recordingProxy) reset() {
	p.mu.Lock()
	p.lines = nil
	p.mu.Unlock()
}

func (p *recordingProxy) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// TestProxyAndCACerts: with a proxy in the host's environment (on the
// host's loopback, as a local cntlm is) and ca_certs in devbox.yaml, the
// engine pulls through the proxy, apt fetches through it, and the
// guest's trust store holds the CA; once both are unset, the next up
// takes them all away again. From the baked box (no install to wait for).
func TestProxyAndCACerts(t *testing.T) {
	box := os.Getenv("DEVBOX_E2E_BOX_BAKED")
	if box == "" {
		t.Skip("DEVBOX_E2E_BOX_BAKED is not set (make test builds the box and sets it)")
	}
	proxy := startRecordingProxy(t)
	_, port, _ := net.SplitHostPort(proxy.addr)
	base := fmt.Sprintf("name: corp\nbox: %s\ncpus: 2\nmemory: 2GiB\ndisk: 8GiB\nmounts: []\n", box)
	e := newEnv(t, base+"ca_certs: [corp-ca.pem]\n")
	ca, _ := testutil.SelfSignedCert(t, "devbox e2e corporate CA", true)
	caLine := strings.Split(string(ca), "\n")[2] // a line of its body, which a trust bundle holding it contains
	os.WriteFile(filepath.Join(e.project, "corp-ca.pem"), ca, 0o644)
	e.cleanup("corp")
	e.extra = []string{"HTTP_PROXY=http://127.0.0.1:" + port, "HTTPS_PROXY=http://127.0.0.1:" + port, "NO_PROXY=internal.example"}

	r := e.ok(15*time.Minute, "up")
	contains(t, "up", r.stderr, "proxy and certificates: wrote /etc/systemd/system/docker.service.d/devbox-proxy.conf",
		"proxy and certificates: wrote /usr/local/share/ca-certificates/devbox/devbox-1.crt")

	t.Run("the engine has the proxy, pointed at the host", func(t *testing.T) {
		r := e.ok(time.Minute, "ssh", "--", "systemctl", "show", "docker", "--property=Environment")
		contains(t, "docker's environment", r.stdout, "HTTPS_PROXY=http://10.0.2.2:"+port, "HTTP_PROXY=http://10.0.2.2:"+port, "NO_PROXY=internal.example")
		// A pull goes through the proxy, which refuses it.
		e.run(2*time.Minute, nil, "ssh", "--", "docker", "pull", "registry.devbox.test/team/app:1")
		if !proxy.saw("CONNECT registry.devbox.test:443", 30*time.Second) {
			t.Errorf("the engine's pull never reached the proxy; it saw:\n%s", proxy)
		}
	})
	t.Run("apt fetches through the proxy", func(t *testing.T) {
		proxy.reset()
		e.run(3*time.Minute, nil, "ssh", "--", "sudo", "apt-get", "-o", "Acquire::Retries=0", "update")
		if !proxy.saw("GET http://", 30*time.Second) && !proxy.saw("CONNECT ", time.Second) {
			t.Errorf("apt never asked the proxy; it saw:\n%s", proxy)
		}
	})
	t.Run("the CA is in the guest's trust store", func(t *testing.T) {
		if r := e.run(time.Minute, nil, "ssh", "--", "grep", "-qF", caLine, "/etc/ssl/certs/ca-certificates.crt"); r.code != 0 {
			t.Errorf("the CA is not in the trust bundle:\n%s", r)
		}
	})

	// Unset both: the next up removes what the first one wrote.
	e.extra = nil
	e.writeConfig(base)
	r = e.ok(5*time.Minute, "up")
	contains(t, "second up", r.stderr, "proxy and certificates: removed /etc/systemd/system/docker.service.d/devbox-proxy.conf",
		"proxy and certificates: removed /etc/apt/apt.conf.d/90devbox-proxy", "proxy and certificates: removed /usr/local/share/ca-certificates/devbox/devbox-1.crt",
		"proxy and certificates: restarted docker")
	r = e.ok(time.Minute, "ssh", "--", "systemctl", "show", "docker", "--property=Environment")
	if strings.Contains(r.stdout, "PROXY") {
		t.Errorf("the engine kept a proxy: %s", r.stdout)
	}
	if r := e.run(time.Minute, nil, "ssh", "--", "grep", "-qF", caLine, "/etc/ssl/certs/ca-certificates.crt"); r.code == 0 {
		t.Errorf("the CA stayed in the trust bundle")
	}
	// And a third up, with nothing to change, says nothing about it.
	r = e.ok(5*time.Minute, "up")
	if strings.Contains(r.stderr, "proxy and certificates") {
		t.Errorf("an up with nothing to change changed something:\n%s", r.stderr)
	}
	e.ok(2*time.Minute, "destroy", "-f")
	e.assertGone("corp")
}

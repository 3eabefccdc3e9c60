//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serveHostLoopback serves body over HTTP on the host's 127.0.0.1 until
// the test ends, and returns its port.
func serveHostLoopback(t *testing.T, body string) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// testHostNames: the VM finds the host as host.devbox.internal, and
// containers (on the default bridge and on a network of their own, as
// compose makes) as host.docker.internal, and reach a server on the
// host's loopback by it.
func testHostNames(t *testing.T, e *env, busybox string) {
	port := serveHostLoopback(t, "served on the host's loopback")
	r := e.ok(time.Minute, "ssh", "--", "getent", "hosts", "host.devbox.internal")
	if f := strings.Fields(r.stdout); len(f) == 0 || f[0] != "10.0.2.2" {
		t.Errorf("host.devbox.internal in the VM: %q", r.stdout)
	}
	r = e.ok(time.Minute, "ssh", "--", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/host.devbox.internal/%d && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3", port))
	if !strings.Contains(r.stdout, "served on the host's loopback") {
		t.Errorf("the VM fetching from host.devbox.internal:%d: %q", port, r.stdout)
	}

	hostDocker(t, e, "build", "-q", "-t", "e2e-host", scratchImage(t, busybox))
	hostDocker(t, e, "network", "create", "e2e-names")
	defer hostDocker(t, e, "network", "rm", "e2e-names")
	for _, network := range []string{"bridge", "e2e-names"} {
		url := fmt.Sprintf("http://host.docker.internal:%d/", port)
		out := hostDocker(t, e, "run", "--rm", "--network", network, "e2e-host", "wget", "-qO-", url)
		if out != "served on the host's loopback" {
			t.Errorf("a container on network %s fetching %s: %q", network, url, out)
		}
	}
}

package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/devbox-vm/devbox/internal/testutil"
	"github.com/devbox-vm/devbox/sshutil"
)

// fakeGuest is an in-process SSH server standing in for the guest: one
// authorized client key, a host key tests can swap, exec requests
// answered by a test function, and a "down" switch under which
// connections are accepted and closed at once (as QEMU's port forward
// does while the guest is off).
type fakeGuest struct {
	Addr   string
	client ssh.PublicKey

	mu         sync.Mutex
	hostKey    sshutil.KeyPair
	down       bool
	handshakes int // TCP connections accepted, each a handshake attempt
	conns      map[net.Conn]bool
	frozen     map[net.Conn]chan struct{} // closed to stop answering keepalives
	exec       func(cmd string, stdin io.Reader, stdout, stderr io.Writer) int
	wg         sync.WaitGroup
}

// newFakeGuest starts a guest and returns it with a Target pinning its
// host key.
func newFakeGuest(t *testing.T) (*fakeGuest, sshutil.Target) {
	t.Helper()
	clientKP, err := sshutil.NewEd25519("client")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "id_ed25519")
	if err := sshutil.WriteKeyPair(keyFile, clientKP); err != nil {
		t.Fatal(err)
	}
	clientPub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(clientKP.Public))
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGuest{client: clientPub, hostKey: newKey(t), conns: map[net.Conn]bool{}, frozen: map[net.Conn]chan struct{}{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.Addr = lis.Addr().String()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			g.mu.Lock()
			g.handshakes++
			down := g.down
			if !down {
				g.conns[conn] = true
				g.frozen[conn] = make(chan struct{})
			}
			g.mu.Unlock()
			if down {
				conn.Close()
				continue
			}
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				g.serve(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		g.setDown(true)
		g.wg.Wait()
	})
	return g, sshutil.Target{Addr: g.Addr, User: "dev", KeyFile: keyFile, HostKey: g.hostKey.Public, HandshakeTimeout: 5 * time.Second}
}

func newKey(t *testing.T) sshutil.KeyPair {
	t.Helper()
	kp, err := sshutil.NewEd25519("")
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func (g *fakeGuest) setHostKey(kp sshutil.KeyPair) {
	g.mu.Lock()
	g.hostKey = kp
	g.mu.Unlock()
}

// setDown turns the guest off (dropping every connection) or on.
func (g *fakeGuest) setDown(down bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.down = down
	if down {
		for c := range g.conns {
			c.Close()
		}
	}
}

// freeze makes the current connections stop answering keepalives, as a
// hung guest or one behind a slept host does; new ones are answered.
func (g *fakeGuest) freeze() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c, ch := range g.frozen {
		close(ch)
		delete(g.frozen, c)
	}
}

func (g *fakeGuest) handshakeCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.handshakes
}

func (g *fakeGuest) setExec(f func(cmd string, stdin io.Reader, stdout, stderr io.Writer) int) {
	g.mu.Lock()
	g.exec = f
	g.mu.Unlock()
}

func (g *fakeGuest) serve(conn net.Conn) {
	defer func() {
		conn.Close()
		g.mu.Lock()
		delete(g.conns, conn)
		delete(g.frozen, conn)
		g.mu.Unlock()
	}()
	g.mu.Lock()
	hostKey, frozen := g.hostKey, g.frozen[conn]
	g.mu.Unlock()
	signer, err := ssh.ParsePrivateKey(hostKey.Private)
	if err != nil {
		panic(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(key.Marshal(), g.client.Marshal()) {
				return nil, nil
			}
			return nil, fmt.Errorf("key not authorized")
		},
	}
	cfg.AddHostKey(signer)
	sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go func() {
		for req := range reqs {
			select {
			case <-frozen: // a hung guest answers nothing
			default:
				req.Reply(false, nil) // as sshd answers keepalives
			}
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.Prohibited, "only sessions here")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.session(ch, chReqs)
		}()
	}
}

func (g *fakeGuest) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			req.Reply(false, nil)
			continue
		}
		var p struct{ Cmd string }
		if err := ssh.Unmarshal(req.Payload, &p); err != nil {
			req.Reply(false, nil)
			return
		}
		req.Reply(true, nil)
		go ssh.DiscardRequests(reqs) // signals
		g.mu.Lock()
		exec := g.exec
		g.mu.Unlock()
		code := 0
		switch {
		case exec != nil:
			code = exec(p.Cmd, ch, ch, ch.Stderr())
		case strings.HasPrefix(p.Cmd, "echo "):
			fmt.Fprintln(ch, strings.TrimPrefix(p.Cmd, "echo "))
		}
		ch.CloseWrite()
		ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
		return
	}
}

// countLines counts the lines of logs containing sub.
func countLines(logs *testutil.Buffer, sub string) int {
	n := 0
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// startAgent runs a in the background until the test ends.
func startAgent(t *testing.T, a *Agent) *testutil.Buffer {
	t.Helper()
	logs := &testutil.Buffer{}
	if a.Dir == "" {
		a.Dir = t.TempDir()
	}
	a.Log = log.New(logs, "", 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(15 * time.Second):
			buf := make([]byte, 1<<20)
			t.Errorf("Run did not return within 15s of cancel; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
		}
	})
	return logs
}

// waitStatus waits until the agent's status satisfies ok, woken by each
// change of the connection state, and for the rest by a short tick
// (mounts and forwards change without waking anyone).
func waitStatus(t *testing.T, a *Agent, what string, d time.Duration, ok func(Status) bool) Status {
	t.Helper()
	a.init()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		a.mu.Lock()
		changed := a.changed
		a.mu.Unlock()
		st := a.Status()
		if ok(st) {
			return st
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("status never became %s within %v: %+v", what, d, st)
		}
	}
}

package sshutil

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// testServer is a minimal in-process SSH server: one authorized key, exec and
// shell requests run via /bin/sh in their own process group, signal requests
// forwarded to that group, pty-req and window-change recorded only,
// direct-tcpip and direct-streamlocal@openssh.com channels dialled from this
// process, global requests recorded and answered with failure (as sshd
// answers keepalive@openssh.com).
type testServer struct {
	Addr    string
	HostKey string // authorized_keys form
	Env     []string

	config *ssh.ServerConfig
	lis    net.Listener
	wg     sync.WaitGroup

	mu      sync.Mutex
	conns   []net.Conn
	events  []string // "signal TERM", "pty xterm 80x24 echo=1", "window 100x30", "exit <state>", "global <type>"
	changed chan struct{}
	frozen  chan struct{} // closed by freeze
}

// testClientKey writes a fresh client key pair under t.TempDir and returns its path.
func testClientKey(t *testing.T) (string, KeyPair) {
	t.Helper()
	kp, err := NewEd25519("client@test")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := WriteKeyPair(path, kp); err != nil {
		t.Fatal(err)
	}
	return path, kp
}

// newTestServer returns a server accepting only authorizedKey; it does not
// listen until serve is called.
func newTestServer(t *testing.T, authorizedKey string) *testServer {
	t.Helper()
	allowed, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		t.Fatal(err)
	}
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(key.Marshal(), allowed.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	cfg.AddHostKey(hostSigner)
	return &testServer{
		HostKey: authorizedLine(hostSigner.PublicKey(), ""),
		config:  cfg,
		changed: make(chan struct{}),
		frozen:  make(chan struct{}),
	}
}

// startTestServer returns a server listening on a random loopback port.
func startTestServer(t *testing.T, authorizedKey string) *testServer {
	t.Helper()
	s := newTestServer(t, authorizedKey)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.serve(t, lis)
	return s
}

// serve accepts connections on lis until the test ends.
func (s *testServer) serve(t *testing.T, lis net.Listener) {
	s.mu.Lock()
	s.lis = lis
	s.Addr = lis.Addr().String()
	s.mu.Unlock()
	t.Cleanup(func() {
		lis.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			conn := &freezableConn{Conn: c, frozen: s.frozen, closed: make(chan struct{})}
			s.mu.Lock()
			s.conns = append(s.conns, conn)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.handleConn(conn)
			}()
		}
	}()
}

// freeze makes the server stop reading from its connections, as if the guest
// hung: whatever a connection reads from now on is held back until it closes.
func (s *testServer) freeze() {
	close(s.frozen)
}

// dropConns closes every connection accepted so far.
func (s *testServer) dropConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// freezableConn is a net.Conn whose reads hang once frozen is closed.
type freezableConn struct {
	net.Conn
	frozen    <-chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *freezableConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	select {
	case <-c.frozen:
		<-c.closed
		return 0, net.ErrClosed
	default:
		return n, err
	}
}

func (c *freezableConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// countEvents returns how many recorded events equal event.
func (s *testServer) countEvents(event string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.events {
		if e == event {
			n++
		}
	}
	return n
}

func (s *testServer) record(event string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, event)
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitEvent waits until pred holds for some recorded event, failing the test
// after a deadline.
func (s *testServer) waitEvent(t *testing.T, what string, pred func(string) bool) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		for _, e := range s.events {
			if pred(e) {
				s.mu.Unlock()
				return e
			}
		}
		changed := s.changed
		events := append([]string(nil), s.events...)
		s.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("server never saw %s; events: %q", what, events)
		}
	}
}

func (s *testServer) handleConn(conn net.Conn) {
	defer conn.Close()
	sc, chans, reqs, err := ssh.NewServerConn(conn, s.config)
	if err != nil {
		return
	}
	defer sc.Close()
	go func() {
		for req := range reqs {
			s.record("global " + req.Type)
			req.Reply(false, nil)
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		var target net.Conn
		switch nc.ChannelType() {
		case "session":
		case "direct-tcpip":
			var p struct {
				Host     string
				Port     uint32
				OrigHost string
				OrigPort uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
				nc.Reject(ssh.Prohibited, err.Error())
				continue
			}
			if target, err = net.Dial("tcp", net.JoinHostPort(p.Host, fmt.Sprint(p.Port))); err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
		case "direct-streamlocal@openssh.com":
			var p struct {
				Path      string
				Reserved0 string
				Reserved1 uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
				nc.Reject(ssh.Prohibited, err.Error())
				continue
			}
			if target, err = net.Dial("unix", p.Path); err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
		default:
			nc.Reject(ssh.UnknownChannelType, "unsupported channel type")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			if target != nil {
				target.Close()
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if target != nil {
				go ssh.DiscardRequests(chReqs)
				relayConn(ch, target)
				return
			}
			s.handleSession(ch, chReqs)
		}()
	}
}

// relayConn copies between ch and conn, passing EOF on, until both
// directions are done.
func relayConn(ch ssh.Channel, conn net.Conn) {
	defer ch.Close()
	defer conn.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(conn, ch)
		conn.(interface{ CloseWrite() error }).CloseWrite()
		close(done)
	}()
	io.Copy(ch, conn)
	ch.CloseWrite()
	<-done
}

func (s *testServer) handleSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	exited := make(chan *os.ProcessState, 1)
	var proc *os.Process
	var kill <-chan time.Time
	for {
		select {
		case req, ok := <-reqs:
			if !ok { // client closed the channel
				if proc == nil {
					return
				}
				reqs, kill = nil, time.After(5*time.Second)
				continue
			}
			s.handleRequest(ch, req, &proc, exited)
		case <-kill:
			syscall.Kill(-proc.Pid, syscall.SIGKILL)
		case state := <-exited:
			s.record("exit " + state.String())
			if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				sig := map[syscall.Signal]string{syscall.SIGTERM: "TERM", syscall.SIGKILL: "KILL"}[ws.Signal()]
				ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
					Signal     string
					CoreDumped bool
					Error      string
					Lang       string
				}{Signal: sig}))
			} else {
				ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, uint32(state.ExitCode())))
			}
			return
		}
	}
}

func (s *testServer) handleRequest(ch ssh.Channel, req *ssh.Request, proc **os.Process, exited chan<- *os.ProcessState) {
	reply := func(ok bool) {
		if req.WantReply {
			req.Reply(ok, nil)
		}
	}
	switch req.Type {
	case "exec", "shell":
		var args []string
		if req.Type == "exec" {
			var p struct{ Command string }
			if ssh.Unmarshal(req.Payload, &p) != nil {
				reply(false)
				return
			}
			args = []string{"-c", p.Command}
		}
		if *proc != nil {
			reply(false)
			return
		}
		cmd := exec.Command("/bin/sh", args...)
		cmd.Env = append(os.Environ(), s.Env...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
		stdin, err := cmd.StdinPipe()
		if err != nil {
			reply(false)
			return
		}
		if err := cmd.Start(); err != nil {
			reply(false)
			return
		}
		*proc = cmd.Process
		go func() {
			io.Copy(stdin, ch)
			stdin.Close()
		}()
		go func() {
			cmd.Wait()
			exited <- cmd.ProcessState
		}()
		reply(true)
	case "signal":
		var p struct{ Signal string }
		ssh.Unmarshal(req.Payload, &p)
		s.record("signal " + p.Signal)
		sig := map[string]syscall.Signal{
			"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "KILL": syscall.SIGKILL, "HUP": syscall.SIGHUP,
			"QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
		}[p.Signal]
		if *proc != nil && sig != 0 {
			syscall.Kill(-(*proc).Pid, sig)
		}
		reply(true)
	case "pty-req":
		var p struct {
			Term             string
			Cols, Rows, W, H uint32
			Modes            string
		}
		if ssh.Unmarshal(req.Payload, &p) != nil {
			reply(false)
			return
		}
		s.record(ptyEvent(p.Term, p.Cols, p.Rows, []byte(p.Modes)))
		reply(true)
	case "window-change":
		var p struct{ Cols, Rows, W, H uint32 }
		ssh.Unmarshal(req.Payload, &p)
		s.record(windowEvent(p.Cols, p.Rows))
		reply(true)
	default:
		reply(false)
	}
}

func ptyEvent(term string, cols, rows uint32, modes []byte) string {
	ev := fmt.Sprintf("pty %s %dx%d", term, cols, rows)
	for len(modes) >= 5 && modes[0] != 0 {
		ev += fmt.Sprintf(" %d=%d", modes[0], binary.BigEndian.Uint32(modes[1:5]))
		modes = modes[5:]
	}
	return ev
}

func windowEvent(cols, rows uint32) string {
	return fmt.Sprintf("window %dx%d", cols, rows)
}

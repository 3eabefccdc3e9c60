package sshutil

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/testutil"
	"golang.org/x/crypto/ssh"
)

// startEcho serves an echo on network/addr that passes EOF back; it returns
// the address it listens on.
func startEcho(t *testing.T, network, addr string) string {
	t.Helper()
	lis, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		lis.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				io.Copy(conn, conn)
				conn.(interface{ CloseWrite() error }).CloseWrite()
			}()
		}
	}()
	return lis.Addr().String()
}

// within runs f and fails the test if it does not return within d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not finish within %v", what, d)
	}
}

// checkEcho sends data over conn, half-closes it and expects all of data back
// followed by EOF.
func checkEcho(t *testing.T, conn net.Conn, size int) {
	t.Helper()
	defer conn.Close()
	data := make([]byte, size)
	rand.Read(data)
	writeErr := make(chan error, 1)
	go func() {
		_, err := conn.Write(data)
		if err == nil {
			err = conn.(interface{ CloseWrite() error }).CloseWrite()
		}
		writeErr <- err
	}()
	var got []byte
	var err error
	within(t, 20*time.Second, "echo", func() { got, err = io.ReadAll(conn) })
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("echo returned %d bytes (err %v), want the %d sent", len(got), err, len(data))
	}
	if err := <-writeErr; err != nil {
		t.Errorf("write to echo: %v", err)
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not closed within 10s", what)
	}
}

func TestDialTCPAndUnix(t *testing.T) {
	_, c, _ := setup(t)
	ctx := testContext(t, 30*time.Second)

	tcpAddr := startEcho(t, "tcp", "127.0.0.1:0")
	conn, err := c.DialTCP(ctx, tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	checkEcho(t, conn, 1<<20)

	sock := startEcho(t, "unix", filepath.Join(t.TempDir(), "echo.sock"))
	conn, err = c.DialUnix(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	checkEcho(t, conn, 100)

	// Several streams at once share the connection.
	var wg sync.WaitGroup
	for range 4 {
		conn, err := c.DialTCP(ctx, tcpAddr)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			checkEcho(t, conn, 256<<10)
		}()
	}
	wg.Wait()

	// Failures name the target.
	refused := reservePort(t)
	if _, err := c.DialTCP(ctx, refused); err == nil || !strings.Contains(err.Error(), "dial tcp "+refused+" via") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("DialTCP to a closed port: err = %v", err)
	}
	missing := filepath.Join(t.TempDir(), "missing.sock")
	if _, err := c.DialUnix(ctx, missing); err == nil || !strings.Contains(err.Error(), "dial unix "+missing) {
		t.Errorf("DialUnix to a missing socket: err = %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.DialTCP(cancelled, tcpAddr); !errors.Is(err, context.Canceled) {
		t.Errorf("DialTCP with a cancelled ctx: err = %v, want context.Canceled", err)
	}
}

func TestDone(t *testing.T) {
	srv, c, target := setup(t)
	ctx := testContext(t, 20*time.Second)
	select {
	case <-c.Done():
		t.Fatal("Done closed on a live connection")
	default:
	}

	// Keepalive notices the end at once rather than at its next probe.
	kaErr := make(chan error, 1)
	go func() { kaErr <- c.Keepalive(ctx, time.Minute, 3) }()
	srv.waitEvent(t, "a keepalive", func(e string) bool { return e == "global "+keepaliveRequest })

	srv.dropConns()
	waitClosed(t, c.Done(), "Done after the server dropped the connection")
	if _, err := c.Output(ctx, Cmd{Script: "true"}); err == nil {
		t.Error("Output on a dropped connection succeeded")
	}
	select {
	case err := <-kaErr:
		if err == nil || !strings.Contains(err.Error(), "connection closed") {
			t.Errorf("Keepalive on a dropped connection = %v, want connection closed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Keepalive did not return after the connection dropped")
	}

	// Close ends it too.
	c2, err := Dial(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	waitClosed(t, c2.Done(), "Done after Close")
}

func TestKeepalive(t *testing.T) {
	srv, c, _ := setup(t)
	ctx := testContext(t, 30*time.Second)
	kaErr := make(chan error, 1)
	go func() { kaErr <- c.Keepalive(ctx, 50*time.Millisecond, 2) }()

	// The server answers each probe with a failure, as sshd does; that
	// counts as alive, or Keepalive would have given up after two.
	deadline := time.After(10 * time.Second)
	for srv.countEvents("global "+keepaliveRequest) < 4 {
		srv.mu.Lock()
		changed := srv.changed
		srv.mu.Unlock()
		select {
		case <-changed:
		case err := <-kaErr:
			t.Fatalf("Keepalive returned on a live connection: %v", err)
		case <-deadline:
			t.Fatal("fewer than 4 keepalives within 10s")
		}
	}
	select {
	case err := <-kaErr:
		t.Fatalf("Keepalive returned on a live connection: %v", err)
	default:
	}

	// A hung server is given up on and the client closed.
	srv.freeze()
	start := time.Now()
	select {
	case err := <-kaErr:
		if err == nil || !strings.Contains(err.Error(), "2 probes in a row failed") || !strings.Contains(err.Error(), "no reply within 50ms") ||
			!errors.Is(err, ErrKeepaliveUnanswered) {
			t.Errorf("Keepalive on a hung server = %v", err)
		}
		if elapsed := time.Since(start); elapsed > 2*time.Second {
			t.Errorf("Keepalive took %v to give up, want about 100ms", elapsed)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Keepalive did not give up on a hung server")
	}
	waitClosed(t, c.Done(), "Done after Keepalive gave up")
}

func TestKeepaliveCancel(t *testing.T) {
	srv, c, _ := setup(t)
	ctx, cancel := context.WithCancel(testContext(t, 20*time.Second))
	kaErr := make(chan error, 1)
	go func() { kaErr <- c.Keepalive(ctx, 20*time.Millisecond, 1) }()
	srv.waitEvent(t, "a keepalive", func(e string) bool { return e == "global "+keepaliveRequest })
	cancel()
	select {
	case err := <-kaErr:
		if err != nil {
			t.Errorf("Keepalive after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Keepalive did not return after cancel")
	}
	if out, err := c.Output(testContext(t, 10*time.Second), Cmd{Script: "echo open"}); err != nil || string(out) != "open\n" {
		t.Errorf("Output after Keepalive returned = %q, %v; want the client still open", out, err)
	}
	if err := c.Keepalive(ctx, 0, 1); err == nil {
		t.Error("Keepalive with a zero interval succeeded")
	}
}

// proxyFixture is a running ServeProxy.
type proxyFixture struct {
	socket  string
	hostKey string
	cancel  context.CancelFunc
	done    chan struct{} // closed when ServeProxy has returned
	err     error         // its result
}

func startProxy(t *testing.T, upstream func(context.Context) (*Client, error)) *proxyFixture {
	t.Helper()
	kp, err := NewEd25519("proxy")
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "proxy.sock")
	lis, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &proxyFixture{socket: socket, hostKey: kp.Public, cancel: cancel, done: make(chan struct{})}
	go func() {
		p.err = ServeProxy(ctx, lis, kp, upstream)
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.done:
			if p.err != nil {
				t.Errorf("ServeProxy = %v", p.err)
			}
		case <-time.After(10 * time.Second):
			t.Error("ServeProxy did not return within 10s of cancel")
		}
	})
	return p
}

func (p *proxyFixture) dial(t *testing.T) *Client {
	t.Helper()
	c, err := DialProxy(testContext(t, 10*time.Second), p.socket, p.hostKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// clientVia returns a test server and a client to it, direct or through a
// proxy.
func clientVia(t *testing.T, via string) (*testServer, *Client) {
	srv, up, _ := setup(t)
	if via == "proxy" {
		return srv, startProxy(t, func(context.Context) (*Client, error) { return up, nil }).dial(t)
	}
	return srv, up
}

func TestProxy(t *testing.T) {
	srv, up, _ := setup(t)
	p := startProxy(t, func(context.Context) (*Client, error) { return up, nil })
	c := p.dial(t)
	ctx := testContext(t, 60*time.Second)

	// Exit status and separate streams.
	var stdout, stderr bytes.Buffer
	status, err := c.Run(ctx, Cmd{Script: "echo out; echo err >&2; exit 3", Stdout: &stdout, Stderr: &stderr})
	if err != nil || status != 3 || stdout.String() != "out\n" || stderr.String() != "err\n" {
		t.Errorf("Run via proxy = %d, %v, stdout %q, stderr %q; want 3, nil, \"out\\n\", \"err\\n\"", status, err, stdout.String(), stderr.String())
	}
	if status, err := c.Run(ctx, Cmd{Script: "kill -TERM $$"}); err != nil || status != 128+15 {
		t.Errorf("Run via proxy of a command killed by SIGTERM = %d, %v; want 143", status, err)
	}

	// Stdin, its EOF, and 1 MiB each way.
	stdout.Reset()
	status, err = c.Run(ctx, Cmd{Script: "wc -l; echo after-eof", Stdin: strings.NewReader("one\ntwo\n"), Stdout: &stdout})
	if err != nil || status != 0 || strings.Fields(stdout.String())[0] != "2" || !strings.HasSuffix(stdout.String(), "after-eof\n") {
		t.Errorf("wc -l via proxy = %d, %v, %q", status, err, stdout.String())
	}
	data := make([]byte, 1<<20)
	rand.Read(data)
	stdout.Reset()
	if status, err := c.Run(ctx, Cmd{Script: "cat", Stdin: bytes.NewReader(data), Stdout: &stdout}); err != nil || status != 0 || !bytes.Equal(stdout.Bytes(), data) {
		t.Errorf("cat of 1 MiB via proxy = %d, %v, %d bytes back", status, err, stdout.Len())
	}

	// Streams over two hops.
	conn, err := c.DialTCP(ctx, startEcho(t, "tcp", "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	checkEcho(t, conn, 1<<20)
	conn, err = c.DialUnix(ctx, startEcho(t, "unix", filepath.Join(t.TempDir(), "echo.sock")))
	if err != nil {
		t.Fatal(err)
	}
	checkEcho(t, conn, 100)
	refused := reservePort(t)
	if _, err := c.DialTCP(ctx, refused); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("DialTCP via proxy to a closed port: err = %v, want the upstream refusal", err)
	}

	// A second client works while the first has a command running.
	stdinR, stdinW := io.Pipe()
	out1 := new(testutil.Buffer)
	type result struct {
		status int
		err    error
	}
	first := make(chan result, 1)
	go func() {
		status, err := c.Run(ctx, Cmd{Script: "cat", Stdin: stdinR, Stdout: out1})
		first <- result{status, err}
	}()
	stdinW.Write([]byte("first\n"))
	out1.WaitFor(t, "first\n", 10*time.Second)
	c2 := p.dial(t)
	if out, err := c2.Output(ctx, Cmd{Script: "echo second"}); err != nil || string(out) != "second\n" {
		t.Errorf("Output on a second proxy client = %q, %v", out, err)
	}
	stdinW.Close()
	select {
	case r := <-first:
		if r.err != nil || r.status != 0 || out1.String() != "first\n" {
			t.Errorf("first client's cat = %d, %v, %q", r.status, r.err, out1.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("first client's cat did not end after its stdin closed")
	}

	// Cancelling a command through the proxy reaches the upstream.
	cctx, cancel := context.WithCancel(ctx)
	ready := new(testutil.Buffer)
	go func() {
		ready.WaitFor(t, "ready", 10*time.Second)
		cancel()
	}()
	if status, err := c.Run(cctx, Cmd{Script: "echo ready; exec sleep 100", Stdout: ready}); !errors.Is(err, context.Canceled) || status != -1 {
		t.Errorf("cancelled Run via proxy = %d, %v", status, err)
	}
	srv.waitEvent(t, "sleep killed by SIGTERM", func(e string) bool { return e == "exit signal: terminated" })

	// Other channel types are refused; global requests answered locally.
	_, _, err = c.ssh.OpenChannel("x11", nil)
	var oe *ssh.OpenChannelError
	if !errors.As(err, &oe) || oe.Reason != ssh.UnknownChannelType {
		t.Errorf("x11 channel via proxy: err = %v, want unknown channel type", err)
	}
	if ok, _, err := c.ssh.SendRequest(keepaliveRequest, true, nil); !ok || err != nil {
		t.Errorf("keepalive via proxy = %v, %v; want true", ok, err)
	}
	if ok, _, err := c.ssh.SendRequest("tcpip-forward", true, ssh.Marshal(struct {
		Addr string
		Port uint32
	}{"127.0.0.1", 0})); ok || err != nil {
		t.Errorf("tcpip-forward via proxy = %v, %v; want false", ok, err)
	}
	if n := srv.countEvents("global " + keepaliveRequest); n != 0 {
		t.Errorf("upstream saw %d keepalives from the proxy client, want 0", n)
	}
	if out, err := c.Output(ctx, Cmd{Script: "echo still"}); err != nil || string(out) != "still\n" {
		t.Errorf("Output via proxy at the end = %q, %v", out, err)
	}
}

func TestProxyHostKeyMismatch(t *testing.T) {
	_, up, _ := setup(t)
	p := startProxy(t, func(context.Context) (*Client, error) { return up, nil })
	other, _ := NewEd25519("")
	_, err := DialProxy(testContext(t, 10*time.Second), p.socket, other.Public)
	if !errors.Is(err, ErrHostKeyMismatch) || !strings.Contains(err.Error(), p.socket) {
		t.Errorf("DialProxy with the wrong host key: err = %v, want a mismatch naming %s", err, p.socket)
	}
	if _, err := DialProxy(testContext(t, 10*time.Second), p.socket, "garbage"); err == nil {
		t.Error("DialProxy with an unparsable host key succeeded")
	}
}

func TestProxyUpstreamError(t *testing.T) {
	_, up, _ := setup(t)
	var mu sync.Mutex
	var upErr error = errors.New("guest is asleep")
	p := startProxy(t, func(context.Context) (*Client, error) {
		mu.Lock()
		defer mu.Unlock()
		if upErr != nil {
			return nil, upErr
		}
		return up, nil
	})
	c := p.dial(t)
	ctx := testContext(t, 20*time.Second)
	// The reason is the whole message, as a RefusedError.
	var refused *RefusedError
	if _, err := c.Run(ctx, Cmd{Script: "true"}); !errors.As(err, &refused) || err.Error() != "guest is asleep" {
		t.Errorf("Run with a failing upstream: err = %v, want a RefusedError saying only the upstream error", err)
	}
	if _, err := c.DialTCP(ctx, "127.0.0.1:80"); err == nil || !strings.Contains(err.Error(), "guest is asleep") {
		t.Errorf("DialTCP with a failing upstream: err = %v, want it to carry the upstream error", err)
	}
	// The next channel asks upstream again.
	mu.Lock()
	upErr = nil
	mu.Unlock()
	if out, err := c.Output(ctx, Cmd{Script: "echo awake"}); err != nil || string(out) != "awake\n" {
		t.Errorf("Output after upstream recovered = %q, %v", out, err)
	}
}

func TestProxyCancel(t *testing.T) {
	srv, up, _ := setup(t)
	p := startProxy(t, func(context.Context) (*Client, error) { return up, nil })
	c := p.dial(t)
	ctx := testContext(t, 20*time.Second)

	out := new(testutil.Buffer)
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	runErr := make(chan error, 1)
	go func() {
		_, err := c.Run(ctx, Cmd{Script: "echo ready; cat", Stdin: stdinR, Stdout: out})
		runErr <- err
	}()
	out.WaitFor(t, "ready", 10*time.Second)

	p.cancel()
	waitClosed(t, p.done, "ServeProxy after cancel")
	if p.err != nil {
		t.Errorf("ServeProxy after cancel = %v, want nil", p.err)
	}
	waitClosed(t, c.Done(), "proxy client's Done after ServeProxy returned")
	select {
	case err := <-runErr:
		if err == nil {
			t.Error("Run through a stopped proxy returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run through a stopped proxy did not return")
	}
	if _, err := DialProxy(testContext(t, 10*time.Second), p.socket, p.hostKey); err == nil {
		t.Error("DialProxy succeeded after ServeProxy returned")
	}
	// The upstream channel was closed: cat saw EOF and exited.
	srv.waitEvent(t, "cat exiting", func(e string) bool { return strings.HasPrefix(e, "exit ") })
	if out, err := up.Output(ctx, Cmd{Script: "echo up"}); err != nil || string(out) != "up\n" {
		t.Errorf("upstream client after the proxy stopped = %q, %v", out, err)
	}
}

func TestRunSignals(t *testing.T) {
	for _, via := range []string{"direct", "proxy"} {
		t.Run(via, func(t *testing.T) {
			srv, c := clientVia(t, via)
			ctx := testContext(t, 20*time.Second)
			signals := make(chan os.Signal, 1)
			out := new(testutil.Buffer)
			type result struct {
				status int
				err    error
			}
			done := make(chan result, 1)
			cmd := `exec sh -c 'trap "echo got-usr1" USR1; trap "echo got-int; exit 7" INT; echo ready; while :; do sleep 0.1; done'`
			go func() {
				status, err := c.Run(ctx, Cmd{Script: cmd, Stdout: out, Signals: signals})
				done <- result{status, err}
			}()
			out.WaitFor(t, "ready", 10*time.Second)
			signals <- syscall.SIGWINCH // not forwarded
			signals <- syscall.SIGUSR1
			out.WaitFor(t, "got-usr1", 10*time.Second)
			signals <- syscall.SIGINT
			select {
			case r := <-done:
				if r.err != nil || r.status != 7 || out.String() != "ready\ngot-usr1\ngot-int\n" {
					t.Errorf("RunSignals = %d, %v, stdout %q; want 7, nil, ready/got-usr1/got-int", r.status, r.err, out.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatal("RunSignals did not return after SIGINT")
			}
			srv.waitEvent(t, "signal INT", func(e string) bool { return e == "signal INT" })
			var sent []string
			srv.mu.Lock()
			for _, e := range srv.events {
				if strings.HasPrefix(e, "signal ") {
					sent = append(sent, e)
				}
			}
			srv.mu.Unlock()
			if strings.Join(sent, ",") != "signal USR1,signal INT" {
				t.Errorf("signal requests %q, want USR1 then INT (SIGWINCH not forwarded)", sent)
			}

			// A closed signals channel is no signal.
			closed := make(chan os.Signal)
			close(closed)
			if status, err := c.Run(ctx, Cmd{Script: "sleep 0.2; exit 4", Signals: closed}); err != nil || status != 4 {
				t.Errorf("RunSignals with a closed signals channel = %d, %v; want 4", status, err)
			}
		})
	}
}

func TestRunSignalsPTY(t *testing.T) {
	for _, via := range []string{"direct", "proxy"} {
		t.Run(via, func(t *testing.T) {
			srv, c := clientVia(t, via)
			ctx := testContext(t, 20*time.Second)
			signals := make(chan os.Signal, 1)
			out := new(testutil.Buffer)
			stdinR, stdinW := io.Pipe() // open: the 0x03 must come from RunSignals
			defer stdinW.Close()
			type result struct {
				status int
				err    error
			}
			done := make(chan result, 1)
			// The test server has no real PTY: the INTR character arrives as a byte.
			cmd := `trap "" INT; echo ready; head -c1 | od -An -tx1`
			go func() {
				status, err := c.Run(ctx, Cmd{Script: cmd, Stdin: stdinR, Stdout: out, PTY: &PTY{Term: "xterm-test", Width: 90, Height: 20}, Signals: signals})
				done <- result{status, err}
			}()
			pty := srv.waitEvent(t, "pty-req", func(e string) bool { return strings.HasPrefix(e, "pty ") })
			if !strings.HasPrefix(pty, "pty xterm-test 90x20 ") || !strings.Contains(pty, " 53=1") {
				t.Errorf("pty request = %q, want xterm-test 90x20 with ECHO", pty)
			}
			out.WaitFor(t, "ready", 10*time.Second)
			signals <- syscall.SIGINT
			select {
			case r := <-done:
				if r.err != nil || r.status != 0 || strings.TrimSpace(strings.TrimPrefix(out.String(), "ready\n")) != "03" {
					t.Errorf("RunSignals with PTY = %d, %v, stdout %q; want 0, nil, ready and 03", r.status, r.err, out.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatal("RunSignals with PTY did not return after SIGINT")
			}
			srv.waitEvent(t, "signal INT", func(e string) bool { return e == "signal INT" })
		})
	}
}

func TestRunSignalsNoPTYNoIntr(t *testing.T) {
	srv, c, _ := setup(t)
	ctx := testContext(t, 20*time.Second)
	signals := make(chan os.Signal, 1)
	out := new(testutil.Buffer)
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	done := make(chan int, 1)
	go func() {
		status, _ := c.Run(ctx, Cmd{Script: `trap "" INT; echo ready; head -c1 | od -An -tx1`, Stdin: stdinR, Stdout: out, Signals: signals})
		done <- status
	}()
	out.WaitFor(t, "ready", 10*time.Second)
	signals <- syscall.SIGINT
	srv.waitEvent(t, "signal INT", func(e string) bool { return e == "signal INT" })
	stdinW.Write([]byte("A"))
	select {
	case status := <-done:
		if got := strings.TrimSpace(strings.TrimPrefix(out.String(), "ready\n")); status != 0 || got != "41" {
			t.Errorf("RunSignals without PTY = %d, first stdin byte %q; want 0, 41 (no INTR character)", status, got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunSignals without PTY did not return")
	}
}

func TestPipe(t *testing.T) {
	for _, via := range []string{"direct", "proxy"} {
		t.Run(via, func(t *testing.T) {
			srv, c := clientVia(t, via)
			ctx := testContext(t, 30*time.Second)

			rw, wait, err := c.Pipe(ctx, Cmd{Script: "cat"})
			if err != nil {
				t.Fatal(err)
			}
			data := make([]byte, 1<<20)
			rand.Read(data)
			go rw.Write(data)
			got := make([]byte, len(data))
			var n int
			within(t, 20*time.Second, "reading cat's echo", func() { n, err = io.ReadFull(rw, got) })
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("Pipe(cat) echoed %d bytes (%v) that differ from the %d sent", n, err, len(data))
			}
			within(t, 10*time.Second, "Close", func() { err = rw.Close() })
			if err != nil {
				t.Errorf("Close = %v", err)
			}
			var status int
			within(t, 10*time.Second, "wait", func() { status, err = wait() })
			if status != 0 || err != nil {
				t.Errorf("wait after Close = %d, %v; want 0, nil", status, err)
			}
			if _, err := rw.Write([]byte("x")); err == nil {
				t.Error("Write after Close succeeded")
			}
			rw.Close() // idempotent

			// A failing command: its stderr is in the error.
			rw, wait, err = c.Pipe(ctx, Cmd{Script: "echo starting; echo 'sshfs: bad mount point' >&2; exit 3"})
			if err != nil {
				t.Fatal(err)
			}
			var all []byte
			within(t, 10*time.Second, "reading to EOF", func() { all, _ = io.ReadAll(rw) })
			if string(all) != "starting\n" {
				t.Errorf("stdout = %q", all)
			}
			within(t, 10*time.Second, "wait", func() { status, err = wait() })
			var ee *ExitError
			if status != 3 || !errors.As(err, &ee) || ee.Status != 3 || !strings.Contains(err.Error(), "sshfs: bad mount point") {
				t.Errorf("wait for failing command = %d, %v; want 3 and an ExitError with its stderr", status, err)
			}
			rw.Close()

			// ctx ending stops the command.
			cctx, cancel := context.WithCancel(ctx)
			rw, wait, err = c.Pipe(cctx, Cmd{Script: "echo ready; exec sleep 100"})
			if err != nil {
				t.Fatal(err)
			}
			defer rw.Close()
			line := make([]byte, 6)
			within(t, 10*time.Second, "reading ready", func() { _, err = io.ReadFull(rw, line) })
			cancel()
			within(t, 10*time.Second, "wait after cancel", func() { status, err = wait() })
			if status != -1 || !errors.Is(err, context.Canceled) {
				t.Errorf("wait after cancel = %d, %v; want -1, context.Canceled", status, err)
			}
			srv.waitEvent(t, "sleep killed by SIGTERM", func(e string) bool { return e == "exit signal: terminated" })
		})
	}
}

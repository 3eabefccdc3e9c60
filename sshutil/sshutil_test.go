package sshutil

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
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

	"golang.org/x/crypto/ssh"
)

func TestKeyPairRoundtrip(t *testing.T) {
	kp, err := NewEd25519("devbox@test")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(kp.Private, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n")) {
		t.Errorf("private key is not OpenSSH PEM: %.40q", kp.Private)
	}
	if !strings.HasPrefix(kp.Public, "ssh-ed25519 AAAA") || !strings.HasSuffix(kp.Public, " devbox@test") {
		t.Errorf("public key = %q, want \"ssh-ed25519 AAAA... devbox@test\"", kp.Public)
	}
	signer, err := ssh.ParsePrivateKey(kp.Private)
	if err != nil {
		t.Fatalf("private key does not parse: %v", err)
	}
	pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(kp.Public))
	if err != nil {
		t.Fatalf("public key does not parse: %v", err)
	}
	if !bytes.Equal(pub.Marshal(), signer.PublicKey().Marshal()) || comment != "devbox@test" {
		t.Errorf("public key %q (comment %q) does not match private key", kp.Public, comment)
	}

	dir := filepath.Join(t.TempDir(), "keys")
	path := filepath.Join(dir, "id_ed25519")
	if err := WriteKeyPair(path, kp); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600, path + ".pub": 0o644} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (err %v), want %v", p, fi.Mode(), err, want)
		}
	}
	if b, _ := os.ReadFile(path + ".pub"); string(b) != kp.Public+"\n" {
		t.Errorf("%s.pub = %q, want %q", path, b, kp.Public+"\n")
	}
	got, err := ReadKeyPair(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Private, kp.Private) || got.Public != kp.Public {
		t.Errorf("ReadKeyPair = %+v, want %+v", got, kp)
	}

	// A .pub from another key is refused; a missing one is derived.
	other, _ := NewEd25519("")
	os.WriteFile(path+".pub", []byte(other.Public), 0o644)
	if _, err := ReadKeyPair(path); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("ReadKeyPair with mismatched .pub: err = %v, want mismatch", err)
	}
	os.Remove(path + ".pub")
	got, err = ReadKeyPair(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSuffix(kp.Public, " devbox@test"); got.Public != want {
		t.Errorf("derived public key = %q, want %q", got.Public, want)
	}
}

func TestHostKeyLine(t *testing.T) {
	for _, tc := range []struct{ addr, pub, want string }{
		{"127.0.0.1:2222", "ssh-ed25519 AAAAC3x host@guest\n", "[127.0.0.1]:2222 ssh-ed25519 AAAAC3x"},
		{"guest:22", "ssh-ed25519 AAAAC3x", "guest ssh-ed25519 AAAAC3x"},
	} {
		if got := HostKeyLine(tc.addr, tc.pub); got != tc.want {
			t.Errorf("HostKeyLine(%q, %q) = %q, want %q", tc.addr, tc.pub, got, tc.want)
		}
	}
}

// setup starts a server and returns a connected client and a target for it.
func setup(t *testing.T) (*testServer, *Client, Target) {
	t.Helper()
	keyFile, kp := testClientKey(t)
	srv := startTestServer(t, kp.Public)
	target := Target{Addr: srv.Addr, User: "dev", KeyFile: keyFile, HostKey: srv.HostKey}
	c, err := Dial(testContext(t, 10*time.Second), target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c, target
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestRunExitStatusAndStreams(t *testing.T) {
	_, c, _ := setup(t)
	ctx := testContext(t, 20*time.Second)
	for _, tc := range []struct {
		cmd            string
		status         int
		stdout, stderr string
	}{
		{"true", 0, "", ""},
		{"echo out; echo err >&2; exit 3", 3, "out\n", "err\n"},
		{"printf 'a b'; kill -TERM $$", 128 + 15, "a b", ""},
	} {
		var stdout, stderr bytes.Buffer
		status, err := c.Run(ctx, Cmd{Script: tc.cmd, Stdout: &stdout, Stderr: &stderr})
		if err != nil {
			t.Fatalf("Run(%q): %v", tc.cmd, err)
		}
		if status != tc.status || stdout.String() != tc.stdout || stderr.String() != tc.stderr {
			t.Errorf("Run(%q) = %d, stdout %q, stderr %q; want %d, %q, %q",
				tc.cmd, status, stdout.String(), stderr.String(), tc.status, tc.stdout, tc.stderr)
		}
	}
	// nil writers discard.
	if status, err := c.Run(ctx, Cmd{Script: "echo x; echo y >&2; exit 7"}); status != 7 || err != nil {
		t.Errorf("Run with nil writers = %d, %v; want 7, nil", status, err)
	}
}

func TestRunStdin(t *testing.T) {
	_, c, _ := setup(t)
	ctx := testContext(t, 20*time.Second)

	// 1 MiB through cat: every byte arrives and EOF ends the command.
	data := make([]byte, 1<<20)
	rand.Read(data)
	var stdout bytes.Buffer
	status, err := c.Run(ctx, Cmd{Script: "cat", Stdin: bytes.NewReader(data), Stdout: &stdout})
	if err != nil || status != 0 {
		t.Fatalf("cat = %d, %v", status, err)
	}
	if got, want := sha256.Sum256(stdout.Bytes()), sha256.Sum256(data); got != want || stdout.Len() != len(data) {
		t.Errorf("cat echoed %d bytes that differ from the %d sent", stdout.Len(), len(data))
	}

	// A stream that ends only when the writer closes it; the remote side
	// sees the EOF and can act after it.
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("one\ntwo\n"))
		pw.Close()
	}()
	stdout.Reset()
	status, err = c.Run(ctx, Cmd{Script: "wc -l; echo after-eof", Stdin: pr, Stdout: &stdout})
	if err != nil || status != 0 || strings.Fields(stdout.String())[0] != "2" || !strings.HasSuffix(stdout.String(), "after-eof\n") {
		t.Errorf("wc -l = %d, %v, stdout %q; want 0, nil, \"2\\nafter-eof\\n\"", status, err, stdout.String())
	}

	// nil stdin is empty input, not a hang.
	stdout.Reset()
	if status, err := c.Run(ctx, Cmd{Script: "cat; echo done", Stdout: &stdout}); status != 0 || err != nil || stdout.String() != "done\n" {
		t.Errorf("cat with nil stdin = %d, %v, %q", status, err, stdout.String())
	}
}

func TestOutput(t *testing.T) {
	_, c, _ := setup(t)
	ctx := testContext(t, 20*time.Second)
	out, err := c.Output(ctx, Cmd{Script: "echo hello"})
	if err != nil || string(out) != "hello\n" {
		t.Errorf("Output(echo hello) = %q, %v", out, err)
	}

	cmd := "echo partial; for i in 1 2 3 4 5 6 7; do echo line$i >&2; done; echo boom >&2; exit 2"
	out, err = c.Output(ctx, Cmd{Script: cmd})
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Output(%q) err = %v, want *ExitError", cmd, err)
	}
	if ee.Status != 2 || ee.Cmd != cmd || !strings.HasSuffix(ee.Stderr, "line7\nboom\n") || !strings.HasPrefix(ee.Stderr, "line1\n") {
		t.Errorf("ExitError = %+v", ee)
	}
	msg := err.Error()
	if !strings.Contains(msg, "status 2") || !strings.Contains(msg, "boom") || strings.Contains(msg, "line1") {
		t.Errorf("ExitError.Error() = %q, want status 2 and only the last stderr lines", msg)
	}
	if string(out) != "partial\n" {
		t.Errorf("Output stdout on failure = %q, want %q", out, "partial\n")
	}
}

func TestHostKeyMismatch(t *testing.T) {
	keyFile, kp := testClientKey(t)
	srv := startTestServer(t, kp.Public)
	other, _ := NewEd25519("")
	target := Target{Addr: srv.Addr, User: "dev", KeyFile: keyFile, HostKey: other.Public}

	_, err := Dial(testContext(t, 10*time.Second), target)
	if !errors.Is(err, ErrHostKeyMismatch) || !strings.Contains(err.Error(), "host key mismatch") || !strings.Contains(err.Error(), srv.Addr) {
		t.Fatalf("Dial with wrong host key: err = %v, want host key mismatch naming %s", err, srv.Addr)
	}
	var mm *HostKeyMismatchError
	wantFP, _ := Fingerprint(other.Public)
	gotFP, _ := Fingerprint(srv.HostKey)
	if !errors.As(err, &mm) || mm.Want != wantFP || mm.Got != gotFP || mm.Addr != srv.Addr ||
		!strings.HasPrefix(mm.Got, "SHA256:") || mm.GotType != "ssh-ed25519" {
		t.Errorf("Dial with wrong host key: %#v, want a *HostKeyMismatchError for %s with want %s, got %s", mm, srv.Addr, wantFP, gotFP)
	}

	// DialRetry gives up at once instead of retrying until ctx ends.
	start := time.Now()
	_, err = DialRetry(testContext(t, 10*time.Second), target)
	if !errors.Is(err, ErrHostKeyMismatch) || time.Since(start) > 3*time.Second {
		t.Errorf("DialRetry with wrong host key: err = %v after %v, want prompt mismatch", err, time.Since(start))
	}
}

func TestWrongClientKey(t *testing.T) {
	_, kp := testClientKey(t)
	srv := startTestServer(t, kp.Public)
	wrongKey, _ := testClientKey(t)
	target := Target{Addr: srv.Addr, User: "dev", KeyFile: wrongKey, HostKey: srv.HostKey}

	_, err := Dial(testContext(t, 10*time.Second), target)
	if err == nil || !strings.Contains(err.Error(), "unable to authenticate") || !strings.Contains(err.Error(), srv.Addr) {
		t.Fatalf("Dial with unauthorized key: err = %v, want auth failure naming %s", err, srv.Addr)
	}

	// DialRetry keeps trying (the key may not be installed yet) and reports the auth failure.
	_, err = DialRetry(testContext(t, 1500*time.Millisecond), target)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("DialRetry with unauthorized key: err = %v, want deadline wrapping auth failure", err)
	}
}

// reservePort returns a loopback address nothing listens on.
func reservePort(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func TestDialRetryWaitsForServer(t *testing.T) {
	keyFile, kp := testClientKey(t)
	srv := newTestServer(t, kp.Public)
	addr := reservePort(t)

	// The "guest" starts listening a second after we start dialling.
	var mu sync.Mutex
	var listenedAt time.Time
	timer := time.AfterFunc(time.Second, func() {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listen on reserved %s: %v", addr, err)
			return
		}
		mu.Lock()
		listenedAt = time.Now()
		mu.Unlock()
		srv.serve(t, lis)
	})
	t.Cleanup(func() { timer.Stop() })

	target := Target{Addr: addr, User: "dev", KeyFile: keyFile, HostKey: srv.HostKey}
	c, err := DialRetry(testContext(t, 15*time.Second), target)
	if err != nil {
		t.Fatalf("DialRetry: %v", err)
	}
	defer c.Close()
	mu.Lock()
	started := !listenedAt.IsZero()
	mu.Unlock()
	if !started {
		t.Fatal("DialRetry returned a client before the server listened")
	}
	if out, err := c.Output(testContext(t, 10*time.Second), Cmd{Script: "echo ok"}); err != nil || string(out) != "ok\n" {
		t.Errorf("Output after DialRetry = %q, %v", out, err)
	}
}

func TestDialRetryNothingListens(t *testing.T) {
	keyFile, _ := testClientKey(t)
	other, _ := NewEd25519("")
	addr := reservePort(t)
	target := Target{Addr: addr, User: "dev", KeyFile: keyFile, HostKey: other.Public}

	start := time.Now()
	_, err := DialRetry(testContext(t, 1500*time.Millisecond), target)
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("DialRetry succeeded with nothing listening")
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "gave up after") {
		t.Errorf("err = %q, want it to name %s and the time tried", err, addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want it to wrap ECONNREFUSED and context.DeadlineExceeded", err)
	}
	if elapsed < time.Second || elapsed > 4*time.Second {
		t.Errorf("DialRetry returned after %v, want about 1.5s", elapsed)
	}
}

func TestDialHungServer(t *testing.T) {
	keyFile, _ := testClientKey(t)
	other, _ := NewEd25519("")
	// Accepts TCP but never speaks SSH.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
		}
	}()
	target := Target{Addr: lis.Addr().String(), User: "dev", KeyFile: keyFile, HostKey: other.Public}

	// ctx cancellation aborts the handshake.
	start := time.Now()
	_, err = Dial(testContext(t, 300*time.Millisecond), target)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Errorf("Dial to hung server with 300ms ctx: err = %v after %v", err, time.Since(start))
	}

	// So does the per-attempt handshake timeout.
	target.HandshakeTimeout = 300 * time.Millisecond
	start = time.Now()
	_, err = Dial(context.Background(), target)
	if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), target.Addr) || time.Since(start) > 3*time.Second {
		t.Errorf("Dial to hung server with 300ms handshake timeout: err = %v after %v", err, time.Since(start))
	}
}

// notifyWriter closes ready on the first write containing marker.
type notifyWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	ready  chan struct{}
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.ready != nil && strings.Contains(w.buf.String(), w.marker) {
		close(w.ready)
		w.ready = nil
	}
	return len(p), nil
}

func TestRunCancel(t *testing.T) {
	srv, c, _ := setup(t)
	ctx, cancel := context.WithCancel(testContext(t, 20*time.Second))
	ready := make(chan struct{})
	stdout := &notifyWriter{marker: "ready", ready: ready}
	go func() {
		select {
		case <-ready:
			cancel()
		case <-ctx.Done():
		}
	}()

	start := time.Now()
	status, err := c.Run(ctx, Cmd{Script: "echo ready; exec sleep 100", Stdout: stdout})
	if !errors.Is(err, context.Canceled) || status != -1 {
		t.Fatalf("cancelled Run = %d, %v; want -1, context.Canceled", status, err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("cancelled Run took %v", elapsed)
	}
	srv.waitEvent(t, "a TERM signal request", func(e string) bool { return e == "signal TERM" })
	srv.waitEvent(t, "sleep killed by SIGTERM", func(e string) bool { return e == "exit signal: terminated" })

	// The connection is still usable.
	if out, err := c.Output(testContext(t, 10*time.Second), Cmd{Script: "echo still"}); err != nil || string(out) != "still\n" {
		t.Errorf("Output after cancel = %q, %v", out, err)
	}
}

func TestUpload(t *testing.T) {
	srv, c, _ := setup(t)
	ctx := testContext(t, 20*time.Second)
	dir := t.TempDir()

	// A fake sudo on the server's PATH records that it was used.
	bin := filepath.Join(t.TempDir(), "bin")
	os.Mkdir(bin, 0o755)
	sudoLog := filepath.Join(bin, "sudo.log")
	os.WriteFile(filepath.Join(bin, "sudo"), []byte("#!/bin/sh\n[ \"$1\" = -n ] || exit 99\nshift\necho \"$*\" >> "+sudoLog+"\nexec \"$@\"\n"), 0o755)
	srv.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH")}

	for _, tc := range []struct {
		name    string
		content []byte
		mode    os.FileMode
		sudo    bool
	}{
		{"script.sh", []byte("#!/bin/sh\necho hi\n"), 0o755, false},
		{"it's a file", []byte("x\x00y\n"), 0o640, true},
		{"script.sh", []byte("replaced"), 0o600, false}, // overwrite
		{"empty", nil, 0o644, false},
	} {
		p := filepath.Join(dir, tc.name)
		if err := c.Upload(ctx, tc.content, p, tc.mode, tc.sudo); err != nil {
			t.Fatalf("Upload %s: %v", tc.name, err)
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, tc.content) {
			t.Errorf("%s = %q, %v; want %q", tc.name, got, err, tc.content)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode() != tc.mode {
			t.Errorf("%s mode = %v, want %v", tc.name, fi.Mode(), tc.mode)
		}
	}
	if log, _ := os.ReadFile(sudoLog); bytes.Count(log, []byte("\n")) != 1 {
		t.Errorf("sudo used %d times, want 1: %q", bytes.Count(log, []byte("\n")), log)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("upload dir holds %d entries, want 3 (no temp files left)", len(entries))
	}

	// A missing directory fails with the remote error.
	err := c.Upload(ctx, []byte("x"), filepath.Join(dir, "missing", "f"), 0o644, false)
	var ee *ExitError
	if !errors.As(err, &ee) || !strings.Contains(err.Error(), "missing/f") {
		t.Errorf("Upload to missing dir: err = %v, want *ExitError naming the path", err)
	}
}

func TestShellWithoutTerminal(t *testing.T) {
	_, c, _ := setup(t)
	ctx := testContext(t, 20*time.Second)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() {
		w.Write([]byte("echo from-shell; exit 4\n"))
		w.Close()
	}()
	var stdout bytes.Buffer
	status, err := c.Run(ctx, Cmd{Stdin: r, Stdout: &stdout, PTY: TerminalPTY(r)})
	if err != nil || status != 4 || stdout.String() != "from-shell\n" {
		t.Errorf("Shell(login, pipe) = %d, %v, %q; want 4, nil, \"from-shell\\n\"", status, err, stdout.String())
	}
	status, err = c.Run(ctx, Cmd{Script: "exit 5"})
	if err != nil || status != 5 {
		t.Errorf("Shell(exit 5, nil) = %d, %v", status, err)
	}
}

// TestDialRetryLeavesASilentConnection: like QEMU's user networking while
// the guest boots, the first connection is accepted but never answered;
// DialRetry gives up on it and reaches the server on a new one instead of
// waiting out the (here one-minute) handshake timeout.
func TestDialRetryLeavesASilentConnection(t *testing.T) {
	keyFile, kp := testClientKey(t)
	srv := startTestServer(t, kp.Public)
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { front.Close() })
	silentClosed := make(chan struct{})
	go func() {
		for n := 0; ; n++ {
			conn, err := front.Accept()
			if err != nil {
				return
			}
			if n == 0 { // silent: wait for the client to drop it
				go func() {
					io.Copy(io.Discard, conn)
					close(silentClosed)
				}()
				continue
			}
			back, err := net.Dial("tcp", srv.Addr)
			if err != nil {
				conn.Close()
				continue
			}
			go func() { io.Copy(back, conn); back.Close() }()
			go func() { io.Copy(conn, back); conn.Close() }()
		}
	}()
	target := Target{Addr: front.Addr().String(), User: "dev", KeyFile: keyFile, HostKey: srv.HostKey, HandshakeTimeout: time.Minute}
	c, err := DialRetry(testContext(t, 30*time.Second), target)
	if err != nil {
		t.Fatalf("DialRetry: %v", err)
	}
	defer c.Close()
	select {
	case <-silentClosed:
	case <-time.After(5 * time.Second):
		t.Error("the silent connection is still open")
	}
	if out, err := c.Output(testContext(t, 10*time.Second), Cmd{Script: "echo ok"}); err != nil || string(out) != "ok\n" {
		t.Errorf("Output = %q, %v", out, err)
	}
}

// An emulated guest is asked for chacha20-poly1305 first (it computes it
// about twice as fast as AES-GCM); others get Go's defaults.
func TestEmulatedGuestCipher(t *testing.T) {
	keyFile, kp := testClientKey(t)
	srv := startTestServer(t, kp.Public)
	target := Target{Addr: srv.Addr, User: "dev", KeyFile: keyFile, HostKey: srv.HostKey, Emulated: true}
	cfg, err := clientConfig(target)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Ciphers) == 0 || cfg.Ciphers[0] != ssh.CipherChaCha20Poly1305 {
		t.Errorf("emulated guest ciphers %v, want chacha20-poly1305 first", cfg.Ciphers)
	}
	c, err := Dial(testContext(t, 10*time.Second), target)
	if err != nil {
		t.Fatalf("dial with the emulated preference: %v", err)
	}
	c.Close()
	target.Emulated = false
	if cfg, _ := clientConfig(target); cfg.Ciphers != nil {
		t.Errorf("a guest with hardware acceleration gets %v, want Go's defaults", cfg.Ciphers)
	}
}

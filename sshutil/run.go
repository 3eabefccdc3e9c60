package sshutil

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"
)

// cancelGrace is how long Run waits, after signalling and closing a cancelled
// session, for the session's output to drain before returning anyway.
const cancelGrace = 2 * time.Second

// ExitError reports a remote command that ran but exited non-zero.
type ExitError struct {
	Cmd    string
	Status int    // exit status; 128+n if killed by signal n
	Stderr string // the command's full stderr
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("remote command %s exited with status %d", shorten(e.Cmd), e.Status)
	if tail := lastLines(e.Stderr, 5, 1000); tail != "" {
		msg += ": " + tail
	}
	return msg
}

// Run runs cmd in a new session and returns its exit status; err is only
// for transport failures, never for a non-zero exit. cmd.Stdout and
// cmd.Stderr are never written after Run returns; cmd.Stdin may still be
// read once more after Run returns if the command did not consume it all.
// If ctx is cancelled, Run sends SIGTERM to the remote command, closes the
// session and returns ctx.Err().
//
// Every signal received on cmd.Signals while the command runs is sent to
// the remote command as an SSH "signal" request instead of affecting the
// caller: SIGINT as "INT", SIGTERM "TERM", SIGHUP "HUP", SIGQUIT "QUIT",
// SIGUSR1/2 "USR1"/"USR2", likewise ABRT, ALRM, FPE, ILL, KILL, PIPE and
// SEGV; other signals are ignored. Signals may be closed. The caller keeps
// ownership of the os/signal registration. OpenSSH's sshd honours signal
// requests since 7.9.
//
// With cmd.PTY the command gets a PTY (terminal modes: echo on) and, since
// a terminal delivers Ctrl-C as a character rather than a signal, SIGINT
// also writes the INTR character (0x03) to the remote stdin, if there is
// one and it has not reached EOF. A PTY from TerminalPTY puts the local
// terminal in raw mode until Run returns, and SIGWINCH on it updates the
// remote PTY's size.
func (c *Client) Run(ctx context.Context, cmd Cmd) (int, error) {
	line, err := cmd.Line()
	if err != nil {
		return -1, fmt.Errorf("run on %s: %w", c.addr, err)
	}
	if f, ok := cmd.Stdin.(*os.File); ok && f == nil {
		cmd.Stdin = nil
	}
	opts := runOpts{signals: cmd.Signals}
	if cmd.PTY == nil {
		return c.run(ctx, line, opts, cmd.Stdin, cmd.Stdout, cmd.Stderr)
	}
	req := *cmd.PTY
	if req.Term == "" {
		req.Term = os.Getenv("TERM")
	}
	if req.Term == "" {
		req.Term = "xterm-256color"
	}
	local := req.local
	if local != nil && (req.Width <= 0 || req.Height <= 0) {
		w, h, err := term.GetSize(int(local.Fd()))
		if err != nil {
			return -1, fmt.Errorf("run %s on %s: terminal size: %w", cmd, c.addr, err)
		}
		req.Width, req.Height = w, h
	}
	if req.Width <= 0 || req.Height <= 0 {
		req.Width, req.Height = 80, 24
	}

	var winch chan os.Signal
	if local != nil {
		fd := int(local.Fd())
		state, err := term.MakeRaw(fd)
		if err != nil {
			return -1, fmt.Errorf("run %s on %s: raw mode: %w", cmd, c.addr, err)
		}
		defer term.Restore(fd, state)
		winch = make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
	}
	stopWinch := make(chan struct{})
	defer close(stopWinch)

	opts.intr = true
	opts.setup = func(sess *ssh.Session) error {
		modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 14400, ssh.TTY_OP_OSPEED: 14400}
		if err := sess.RequestPty(req.Term, req.Height, req.Width, modes); err != nil {
			return fmt.Errorf("request pty: %w", err)
		}
		if winch == nil {
			return nil
		}
		go func() {
			for {
				select {
				case <-stopWinch:
					return
				case <-winch:
					if w, h, err := term.GetSize(int(local.Fd())); err == nil {
						sess.WindowChange(h, w)
					}
				}
			}
		}()
		return nil
	}
	return c.run(ctx, line, opts, cmd.Stdin, cmd.Stdout, cmd.Stderr)
}

// Output runs cmd and returns its stdout (cmd.Stdout and cmd.Stderr are
// not used). A non-zero exit is an *ExitError carrying the remote stderr.
func (c *Client) Output(ctx context.Context, cmd Cmd) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	status, err := c.Run(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if status != 0 {
		line, _ := cmd.Line()
		return stdout.Bytes(), &ExitError{Cmd: line, Status: status, Stderr: stderr.String()}
	}
	return stdout.Bytes(), nil
}

// signalNames maps the signals RFC 4254 names to their SSH names.
var signalNames = map[os.Signal]ssh.Signal{
	syscall.SIGABRT: ssh.SIGABRT, syscall.SIGALRM: ssh.SIGALRM, syscall.SIGFPE: ssh.SIGFPE,
	syscall.SIGHUP: ssh.SIGHUP, syscall.SIGILL: ssh.SIGILL, syscall.SIGINT: ssh.SIGINT,
	syscall.SIGKILL: ssh.SIGKILL, syscall.SIGPIPE: ssh.SIGPIPE, syscall.SIGQUIT: ssh.SIGQUIT,
	syscall.SIGSEGV: ssh.SIGSEGV, syscall.SIGTERM: ssh.SIGTERM, syscall.SIGUSR1: ssh.SIGUSR1,
	syscall.SIGUSR2: ssh.SIGUSR2,
}

// runOpts adjusts run.
type runOpts struct {
	setup   func(*ssh.Session) error // called before the command starts
	signals <-chan os.Signal         // forwarded to the remote command
	intr    bool                     // SIGINT also writes 0x03 to the remote stdin
}

// run is Run with options; an empty cmd starts the login shell.
func (c *Client) run(ctx context.Context, cmd string, opts runOpts, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if err := ctx.Err(); err != nil {
		return -1, err
	}
	sess, err := c.ssh.NewSession()
	if err != nil {
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) {
			// The other side said why (the agent: no connection to the
			// guest, and what to do): that is the whole message.
			return -1, &RefusedError{Reason: oce.Message}
		}
		return -1, fmt.Errorf("run %s on %s: new session: %w", shorten(cmd), c.addr, err)
	}
	defer sess.Close()
	out, errOut := newGatedWriter(stdout), newGatedWriter(stderr)
	defer out.close()
	defer errOut.close()

	// To inject the INTR character, stdin goes through a pipe we also write
	// to; io.Pipe keeps concurrent writes whole.
	var intr io.Writer
	if opts.intr && opts.signals != nil && stdin != nil {
		pr, pw := io.Pipe()
		src := stdin
		go func() {
			_, err := io.Copy(pw, src)
			pw.CloseWithError(err)
		}()
		defer pr.Close() // ends the copy at its next write
		stdin, intr = pr, pw
	}
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, out, errOut

	if opts.setup != nil {
		if err := opts.setup(sess); err != nil {
			return -1, fmt.Errorf("run %s on %s: %w", shorten(cmd), c.addr, err)
		}
	}
	if cmd == "" {
		err = sess.Shell()
	} else {
		err = sess.Start(cmd)
	}
	if err != nil {
		return -1, fmt.Errorf("run %s on %s: %w", shorten(cmd), c.addr, err)
	}

	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	signals := opts.signals
wait:
	for {
		select {
		case err = <-done:
			break wait
		case sig, ok := <-signals:
			if !ok {
				signals = nil
				continue
			}
			if name, known := signalNames[sig]; known {
				sess.Signal(name)
			}
			if sig == syscall.SIGINT && intr != nil {
				// Not inline: the write waits while the remote stdin is full.
				go intr.Write([]byte{0x03})
			}
		case <-ctx.Done():
			sess.Signal(ssh.SIGTERM)
			sess.Close()
			select {
			case <-done:
			case <-time.After(cancelGrace):
			}
			return -1, ctx.Err()
		}
	}

	var exitErr *ssh.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exitErr):
		return exitErr.ExitStatus(), nil
	default:
		return -1, fmt.Errorf("run %s on %s: %w", shorten(cmd), c.addr, err)
	}
}

// Upload writes content to remotePath with mode, via a temporary file in the
// same directory that is renamed into place, so readers never see a partial
// file. The directory must exist. With sudo it runs as root.
func (c *Client) Upload(ctx context.Context, content []byte, remotePath string, mode os.FileMode, sudo bool) error {
	suffix := make([]byte, 6)
	rand.Read(suffix)
	tmp := path.Join(path.Dir(remotePath), "."+path.Base(remotePath)+".devbox-"+hex.EncodeToString(suffix))
	script := `umask 077 && cat > "$1" && chmod "$2" "$1" && mv -f "$1" "$3" || { rc=$?; rm -f "$1"; exit $rc; }`
	cmd := Cmd{Script: script, Args: []string{tmp, fmt.Sprintf("%o", mode.Perm()), remotePath}, Root: sudo, Stdin: bytes.NewReader(content)}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	status, err := c.Run(ctx, cmd)
	if err != nil {
		return fmt.Errorf("upload %s to %s: %w", remotePath, c.addr, err)
	}
	if status != 0 {
		line, _ := cmd.Line()
		return fmt.Errorf("upload %s to %s: %w", remotePath, c.addr,
			&ExitError{Cmd: line, Status: status, Stderr: stderr.String()})
	}
	return nil
}

// gatedWriter forwards to w until closed, then drops writes, so a session's
// leftover copy goroutines cannot touch the caller's writer after run returns.
type gatedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func newGatedWriter(w io.Writer) *gatedWriter {
	if w == nil {
		w = io.Discard
	}
	return &gatedWriter{w: w}
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return len(p), nil
	}
	return g.w.Write(p)
}

func (g *gatedWriter) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// shorten returns cmd quoted and cut to a length fit for an error message.
func shorten(cmd string) string {
	const max = 60
	if r := []rune(cmd); len(r) > max {
		cmd = string(r[:max]) + "..."
	}
	return fmt.Sprintf("%q", cmd)
}

// lastLines returns the trimmed tail of s: at most its last n lines and max bytes.
func lastLines(s string, n, max int) string {
	s = strings.TrimSpace(s)
	if len(s) > max {
		s = s[len(s)-max:]
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// RefusedError is a session the server refused, with its reason (the
// agent's when it has no connection to the guest).
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return e.Reason }

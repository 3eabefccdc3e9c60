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

// Run runs cmd, a shell command line, in a new session and returns its exit
// status; err is only for transport failures, never for a non-zero exit.
// stdin may be nil (empty input); its EOF closes the remote stdin. stdout and
// stderr may be nil (discarded) and are never written after Run returns;
// stdin may still be read once more after Run returns if the command did not
// consume it all. If ctx is cancelled, Run sends SIGTERM to the remote
// command, closes the session and returns ctx.Err().
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	return c.run(ctx, cmd, nil, stdin, stdout, stderr)
}

// Output runs cmd and returns its stdout. A non-zero exit is an *ExitError
// carrying the remote stderr.
func (c *Client) Output(ctx context.Context, cmd string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	status, err := c.Run(ctx, cmd, nil, &stdout, &stderr)
	if err != nil {
		return nil, err
	}
	if status != 0 {
		return stdout.Bytes(), &ExitError{Cmd: cmd, Status: status, Stderr: stderr.String()}
	}
	return stdout.Bytes(), nil
}

// Shell runs cmd, or a login shell if cmd is empty, interactively. If stdin is
// a terminal it is put in raw mode until Shell returns, and the remote side
// gets a PTY of the same size (TERM from the environment, default
// xterm-256color) that follows SIGWINCH. Otherwise Shell behaves like Run.
// It returns the remote exit status.
func (c *Client) Shell(ctx context.Context, cmd string, stdin *os.File, stdout, stderr io.Writer) (int, error) {
	var in io.Reader
	if stdin != nil {
		in = stdin
	}
	if stdin == nil || !term.IsTerminal(int(stdin.Fd())) {
		return c.run(ctx, cmd, nil, in, stdout, stderr)
	}
	fd := int(stdin.Fd())
	width, height, err := term.GetSize(fd)
	if err != nil {
		return -1, fmt.Errorf("shell on %s: terminal size: %w", c.addr, err)
	}
	state, err := term.MakeRaw(fd)
	if err != nil {
		return -1, fmt.Errorf("shell on %s: raw mode: %w", c.addr, err)
	}
	defer term.Restore(fd, state)

	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	stopWinch := make(chan struct{})
	defer close(stopWinch)

	setup := func(sess *ssh.Session) error {
		termName := os.Getenv("TERM")
		if termName == "" {
			termName = "xterm-256color"
		}
		modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 14400, ssh.TTY_OP_OSPEED: 14400}
		if err := sess.RequestPty(termName, height, width, modes); err != nil {
			return fmt.Errorf("request pty: %w", err)
		}
		go func() {
			for {
				select {
				case <-stopWinch:
					return
				case <-winch:
					if w, h, err := term.GetSize(fd); err == nil {
						sess.WindowChange(h, w)
					}
				}
			}
		}()
		return nil
	}
	return c.run(ctx, cmd, setup, in, stdout, stderr)
}

// run is Run with an optional setup of the session before the command starts;
// an empty cmd starts the login shell.
func (c *Client) run(ctx context.Context, cmd string, setup func(*ssh.Session) error, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if err := ctx.Err(); err != nil {
		return -1, err
	}
	sess, err := c.ssh.NewSession()
	if err != nil {
		return -1, fmt.Errorf("run %s on %s: new session: %w", shorten(cmd), c.addr, err)
	}
	defer sess.Close()
	out, errOut := newGatedWriter(stdout), newGatedWriter(stderr)
	defer out.close()
	defer errOut.close()
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, out, errOut

	if setup != nil {
		if err := setup(sess); err != nil {
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
	select {
	case err = <-done:
	case <-ctx.Done():
		sess.Signal(ssh.SIGTERM)
		sess.Close()
		select {
		case <-done:
		case <-time.After(cancelGrace):
		}
		return -1, ctx.Err()
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
// file. The directory must exist. With sudo the commands run under
// non-interactive sudo (sudo -n).
func (c *Client) Upload(ctx context.Context, content []byte, remotePath string, mode os.FileMode, sudo bool) error {
	suffix := make([]byte, 6)
	rand.Read(suffix)
	tmp := path.Join(path.Dir(remotePath), "."+path.Base(remotePath)+".devbox-"+hex.EncodeToString(suffix))
	script := fmt.Sprintf("umask 077 && cat > %[1]s && chmod %[2]o %[1]s && mv -f %[1]s %[3]s || { rc=$?; rm -f %[1]s; exit $rc; }",
		shellQuote(tmp), mode.Perm(), shellQuote(remotePath))
	cmd := "sh -c " + shellQuote(script)
	if sudo {
		cmd = "sudo -n " + cmd
	}
	var stderr bytes.Buffer
	status, err := c.Run(ctx, cmd, bytes.NewReader(content), nil, &stderr)
	if err != nil {
		return fmt.Errorf("upload %s to %s: %w", remotePath, c.addr, err)
	}
	if status != 0 {
		return fmt.Errorf("upload %s to %s: %w", remotePath, c.addr,
			&ExitError{Cmd: cmd, Status: status, Stderr: stderr.String()})
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

// shellQuote quotes s as one POSIX shell word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
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

package sshutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// errNoPipeCommand is a Pipe without a program or script to run.
var errNoPipeCommand = errors.New("no command to pipe to")

// pipeStderrMax bounds the stderr a Pipe keeps for its wait error.
const pipeStderrMax = 64 << 10

// Pipe starts cmd in a new session and returns its stdin and stdout as one
// stream, plus a wait func; it is meant for commands that speak a protocol on
// stdin/stdout, such as "sshfs -o passive". cmd's stdio, PTY and signals
// must be unset: the stream is its stdio.
//
// Reads return the command's stdout and then io.EOF once the command has
// ended. Close sends EOF to the command's stdin, gives the command up to 2s
// to exit (so a command that ends on EOF reports its status), then closes the
// session; it is idempotent and always returns nil. Unread stdout is buffered
// only up to the SSH window (about 2 MiB), after which the command blocks.
//
// wait blocks until the command has ended and may be called any number of
// times. It returns (0, nil) on success, (status, *ExitError) on a non-zero
// exit, the error carrying the last 64 KiB of the command's stderr (stderr is
// otherwise discarded), and (-1, err) on a transport failure or when the
// session was closed before the command reported its status. If ctx ends
// before the command does, the command gets SIGTERM, the session is closed
// and wait returns an error wrapping ctx.Err().
func (c *Client) Pipe(ctx context.Context, command Cmd) (io.ReadWriteCloser, func() (int, error), error) {
	if command.Stdin != nil || command.Stdout != nil || command.Stderr != nil || command.PTY != nil || command.Signals != nil {
		return nil, nil, fmt.Errorf("pipe %s on %s: the pipe is the command's stdio: Stdin, Stdout, Stderr, PTY and Signals must be unset", command, c.addr)
	}
	cmd, err := command.Line()
	if err != nil || cmd == "" {
		return nil, nil, fmt.Errorf("pipe on %s: %w", c.addr, errors.Join(err, errNoPipeCommand))
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("pipe %s on %s: %w", shorten(cmd), c.addr, err)
	}
	sess, err := c.ssh.NewSession()
	if err != nil {
		return nil, nil, fmt.Errorf("pipe %s on %s: new session: %w", shorten(cmd), c.addr, err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, nil, fmt.Errorf("pipe %s on %s: %w", shorten(cmd), c.addr, err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, nil, fmt.Errorf("pipe %s on %s: %w", shorten(cmd), c.addr, err)
	}
	p := &pipe{c: c, cmd: cmd, sess: sess, stdin: stdin, stdout: stdout, exited: make(chan struct{})}
	sess.Stderr = &p.stderr
	if err := sess.Start(cmd); err != nil {
		sess.Close()
		return nil, nil, fmt.Errorf("pipe %s on %s: %w", shorten(cmd), c.addr, err)
	}
	go func() {
		stop := context.AfterFunc(ctx, func() {
			sess.Signal(ssh.SIGTERM)
			sess.Close()
		})
		err := sess.Wait()
		if !stop() {
			err = ctx.Err()
		}
		sess.Close()
		p.waitErr = err
		close(p.exited)
	}()
	return p, p.wait, nil
}

// pipe is the stream Pipe returns.
type pipe struct {
	c      *Client
	cmd    string
	sess   *ssh.Session
	stdin  io.WriteCloser
	stdout io.Reader
	stderr tailBuffer

	closeOnce sync.Once
	exited    chan struct{} // closed when sess.Wait has returned
	waitErr   error         // its result, or ctx.Err(); set before exited is closed
}

func (p *pipe) Read(b []byte) (int, error)  { return p.stdout.Read(b) }
func (p *pipe) Write(b []byte) (int, error) { return p.stdin.Write(b) }

func (p *pipe) Close() error {
	p.closeOnce.Do(func() {
		p.stdin.Close()
		grace := time.NewTimer(cancelGrace)
		defer grace.Stop()
		select {
		case <-p.exited:
		case <-grace.C:
		}
		p.sess.Close()
	})
	return nil
}

func (p *pipe) wait() (int, error) {
	<-p.exited
	var exitErr *ssh.ExitError
	switch err := p.waitErr; {
	case err == nil:
		return 0, nil
	case errors.As(err, &exitErr):
		return exitErr.ExitStatus(), fmt.Errorf("pipe on %s: %w", p.c.addr,
			&ExitError{Cmd: p.cmd, Status: exitErr.ExitStatus(), Stderr: p.stderr.String()})
	default:
		return -1, fmt.Errorf("pipe %s on %s: %w", shorten(p.cmd), p.c.addr, err)
	}
}

// tailBuffer keeps the last pipeStderrMax bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - pipeStderrMax; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

package sshutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// DialUnix opens a stream to the unix socket at path in the guest (an
// OpenSSH direct-streamlocal@openssh.com channel; sshd must allow stream
// local forwarding, its default). Cancelling ctx aborts the open; once open,
// the stream is independent of ctx.
//
// The returned net.Conn supports CloseWrite (half-close, sent as EOF) via
// interface{ CloseWrite() error }, but not deadlines: its Set*Deadline
// methods return errors. Its addresses are placeholders.
func (c *Client) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	conn, err := c.ssh.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("dial unix %s via %s: %w", path, c.addr, err)
	}
	return conn, nil
}

// DialTCP opens a stream to addr ("host:port") as seen from the guest, e.g.
// "127.0.0.1:80" for a port the guest listens on locally (an SSH
// direct-tcpip channel). ctx and the returned net.Conn behave as for
// DialUnix.
func (c *Client) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := c.ssh.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial tcp %s via %s: %w", addr, c.addr, err)
	}
	return conn, nil
}

// Done returns a channel closed once the connection has ended, whether by
// Close, by the server or by a transport failure (including Keepalive giving
// up). Every later operation on c fails.
func (c *Client) Done() <-chan struct{} {
	return c.done
}

// ErrKeepaliveUnanswered is wrapped by Keepalive's error when it gave up on
// a server that stopped answering, as opposed to a connection that ended.
var ErrKeepaliveUnanswered = errors.New("keepalives unanswered")

// unanswered is the last probe's error, also matching ErrKeepaliveUnanswered.
type unanswered struct{ err error }

func (e unanswered) Error() string   { return e.err.Error() }
func (e unanswered) Unwrap() []error { return []error{e.err, ErrKeepaliveUnanswered} }

// keepaliveRequest is the global request OpenSSH clients send as a liveness
// probe. Servers answer it, usually with a failure reply, which is enough.
const keepaliveRequest = "keepalive@openssh.com"

// Keepalive probes the server every interval with a keepalive@openssh.com
// global request and blocks until one of:
//   - ctx ends: it returns nil and leaves c open;
//   - maxMissed consecutive probes fail or get no reply (of either kind)
//     within every: it closes c and returns an error saying so, wrapping
//     ErrKeepaliveUnanswered;
//   - the connection ends by other means (see Done): it returns an error
//     wrapping the reason.
//
// A frozen guest or a host that slept is thus noticed within about
// every*maxMissed. every must be positive; maxMissed below 1 counts as 1.
func (c *Client) Keepalive(ctx context.Context, every time.Duration, maxMissed int) error {
	if every <= 0 {
		return fmt.Errorf("keepalive %s: interval %v is not positive", c.addr, every)
	}
	maxMissed = max(maxMissed, 1)
	missed := 0
	for {
		slot := time.NewTimer(every)
		reply := make(chan error, 1) // the probe may outlive this call
		go func() {
			_, _, err := c.ssh.SendRequest(keepaliveRequest, true, nil)
			reply <- err
		}()
		var err error
		slotOver := false
		select {
		case <-ctx.Done():
			slot.Stop()
			return nil
		case <-c.done:
			slot.Stop()
			return fmt.Errorf("keepalive %s: connection closed: %w", c.addr, c.waitErr)
		case err = <-reply:
		case <-slot.C:
			slotOver = true
			err = fmt.Errorf("no reply within %v", every)
		}
		if err == nil {
			missed = 0
		} else if missed++; missed >= maxMissed {
			slot.Stop()
			c.Close()
			return fmt.Errorf("keepalive %s: %d probes in a row failed, closed the connection: %w", c.addr, missed, unanswered{err})
		}
		if slotOver {
			continue
		}
		// Send the next probe when this one's slot is over.
		select {
		case <-ctx.Done():
			slot.Stop()
			return nil
		case <-c.done:
			slot.Stop()
			return fmt.Errorf("keepalive %s: connection closed: %w", c.addr, c.waitErr)
		case <-slot.C:
		}
	}
}

// GlobalRequest sends a global request named name with payload and waits
// for the reply: ok is the server's success flag, reply its payload. A
// server that does not know name answers with ok false. Cancelling ctx
// stops the wait (the reply, if any, is dropped).
func (c *Client) GlobalRequest(ctx context.Context, name string, payload []byte) (ok bool, reply []byte, err error) {
	type result struct {
		ok    bool
		reply []byte
		err   error
	}
	res := make(chan result, 1)
	go func() {
		ok, reply, err := c.ssh.SendRequest(name, true, payload)
		res <- result{ok, reply, err}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			return false, nil, fmt.Errorf("request %s on %s: %w", name, c.addr, r.err)
		}
		return r.ok, r.reply, nil
	case <-ctx.Done():
		return false, nil, fmt.Errorf("request %s on %s: %w", name, c.addr, ctx.Err())
	}
}

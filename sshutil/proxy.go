package sshutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// proxyUser is the user name DialProxy presents; ServeProxy ignores it.
const proxyUser = "devbox"

// proxiedChannelTypes are the channel types ServeProxy relays upstream.
var proxiedChannelTypes = map[string]bool{
	"session":                        true,
	"direct-tcpip":                   true,
	"direct-streamlocal@openssh.com": true,
}

// ServeProxy runs a local SSH multiplexer on l, like OpenSSH's ControlMaster:
// clients connect with DialProxy and their sessions, DialTCP and DialUnix
// streams are relayed over one upstream connection.
//
// Anyone who can connect to l is let in without authentication ("none"), so
// l must be guarded otherwise, e.g. a 0600 unix socket in a 0700 directory.
// The server presents hostKey, which clients pin.
//
// For each incoming "session", "direct-tcpip" or
// "direct-streamlocal@openssh.com" channel, ServeProxy calls upstream for the
// client to use (it may return a different client each time, e.g. after a
// reconnect) and opens a channel of the same type and extra data on it. If
// upstream fails, the channel is rejected as "connection failed" with the
// error's text; an upstream open failure is passed on as is. Then data and
// extended data (stderr) flow both ways, EOF and close are passed on, and
// every channel request (exec, pty-req, env, signal, window-change,
// exit-status, ...) is forwarded in either direction with its want-reply
// flag, its reply being the other side's. Other channel types are rejected
// as unknown. Global requests are answered locally: true for
// keepalive@openssh.com, so a client's Keepalive checks the proxy only, and
// false for anything else (see ServeProxyWith to answer others).
//
// upstream is called with ServeProxy's ctx, and must return promptly once
// it ends. ServeProxy returns nil once ctx ends, after closing l and every
// client connection (which closes their upstream channels). Failures of
// single connections are not reported. If l fails otherwise, or hostKey
// does not parse, ServeProxy returns an error; it always closes l and every
// client connection before returning.
//
// A failing Accept (out of file descriptors, an aborted connection) is
// retried with a delay from 5ms doubling to 1s, as net/http's Server does
// (see Accept); only a closed listener ends ServeProxy.
func ServeProxy(ctx context.Context, l net.Listener, hostKey KeyPair, upstream func(ctx context.Context) (*Client, error)) error {
	return ServeProxyWith(ctx, l, hostKey, upstream, ProxyOptions{})
}

// ProxyOptions are the optional parts of a ServeProxyWith server.
type ProxyOptions struct {
	// GlobalRequest answers clients' global requests other than
	// keepalive@openssh.com, e.g. a status query sent with
	// Client.GlobalRequest: ok is the reply's success flag and reply its
	// payload. It runs on the connection's request loop, so it must
	// return promptly. Nil refuses them all.
	GlobalRequest func(typ string, payload []byte) (ok bool, reply []byte)

	// Logf reports a failing Accept, once per run of failures, since the
	// listener is otherwise silent while it retries. Nil discards.
	Logf func(format string, args ...any)
}

// ServeProxyWith is ServeProxy with options.
func ServeProxyWith(ctx context.Context, l net.Listener, hostKey KeyPair, upstream func(ctx context.Context) (*Client, error), opts ProxyOptions) error {
	signer, err := ssh.ParsePrivateKey(hostKey.Private)
	if err != nil {
		l.Close()
		return fmt.Errorf("ssh proxy %s: parse host key: %w", l.Addr(), err)
	}
	cfg := &ssh.ServerConfig{NoClientAuth: true, ServerVersion: "SSH-2.0-devbox-proxy"}
	cfg.AddHostKey(signer)
	p := &proxy{cfg: cfg, upstream: upstream, global: opts.GlobalRequest, conns: make(map[net.Conn]bool)}

	shutdown := func() {
		l.Close()
		p.closeAll()
	}
	stop := context.AfterFunc(ctx, shutdown)
	defer p.wg.Wait()
	defer func() {
		// Also when Accept saw ctx end before the AfterFunc could run.
		stop()
		shutdown()
	}()
	var logf func(format string, args ...any)
	if opts.Logf != nil {
		logf = func(format string, args ...any) {
			opts.Logf("ssh proxy %s: %s", l.Addr(), fmt.Sprintf(format, args...))
		}
	}
	for {
		conn, err := Accept(ctx, l, logf)
		if ctx.Err() != nil {
			if conn != nil {
				conn.Close()
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("ssh proxy %s: accept: %w", l.Addr(), err)
		}
		if !p.track(conn) {
			conn.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(conn)
			p.serveConn(ctx, conn)
		}()
	}
}

// Accept returns the next connection on l. A failing l.Accept (out of
// file descriptors, an aborted connection: EMFILE, ENFILE, ECONNABORTED,
// ...) is retried after a delay from 5ms doubling to 1s, as net/http's
// Server does, so that a burst of failures does not end a server; logf,
// unless nil, is told of the first failure of each burst, as
// "accept: <error>; retrying".
//
// It fails only once ctx has ended, with ctx.Err(), or once l is closed,
// with an error wrapping net.ErrClosed. It does not close l itself: to
// stop a pending Accept when ctx ends, close l then (context.AfterFunc).
// A connection accepted just as ctx ends is returned like any other.
func Accept(ctx context.Context, l net.Listener, logf func(format string, args ...any)) (net.Conn, error) {
	var delay time.Duration
	for {
		conn, err := l.Accept()
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		if delay == 0 && logf != nil {
			logf("accept: %v; retrying", err)
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

// proxy is the state of one ServeProxy.
type proxy struct {
	cfg      *ssh.ServerConfig
	upstream func(ctx context.Context) (*Client, error)
	global   func(typ string, payload []byte) (bool, []byte) // may be nil
	wg       sync.WaitGroup                                  // connection handlers

	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

// track adds conn to the connections closeAll closes; false if that has
// already happened.
func (p *proxy) track(conn net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[conn] = true
	return true
}

func (p *proxy) untrack(conn net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, conn)
}

// closeAll closes every client connection, now and from now on.
func (p *proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for conn := range p.conns {
		conn.Close()
	}
}

// serveConn serves one client connection until it ends.
func (p *proxy) serveConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(DefaultHandshakeTimeout))
	sc, chans, reqs, err := ssh.NewServerConn(conn, p.cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	conn.SetDeadline(time.Time{})
	go func() {
		for req := range reqs {
			switch {
			case req.Type == keepaliveRequest:
				req.Reply(true, nil) // a no-op unless WantReply
			case p.global != nil:
				ok, reply := p.global(req.Type, req.Payload)
				req.Reply(ok, reply)
			default:
				req.Reply(false, nil)
			}
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if !proxiedChannelTypes[nc.ChannelType()] {
			nc.Reject(ssh.UnknownChannelType, fmt.Sprintf("channel type %q is not supported", nc.ChannelType()))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.relayChannel(ctx, nc)
		}()
	}
}

// relayChannel opens nc's counterpart upstream and relays between the two
// until either side closes.
func (p *proxy) relayChannel(ctx context.Context, nc ssh.NewChannel) {
	client, err := p.upstream(ctx)
	if err == nil && client == nil {
		err = errors.New("no upstream connection")
	}
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	up, upReqs, err := openChannel(ctx, client, nc.ChannelType(), nc.ExtraData())
	if err != nil {
		var oe *ssh.OpenChannelError
		if errors.As(err, &oe) {
			nc.Reject(oe.Reason, oe.Message)
		} else {
			nc.Reject(ssh.ConnectionFailed, err.Error())
		}
		return
	}
	down, downReqs, err := nc.Accept()
	if err != nil {
		up.Close()
		go ssh.DiscardRequests(upReqs)
		return
	}
	relay(down, downReqs, up, upReqs)
}

// openChannel is c's OpenChannel, given up on when ctx ends.
func openChannel(ctx context.Context, c *Client, typ string, extra []byte) (ssh.Channel, <-chan *ssh.Request, error) {
	type result struct {
		ch   ssh.Channel
		reqs <-chan *ssh.Request
		err  error
	}
	res := make(chan result, 1)
	go func() {
		ch, reqs, err := c.ssh.OpenChannel(typ, extra)
		res <- result{ch, reqs, err}
	}()
	select {
	case r := <-res:
		return r.ch, r.reqs, r.err
	case <-ctx.Done():
		go func() {
			if r := <-res; r.err == nil {
				r.ch.Close()
				ssh.DiscardRequests(r.reqs)
			}
		}()
		return nil, nil, ctx.Err()
	}
}

// relay passes data, extended data, EOF, requests and close between down
// and up, returning once both are closed (locally).
func relay(down ssh.Channel, downReqs <-chan *ssh.Request, up ssh.Channel, upReqs <-chan *ssh.Request) {
	upOutput := copyHalf(down, up)
	copyHalf(up, down)
	var downReq sync.Mutex // held while a request from down is forwarded
	upClosed := forwardRequests(down, upReqs, new(sync.Mutex))
	downClosed := forwardRequests(up, downReqs, &downReq)
	select {
	case <-downClosed:
	case <-upClosed:
		// Pass on what up sent before closing, unless down goes first:
		// its output, and the reply to a request it answered just before
		// closing (an exec answered by a command that exits at once).
		select {
		case <-upOutput:
		case <-downClosed:
		}
		downReq.Lock()
		defer downReq.Unlock()
	}
	up.Close()
	down.Close()
}

// copyHalf copies src's data and extended data to dst and then sends EOF on
// dst; the returned channel is closed after that.
func copyHalf(dst, src ssh.Channel) <-chan struct{} {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		io.Copy(dst, src)
	}()
	go func() {
		defer wg.Done()
		io.Copy(dst.Stderr(), src.Stderr())
	}()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		dst.CloseWrite()
		close(done)
	}()
	return done
}

// forwardRequests sends each request from reqs on dst, in order, replying
// with dst's reply, and holding busy while it does; the returned channel is
// closed once reqs is, that is once the channel reqs belongs to is closed.
func forwardRequests(dst ssh.Channel, reqs <-chan *ssh.Request, busy *sync.Mutex) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for req := range reqs {
			busy.Lock()
			ok, err := dst.SendRequest(req.Type, req.WantReply, req.Payload)
			req.Reply(ok && err == nil, nil) // a no-op unless WantReply
			busy.Unlock()
		}
	}()
	return done
}

// DialProxy connects to a ServeProxy server on the unix socket socketPath,
// pinning its host key hostKey (authorized_keys form); a mismatch is an error
// wrapping ErrHostKeyMismatch. The returned Client works like one from Dial,
// its commands and streams relayed by the proxy to the proxy's upstream.
// Keepalive on it checks the proxy, not the upstream. Cancelling ctx aborts
// the connect and handshake.
func DialProxy(ctx context.Context, socketPath, hostKey string) (*Client, error) {
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hostKey))
	if err != nil {
		return nil, fmt.Errorf("ssh proxy %s: parse host key %q: %w", socketPath, hostKey, err)
	}
	cfg := &ssh.ClientConfig{
		User:              proxyUser,
		HostKeyCallback:   pinnedHostKey(want),
		HostKeyAlgorithms: hostKeyAlgorithms(want),
		Timeout:           DefaultHandshakeTimeout,
	}
	return dialNetwork(ctx, "unix", socketPath, cfg, 0)
}

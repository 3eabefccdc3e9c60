package sshutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
)

// DefaultHandshakeTimeout bounds one SSH handshake when Target.HandshakeTimeout is zero.
const DefaultHandshakeTimeout = 10 * time.Second

// ErrHostKeyMismatch is wrapped by the error Dial returns when the server
// presents a host key other than Target.HostKey; errors.As finds the
// *HostKeyMismatchError with both keys.
var ErrHostKeyMismatch = errors.New("host key mismatch")

// HostKeyMismatchError is a server presenting a host key other than the
// pinned one: the guest's key changed, or another program answers on its
// address. Want and Got are SHA256 fingerprints as OpenSSH prints them
// ("SHA256:..."); it matches errors.Is(err, ErrHostKeyMismatch).
type HostKeyMismatchError struct {
	Addr              string // the server's address (or socket path)
	Want, Got         string // fingerprints of the pinned and the presented key
	WantType, GotType string // their algorithms, e.g. "ssh-ed25519"
}

func (e *HostKeyMismatchError) Error() string {
	// Addr is left out: the dial errors wrapping this one name it.
	return fmt.Sprintf("%v: the server presented %s %s, want %s %s", ErrHostKeyMismatch, e.GotType, e.Got, e.WantType, e.Want)
}

// Is makes errors.Is(err, ErrHostKeyMismatch) hold.
func (e *HostKeyMismatchError) Is(target error) bool { return target == ErrHostKeyMismatch }

// Target says where and how to connect. The host key is pinned: there is no
// trust-on-first-use and no way to skip the check.
type Target struct {
	Addr    string // "127.0.0.1:2222"
	User    string
	KeyFile string // private key path (unencrypted OpenSSH PEM)
	HostKey string // the server's host public key, authorized_keys form

	// HandshakeTimeout bounds the SSH handshake of each connection attempt;
	// zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Emulated says the guest's CPU is emulated (QEMU's TCG): the guest's
	// sshd then computes chacha20-poly1305 about twice as fast as AES-GCM
	// (no AES instructions worth the name), and every byte of a shared
	// folder passes through it, so that cipher is asked for first.
	Emulated bool
}

// emulatedCiphers is the cipher preference for an emulated guest.
var emulatedCiphers = []string{ssh.CipherChaCha20Poly1305, ssh.CipherAES128GCM, ssh.CipherAES256GCM,
	ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR}

// Client is an SSH connection to a guest. It is safe for concurrent use;
// each Run, Output, Shell, Upload, Pipe, DialUnix or DialTCP uses its own
// channel.
type Client struct {
	addr string
	ssh  *ssh.Client

	done    chan struct{} // closed when the connection has ended
	waitErr error         // why it ended; set before done is closed
}

// newClient wraps an established connection and starts watching for its end.
func newClient(addr string, sc ssh.Conn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) *Client {
	c := &Client{addr: addr, ssh: ssh.NewClient(sc, chans, reqs), done: make(chan struct{})}
	go func() {
		c.waitErr = c.ssh.Wait()
		close(c.done)
	}()
	return c
}

// Close closes the connection, ending any sessions still running.
func (c *Client) Close() error {
	return c.ssh.Close()
}

// Dial connects and authenticates once. Cancelling ctx aborts the TCP dial
// and the handshake. A server presenting a host key other than t.HostKey is
// refused with an error wrapping a *HostKeyMismatchError (and so
// ErrHostKeyMismatch).
func Dial(ctx context.Context, t Target) (*Client, error) {
	cfg, err := clientConfig(t)
	if err != nil {
		return nil, err
	}
	return dial(ctx, t, cfg)
}

// DialRetry calls Dial until it succeeds or ctx is done, backing off from
// 500ms to 2s between attempts, since a booting guest refuses, resets or
// hangs connections and may not have its authorized key installed yet. Every
// failure is retried except a host key mismatch (and a bad Target), which is
// returned at once. When ctx ends, the error names t.Addr and how long it
// tried, and wraps both the last dial error and ctx.Err().
func DialRetry(ctx context.Context, t Target) (*Client, error) {
	cfg, err := clientConfig(t)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	delay := 250 * time.Millisecond
	var lastErr error
	// While a guest boots, QEMU's user networking accepts the TCP
	// connection at once and retries its own connection to the guest with
	// growing gaps: a fresh connection when no banner came within
	// bootBanner reaches sshd seconds sooner. Once the guest has answered
	// (refused: its network is up) a banner that is late means a busy
	// sshd: from then on each attempt waits the whole handshake timeout.
	guestUp, slowSSHD := false, false
	for attempt := 1; ; attempt++ {
		banner := bootBanner
		if slowSSHD {
			banner = 0
		}
		c, err := dialNetwork(ctx, "tcp", t.Addr, cfg, banner)
		switch {
		case errors.Is(err, errNoBanner) && guestUp:
			slowSSHD = true
		case errors.Is(err, errClosedBeforeBanner):
			guestUp = true
		}
		if err == nil {
			return c, nil
		}
		if errors.Is(err, ErrHostKeyMismatch) {
			return nil, err
		}
		// An attempt cut short by ctx says nothing about the guest; keep the
		// previous error if there is one. (The dial's own deadline, taken
		// from ctx, can fire just before ctx reports it is done.)
		deadline, hasDeadline := ctx.Deadline()
		cut := ctx.Err() != nil || hasDeadline && !time.Now().Before(deadline)
		if !cut || lastErr == nil {
			lastErr = err
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("ssh %s: gave up after %s and %d attempts (%w): %w",
				t.Addr, time.Since(start).Round(100*time.Millisecond), attempt, ctx.Err(), lastErr)
		case <-timer.C:
		}
		delay = min(delay*2, time.Second)
	}
}

// bootBanner is how long DialRetry waits for the server's SSH banner on a
// connection before it tries a new one.
const bootBanner = 3 * time.Second

// clientConfig checks t and builds the ssh config; its errors are not worth retrying.
func clientConfig(t Target) (*ssh.ClientConfig, error) {
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(t.HostKey))
	if err != nil {
		return nil, fmt.Errorf("ssh %s: parse host key %q: %w", t.Addr, t.HostKey, err)
	}
	pem, err := os.ReadFile(t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: read private key: %w", t.Addr, err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: parse private key %s: %w", t.Addr, t.KeyFile, err)
	}
	timeout := t.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	var algs ssh.Config
	if t.Emulated {
		algs.Ciphers = emulatedCiphers
	}
	return &ssh.ClientConfig{
		Config:          algs,
		User:            t.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: pinnedHostKey(want),
		// Ask for the pinned key's algorithm, so a server holding several
		// host keys presents the one we know.
		HostKeyAlgorithms: hostKeyAlgorithms(want),
		Timeout:           timeout,
	}, nil
}

// awaitBanner waits up to within for the server's first bytes on conn
// and returns a conn that reads them again (the handshake parses them),
// or closes conn.
func awaitBanner(conn net.Conn, within time.Duration) (net.Conn, error) {
	conn.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	if n == 0 {
		conn.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("%w within %s (the guest is not answering yet)", errNoBanner, within)
		}
		return nil, fmt.Errorf("%w: %w", errClosedBeforeBanner, err)
	}
	conn.SetReadDeadline(time.Time{})
	return &replayConn{Conn: conn, r: io.MultiReader(bytes.NewReader(buf[:n]), conn)}, nil
}

var (
	errNoBanner           = errors.New("no SSH banner")
	errClosedBeforeBanner = errors.New("connection closed before the SSH banner")
)

// replayConn is a net.Conn whose reads start with bytes already read.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// pinnedHostKey accepts only the host key want.
func pinnedHostKey(want ssh.PublicKey) ssh.HostKeyCallback {
	return func(addr string, _ net.Addr, got ssh.PublicKey) error {
		if bytes.Equal(got.Marshal(), want.Marshal()) {
			return nil
		}
		return &HostKeyMismatchError{
			Addr: addr,
			Want: ssh.FingerprintSHA256(want), WantType: want.Type(),
			Got: ssh.FingerprintSHA256(got), GotType: got.Type(),
		}
	}
}

func hostKeyAlgorithms(key ssh.PublicKey) []string {
	if key.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{key.Type()}
}

func dial(ctx context.Context, t Target, cfg *ssh.ClientConfig) (*Client, error) {
	return dialNetwork(ctx, "tcp", t.Addr, cfg, 0)
}

// dialNetwork connects to addr on network ("tcp" or "unix") and performs the
// SSH handshake, bounded by cfg.Timeout and ctx. With banner > 0 it gives
// up when the server says nothing within banner.
func dialNetwork(ctx context.Context, network, addr string, cfg *ssh.ClientConfig, banner time.Duration) (*Client, error) {
	d := net.Dialer{
		Timeout: cfg.Timeout,
		KeepAliveConfig: net.KeepAliveConfig{ // TCP only
			Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3,
		},
	}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err // already "dial tcp 127.0.0.1:2222: ..."
	}
	if banner > 0 {
		if conn, err = awaitBanner(conn, banner); err != nil {
			return nil, fmt.Errorf("ssh %s: %w", addr, err)
		}
	}
	// Bound the handshake by both the timeout and ctx.
	conn.SetDeadline(time.Now().Add(cfg.Timeout))
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if !stop() {
		if err == nil {
			sc.Close()
		}
		conn.Close()
		return nil, fmt.Errorf("ssh handshake %s: %w", addr, ctx.Err())
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ssh handshake %s: %w", addr, err)
	}
	conn.SetDeadline(time.Time{})
	return newClient(addr, sc, chans, reqs), nil
}

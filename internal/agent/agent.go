// Package agent is devbox's per-instance host agent: one long-lived
// process that holds an SSH connection to the guest (with keepalives,
// reconnecting after a guest reboot or a host sleep) and serves the host
// side through it: the Docker socket forward, configured and published
// port forwards, reverse-SSHFS shared folders, and a local SSH
// multiplexer that lets `devbox run` start commands without a handshake
// with the guest.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/dockerports"
	"github.com/devbox-vm/devbox/internal/sharedfs"
	"github.com/devbox-vm/devbox/sshutil"
)

// File names inside the instance folder.
const (
	ControlSocket = "agent.sock"     // SSH multiplexer for devbox run
	DockerSocket  = "docker.sock"    // the guest's Docker socket, forwarded
	PIDFile       = "agent.pid"      // the running agent's process id
	LogFile       = "agent.log"      // what the agent did and why it failed
	HostKeyFile   = "agent_host_key" // the multiplexer's host key (+ .pub)
	ReadyFile     = "agent.ready"    // written once the first connection is served
)

// GuestDockerSocket is the engine's socket inside the guest.
const GuestDockerSocket = "/var/run/docker.sock"

// Agent serves one instance.
type Agent struct {
	Dir      string         // the instance folder: sockets, pid, log
	Target   sshutil.Target // the guest's SSH server
	Mounts   []config.Mount
	Forwards []config.Forward
	Log      *log.Logger

	mu      sync.Mutex
	client  *sshutil.Client
	changed chan struct{} // closed and replaced whenever client changes
}

// Run serves until ctx ends. It returns an error only when it cannot
// start (a socket it cannot create); a lost guest is retried for ever.
func (a *Agent) Run(ctx context.Context) error {
	a.changed = make(chan struct{})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	hostKey, err := a.hostKey()
	if err != nil {
		return err
	}
	control, err := listenUnix(filepath.Join(a.Dir, ControlSocket))
	if err != nil {
		return err
	}
	docker, err := listenUnix(filepath.Join(a.Dir, DockerSocket))
	if err != nil {
		control.Close()
		return err
	}
	var wg sync.WaitGroup
	start := func(fn func()) {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}
	start(func() {
		if err := sshutil.ServeProxy(ctx, control, hostKey, a.upstream); err != nil {
			a.Log.Printf("control socket: %v", err)
		}
	})
	start(func() { a.serveForward(ctx, docker, "docker socket", a.dialDocker) })
	for _, f := range a.Forwards {
		l, err := net.Listen("tcp", f.Host)
		if err != nil {
			a.Log.Printf("WARNING: forward %s → guest port %d: %v (the port is taken on the host; pick another in devbox.yaml)", f.Host, f.Guest, err)
			continue
		}
		guest := "127.0.0.1:" + strconv.Itoa(f.Guest)
		a.Log.Printf("forwarding %s → guest %s", f.Host, guest)
		start(func() { a.serveForward(ctx, l, "forward "+f.Host, a.dialGuestTCP(guest)) })
	}
	published := newPublisher(ctx, a)
	start(func() { a.connectLoop(ctx, published) })

	<-ctx.Done()
	control.Close()
	docker.Close()
	published.closeAll()
	a.setClient(nil)
	wg.Wait()
	return nil
}

// hostKey loads or makes the multiplexer's host key; devbox run pins it.
func (a *Agent) hostKey() (sshutil.KeyPair, error) {
	path := filepath.Join(a.Dir, HostKeyFile)
	if kp, err := sshutil.ReadKeyPair(path); err == nil {
		return kp, nil
	}
	kp, err := sshutil.NewEd25519("devbox-agent")
	if err != nil {
		return kp, err
	}
	return kp, sshutil.WriteKeyPair(path, kp)
}

// listenUnix makes a 0600 socket, replacing a stale one.
func listenUnix(path string) (net.Listener, error) {
	os.Remove(path)
	old := umask(0o177)
	l, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// connectLoop keeps one connection to the guest, reconnecting when it is
// lost, and starts the per-connection services (mounts, published ports).
func (a *Agent) connectLoop(ctx context.Context, published *publisher) {
	first := true
	for ctx.Err() == nil {
		c, err := sshutil.DialRetry(ctx, a.Target)
		if err != nil {
			if ctx.Err() == nil {
				a.Log.Printf("connect to guest: %v", err)
			}
			continue
		}
		a.Log.Printf("connected to guest %s", a.Target.Addr)
		cctx, cancel := context.WithCancel(ctx)
		a.setClient(c)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); a.serveMounts(cctx, c) }()
		go func() { defer wg.Done(); published.follow(cctx, c) }()
		if first {
			a.waitMounted(cctx)
			os.WriteFile(filepath.Join(a.Dir, ReadyFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
			first = false
		}
		kerr := make(chan error, 1)
		go func() { kerr <- c.Keepalive(cctx, 5*time.Second, 3) }()
		select {
		case <-c.Done():
			a.Log.Printf("connection to guest lost; reconnecting")
		case err := <-kerr:
			if err != nil {
				a.Log.Printf("guest stopped answering keepalives (%v); reconnecting", err)
			}
		case <-ctx.Done():
		}
		a.setClient(nil)
		cancel()
		c.Close()
		wg.Wait()
	}
}

func (a *Agent) setClient(c *sshutil.Client) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.client = c
	close(a.changed)
	a.changed = make(chan struct{})
}

// upstream is the current connection, waiting a while for a reconnect.
func (a *Agent) upstream(ctx context.Context) (*sshutil.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		a.mu.Lock()
		c, changed := a.client, a.changed
		a.mu.Unlock()
		if c != nil {
			return c, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("no connection to the guest %s (hint: see %s)", a.Target.Addr, filepath.Join(a.Dir, LogFile))
		}
	}
}

func (a *Agent) dialDocker(ctx context.Context) (net.Conn, error) {
	c, err := a.upstream(ctx)
	if err != nil {
		return nil, err
	}
	return c.DialUnix(ctx, GuestDockerSocket)
}

func (a *Agent) dialGuestTCP(addr string) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		c, err := a.upstream(ctx)
		if err != nil {
			return nil, err
		}
		return c.DialTCP(ctx, addr)
	}
}

// serveForward carries each connection accepted on l to what dial opens.
func (a *Agent) serveForward(ctx context.Context, l net.Listener, what string, dial func(context.Context) (net.Conn, error)) {
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				a.Log.Printf("%s: accept: %v", what, err)
			}
			return
		}
		go func() {
			defer conn.Close()
			remote, err := dial(ctx)
			if err != nil {
				a.Log.Printf("%s: %v", what, err)
				return
			}
			defer remote.Close()
			Pipe(conn, remote)
		}()
	}
}

// Pipe copies both ways until both directions end, passing half-closes on
// (docker attach and HTTP upgrades rely on them).
func Pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}

// serveMounts mounts each shared folder in the guest over c, serving its
// files from here, until ctx ends or the mount commands exit.
func (a *Agent) serveMounts(ctx context.Context, c *sshutil.Client) {
	if len(a.Mounts) == 0 {
		return
	}
	uid, gid, err := GuestIDs(ctx, c)
	if err != nil {
		a.Log.Printf("mounts: %v", err)
		return
	}
	var wg sync.WaitGroup
	for _, m := range a.Mounts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.Log.Printf("serving %s to the guest (%s)", m.Host, m.Mode)
			if err := ServeMount(ctx, c, m, uid, gid); err != nil && ctx.Err() == nil {
				a.Log.Printf("mount %s: %v", m.Host, err)
			}
		}()
	}
	wg.Wait()
}

// GuestIDs is the uid and gid of the user c is logged in as.
func GuestIDs(ctx context.Context, c *sshutil.Client) (uid, gid int, err error) {
	out, err := c.Output(ctx, "id -u; id -g")
	if err != nil {
		return 0, 0, fmt.Errorf("guest user ids: %w", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("guest user ids: unexpected output of id: %q", out)
	}
	uid, _ = strconv.Atoi(f[0])
	gid, _ = strconv.Atoi(f[1])
	return uid, gid, nil
}

// ServeMount mounts m in the guest at the same path (replacing a stale
// mount left by a dead agent) and serves its files from this process
// until ctx ends or sshfs in the guest exits.
func ServeMount(ctx context.Context, c *sshutil.Client, m config.Mount, uid, gid int) error {
	cmd := sharedfs.MountCommand(m.Host, m.Host, m.ReadOnly(), uid, gid)
	rwc, wait, err := c.Pipe(ctx, cmd)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- sharedfs.Serve(ctx, rwc, m.Host, m.ReadOnly()) }()
	var serveErr error
	select {
	case serveErr = <-done:
	case <-ctx.Done():
	}
	rwc.Close()
	code, err := wait()
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sshfs in the guest ended (exit %d): %w", code, err)
	}
	return serveErr
}

// waitMounted waits (bounded) until the guest sees every shared folder
// as a mount point, so `up` returns with them usable.
func (a *Agent) waitMounted(ctx context.Context) {
	if len(a.Mounts) == 0 {
		return
	}
	c, err := a.upstream(ctx)
	if err != nil {
		return
	}
	var checks []string
	for _, m := range a.Mounts {
		checks = append(checks, "mountpoint -q "+shellQuote(m.Host))
	}
	script := fmt.Sprintf("for i in $(seq 1 150); do if %s; then exit 0; fi; sleep 0.1; done; exit 1", strings.Join(checks, " && "))
	if code, err := c.Run(ctx, script, nil, nil, nil); err != nil || code != 0 {
		a.Log.Printf("WARNING: shared folders not mounted in the guest after 15s (exit %d, %v): is sshfs installed there? devbox provision installs it", code, err)
	}
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// publisher mirrors ports that containers publish in the guest on the
// host's 127.0.0.1.
type publisher struct {
	ctx       context.Context // the agent's: listeners outlive a connection
	a         *Agent
	mu        sync.Mutex
	listeners map[int]net.Listener
	reserved  map[int]bool // host ports of configured forwards
}

func newPublisher(ctx context.Context, a *Agent) *publisher {
	p := &publisher{ctx: ctx, a: a, listeners: map[int]net.Listener{}, reserved: map[int]bool{}}
	for _, f := range a.Forwards {
		if _, port, err := net.SplitHostPort(f.Host); err == nil {
			n, _ := strconv.Atoi(port)
			p.reserved[n] = true
		}
	}
	return p
}

// follow watches the engine's events over c until ctx ends.
func (p *publisher) follow(ctx context.Context, c *sshutil.Client) {
	dial := func(ctx context.Context) (net.Conn, error) { return c.DialUnix(ctx, GuestDockerSocket) }
	lastErr := ""
	for ctx.Err() == nil {
		err := dockerports.Watch(ctx, dial, p.update)
		if ctx.Err() != nil {
			return
		}
		// The engine restarted or is not up yet: try again shortly, and
		// say so once per kind of failure, not every two seconds.
		if err.Error() != lastErr {
			p.a.Log.Printf("docker events: %v; retrying", err)
			lastErr = err.Error()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func (p *publisher) update(ports []dockerports.Port) {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[int]dockerports.Port{}
	for _, port := range ports {
		want[port.HostPort] = port
	}
	for n, l := range p.listeners {
		if _, ok := want[n]; !ok {
			l.Close()
			delete(p.listeners, n)
			p.a.Log.Printf("stopped forwarding published port %d", n)
		}
	}
	for n, port := range want {
		if _, ok := p.listeners[n]; ok || p.reserved[n] {
			continue
		}
		addr := "127.0.0.1:" + strconv.Itoa(n)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			p.a.Log.Printf("WARNING: container %s publishes port %d, but %s is taken on the host: not forwarded", port.Container, n, addr)
			continue
		}
		p.listeners[n] = l
		p.a.Log.Printf("forwarding %s → container %s (published port %d)", addr, port.Container, n)
		go p.a.serveForward(p.ctx, l, fmt.Sprintf("published port %d", n), p.a.dialGuestTCP(addr))
	}
}

func (p *publisher) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n, l := range p.listeners {
		l.Close()
		delete(p.listeners, n)
	}
}

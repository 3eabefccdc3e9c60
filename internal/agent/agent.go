// Package agent is devbox's per-instance host agent: one long-lived
// process that holds an SSH connection to the guest (with keepalives,
// reconnecting after a guest reboot or a host sleep) and serves the host
// side through it: the Docker socket forward, configured and published
// port forwards, reverse-SSHFS shared folders, and a local SSH
// multiplexer that lets `devbox run` start commands without a handshake
// with the guest. The multiplexer also answers status queries
// (QueryStatus).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/sshutil"
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
	// KeepClock sets the guest's clock when it drifts from the host's
	// (after a pause or the host's sleep).
	KeepClock bool
	// UDP adds and removes the VM's datagram forwards (configured ones
	// with proto: udp, and ports containers publish as UDP). Nil: UDP is
	// not forwarded, and its forwards say why.
	UDP UDPForwarder
	// NameHost makes the host known in the guest as HostNames (see
	// hostnames.sh): through /etc/hosts, and for containers through a DNS
	// port the agent serves.
	NameHost bool
	// FileEvents replays host changes in read-write shared folders in
	// the guest, so that its inotify watchers see them; EventsIgnore is
	// left out (see hostwatch.Ignored).
	FileEvents   bool
	EventsIgnore []string
	// MountType is how shared folders should reach the guest (config's
	// mount_type). For virtiofs, Devices attaches the devices and
	// ShareDir holds virtiofsd's sockets; a nil Devices means virtio-fs
	// cannot work here, for the reason in NoVirtioFS, and folders go
	// through reverse SSHFS.
	MountType  string
	Devices    ShareDevices
	NoVirtioFS string
	ShareDir   string
	// VirtioFSReadOnly says virtiofsd can refuse writes, so read-only
	// folders may go through virtio-fs too (virtiofs.RefusesWrites).
	VirtioFSReadOnly bool

	timing timing // zero fields mean the defaults; tests shorten them

	initOnce sync.Once

	mu        sync.Mutex
	published *publisher // set by Run
	client    *sshutil.Client
	changed   chan struct{} // closed and replaced whenever client or conn changes
	conn      ConnStatus
	everUp    bool // a connection was up once: upstream no longer waits
	gen       int  // counts connections; stale mount updates are dropped
	docker    ServiceStatus
	mounts    []MountStatus   // as a.Mounts
	forwards  []ForwardStatus // as a.Forwards
}

// timing holds the agent's delays.
type timing struct {
	dialBase, dialMax         time.Duration // between failed dials
	mismatchBase, mismatchMax time.Duration // between dials that met another host key
	firstConnect              time.Duration // how long upstream waits for the first connection
	mountTimeout              time.Duration // for a shared folder to become a mount point
	keepaliveEvery            time.Duration
	keepaliveMissed           int
	clockEvery                time.Duration // between readings of the guest's clock
}

func (a *Agent) timings() timing {
	t := a.timing
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.dialBase, 500*time.Millisecond)
	def(&t.dialMax, 2*time.Second)
	def(&t.mismatchBase, time.Second)
	def(&t.mismatchMax, 30*time.Second)
	def(&t.firstConnect, 30*time.Second)
	def(&t.mountTimeout, 15*time.Second)
	def(&t.keepaliveEvery, 5*time.Second)
	def(&t.clockEvery, 5*time.Second)
	if t.keepaliveMissed <= 0 {
		t.keepaliveMissed = 3
	}
	return t
}

// init sets up the state Status reports; Run calls it, tests may too.
func (a *Agent) init() {
	a.initOnce.Do(func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.changed == nil {
			a.changed = make(chan struct{})
		}
		a.conn = ConnStatus{State: ConnConnecting, Since: time.Now()}
		a.docker = ServiceStatus{Path: filepath.Join(a.Dir, filenames.DockerSocket), State: Pending}
		a.mounts = make([]MountStatus, len(a.Mounts))
		for i, m := range a.Mounts {
			a.mounts[i] = MountStatus{Host: m.Host, Mode: modeName(m), State: Pending, Reason: waitingReason}
		}
		a.forwards = make([]ForwardStatus, len(a.Forwards))
		for i, f := range a.Forwards {
			a.forwards[i] = ForwardStatus{Host: f.Host, Guest: f.Guest, Proto: protoOf(f), State: Pending}
		}
	})
}

// Run serves until ctx ends. It returns an error only when it cannot
// start (a socket it cannot create); a lost guest is retried for ever.
func (a *Agent) Run(ctx context.Context) error {
	a.init()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	hostKey, err := a.hostKey()
	if err != nil {
		return err
	}
	// A deep instance folder gets its sockets in a short folder of its
	// own: a socket path is limited to 104 bytes on macOS.
	sockDir, err := SocketDir(a.Dir)
	if err != nil {
		return err
	}
	control, err := listenUnix(filepath.Join(sockDir, filenames.AgentSocket))
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.docker.Path = filepath.Join(sockDir, filenames.DockerSocket)
	a.mu.Unlock()
	docker, err := listenUnix(filepath.Join(sockDir, filenames.DockerSocket))
	if err != nil {
		control.Close()
		return err
	}
	a.setDocker(Listening, "")
	var wg sync.WaitGroup
	start := func(fn func()) {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}
	start(func() {
		opts := sshutil.ProxyOptions{GlobalRequest: a.answer, Logf: a.Log.Printf}
		if err := sshutil.ServeProxyWith(ctx, control, hostKey, a.upstream, opts); err != nil {
			a.Log.Printf("control socket: %v", err)
		}
	})
	start(func() { a.serveForward(ctx, docker, "docker socket", a.dialDocker) })
	for i, f := range a.Forwards {
		if protoOf(f) == "udp" {
			continue // see syncUDP
		}
		l, err := net.Listen("tcp", f.Host)
		if err != nil {
			a.Log.Printf("WARNING: forward %s → guest port %d: %v (the port is taken on the host; pick another in devbox.yaml)", f.Host, f.Guest, err)
			a.setForward(i, Failed, fmt.Sprintf("%v (hint: the port is taken on the host; pick another in devbox.yaml)", err))
			continue
		}
		guest := "127.0.0.1:" + strconv.Itoa(f.Guest)
		a.Log.Printf("forwarding %s → guest %s", f.Host, guest)
		a.setForward(i, Listening, "")
		start(func() { a.serveForward(ctx, l, "forward "+f.Host, a.dialGuestTCP(guest)) })
	}
	dnsPort := 0
	if a.NameHost {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			a.Log.Printf("WARNING: host names: %v (containers will not resolve %s)", err, strings.Join(HostNames, ", "))
		} else {
			dnsPort = pc.LocalAddr().(*net.UDPAddr).Port
			start(func() { a.serveHostNames(ctx, pc) })
		}
	}
	published := newPublisher(ctx, a)
	a.mu.Lock()
	a.published = published
	a.mu.Unlock()
	start(func() { a.connectLoop(ctx, published, dnsPort) })

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
	path := filepath.Join(a.Dir, filenames.AgentHostKey)
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
// Failed dials back off: up to 2s while the guest boots or is off, up to
// 30s when something presents another host key, since retrying that at
// once only fills the log.
func (a *Agent) connectLoop(ctx context.Context, published *publisher, dnsPort int) {
	t := a.timings()
	var delay time.Duration
	lastErr := ""                   // the dial failure logged last
	loggedKeys := map[string]bool{} // mismatching keys already logged
	for ctx.Err() == nil {
		c, err := sshutil.Dial(ctx, a.Target)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var mm *sshutil.HostKeyMismatchError
			if errors.As(err, &mm) {
				delay = min(max(2*delay, t.mismatchBase), t.mismatchMax)
				if !loggedKeys[mm.Got] {
					loggedKeys[mm.Got] = true
					a.Log.Printf("WARNING: %s presents host key %s %s, not the pinned %s %s: another program may listen on the guest's SSH port since the VM stopped, or the guest's host key changed; retrying every %v at most",
						a.Target.Addr, mm.GotType, mm.Got, mm.WantType, mm.Want, t.mismatchMax)
				}
				a.setMismatch(mm)
			} else {
				delay = min(max(2*delay, t.dialBase), t.dialMax)
				if k := errKey(err); k != lastErr {
					lastErr = k
					a.Log.Printf("connect to guest: %v; retrying", err)
				}
				a.setDialFailure(err)
			}
			timer := time.NewTimer(delay)
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
			timer.Stop()
			continue
		}
		delay, lastErr = 0, ""
		clear(loggedKeys)
		a.Log.Printf("connected to guest %s", a.Target.Addr)
		cctx, cancel := context.WithCancel(ctx)
		gen := a.setClient(c)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); a.serveMounts(cctx, c, gen) }()
		go func() { defer wg.Done(); published.follow(cctx, c) }()
		// The VM may have been restarted since the last connection,
		// with a new QEMU and none of the UDP forwards.
		published.syncUDP(cctx)
		if dnsPort != 0 {
			wg.Add(1)
			go func() { defer wg.Done(); a.nameHost(cctx, c, dnsPort) }()
		}
		if a.KeepClock {
			wg.Add(1)
			go func() { defer wg.Done(); a.keepClock(cctx, c) }()
		}
		kctx, stopKeepalive := context.WithCancel(cctx)
		kerr := make(chan error, 1)
		go func() { kerr <- c.Keepalive(kctx, t.keepaliveEvery, t.keepaliveMissed) }()
		var kaErr error
		select {
		case <-c.Done():
			stopKeepalive()
			kaErr = <-kerr
		case kaErr = <-kerr:
		case <-ctx.Done():
		}
		stopKeepalive()
		reason := "connection lost"
		if errors.Is(kaErr, sshutil.ErrKeepaliveUnanswered) {
			reason = "keepalives unanswered"
		}
		a.lost(reason)
		if ctx.Err() == nil {
			a.Log.Printf("guest %s: %s; reconnecting", a.Target.Addr, reason)
		}
		cancel()
		c.Close()
		wg.Wait()
	}
}

// errKey is what tells two dial failures apart in the log: the error
// without the local port, which differs each time.
func errKey(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Op + " " + op.Net + ": " + op.Err.Error()
	}
	return err.Error()
}

// setClient makes c (nil for none) the connection upstream hands out,
// and returns the new connection's generation.
func (a *Agent) setClient(c *sshutil.Client) int {
	a.init()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.client = c
	if c != nil {
		a.gen++
		a.everUp = true
		a.setConnLocked(ConnStatus{State: ConnUp})
	}
	a.signalLocked()
	return a.gen
}

// signalLocked wakes those waiting in upstream.
func (a *Agent) signalLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// upstream is the current connection. Without one it fails at once, so
// devbox run and docker say why instead of hanging, except before the
// first connection: up starts the agent right after the guest answered,
// so that one is waited for (up to 30s).
func (a *Agent) upstream(ctx context.Context) (*sshutil.Client, error) {
	a.init()
	wait := time.NewTimer(a.timings().firstConnect)
	defer wait.Stop()
	for {
		a.mu.Lock()
		c, changed, st, everUp := a.client, a.changed, a.conn, a.everUp
		a.mu.Unlock()
		if c != nil {
			return c, nil
		}
		if everUp || st.State == ConnHostKeyMismatch {
			return nil, &UnreachableError{Conn: st}
		}
		select {
		case <-changed:
		case <-wait.C:
			return nil, &UnreachableError{Conn: st}
		case <-ctx.Done():
			return nil, &UnreachableError{Conn: st}
		}
	}
}

// UnreachableError is what the agent's services answer while it has no
// connection to the guest.
type UnreachableError struct {
	Conn ConnStatus
}

func (e *UnreachableError) Error() string {
	st := e.Conn
	what := fmt.Sprintf("%s since %s", st.State, st.Since.Local().Format("15:04:05"))
	if st.Reason != "" {
		what += ": " + st.Reason
	}
	hint := "if the VM was halted or stopped, run devbox up"
	if st.State == ConnHostKeyMismatch {
		hint = "devbox status shows both keys; if the VM was stopped, run devbox up"
	}
	return fmt.Sprintf("instance not reachable: the agent has no connection to the guest (%s) (hint: %s)", what, hint)
}

// logKey makes forwards log an outage once, not once per connection.
func (e *UnreachableError) logKey() string {
	return e.Conn.State + " " + e.Conn.Since.String()
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

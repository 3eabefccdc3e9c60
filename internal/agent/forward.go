package agent

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/dockerports"
	"github.com/devbox-vm/devbox/sshutil"
)

// serveForward carries each connection accepted on l to what dial opens,
// until l is closed. A failing Accept (out of file descriptors, an
// aborted connection) is retried after a delay from 5ms doubling to 1s,
// as net/http's Server does, and logged once per run of failures (see
// sshutil.Accept): it must not end the forward while status says it is
// served. A failing dial closes the connection at once and is logged
// once until a dial works again. It returns once l is closed, which it
// does when ctx ends.
func (a *Agent) serveForward(ctx context.Context, l net.Listener, what string, dial func(context.Context) (net.Conn, error)) {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var logged dedup
	logf := func(format string, args ...any) {
		a.Log.Printf("%s: %s", what, fmt.Sprintf(format, args...))
	}
	for {
		conn, err := sshutil.Accept(ctx, l, logf)
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			remote, err := dial(ctx)
			if err != nil {
				if logged.first(err) {
					a.Log.Printf("%s: %v", what, err)
				}
				return
			}
			logged.reset()
			defer remote.Close()
			Pipe(conn, remote)
		}()
	}
}

// dedup tells the first of a run of like errors from the repeats.
type dedup struct {
	mu   sync.Mutex
	last string
}

// first reports whether err differs from the error before it. Errors
// with a logKey method (an outage) are alike while the outage lasts.
func (d *dedup) first(err error) bool {
	key := err.Error()
	if k, ok := err.(interface{ logKey() string }); ok {
		key = k.logKey()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if key == d.last {
		return false
	}
	d.last = key
	return true
}

func (d *dedup) reset() {
	d.mu.Lock()
	d.last = ""
	d.mu.Unlock()
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

// publisher mirrors ports that containers publish in the guest on the
// host's 127.0.0.1: TCP through the agent's own listeners, UDP through
// the VM's user network (see syncUDP).
type publisher struct {
	ctx       context.Context // the agent's: listeners outlive a connection
	a         *Agent
	mu        sync.Mutex
	listeners map[int]net.Listener      // TCP, by host port
	served    map[portKey]ForwardStatus // listening or failed
	reserved  map[portKey]bool          // host ports of configured forwards
	udp       map[int]dockerports.Port  // published UDP ports, by host port
}

// protoOf is f's protocol; an accepted forward recorded before udp
// existed has none.
func protoOf(f config.Forward) string {
	if f.Proto == "" {
		return "tcp"
	}
	return f.Proto
}

// portKey names a published port: TCP 53 and UDP 53 are two.
type portKey struct {
	proto string
	port  int
}

func newPublisher(ctx context.Context, a *Agent) *publisher {
	p := &publisher{ctx: ctx, a: a, listeners: map[int]net.Listener{}, served: map[portKey]ForwardStatus{}, reserved: map[portKey]bool{}, udp: map[int]dockerports.Port{}}
	for _, f := range a.Forwards {
		if _, port, err := net.SplitHostPort(f.Host); err == nil {
			n, _ := strconv.Atoi(port)
			p.reserved[portKey{protoOf(f), n}] = true
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

// update makes the published ports those of ports: new TCP ones are
// listened on (a taken host port is tried again on the next update, but
// logged once), gone ones closed; UDP ones are handed to syncUDP.
func (p *publisher) update(ports []dockerports.Port) {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[portKey]dockerports.Port{}
	udp := map[int]dockerports.Port{}
	for _, port := range ports {
		k := portKey{port.Proto, port.HostPort}
		if p.reserved[k] {
			continue
		}
		want[k] = port
		if port.Proto == "udp" {
			udp[port.HostPort] = port
		}
	}
	for k := range p.served {
		if _, ok := want[k]; ok {
			continue
		}
		if l, ok := p.listeners[k.port]; ok && k.proto == "tcp" {
			l.Close()
			delete(p.listeners, k.port)
			p.a.Log.Printf("stopped forwarding published port %d", k.port)
		}
		delete(p.served, k)
	}
	for k, port := range want {
		if k.proto != "tcp" {
			continue
		}
		n := k.port
		if _, ok := p.listeners[n]; ok {
			continue
		}
		addr := "127.0.0.1:" + strconv.Itoa(n)
		st := ForwardStatus{Host: addr, Guest: n, Proto: "tcp", Container: port.Container, State: Listening}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			st.State = Failed
			st.Reason = fmt.Sprintf("container %s publishes port %d, but %s is taken on the host: %v (hint: stop what listens there, or publish another port)", port.Container, n, addr, err)
			if old, ok := p.served[k]; !ok || old.Container != port.Container {
				p.a.Log.Printf("WARNING: container %s publishes port %d, but %s is taken on the host: not forwarded", port.Container, n, addr)
			}
			p.served[k] = st
			continue
		}
		p.listeners[n] = l
		p.served[k] = st
		p.a.Log.Printf("forwarding %s → container %s (published port %d)", addr, port.Container, n)
		go p.a.serveForward(p.ctx, l, fmt.Sprintf("published port %d", n), p.a.dialGuestTCP(addr))
	}
	// Only a change of the UDP set, or a UDP port that failed (tried
	// again, as a taken TCP port is), reaches the VM's driver: each sync
	// opens a libvirt connection. A new connection syncs anyway.
	if !maps.Equal(udp, p.udp) || p.udpFailedLocked() {
		p.udp = udp
		p.syncUDPLocked(p.ctx)
	}
}

// udpFailedLocked reports whether a UDP forward, published or
// configured, failed.
func (p *publisher) udpFailedLocked() bool {
	for k, st := range p.served {
		if k.proto == "udp" && st.State == Failed {
			return true
		}
	}
	p.a.mu.Lock() // after p.mu, as syncUDPLocked's setForward takes it
	defer p.a.mu.Unlock()
	for _, st := range p.a.forwards {
		if st.Proto == "udp" && st.State == Failed {
			return true
		}
	}
	return false
}

// status lists the published ports by port.
func (p *publisher) status() []ForwardStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []ForwardStatus
	for _, st := range p.served {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Guest < out[j].Guest || out[i].Guest == out[j].Guest && out[i].Proto < out[j].Proto
	})
	return out
}

func (p *publisher) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n, l := range p.listeners {
		l.Close()
		delete(p.listeners, n)
	}
}

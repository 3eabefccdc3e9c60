package agent

import (
	"context"
	"fmt"
	"strconv"

	"github.com/devbox-vm/devbox/vm"
)

// UDPForwarder changes the VM's datagram forwards. SSH has no channel
// for datagrams, so UDP is not carried by the agent's connection:
// QEMU's user network forwards it from the host's loopback to the
// guest's network address (see vm.Driver's AddUDPForward).
type UDPForwarder interface {
	UDPForwards(ctx context.Context) ([]vm.UDPForward, error)
	AddUDPForward(ctx context.Context, f vm.UDPForward) error
	RemoveUDPForward(ctx context.Context, host string) error
}

// udpWant is one UDP forward the agent should have.
type udpWant struct {
	guest      int
	configured int    // index in Agent.Forwards, or -1 for a published port
	container  string // the publishing container
}

// syncUDP makes the VM's UDP forwards the configured ones plus the ports
// containers publish as UDP.
func (p *publisher) syncUDP(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.syncUDPLocked(ctx)
}

func (p *publisher) syncUDPLocked(ctx context.Context) {
	a := p.a
	want := map[string]udpWant{}
	for i, f := range a.Forwards {
		if f.Proto == "udp" {
			want[f.Host] = udpWant{guest: f.Guest, configured: i}
		}
	}
	for n, port := range p.udp {
		want["127.0.0.1:"+strconv.Itoa(n)] = udpWant{guest: n, configured: -1, container: port.Container}
	}
	if len(want) == 0 && a.UDP == nil {
		return
	}
	report := func(host string, w udpWant, err error) {
		st := ForwardStatus{Host: host, Guest: w.guest, Proto: "udp", Container: w.container, State: Listening}
		if err != nil {
			st.State, st.Reason = Failed, err.Error()
		}
		if w.configured >= 0 {
			a.setForward(w.configured, st.State, st.Reason)
		} else {
			p.served[portKey{"udp", w.guest}] = st
		}
	}
	if a.UDP == nil {
		for host, w := range want {
			report(host, w, fmt.Errorf("UDP is forwarded by the VM's driver, which this agent was not given"))
		}
		return
	}
	have, err := a.UDP.UDPForwards(ctx)
	if err != nil {
		a.Log.Printf("WARNING: udp forwards: %v", err)
		for host, w := range want {
			report(host, w, err)
		}
		return
	}
	present := map[string]bool{}
	for _, f := range have {
		if w, ok := want[f.Host]; ok && w.guest == f.Guest {
			present[f.Host] = true
			continue
		}
		if err := a.UDP.RemoveUDPForward(ctx, f.Host); err != nil {
			a.Log.Printf("WARNING: %v", err)
			continue
		}
		a.Log.Printf("stopped forwarding udp %s", f.Host)
	}
	for host, w := range want {
		if present[host] {
			report(host, w, nil)
			continue
		}
		err := a.UDP.AddUDPForward(ctx, vm.UDPForward{Host: host, Guest: w.guest})
		switch {
		case err != nil && w.container != "":
			a.Log.Printf("WARNING: container %s publishes udp port %d: %v", w.container, w.guest, err)
		case err != nil:
			a.Log.Printf("WARNING: forward udp %s → guest port %d: %v", host, w.guest, err)
		case w.container != "":
			a.Log.Printf("forwarding udp %s → container %s (published port %d)", host, w.container, w.guest)
		default:
			a.Log.Printf("forwarding udp %s → guest port %d", host, w.guest)
		}
		report(host, w, err)
	}
}

package libvirt

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/devbox-vm/devbox/vm"
)

// UDP forwards are QEMU user-network host forwards added to the running
// process through its monitor (the human monitor's hostfwd_add: QMP has
// no command for them). libvirt marks the domain tainted by a monitor
// command in its log; the domain already carries its network on the QEMU
// command line, which taints it the same way.

// netdevID names the domain's user network (see domain.xml.tmpl).
const netdevID = "devboxnet0"

// monitorHMP asks for the human monitor's syntax (VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP).
const monitorHMP = 1

// hmp runs one human-monitor command on the running domain name and
// returns what it printed.
func (d *Driver) hmp(name, cmd string) (string, error) {
	dom, err := d.lookup(name)
	if err != nil {
		return "", err
	}
	out, err := d.l.QEMUDomainMonitorCommand(dom, cmd, monitorHMP)
	if err != nil {
		return "", fmt.Errorf("domain %s: monitor command %q: %w", name, cmd, err)
	}
	return out, nil
}

// UDPForwards implements vm.Driver, from the monitor's "info usernet".
func (d *Driver) UDPForwards(ctx context.Context, name string) ([]vm.UDPForward, error) {
	out, err := d.hmp(name, "info usernet")
	if err != nil {
		return nil, err
	}
	return parseUsernet(out), nil
}

// parseUsernet reads the UDP host forwards out of "info usernet":
//
//	Hub -1 (devboxnet0):
//	  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ
//	  TCP[HOST_FORWARD]  13       127.0.0.1 40213       10.0.2.15    22     0     0
//	  UDP[HOST_FORWARD]  15       127.0.0.1  5353       10.0.2.15  5353     0     0
func parseUsernet(out string) []vm.UDPForward {
	var fwds []vm.UDPForward
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[0] != "UDP[HOST_FORWARD]" {
			continue
		}
		guest, err := strconv.Atoi(f[5])
		if err != nil || net.ParseIP(f[2]) == nil {
			continue
		}
		fwds = append(fwds, vm.UDPForward{Host: net.JoinHostPort(f[2], f[3]), Guest: guest})
	}
	return fwds
}

// AddUDPForward implements vm.Driver. The monitor prints why a rule
// failed rather than failing the command.
func (d *Driver) AddUDPForward(ctx context.Context, name string, f vm.UDPForward) error {
	if _, _, err := net.SplitHostPort(f.Host); err != nil {
		return fmt.Errorf("udp forward %q: %w", f.Host, err)
	}
	out, err := d.hmp(name, fmt.Sprintf("hostfwd_add %s udp:%s-:%d", netdevID, f.Host, f.Guest))
	if err != nil {
		return err
	}
	if msg := strings.TrimSpace(out); msg != "" {
		return fmt.Errorf("udp %s → guest port %d: %s (hint: the port is taken on the host, or below 1024 for an ordinary user)", f.Host, f.Guest, msg)
	}
	return nil
}

// RemoveUDPForward implements vm.Driver.
func (d *Driver) RemoveUDPForward(ctx context.Context, name, host string) error {
	out, err := d.hmp(name, fmt.Sprintf("hostfwd_remove %s udp:%s", netdevID, host))
	if err != nil {
		return err
	}
	// QEMU prints "host forwarding rule for udp:… removed" or "… not found".
	if msg := strings.TrimSpace(out); !strings.HasSuffix(msg, " removed") && !strings.HasSuffix(msg, " not found") {
		return fmt.Errorf("remove udp forward %s: %s", host, msg)
	}
	return nil
}

package agent

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/devbox-vm/devbox/sshutil"
)

// GuestHostAddress is the host as the guest sees it: QEMU's user network
// maps this address to the host's 127.0.0.1, so a connection to it
// reaches whatever listens on the host's loopback, on any port.
const GuestHostAddress = "10.0.2.2"

// HostNames are the names under which the guest and its containers find
// the host: host.docker.internal as with Docker Desktop, and devbox's own.
var HostNames = []string{"host.devbox.internal", "host.docker.internal"}

//go:embed hostnames.sh
var hostNamesScript string

// serveHostNames answers DNS queries on pc until ctx ends: A queries for
// HostNames with GuestHostAddress, anything else about them with no
// record, and any other query by passing it to the host's resolvers (a
// resolver that keeps one socket open may send those the same way).
func (a *Agent) serveHostNames(ctx context.Context, pc net.PacketConn) {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	buf := make([]byte, 4096)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() == nil {
				a.Log.Printf("host names: %v", err)
			}
			return
		}
		query := append([]byte(nil), buf[:n]...)
		go func() {
			answer, err := answerHostName(query, forwardDNS)
			if err != nil {
				a.Log.Printf("host names: %v", err)
				return
			}
			pc.WriteTo(answer, from)
		}()
	}
}

// answerHostName answers query when it asks about one of HostNames, and
// returns what forward answers otherwise.
func answerHostName(query []byte, forward func([]byte) ([]byte, error)) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, fmt.Errorf("unreadable query: %w", err)
	}
	q, err := p.Question()
	if err != nil {
		return nil, fmt.Errorf("unreadable question: %w", err)
	}
	if !isHostName(q.Name.String()) {
		return forward(query)
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if q.Type == dnsmessage.TypeA && q.Class == dnsmessage.ClassINET {
		rh := dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60}
		if err := b.AResource(rh, dnsmessage.AResource{A: [4]byte(net.ParseIP(GuestHostAddress).To4())}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

func isHostName(fqdn string) bool {
	name := strings.ToLower(strings.TrimSuffix(fqdn, "."))
	for _, n := range HostNames {
		if name == n {
			return true
		}
	}
	return false
}

// forwardDNS asks the host's first resolver from /etc/resolv.conf.
func forwardDNS(query []byte) ([]byte, error) {
	servers := resolvers("/etc/resolv.conf")
	if len(servers) == 0 {
		return nil, errors.New("no nameserver in the host's /etc/resolv.conf to pass a query to")
	}
	c, err := net.Dial("udp", net.JoinHostPort(servers[0], "53"))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(query); err != nil {
		return nil, err
	}
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("pass a query to %s: %w", servers[0], err)
	}
	return buf[:n], nil
}

// resolvers lists the nameserver lines of a resolv.conf file.
func resolvers(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if f := strings.Fields(s.Text()); len(f) >= 2 && f[0] == "nameserver" && net.ParseIP(f[1]) != nil {
			out = append(out, f[1])
		}
	}
	return out
}

// nameHost sets the guest up to find the host by HostNames through the
// agent's DNS port (see hostnames.sh).
func (a *Agent) nameHost(ctx context.Context, c *sshutil.Client, port int) {
	var errb strings.Builder
	code, err := c.Run(ctx, sshutil.Cmd{Script: hostNamesScript, Args: []string{GuestHostAddress, strconv.Itoa(port)}, Root: true, Stderr: &errb})
	if ctx.Err() != nil {
		return
	}
	if err != nil || code != 0 {
		a.Log.Printf("WARNING: naming the host in the guest failed (exit %d): %v %s", code, err, strings.TrimSpace(errb.String()))
		return
	}
	a.Log.Printf("the guest finds the host as %s (%s, through port %d of the host for containers)", strings.Join(HostNames, " and "), GuestHostAddress, port)
}

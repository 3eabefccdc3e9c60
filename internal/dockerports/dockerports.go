// Package dockerports follows a Docker engine over its API socket and
// reports which TCP and UDP ports its running containers publish, so that devbox
// can mirror them on the host's loopback.
//
// Requests use unversioned paths ("/containers/json", not
// "/v1.41/containers/json"): the engine then answers in its own current
// API version. A pinned version would break on newer engines as they
// raise their minimum (Docker 29 refuses anything below 1.44), and the
// few fields read here (Names, Ports, and an event's Action or status)
// have been stable since API 1.22.
package dockerports

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Port is one published TCP or UDP port as the engine reports it.
type Port struct {
	HostIP    string // as published in the guest: "0.0.0.0", "127.0.0.1", "::" …
	HostPort  int    // the port on the guest's side, which devbox mirrors on the host's 127.0.0.1
	Container string // container name (without leading "/"), for messages
	Proto     string // "tcp" or "udp"
}

// refreshActions are the container events after which the published set
// may differ. Others (exec_*, health_status, attach, …) are ignored.
var refreshActions = map[string]bool{
	"start": true, "restart": true, "stop": true, "die": true, "kill": true,
	"pause": true, "unpause": true, "destroy": true, "rename": true,
}

// Watch calls update with the full current set of published TCP ports of
// the engine's running containers, sorted by HostPort and deduplicated by
// it (the IPv4 and IPv6 entries of one port are one Port; where several
// remain, the smallest HostIP, then Container, wins, so IPv4 is preferred).
// It does so once at start and then after every container event that may
// change the set (start, restart, stop, die, kill, pause, unpause,
// destroy, rename), but never twice in a row with the same set.
//
// The event stream is opened before the first listing, so no change
// between the two is missed. update runs on Watch's goroutine; Watch
// waits for it.
//
// Watch returns nil when ctx ends, and an error when the engine cannot be
// reached, answers with an error, or ends the event stream; the caller
// may then call Watch again, which reports the full set afresh. dial opens
// a new connection to the engine socket each time it is called.
func Watch(ctx context.Context, dial func(ctx context.Context) (net.Conn, error), update func([]Port)) error {
	// Proxy is nil: HTTP_PROXY must not capture requests meant for the socket.
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}

	err := watch(ctx, c, update)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func watch(ctx context.Context, c *http.Client, update func([]Port)) error {
	q := url.Values{"filters": {`{"type":["container"]}`}}
	resp, err := get(ctx, c, "/events?"+q.Encode())
	if err != nil {
		return fmt.Errorf("follow docker events: %w", err)
	}
	defer resp.Body.Close()

	var last []Port
	refresh := func() error {
		ports, err := list(ctx, c)
		if err != nil {
			return err
		}
		if last == nil || !slices.Equal(ports, last) {
			last = ports
			update(ports)
		}
		return nil
	}
	if err := refresh(); err != nil {
		return err
	}

	dec := json.NewDecoder(resp.Body)
	for {
		var ev struct {
			Type   string
			Action string
			Status string `json:"status"` // pre-1.22 name of Action
		}
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("docker event stream ended")
			}
			return fmt.Errorf("read docker events: %w", err)
		}
		action := cmp.Or(ev.Action, ev.Status)
		if (ev.Type != "" && ev.Type != "container") || !refreshActions[action] {
			continue
		}
		if err := refresh(); err != nil {
			return err
		}
	}
}

// list fetches the running containers and computes their published set.
func list(ctx context.Context, c *http.Client) ([]Port, error) {
	resp, err := get(ctx, c, "/containers/json")
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	defer resp.Body.Close()
	var cs []container
	if err := json.NewDecoder(resp.Body).Decode(&cs); err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	return published(cs), nil
}

// container is the part of a /containers/json entry Watch reads.
type container struct {
	Names []string
	Ports []apiPort
}

// apiPort is one entry of a container's Ports; PublicPort is 0 when the
// port is only exposed.
type apiPort struct {
	IP         string
	PublicPort int
	Type       string // "tcp", "udp" or "sctp"
}

// published returns cs's published TCP and UDP ports (SCTP is not
// forwarded), sorted by HostPort then Proto and one per both (see Watch).
// It never returns nil.
func published(cs []container) []Port {
	ports := []Port{}
	for _, c := range cs {
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		for _, p := range c.Ports {
			if (p.Type != "tcp" && p.Type != "udp") || p.PublicPort == 0 {
				continue
			}
			ports = append(ports, Port{HostIP: p.IP, HostPort: p.PublicPort, Container: name, Proto: p.Type})
		}
	}
	slices.SortFunc(ports, func(a, b Port) int {
		return cmp.Or(
			cmp.Compare(a.HostPort, b.HostPort),
			cmp.Compare(a.Proto, b.Proto),
			cmp.Compare(a.HostIP, b.HostIP),
			cmp.Compare(a.Container, b.Container))
	})
	return slices.CompactFunc(ports, func(a, b Port) bool { return a.HostPort == b.HostPort && a.Proto == b.Proto })
}

// get requests path from the engine and fails unless it answers 200 OK.
// The host name is a placeholder: the transport dials the socket.
func get(ctx context.Context, c *http.Client, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e struct{ Message string }
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			msg = e.Message
		}
		return nil, fmt.Errorf("engine answered %s: %s", resp.Status, msg)
	}
	return resp, nil
}

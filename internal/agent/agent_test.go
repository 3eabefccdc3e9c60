package agent

import (
	"context"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/dockerports"
	"github.com/devbox-vm/devbox/internal/testutil"
)

func TestPipeCopiesBothWaysAndPassesHalfClose(t *testing.T) {
	// client <-> [a  Pipe  b] <-> server, over real TCP so CloseWrite exists.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	client, a := dial(), <-accepted
	b, server := dial(), <-accepted
	done := make(chan struct{})
	go func() { Pipe(a, b); close(done) }()

	// The server answers only after it has seen the client's EOF: that is
	// what a half-close is for.
	go func() {
		got, _ := io.ReadAll(server)
		server.Write([]byte("echo:" + string(got)))
		server.(*net.TCPConn).CloseWrite()
	}()
	client.Write([]byte("ping"))
	client.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(client)
	if err != nil || string(reply) != "echo:ping" {
		t.Fatalf("reply %q, %v", reply, err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe did not return after both sides closed")
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestPublisherFollowsTheSet(t *testing.T) {
	var logs testutil.Buffer
	reserved, free, taken := freePort(t), freePort(t), 0
	squat, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer squat.Close()
	taken = squat.Addr().(*net.TCPAddr).Port

	a := &Agent{Log: log.New(&logs, "", 0), Forwards: []config.Forward{{Host: "127.0.0.1:" + strconv.Itoa(reserved), Guest: 80}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := newPublisher(ctx, a)
	defer p.closeAll()

	p.update([]dockerports.Port{{HostPort: free, Container: "web", Proto: "tcp"}, {HostPort: reserved, Container: "cfg", Proto: "tcp"}, {HostPort: taken, Container: "busy", Proto: "tcp"}})
	if _, ok := p.listeners[free]; !ok {
		t.Errorf("published port %d not forwarded", free)
	}
	if _, ok := p.listeners[reserved]; ok {
		t.Errorf("port %d of a configured forward taken over", reserved)
	}
	if _, ok := p.listeners[taken]; ok || !strings.Contains(logs.String(), "container busy publishes port "+strconv.Itoa(taken)) {
		t.Errorf("taken port: listeners %v, log %q", p.listeners, logs.String())
	}
	if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(free)); err != nil {
		t.Errorf("nothing listens on %d: %v", free, err)
	} else {
		c.Close()
	}

	p.update(nil)
	if len(p.listeners) != 0 {
		t.Errorf("listeners left: %v", p.listeners)
	}
	if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(free)); err == nil {
		c.Close()
		t.Errorf("port %d still listening after the container went", free)
	}
}

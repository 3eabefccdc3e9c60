package sshutil

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/testutil"
)

func TestProxySurvivesAcceptFailures(t *testing.T) {
	_, up, _ := setup(t)
	kp, err := NewEd25519("proxy")
	if err != nil {
		t.Fatal(err)
	}
	socket := t.TempDir() + "/proxy.sock"
	lis, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	logs := new(testutil.Buffer)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeProxyWith(ctx, lis, kp, func(context.Context) (*Client, error) { return up, nil },
			ProxyOptions{Logf: func(format string, args ...any) {
				fmt.Fprintln(logs, fmt.Sprintf(format, args...))
			}})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeProxyWith = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("ServeProxyWith did not return within 10s of cancel")
		}
	})

	// One descriptor is left for the client's socket, none for the
	// proxy's side of it: Accept fails with EMFILE until release.
	release := testutil.ExhaustFDs(t, 1)
	dialed := make(chan error, 1)
	var c *Client
	go func() {
		var err error
		c, err = DialProxy(testContext(t, 20*time.Second), socket, kp.Public)
		dialed <- err
	}()
	logs.WaitFor(t, "too many open files", 10*time.Second)
	release()

	select {
	case err := <-dialed:
		if err != nil {
			t.Fatalf("DialProxy while accept failed, then recovered: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the connection made while accept failed was never served")
	}
	defer c.Close()
	if out, err := c.Output(testContext(t, 10*time.Second), Cmd{Script: "echo ok"}); err != nil || string(out) != "ok\n" {
		t.Errorf("Output via the proxy after accept failures = %q, %v", out, err)
	}
	c2, err := DialProxy(testContext(t, 10*time.Second), socket, kp.Public)
	if err != nil {
		t.Fatalf("a new connection after accept failures: %v", err)
	}
	c2.Close()
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Errorf("logged %d accept failures, want 1 per run of failures:\n%s", n, logs.String())
	}
}

func TestProxyGlobalRequest(t *testing.T) {
	_, up, _ := setup(t)
	kp, err := NewEd25519("proxy")
	if err != nil {
		t.Fatal(err)
	}
	socket := t.TempDir() + "/proxy.sock"
	lis, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeProxyWith(ctx, lis, kp, func(context.Context) (*Client, error) { return up, nil },
			ProxyOptions{GlobalRequest: func(typ string, payload []byte) (bool, []byte) {
				if typ == "status@test" {
					return true, append([]byte("status of "), payload...)
				}
				return false, nil
			}})
	}()
	t.Cleanup(func() { cancel(); <-done })
	c, err := DialProxy(testContext(t, 10*time.Second), socket, kp.Public)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rctx := testContext(t, 10*time.Second)
	if ok, reply, err := c.GlobalRequest(rctx, "status@test", []byte("x")); !ok || string(reply) != "status of x" || err != nil {
		t.Errorf("GlobalRequest(status@test) = %v, %q, %v; want true, \"status of x\"", ok, reply, err)
	}
	if ok, _, err := c.GlobalRequest(rctx, "other@test", nil); ok || err != nil {
		t.Errorf("GlobalRequest(other@test) = %v, %v; want false, nil", ok, err)
	}
	if ok, _, err := c.GlobalRequest(rctx, keepaliveRequest, nil); !ok || err != nil {
		t.Errorf("keepalive = %v, %v; want true (answered by the proxy itself)", ok, err)
	}

	// Without the option, ServeProxy refuses them.
	plain := startProxy(t, func(context.Context) (*Client, error) { return up, nil }).dial(t)
	if ok, _, err := plain.GlobalRequest(rctx, "status@test", nil); ok || err != nil {
		t.Errorf("ServeProxy answered status@test: %v, %v", ok, err)
	}
}

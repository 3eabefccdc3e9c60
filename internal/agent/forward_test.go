package agent

import (
	"context"
	"io"
	"log"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/internal/testutil"
)

func TestServeForwardSurvivesAcceptFailures(t *testing.T) {
	logs := &testutil.Buffer{}
	a := &Agent{Log: log.New(logs, "", 0)}
	sock := filepath.Join(t.TempDir(), filenames.DockerSocket)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The far end greets each connection, without descriptors.
		a.serveForward(ctx, l, "docker socket", func(context.Context) (net.Conn, error) {
			near, far := net.Pipe()
			go func() { far.Write([]byte("hello")); far.Close() }()
			return near, nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("serveForward did not return within 10s of cancel")
		}
	})

	// The one spare descriptor goes to the client's socket; Accept has
	// none for its side and fails with EMFILE until release.
	release := testutil.ExhaustFDs(t, 1)
	early, err := net.Dial("unix", sock)
	if err != nil {
		release()
		t.Fatalf("connect with one descriptor left: %v", err)
	}
	defer early.Close()
	logs.WaitFor(t, "too many open files", 10*time.Second)
	release()

	for i, conn := range []net.Conn{early, nil} {
		if conn == nil {
			if conn, err = net.Dial("unix", sock); err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if got, err := io.ReadAll(conn); string(got) != "hello" || err != nil {
			t.Errorf("connection %d after accept failures: read %q, %v; want it served", i, got, err)
		}
	}
	if n := countLines(logs, "accept"); n != 1 {
		t.Errorf("%d log lines about accept, want 1 per run of failures:\n%s", n, logs.String())
	}
}

package agent

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// exhaustFDs lowers RLIMIT_NOFILE and fills the process's descriptor table
// up to it, leaving spare descriptors free; release undoes both. The whole
// test binary shares the table, so callers must not run in parallel.
func exhaustFDs(t *testing.T, spare int) (release func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	probe, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	lowest := probe.Fd()
	probe.Close()
	low := old
	low.Cur = uint64(lowest) + 64
	if low.Cur >= old.Cur {
		t.Skipf("RLIMIT_NOFILE %d is too low to lower", old.Cur)
	}
	var files []*os.File
	var once sync.Once
	release = func() {
		once.Do(func() {
			for _, f := range files {
				f.Close()
			}
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
				t.Errorf("restore RLIMIT_NOFILE: %v", err)
			}
		})
	}
	t.Cleanup(release)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := os.Open(os.DevNull)
		if errors.Is(err, syscall.EMFILE) {
			break
		}
		if err != nil {
			release()
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) < spare {
		release()
		t.Fatalf("only %d descriptors below the lowered limit", len(files))
	}
	for range spare {
		files[len(files)-1].Close()
		files = files[:len(files)-1]
	}
	return release
}

func TestServeForwardSurvivesAcceptFailures(t *testing.T) {
	logs := &syncBuffer{}
	a := &Agent{Log: log.New(logs, "", 0)}
	sock := filepath.Join(t.TempDir(), DockerSocket)
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
	release := exhaustFDs(t, 1)
	early, err := net.Dial("unix", sock)
	if err != nil {
		release()
		t.Fatalf("connect with one descriptor left: %v", err)
	}
	defer early.Close()
	logs.waitFor(t, "too many open files", 10*time.Second)
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
	if n := logs.countLines("accept"); n != 1 {
		t.Errorf("%d log lines about accept, want 1 per run of failures:\n%s", n, logs.String())
	}
}

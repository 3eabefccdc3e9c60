//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// eventLog gathers the lines of a running inotifylog.
type eventLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *eventLog) follow(r io.Reader) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		l.mu.Lock()
		l.lines = append(l.lines, s.Text())
		l.mu.Unlock()
	}
}

// count is how many lines equal line.
func (l *eventLog) count(line string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, got := range l.lines {
		if got == line {
			n++
		}
	}
	return n
}

// await waits until every line of want has come, and reports how long
// that took; it fails the test at the deadline.
func (l *eventLog) await(t *testing.T, who string, within time.Duration, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		missing := ""
		for _, w := range want {
			if l.count(w) == 0 {
				missing = w
				break
			}
		}
		if missing == "" {
			return time.Since(start)
		}
		if time.Since(start) > within {
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("%s: no %q within %v; saw:\n%s", who, missing, within, strings.Join(l.lines, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testFileEvents: changes made on the host in the shared folder raise the
// matching inotify events in the VM and in a container that bind-mounts
// the folder; the guest's own writes are not echoed back; ignored
// folders raise nothing.
func testFileEvents(t *testing.T, e *env) {
	watched := filepath.Join(e.project, "watched")
	os.MkdirAll(watched, 0o755)
	os.WriteFile(filepath.Join(watched, "a.txt"), []byte("before\n"), 0o644)
	os.WriteFile(filepath.Join(watched, "old.txt"), []byte("old\n"), 0o644)
	tools := filepath.Join(e.project, ".tools")
	os.MkdirAll(tools, 0o755)
	bin := buildTool(t, "inotifylog", "amd64", tools)

	// In the VM, over devbox ssh.
	ctx, cancel := context.WithCancel(context.Background())
	var waits []func() error
	defer func() {
		cancel()
		for _, w := range waits {
			w()
		}
	}()
	inVM := &eventLog{}
	cmd := e.command(ctx, e.project, "ssh", "--", bin, watched)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waits = append(waits, cmd.Wait)
	go inVM.follow(out)

	// In a container, through the host's docker.
	img := toolImage(t, "inotifylog", "amd64")
	hostDocker(t, e, "build", "-q", "-t", "e2e-inotifylog", img)
	hostDocker(t, e, "run", "-d", "--name", "watcher", "-v", e.project+":/w", "e2e-inotifylog", "/w/watched")
	t.Cleanup(func() { dockerCmd(context.Background(), e, "rm", "-f", "watcher").Run() })
	inContainer := &eventLog{}
	logs := dockerCmd(ctx, e, "logs", "-f", "watcher")
	cout, _ := logs.StdoutPipe()
	if err := logs.Start(); err != nil {
		t.Fatal(err)
	}
	waits = append(waits, logs.Wait)
	go inContainer.follow(cout)
	inVM.await(t, "the VM", time.Minute, "ready")
	inContainer.await(t, "the container", time.Minute, "ready")

	in := func(dir, name string) string { return filepath.Join(dir, name) }
	const w = "/w/watched"
	os.WriteFile(filepath.Join(watched, "a.txt"), []byte("edited on the host\n"), 0o644)
	took := inVM.await(t, "the VM", 10*time.Second, "MODIFY "+in(watched, "a.txt"), "CLOSE_WRITE "+in(watched, "a.txt"))
	t.Logf("an edit on the host was seen by inotify in the VM after %v", took.Round(time.Millisecond))
	inContainer.await(t, "the container", 10*time.Second, "MODIFY "+in(w, "a.txt"), "CLOSE_WRITE "+in(w, "a.txt"))

	os.WriteFile(filepath.Join(watched, "new.txt"), []byte("new\n"), 0o644)
	os.Remove(filepath.Join(watched, "old.txt"))
	os.Mkdir(filepath.Join(watched, "sub"), 0o755)
	inVM.await(t, "the VM", 10*time.Second, "CREATE "+in(watched, "new.txt"), "DELETE "+in(watched, "old.txt"), "CREATE "+in(watched, "sub"))
	inContainer.await(t, "the container", 10*time.Second, "CREATE "+in(w, "new.txt"), "DELETE "+in(w, "old.txt"), "CREATE "+in(w, "sub"))

	// The guest's own write: its events once (its kernel's), not again
	// from the host. An ignored folder's change: none. A last host change
	// marks when the others would have come.
	e.ok(time.Minute, "ssh", "--", "sh", "-c", "echo from the guest > "+in(watched, "guest.txt"))
	os.MkdirAll(filepath.Join(watched, "node_modules"), 0o755)
	os.WriteFile(filepath.Join(watched, "node_modules", "dep.js"), []byte("x"), 0o644)
	time.Sleep(3 * time.Second) // past the echo window: an echo would have come by now
	os.WriteFile(filepath.Join(watched, "marker.txt"), []byte("last\n"), 0o644)
	inContainer.await(t, "the container", 10*time.Second, "CREATE "+in(w, "marker.txt"))
	if n := inContainer.count("CREATE " + in(w, "guest.txt")); n != 1 {
		t.Errorf("the guest's own create seen %d times in the container, want once (no echo)", n)
	}
	if n := inContainer.count("CREATE " + in(w, "node_modules")); n != 0 {
		t.Errorf("an ignored folder raised %d creates", n)
	}
}

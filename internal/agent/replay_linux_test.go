//go:build linux

package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/devbox-vm/devbox/internal/sharedfs"
)

// TestReplayOnVirtioFS runs the guest's helper here, in its virtio-fs mode,
// on a folder standing in for the mount: it must raise close_write and
// attrib for an edit without changing the file, raise nothing for a path
// the "guest" (this test) changed itself, and do nothing for a removal.
func TestReplayOnVirtioFS(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	root := t.TempDir()
	edited := filepath.Join(root, "edited.txt")
	own := filepath.Join(root, "own.txt")
	os.WriteFile(edited, []byte("from the host\n"), 0o640)
	os.WriteFile(own, []byte("x\n"), 0o644)
	os.Mkdir(filepath.Join(root, "node_modules"), 0o755)
	before, _ := os.Stat(edited)

	cmd := exec.Command(py, "-u", "-c", replayHelper, "virtiofs", root, "node_modules")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() }()
	replays := sharedfs.NewReplays()
	answers := readAnswers(stdout, replays)
	ask := func(id int, op, path string) {
		t.Helper()
		fmt.Fprintf(stdin, "%d\x00%s\x00%s\x000\x00", id, op, path)
		select {
		case line := <-answers:
			if strings.TrimSpace(line) != fmt.Sprintf("%d ok", id) {
				t.Fatalf("%s %s: answer %q", op, path, line)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s %s: no answer", op, path)
		}
	}
	// The helper's watcher is up once it answers.
	ask(0, "remove", filepath.Join(root, "gone.txt"))

	// The "guest" writes own.txt itself; the helper reports it, and
	// skips the request for the host's echo that may come anyway.
	os.WriteFile(own, []byte("y\n"), 0o644)
	for deadline := time.Now().Add(5 * time.Second); !replays.ChangedByGuest(own, time.Minute); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the helper did not report the guest's own write")
		}
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, root, unix.IN_ALL_EVENTS); err != nil {
		t.Fatal(err)
	}
	ask(1, "modify", own)
	ask(2, "modify", edited)
	ask(3, "remove", filepath.Join(root, "gone2.txt"))

	got := readInotify(t, fd)

	// A folder the host made after the helper started is watched once its
	// mkdir is replayed: the guest's own writes in it are reported too.
	// (Here the helper would see a folder appear in a watched one, as the
	// guest's kernel does not see the host's: it is made in an ignored one.)
	sub := filepath.Join(root, "node_modules", "sub")
	os.Mkdir(sub, 0o755)
	ask(4, "mkdir", sub)
	inSub := filepath.Join(sub, "own.txt")
	os.WriteFile(inSub, []byte("z\n"), 0o644)
	for deadline := time.Now().Add(5 * time.Second); !replays.ChangedByGuest(inSub, time.Minute); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the helper did not report the guest's own write in a folder the host made")
		}
	}
	want := []string{"edited.txt IN_OPEN", "edited.txt IN_ATTRIB", "edited.txt IN_CLOSE_WRITE"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("events = %v, want %v (none for own.txt, whose change was the guest's)", got, want)
	}
	after, _ := os.Stat(edited)
	if !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() || after.Mode() != before.Mode() {
		t.Errorf("the replay changed the file: %v %d %v, was %v %d %v", after.ModTime(), after.Size(), after.Mode(), before.ModTime(), before.Size(), before.Mode())
	}
}

// readInotify reads what fd has within 300 ms, as "name EVENT" (one per
// bit of interest).
func readInotify(t *testing.T, fd int) []string {
	t.Helper()
	var got []string
	deadline := time.Now().Add(300 * time.Millisecond)
	buf := make([]byte, 4096)
	for time.Now().Before(deadline) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(pfd, 50); n == 0 {
			continue
		}
		n, err := unix.Read(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[i]))
			name := strings.TrimRight(string(buf[i+unix.SizeofInotifyEvent:i+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			for _, b := range []struct {
				mask uint32
				name string
			}{{unix.IN_OPEN, "IN_OPEN"}, {unix.IN_MODIFY, "IN_MODIFY"}, {unix.IN_ATTRIB, "IN_ATTRIB"}, {unix.IN_CLOSE_WRITE, "IN_CLOSE_WRITE"}, {unix.IN_CREATE, "IN_CREATE"}, {unix.IN_DELETE, "IN_DELETE"}} {
				if ev.Mask&b.mask != 0 {
					got = append(got, name+" "+b.name)
				}
			}
			i += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
	return got
}

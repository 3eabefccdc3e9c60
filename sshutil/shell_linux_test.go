package sshutil

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns the master and slave ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	t.Cleanup(func() { master.Close() }) // also ends readers of the slave
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

func TestShellTerminal(t *testing.T) {
	srv, c, _ := setup(t)
	ctx := testContext(t, 20*time.Second)
	master, slave := openPTY(t)
	fd := int(slave.Fd())
	if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Col: 100, Row: 30}); err != nil {
		t.Fatal(err)
	}
	before, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TERM", "xterm-test")

	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	var stdout bytes.Buffer
	go func() {
		status, err := c.Run(ctx, Cmd{Script: "read line; echo got:$line", Stdin: slave, Stdout: &stdout, PTY: TerminalPTY(slave)})
		done <- result{status, err}
	}()

	pty := srv.waitEvent(t, "pty-req", func(e string) bool { return strings.HasPrefix(e, "pty ") })
	// Modes: ECHO=53, TTY_OP_ISPEED=128, TTY_OP_OSPEED=129.
	if !strings.HasPrefix(pty, "pty xterm-test 100x30 ") || !strings.Contains(pty, " 53=1") ||
		!strings.Contains(pty, " 128=14400") || !strings.Contains(pty, " 129=14400") {
		t.Errorf("pty request = %q, want xterm-test 100x30 with ECHO and speeds 14400", pty)
	}
	if raw, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil || raw.Lflag&(unix.ICANON|unix.ECHO) != 0 {
		t.Errorf("terminal not in raw mode during Shell: lflag %#x, %v", raw.Lflag, err)
	}

	if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Col: 120, Row: 40}); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGWINCH)
	srv.waitEvent(t, "window-change to 120x40", func(e string) bool { return e == "window 120x40" })

	master.Write([]byte("hello\n"))
	select {
	case r := <-done:
		if r.err != nil || r.status != 0 || stdout.String() != "got:hello\n" {
			t.Errorf("Shell = %d, %v, stdout %q; want 0, nil, \"got:hello\\n\"", r.status, r.err, stdout.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shell did not return after input")
	}
	after, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil || *after != *before {
		t.Errorf("terminal mode not restored: before %+v, after %+v (%v)", before, after, err)
	}
}

package lockfile

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTryLockExcludesAndNamesHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "demo.lock")
	l, err := TryLock(path, "devbox up of demo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TryLock(path, "devbox halt of demo"); !errors.Is(err, ErrHeld) {
		t.Fatalf("second TryLock: want ErrHeld, got %v", err)
	}
	if !Held(path) {
		t.Error("Held says free while locked")
	}
	h, ok := ReadHolder(path)
	if !ok || h.PID != os.Getpid() || h.What != "devbox up of demo" {
		t.Errorf("holder = %+v %v", h, ok)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if Held(path) {
		t.Error("Held says held after Unlock")
	}
	l2, err := TryLock(path, "devbox halt of demo")
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	l2.Unlock()
}

func TestAcquireWaitsThenTellsWhoAndGoesOn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "demo.lock")
	l, err := TryLock(path, "devbox up of demo")
	if err != nil {
		t.Fatal(err)
	}
	told := make(chan Holder, 1)
	got := make(chan error, 1)
	go func() {
		l2, err := Acquire(context.Background(), path, "devbox destroy of demo", func(h Holder) { told <- h })
		if err == nil {
			l2.Unlock()
		}
		got <- err
	}()
	select {
	case h := <-told:
		if h.What != "devbox up of demo" {
			t.Errorf("waiting told %+v", h)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiter never said for whom it waits")
	}
	select {
	case err := <-got:
		t.Fatalf("Acquire returned while the lock was held: %v", err)
	default:
	}
	l.Unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiter did not get the lock after unlock")
	}
}

func TestAcquireTimesOutNamingHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "demo.lock")
	l, err := TryLock(path, "devbox up of demo")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = Acquire(ctx, path, "x", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline error, got %v", err)
	}
	if want := "devbox up of demo, pid " + strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %q", err, want)
	}
}

// A waiter blocked on a lock whose file the holder removes must not end up
// holding a lock on the unlinked file while a newcomer locks a new one.
func TestRemoveMakesWaitersStartOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "demo.lock")
	l, err := TryLock(path, "devbox destroy of demo")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Lock, 1)
	go func() {
		l2, err := Acquire(context.Background(), path, "devbox up of demo", nil)
		if err != nil {
			t.Error(err)
		}
		got <- l2
	}()
	time.Sleep(100 * time.Millisecond) // let the waiter block on the old file
	if err := l.Remove(); err != nil {
		t.Fatal(err)
	}
	var l2 *Lock
	select {
	case l2 = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("waiter never got the lock")
	}
	defer l2.Unlock()
	if _, err := TryLock(path, "third"); !errors.Is(err, ErrHeld) {
		t.Fatalf("a newcomer got the lock the waiter holds: %v", err)
	}
}

// A pid file left by a dead process whose pid now belongs to an unrelated
// process must not look held.
func TestStaleFileWithReusedPIDIsNotHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.pid")
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer other.Process.Kill()
	if err := os.WriteFile(path, []byte(strconv.Itoa(other.Process.Pid)+" devbox agent\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if Held(path) {
		t.Fatal("a pid file nobody locks looks held")
	}
	if h, ok := ReadHolder(path); !ok || h.PID != other.Process.Pid {
		t.Fatalf("ReadHolder = %+v %v", h, ok)
	}
}

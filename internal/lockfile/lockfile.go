// Package lockfile is a small advisory file lock (flock) that says who
// holds it. devbox uses it so that two commands on one instance, or two
// uploads of one box, take turns instead of racing, and so that a pid file
// is trusted only while its process still holds it: the kernel drops the
// lock when the holder exits, even on kill -9, so a stale file never
// looks held.
package lockfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrHeld is wrapped by TryLock when another process holds the lock.
var ErrHeld = errors.New("lock held by another process")

// Lock is a held lock; Unlock releases it.
type Lock struct {
	f    *os.File
	path string
}

// Holder is what the holder of a lock wrote into it.
type Holder struct {
	PID  int
	What string // e.g. "devbox up of demo"
}

func (h Holder) String() string {
	if h.What == "" {
		return fmt.Sprintf("pid %d", h.PID)
	}
	return fmt.Sprintf("%s, pid %d", h.What, h.PID)
}

// TryLock takes the lock at path without waiting, creating the file (and
// its folder) when missing. It fails with an error wrapping ErrHeld when
// another process holds it.
func TryLock(path, what string) (*Lock, error) {
	for {
		f, err := open(path)
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("%s: %w", path, ErrHeld)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		// The holder before us may have removed the file while we opened
		// it (Remove): our lock is then on a file nobody else sees.
		if !samePath(f, path) {
			f.Close()
			continue
		}
		l := &Lock{f: f, path: path}
		return l, l.write(what)
	}
}

// Acquire waits until it holds the lock at path or ctx ends. While it
// waits, waiting is called once with the current holder (when it can be
// read), so the user learns for whom.
func Acquire(ctx context.Context, path, what string, waiting func(Holder)) (*Lock, error) {
	told := false
	delay := 50 * time.Millisecond
	for {
		l, err := TryLock(path, what)
		if err == nil || !errors.Is(err, ErrHeld) {
			return l, err
		}
		if !told && waiting != nil {
			if h, ok := ReadHolder(path); ok {
				waiting(h)
				told = true
			}
		}
		select {
		case <-ctx.Done():
			h, _ := ReadHolder(path)
			return nil, fmt.Errorf("still locked by %s: %w", h, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 500*time.Millisecond)
	}
}

// Held reports whether a live process holds the lock at path. A missing
// file is not held.
func Held(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// ReadHolder reads who wrote the lock at path last.
func ReadHolder(path string) (Holder, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Holder{}, false
	}
	pid, what, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 0 {
		return Holder{}, false
	}
	return Holder{PID: n, What: what}, true
}

// Unlock releases the lock; the file stays for the next holder.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Remove deletes the lock file, then releases the lock: for a lock whose
// object is gone (a destroyed instance). Waiters notice and start over.
func (l *Lock) Remove() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := os.Remove(l.path)
	if uerr := l.Unlock(); err == nil {
		err = uerr
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// write records this process as the holder.
func (l *Lock) write(what string) error {
	line := strconv.Itoa(os.Getpid())
	if what != "" {
		line += " " + what
	}
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("write lock %s: %w", l.path, err)
	}
	if _, err := l.f.WriteAt([]byte(line+"\n"), 0); err != nil {
		return fmt.Errorf("write lock %s: %w", l.path, err)
	}
	return nil
}

func open(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// samePath reports whether f is still the file named path.
func samePath(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	if err != nil {
		return false
	}
	return os.SameFile(a, b)
}

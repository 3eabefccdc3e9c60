package testutil

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"
)

// ExhaustFDs lowers RLIMIT_NOFILE and fills the process's descriptor table
// up to it, leaving spare descriptors free; release undoes both. The whole
// test binary shares the table, so callers must not run in parallel.
func ExhaustFDs(t testing.TB, spare int) (release func()) {
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

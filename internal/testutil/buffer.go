// Package testutil holds helpers shared by the module's tests.
package testutil

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// Buffer is a bytes.Buffer that goroutines may write while a test reads
// it, and that a test can wait on. The zero value is ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	// changed is closed and replaced on each Write; nil until first needed.
	changed chan struct{}
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed != nil {
		close(b.changed)
	}
	b.changed = make(chan struct{})
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitFor waits until the buffer contains marker, failing t after within.
func (b *Buffer) WaitFor(t testing.TB, marker string, within time.Duration) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		text, changed := b.buf.String(), b.changed
		b.mu.Unlock()
		if strings.Contains(text, marker) {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			if text = b.String(); strings.Contains(text, marker) {
				return
			}
			t.Fatalf("buffer never contained %q within %v; it held:\n%s", marker, within, text)
		}
	}
}

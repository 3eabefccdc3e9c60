package testutil

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestBufferWaitForWakesOnWrite(t *testing.T) {
	var b Buffer // the zero value, waited on before any write
	go func() {
		time.Sleep(10 * time.Millisecond)
		fmt.Fprint(&b, "not yet, ")
		fmt.Fprint(&b, "ready")
	}()
	b.WaitFor(t, "ready", 10*time.Second)
	if got := b.String(); got != "not yet, ready" {
		t.Errorf("String() = %q", got)
	}
}

// fatalTB records a Fatalf and ends the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestBufferWaitForFailsSayingWhat(t *testing.T) {
	var b Buffer
	fmt.Fprint(&b, "something else")
	f := &fatalTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.WaitFor(f, "marker", 20*time.Millisecond)
	}()
	<-done
	if !strings.Contains(f.msg, `"marker"`) || !strings.Contains(f.msg, "something else") {
		t.Errorf("failure message %q should name the marker and the content", f.msg)
	}
}

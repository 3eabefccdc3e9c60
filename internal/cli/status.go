// Package cli prints progress the way a person reads it: each step as it
// starts and, when it ends, ✓ or ✗ with how long it took. Status goes to
// stderr; program output stays on stdout.
package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Status prints step lines to w.
type Status struct {
	mu   sync.Mutex
	w    io.Writer
	tty  bool
	open string // step started on a TTY line not yet ended
}

// NewStatus prints to w; on a terminal a step's start and end share a line.
func NewStatus(w io.Writer) *Status {
	s := &Status{w: w}
	if f, ok := w.(*os.File); ok {
		s.tty = term.IsTerminal(int(f.Fd()))
	}
	return s
}

// Start announces a step.
func (s *Status) Start(step string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLine()
	if s.tty {
		fmt.Fprintf(s.w, " • %s ...", step)
		s.open = step
		return
	}
	fmt.Fprintf(s.w, " • %s ...\n", step)
}

// End closes a step with its outcome and duration.
func (s *Status) End(step string, skipped bool, took time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tty && s.open == step {
		fmt.Fprint(s.w, "\r\033[K")
		s.open = ""
	} else {
		s.closeLine()
	}
	mark, note := "✓", fmt.Sprintf(" (%s)", Round(took))
	switch {
	case err != nil:
		mark = "✗"
	case skipped:
		note = " (already done)"
	}
	fmt.Fprintf(s.w, " %s %s%s\n", mark, step, note)
}

// Step runs fn as a step named step.
func (s *Status) Step(step string, fn func() error) error {
	s.Start(step)
	start := time.Now()
	err := fn()
	s.End(step, false, time.Since(start), err)
	return err
}

// Infof prints a note between steps.
func (s *Status) Infof(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLine()
	fmt.Fprintf(s.w, "   "+format+"\n", args...)
}

// Warnf prints a warning that should not be missed.
func (s *Status) Warnf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLine()
	fmt.Fprintf(s.w, " ! WARNING: "+format+"\n", args...)
}

// Update shows the progress of the step under way: on a terminal it
// rewrites the step's line in place; elsewhere it prints a note (the
// caller decides how often).
func (s *Status) Update(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tty && s.open != "" {
		fmt.Fprintf(s.w, "\r\033[K • %s ... %s", s.open, text)
		return
	}
	s.closeLine()
	fmt.Fprintf(s.w, "   %s\n", text)
}

// Redraws reports whether Update rewrites a line in place (a terminal),
// so a caller can update often and draw a bar.
func (s *Status) Redraws() bool { return s.tty }

// Writer turns the lines written to it into notes, and offers Update and
// Redraws to progress reporters that look for them (boxes' downloads).
func (s *Status) Writer() io.Writer { return statusWriter{s} }

type statusWriter struct{ *Status }

func (w statusWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if strings.TrimSpace(line) != "" {
			w.Infof("%s", strings.TrimSpace(line))
		}
	}
	return len(p), nil
}

func (s *Status) closeLine() {
	if s.open != "" {
		fmt.Fprintln(s.w)
		s.open = ""
	}
}

// Round shortens a duration for people: 1.2s, 2m10s.
func Round(d time.Duration) time.Duration {
	if d < time.Minute {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

package cli

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestStatusLines(t *testing.T) {
	var b bytes.Buffer
	s := NewStatus(&b)
	s.Start("Booting")
	s.End("Booting", false, 1234*time.Millisecond, nil)
	s.End("Installing", true, time.Second, nil)
	_ = s.Step("Breaking", func() error { return errors.New("boom") })
	s.Warnf("slow %s", "tcg")
	want := " • Booting ...\n ✓ Booting (1.2s)\n ✓ Installing (already done)\n • Breaking ...\n ✗ Breaking (0s)\n ! WARNING: slow tcg\n"
	if b.String() != want {
		t.Errorf("got:\n%q\nwant:\n%q", b.String(), want)
	}
}

func TestRound(t *testing.T) {
	if got := Round(130*time.Second + 400*time.Millisecond); got != 130*time.Second {
		t.Errorf("Round = %s", got)
	}
}

// TestUpdateOffATerminal: progress updates become notes, and the writer
// turns lines into notes (a terminal's in-place redraw needs a TTY).
func TestUpdateOffATerminal(t *testing.T) {
	var b bytes.Buffer
	s := NewStatus(&b)
	s.Start("Downloading")
	s.Update("50%")
	s.Writer().Write([]byte("one\n\ntwo\n"))
	if s.Redraws() {
		t.Error("a buffer taken for a terminal")
	}
	want := " • Downloading ...\n   50%\n   one\n   two\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

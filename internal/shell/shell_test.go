package shell

import (
	"os/exec"
	"testing"
)

// TestQuoteRoundTrip: sh reads each quoted word back as it was.
func TestQuoteRoundTrip(t *testing.T) {
	words := []string{"plain", "", "two words", "it's", `a"b`, "$HOME", "`id`", "a\nb", "*", "-n", "/p/x=1,y@z%", "'", "\\"}
	out, err := exec.Command("sh", "-c", `for w in `+Join(words)+`; do printf '%s\0' "$w"; done`).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := ""
	for _, w := range words {
		want += w + "\x00"
	}
	if string(out) != want {
		t.Errorf("sh read back %q, want %q", out, want)
	}
	if Quote("/home/u/proj") != "/home/u/proj" || Quote("it's") != `'it'\''s'` {
		t.Errorf("Quote: %s %s", Quote("/home/u/proj"), Quote("it's"))
	}
}

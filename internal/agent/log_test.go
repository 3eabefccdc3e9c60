package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/internal/filenames"
)

func TestOpenLogRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), filenames.AgentLog)
	// A file left by an older agent, readable by others.
	if err := os.WriteFile(path, []byte("old line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const max = 200
	logger, closer, err := OpenLog(path, max)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		logger.Printf("line %02d %s", i, strings.Repeat("x", 20))
	}
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}

	cur, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	prev, err := os.ReadFile(path + ".1")
	if err != nil {
		t.Fatalf("no rotated file: %v", err)
	}
	if len(cur) > max || len(prev) > max {
		t.Errorf("files of %d and %d bytes, want at most %d each", len(cur), len(prev), max)
	}
	if !strings.HasSuffix(string(cur), "line 49 "+strings.Repeat("x", 20)+"\n") {
		t.Errorf("current file does not end with the last line:\n%s", cur)
	}
	// Cut between lines, and the two files are consecutive.
	for name, b := range map[string][]byte{"current": cur, "rotated": prev} {
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if !strings.Contains(l, " line ") || !strings.HasSuffix(l, strings.Repeat("x", 20)) {
				t.Errorf("%s file has a partial line %q", name, l)
			}
		}
	}
	first := strings.SplitN(string(cur), "\n", 2)[0]
	lastPrev := strings.Split(strings.TrimSuffix(string(prev), "\n"), "\n")
	if n := len(lastPrev); n == 0 || lineNo(t, lastPrev[n-1])+1 != lineNo(t, first) {
		t.Errorf("rotated file ends with %q, current begins with %q: not consecutive", lastPrev, first)
	}
	if matches, _ := filepath.Glob(path + "*"); len(matches) != 2 {
		t.Errorf("files %v, want the log and one rotated file", matches)
	}
	for _, p := range []string{path, path + ".1"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
}

func lineNo(t *testing.T, l string) int {
	t.Helper()
	i := strings.Index(l, " line ")
	if i < 0 || len(l) < i+8 {
		t.Fatalf("not a test line: %q", l)
	}
	n := int(l[i+6]-'0')*10 + int(l[i+7]-'0')
	return n
}

package hostwatch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

func TestReduce(t *testing.T) {
	C, W, R, M, A := fsnotify.Create, fsnotify.Write, fsnotify.Remove, fsnotify.Rename, fsnotify.Chmod
	now := map[string]info{
		"/p/new":            {exists: true, size: 3},
		"/p/edited":         {exists: true, size: 10},
		"/p/saved":          {exists: true, size: 7},
		"/p/dir":            {exists: true, dir: true},
		"/p/link":           {exists: true, symlink: true},
		"/p/touched":        {exists: true, size: 1},
		"/p/dir/inside":     {exists: true, size: 1},
		"/p/dir/sub":        {exists: true, dir: true},
		"/p/dir/sub/deeper": {exists: true, size: 1},
	}
	stat := func(p string) info { return now[p] }
	batch := []rawEvent{
		{path: "/p/new", op: C}, {path: "/p/new", op: W}, {path: "/p/new", op: W},
		{path: "/p/edited", op: W}, {path: "/p/edited", op: W}, {path: "/p/edited", op: A},
		{path: "/p/tmp~", op: C}, {path: "/p/tmp~", op: W}, {path: "/p/tmp~", op: M}, // a temporary file, renamed away
		{path: "/p/saved", op: M}, {path: "/p/saved", op: C}, // an atomic save: a new file renamed over it
		{path: "/p/gone", op: R},
		{path: "/p/olddir/x", op: R}, {path: "/p/olddir", op: R},
		{path: "/p/emptydir", op: R, dir: true},
		{path: "/p/dir", op: C},
		{path: "/p/link", op: C}, {path: "/p/link", op: W},
		{path: "/p/touched", op: A},
		{path: "/p/dir/inside", op: C}, {path: "/p/dir/inside", op: W}, {path: "/p/dir/sub", op: C}, {path: "/p/dir/sub/deeper", op: C},
	}
	var got []string
	for _, c := range reduce(batch, stat) {
		got = append(got, fmt.Sprintf("%s %s dir=%v size=%d", c.Kind, c.Path, c.Dir, c.Size))
	}
	want := []string{
		"create /p/new dir=false size=3", "modify /p/new dir=false size=3",
		"modify /p/edited dir=false size=10",
		"remove /p/saved dir=false size=0", "create /p/saved dir=false size=7", "modify /p/saved dir=false size=7",
		"remove /p/gone dir=false size=0",
		"remove /p/olddir dir=true size=0",
		"remove /p/emptydir dir=true size=0",
		"create /p/dir dir=true size=0",
		"create /p/link dir=false size=0",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("reduce:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestIgnored(t *testing.T) {
	ignore := []string{".git", "node_modules", "build/cache/"}
	for p, want := range map[string]bool{
		"/r/.git":                    true,
		"/r/.git/objects/ab":         true,
		"/r/web/node_modules/x/y.js": true,
		"/r/build/cache":             true,
		"/r/build/cache/o.bin":       true,
		"/r/build/cachet":            false,
		"/r/src/build/cache":         false,
		"/r/src/main.go":             false,
		"/r/.gitignore":              false,
		"/r":                         false,
	} {
		if got := Ignored("/r", p, ignore); got != want {
			t.Errorf("Ignored(%s) = %v, want %v", p, got, want)
		}
	}
}

// collect runs Watch on root and gathers what it reports.
type collect struct {
	mu      sync.Mutex
	changes []Change
	warns   []string
}

func (c *collect) report(cs []Change) {
	c.mu.Lock()
	c.changes = append(c.changes, cs...)
	c.mu.Unlock()
}

// wait returns the changes once one matches want, or fails at the deadline.
func (c *collect) wait(t *testing.T, want string) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		var got []string
		for _, ch := range c.changes {
			got = append(got, ch.Kind.String()+" "+ch.Path)
		}
		c.mu.Unlock()
		for _, g := range got {
			if g == want {
				return got
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within 5s; got %q", want, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWatchReportsHostChanges(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "a.txt"), []byte("a"), 0o644)
	os.MkdirAll(filepath.Join(root, ".git", "objects"), 0o755)
	c := &collect{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mine := filepath.Join(root, "written-by-guest.txt")
	watching := make(chan int, 100)
	go Watch(ctx, root, Options{Ignore: []string{".git", "node_modules"}, Skip: func(p string) bool { return p == mine },
		Watching: func(n int) { watching <- n }}, c.report)
	if n := <-watching; n != 1 {
		t.Errorf("watching %d folders at start, want 1 (.git is ignored)", n)
	}

	os.WriteFile(filepath.Join(root, "a.txt"), []byte("edited"), 0o644)
	c.wait(t, "modify "+filepath.Join(root, "a.txt"))
	os.WriteFile(filepath.Join(root, "b.txt"), []byte("new"), 0o644)
	c.wait(t, "create "+filepath.Join(root, "b.txt"))
	os.Remove(filepath.Join(root, "b.txt"))
	c.wait(t, "remove "+filepath.Join(root, "b.txt"))
	// A folder made with files in it at once is one create (watchers read
	// a new folder), and is watched from then on, its sub-folders too.
	os.MkdirAll(filepath.Join(root, "pkg", "sub"), 0o755)
	os.WriteFile(filepath.Join(root, "pkg", "sub", "c.go"), []byte("package sub"), 0o644)
	got := c.wait(t, "create "+filepath.Join(root, "pkg"))
	for _, g := range got {
		if strings.Contains(g, "c.go") {
			t.Errorf("a file made with its folder reported alone: %q", g)
		}
	}
	os.WriteFile(filepath.Join(root, "pkg", "sub", "c.go"), []byte("package sub // edited"), 0o644)
	c.wait(t, "modify "+filepath.Join(root, "pkg", "sub", "c.go"))
	// Neither the ignored folder nor the guest's own write is reported.
	os.WriteFile(filepath.Join(root, ".git", "objects", "x"), []byte("obj"), 0o644)
	os.WriteFile(mine, []byte("from the guest"), 0o644)
	os.WriteFile(filepath.Join(root, "last.txt"), []byte("last"), 0o644)
	got = c.wait(t, "create "+filepath.Join(root, "last.txt"))
	for _, g := range got {
		if strings.Contains(g, ".git") || strings.Contains(g, "written-by-guest") {
			t.Errorf("reported %q", g)
		}
	}
}

// When the platform's limit stops the watch, it says so once, with the
// numbers, and watches what it could.
func TestWatchLimitWarns(t *testing.T) {
	root := t.TempDir()
	for i := 0; i < 5; i++ {
		os.MkdirAll(filepath.Join(root, fmt.Sprintf("d%d", i)), 0o755)
	}
	var warns []string
	w := &watcher{root: root, dirs: map[string]bool{}, opts: Options{Warn: func(m string) { warns = append(warns, m) }}}
	added := 0
	w.add = func(string) error {
		if added == 3 {
			return fmt.Errorf("add: %w", syscall.ENOSPC)
		}
		added++
		return nil
	}
	w.addTree(root, nil)
	if len(w.dirs) != 3 || len(warns) != 1 || !strings.Contains(warns[0], "watching 3 folders, not 3 more") || !strings.Contains(warns[0], "hint:") {
		t.Errorf("dirs %d, warnings %q", len(w.dirs), warns)
	}
}

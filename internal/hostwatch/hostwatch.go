// Package hostwatch watches a shared folder on the host and reports its
// changes, batched and reduced to what must be replayed in the guest:
// a file or folder that appeared, a file whose contents changed, a file
// or folder that went. It uses the platform's notifications through
// fsnotify (inotify on Linux, kqueue on macOS), never polling.
//
// A platform limits what can be watched (inotify watches per user, open
// files for kqueue). When a tree reaches the limit, the folders beyond it
// are not watched: the watcher says so once, with the numbers and the
// setting to raise, and goes on with what it has.
package hostwatch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Kind is what happened to a path.
type Kind int

// Kinds of change.
const (
	Create Kind = iota // appeared
	Modify             // a file's contents changed
	Remove             // went (deleted, or renamed away)
)

func (k Kind) String() string { return [...]string{"create", "modify", "remove"}[k] }

// Change is one change to replay.
type Change struct {
	Path string // absolute
	Kind Kind
	Dir  bool
	Link bool      // a symbolic link (Create only)
	Size int64     // the file's size after the change (Create and Modify)
	At   time.Time // when the path's first notification of the batch came
}

// Options configure Watch.
type Options struct {
	// Ignore lists names matched against every path component (".git")
	// and paths relative to the root ("build/cache"); nothing under them
	// is watched or reported.
	Ignore []string
	// Skip drops a notification on arrival (the guest's own change,
	// echoed by the host); it is asked as each one comes, so it can judge
	// by the time.
	Skip func(path string) bool
	// Window is how long changes gather before they are reported
	// (100ms when zero); a change is reported at most that long after it
	// happened.
	Window time.Duration
	// Warn is told, once, when the platform's limit stops the watch.
	Warn func(msg string)
	// Watching is told how many folders are watched after each change of
	// that number.
	Watching func(n int)
}

// watcher is one watched tree.
type watcher struct {
	root string
	opts Options
	w    *fsnotify.Watcher
	add  func(string) error // w.Add, swapped in tests
	dirs map[string]bool    // watched folders
	full bool               // the limit was reached
}

// Watch reports root's changes to report, in batches, until ctx ends. It
// fails only when it cannot start. report must not block for long: the
// platform's queue of notifications fills meanwhile, and Skip judges
// each by when it comes.
func Watch(ctx context.Context, root string, opts Options, report func([]Change)) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w%s", root, err, limitHint(err))
	}
	defer fw.Close()
	w := &watcher{root: filepath.Clean(root), opts: opts, w: fw, add: fw.Add, dirs: map[string]bool{}}
	if w.opts.Window <= 0 {
		w.opts.Window = 100 * time.Millisecond
	}
	w.addTree(w.root, nil)
	var batch []rawEvent
	var flush <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			if w.ignored(ev.Name) {
				continue
			}
			if !w.skip(ev.Name) {
				batch = append(batch, rawEvent{path: ev.Name, op: ev.Op, dir: w.dirs[ev.Name], at: time.Now()})
			}
			if ev.Op.Has(fsnotify.Create) {
				// A new folder: watch it at once, and report what was
				// made in it before the watch was there.
				if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
					w.addTree(ev.Name, func(p string) {
						if !w.skip(p) {
							batch = append(batch, rawEvent{path: p, op: fsnotify.Create, at: time.Now()})
						}
					})
				}
			}
			if ev.Op.Has(fsnotify.Remove) || ev.Op.Has(fsnotify.Rename) {
				if w.dirs[ev.Name] {
					delete(w.dirs, ev.Name)
					w.watching()
				}
			}
			if flush == nil {
				flush = time.After(w.opts.Window)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.warn(fmt.Sprintf("file events under %s: the host's event queue overflowed, some changes were not seen in the VM (hint: raise fs.inotify.max_queued_events)", w.root))
			}
		case <-flush:
			flush = nil
			changes := reduce(batch, lstatInfo)
			batch = nil
			if len(changes) > 0 {
				report(changes)
			}
		}
	}
}

// addTree watches dir and every folder under it that is not ignored,
// until the platform's limit; found, when set, is told each path under
// dir.
func (w *watcher) addTree(dir string, found func(string)) {
	skipped := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || w.ignored(p) {
			if d != nil && d.IsDir() && p != dir {
				return filepath.SkipDir
			}
			return nil
		}
		if found != nil && p != dir {
			found(p)
		}
		if !d.IsDir() {
			return nil
		}
		if w.full {
			skipped++
			return nil
		}
		if err := w.add(p); err != nil {
			if isLimit(err) {
				w.full = true
				skipped++
				return nil
			}
			return nil // gone meanwhile, or unreadable: nothing to watch
		}
		w.dirs[p] = true
		return nil
	})
	w.watching()
	if skipped > 0 {
		w.warn(fmt.Sprintf("file events under %s: watching %d folders, not %d more: %s; changes in those are not seen in the VM%s",
			w.root, len(w.dirs), skipped, limitName(), limitHint(syscall.ENOSPC)))
	}
}

func (w *watcher) skip(p string) bool { return w.opts.Skip != nil && w.opts.Skip(p) }

func (w *watcher) watching() {
	if w.opts.Watching != nil {
		w.opts.Watching(len(w.dirs))
	}
}

func (w *watcher) warn(msg string) {
	if w.opts.Warn != nil {
		w.opts.Warn(msg)
	}
}

// ignored reports whether p (absolute, under the root) is ignored.
func (w *watcher) ignored(p string) bool { return Ignored(w.root, p, w.opts.Ignore) }

// Ignored reports whether path, under root, matches ignore: a name
// equal to one of its components, or a relative path it is or lies under.
func Ignored(root, path string, ignore []string) bool {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == "." {
		return false
	}
	rel = filepath.ToSlash(rel)
	parts := strings.Split(rel, "/")
	for _, ig := range ignore {
		ig = strings.Trim(filepath.ToSlash(ig), "/")
		if ig == "" {
			continue
		}
		if !strings.Contains(ig, "/") {
			for _, part := range parts {
				if part == ig {
					return true
				}
			}
			continue
		}
		if rel == ig || strings.HasPrefix(rel, ig+"/") {
			return true
		}
	}
	return false
}

// isLimit reports whether err says the platform's watch limit is reached.
func isLimit(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

func limitName() string {
	if runtime.GOOS == "linux" {
		return "the host's limit of inotify watches is reached"
	}
	return "the host's limit of open files is reached (each watched folder and file holds one)"
}

func limitHint(err error) string {
	if !isLimit(err) {
		return ""
	}
	if runtime.GOOS == "linux" {
		return " (hint: raise it: sudo sysctl fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=1024, or add the busiest folders to file_events.ignore)"
	}
	return " (hint: raise it with ulimit -n before devbox up, or add the busiest folders to file_events.ignore)"
}

package hostwatch

import (
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// rawEvent is one notification as the platform gave it.
type rawEvent struct {
	path string
	op   fsnotify.Op
	dir  bool // a removal of a watched folder
	at   time.Time
}

// info is what is known of a path now.
type info struct {
	exists, dir, symlink bool
	size                 int64
}

func lstatInfo(p string) info {
	fi, err := os.Lstat(p)
	if err != nil {
		return info{}
	}
	return info{exists: true, dir: fi.IsDir(), symlink: fi.Mode()&os.ModeSymlink != 0, size: fi.Size()}
}

// reduce turns a batch of notifications into the changes to replay, one
// path at a time in the order the paths first appeared, judged against
// the path's state now:
//
//   - first seen being created, gone now: nothing (a temporary file);
//   - first seen being created, there now: Create, and Modify for a file;
//   - there before, gone now: Remove;
//   - there before, removed or renamed away, and there again now (a save
//     that renames a new file over the old one): Remove, then Create and
//     Modify;
//   - there before and now, written: Modify (one, however many writes);
//   - only its attributes changed: nothing;
//   - made inside a folder that appeared in the same batch, or gone with
//     a folder that went in it: nothing (watchers read a new folder when
//     it appears, and see a folder go).
//
// A symbolic link is never modified: only created or removed (replaying
// a write through it would act on whatever it points to).
func reduce(batch []rawEvent, stat func(string) info) []Change {
	type seen struct {
		created, removed, written bool // created: the first event created it
		wasDir                    bool // it was a watched folder when removed
		at                        time.Time
		now                       info // its state at the end of the batch
	}
	var order []string
	by := map[string]*seen{}
	for _, ev := range batch {
		s, ok := by[ev.path]
		if !ok {
			s = &seen{created: ev.op.Has(fsnotify.Create), at: ev.at}
			by[ev.path] = s
			order = append(order, ev.path)
		}
		if ev.op.Has(fsnotify.Remove) || ev.op.Has(fsnotify.Rename) {
			s.removed = true
			s.wasDir = s.wasDir || ev.dir
		}
		if ev.op.Has(fsnotify.Write) {
			s.written = true
		}
	}
	for _, p := range order {
		by[p].now = stat(p)
	}
	// A path with events under it held something: it was a folder.
	held := map[string]bool{}
	for _, p := range order {
		for d := filepath.Dir(p); d != p && !held[d]; p, d = d, filepath.Dir(d) {
			held[d] = true
		}
	}
	// Folders that appeared in this batch: what they hold is not
	// replayed one by one (an untar or a git checkout makes thousands),
	// since a watcher in the guest that sees a folder appear reads it, and
	// finds everything made in it up to now. Likewise folders that went:
	// their content went with them (rm -rf), and a watcher in the guest
	// sees the folder go.
	newDirs, goneDirs := map[string]bool{}, map[string]bool{}
	for _, p := range order {
		switch s := by[p]; {
		case s.created && s.now.dir:
			newDirs[p] = true
		case !s.created && !s.now.exists && (s.wasDir || held[p]):
			goneDirs[p] = true
		}
	}
	within := func(dirs map[string]bool, p string) bool {
		for d := filepath.Dir(p); d != p && d != "." && d != string(filepath.Separator); p, d = d, filepath.Dir(d) {
			if dirs[d] {
				return true
			}
		}
		return false
	}
	var out []Change
	for _, p := range order {
		s := by[p]
		now := s.now
		if s.created && within(newDirs, p) || !now.exists && within(goneDirs, p) {
			continue
		}
		created := func() {
			out = append(out, Change{Path: p, Kind: Create, Dir: now.dir, Link: now.symlink, Size: now.size, At: s.at})
			if !now.dir && !now.symlink {
				out = append(out, Change{Path: p, Kind: Modify, Size: now.size, At: s.at})
			}
		}
		switch {
		case s.created && !now.exists:
		case s.created:
			created()
		case !now.exists:
			// What it was is gone with it; a path the batch saw as a
			// folder's is a folder.
			out = append(out, Change{Path: p, Kind: Remove, Dir: s.wasDir || held[p], At: s.at})
		case s.removed:
			out = append(out, Change{Path: p, Kind: Remove, Dir: s.wasDir, At: s.at})
			created()
		case s.written && !now.dir && !now.symlink:
			out = append(out, Change{Path: p, Kind: Modify, Size: now.size, At: s.at})
		}
	}
	return out
}

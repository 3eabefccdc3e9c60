package sharedfs

import (
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Replays makes host changes visible to inotify in the guest. A change
// made on the host reaches the guest's files through the server, but the
// guest's kernel raises inotify events only for operations it performs
// itself, so devbox replays each host change in the guest: a helper
// there opens, truncates, creates or removes the file through the mount,
// and the guest's kernel raises the matching events (modify and
// close_write, create, delete) for every watcher, containers that
// bind-mount the folder included. The server must not apply these
// replayed operations to the host, where they already happened: Replays
// tells it which requests are replays, and it answers them without
// touching the host (and shows a created file as absent, a removed one
// as present, until the replay's request comes, so the guest's kernel
// takes the create or remove path).
//
// Replays also remembers what the guest itself changed through the
// server, so that the host watcher does not echo the guest's own writes
// back as events.
type Replays struct {
	mu      sync.Mutex
	pending map[string]*replay   // by absolute host path
	byGuest map[string]time.Time // last change the guest made, by absolute path
	looked  map[string]time.Time // last time the guest looked a path up
	swept   time.Time            // when byGuest and looked were last swept
	now     func() time.Time
}

// ReplayKind is what a replay re-enacts.
type ReplayKind int

// Replay kinds.
const (
	ReplayModify ReplayKind = iota // a file's contents changed: truncate to its size (modify, close_write)
	ReplayCreate                   // a file appeared: create it (create, close_write)
	ReplayMkdir                    // a folder appeared: mkdir (create)
	ReplayRemove                   // a file went: unlink (delete)
	ReplayRmdir                    // a folder went: rmdir (delete)
)

type replay struct {
	kind  ReplayKind
	size  int64 // ReplayModify: the size the helper truncates to
	until time.Time
	// A create or mkdir hides its path from one lookup only, the one
	// right after the helper looked up ReplayMarker in the same folder
	// (armed); once it has (hid), the next create of the path is the
	// helper's. Anyone else looking the path up meanwhile sees it.
	armed, hid bool
}

// ReplayMarker is the name the helper looks up in a folder just before
// it replays a create there: its lookup of the path comes next.
const ReplayMarker = ".devbox-replay"

// replayTTL bounds a replay the helper never made (the guest's kernel
// answered it from its cache, or the helper died): after it the path is
// served as it is again.
const replayTTL = 3 * time.Second

// NewReplays returns an empty table.
func NewReplays() *Replays {
	return &Replays{pending: map[string]*replay{}, byGuest: map[string]time.Time{}, looked: map[string]time.Time{}, now: time.Now}
}

// Expect registers that the guest is about to replay kind on path (an
// absolute host path); size is the file's size for ReplayModify.
func (r *Replays) Expect(path string, kind ReplayKind, size int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending[filepath.Clean(path)] = &replay{kind: kind, size: size, until: r.now().Add(replayTTL)}
}

// Done ends the replay on path, made or not.
func (r *Replays) Done(path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pending, filepath.Clean(path))
}

// ChangedByGuest reports whether the guest changed path through the
// server within the last d.
func (r *Replays) ChangedByGuest(path string, d time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.byGuest[filepath.Clean(path)]
	return ok && r.now().Sub(t) < d
}

// LookedUpSince reports whether the guest looked path up at t or later.
// A replayed create must then not be replayed as one: the guest already
// knows the file, and hiding it during the replay would make it vanish
// under whoever looked (a build that starts right after a checkout).
func (r *Replays) LookedUpSince(path string, t time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.looked[filepath.Clean(path)]
	return ok && !l.Before(t)
}

// GuestChanged records a change the guest made to path: the server
// records those it serves; on a virtio-fs folder, which no server of
// devbox sees, the guest's helper reports them.
func (r *Replays) GuestChanged(path string) {
	if r != nil {
		r.record(r.byGuest, path)
	}
}

// lookedUp records that the guest looked path up.
func (r *Replays) lookedUp(path string) {
	if r != nil {
		r.record(r.looked, path)
	}
}

// record notes now for path in times. Every stat and write of the guest
// comes here, so records older than a minute are swept at most every
// 10 s, not on each call.
func (r *Replays) record(times map[string]time.Time, path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.swept) > 10*time.Second {
		for _, m := range []map[string]time.Time{r.byGuest, r.looked} {
			for p, t := range m {
				if now.Sub(t) > time.Minute {
					delete(m, p)
				}
			}
		}
		r.swept = now
	}
	times[path] = now
}

// take returns the pending replay on path when it is one of kinds, and
// removes it when consume is set.
func (r *Replays) take(path string, consume bool, kinds ...ReplayKind) (replay, bool) {
	if r == nil {
		return replay{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pending[path]
	if !ok {
		return replay{}, false
	}
	if r.now().After(p.until) {
		delete(r.pending, path)
		return replay{}, false
	}
	for _, k := range kinds {
		if p.kind == k {
			if consume {
				delete(r.pending, path)
			}
			return *p, true
		}
	}
	return replay{}, false
}

// removingUnder reports whether a removal is being replayed under the
// folder path: a folder that went from the host with what it held is
// still shown, until the replays in it are done.
func (r *Replays) removingUnder(path string) bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	prefix := path + string(filepath.Separator)
	now := r.now()
	for p, rp := range r.pending {
		if (rp.kind == ReplayRemove || rp.kind == ReplayRmdir) && strings.HasPrefix(p, prefix) && !now.After(rp.until) {
			return true
		}
	}
	return false
}

// arm readies the create or mkdir being replayed in folder dir to hide
// its path from the next lookup.
func (r *Replays) arm(dir string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, rp := range r.pending {
		if (rp.kind == ReplayCreate || rp.kind == ReplayMkdir) && filepath.Dir(p) == dir {
			rp.armed = true
		}
	}
}

// hide reports whether a lookup of path must find nothing: a create or
// mkdir of it is being replayed and the helper has just armed it.
func (r *Replays) hide(path string) bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rp, ok := r.pending[path]
	if !ok || !rp.armed || rp.hid || (rp.kind != ReplayCreate && rp.kind != ReplayMkdir) || r.now().After(rp.until) {
		return false
	}
	rp.armed, rp.hid = false, true
	return true
}

// created reports, and ends, a replayed create or mkdir of path whose
// lookup was hidden: this create is the helper's.
func (r *Replays) created(path string, kind ReplayKind) bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rp, ok := r.pending[path]
	if !ok || rp.kind != kind || !rp.hid {
		return false
	}
	delete(r.pending, path)
	return true
}

// goneInfo is what a stat of a file or folder that a replayed removal is
// about to delete returns, once it is gone from the host: the guest's
// kernel must find something to remove.
type goneInfo struct {
	name string
	dir  bool
}

func (g goneInfo) Name() string { return g.name }
func (g goneInfo) Size() int64  { return 0 }
func (g goneInfo) Mode() fs.FileMode {
	if g.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
func (g goneInfo) ModTime() time.Time { return time.Now() }
func (g goneInfo) IsDir() bool        { return g.dir }
func (g goneInfo) Sys() any           { return nil }

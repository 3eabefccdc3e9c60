package sharedfs

import (
	"errors"
	"io/fs"
	"os"
	"testing"
	"time"
)

// The helper's replayed requests are answered without touching the host;
// the same requests unexpected reach it as always.
func TestReplaysDoNotTouchTheHost(t *testing.T) {
	r := NewReplays()
	f := startOpts(t, Options{GuestUID: -1, GuestGID: -1, Replays: r})

	// A file created on the host: absent to a stat until the helper's
	// create, which opens the file without truncating it.
	must(t, os.WriteFile(f.p("new.txt"), []byte("made on the host"), 0o644))
	r.Expect(f.p("new.txt"), ReplayCreate, 0)
	// Anyone else looking meanwhile sees it, and creates it for real.
	if _, err := f.c.Lstat(f.p("new.txt")); err != nil {
		t.Errorf("lstat of a create replay not armed: %v", err)
	}
	// The helper's marker lookup arms it: the next lookup finds nothing.
	if _, err := f.c.Lstat(f.p(ReplayMarker)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the marker: %v", err)
	}
	if _, err := f.c.Stat(f.p("new.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat after the marker: %v, want not exist", err)
	}
	if _, err := f.c.Lstat(f.p("new.txt")); err != nil {
		t.Errorf("a second lookup is hidden too: %v", err)
	}
	h, err := f.c.OpenFile(f.p("new.txt"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatalf("replayed create: %v", err)
	}
	h.Close()
	if got := hostRead(t, f.p("new.txt")); got != "made on the host" {
		t.Errorf("the replayed create truncated the host file: %q", got)
	}
	if _, err := f.c.Lstat(f.p("new.txt")); err != nil {
		t.Errorf("after the replay, lstat: %v", err)
	}
	if r.ChangedByGuest(f.p("new.txt"), time.Minute) {
		t.Error("a replay counted as the guest's own change")
	}

	// A modified file: the helper's truncate (to a stale size) is not applied.
	must(t, os.WriteFile(f.p("a.txt"), []byte("longer than before"), 0o644))
	r.Expect(f.p("a.txt"), ReplayModify, 5)
	must(t, f.c.Truncate(f.p("a.txt"), 5))
	must(t, f.c.Chtimes(f.p("a.txt"), time.Unix(0, 0), time.Unix(0, 0)))
	r.Done(f.p("a.txt"))
	if got := hostRead(t, f.p("a.txt")); got != "longer than before" {
		t.Errorf("the replayed truncate reached the host: %q", got)
	}
	if fi, _ := os.Stat(f.p("a.txt")); fi.ModTime().Unix() == 0 {
		t.Error("the replay's time stamp reached the host")
	}
	// Done: the next truncate is the guest's own.
	must(t, f.c.Truncate(f.p("a.txt"), 6))
	if got := hostRead(t, f.p("a.txt")); got != "longer" {
		t.Errorf("a truncate after the replay: %q", got)
	}
	if !r.ChangedByGuest(f.p("a.txt"), time.Minute) {
		t.Error("the guest's truncate was not recorded")
	}

	// A file removed on the host: present (empty) to a stat, and its
	// removal succeeds; a file put back there meanwhile stays.
	must(t, os.Remove(f.p("sub/b.txt")))
	r.Expect(f.p("sub/b.txt"), ReplayRemove, 0)
	if fi, err := f.c.Lstat(f.p("sub/b.txt")); err != nil || fi.IsDir() {
		t.Errorf("lstat during a remove replay: %v %v", fi, err)
	}
	must(t, f.c.Remove(f.p("sub/b.txt")))
	if _, err := f.c.Lstat(f.p("sub/b.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after the remove replay: %v", err)
	}
	must(t, os.WriteFile(f.p("back.txt"), []byte("put back"), 0o644))
	r.Expect(f.p("back.txt"), ReplayRemove, 0)
	must(t, f.c.Remove(f.p("back.txt")))
	if got := hostRead(t, f.p("back.txt")); got != "put back" {
		t.Errorf("a remove replay deleted a host file: %q", got)
	}

	// A folder gone with a file in it whose removal is being replayed
	// is still shown, so the guest can reach the file.
	must(t, os.MkdirAll(f.p("gonedir/deep"), 0o755))
	must(t, os.RemoveAll(f.p("gonedir")))
	r.Expect(f.p("gonedir/deep/x"), ReplayRemove, 0)
	if fi, err := f.c.Lstat(f.p("gonedir/deep")); err != nil || !fi.IsDir() {
		t.Errorf("lstat of a folder above a remove replay: %v %v", fi, err)
	}
	r.Done(f.p("gonedir/deep/x"))
	if _, err := f.c.Lstat(f.p("gonedir")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after the replay, the gone folder: %v", err)
	}

	// Folders.
	must(t, os.Mkdir(f.p("newdir"), 0o755))
	r.Expect(f.p("newdir"), ReplayMkdir, 0)
	f.c.Lstat(f.p(ReplayMarker))
	if _, err := f.c.Lstat(f.p("newdir")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lstat during a mkdir replay: %v", err)
	}
	must(t, f.c.Mkdir(f.p("newdir")))
	must(t, os.Remove(f.p("empty")))
	r.Expect(f.p("empty"), ReplayRmdir, 0)
	if fi, err := f.c.Lstat(f.p("empty")); err != nil || !fi.IsDir() {
		t.Errorf("lstat during an rmdir replay: %v %v", fi, err)
	}
	must(t, f.c.RemoveDirectory(f.p("empty")))

	// A guest's own create with truncation while a create replay waits,
	// not armed: it is the guest's, and truncates.
	must(t, os.WriteFile(f.p("raced.txt"), []byte("from the host"), 0o644))
	r.Expect(f.p("raced.txt"), ReplayCreate, 0)
	must(t, writeFile(f.c, f.p("raced.txt"), "guest"))
	r.Done(f.p("raced.txt"))
	if got := hostRead(t, f.p("raced.txt")); got != "guest" {
		t.Errorf("the guest's own write during a create replay: %q", got)
	}

	// Without a replay, a create of an existing name is the guest's own.
	if _, err := f.c.OpenFile(f.p("newdir"), os.O_WRONLY|os.O_CREATE|os.O_EXCL); err == nil {
		t.Error("exclusive create over a folder worked")
	}
}

// A replay the helper never makes ends by itself.
func TestReplayExpires(t *testing.T) {
	r := NewReplays()
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	r.Expect("/p/x", ReplayCreate, 0)
	if _, ok := r.take("/p/x", false, ReplayCreate); !ok {
		t.Fatal("pending replay not found")
	}
	now = now.Add(replayTTL + time.Second)
	if _, ok := r.take("/p/x", false, ReplayCreate); ok {
		t.Error("replay outlived its time")
	}
	r.GuestChanged("/p/y")
	if !r.ChangedByGuest("/p/y", time.Second) || r.ChangedByGuest("/p/z", time.Second) {
		t.Error("guest changes misrecorded")
	}
	now = now.Add(2 * time.Second)
	if r.ChangedByGuest("/p/y", time.Second) {
		t.Error("an old guest change still counts")
	}
	// Records older than a minute are swept by a later one.
	r.lookedUp("/p/z")
	now = now.Add(2 * time.Minute)
	r.GuestChanged("/p/w")
	if len(r.byGuest) != 1 || len(r.looked) != 0 {
		t.Errorf("not swept: byGuest %v, looked %v", r.byGuest, r.looked)
	}
}

// The guest's lookups are recorded: a create the guest has looked up
// since it appeared is not replayed as one.
func TestLookedUpSince(t *testing.T) {
	r := NewReplays()
	f := startOpts(t, Options{GuestUID: -1, GuestGID: -1, Replays: r})
	before := time.Now()
	if r.LookedUpSince(f.p("a.txt"), before) {
		t.Fatal("looked up before any lookup")
	}
	if _, err := f.c.Lstat(f.p("a.txt")); err != nil {
		t.Fatal(err)
	}
	if !r.LookedUpSince(f.p("a.txt"), before) {
		t.Error("the guest's lookup was not recorded")
	}
	if r.LookedUpSince(f.p("a.txt"), time.Now().Add(time.Second)) {
		t.Error("a lookup counted for a later time")
	}
}

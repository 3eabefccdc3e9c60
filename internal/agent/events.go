package agent

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/hostwatch"
	"github.com/devbox-vm/devbox/internal/sharedfs"
	"github.com/devbox-vm/devbox/sshutil"
)

//go:embed replay.py
var replayHelper string

// echoWindow is how long after the guest changed a path through the
// server a host event on it is taken for the echo of that change.
const echoWindow = 2 * time.Second

// replayOp is one request to the guest's helper.
type replayOp struct {
	op   string // modify, create, mkdir, remove, rmdir
	kind sharedfs.ReplayKind
}

// replayOpFor is the helper's request that re-enacts c in the guest;
// false when there is none (a new symlink: following it could reach
// anything, and a link raises no event).
func replayOpFor(c hostwatch.Change) (replayOp, bool) {
	switch {
	case c.Kind == hostwatch.Create && c.Dir:
		return replayOp{"mkdir", sharedfs.ReplayMkdir}, true
	case c.Kind == hostwatch.Create && c.Link:
		return replayOp{}, false
	case c.Kind == hostwatch.Create:
		return replayOp{"create", sharedfs.ReplayCreate}, true
	case c.Kind == hostwatch.Modify:
		return replayOp{"modify", sharedfs.ReplayModify}, true
	case c.Kind == hostwatch.Remove && c.Dir:
		return replayOp{"rmdir", sharedfs.ReplayRmdir}, true
	case c.Kind == hostwatch.Remove:
		return replayOp{"remove", sharedfs.ReplayRemove}, true
	}
	return replayOp{}, false
}

// keepReplaying runs replayEvents until ctx ends, starting the guest's
// helper again 5 s after it ended by itself.
func (a *Agent) keepReplaying(ctx context.Context, c *sshutil.Client, gen, i int, m config.Mount, replays *sharedfs.Replays, virtiofs bool) {
	for a.replayEvents(ctx, c, gen, i, m, replays, virtiofs) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// replayEvents watches shared folder m on the host and replays its
// changes in the guest (see sharedfs.Replays) until ctx ends. It returns
// true when the guest's helper ended while the connection lasts. On a
// virtio-fs folder (virtiofs) the helper raises what it can without
// changing the host's files (see replay.py), and drops the echoes of the
// guest's own changes itself.
func (a *Agent) replayEvents(ctx context.Context, c *sshutil.Client, gen, i int, m config.Mount, replays *sharedfs.Replays, virtiofs bool) (again bool) {
	if code, err := c.Run(ctx, sshutil.Cmd{Script: "command -v python3"}); err != nil || code != 0 {
		if ctx.Err() == nil {
			a.Log.Printf("WARNING: file events of %s: no python3 in the guest, host changes raise no inotify events there", m.Host)
			a.setMountEvents(gen, i, "off: no python3 in the guest")
		}
		return false
	}
	helper := sshutil.Cmd{Args: []string{"python3", "-u", "-c", replayHelper}, Root: true}
	if virtiofs {
		helper.Args = append(helper.Args, "virtiofs", m.Host)
		for _, ig := range a.EventsIgnore {
			if !strings.Contains(ig, "/") {
				helper.Args = append(helper.Args, ig)
			}
		}
	}
	rwc, wait, err := c.Pipe(ctx, helper)
	if err != nil {
		if ctx.Err() == nil {
			a.Log.Printf("WARNING: file events of %s: %v", m.Host, err)
			a.setMountEvents(gen, i, "off: "+err.Error())
		}
		return false
	}
	defer func() { rwc.Close(); wait() }()
	answers := readAnswers(rwc, replays)
	ctx, stopWatch := context.WithCancel(ctx) // the watcher ends with the helper
	defer stopWatch()

	// The watcher hands changes over without waiting for the replays
	// (its notifications must be taken as they come, see hostwatch.Watch).
	var queue changeQueue
	watchDone := make(chan error, 1)
	limited := ""
	opts := hostwatch.Options{
		Ignore: a.EventsIgnore,
		Skip:   func(p string) bool { return replays.ChangedByGuest(p, echoWindow) },
		Warn: func(msg string) {
			a.Log.Printf("WARNING: %s", msg)
			limited = msg
		},
		Watching: func(n int) {
			st := fmt.Sprintf("on (watching %d folders)", n)
			if virtiofs {
				st = fmt.Sprintf("on, close_write and attrib only (virtio-fs; watching %d folders)", n)
			}
			if limited != "" {
				st = "limited: " + limited
			}
			a.setMountEvents(gen, i, st)
		},
	}
	go func() {
		watchDone <- hostwatch.Watch(ctx, m.Host, opts, queue.add)
	}()
	a.Log.Printf("replaying host changes under %s in the guest (ignoring %s)", m.Host, strings.Join(a.EventsIgnore, ", "))
	failed := dedup{}
	for {
		select {
		case <-ctx.Done():
			return false
		case err := <-watchDone:
			if err != nil && ctx.Err() == nil {
				a.Log.Printf("WARNING: file events of %s: %v", m.Host, err)
				a.setMountEvents(gen, i, "off: "+err.Error())
			}
			return false
		case <-queue.ready():
			if err := a.replayBatch(rwc, answers, replays, queue.take(), &failed); err != nil {
				if ctx.Err() == nil {
					a.Log.Printf("WARNING: file events of %s: the guest's helper ended: %v; starting it again in 5 s", m.Host, err)
					a.setMountEvents(gen, i, "off: the guest's helper ended: "+err.Error())
				}
				return ctx.Err() == nil
			}
		}
	}
}

// replayBatch sends the helper the requests for cs and waits for their
// answers. Requests go in waves in which each path appears once (a new
// file's create, then its modify), so that the server knows, for every
// path, the one replay it is about to see, and none lies in another's
// folder: the helper runs a wave's requests at once, and a folder's
// mkdir must be done before a create in it. A create or mkdir, which
// hides its path from the guest until it is made, goes alone.
func (a *Agent) replayBatch(w io.Writer, answers <-chan string, replays *sharedfs.Replays, cs []hostwatch.Change, failed *dedup) error {
	type request struct {
		op     replayOp
		change hostwatch.Change
	}
	var waves [][]request
	var wave []request
	inWave := map[string]bool{}
	cut := func() {
		if len(wave) > 0 {
			waves, wave, inWave = append(waves, wave), nil, map[string]bool{}
		}
	}
	for _, ch := range cs {
		op, ok := replayOpFor(ch)
		if !ok {
			continue
		}
		hides := op.kind == sharedfs.ReplayCreate || op.kind == sharedfs.ReplayMkdir
		if hides && replays.LookedUpSince(ch.Path, ch.At) {
			// The guest knows it already (someone looked it up since it
			// appeared): no create event, rather than hiding it from
			// them. A new file still gets its modify.
			continue
		}
		if hides || inWave[ch.Path] || hasAncestorIn(ch.Path, inWave) {
			cut()
		}
		wave = append(wave, request{op, ch})
		inWave[ch.Path] = true
		if hides {
			// Alone in its wave: the path is hidden from the guest only
			// while the helper creates it.
			cut()
		}
	}
	cut()
	for _, wave := range waves {
		var out bytes.Buffer
		for id, r := range wave {
			replays.Expect(r.change.Path, r.op.kind, r.change.Size)
			fmt.Fprintf(&out, "%d\x00%s\x00%s\x00%d\x00", id, r.op.op, r.change.Path, r.change.Size)
		}
		_, err := w.Write(out.Bytes())
		for n := 0; err == nil && n < len(wave); n++ {
			line, ok := <-answers
			if !ok {
				err = errors.New("the helper's output ended")
				break
			}
			idText, msg, _ := strings.Cut(strings.TrimSpace(line), " ")
			id, perr := strconv.Atoi(idText)
			if perr != nil || id < 0 || id >= len(wave) {
				err = fmt.Errorf("unreadable answer %q", line)
				break
			}
			r := wave[id]
			replays.Done(r.change.Path)
			if msg != "ok" && failed.first(fmt.Errorf("%s: %s", r.op.op, msg)) {
				// The guest's view differed (its kernel still had the
				// file, or the folder went first); the next change brings
				// them together. Logged once until another kind comes.
				a.Log.Printf("file events: replaying %s of %s: %s (further failures like it are not logged)", r.op.op, r.change.Path, msg)
			}
		}
		if err != nil {
			for _, r := range wave {
				replays.Done(r.change.Path)
			}
			return err
		}
	}
	return nil
}

// readAnswers reads the helper's output: answers to requests, which it
// passes on, and the changes the guest made itself ("g HEX-PATH", on a
// virtio-fs folder), which it records in replays so that their echoes are
// not sent back. The channel closes when the output ends.
func readAnswers(r io.Reader, replays *sharedfs.Replays) <-chan string {
	answers := make(chan string, 64)
	go func() {
		defer close(answers)
		lines := bufio.NewReader(r)
		for {
			line, err := lines.ReadString('\n')
			if err != nil {
				return
			}
			if h, ok := strings.CutPrefix(line, "g "); ok {
				if p, err := hex.DecodeString(strings.TrimSpace(h)); err == nil {
					replays.GuestChanged(string(p))
				}
				continue
			}
			answers <- line
		}
	}()
	return answers
}

// hasAncestorIn reports whether a folder holding p is in set.
func hasAncestorIn(p string, set map[string]bool) bool {
	for d := filepath.Dir(p); d != p; p, d = d, filepath.Dir(d) {
		if set[d] {
			return true
		}
	}
	return false
}

// changeQueue holds changes waiting to be replayed; adding never blocks.
type changeQueue struct {
	mu      sync.Mutex
	changes []hostwatch.Change
	signal  chan struct{} // holds a token while changes wait
	once    sync.Once
}

func (q *changeQueue) init() { q.once.Do(func() { q.signal = make(chan struct{}, 1) }) }

func (q *changeQueue) add(cs []hostwatch.Change) {
	q.init()
	q.mu.Lock()
	q.changes = append(q.changes, cs...)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// ready is readable while changes wait.
func (q *changeQueue) ready() <-chan struct{} {
	q.init()
	return q.signal
}

// take returns the waiting changes, oldest first, and empties the queue.
func (q *changeQueue) take() []hostwatch.Change {
	q.mu.Lock()
	defer q.mu.Unlock()
	cs := q.changes
	q.changes = nil
	return cs
}

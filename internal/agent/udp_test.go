package agent

import (
	"context"
	"encoding/hex"
	"fmt"
	"log"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/dockerports"
	"github.com/devbox-vm/devbox/internal/hostwatch"
	"github.com/devbox-vm/devbox/internal/sharedfs"
	"github.com/devbox-vm/devbox/internal/testutil"
	"github.com/devbox-vm/devbox/vm"
)

// fakeUDP is a VM's table of UDP forwards; a host address in taken
// cannot be bound.
type fakeUDP struct {
	mu    sync.Mutex
	fwds  map[string]int
	taken map[string]bool
	lists int // UDPForwards calls: one per sync
}

func (f *fakeUDP) UDPForwards(context.Context) ([]vm.UDPForward, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	var out []vm.UDPForward
	for h, g := range f.fwds {
		out = append(out, vm.UDPForward{Host: h, Guest: g})
	}
	return out, nil
}

func (f *fakeUDP) AddUDPForward(_ context.Context, fw vm.UDPForward) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.fwds[fw.Host]; dup || f.taken[fw.Host] {
		return fmt.Errorf("could not set up %s", fw.Host)
	}
	f.fwds[fw.Host] = fw.Guest
	return nil
}

func (f *fakeUDP) RemoveUDPForward(_ context.Context, host string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.fwds, host)
	return nil
}

func (f *fakeUDP) table() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprint(f.fwds)
}

func TestUDPForwardsFollowConfigAndContainers(t *testing.T) {
	var logs testutil.Buffer
	udp := &fakeUDP{
		// Left by an earlier agent for a container that is gone.
		fwds:  map[string]int{"127.0.0.1:7000": 7000},
		taken: map[string]bool{"127.0.0.1:6000": true},
	}
	a := &Agent{Log: log.New(&logs, "", 0), UDP: udp, Forwards: []config.Forward{
		{Host: "127.0.0.1:5000", Guest: 50, Proto: "udp"},
		{Host: "127.0.0.1:5001", Guest: 51, Proto: "tcp"},
	}}
	a.init()
	ctx := context.Background()
	p := newPublisher(ctx, a)
	defer p.closeAll()
	a.published = p // as Run does: Status lists the published ports

	p.syncUDP(ctx) // connected: the configured forward only
	if got, want := udp.table(), "map[127.0.0.1:5000:50]"; got != want {
		t.Errorf("after connecting: %s, want %s", got, want)
	}
	if st := a.Status().Forwards[0]; st.State != Listening || st.Proto != "udp" {
		t.Errorf("configured udp forward: %+v", st)
	}

	p.update([]dockerports.Port{
		{HostPort: 5353, Container: "dns", Proto: "udp"},
		{HostPort: 5353, Container: "dns", Proto: "tcp"},
		{HostPort: 6000, Container: "busy", Proto: "udp"},
		{HostPort: 5000, Container: "clash", Proto: "udp"}, // the configured forward keeps it
	})
	if got, want := udp.table(), "map[127.0.0.1:5000:50 127.0.0.1:5353:5353]"; got != want {
		t.Errorf("after publishing: %s, want %s", got, want)
	}
	var udpStates []string
	for _, st := range a.Status().Forwards {
		if st.Proto == "udp" {
			udpStates = append(udpStates, fmt.Sprintf("%s %s %s", st.Host, st.Container, st.State))
		}
	}
	if got, want := strings.Join(udpStates, ", "), "127.0.0.1:5000  listening, 127.0.0.1:5353 dns listening, 127.0.0.1:6000 busy failed"; got != want {
		t.Errorf("udp statuses: %s, want %s", got, want)
	}
	if !strings.Contains(logs.String(), "container busy publishes udp port 6000") {
		t.Errorf("log lacks the taken port:\n%s", logs.String())
	}

	// A port that failed is tried again on the next update...
	published := []dockerports.Port{
		{HostPort: 5353, Container: "dns", Proto: "udp"},
		{HostPort: 6000, Container: "busy", Proto: "udp"},
	}
	udp.mu.Lock()
	clear(udp.taken)
	udp.mu.Unlock()
	p.update(published)
	if got, want := udp.table(), "map[127.0.0.1:5000:50 127.0.0.1:5353:5353 127.0.0.1:6000:6000]"; got != want {
		t.Errorf("after the port was freed: %s, want %s", got, want)
	}
	// ...but with none failed, an update that changes only TCP ports
	// does not reach the VM's driver.
	udp.mu.Lock()
	lists := udp.lists
	udp.mu.Unlock()
	p.update(append(published, dockerports.Port{HostPort: freePort(t), Container: "web", Proto: "tcp"}))
	udp.mu.Lock()
	if udp.lists != lists {
		t.Errorf("a TCP-only change synced UDP (%d lists, want %d)", udp.lists, lists)
	}
	udp.mu.Unlock()

	// The VM restarted: QEMU has no forwards; the next connection
	// brings them back.
	udp.mu.Lock()
	clear(udp.fwds)
	udp.mu.Unlock()
	p.syncUDP(ctx)
	if got, want := udp.table(), "map[127.0.0.1:5000:50 127.0.0.1:5353:5353 127.0.0.1:6000:6000]"; got != want {
		t.Errorf("after a restart: %s, want %s", got, want)
	}

	p.update(nil) // the containers went
	if got, want := udp.table(), "map[127.0.0.1:5000:50]"; got != want {
		t.Errorf("after the containers went: %s, want %s", got, want)
	}
}

func TestUDPWithoutForwarderSaysWhy(t *testing.T) {
	var logs testutil.Buffer
	a := &Agent{Log: log.New(&logs, "", 0), Forwards: []config.Forward{{Host: "127.0.0.1:5000", Guest: 50, Proto: "udp"}}}
	a.init()
	p := newPublisher(context.Background(), a)
	p.syncUDP(context.Background())
	if st := a.Status().Forwards[0]; st.State != Failed || !strings.Contains(st.Reason, "driver") {
		t.Errorf("status %+v", st)
	}
}

func TestChangeQueueNeverBlocks(t *testing.T) {
	var q changeQueue
	for i := 0; i < 1000; i++ { // nobody takes: adding must not wait
		q.add([]hostwatch.Change{{Path: fmt.Sprint(i)}})
	}
	select {
	case <-q.ready():
	default:
		t.Fatal("not ready with changes waiting")
	}
	got := q.take()
	if len(got) != 1000 || got[0].Path != "0" || got[999].Path != "999" {
		t.Errorf("took %d changes, first %v", len(got), got[0])
	}
	if len(q.take()) != 0 {
		t.Error("changes left after take")
	}
}

// fakeHelper is the guest's replay helper: it answers every request it
// is sent "id ok", and keeps the waves it got.
type fakeHelper struct {
	answers chan string
	waves   [][]string // "op path" per request, by wave
}

func (h *fakeHelper) Write(p []byte) (int, error) {
	f := strings.Split(strings.TrimSuffix(string(p), "\x00"), "\x00")
	var wave []string
	for i := 0; i+3 < len(f); i += 4 { // id, op, path, size
		wave = append(wave, f[i+1]+" "+f[i+2])
		h.answers <- f[i] + " ok\n"
	}
	h.waves = append(h.waves, wave)
	return len(p), nil
}

func TestReplayWaves(t *testing.T) {
	var logs testutil.Buffer
	a := &Agent{Log: log.New(&logs, "", 0)}
	r := sharedfs.NewReplays()
	h := &fakeHelper{answers: make(chan string, 100)}
	at := time.Now()
	cs := []hostwatch.Change{
		{Path: "/p/a.go", Kind: hostwatch.Modify, At: at},
		{Path: "/p/b.go", Kind: hostwatch.Modify, At: at},
		{Path: "/p/new", Kind: hostwatch.Create, Dir: true, At: at},
		{Path: "/p/new.go", Kind: hostwatch.Create, At: at},
		{Path: "/p/new.go", Kind: hostwatch.Modify, At: at},
		{Path: "/p/old.go", Kind: hostwatch.Remove, At: at},
	}
	if err := a.replayBatch(h, h.answers, r, cs, &dedup{}); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(h.waves)
	// Creates go alone; the rest share waves, a path once per wave.
	if want := "[[modify /p/a.go modify /p/b.go] [mkdir /p/new] [create /p/new.go] [modify /p/new.go remove /p/old.go]]"; got != want {
		t.Errorf("waves %s\nwant  %s", got, want)
	}
}

// TestReadAnswers: the helper's reports of the guest's own changes are
// recorded, not taken for answers.
func TestReadAnswers(t *testing.T) {
	r := sharedfs.NewReplays()
	out := "g " + hex.EncodeToString([]byte("/p/own file.txt")) + "\n0 ok\n1 No such file or directory\n"
	answers := readAnswers(strings.NewReader(out), r)
	var got []string
	for a := range answers {
		got = append(got, a)
	}
	if want := []string{"0 ok\n", "1 No such file or directory\n"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("answers %q, want %q", got, want)
	}
	if !r.ChangedByGuest("/p/own file.txt", time.Minute) {
		t.Error("the guest's own change was not recorded")
	}
}

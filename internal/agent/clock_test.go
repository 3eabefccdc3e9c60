package agent

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// clockGuest is a guest whose clock is off by an offset the agent can set
// through "sudo -n date -u -s @EPOCH".
type clockGuest struct {
	mu   sync.Mutex
	off  time.Duration
	sets int
}

func (c *clockGuest) offset() (time.Duration, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.off, c.sets
}

func (c *clockGuest) exec(cmd string, stdin io.Reader, stdout, _ io.Writer) int {
	switch {
	case cmd == clockProbe:
		lines := bufio.NewScanner(stdin)
		for lines.Scan() {
			c.mu.Lock()
			now := time.Now().Add(c.off)
			c.mu.Unlock()
			fmt.Fprintf(stdout, "%d.%06d\n", now.Unix(), now.Nanosecond()/1000)
		}
		return 0
	case strings.HasPrefix(cmd, "sudo -n date -u -s @"):
		epoch := strings.Fields(strings.TrimPrefix(cmd, "sudo -n date -u -s @"))[0]
		at, err := parseEpoch(epoch)
		if err != nil {
			return 1
		}
		c.mu.Lock()
		c.off, c.sets = at.Sub(time.Now()), c.sets+1
		c.mu.Unlock()
		return 0
	}
	return 127
}

// TestKeepClockSetsADriftedGuest: a guest 90 s behind (a paused VM) is
// set to the host's clock once and then left alone; a guest within the
// tolerance is never set.
func TestKeepClockSetsADriftedGuest(t *testing.T) {
	for _, tc := range []struct {
		off      time.Duration
		wantSets int
	}{{-90 * time.Second, 1}, {100 * time.Millisecond, 0}} {
		g, target := newFakeGuest(t)
		guest := &clockGuest{off: tc.off}
		g.setExec(guest.exec)
		a := &Agent{Target: target, KeepClock: true, timing: timing{clockEvery: 20 * time.Millisecond}}
		logs := startAgent(t, a)
		if tc.wantSets > 0 {
			logs.WaitFor(t, "guest clock was -1m30s off the host's", 10*time.Second)
		}
		// Many readings later, nothing more was set.
		time.Sleep(300 * time.Millisecond)
		off, sets := guest.offset()
		if sets != tc.wantSets || off > clockTolerance || off < -clockTolerance {
			t.Errorf("guest off by %v at first: %d sets, now off by %v; want %d sets and within %v\n%s", tc.off, sets, off, tc.wantSets, clockTolerance, logs.String())
		}
	}
}

func TestParseEpoch(t *testing.T) {
	for in, want := range map[string]time.Time{
		"1700000000.123456\n": time.Unix(1700000000, 123456000),
		"1700000000,5":        time.Unix(1700000000, 500000000),
		"1700000000":          time.Unix(1700000000, 0),
	} {
		if got, err := parseEpoch(in); err != nil || !got.Equal(want) {
			t.Errorf("parseEpoch(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "abc", "17.x"} {
		if _, err := parseEpoch(bad); err == nil {
			t.Errorf("parseEpoch(%q) accepted", bad)
		}
	}
}

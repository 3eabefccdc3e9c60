package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/devbox-vm/devbox/sshutil"
)

// clockProbe answers each line on stdin with the guest's clock (seconds
// since the epoch, with a fraction): bash's EPOCHREALTIME costs no fork;
// date where the shell has no such variable.
const clockProbe = `bash -c 'while read -r _; do t=$EPOCHREALTIME; [ -n "$t" ] || t=$(date +%s.%N); echo "$t"; done'`

// clockTolerance is how far the guest's clock may be from the host's
// before the agent sets it.
const clockTolerance = 500 * time.Millisecond

// keepClock keeps the guest's clock within clockTolerance of the host's
// while c is up: every clockEvery it reads the guest's clock through one
// long-lived session (the round trip's midpoint stands for the moment it
// was read) and sets it when it is off. A guest's clock stops while the
// VM is paused and falls behind after the host sleeps; guest NTP may be
// absent or have no network. The first reading is at once, so a guest
// that comes back after a pause (the connection is usually new by then)
// is set within a few seconds.
func (a *Agent) keepClock(ctx context.Context, c *sshutil.Client) {
	every := a.timings().clockEvery
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, err := c.Run(ctx, sshutil.Cmd{Script: clockProbe, Stdin: inR, Stdout: outW})
		outW.CloseWithError(fmt.Errorf("clock probe ended: %v", err))
	}()
	stop := context.AfterFunc(ctx, func() { inW.Close(); outR.Close() })
	defer stop()
	lines := bufio.NewScanner(outR)
	for {
		sent := time.Now()
		if _, err := io.WriteString(inW, "\n"); err != nil || !lines.Scan() {
			return
		}
		rtt := time.Since(sent)
		guest, err := parseEpoch(lines.Text())
		if err != nil {
			a.Log.Printf("guest clock: %v; not kept in step", err)
			return
		}
		if off := guest.Sub(sent.Add(rtt / 2)); off > clockTolerance || off < -clockTolerance {
			a.setGuestClock(ctx, c, off, rtt)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// setGuestClock sets the guest's clock to the host's, aiming at the
// moment the command runs (half a round trip from now).
func (a *Agent) setGuestClock(ctx context.Context, c *sshutil.Client, off, rtt time.Duration) {
	at := time.Now().Add(rtt / 2)
	var errb strings.Builder
	code, err := c.Run(ctx, sshutil.Cmd{Args: []string{"date", "-u", "-s", fmt.Sprintf("@%d.%03d", at.Unix(), at.Nanosecond()/1e6)}, Root: true, Stderr: &errb})
	if err != nil || code != 0 {
		a.Log.Printf("guest clock is %s off the host's; setting it failed (exit %d): %v %s", roundOff(off), code, err, strings.TrimSpace(errb.String()))
		return
	}
	a.Log.Printf("guest clock was %s off the host's (a pause or the host's sleep): set to the host's", roundOff(off))
}

// parseEpoch reads "SECONDS.FRACTION" (or "SECONDS,FRACTION", as
// EPOCHREALTIME is in some locales).
func parseEpoch(s string) (time.Time, error) {
	s = strings.Replace(strings.TrimSpace(s), ",", ".", 1)
	sec, frac, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("unreadable time %q from the guest", s)
	}
	var ns int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		if ns, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return time.Time{}, fmt.Errorf("unreadable time %q from the guest", s)
		}
	}
	return time.Unix(n, ns), nil
}

func roundOff(d time.Duration) string {
	if d > 0 {
		return "+" + d.Round(10*time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

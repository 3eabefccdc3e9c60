package agent

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/sharedfs"
	"github.com/devbox-vm/devbox/sshutil"
)

// serveMounts mounts each shared folder in the guest over c, connection
// gen, serving its files from here, until ctx ends or the mount commands
// exit. Status tells when each folder is mounted or has failed.
func (a *Agent) serveMounts(ctx context.Context, c *sshutil.Client, gen int) {
	if len(a.Mounts) == 0 {
		return
	}
	uid, gid, err := GuestIDs(ctx, c)
	if err != nil {
		if ctx.Err() == nil {
			a.Log.Printf("mounts: %v", err)
		}
		for i := range a.Mounts {
			a.setMount(gen, i, Failed, err.Error())
		}
		return
	}
	a.pruneShares(ctx, c)
	var wg sync.WaitGroup
	for i, m := range a.Mounts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.serveMount(ctx, c, gen, i, m, uid, gid)
		}()
	}
	wg.Wait()
}

// serveMount serves shared folder i and records its state: mounted once
// the guest sees a mount point, failed when it does not in time or when
// sshfs exits.
func (a *Agent) serveMount(ctx context.Context, c *sshutil.Client, gen, i int, m config.Mount, uid, gid int) {
	note := ""
	if a.MountType == config.MountVirtioFS {
		if note = a.virtiofsFallback(m); note == "" {
			err := a.serveVirtioFS(ctx, c, gen, i, m, uid, gid)
			if err == nil || ctx.Err() != nil {
				return
			}
			note = err.Error()
		}
		a.Log.Printf("shared folder %s: reverse SSHFS, not virtio-fs: %s", m.Host, note)
	}
	a.setMountType(gen, i, config.MountSSHFS, note)
	a.Log.Printf("serving %s to the guest (%s)", m.Host, modeName(m))
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	replays := sharedfs.NewReplays()
	go func() { served <- ServeMount(mctx, c, m, uid, gid, replays) }()
	checked := make(chan error, 1)
	go func() { checked <- a.checkMounted(mctx, c, m.Host) }()

	var err error
	select {
	case cerr := <-checked:
		if ctx.Err() == nil {
			if cerr == nil {
				a.Log.Printf("shared folder %s mounted in the guest", m.Host)
				a.setMount(gen, i, Mounted, "")
				switch {
				case m.ReadOnly():
					a.setMountEvents(gen, i, "off: read-only in the guest")
				case !a.FileEvents:
					a.setMountEvents(gen, i, "off: file_events.enabled is false")
				default:
					go a.keepReplaying(mctx, c, gen, i, m, replays, false)
				}
			} else {
				a.Log.Printf("WARNING: shared folder %s: %v", m.Host, cerr)
				a.setMount(gen, i, Failed, cerr.Error())
			}
		}
		err = <-served
	case err = <-served:
		cancel()
		<-checked
	}
	if ctx.Err() != nil {
		return
	}
	a.Log.Printf("mount %s: %s", m.Host, sshfsFailure(err))
	a.setMount(gen, i, Failed, sshfsFailure(err))
}

// sshfsFailure says why ServeMount returned (err) while the connection
// was still up: sshfs's exit status and the end of its stderr rather
// than the whole mount command line.
func sshfsFailure(err error) string {
	var exit *sshutil.ExitError
	switch {
	case err == nil:
		return "sshfs in the guest exited (was the folder unmounted there?)"
	case errors.As(err, &exit):
		msg := fmt.Sprintf("sshfs in the guest exited with status %d", exit.Status)
		if tail := stderrTail(exit.Stderr); tail != "" {
			msg += ": " + tail
		}
		if exit.Status == 127 || strings.Contains(exit.Stderr, "not found") {
			msg += " (hint: is sshfs installed in the guest? devbox provision installs it)"
		}
		return msg
	default:
		return err.Error()
	}
}

// stderrTail is the last few lines of a command's stderr, on one line.
func stderrTail(s string) string {
	tail := tailLines(strings.TrimSpace(s), 3)
	if len(tail) > 500 {
		tail = "..." + tail[len(tail)-500:]
	}
	return tail
}

// tailLines is the last n lines of text, on one line.
func tailLines(text string, n int) string {
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

//go:embed wait-mount.sh
var waitMountScript string

// WaitMount is the command that waits up to tenths tenths of a second for
// path to be a mount point in the guest, then runs args (if any) in dir;
// if path never is one it exits 125, printing message (if not empty) to
// stderr. It is the one wait for the agent and for devbox run.
func WaitMount(path string, tenths int, message, dir string, args ...string) sshutil.Cmd {
	cmdArgs := []string{path, strconv.Itoa(tenths), message}
	if len(args) > 0 {
		cmdArgs = append(append(cmdArgs, dir), args...)
	}
	return sshutil.Cmd{Script: waitMountScript, Args: cmdArgs}
}

// checkMounted waits (bounded) until the guest sees path as a mount
// point.
func (a *Agent) checkMounted(ctx context.Context, c *sshutil.Client, path string) error {
	timeout := a.timings().mountTimeout
	tries := max(1, int(timeout/(100*time.Millisecond)))
	// A hung mount of a previous connection can block mountpoint itself.
	ctx, cancel := context.WithTimeout(ctx, timeout+10*time.Second)
	defer cancel()
	code, err := c.Run(ctx, WaitMount(path, tries, "", ""))
	if err != nil {
		return fmt.Errorf("check that %s is mounted in the guest: %w", path, err)
	}
	if code != 0 {
		return fmt.Errorf("not a mount point after %v: is sshfs installed in the guest? (devbox provision installs it)", timeout)
	}
	return nil
}

// GuestIDs is the uid and gid of the user c is logged in as.
func GuestIDs(ctx context.Context, c *sshutil.Client) (uid, gid int, err error) {
	out, err := c.Output(ctx, sshutil.Cmd{Script: "id -u; id -g"})
	if err != nil {
		return 0, 0, fmt.Errorf("guest user ids: %w", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("guest user ids: unexpected output of id: %q", out)
	}
	uid, _ = strconv.Atoi(f[0])
	gid, _ = strconv.Atoi(f[1])
	return uid, gid, nil
}

// ServeMount mounts m in the guest at the same path (replacing a stale
// mount left by a dead agent) and serves its files from this process
// until ctx ends or sshfs in the guest exits. replays, when set, holds
// the host changes being replayed in the guest (see replayEvents).
func ServeMount(ctx context.Context, c *sshutil.Client, m config.Mount, uid, gid int, replays *sharedfs.Replays) error {
	// The accepted path was resolved when the user accepted it; if a
	// symlink now stands anywhere on it, it may lead elsewhere: refuse.
	if real, err := filepath.EvalSymlinks(m.Host); err != nil || real != m.Host {
		return fmt.Errorf("shared folder %s no longer is the folder that was accepted (now %q, %v): not served (hint: devbox up checks it again)", m.Host, real, err)
	}
	cmd := sharedfs.MountCommand(m.Host, m.Host, m.ReadOnly(), uid, gid)
	rwc, wait, err := c.Pipe(ctx, cmd)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	opts := sharedfs.Options{ReadOnly: m.ReadOnly(), GuestUID: uid, GuestGID: gid, Replays: replays}
	go func() { done <- sharedfs.ServeOptions(ctx, rwc, m.Host, opts) }()
	var serveErr error
	select {
	case serveErr = <-done:
	case <-ctx.Done():
	}
	rwc.Close()
	code, err := wait()
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sshfs in the guest ended (exit %d): %w", code, err)
	}
	return serveErr
}

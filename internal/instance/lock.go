package instance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/devbox-vm/devbox/internal/lockfile"
)

// DefaultLockTimeout bounds how long a command waits for another one on
// the same instance (an up may install an engine for minutes).
const DefaultLockTimeout = 15 * time.Minute

// lockFile guards one instance: it sits beside the instance folder, not
// in it, so that destroy can remove the folder while holding it.
func (in *Instance) lockFile() string {
	return filepath.Join(in.Home.Instances(), in.Name()+".lock")
}

// lock makes the commands that change the instance (up, halt, destroy,
// provision) take turns: a second one waits, saying for whom.
func (in *Instance) lock(ctx context.Context, verb string) (*lockfile.Lock, error) {
	timeout := in.LockTimeout
	if timeout == 0 {
		timeout = DefaultLockTimeout
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	l, err := lockfile.Acquire(wctx, in.lockFile(), fmt.Sprintf("devbox %s of %s", verb, in.Name()), func(h lockfile.Holder) {
		in.Status.Infof("waiting for %s", h)
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			h, _ := lockfile.ReadHolder(in.lockFile())
			return nil, fmt.Errorf("instance %q is busy: %s still holds it after %s (hint: wait for that command to finish, or stop it)", in.Name(), h, timeout)
		}
		return nil, err
	}
	return l, nil
}

// unlock releases the instance's lock; when the instance folder is gone
// (destroyed, or never created because up failed early) the lock file
// goes too, so nothing of the instance is left behind.
func (in *Instance) unlock(l *lockfile.Lock) {
	if _, err := os.Stat(in.Dir()); os.IsNotExist(err) {
		l.Remove()
		return
	}
	l.Unlock()
}

// Package instance ties config, boxes, the VM driver, SSH and provisioning
// together into devbox's commands: up, halt, destroy, status, provision
// and ssh.
package instance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/devbox-vm/devbox/internal/cli"
	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/sshutil"
	"github.com/devbox-vm/devbox/vm"
)

// Connector opens a driver for a libvirt URI (swapped in tests).
type Connector func(ctx context.Context, uri string) (vm.Driver, error)

// Instance is one configured VM and what devbox knows of it on the host.
type Instance struct {
	Cfg     *config.Config
	Home    Home
	Status  *cli.Status
	Connect Connector
	// LockTimeout bounds the wait for another command on this instance;
	// zero means DefaultLockTimeout.
	LockTimeout time.Duration

	driver vm.Driver
}

// New prepares an instance; nothing is touched until a command runs.
func New(cfg *config.Config, home Home, status *cli.Status, connect Connector) *Instance {
	return &Instance{Cfg: cfg, Home: home, Status: status, Connect: connect}
}

// Name is the user's instance name; Domain its libvirt name.
func (in *Instance) Name() string   { return in.Cfg.Name }
func (in *Instance) Domain() string { return in.Home.DomainName(in.Cfg.Name) }

// Dir is the instance's folder of keys and logs.
func (in *Instance) Dir() string { return in.Home.InstanceDir(in.Cfg.Name) }

// KeyFile is devbox's key for the guest user; HostKeyFile the guest's
// pinned host key (each with its .pub).
func (in *Instance) KeyFile() string     { return filepath.Join(in.Dir(), filenames.UserKey) }
func (in *Instance) HostKeyFile() string { return filepath.Join(in.Dir(), filenames.HostKey) }

// boxFile records the sha256 of the box the instance was made from.
func (in *Instance) boxFile() string { return filepath.Join(in.Dir(), filenames.BoxSHA256) }

// BoxUsers maps each box sha256 to the instances of home made from it
// (those created since devbox recorded it).
func BoxUsers(home Home) map[string][]string {
	users := map[string][]string{}
	files, _ := filepath.Glob(filepath.Join(home.Instances(), "*", filenames.BoxSHA256))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			sha := strings.TrimSpace(string(b))
			users[sha] = append(users[sha], filepath.Base(filepath.Dir(f)))
		}
	}
	return users
}

// ConsoleLog is where the VM's serial console is written.
func (in *Instance) ConsoleLog() string { return filepath.Join(in.Dir(), filenames.ConsoleLog) }

// ProvisionLog holds the output of every provisioning step.
func (in *Instance) ProvisionLog() string { return filepath.Join(in.Dir(), filenames.ProvisionLog) }

// Driver connects to libvirt on first use.
func (in *Instance) Driver(ctx context.Context) (vm.Driver, error) {
	if in.driver != nil {
		return in.driver, nil
	}
	d, err := in.Connect(ctx, in.Cfg.LibvirtURI)
	if err != nil {
		return nil, err
	}
	in.driver = d
	return d, nil
}

// Close releases the libvirt connection.
func (in *Instance) Close() error {
	if in.driver == nil {
		return nil
	}
	err := in.driver.Close()
	in.driver = nil
	return err
}

// Inspect reports the instance's live state; a missing one has state
// vm.StateNotCreated and no error.
func (in *Instance) Inspect(ctx context.Context) (vm.Info, error) {
	d, err := in.Driver(ctx)
	if err != nil {
		return vm.Info{}, err
	}
	info, err := d.Inspect(ctx, in.Domain())
	if errors.Is(err, vm.ErrNotFound) {
		return vm.Info{Name: in.Domain(), Instance: in.Name(), State: vm.StateNotCreated}, nil
	}
	return info, err
}

// errNotCreated is returned by commands that need an existing instance.
func (in *Instance) errNotCreated() error {
	return fmt.Errorf("instance %q is not created (hint: run devbox up)", in.Name())
}

// errNotRunning is returned by commands that need a running instance.
func (in *Instance) errNotRunning(st vm.State) error {
	return fmt.Errorf("instance %q is %s (hint: run devbox up)", in.Name(), st)
}

// target is how to reach the guest's SSH server for info.
func (in *Instance) target(info vm.Info) (sshutil.Target, error) {
	host, err := sshutil.ReadKeyPair(in.HostKeyFile())
	if err != nil {
		return sshutil.Target{}, fmt.Errorf("host key of instance %q: %w (hint: its folder %s was removed; devbox destroy and up again)", in.Name(), err, in.Dir())
	}
	user := info.User
	if user == "" {
		user = in.Cfg.User.Name
	}
	return sshutil.Target{
		Addr:     fmt.Sprintf("127.0.0.1:%d", info.SSHPort),
		User:     user,
		KeyFile:  in.KeyFile(),
		HostKey:  host.Public,
		Emulated: info.Accel == "tcg",
	}, nil
}

// dial connects to the running guest once (no retry).
func (in *Instance) dial(ctx context.Context, info vm.Info) (*sshutil.Client, error) {
	t, err := in.target(info)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := sshutil.Dial(dctx, t)
	if err != nil {
		return nil, fmt.Errorf("ssh to instance %q: %w (hint: devbox status; the console log is %s)", in.Name(), err, in.ConsoleLog())
	}
	return c, nil
}

// Running checks that the instance runs and returns its info.
func (in *Instance) Running(ctx context.Context) (vm.Info, error) {
	info, err := in.Inspect(ctx)
	if err != nil {
		return info, err
	}
	switch info.State {
	case vm.StateRunning:
		return info, nil
	case vm.StateNotCreated:
		return info, in.errNotCreated()
	}
	return info, in.errNotRunning(info.State)
}

// SSH runs args in the guest (its login shell when args is empty) and
// returns the remote exit status; pty, when set, gives it a terminal.
func (in *Instance) SSH(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer, pty *sshutil.PTY) (int, error) {
	info, err := in.Running(ctx)
	if err != nil {
		return 1, err
	}
	c, err := in.dial(ctx, info)
	if err != nil {
		return 1, err
	}
	defer c.Close()
	return c.Run(ctx, sshutil.Cmd{Args: args, Stdin: stdin, Stdout: stdout, Stderr: stderr, PTY: pty})
}

// Halt stops the instance: the ACPI power button and a poweroff over
// SSH at once, forced off after timeout. force skips straight to forced
// off.
func (in *Instance) Halt(ctx context.Context, force bool, timeout time.Duration) error {
	lk, err := in.lock(ctx, "halt")
	if err != nil {
		return err
	}
	defer in.unlock(lk)
	info, err := in.Inspect(ctx)
	if err != nil {
		return err
	}
	if info.State == vm.StateNotCreated {
		return in.errNotCreated()
	}
	if info.State == vm.StateStopped {
		in.Supervisor().Stop()
		in.stopShares()
		in.Status.Infof("instance %q is already stopped", in.Name())
		return nil
	}
	d, _ := in.Driver(ctx)
	// The agent goes while the guest shuts down: neither waits for the other.
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); in.Supervisor().Stop() }()
	// virtiofsd ends with the VM; one that never got it would not.
	defer in.stopShares()
	if force {
		return in.Status.Step("Forcing the VM off", func() error { return d.Kill(ctx, in.Domain()) })
	}
	return in.Status.Step("Halting the VM", func() error {
		// The ACPI power button (no login needed, the fastest request) and
		// a poweroff over SSH (obeyed by a guest that ignores the button)
		// at once; forced off after timeout.
		wg.Add(1)
		go func() { defer wg.Done(); in.poweroffOverSSH(ctx, info) }()
		return d.Shutdown(ctx, in.Domain(), timeout)
	})
}

// awaitStop waits up to timeout for a guest that was asked to power off
// (asked: the request was delivered); a guest that was not asked, or did
// not stop, gets ACPI, then is forced off after timeout.
func (in *Instance) awaitStop(ctx context.Context, d vm.Driver, asked bool, timeout time.Duration) error {
	if asked {
		wctx, cancel := context.WithTimeout(ctx, timeout)
		err := d.WaitStopped(wctx, in.Domain())
		cancel()
		if err == nil {
			return nil
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// The guest did not power off by itself: ACPI, then force.
	return d.Shutdown(ctx, in.Domain(), timeout)
}

// poweroff asks the guest to power off, without waiting for it.
var poweroff = sshutil.Cmd{Args: []string{"systemctl", "poweroff", "--no-block"}, Root: true}

// poweroffOverSSH asks the guest to power off; it reports whether the
// request was delivered.
func (in *Instance) poweroffOverSSH(ctx context.Context, info vm.Info) bool {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := in.dial(dctx, info)
	if err != nil {
		return false
	}
	defer c.Close()
	// The connection drops as the guest goes down; the exit status is moot.
	_, err = c.Run(dctx, poweroff)
	return err == nil
}

// Destroy removes the instance's VM, its volumes, keys and logs. The
// shared base volume and the box cache stay.
func (in *Instance) Destroy(ctx context.Context) error {
	d, err := in.Driver(ctx)
	if err != nil {
		return err
	}
	lk, err := in.lock(ctx, "destroy")
	if err != nil {
		return err
	}
	defer in.unlock(lk)
	return in.Status.Step(fmt.Sprintf("Destroying instance %q", in.Name()), func() error {
		in.Supervisor().Stop()
		// Delete also removes volumes left by a create that was killed
		// before it defined the domain.
		if err := d.Delete(ctx, in.Domain()); err != nil && !errors.Is(err, vm.ErrNotFound) {
			return err
		}
		if err := in.stopShares(); err != nil {
			return fmt.Errorf("remove virtiofsd's sockets: %w", err)
		}
		if err := os.RemoveAll(in.Dir()); err != nil {
			return fmt.Errorf("remove instance folder %s: %w", in.Dir(), err)
		}
		// The deferred unlock removes the lock file last: a command
		// waiting on it then finds nothing and starts from scratch.
		return nil
	})
}

// newInstanceID names one creation of the instance for cloud-init.
func newInstanceID(name string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return "devbox-" + name + "-" + hex.EncodeToString(b)
}

package instance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/devbox-vm/devbox/boxes"
	"github.com/devbox-vm/devbox/internal/agent"
	"github.com/devbox-vm/devbox/internal/guestenv"
	"github.com/devbox-vm/devbox/internal/lockfile"
	"github.com/devbox-vm/devbox/internal/rollback"
	"github.com/devbox-vm/devbox/internal/seed"
	"github.com/devbox-vm/devbox/provision"
	"github.com/devbox-vm/devbox/sshutil"
	"github.com/devbox-vm/devbox/vm"
)

// ProvisionMode says whether up provisions.
type ProvisionMode int

// Provision modes for up.
const (
	ProvisionAuto  ProvisionMode = iota // when the guest was never fully provisioned
	ProvisionForce                      // --provision
	ProvisionSkip                       // --no-provision
)

// UpOptions tune devbox up.
type UpOptions struct {
	Provision ProvisionMode
	NoAgent   bool // do not start the agent (unit tests)
	// AcceptShares accepts shared folders and forwards that reach further
	// than the user accepted before (--accept-shares).
	AcceptShares bool
	// Confirm asks the user a yes/no question on a terminal; nil when
	// there is none, and widening the shares is then refused.
	Confirm func(question string) bool
}

// Up makes the instance exist, run, answer SSH and be provisioned, and
// starts its agent. If ctx is cancelled (Ctrl-C) it undoes what this call
// created or started.
func (in *Instance) Up(ctx context.Context, opts UpOptions) (err error) {
	d, err := in.Driver(ctx)
	if err != nil {
		return err
	}
	if err := in.checkHomeNotShared(); err != nil {
		return err
	}
	lk, err := in.lock(ctx, "up")
	if err != nil {
		return err
	}
	defer in.unlock(lk)
	info, err := in.Inspect(ctx)
	if err != nil {
		return err
	}
	if info.State != vm.StateNotCreated {
		// Before anything changes: the VM must not gain reach because a
		// file it can write (devbox.yaml) asks for it.
		if err := in.settleShares(opts.AcceptShares, opts.Confirm); err != nil {
			return err
		}
	}
	// What this run made is undone only when it is interrupted (Ctrl-C):
	// after any other failure the instance stays for up to resume (its
	// console log and provision log say why) or destroy to remove.
	var undo rollback.Stack
	defer func() {
		if err == nil || ctx.Err() == nil {
			return
		}
		for _, what := range undo.Pending() {
			in.Status.Infof("interrupted: %s", what)
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if uerr := undo.Unwind(rctx); uerr != nil {
			in.Status.Warnf("rollback: %v", uerr)
		}
	}()

	if info.State == vm.StateNotCreated {
		if err := in.create(ctx, d); err != nil {
			return err
		}
		undo.Push("removing the instance this run created", func(ctx context.Context) error {
			if err := d.Delete(ctx, in.Domain()); err != nil && !errors.Is(err, vm.ErrNotFound) {
				return err
			}
			return os.RemoveAll(in.Dir())
		})
	}
	info, err = in.Inspect(ctx)
	if err != nil {
		return err
	}
	if info.State == vm.StateRunning {
		in.Status.Infof("instance %q is already running", in.Name())
	} else {
		if err := in.Status.Step("Starting the VM", func() error {
			info, err = d.Start(ctx, in.Domain())
			return err
		}); err != nil {
			return err
		}
		undo.Push("stopping the VM this run started", func(ctx context.Context) error { return d.Kill(ctx, in.Domain()) })
	}
	vm.Checkpoint("started")

	var client *sshutil.Client
	if err := in.Status.Step(fmt.Sprintf("Waiting for SSH on 127.0.0.1:%d", info.SSHPort), func() error {
		client, err = in.waitSSH(ctx, d, info)
		return err
	}); err != nil {
		return err
	}
	defer client.Close()
	vm.Checkpoint("ssh")
	if err := in.provision(ctx, client, opts.Provision); err != nil {
		return err
	}
	if opts.NoAgent {
		return nil
	}
	if err := in.Status.Step("Starting the agent (docker socket, shared folders, ports)", func() error {
		return in.StartAgent(ctx)
	}); err != nil {
		return err
	}
	in.reportMounts(ctx)
	return nil
}

// create resolves the box and defines the instance with fresh keys and
// seed. On failure nothing of the instance is left behind.
func (in *Instance) create(ctx context.Context, d vm.Driver) (err error) {
	cfg := in.Cfg
	var box boxes.Box
	if err := in.Status.Step("Resolving box", func() error {
		box, err = in.Home.ResolveBox(ctx, cfg.Box, cfg.BoxSHA256, cfg.Arch, in.Status.Writer())
		return err
	}); err != nil {
		return err
	}
	vm.Checkpoint("resolved")
	accel, fellBack, err := d.ResolveAccel(ctx, cfg.Accel, cfg.Arch)
	if err != nil {
		return err
	}
	if fellBack {
		in.Status.Warnf("no hardware acceleration (kvm or hvf) for %s guests is offered by libvirt at %s: using software emulation (tcg), which is several times slower", cfg.Arch, cfg.LibvirtURI)
	}
	return in.Status.Step(fmt.Sprintf("Creating instance %q (%d CPUs, %s memory, %s disk, accel %s)", in.Name(), cfg.CPUs, cfg.Memory, cfg.Disk, accel), func() (err error) {
		var undo rollback.Stack
		defer undo.OnError(ctx, &err)
		if err := os.MkdirAll(in.Dir(), 0o700); err != nil {
			return fmt.Errorf("create instance folder: %w", err)
		}
		undo.Push("remove the instance folder", func(context.Context) error { return os.RemoveAll(in.Dir()) })
		userKey, err := sshutil.NewEd25519("devbox-" + in.Name())
		if err != nil {
			return err
		}
		hostKey, err := sshutil.NewEd25519("devbox-host-" + in.Name())
		if err != nil {
			return err
		}
		if err := sshutil.WriteKeyPair(in.KeyFile(), userKey); err != nil {
			return err
		}
		if err := sshutil.WriteKeyPair(in.HostKeyFile(), hostKey); err != nil {
			return err
		}
		if err := in.recordShares(in.wantedShares()); err != nil {
			return err
		}
		// Which box this instance is made from, for box list and prune.
		if err := os.WriteFile(in.boxFile(), []byte(box.SHA256+"\n"), 0o600); err != nil {
			return fmt.Errorf("record the instance's box: %w", err)
		}
		iso, err := seed.ISO(seed.Data{
			Instance:       in.Name(),
			InstanceID:     newInstanceID(in.Name()),
			Hostname:       in.Name(),
			User:           cfg.User.Name,
			UID:            cfg.User.UID,
			AuthorizedKey:  userKey.Public,
			HostKeyPrivate: string(hostKey.Private),
			HostKeyPublic:  hostKey.Public,
		})
		if err != nil {
			return err
		}
		// One upload of a box at a time on this host: another up that
		// needs the same new box waits, then finds it in the pool.
		boxLock, err := lockfile.Acquire(ctx, filepath.Join(in.Home.Cache, "locks", "box-"+box.SHA256[:16]+".lock"),
			fmt.Sprintf("devbox up of %s (uploading box)", in.Name()), func(h lockfile.Holder) {
				in.Status.Infof("waiting for %s", h)
			})
		if err != nil {
			return err
		}
		defer boxLock.Unlock()
		return d.Create(ctx, vm.Spec{
			Name:      in.Domain(),
			Instance:  in.Name(),
			Home:      in.Home.State,
			User:      cfg.User.Name,
			CPUs:      cfg.CPUs,
			MemoryMiB: int64(cfg.Memory) >> 20,
			DiskBytes: int64(cfg.Disk),
			Arch:      cfg.Arch,
			Accel:     accel,
			CPUModel:  cfg.CPUModel,
			Offline:   cfg.Offline,
			// Shared memory whenever virtio-fs could work, so that
			// mount_type can change without a new VM.
			SharedMemory: in.noVirtioFS() == "",
			BoxPath:      box.Path,
			BoxSHA256:    box.SHA256,
			BoxFormat:    box.Format,
			BoxSize:      box.Size,
			Seed:         iso,
			ConsoleLog:   in.ConsoleLog(),
		}, in.Status.Infof)
	})
}

// waitSSH dials until the guest answers, the VM stops, or boot_timeout.
func (in *Instance) waitSSH(ctx context.Context, d vm.Driver, info vm.Info) (*sshutil.Client, error) {
	t, err := in.target(info)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, in.Cfg.BootTimeout)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		if d.WaitStopped(wctx, in.Domain()) == nil {
			close(stopped)
			cancel()
		}
	}()
	hung := make(chan string, 1)
	go func() {
		hung <- bootWatch{
			console: in.ConsoleLog(),
			stall:   bootStall,
			poll:    5 * time.Second,
			reset:   func(ctx context.Context) error { return d.Reset(ctx, in.Domain()) },
			warn:    in.Status.Warnf,
		}.run(wctx)
	}()
	c, err := sshutil.DialRetry(wctx, t)
	cancel()
	hungAt := <-hung
	if err == nil {
		return c, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	select {
	case <-stopped:
		return nil, fmt.Errorf("the VM stopped while booting (hint: see the console log %s)", in.ConsoleLog())
	default:
	}
	hint := fmt.Sprintf("see the console log %s", in.ConsoleLog())
	if why := bootDiagnosis(in.ConsoleLog(), in.Cfg.Arch); why != "" {
		hint = why + "; " + hint
	}
	if hungAt != "" {
		hint = fmt.Sprintf("the boot hung at %q and was reset once; ", hungAt) + hint
	}
	if info.Accel == "kvm" || info.Accel == "hvf" {
		hint += fmt.Sprintf("; accel %s was chosen: if this host's %s cannot boot the guest, set accel: tcg in devbox.yaml (or DEVBOX_ACCEL=tcg)", info.Accel, info.Accel)
	}
	hint += "; devbox destroy removes the instance"
	return nil, fmt.Errorf("SSH on %s did not answer within boot_timeout %s: %w (hint: %s)", t.Addr, in.Cfg.BootTimeout, err, hint)
}

// plan is the provisioning plan from the config.
func (in *Instance) plan() ([]provision.Step, error) {
	var steps []provision.UserStep
	for _, s := range in.Cfg.Provision {
		steps = append(steps, provision.UserStep{Name: s.Name, Always: s.Run == "always", Script: s.Script, AsRoot: s.AsRoot()})
	}
	return provision.Plan(provision.Options{User: in.Cfg.User.Name, DockerSource: in.Cfg.Docker.Source,
		SharedFolders: len(in.Cfg.Mounts) > 0, Emulators: in.Cfg.Emulators(), Steps: steps})
}

// provision runs the plan when mode and the guest's stamp call for it.
func (in *Instance) provision(ctx context.Context, c *sshutil.Client, mode ProvisionMode) error {
	steps, err := in.plan()
	if err != nil {
		return err
	}
	if mode == ProvisionSkip {
		return nil
	}
	// The host's proxy and CA certificates go first: installing the
	// engine may need them, and they change with the host's network.
	if err := in.applyGuestEnv(ctx, c); err != nil {
		return err
	}
	vm.Checkpoint("provision")
	if mode == ProvisionAuto {
		st, err := provision.Check(ctx, c, steps)
		if err != nil {
			return err
		}
		switch st {
		case provision.Provisioned:
			in.Status.Infof("already provisioned (devbox provision runs it again)")
			return nil
		case provision.Changed:
			in.Status.Infof("provisioning in devbox.yaml changed since this instance was provisioned: run devbox provision to apply it")
			return nil
		}
	}
	log, err := os.OpenFile(in.ProvisionLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open provision log: %w", err)
	}
	defer log.Close()
	err = provision.Run(ctx, c, steps, in.Status, log)
	var se *provision.StepError
	if errors.As(err, &se) {
		return fmt.Errorf("%w\n(the instance is kept for inspection: fix the step, then run devbox provision; full output in %s)", err, in.ProvisionLog())
	}
	return err
}

// Provision runs every provisioning step again on the running instance
// (run-once steps already done are skipped).
func (in *Instance) Provision(ctx context.Context) error {
	lk, err := in.lock(ctx, "provision")
	if err != nil {
		return err
	}
	defer in.unlock(lk)
	info, err := in.Running(ctx)
	if err != nil {
		return err
	}
	c, err := in.dial(ctx, info)
	if err != nil {
		return err
	}
	defer c.Close()
	return in.provision(ctx, c, ProvisionForce)
}

// applyGuestEnv makes the guest use the host's proxy settings and the
// CA certificates of ca_certs, and removes them once they are unset.
func (in *Instance) applyGuestEnv(ctx context.Context, c *sshutil.Client) error {
	var proxy guestenv.Proxy
	if !in.Cfg.Offline { // an offline VM reaches no proxy
		var err error
		if proxy, err = guestenv.ProxyFromEnv(os.Getenv, agent.GuestHostAddress); err != nil {
			return err
		}
	}
	certs, err := guestenv.ReadCerts(in.Cfg.CACerts)
	if err != nil {
		return fmt.Errorf("ca_certs: %w", err)
	}
	changed, err := guestenv.Apply(ctx, c, guestenv.GuestFiles(proxy, certs))
	if err != nil {
		return err
	}
	for _, line := range changed {
		in.Status.Infof("proxy and certificates: %s", line)
	}
	return nil
}

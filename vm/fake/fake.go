// Package fake is a vm.Driver that keeps instances in memory and records
// every call, for unit tests of code above the driver.
package fake

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/devbox-vm/devbox/vm"
)

// Driver is an in-memory vm.Driver.
type Driver struct {
	mu        sync.Mutex
	Calls     []string            // "Create demo", "Start demo", …
	Instances map[string]*vm.Info // by hypervisor name
	Specs     map[string]vm.Spec
	// Accel is what ResolveAccel("auto") returns ("tcg" with fellBack if empty).
	Accel string
	// Fail makes the named method return this error (e.g. Fail["Start"]).
	Fail map[string]error
	// Closed counts Close calls.
	Closed int
	// OnCall, if set, sees each call after it is recorded (outside the lock).
	OnCall func(call string)
	// UDP holds each instance's datagram forwards, by host address.
	UDP map[string]map[string]int
}

var _ vm.Driver = (*Driver)(nil)

// New returns an empty fake.
func New() *Driver {
	return &Driver{Instances: map[string]*vm.Info{}, Specs: map[string]vm.Spec{}, Fail: map[string]error{}, UDP: map[string]map[string]int{}}
}

func (d *Driver) record(method, name string) error {
	d.mu.Lock()
	d.Calls = append(d.Calls, method+" "+name)
	err, hook := d.Fail[method], d.OnCall
	d.mu.Unlock()
	if hook != nil {
		hook(method + " " + name)
	}
	return err
}

// ResolveAccel implements vm.Driver; arch does not matter to the fake.
func (d *Driver) ResolveAccel(ctx context.Context, want, _ string) (string, bool, error) {
	if err := d.record("ResolveAccel", want); err != nil {
		return "", false, err
	}
	if want != "auto" {
		return want, false, nil
	}
	if d.Accel == "" {
		return "tcg", true, nil
	}
	return d.Accel, false, nil
}

// Create implements vm.Driver.
func (d *Driver) Create(ctx context.Context, spec vm.Spec, _ vm.Progress) error {
	if err := d.record("Create", spec.Name); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.Instances[spec.Name]; ok {
		return fmt.Errorf("domain %s already exists", spec.Name)
	}
	port := spec.SSHPort
	if port == 0 {
		port = 2222
	}
	d.Specs[spec.Name] = spec
	d.Instances[spec.Name] = &vm.Info{Name: spec.Name, Instance: spec.Instance, Home: spec.Home, User: spec.User,
		State: vm.StateStopped, Arch: spec.Arch, Accel: spec.Accel, SSHPort: port, ConsoleLog: spec.ConsoleLog, CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB}
	return nil
}

func (d *Driver) get(name string) (*vm.Info, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	in, ok := d.Instances[name]
	if !ok {
		return nil, fmt.Errorf("domain %s: %w", name, vm.ErrNotFound)
	}
	return in, nil
}

func (d *Driver) setState(name string, st vm.State) (vm.Info, error) {
	in, err := d.get(name)
	if err != nil {
		return vm.Info{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	in.State = st
	return *in, nil
}

// Start implements vm.Driver.
func (d *Driver) Start(ctx context.Context, name string) (vm.Info, error) {
	if err := d.record("Start", name); err != nil {
		return vm.Info{}, err
	}
	return d.setState(name, vm.StateRunning)
}

// Shutdown implements vm.Driver.
func (d *Driver) Shutdown(ctx context.Context, name string, _ time.Duration) error {
	if err := d.record("Shutdown", name); err != nil {
		return err
	}
	_, err := d.setState(name, vm.StateStopped)
	return err
}

// Kill implements vm.Driver.
func (d *Driver) Kill(ctx context.Context, name string) error {
	if err := d.record("Kill", name); err != nil {
		return err
	}
	_, err := d.setState(name, vm.StateStopped)
	return err
}

// Reset implements vm.Driver.
func (d *Driver) Reset(ctx context.Context, name string) error {
	if err := d.record("Reset", name); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	in, ok := d.Instances[name]
	if !ok {
		return fmt.Errorf("domain %s: %w", name, vm.ErrNotFound)
	}
	if in.State != vm.StateRunning {
		return fmt.Errorf("fake: reset %s: not running", name)
	}
	return nil
}

// Delete implements vm.Driver.
func (d *Driver) Delete(ctx context.Context, name string) error {
	if err := d.record("Delete", name); err != nil {
		return err
	}
	if _, err := d.get(name); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.Instances, name)
	delete(d.Specs, name)
	return nil
}

// Inspect implements vm.Driver.
func (d *Driver) Inspect(ctx context.Context, name string) (vm.Info, error) {
	if err := d.record("Inspect", name); err != nil {
		return vm.Info{Name: name, State: vm.StateNotCreated}, err
	}
	in, err := d.get(name)
	if err != nil {
		return vm.Info{Name: name, State: vm.StateNotCreated}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return *in, nil
}

// Bases implements vm.Driver: one base per box of the created instances.
func (d *Driver) Bases(ctx context.Context) ([]vm.Base, error) {
	if err := d.record("Bases", ""); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	users := map[string]int{}
	for _, s := range d.Specs {
		if len(s.BoxSHA256) >= 16 {
			users[s.BoxSHA256[:16]]++
		}
	}
	var bases []vm.Base
	for sha, n := range users {
		bases = append(bases, vm.Base{BoxSHA256Prefix: sha, Users: n})
	}
	return bases, nil
}

// DeleteBase implements vm.Driver: refused while a created instance uses
// the box.
func (d *Driver) DeleteBase(ctx context.Context, boxSHA256 string) error {
	if err := d.record("DeleteBase", boxSHA256); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.Specs {
		if s.BoxSHA256 == boxSHA256 {
			return fmt.Errorf("base of %s: %w", boxSHA256, vm.ErrInUse)
		}
	}
	return nil
}

// Export implements vm.Driver: the image is "image of NAME".
func (d *Driver) Export(ctx context.Context, name string, w io.Writer, _ vm.Progress) (int64, error) {
	if err := d.record("Export", name); err != nil {
		return 0, err
	}
	info, err := d.get(name)
	if err != nil {
		return 0, err
	}
	if info.State != vm.StateStopped {
		return 0, fmt.Errorf("export %s: the instance is %s", name, info.State)
	}
	n, err := io.WriteString(w, "image of "+name)
	return int64(n), err
}

// WaitStopped implements vm.Driver: it returns when the state is stopped
// or ctx ends.
func (d *Driver) WaitStopped(ctx context.Context, name string) error {
	for {
		in, err := d.get(name)
		if err != nil {
			return err
		}
		d.mu.Lock()
		st := in.State
		d.mu.Unlock()
		if st == vm.StateStopped {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Close implements vm.Driver.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Closed++
	return nil
}

// UDPForwards implements vm.Driver.
func (d *Driver) UDPForwards(ctx context.Context, name string) ([]vm.UDPForward, error) {
	if err := d.record("UDPForwards", name); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []vm.UDPForward
	for host, guest := range d.UDP[name] {
		out = append(out, vm.UDPForward{Host: host, Guest: guest})
	}
	return out, nil
}

// AddUDPForward implements vm.Driver; a host address already forwarded fails.
func (d *Driver) AddUDPForward(ctx context.Context, name string, f vm.UDPForward) error {
	if err := d.record("AddUDPForward", name+" "+f.Host); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, taken := d.UDP[name][f.Host]; taken {
		return fmt.Errorf("udp %s is taken", f.Host)
	}
	if d.UDP[name] == nil {
		d.UDP[name] = map[string]int{}
	}
	d.UDP[name][f.Host] = f.Guest
	return nil
}

// RemoveUDPForward implements vm.Driver.
func (d *Driver) RemoveUDPForward(ctx context.Context, name, host string) error {
	if err := d.record("RemoveUDPForward", name+" "+host); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.UDP[name], host)
	return nil
}

// Shares implements vm.Driver: the fake has none (devices need a VM).
func (d *Driver) Shares(ctx context.Context, name string) ([]vm.Share, error) {
	return nil, d.record("Shares", name)
}

// AttachShare implements vm.Driver: the fake's instances have no shared
// memory.
func (d *Driver) AttachShare(ctx context.Context, name string, s vm.Share) error {
	if err := d.record("AttachShare", name+" "+s.Tag); err != nil {
		return err
	}
	return vm.ErrNoSharedMemory
}

// DetachShare implements vm.Driver.
func (d *Driver) DetachShare(ctx context.Context, name, tag string) error {
	return d.record("DetachShare", name+" "+tag)
}

// QEMUUser implements vm.Driver.
func (d *Driver) QEMUUser(ctx context.Context, name string) (uid, gid int, err error) {
	return 0, 0, d.record("QEMUUser", name)
}

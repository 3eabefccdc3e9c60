package instance

import (
	"context"

	"github.com/devbox-vm/devbox/vm"
)

// liveVM changes the running VM's UDP forwards and virtio-fs devices for
// the agent, through its driver, opening a connection for each call: the
// agent holds none between them, so a restarted libvirtd costs nothing.
type liveVM struct {
	connect Connector
	uri     string
	domain  string
}

func (l liveVM) with(ctx context.Context, fn func(vm.Driver) error) error {
	d, err := l.connect(ctx, l.uri)
	if err != nil {
		return err
	}
	defer d.Close()
	return fn(d)
}

func (l liveVM) UDPForwards(ctx context.Context) (fwds []vm.UDPForward, err error) {
	err = l.with(ctx, func(d vm.Driver) error {
		fwds, err = d.UDPForwards(ctx, l.domain)
		return err
	})
	return fwds, err
}

func (l liveVM) AddUDPForward(ctx context.Context, f vm.UDPForward) error {
	return l.with(ctx, func(d vm.Driver) error { return d.AddUDPForward(ctx, l.domain, f) })
}

func (l liveVM) RemoveUDPForward(ctx context.Context, host string) error {
	return l.with(ctx, func(d vm.Driver) error { return d.RemoveUDPForward(ctx, l.domain, host) })
}

func (l liveVM) Shares(ctx context.Context) (shares []vm.Share, err error) {
	err = l.with(ctx, func(d vm.Driver) error {
		shares, err = d.Shares(ctx, l.domain)
		return err
	})
	return shares, err
}

func (l liveVM) AttachShare(ctx context.Context, s vm.Share) error {
	return l.with(ctx, func(d vm.Driver) error { return d.AttachShare(ctx, l.domain, s) })
}

func (l liveVM) DetachShare(ctx context.Context, tag string) error {
	return l.with(ctx, func(d vm.Driver) error { return d.DetachShare(ctx, l.domain, tag) })
}

func (l liveVM) QEMUUser(ctx context.Context) (uid, gid int, err error) {
	err = l.with(ctx, func(d vm.Driver) error {
		uid, gid, err = d.QEMUUser(ctx, l.domain)
		return err
	})
	return uid, gid, err
}

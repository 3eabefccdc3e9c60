package libvirt

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/devbox-vm/devbox/boxes/qcow2"
	"github.com/devbox-vm/devbox/internal/rollback"
	"github.com/devbox-vm/devbox/vm"
)

// PoolName is the storage pool holding every devbox volume. Keeping disks
// and seeds in a pool (not in the user's 0700 home) lets QEMU, which runs
// as its own user under qemu:///system, open them, and works for a remote
// libvirt host too.
const PoolName = "devbox"

// MetadataNS marks a domain as devbox's in its <metadata>.
const MetadataNS = "https://github.com/devbox-vm/devbox/xmlns/instance/1"

// Driver is vm.Driver over one libvirt connection.
type Driver struct {
	l     api
	uri   *url.URL
	local bool
	// pollEvery is how often state is polled while waiting.
	pollEvery time.Duration
	// baseStall overrides the package's baseStall (for tests).
	baseStall time.Duration
}

var _ vm.Driver = (*Driver)(nil)

// Close disconnects from libvirt.
func (d *Driver) Close() error { return d.l.Disconnect() }

func (d *Driver) poll() time.Duration {
	if d.pollEvery == 0 {
		return 300 * time.Millisecond
	}
	return d.pollEvery
}

// ResolveAccel asks libvirt's domain capabilities which domain types work
// for guests of arch. A guest of another architecture than the host's gets
// no kvm or hvf, so auto settles for tcg; an arch with no QEMU emulator at
// all is an error naming it, before anything is created.
func (d *Driver) ResolveAccel(ctx context.Context, want, arch string) (string, bool, error) {
	if err := checkArch(arch); err != nil {
		return "", false, err
	}
	offered := func(accel string) bool {
		_, err := d.l.ConnectGetDomainCapabilities(nil, golibvirt.OptString{arch}, nil, golibvirt.OptString{domainType(accel)}, 0)
		return err == nil
	}
	tcg := func(fellBack bool) (string, bool, error) {
		if !offered("tcg") {
			return "", false, fmt.Errorf("libvirt at %s cannot run %s guests: it has no QEMU emulator for them (hint: install QEMU's %s emulator there (Debian: qemu-system-%s), or set arch to match that host and the box)", d.uri, arch, arch, qemuSystem(arch))
		}
		return "tcg", fellBack, nil
	}
	switch want {
	case "auto":
		for _, a := range []string{"kvm", "hvf"} {
			if err := ctx.Err(); err != nil {
				return "", false, err
			}
			if offered(a) {
				return a, false, nil
			}
		}
		return tcg(true)
	case "kvm", "hvf":
		if !offered(want) {
			return "", false, fmt.Errorf("accel %s is not offered by libvirt at %s for %s guests (hint: use accel: auto or tcg)", want, d.uri, arch)
		}
		return want, false, nil
	case "tcg":
		return tcg(false)
	}
	return "", false, fmt.Errorf("accel %q is not one of auto, kvm, hvf, tcg", want)
}

// qemuSystem names arch's QEMU emulator the way Debian's package does.
func qemuSystem(arch string) string {
	if arch == "aarch64" {
		return "arm"
	}
	return "x86"
}

// domainType maps an accelerator to libvirt's domain type ("hvf" is
// libvirt's name for macOS's Hypervisor.framework, libvirt 8.1 on).
func domainType(accel string) string {
	if accel == "tcg" {
		return "qemu"
	}
	return accel
}

// Volume names of an instance; the base is named by box content.
func diskVolume(name string) string { return name + ".qcow2" }
func seedVolume(name string) string { return name + "-seed.iso" }
func baseVolume(sha string) string  { return basePrefix + sha[:16] }

// Create implements vm.Driver. A box whose qcow2 header names a backing
// file or an external data file is refused before anything is made or
// uploaded.
func (d *Driver) Create(ctx context.Context, spec vm.Spec, progress vm.Progress) (err error) {
	if progress == nil {
		progress = func(string, ...any) {}
	}
	if _, lerr := d.l.DomainLookupByName(spec.Name); lerr == nil {
		return fmt.Errorf("create instance %q: domain %s already exists", spec.Instance, spec.Name)
	} else if !isCode(lerr, golibvirt.ErrNoDomain) {
		// Unsure whether it exists: its volumes must not be judged leftovers.
		return fmt.Errorf("create instance %q: look up domain %s: %w", spec.Instance, spec.Name, lerr)
	}
	virtual, err := inspectBox(spec.BoxPath, spec.BoxFormat)
	if err != nil {
		return err
	}
	if spec.DiskBytes < virtual {
		return fmt.Errorf("disk %d MiB is smaller than the box's own %d MiB (hint: raise disk in devbox.yaml)", spec.DiskBytes>>20, virtual>>20)
	}
	pool, err := d.ensurePool(ctx)
	if err != nil {
		return err
	}
	if err := d.removeLeftovers(spec.Name, progress); err != nil {
		return err
	}
	base, err := d.ensureBase(ctx, pool, spec, progress)
	if err != nil {
		return err
	}
	basePath, err := d.l.StorageVolGetPath(base)
	if err != nil {
		return fmt.Errorf("path of base volume: %w", err)
	}

	// From here on, undo what this call made if a later step fails.
	var undo rollback.Stack
	defer undo.OnError(ctx, &err)
	disk, err := d.l.StorageVolCreateXML(pool, overlayXML(diskVolume(spec.Name), spec.DiskBytes, basePath, spec.BoxFormat), 0)
	if err != nil {
		return fmt.Errorf("create disk volume %s: %w", diskVolume(spec.Name), err)
	}
	undo.Push("delete disk volume "+diskVolume(spec.Name), func(context.Context) error { return d.l.StorageVolDelete(disk, 0) })

	if err := ctx.Err(); err != nil {
		return err
	}
	seed, err := d.l.StorageVolCreateXML(pool, plainVolumeXML(seedVolume(spec.Name), int64(len(spec.Seed))), 0)
	if err != nil {
		return fmt.Errorf("create seed volume %s: %w", seedVolume(spec.Name), err)
	}
	undo.Push("delete seed volume "+seedVolume(spec.Name), func(context.Context) error { return d.l.StorageVolDelete(seed, 0) })
	if err := d.l.StorageVolUpload(seed, bytes.NewReader(spec.Seed), 0, uint64(len(spec.Seed)), 0); err != nil {
		return fmt.Errorf("upload seed volume %s: %w", seedVolume(spec.Name), err)
	}
	vm.Checkpoint("volumes")

	if spec.SSHPort == 0 {
		if spec.SSHPort, err = freePort(); err != nil {
			return err
		}
	}
	domXML, err := RenderDomain(spec)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := d.l.DomainDefineXML(string(domXML)); err != nil {
		return fmt.Errorf("define domain %s: %w", spec.Name, err)
	}
	vm.Checkpoint("define")
	return nil
}

// ensurePool finds the devbox pool, defining and starting it when missing.
func (d *Driver) ensurePool(ctx context.Context) (golibvirt.StoragePool, error) {
	pool, err := d.l.StoragePoolLookupByName(PoolName)
	if err != nil {
		if !isCode(err, golibvirt.ErrNoStoragePool) {
			return pool, fmt.Errorf("look up storage pool %s: %w", PoolName, err)
		}
		def := fmt.Sprintf("<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>", PoolName, xmlEscape(d.poolPath()))
		pool, err = d.l.StoragePoolDefineXML(def, 0)
		if err != nil {
			// Another devbox may have defined it meanwhile.
			if p, lerr := d.l.StoragePoolLookupByName(PoolName); lerr == nil {
				pool = p
			} else {
				return pool, fmt.Errorf("define storage pool %s at %s: %w", PoolName, d.poolPath(), err)
			}
		} else {
			if err := d.l.StoragePoolBuild(pool, 0); err != nil {
				return pool, fmt.Errorf("build storage pool %s at %s: %w", PoolName, d.poolPath(), err)
			}
			_ = d.l.StoragePoolSetAutostart(pool, 1)
		}
	}
	if err := ctx.Err(); err != nil {
		return pool, err
	}
	state, _, _, _, err := d.l.StoragePoolGetInfo(pool)
	if err != nil {
		return pool, fmt.Errorf("storage pool %s: %w", PoolName, err)
	}
	if golibvirt.StoragePoolState(state) != golibvirt.StoragePoolRunning {
		if err := d.l.StoragePoolCreate(pool, 0); err != nil && !isCode(err, golibvirt.ErrOperationInvalid) {
			return pool, fmt.Errorf("start storage pool %s: %w", PoolName, err)
		}
	}
	return pool, nil
}

// poolPath is where the pool keeps its files: libvirt's own images folder
// for system daemons, the user's data folder for session daemons.
func (d *Driver) poolPath() string {
	if d.uri.Path == "/session" && d.local {
		dir := os.Getenv("XDG_DATA_HOME")
		if dir == "" {
			home, _ := os.UserHomeDir()
			dir = home + "/.local/share"
		}
		return dir + "/libvirt/images/devbox"
	}
	return "/var/lib/libvirt/images/devbox"
}

// baseStall is how long a short base volume must stay the same size
// before ensureBase takes it for an upload cut short rather than one in
// progress (a stream writes several MiB a second).
const baseStall = 15 * time.Second

// ensureBase uploads the box once into the pool. Callers serialise creates
// of one box within one devbox home (see vm.Driver.Create), but two homes
// or two host users on one libvirt share the pool: a base volume that is
// short is watched, and taken for an upload cut short (deleted and
// uploaded again) only when it has not grown for baseStall; while it grows,
// or when another process creates it first, ensureBase waits for it.
func (d *Driver) ensureBase(ctx context.Context, pool golibvirt.StoragePool, spec vm.Spec, progress vm.Progress) (golibvirt.StorageVol, error) {
	name := baseVolume(spec.BoxSHA256)
	d.refreshPool(pool)
	stall := d.baseStall
	if stall == 0 {
		stall = baseStall
	}
	var (
		lastSize   uint64
		lastGrowth time.Time
		told       bool
	)
	for {
		vol, err := d.l.StorageVolLookupByName(pool, name)
		if isCode(err, golibvirt.ErrNoStorageVol) {
			vol, err = d.uploadBase(ctx, pool, name, spec, progress)
			if !isCode(err, golibvirt.ErrStorageVolExist) {
				return vol, err
			}
			continue // another process created it first: watch it
		}
		if err != nil {
			return vol, fmt.Errorf("look up base volume %s: %w", name, err)
		}
		_, _, physical, err := d.l.StorageVolGetInfoFlags(vol, uint32(golibvirt.StorageVolGetPhysical))
		switch {
		case isCode(err, golibvirt.ErrNoStorageVol):
			continue // deleted meanwhile (its upload failed): upload it here
		case err != nil:
			return vol, fmt.Errorf("size of base volume %s: %w", name, err)
		case int64(physical) == spec.BoxSize:
			return vol, nil
		case lastGrowth.IsZero() || physical != lastSize:
			lastSize, lastGrowth = physical, time.Now()
		case time.Since(lastGrowth) >= stall:
			progress("base volume %s is incomplete and has not grown for %s: uploading it again", name, stall.Round(time.Second))
			if err := d.l.StorageVolDelete(vol, 0); err != nil && !isCode(err, golibvirt.ErrNoStorageVol) {
				return vol, fmt.Errorf("delete incomplete base volume %s: %w", name, err)
			}
			lastGrowth, told = time.Time{}, false
			continue
		}
		if !told {
			progress("base volume %s is incomplete (%d of %d MiB): waiting to see whether another devbox is uploading it", name, physical>>20, spec.BoxSize>>20)
			told = true
		}
		select {
		case <-ctx.Done():
			return vol, ctx.Err()
		case <-time.After(d.poll()):
		}
	}
}

// refreshPool has libvirt rescan the pool's folder, for volumes removed
// behind its back. It is best effort: libvirt refuses while the pool has
// a job ("asynchronous jobs running": another process uploading a box),
// and its view of the pool is current then anyway.
func (d *Driver) refreshPool(pool golibvirt.StoragePool) {
	_ = d.l.StoragePoolRefresh(pool, 0)
}

// uploadBase creates the base volume and streams the box into it; a
// failed upload deletes it again. An error with libvirt's "volume exists"
// code means another process created it first.
func (d *Driver) uploadBase(ctx context.Context, pool golibvirt.StoragePool, name string, spec vm.Spec, progress vm.Progress) (vol golibvirt.StorageVol, err error) {
	f, err := os.Open(spec.BoxPath)
	if err != nil {
		return golibvirt.StorageVol{}, fmt.Errorf("open box %s: %w", spec.BoxPath, err)
	}
	defer f.Close()
	// Checked on the very file that is uploaded, whatever the caller did.
	if _, err := checkBox(f, spec.BoxPath); err != nil {
		return golibvirt.StorageVol{}, err
	}
	vol, err = d.l.StorageVolCreateXML(pool, plainVolumeXML(name, 0), 0)
	if isCode(err, golibvirt.ErrStorageVolExist) {
		return vol, err
	}
	if err != nil {
		return vol, fmt.Errorf("create base volume %s: %w", name, err)
	}
	// A cancel reads as one, whatever step it stopped.
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = ctx.Err()
		}
	}()
	// A volume that was not filled goes again.
	var undo rollback.Stack
	defer undo.OnError(ctx, &err)
	undo.Push("delete the unfilled base volume "+name, func(context.Context) error { return d.l.StorageVolDelete(vol, 0) })
	if d.local {
		if copied, err := d.copyIntoVolume(ctx, vol, f, spec.BoxSize, progress); err != nil || copied {
			return vol, err
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return vol, err
	}
	r := &uploadReader{ctx: ctx, r: f, total: spec.BoxSize, progress: progress, name: name}
	if err := d.l.StorageVolUpload(vol, r, 0, uint64(spec.BoxSize), 0); err != nil {
		return vol, fmt.Errorf("upload box into base volume %s: %w", name, err)
	}
	progress("uploaded box into base volume %s (%d MiB)", name, spec.BoxSize>>20)
	return vol, nil
}

// uploadReader stops an upload when ctx ends and reports progress.
type uploadReader struct {
	ctx      context.Context
	r        io.Reader
	name     string
	total    int64
	done     int64
	last     time.Time
	progress vm.Progress
}

func (u *uploadReader) Read(p []byte) (int, error) {
	if err := u.ctx.Err(); err != nil {
		return 0, err
	}
	if u.done > 0 {
		vm.Checkpoint("upload") // part of the box is in the pool
	}
	n, err := u.r.Read(p)
	u.done += int64(n)
	if time.Since(u.last) > 2*time.Second && u.total > 0 {
		u.last = time.Now()
		u.progress("uploading base volume %s: %d%%", u.name, u.done*100/u.total)
	}
	return n, err
}

func plainVolumeXML(name string, capacity int64) string {
	return fmt.Sprintf("<volume><name>%s</name><capacity unit='bytes'>%d</capacity><allocation unit='bytes'>0</allocation><target><format type='raw'/></target></volume>",
		name, capacity)
}

func overlayXML(name string, capacity int64, backingPath, backingFormat string) string {
	return fmt.Sprintf("<volume><name>%s</name><capacity unit='bytes'>%d</capacity><target><format type='qcow2'/></target>"+
		"<backingStore><path>%s</path><format type='%s'/></backingStore></volume>",
		name, capacity, xmlEscape(backingPath), backingFormat)
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// inspectBox reads the disk size a box presents to the guest (the qcow2
// header's size field, or a raw image's length) and refuses a box that is
// not self-contained (see checkBox).
func inspectBox(path, format string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open box %s: %w", path, err)
	}
	defer f.Close()
	h, err := checkBox(f, path)
	if err != nil {
		return 0, err
	}
	if format == "raw" {
		st, err := f.Stat()
		if err != nil {
			return 0, fmt.Errorf("box %s: %w", path, err)
		}
		return st.Size(), nil
	}
	if h == nil {
		return 0, fmt.Errorf("box %s is not a qcow2 image", path)
	}
	if h.Size > math.MaxInt64 {
		return 0, fmt.Errorf("box %s: qcow2 virtual size %d is out of range", path, h.Size)
	}
	return int64(h.Size), nil
}

// checkBox refuses a box that starts like a qcow2 image, whatever format
// the caller declared, unless its header names no file outside the image.
// libvirt runs as root and opens (and relabels) every file in a disk's
// backing chain: a base volume naming /etc/shadow as its backing file
// would hand that file to the guest. It returns the parsed header, or nil
// for a file that is not qcow2.
func checkBox(f io.ReaderAt, path string) (*qcow2.Header, error) {
	var magic [len(qcow2.Magic)]byte
	if n, _ := f.ReadAt(magic[:], 0); n < len(magic) || string(magic[:]) != qcow2.Magic {
		return nil, nil
	}
	h, err := qcow2.CheckImage(f)
	if err != nil {
		return nil, fmt.Errorf("box %s: %w", path, err)
	}
	return h, nil
}

func isCode(err error, code golibvirt.ErrorNumber) bool {
	var e golibvirt.Error
	return errors.As(err, &e) && e.Code == uint32(code)
}

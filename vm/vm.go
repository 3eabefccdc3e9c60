// Package vm defines what devbox needs from a hypervisor: a Driver that
// creates, starts, stops and deletes instances and reports their state
// from the hypervisor itself. vm/libvirt implements it over libvirt's RPC
// protocol; vm/fake records calls for unit tests.
package vm

import (
	"context"
	"errors"
	"io"
	"time"
)

// State is what the hypervisor says an instance is doing.
type State string

// States, as reported by Inspect.
const (
	StateNotCreated State = "not created"
	StateRunning    State = "running"
	StateStopped    State = "stopped"
	StatePaused     State = "paused"
	StateOther      State = "unknown"
)

// Sentinel errors; drivers wrap them so callers can use errors.Is.
var (
	// ErrNotFound: no instance of that name exists.
	ErrNotFound = errors.New("instance not found")
	// ErrUnavailable: the hypervisor cannot be reached at all.
	ErrUnavailable = errors.New("hypervisor unavailable")
	// ErrPortTaken: the host port chosen for a forward is in use.
	ErrPortTaken = errors.New("host port already in use")
	// ErrInUse: a base volume that other volumes still back onto.
	ErrInUse = errors.New("in use")
	// ErrNoSharedMemory: the instance's memory cannot be shared with a
	// virtiofsd (it was created without Spec.SharedMemory).
	ErrNoSharedMemory = errors.New("the VM's memory is not shared (it was created before devbox used virtio-fs)")
)

// Base is a box's base volume on the hypervisor, shared by every instance
// made from that box, of any devbox home using that hypervisor.
type Base struct {
	BoxSHA256Prefix string // the first 16 hex digits of the box's sha256
	Size            int64
	Users           int       // volumes backed by it
	Modified        time.Time // last written (zero if unknown): an upload in progress is recent
}

// Spec is everything needed to create an instance.
type Spec struct {
	Name      string // hypervisor-level name, unique on the host
	Instance  string // the user's instance name
	Home      string // devbox home that owns it (recorded for list/status)
	User      string // the guest user devbox logs in as (recorded)
	CPUs      int
	MemoryMiB int64
	DiskBytes int64  // virtual size of the instance's disk
	Arch      string // guest architecture: x86_64 or aarch64 (the box's)
	Accel     string // kvm, hvf or tcg (already resolved, see Driver.ResolveAccel)
	// CPUModel is the guest CPU: empty picks one for Arch and Accel (the
	// host's own under kvm/hvf), "host" the host's own, "max" every
	// feature QEMU has, else a QEMU model name (cortex-a72, Haswell).
	CPUModel string
	// Offline cuts the guest off from everything beyond the VM (the
	// internet, the host's own ports): QEMU user networking with
	// restrict=on. The forwarded SSH port, and so all of devbox, works.
	Offline    bool
	BoxPath    string // local image the base volume is made from
	BoxSHA256  string // identifies the base volume: one per box content
	BoxFormat  string // qcow2 or raw
	BoxSize    int64
	Seed       []byte // cloud-init NoCloud seed image (ISO 9660, label cidata)
	ConsoleLog string // host file the serial console is written to
	SSHPort    int    // host port on 127.0.0.1 forwarded to guest port 22; 0 picks one
	// SharedMemory backs the guest's memory with memory virtiofsd can map:
	// AttachShare needs it.
	SharedMemory bool
}

// Info is what Inspect reports, read live from the hypervisor.
type Info struct {
	Name       string
	Instance   string
	Home       string
	User       string
	State      State
	Arch       string
	Accel      string
	SSHPort    int
	ConsoleLog string
	CPUs       int
	MemoryMiB  int64
}

// UDPForward is one datagram forward of the VM's user-mode network.
// (TCP is carried over SSH instead; UDP has no SSH channel.)
type UDPForward struct {
	Host  string // the host's address, "127.0.0.1:5353"
	Guest int    // the port on the guest's network address
}

// Share is a virtio-fs device: a folder a virtiofsd serves on Socket, seen
// by the guest as the file system Tag.
type Share struct {
	Tag    string
	Socket string
}

// Progress receives human-readable notes about long work (uploads).
type Progress func(format string, args ...any)

// Driver manages instances on one hypervisor connection.
type Driver interface {
	// ResolveAccel turns "auto" into the best accelerator the hypervisor
	// offers for guests of arch (kvm or hvf, else tcg) and checks that an
	// explicit choice is offered for it. fellBack is true when auto had to
	// settle for tcg (as it must for a guest of another architecture than
	// the host's). It fails, naming arch, when the hypervisor cannot run
	// guests of arch at all.
	ResolveAccel(ctx context.Context, want, arch string) (accel string, fellBack bool, err error)
	// Create makes the base volume (once per box content, shared by all
	// instances), the instance's overlay and seed volumes, and defines the
	// instance, stopped. On failure it removes what this call made (a base
	// volume it finished uploading stays, for the next create).
	//
	// Create MUST fail when an instance of that name already exists. When
	// no instance of that name exists but its own volumes do, they are the
	// leftovers of a create of this instance that was killed before it
	// finished: Create deletes them and goes on. It MUST refuse a box that
	// is not self-contained (a qcow2 header naming a backing file or an
	// external data file) before uploading anything.
	//
	// Callers MUST serialize Create and Delete of one instance name across
	// processes (a host file lock): Create takes another create's volumes
	// of the same name for leftovers. Creates that share a box (BoxSHA256)
	// should be serialized too, to upload it once; when they are not (two
	// devbox homes on one libvirt), Create waits for a base volume that
	// another process is uploading.
	Create(ctx context.Context, spec Spec, progress Progress) error
	// Start boots a stopped instance. If its SSH port is taken on the host
	// it picks another free one. Starting a running instance is a no-op.
	Start(ctx context.Context, name string) (Info, error)
	// Shutdown asks the guest to power off (ACPI) and waits up to timeout
	// for it to stop; then it forces it off. A stopped instance is a no-op.
	Shutdown(ctx context.Context, name string, timeout time.Duration) error
	// Kill forces the instance off at once. A stopped instance is a no-op.
	Kill(ctx context.Context, name string) error
	// Reset restarts the running instance's guest at once, like a reset
	// button: the VM's process, its devices and its console stay.
	Reset(ctx context.Context, name string) error
	// Delete stops the instance and removes its definition and its own
	// volumes (not the shared base). Volumes without a definition (a
	// create killed midway) are removed too. Delete returns an error
	// wrapping ErrNotFound only when neither the instance nor any of its
	// volumes existed. Callers serialize it with Create (see there).
	Delete(ctx context.Context, name string) error
	// Inspect reports the instance's state from the hypervisor; a missing
	// instance returns an error wrapping ErrNotFound.
	Inspect(ctx context.Context, name string) (Info, error)
	// Bases lists the base volumes and how many volumes back onto each.
	Bases(ctx context.Context) ([]Base, error)
	// DeleteBase deletes the base volume of the box whose sha256 is
	// boxSHA256, unless a volume backs onto it (an error wrapping
	// ErrInUse). A base that does not exist is not an error.
	DeleteBase(ctx context.Context, boxSHA256 string) error
	// Export writes the stopped instance's disk to w as one self-contained
	// qcow2 image (its base folded in, no backing file) and returns the
	// bytes written. It leaves nothing behind on the hypervisor.
	Export(ctx context.Context, name string, w io.Writer, progress Progress) (int64, error)
	// WaitStopped waits until the instance is no longer running.
	WaitStopped(ctx context.Context, name string) error
	// UDPForwards lists the running instance's datagram forwards.
	UDPForwards(ctx context.Context, name string) ([]UDPForward, error)
	// AddUDPForward forwards datagrams sent to f.Host on the host to
	// f.Guest on the guest's network address, and the answers back. It
	// fails naming f.Host when that cannot be bound (taken, or below 1024
	// for an ordinary user). The forward lasts as long as the VM's
	// process: a halt ends it.
	AddUDPForward(ctx context.Context, name string, f UDPForward) error
	// RemoveUDPForward ends the forward from host; one that does not
	// exist is not an error.
	RemoveUDPForward(ctx context.Context, name, host string) error
	// Shares lists the virtio-fs devices of the running instance.
	Shares(ctx context.Context, name string) ([]Share, error)
	// AttachShare adds a virtio-fs device to the running instance, served
	// by a virtiofsd the caller started on s.Socket. It fails wrapping
	// ErrNoSharedMemory when the instance was created without
	// SharedMemory. The device lasts as long as the VM's process.
	AttachShare(ctx context.Context, name string, s Share) error
	// DetachShare removes the device tagged tag (its virtiofsd then
	// exits); one that does not exist is not an error.
	DetachShare(ctx context.Context, name, tag string) error
	// QEMUUser is the uid and gid the running instance's QEMU runs as,
	// which must reach a share's socket.
	QEMUUser(ctx context.Context, name string) (uid, gid int, err error)
	// Close releases the hypervisor connection.
	Close() error
}

// Package sharedfs shares host folders into the guest by reverse SSHFS.
//
// Inside the guest, `sshfs -o passive` speaks SFTP over its stdin and
// stdout; devbox connects those, through an SSH session, to the SFTP server
// that [Serve] runs inside the devbox process. Files written in the guest are
// therefore written on the host by devbox itself, as the host user, and the
// host's permission checks are the only ones that apply.
//
// The guest is not trusted: anything in the VM, such as a container that
// bind-mounts the project, can send any SFTP request, and the host user may
// be root. So besides confining every request to the folder, the server
// refuses what would let the guest act with the host user's privileges or
// exhaust the process:
//
//   - no setuid or setgid bit, as on a nosuid mount: the bits are dropped
//     from the mode of a create and of a chmod (setstat or fsetstat),
//     mkdir asks for none (a new directory still inherits setgid from a
//     setgid parent the host made, as the host file system decides),
//     opening a host file for writing or truncating it clears them (as the
//     kernel does for unprivileged writers, but not for root), and a file
//     that has them gets no second name by hard link. The sticky bit is
//     kept; it grants nothing;
//   - no chown: files stay the host user's. A chown to the guest user's ids
//     (files appear as the guest user's in the mount) or to the file's own
//     ids succeeds and changes nothing, so that `cp -p` and tar work; any
//     other fails with permission denied;
//   - no more than [Options.MaxHandles] ([DefaultMaxHandles] unless set)
//     files open at once per connection, since each holds a host file
//     descriptor; past it an open fails with an error that names the limit.
//
// A shared folder has the same absolute path on both sides: the host file
// /home/u/proj/a.txt is /home/u/proj/a.txt in the guest. [MountCommand] is
// the guest side; [Check] validates a configured host path.
package sharedfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/pkg/sftp"
)

// Options configures [ServeOptions].
type Options struct {
	// ReadOnly makes every request that would change the folder fail with
	// permission denied.
	ReadOnly bool
	// GuestUID and GuestGID are the guest user's ids, as the mount
	// presents them (its uid= and gid= options), or -1 if unknown; 0 is
	// root's. A chown to them is accepted and changes nothing.
	GuestUID, GuestGID int
	// MaxHandles caps the files the guest may hold open at once on this
	// connection; each holds a host file descriptor. Zero or less means
	// DefaultMaxHandles.
	MaxHandles int
	// Replays, when set, holds host changes being replayed in the guest
	// (see [Replays]); the server also records the guest's own changes
	// there.
	Replays *Replays
}

// DefaultMaxHandles is the open-file cap of a connection when
// Options.MaxHandles is not set: far more than sshfs holds open in normal
// use, far fewer than a guest could otherwise take.
const DefaultMaxHandles = 1024

// Serve is [ServeOptions] with only ReadOnly set and the guest user's ids
// unknown.
func Serve(ctx context.Context, rwc io.ReadWriteCloser, root string, readOnly bool) error {
	return ServeOptions(ctx, rwc, root, Options{ReadOnly: readOnly, GuestUID: -1, GuestGID: -1})
}

// ServeOptions runs an SFTP server on rwc that exposes only the host folder
// root, an absolute path. Requests name files by their absolute paths
// (relative paths are taken relative to root). Any request for a path
// outside root, whether lexically (via "..") or through a symlink inside
// root whose target lies outside it (or is absolute), fails with permission
// denied; symlinks themselves can still be listed, lstat'ed and read with
// readlink. The package documentation lists what else is refused.
//
// ServeOptions owns rwc and closes it before returning. It returns nil when
// the peer closes the stream (EOF) or when ctx ends; closing rwc must
// unblock a pending Read. Any other failure, such as a malformed packet, is
// returned as an error.
func ServeOptions(ctx context.Context, rwc io.ReadWriteCloser, root string, opts Options) error {
	defer rwc.Close()
	if !filepath.IsAbs(root) {
		return fmt.Errorf("serve shared folder %q: path is not absolute", root)
	}
	dir := filepath.Clean(root)
	r, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("serve shared folder %s: %w", dir, err)
	}
	defer r.Close()

	h := &handler{
		root:     r,
		dir:      dir,
		readOnly: opts.ReadOnly,
		guestUID: opts.GuestUID,
		guestGID: opts.GuestGID,
		handles:  handles{max: opts.MaxHandles},
		replays:  opts.Replays,
	}
	if h.handles.max <= 0 {
		h.handles.max = DefaultMaxHandles
	}
	srv := sftp.NewRequestServer(rwc,
		sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h},
		sftp.WithStartDirectory(dir))
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()

	err = srv.Serve()
	if ctx.Err() != nil || endOfStream(err) {
		return nil
	}
	return fmt.Errorf("serve shared folder %s: %w", dir, err)
}

// endOfStream reports whether err only says that the stream has ended.
// pkg/sftp reports io.ErrUnexpectedEOF when the peer goes away with files
// still open, which is how a killed guest sshfs looks.
func endOfStream(err error) bool {
	return err == nil ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.ErrClosedPipe) ||
		errors.Is(err, net.ErrClosed)
}

// Check validates hostPath as a folder to share: it must be absolute, must
// not be the file system root, and must name an existing directory.
func Check(hostPath string) error {
	if !filepath.IsAbs(hostPath) {
		return fmt.Errorf("shared folder %q: path is not absolute; write it in full, such as /home/you/project", hostPath)
	}
	if filepath.Clean(hostPath) == "/" {
		return fmt.Errorf("shared folder %q: cannot share / since it would be mounted over the guest's own root; share a project folder instead", hostPath)
	}
	fi, err := os.Stat(hostPath)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("shared folder %s does not exist: create it or correct the path", hostPath)
	}
	if err != nil {
		return fmt.Errorf("shared folder %s: %w", hostPath, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("shared folder %s is not a directory: share the folder that contains it", hostPath)
	}
	return nil
}

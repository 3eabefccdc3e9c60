package sharedfs

import (
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pkg/sftp"
)

// handler serves pkg/sftp requests from one host folder. Every file system
// access goes through root, an [os.Root], so that neither ".." nor a symlink
// can reach outside the folder, even when the guest races to swap a path
// component for a symlink.
type handler struct {
	root     *os.Root
	dir      string // absolute, clean host path of root
	readOnly bool

	guestUID, guestGID int // the ids the mount presents files as; -1 if unknown
	handles            handles
	replays            *Replays // host changes being replayed; nil: none
}

// abs is the absolute host path of name (relative to root).
func (h *handler) abs(name string) string { return filepath.Join(h.dir, name) }

// changed records that the guest changed name.
func (h *handler) changed(name string) { h.replays.GuestChanged(h.abs(name)) }

// errNotExist is what a stat of a path whose creation is being replayed
// returns: the guest's kernel must take the create path.
func errNotExist(op, p string) error { return &fs.PathError{Op: op, Path: p, Err: syscall.ENOENT} }

// rel maps the absolute request path p to a name relative to h.root, or
// fails with permission denied when p lies outside the folder. A relative p
// is taken relative to the folder.
func (h *handler) rel(op, p string) (string, error) {
	if !filepath.IsAbs(p) {
		p = filepath.Join(h.dir, p)
	}
	p = filepath.Clean(p)
	if p == h.dir {
		return ".", nil
	}
	prefix := h.dir
	if !strings.HasSuffix(prefix, string(filepath.Separator)) {
		prefix += string(filepath.Separator)
	}
	name, ok := strings.CutPrefix(p, prefix)
	if !ok {
		return "", denied(op, p)
	}
	return name, nil
}

// writable fails with permission denied when the folder is shared read-only.
func (h *handler) writable(op, p string) error {
	if h.readOnly {
		return denied(op, p)
	}
	return nil
}

// denied is the error for a request the folder's confinement refuses.
// pkg/sftp reports EACCES as SSH_FX_PERMISSION_DENIED.
func denied(op, p string) error {
	return &fs.PathError{Op: op, Path: p, Err: syscall.EACCES}
}

// escapeText is the text of the error os.Root returns when a name or a
// symlink leads outside the root. The error value is unexported, so it is
// recognised by its text; the symlink tests fail if that text changes.
const escapeText = "path escapes from parent"

// pathErr rewrites an error from h.root as an *fs.PathError on the guest
// path p, whose errno pkg/sftp turns into the matching SFTP status (it does
// not look inside wrapped errors or *os.LinkError). An escape from the root
// becomes permission denied.
func pathErr(op, p string, err error) error {
	if err == nil {
		return nil
	}
	inner := err
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		inner = pe.Err
	case errors.As(err, &le):
		inner = le.Err
	}
	if inner.Error() == escapeText {
		inner = syscall.EACCES
	}
	return &fs.PathError{Op: op, Path: p, Err: inner}
}

// Fileread opens a file for reading (sftp.FileReader).
func (h *handler) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	name, err := h.rel("open", r.Filepath)
	if err != nil {
		return nil, err
	}
	if err := h.handles.acquire(r.Filepath); err != nil {
		return nil, err
	}
	f, err := h.root.Open(name)
	if err != nil {
		h.handles.release()
		return nil, pathErr("open", r.Filepath, err)
	}
	return h.handles.wrap(f), nil
}

// Filewrite opens a file for writing (sftp.FileWriter).
func (h *handler) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	f, err := h.openFile(r)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// OpenFile opens a file for reading and writing (sftp.OpenFileWriter).
func (h *handler) OpenFile(r *sftp.Request) (sftp.WriterAtReaderAt, error) {
	f, err := h.openFile(r)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// openFile opens r.Filepath with the request's open flags. The append flag
// is ignored: writes carry their offsets, and O_APPEND would break WriteAt.
func (h *handler) openFile(r *sftp.Request) (*handle, error) {
	if err := h.writable("open", r.Filepath); err != nil {
		return nil, err
	}
	name, err := h.rel("open", r.Filepath)
	if err != nil {
		return nil, err
	}
	pf := r.Pflags()
	flag := os.O_WRONLY
	if pf.Read {
		flag = os.O_RDWR
	}
	// The helper's open, replaying a host change: the file was created
	// or written on the host; open it, create or truncate nothing.
	replayed := h.replays.created(h.abs(name), ReplayCreate)
	if !replayed {
		_, replayed = h.replays.take(h.abs(name), false, ReplayModify)
	}
	if !replayed {
		if pf.Creat {
			flag |= os.O_CREATE
		}
		if pf.Trunc {
			flag |= os.O_TRUNC
		}
		if pf.Excl {
			flag |= os.O_EXCL
		}
	}
	if err := h.handles.acquire(r.Filepath); err != nil {
		return nil, err
	}
	if !replayed {
		h.changed(name) // before the host sees it: the watcher must know it is the guest's
	}
	f, err := h.openWrite(name, flag, createPerm(r.Attrs))
	if err != nil {
		h.handles.release()
		return nil, pathErr("open", r.Filepath, err)
	}
	hd := h.handles.wrap(f)
	if !replayed {
		hd.onWrite = func() { h.changed(name) }
	}
	return hd, nil
}

// openWrite opens name for writing and clears any setuid or setgid bit of
// the file, as the kernel does when an unprivileged user writes to it;
// a root host user keeps them through CAP_FSETID, and the guest must not
// put its own contents under a host setuid or setgid bit.
func (h *handler) openWrite(name string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := h.root.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
		err = f.Chmod(fi.Mode() & (fs.ModePerm | fs.ModeSticky))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// createPerm returns the permissions for a file created by an open request.
// pkg/sftp drops the attribute flags of an open packet and keeps only the
// attribute bytes; sshfs sends the permissions alone, which is the only
// attribute set that is exactly 4 bytes long. Anything else gets 0666, less
// the umask, like OpenSSH's sftp-server. Only the nine permission bits are
// kept: setuid and setgid are dropped (see [fileMode]), and the sticky bit
// means nothing on a new file.
func createPerm(attrs []byte) fs.FileMode {
	if len(attrs) != 4 {
		return 0o666
	}
	return fileMode(binary.BigEndian.Uint32(attrs)).Perm()
}

// fileMode converts Unix permission bits from the guest to an fs.FileMode.
// The setuid and setgid bits are dropped, as on a nosuid mount: the guest
// is not trusted, and a setuid file it made would run on the host with the
// host user's privileges. The sticky bit is kept; it grants nothing.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&syscall.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// Filecmd runs the requests that change the folder (sftp.FileCmder).
func (h *handler) Filecmd(r *sftp.Request) error {
	op := strings.ToLower(r.Method)
	if r.Method == "Symlink" {
		// r.Target is the new link and r.Filepath its target, stored as
		// given; following the link later is confined like any path.
		if err := h.writable(op, r.Target); err != nil {
			return err
		}
		link, err := h.rel(op, r.Target)
		if err != nil {
			return err
		}
		h.changed(link)
		return pathErr(op, r.Target, h.root.Symlink(r.Filepath, link))
	}
	if err := h.writable(op, r.Filepath); err != nil {
		return err
	}
	name, err := h.rel(op, r.Filepath)
	if err != nil {
		return err
	}
	if h.replayed(r.Method, h.abs(name)) {
		return nil
	}
	h.changed(name)
	switch r.Method {
	case "Setstat":
		return pathErr(op, r.Filepath, h.setstat(name, r))
	case "Rename", "PosixRename", "Link":
		target, err := h.rel(op, r.Target)
		if err != nil {
			return err
		}
		h.changed(target)
		if r.Method == "Link" {
			if err := h.linkable(name); err != nil {
				return pathErr(op, r.Filepath, err)
			}
			return pathErr(op, r.Filepath, h.root.Link(name, target))
		}
		return pathErr(op, r.Filepath, h.root.Rename(name, target))
	case "Mkdir":
		// pkg/sftp does not pass on mkdir's attributes, and os.Root takes
		// no setuid or setgid bit here.
		return pathErr(op, r.Filepath, h.root.Mkdir(name, 0o755))
	case "Rmdir", "Remove":
		return pathErr(op, r.Filepath, h.remove(name, r.Method == "Rmdir"))
	}
	return &fs.PathError{Op: op, Path: r.Filepath, Err: syscall.ENOSYS}
}

// replayed reports whether a request is the guest's helper replaying a
// host change (see [Replays]); it is answered without touching the host.
func (h *handler) replayed(method, abs string) bool {
	var ok bool
	switch method {
	case "Setstat":
		// The helper's truncate, and any time stamp with it: the replay
		// lasts until the helper says it is done.
		_, ok = h.replays.take(abs, false, ReplayModify)
	case "Mkdir":
		ok = h.replays.created(abs, ReplayMkdir)
	case "Remove":
		_, ok = h.replays.take(abs, true, ReplayRemove)
	case "Rmdir":
		_, ok = h.replays.take(abs, true, ReplayRmdir)
	}
	return ok
}

// linkable refuses a hard link to a setuid or setgid file with EPERM: a
// second name would keep the privileged file, contents and all, after the
// host replaced or removed the first. Any other problem is left to Link,
// which does not follow a final symlink and refuses to leave the root.
func (h *handler) linkable(name string) error {
	fi, err := h.root.Lstat(name)
	if err == nil && fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
		return syscall.EPERM
	}
	return nil
}

// PosixRename renames over an existing target (sftp.PosixRenameFileCmder).
func (h *handler) PosixRename(r *sftp.Request) error { return h.Filecmd(r) }

// setstat applies the attributes of a setstat or fsetstat request to name.
// A change of owner is never made (see [handler.chown]); it is checked
// first, so that a refused request changes nothing.
func (h *handler) setstat(name string, r *sftp.Request) error {
	flags, attrs := r.AttrFlags(), r.Attributes()
	if flags.UidGid {
		if err := h.chown(name, attrs.UID, attrs.GID); err != nil {
			return err
		}
	}
	if flags.Size {
		f, err := h.openWrite(name, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		err = f.Truncate(int64(attrs.Size))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if flags.Permissions {
		if err := h.root.Chmod(name, fileMode(attrs.Mode)); err != nil {
			return err
		}
	}
	if flags.Acmodtime {
		atime := time.Unix(int64(attrs.Atime), 0)
		if err := h.root.Chtimes(name, atime, attrs.ModTime()); err != nil {
			return err
		}
	}
	return nil
}

// chown accepts a change of name's owner to uid and gid as a no-op when
// each id is the guest user's, the file's current one, or -1 (unchanged),
// and refuses any other with EPERM. Files stay the host user's: the guest
// is not trusted to give them away, and sshfs presents them all as the
// guest user's anyway, so `cp -p` or tar run by the guest user only ever
// asks for its own ids.
func (h *handler) chown(name string, uid, gid uint32) error {
	fi, err := h.root.Stat(name)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return syscall.EPERM
	}
	if !keepsID(uid, h.guestUID, st.Uid) || !keepsID(gid, h.guestGID, st.Gid) {
		return syscall.EPERM
	}
	return nil
}

// keepsID reports whether a chown to id leaves the owner as it appears:
// id is -1, the guest's id (negative if unknown) or the current id.
func keepsID(id uint32, guest int, current uint32) bool {
	return id == math.MaxUint32 || id == current || (guest >= 0 && int64(id) == int64(guest))
}

// remove deletes name, which must be a directory when dir is set (rmdir)
// and must not be one otherwise (unlink).
func (h *handler) remove(name string, dir bool) error {
	fi, err := h.root.Lstat(name)
	if err != nil {
		return err
	}
	switch {
	case dir && !fi.IsDir():
		return syscall.ENOTDIR
	case !dir && fi.IsDir():
		return syscall.EISDIR
	}
	return h.root.Remove(name)
}

// Filelist lists a directory or stats a path, following symlinks inside
// the folder (sftp.FileLister).
func (h *handler) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	op := strings.ToLower(r.Method)
	name, err := h.rel(op, r.Filepath)
	if err != nil {
		return nil, err
	}
	switch r.Method {
	case "List":
		f, err := h.root.Open(name)
		if err != nil {
			return nil, pathErr(op, r.Filepath, err)
		}
		defer f.Close()
		infos, err := f.Readdir(-1)
		if err != nil {
			return nil, pathErr(op, r.Filepath, err)
		}
		return listerAt(infos), nil
	case "Stat":
		fi, err := h.replayedStat(op, r.Filepath, name, h.root.Stat)
		if err != nil {
			return nil, err
		}
		return listerAt{fi}, nil
	}
	return nil, &fs.PathError{Op: op, Path: r.Filepath, Err: syscall.ENOSYS}
}

// Lstat stats a path without following a final symlink
// (sftp.LstatFileLister).
func (h *handler) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	name, err := h.rel("lstat", r.Filepath)
	if err != nil {
		return nil, err
	}
	fi, err := h.replayedStat("lstat", r.Filepath, name, h.root.Lstat)
	if err != nil {
		return nil, err
	}
	return listerAt{fi}, nil
}

// replayedStat stats name with stat, as a replay in progress needs it
// seen: absent while its creation is replayed, present (empty) while its
// removal is, once it is gone from the host.
func (h *handler) replayedStat(op, p, name string, stat func(string) (fs.FileInfo, error)) (fs.FileInfo, error) {
	abs := h.abs(name)
	if filepath.Base(abs) == ReplayMarker {
		h.replays.arm(filepath.Dir(abs))
		return nil, errNotExist(op, p)
	}
	if h.replays.hide(abs) {
		return nil, errNotExist(op, p)
	}
	h.replays.lookedUp(abs)
	fi, err := stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		if rp, ok := h.replays.take(abs, false, ReplayRemove, ReplayRmdir); ok {
			return goneInfo{name: filepath.Base(abs), dir: rp.kind == ReplayRmdir}, nil
		}
		if h.replays.removingUnder(abs) {
			return goneInfo{name: filepath.Base(abs), dir: true}, nil
		}
	}
	if err != nil {
		return nil, pathErr(op, p, err)
	}
	return fi, nil
}

// Readlink returns a symlink's target as stored, wherever it points
// (sftp.ReadlinkFileLister).
func (h *handler) Readlink(p string) (string, error) {
	name, err := h.rel("readlink", p)
	if err != nil {
		return "", err
	}
	target, err := h.root.Readlink(name)
	if err != nil {
		return "", pathErr("readlink", p, err)
	}
	return target, nil
}

// StatVFS reports the file system holding a path
// (sftp.StatVFSFileCmder; sshfs uses it for statfs, as df does).
func (h *handler) StatVFS(r *sftp.Request) (*sftp.StatVFS, error) {
	name, err := h.rel("statvfs", r.Filepath)
	if err != nil {
		return nil, err
	}
	f, err := h.root.Open(name)
	if err != nil {
		return nil, pathErr("statvfs", r.Filepath, err)
	}
	defer f.Close()
	st, err := statVFS(f)
	if err != nil {
		return nil, pathErr("statvfs", r.Filepath, err)
	}
	return st, nil
}

// listerAt serves a fixed list of entries (sftp.ListerAt).
type listerAt []fs.FileInfo

// ListAt copies the entries from offset off into ls and reports io.EOF
// once the list is exhausted.
func (l listerAt) ListAt(ls []fs.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(ls, l[off:])
	if n < len(ls) {
		return n, io.EOF
	}
	return n, nil
}

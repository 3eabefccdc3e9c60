package sharedfs

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync/atomic"
	"syscall"
)

// handles counts the files one connection holds open for the guest. Each
// holds a host file descriptor, and a guest that never closes its files
// must not run the whole process out of them.
type handles struct {
	max  int
	open atomic.Int64
}

// acquire takes a slot for a file about to be opened at guest path p, or
// fails when the guest already holds max open files. The caller gives the
// slot back with release if the open fails, and through the Close of the
// handle from wrap otherwise.
func (hs *handles) acquire(p string) error {
	if hs.open.Add(1) > int64(hs.max) {
		hs.open.Add(-1)
		return &fs.PathError{Op: "open", Path: p, Err: handleLimitError(hs.max)}
	}
	return nil
}

func (hs *handles) release() { hs.open.Add(-1) }

// wrap returns the open file f as a guest handle holding an acquired slot.
func (hs *handles) wrap(f *os.File) *handle { return &handle{f: f, hs: hs} }

// handleLimitError is the error of an open past the cap. pkg/sftp sends it
// as SSH_FX_FAILURE with its text, which sshfs logs; errors.Is matches
// EMFILE, the errno of a process out of descriptors.
type handleLimitError int

func (e handleLimitError) Error() string {
	return fmt.Sprintf("too many open files: the shared folder's open-file limit (%d per connection) was reached", int(e))
}

func (handleLimitError) Is(target error) bool { return target == syscall.EMFILE }

// handle is a file the guest holds open: what Fileread, Filewrite and
// OpenFile return. pkg/sftp reads and writes it by offset, and calls Close
// once, when the guest closes the handle or the connection ends; Close
// gives the slot back. Fstat and fsetstat do not reach the file: pkg/sftp
// turns them into stat and setstat of the path the handle was opened with.
type handle struct {
	f       *os.File
	hs      *handles
	closed  atomic.Bool
	onWrite func() // called on each write; nil: nothing to tell
}

// pkg/sftp closes a handle only if it is an io.Closer.
var _ io.Closer = (*handle)(nil)

func (h *handle) ReadAt(p []byte, off int64) (int, error) { return h.f.ReadAt(p, off) }
func (h *handle) WriteAt(p []byte, off int64) (int, error) {
	if h.onWrite != nil {
		h.onWrite()
	}
	return h.f.WriteAt(p, off)
}

// Close closes the file and gives its slot back, only the first time.
func (h *handle) Close() error {
	if !h.closed.CompareAndSwap(false, true) {
		return os.ErrClosed
	}
	err := h.f.Close()
	h.hs.release()
	return err
}

package agent

import (
	"fmt"
	"io"
	"log"
	"os"
	"sync"
)

// DefaultLogMax is the size at which the agent's log is rotated: enough
// for days of reconnects, small enough that a loop cannot fill the disk.
const DefaultLogMax = 4 << 20

// OpenLog opens the log file at path (0600, appending) for a logger that
// stamps each line with the date and time. Once a write would take the
// file past maxBytes (DefaultLogMax if not positive), the file is renamed
// to path+".1", replacing the one rotated before, and a new one is started:
// at most about 2*maxBytes are kept. Close the returned Closer when done.
func OpenLog(path string, maxBytes int64) (*log.Logger, io.Closer, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultLogMax
	}
	w := &rotatingFile{path: path, max: maxBytes}
	if err := w.open(); err != nil {
		return nil, nil, err
	}
	return log.New(w, "", log.LstdFlags), w, nil
}

// rotatingFile is an append-only file that rotates itself at max bytes.
type rotatingFile struct {
	path string
	max  int64

	mu   sync.Mutex
	f    *os.File
	size int64
}

func (w *rotatingFile) open() error {
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open agent log: %w", err)
	}
	// An older file may have been created with looser permissions.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("open agent log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open agent log: %w", err)
	}
	w.f, w.size = f, fi.Size()
	return nil
}

// Write appends p, rotating first if p would not fit. The logger writes
// one line per call, so files are cut between lines.
func (w *rotatingFile) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return 0, fmt.Errorf("write agent log %s: %w", w.path, os.ErrClosed)
	}
	if w.size > 0 && w.size+int64(len(p)) > w.max {
		// On failure keep writing to the full file (losing the log is
		// worse), and try again after another max bytes, not every line.
		if err := w.rotate(); err != nil {
			fmt.Fprintf(w.f, "%v\n", err)
			w.size = 0
		}
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	return n, err
}

func (w *rotatingFile) rotate() error {
	if err := os.Rename(w.path, w.path+".1"); err != nil {
		return fmt.Errorf("rotate agent log %s: %w", w.path, err)
	}
	old := w.f
	if err := w.open(); err != nil {
		// Renamed but no new file: go on in the renamed one.
		return err
	}
	old.Close()
	return nil
}

func (w *rotatingFile) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

package sharedfs

import (
	"os"
	"syscall"

	"github.com/pkg/sftp"
)

// statVFS describes the file system holding the open file f.
func statVFS(f *os.File) (*sftp.StatVFS, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var st syscall.Statfs_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.Fstatfs(int(fd), &st) }); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	return &sftp.StatVFS{
		Bsize:   uint64(st.Bsize),
		Frsize:  uint64(st.Frsize),
		Blocks:  st.Blocks,
		Bfree:   st.Bfree,
		Bavail:  st.Bavail,
		Files:   st.Files,
		Ffree:   st.Ffree,
		Favail:  st.Ffree, // Linux has no separate count for unprivileged users
		Flag:    uint64(st.Flags),
		Namemax: uint64(st.Namelen),
	}, nil
}

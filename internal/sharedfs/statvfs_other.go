//go:build !linux

package sharedfs

import (
	"os"
	"syscall"

	"github.com/pkg/sftp"
)

// statVFS is not implemented off Linux; sshfs then reports made-up sizes.
func statVFS(*os.File) (*sftp.StatVFS, error) { return nil, syscall.ENOSYS }

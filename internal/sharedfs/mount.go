package sharedfs

import (
	_ "embed"
	"fmt"
	"strings"

	"github.com/devbox-vm/devbox/sshutil"
)

//go:embed sshfs-mount.sh
var sshfsMountScript string

// MountCommand is the command that mounts the host folder remotePath on
// guestPath in the guest (see sshfs-mount.sh), run in an SSH session
// without a pty: sshfs speaks SFTP on the session's stdin and stdout,
// which the caller connects to [Serve]. It does not reconnect: when the
// session ends the mount is gone, and devbox runs the command again.
//
// Options: allow_other lets dockerd and containers see the files; uid= and
// gid= present every file as the guest user; default_permissions is left
// off so the host alone decides what is allowed; dir_cache=no and 1-second
// kernel attribute and entry timeouts make host changes visible within
// about a second; ro mounts read-only.
func MountCommand(guestPath, remotePath string, readOnly bool, uid, gid int) sshutil.Cmd {
	opts := []string{
		"passive",
		"allow_other",
		fmt.Sprintf("uid=%d", uid),
		fmt.Sprintf("gid=%d", gid),
		"dir_cache=no",
		"attr_timeout=1",
		"entry_timeout=1",
	}
	if readOnly {
		opts = append(opts, "ro")
	}
	return sshutil.Cmd{Script: sshfsMountScript, Args: []string{remotePath, guestPath, strings.Join(opts, ",")}, Root: true}
}

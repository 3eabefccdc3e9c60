package sharedfs

import (
	"fmt"
	"strings"

	"github.com/devbox-vm/devbox/internal/shell"
)

// MountCommand returns the sh command line that mounts the host folder
// remotePath on guestPath in the guest, to be run by the guest user in an
// SSH session without a pty (sshfs speaks SFTP on the session's stdin and
// stdout, which the caller connects to [Serve]). The line uses sudo itself:
// it lazily unmounts whatever is left on guestPath, creates the mount point
// and execs `sshfs -o passive`, which stays in the foreground, so the
// session lasts exactly as long as the mount. It does not reconnect: when
// the session ends the mount is gone, and devbox runs the line again.
//
// Options: allow_other lets dockerd and containers see the files; uid= and
// gid= present every file as the guest user; default_permissions is left
// off so the host alone decides what is allowed; dir_cache=no and 1-second
// kernel attribute and entry timeouts make host changes visible within
// about a second; ro mounts read-only. Where sshfs has contain_symlinks
// (Debian's sshfs from 3.7.3-1.2 turns it on and refuses to read symlinks
// that are absolute or contain ".."), no_contain_symlinks turns it off,
// since the server is devbox itself and such links are common in
// dev folders (node_modules/.bin, for one).
func MountCommand(guestPath, remotePath string, readOnly bool, uid, gid int) string {
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
	g := shell.Quote(guestPath)
	return UnmountCommand(guestPath) + "; " +
		"sudo mkdir -p -- " + g + " && " +
		"if sshfs -h 2>&1 | grep -q no_contain_symlinks; then set -- -o no_contain_symlinks; fi && " +
		"exec sudo sshfs " + shell.Quote(":"+remotePath) + " " + g +
		" -o " + strings.Join(opts, ",") + ` "$@"`
}

// UnmountCommand returns the sh command line that unmounts guestPath in the
// guest, lazily so that busy files do not block it. It succeeds when
// nothing is mounted there, and uses sudo itself.
func UnmountCommand(guestPath string) string {
	return "sudo umount -l -- " + shell.Quote(guestPath) + " 2>/dev/null || true"
}

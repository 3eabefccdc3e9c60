package virtiofs

import "golang.org/x/sys/unix"

const auditArch = unix.AUDIT_ARCH_X86_64

// legacyModeCalls are amd64's calls that set a mode and have an *at twin.
var legacyModeCalls = []modeArg{
	{unix.SYS_CHMOD, 1},
	{unix.SYS_OPEN, 2},
	{unix.SYS_CREAT, 1},
	{unix.SYS_MKDIR, 1},
	{unix.SYS_MKNOD, 1},
}

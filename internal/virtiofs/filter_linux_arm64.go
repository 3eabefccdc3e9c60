package virtiofs

import "golang.org/x/sys/unix"

const auditArch = unix.AUDIT_ARCH_AARCH64

// legacyModeCalls: arm64 has only the *at calls.
var legacyModeCalls []modeArg

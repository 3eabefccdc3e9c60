//go:build linux && (amd64 || arm64)

package virtiofs

import (
	"fmt"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The seccomp program virtiofsd runs under. virtiofsd serves the guest's
// requests with its own system calls, so what the filter refuses, the guest
// cannot do to the host's files, whatever virtiofsd's version or options:
//
//   - no set-user-ID or set-group-ID bit, through chmod or in the mode of a
//     new file, folder or node (a guest must not plant a setuid file where
//     the host user would run it);
//   - no extended attribute written (file capabilities live there);
//   - switching ids succeeds without switching: virtiofsd acts as the
//     guest's caller for each request, and every file must stay the host
//     user's, the only id its user namespace maps;
//   - calls the filter cannot read the mode of (openat2, fchmodat2) fail as
//     unknown, so libc falls back to the ones it can.

// setIDBits are the mode bits no file in a share may get.
const setIDBits = unix.S_ISUID | unix.S_ISGID

// modeArg is a system call whose mode argument the filter checks.
type modeArg struct {
	nr  uintptr
	arg int // index of the mode argument
}

// modeCalls are the calls that set a mode, on every arch (the legacy ones
// are added per arch in legacyModeCalls).
var modeCalls = []modeArg{
	{unix.SYS_FCHMOD, 1},
	{unix.SYS_FCHMODAT, 2},
	{unix.SYS_OPENAT, 3},
	{unix.SYS_MKDIRAT, 2},
	{unix.SYS_MKNODAT, 2},
}

// idCalls switch the caller's ids; they succeed without doing anything.
var idCalls = []uintptr{
	unix.SYS_SETUID, unix.SYS_SETGID, unix.SYS_SETREUID, unix.SYS_SETREGID,
	unix.SYS_SETRESUID, unix.SYS_SETRESGID, unix.SYS_SETFSUID, unix.SYS_SETFSGID,
	unix.SYS_SETGROUPS,
}

// refused fail with EPERM.
var refused = []uintptr{
	unix.SYS_SETXATTR, unix.SYS_LSETXATTR, unix.SYS_FSETXATTR,
	unix.SYS_REMOVEXATTR, unix.SYS_LREMOVEXATTR, unix.SYS_FREMOVEXATTR,
}

// unknown fail with ENOSYS (openat2 and fchmodat2 pass their mode where a
// filter cannot read it).
var unknown = []uintptr{unix.SYS_OPENAT2, sysFchmodat2}

// sysFchmodat2 is fchmodat2 (Linux 6.6), the same number on amd64 and
// arm64; golang.org/x/sys does not name it yet.
const sysFchmodat2 = 452

const (
	retAllow = unix.SECCOMP_RET_ALLOW
	retKill  = unix.SECCOMP_RET_KILL_PROCESS
)

func retErrno(errno unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(errno) }

// seccomp_data offsets: nr, arch, then six 64-bit arguments.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// program assembles the filter for this arch.
func program() ([]bpf.RawInstruction, error) {
	insns := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArch, SkipTrue: 1},
		bpf.RetConstant{Val: retKill},
		bpf.LoadAbsolute{Off: offNr, Size: 4},
		// x32 system calls on amd64 (never on arm64): numbers with bit 30.
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: 0x40000000, SkipFalse: 1},
		bpf.RetConstant{Val: retErrno(unix.ENOSYS)},
	}
	for _, nr := range idCalls {
		insns = append(insns, returnIf(nr, retErrno(0))...)
	}
	for _, nr := range refused {
		insns = append(insns, returnIf(nr, retErrno(unix.EPERM))...)
	}
	for _, nr := range unknown {
		insns = append(insns, returnIf(nr, retErrno(unix.ENOSYS))...)
	}
	for _, c := range append(modeCalls, legacyModeCalls...) {
		insns = append(insns,
			// Not this call: on to the next check.
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(c.nr), SkipFalse: 4},
			// The low 32 bits of the mode (little-endian arches only).
			bpf.LoadAbsolute{Off: uint32(offArgs + 8*c.arg), Size: 4},
			bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: setIDBits, SkipFalse: 1},
			bpf.RetConstant{Val: retErrno(unix.EPERM)},
			bpf.RetConstant{Val: retAllow},
		)
	}
	insns = append(insns, bpf.RetConstant{Val: retAllow})
	return bpf.Assemble(insns)
}

// returnIf returns ret when the system call is nr.
func returnIf(nr uintptr, ret uint32) []bpf.Instruction {
	return []bpf.Instruction{
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(nr), SkipFalse: 1},
		bpf.RetConstant{Val: ret},
	}
}

// installFilter puts every thread of this process, and whatever it
// executes, under the filter. No new privileges: nothing it runs can gain
// any through a setuid binary either.
func installFilter() error {
	raw, err := program()
	if err != nil {
		return fmt.Errorf("assemble the seccomp filter: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return fmt.Errorf("install the seccomp filter: %w", errno)
	}
	return nil
}

package doctor

import "golang.org/x/sys/unix"

// hvSupport reads whether macOS offers Hypervisor.framework here.
func hvSupport() (bool, error) {
	v, err := unix.SysctlUint32("kern.hv_support")
	return v == 1, err
}

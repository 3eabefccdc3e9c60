//go:build !darwin

package doctor

import "errors"

// hvSupport: Hypervisor.framework is macOS's alone.
func hvSupport() (bool, error) { return false, errors.New("not macOS") }

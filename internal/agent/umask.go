package agent

import "syscall"

// umask sets the process umask and returns the old one, so sockets are
// created 0600 from the start (no window where others could connect).
func umask(mask int) int { return syscall.Umask(mask) }

//go:build !(linux && (amd64 || arm64))

package virtiofs

// Start is unsupported here.
func Start(Config) (pid int, err error) { return 0, ErrUnsupported }

// Helper is unsupported here.
func Helper([]string) error { return ErrUnsupported }

// Serving is always false here.
func Serving(string) bool { return false }

// Stop has nothing to stop here.
func Stop(string) {}

// StopAll has nothing to stop here.
func StopAll(string) {}

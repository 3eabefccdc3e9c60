//go:build !(linux && (amd64 || arm64))

package virtiofs

// Start is unsupported here.
func Start(Config) (pid int, err error) { return 0, ErrUnsupported }

// Helper is unsupported here.
func Helper([]string) error { return ErrUnsupported }

// Running is always false here.
func Running(int, string) bool { return false }

// Stop has nothing to stop here.
func Stop(string, string) {}

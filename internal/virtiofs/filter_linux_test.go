//go:build linux && (amd64 || arm64)

package virtiofs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The filter is tried for real: the test binary runs itself again, puts
// itself under it, and reports what each call did.
func TestMain(m *testing.M) {
	if dir := os.Getenv("DEVBOX_TEST_FILTER_DIR"); dir != "" {
		os.Exit(underFilter(dir))
	}
	os.Exit(m.Run())
}

// underFilter installs the filter and prints "name: result" per call.
func underFilter(dir string) int {
	if err := installFilter(); err != nil {
		os.Stdout.WriteString("install: " + err.Error() + "\n")
		return 1
	}
	f := filepath.Join(dir, "f")
	report := func(name string, err error) {
		res := "ok"
		if err != nil {
			res = err.Error()
			var errno unix.Errno
			if errors.As(err, &errno) {
				res = unix.ErrnoName(errno)
			}
		}
		os.Stdout.WriteString(name + ": " + res + "\n")
	}
	fd, err := unix.Open(f, unix.O_CREAT|unix.O_WRONLY, 0o644)
	report("create 0644", err)
	report("chmod 0755", unix.Chmod(f, 0o755))
	report("chmod 04755", unix.Chmod(f, 0o4755))
	report("chmod 02755", unix.Chmod(f, 0o2755))
	report("fchmod 04755", unix.Fchmod(fd, 0o4755))
	report("fchmodat 06755", unix.Fchmodat(unix.AT_FDCWD, f, 0o6755, 0))
	_, err = unix.Open(filepath.Join(dir, "s"), unix.O_CREAT|unix.O_WRONLY, 0o4755)
	report("create 04755", err)
	_, err = unix.Openat(unix.AT_FDCWD, filepath.Join(dir, "s"), unix.O_CREAT|unix.O_WRONLY, 0o2755)
	report("openat 02755", err)
	report("mkdir 0755", unix.Mkdir(filepath.Join(dir, "d"), 0o755))
	report("mkdir 02775", unix.Mkdir(filepath.Join(dir, "g"), 0o2775))
	report("mknod fifo 04644", unix.Mknod(filepath.Join(dir, "p"), unix.S_IFIFO|0o4644, 0))
	report("setxattr", unix.Setxattr(f, "user.devbox", []byte("1"), 0))
	euid := unix.Geteuid()
	err = unix.Setresuid(-1, euid+4242, -1)
	if err == nil && unix.Geteuid() != euid {
		err = errors.New("switched")
	}
	report("setresuid", err)
	var how unix.OpenHow
	how.Flags, how.Mode = unix.O_CREAT|unix.O_WRONLY, 0o4755
	_, err = unix.Openat2(unix.AT_FDCWD, filepath.Join(dir, "o"), &how)
	report("openat2", err)
	unix.Close(fd)
	return 0
}

func TestFilter(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DEVBOX_TEST_FILTER_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("under the filter: %v\n%s", err, out)
	}
	want := map[string]string{
		"create 0644":      "ok",
		"chmod 0755":       "ok",
		"chmod 04755":      "EPERM",
		"chmod 02755":      "EPERM",
		"fchmod 04755":     "EPERM",
		"fchmodat 06755":   "EPERM",
		"create 04755":     "EPERM",
		"openat 02755":     "EPERM",
		"mkdir 0755":       "ok",
		"mkdir 02775":      "EPERM",
		"mknod fifo 04644": "EPERM",
		"setxattr":         "EPERM",
		"setresuid":        "ok", // succeeds, switching nothing
		"openat2":          "ENOSYS",
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, res, _ := strings.Cut(line, ": ")
		got[name] = res
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s under the filter: %q, want %q", name, got[name], w)
		}
	}
	// Nothing set-ID reached the disk.
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
			t.Errorf("%s has mode %v", p, fi.Mode())
		}
		return nil
	})
}

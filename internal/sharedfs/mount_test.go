package sharedfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/sshutil"
)

func TestMountCommand(t *testing.T) {
	for _, tt := range []struct {
		readOnly bool
		opts     string
	}{
		{false, "passive,allow_other,uid=1000,gid=1001,dir_cache=no,attr_timeout=1,entry_timeout=1"},
		{true, "passive,allow_other,uid=1000,gid=1001,dir_cache=no,attr_timeout=1,entry_timeout=1,ro"},
	} {
		cmd := MountCommand("/srv/it's my proj", "/Users/me/it's my proj", tt.readOnly, 1000, 1001)
		if want := []string{"/Users/me/it's my proj", "/srv/it's my proj", tt.opts}; !cmd.Root || !slices.Equal(cmd.Args, want) {
			t.Errorf("read-only %v: root %v, args %q; want root and %q", tt.readOnly, cmd.Root, cmd.Args, want)
		}
	}
}

// fakeBin puts stand-ins for sudo, umount and sshfs on PATH: each records
// its arguments, one per line, in dir/<name>.args. The fake sshfs prints
// help that mentions no_contain_symlinks only when newSSHFS is set.
func fakeBin(t *testing.T, newSSHFS bool) (dir string, env []string) {
	t.Helper()
	dir = t.TempDir()
	help := "-o contain_symlinks\n-o no_contain_symlinks allow all symlink targets"
	if !newSSHFS {
		help = "-o transform_symlinks"
	}
	scripts := map[string]string{
		"sudo":   `[ "$1" = -n ] && shift; exec "$@"`,
		"umount": `printf '%s\n' "$@" > "$FAKE/umount.args"; exit 32`,
		"sshfs": `if [ "$1" = -h ]; then printf '%s\n' '` + help + `'; exit 0; fi
printf '%s\n' "$@" > "$FAKE/sshfs.args"`,
	}
	for name, body := range scripts {
		must(t, os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755))
	}
	return dir, append(os.Environ(), "FAKE="+dir, "PATH="+dir+":"+os.Getenv("PATH"))
}

func runSh(t *testing.T, env []string, c sshutil.Cmd) (stdout string) {
	t.Helper()
	line, err := c.Line()
	must(t, err)
	var out, errb bytes.Buffer
	cmd := exec.Command("sh", "-c", line)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("sh -c %s: %v\nstderr: %s", line, err, errb.String())
	}
	return out.String()
}

func readArgs(t *testing.T, p string) []string {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestMountCommandRuns runs the command's line in sh with stand-in tools,
// checking that awkward paths reach them as single, intact arguments, and
// that a stale mount is unmounted first.
func TestMountCommandRuns(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	for _, newSSHFS := range []bool{true, false} {
		fake, env := fakeBin(t, newSSHFS)
		guest := filepath.Join(t.TempDir(), "it's a $HOME `dir`")
		remote := "/host/it's a proj"

		if out := runSh(t, env, MountCommand(guest, remote, true, 1000, 1000)); out != "" {
			t.Errorf("mount line wrote %q to stdout, which carries SFTP", out)
		}
		if fi, err := os.Stat(guest); err != nil || !fi.IsDir() {
			t.Errorf("mount point %q not created: %v", guest, err)
		}
		if got, want := readArgs(t, filepath.Join(fake, "umount.args")), []string{"-l", "--", guest}; !slices.Equal(got, want) {
			t.Errorf("umount args = %q, want %q", got, want)
		}
		want := []string{":" + remote, guest, "-o",
			"passive,allow_other,uid=1000,gid=1000,dir_cache=no,attr_timeout=1,entry_timeout=1,ro"}
		if newSSHFS {
			want = append(want, "-o", "no_contain_symlinks")
		}
		if got := readArgs(t, filepath.Join(fake, "sshfs.args")); !slices.Equal(got, want) {
			t.Errorf("sshfs args (new sshfs: %v) = %q, want %q", newSSHFS, got, want)
		}

	}
}

package sshutil

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCmdLine: the one place a guest command line is written.
func TestCmdLine(t *testing.T) {
	for _, tc := range []struct {
		cmd  Cmd
		want string
	}{
		{Cmd{}, ""},
		{Cmd{Args: []string{"id", "-u"}}, "id -u"},
		{Cmd{Args: []string{"echo", "it's $HOME"}}, `echo 'it'\''s $HOME'`},
		{Cmd{Script: "id -u; id -g"}, "id -u; id -g"},
		{Cmd{Script: `echo "$1"`, Args: []string{"a b"}}, `sh -c 'echo "$1"' sh 'a b'`},
		{Cmd{Args: []string{"systemctl", "poweroff"}, Root: true}, "sudo -n systemctl poweroff"},
		{Cmd{Script: "mkdir -p /x", Root: true}, "sudo -n sh -c 'mkdir -p /x'"},
		{Cmd{Args: []string{"make"}, Dir: "/src/my proj"}, "cd '/src/my proj' && exec make"},
		{Cmd{Args: []string{"make"}, Dir: "/src", Root: true}, `sudo -n sh -c 'cd /src && exec make'`},
	} {
		got, err := tc.cmd.Line()
		if err != nil || got != tc.want {
			t.Errorf("%+v: %q, %v; want %q", tc.cmd, got, err, tc.want)
		}
	}
	for _, c := range []Cmd{{Dir: "/src"}, {Root: true}} {
		if _, err := c.Line(); !errors.Is(err, errNoCommand) {
			t.Errorf("%+v: %v, want a login shell refused a folder or root", c, err)
		}
	}
}

// TestCmdLineRuns runs each kind of line in sh, with a sudo that runs its
// command and records that it did: arguments arrive whole, the folder is
// the one asked for, root goes through sudo -n.
func TestCmdLineRuns(t *testing.T) {
	bin := t.TempDir()
	sudoLog := filepath.Join(bin, "sudo.log")
	sudo := "#!/bin/sh\nprintf '%s\\n' \"$1\" >> " + sudoLog + "\n[ \"$1\" = -n ] && shift\nexec \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "sudo"), []byte(sudo), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "it's a `dir` $HOME")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	odd := `a 'quoted' "arg" $x ; rm -rf /`
	for _, tc := range []struct {
		cmd     Cmd
		want    string
		viaSudo bool
	}{
		{Cmd{Args: []string{"printf", "%s|", odd, "b"}}, odd + "|b|", false},
		{Cmd{Script: `printf '%s|' "$@"`, Args: []string{odd, ""}}, odd + "||", false},
		{Cmd{Args: []string{"pwd"}, Dir: dir}, dir + "\n", false},
		{Cmd{Script: `pwd; printf '%s' "$1"`, Args: []string{odd}, Dir: dir, Root: true}, dir + "\n" + odd, true},
		{Cmd{Args: []string{"printf", "%s", odd}, Root: true}, odd, true},
	} {
		os.Remove(sudoLog)
		line, err := tc.cmd.Line()
		if err != nil {
			t.Fatal(err)
		}
		c := exec.Command("sh", "-c", line)
		c.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		out, err := c.CombinedOutput()
		if err != nil || string(out) != tc.want {
			t.Errorf("%s: %q, %v; want %q", line, out, err, tc.want)
		}
		logged, _ := os.ReadFile(sudoLog)
		if got := strings.TrimSpace(string(logged)); (got == "-n") != tc.viaSudo {
			t.Errorf("%s: sudo called with %q; want through sudo -n: %v", line, got, tc.viaSudo)
		}
	}
}

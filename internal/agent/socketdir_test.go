package agent

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/sshutil"
)

// testSocketEnv is a socketEnv of this user, with short temporary folders
// for the runtime, temp and /tmp folders.
func testSocketEnv(t *testing.T, goos string, runtimeDir bool) (socketEnv, string) {
	t.Helper()
	root, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	env := map[string]string{}
	if runtimeDir {
		env["XDG_RUNTIME_DIR"] = filepath.Join(root, "run")
	}
	for _, d := range []string{"run", "temp", "tmp"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return socketEnv{
		goos:    goos,
		uid:     os.Getuid(),
		getenv:  func(k string) string { return env[k] },
		tempDir: filepath.Join(root, "temp"),
		tmp:     filepath.Join(root, "tmp"),
	}, root
}

// deepDir is an instance folder whose docker.sock would not fit.
func deepDir(root string) string {
	return filepath.Join(root, "home", strings.Repeat("long-folder-name/", 5), "instances", "demo")
}

func checkSocketDir(t *testing.T, dir string, env socketEnv) {
	t.Helper()
	for _, name := range []string{filenames.AgentSocket, filenames.DockerSocket} {
		if p := filepath.Join(dir, name); len(p) > maxSocketPath {
			t.Errorf("%s is %d bytes", p, len(p))
		}
	}
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket folder %s: %v %v", dir, fi.Mode(), err)
	}
	if fi, err := os.Lstat(filepath.Dir(dir)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket folder's parent: %v %v", fi.Mode(), err)
	}
}

func TestSocketDirShortPathIsTheInstanceDir(t *testing.T) {
	env, root := testSocketEnv(t, "linux", true)
	inst := filepath.Join(root, "instances", "demo")
	got, err := socketDir(inst, env)
	if err != nil || got != inst {
		t.Errorf("socket dir %s, %v; want %s", got, err, inst)
	}
	// Exactly at the limit still fits.
	edge := "/" + strings.Repeat("x", maxSocketPath-2-len(filenames.DockerSocket))
	if got, err := socketDir(edge, env); err != nil || got != edge || len(filepath.Join(edge, filenames.DockerSocket)) != maxSocketPath {
		t.Errorf("socket dir %s, %v; want %s", got, err, edge)
	}
	if _, err := os.Stat(filepath.Join(root, "run", "devbox")); !os.IsNotExist(err) {
		t.Errorf("a short path made a socket folder: %v", err)
	}
}

func TestSocketDirDeepPath(t *testing.T) {
	for _, tc := range []struct {
		name       string
		goos       string
		runtimeDir bool
		base       string // relative to the test's root
	}{
		{"linux: the runtime folder", "linux", true, "run/devbox"},
		{"linux without XDG_RUNTIME_DIR: the temp folder", "linux", false, "temp/devbox-%d"},
		{"macOS: the temp folder, even with XDG_RUNTIME_DIR", "darwin", true, "temp/devbox-%d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, root := testSocketEnv(t, tc.goos, tc.runtimeDir)
			inst := deepDir(root)
			got, err := socketDir(inst, env)
			if err != nil {
				t.Fatal(err)
			}
			base := filepath.Join(root, strings.ReplaceAll(tc.base, "%d", strconv.Itoa(env.uid)))
			if filepath.Dir(got) != base || len(filepath.Base(got)) != 8 {
				t.Errorf("socket dir %s, want %s/<8 hex>", got, base)
			}
			checkSocketDir(t, got, env)
			// Stable for one instance, distinct for another.
			if again, err := socketDir(inst+"/", env); err != nil || again != got {
				t.Errorf("again: %s, %v; want %s", again, err, got)
			}
			if other, err := socketDir(filepath.Join(filepath.Dir(inst), "other"), env); err != nil || other == got {
				t.Errorf("another instance: %s, %v", other, err)
			}
		})
	}
}

func TestSocketDirLongTempFallsBackToTmp(t *testing.T) {
	env, root := testSocketEnv(t, "darwin", false)
	env.tempDir = filepath.Join(root, "temp", strings.Repeat("t", 90))
	got, err := socketDir(deepDir(root), env)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, filepath.Join(root, "tmp")+"/") {
		t.Errorf("socket dir %s, want under %s", got, filepath.Join(root, "tmp"))
	}
	checkSocketDir(t, got, env)

	env.tmp = env.tempDir
	if _, err := socketDir(deepDir(root), env); err == nil || !strings.Contains(err.Error(), "hint: set TMPDIR") {
		t.Errorf("nothing short enough: %v", err)
	}
}

func TestSocketDirRefusesFoldersNotOurs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		otherUser bool // play another user: the folders here are the test user's
		make      func(t *testing.T, base string)
		want      string
	}{
		{"a symlink", false, func(t *testing.T, base string) {
			if err := os.Symlink(t.TempDir(), base); err != nil {
				t.Fatal(err)
			}
		}, "is a symlink"},
		{"a file", false, func(t *testing.T, base string) {
			if err := os.WriteFile(base, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "is not a folder"},
		{"someone else's", true, func(t *testing.T, base string) {
			if err := os.Mkdir(base, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "belongs to uid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, root := testSocketEnv(t, "linux", false)
			if tc.otherUser {
				env.uid++
			}
			tc.make(t, filepath.Join(root, "temp", "devbox-"+strconv.Itoa(env.uid)))
			inst := deepDir(root)
			_, err := socketDir(inst, env)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), inst) {
				t.Errorf("error %v, want %q naming %s", err, tc.want, inst)
			}
		})
	}
}

func TestSocketDirTightensOurOwnFolder(t *testing.T) {
	env, root := testSocketEnv(t, "linux", true)
	base := filepath.Join(root, "run", "devbox")
	if err := os.Mkdir(base, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o755)
	got, err := socketDir(deepDir(root), env)
	if err != nil {
		t.Fatal(err)
	}
	checkSocketDir(t, got, env)
}

// An agent of a deep instance folder serves its sockets from a short
// folder, where QueryStatus and devbox run find them.
func TestAgentOfADeepFolderListensInAShortOne(t *testing.T) {
	_, target := newFakeGuest(t)
	dir := deepDir(t.TempDir())
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	a := &Agent{Dir: dir, Target: target}
	startAgent(t, a)
	waitStatus(t, a, "connected", 20*time.Second, func(st Status) bool { return st.Connection.State == ConnUp })
	st, err := QueryStatus(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Docker.Path) > maxSocketPath || filepath.Dir(st.Docker.Path) == dir {
		t.Errorf("docker socket %s (%d bytes) is not in a short folder", st.Docker.Path, len(st.Docker.Path))
	}
	if out, err := dialControl(t, a).Output(context.Background(), sshutil.Cmd{Script: "echo deep"}); err != nil || string(out) != "deep\n" {
		t.Errorf("run through the short socket: %q %v", out, err)
	}
}

//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/boxstore"
)

// upKilledAt runs devbox up (with args) and has it SIGKILL itself at
// step, as a user's kill -9 there would; the test fails if it never got
// there.
func (e *env) upKilledAt(step string, args ...string) {
	e.t.Helper()
	saved := e.extra
	e.extra = append(append([]string{}, saved...), "DEVBOX_TEST_KILL_AT="+step)
	defer func() { e.extra = saved }()
	r := e.run(10*time.Minute, nil, append([]string{"up"}, args...)...)
	if r.code != -1 {
		e.t.Fatalf("up was not killed at step %q:\n%s", step, r)
	}
}

// TestKillAtEachStep: kill -9 of up at any step leaves a state that the
// next up resumes and that destroy -f removes completely. Its box is the
// test box packed as a Vagrant libvirt box, so a real import boots too.
func TestKillAtEachStep(t *testing.T) {
	box := vagrantBoxOf(t, boxPath(t))
	e := newEnv(t, fmt.Sprintf("name: killed\nbox: %s\ncpus: 1\nmemory: 1GiB\ndisk: 4GiB\nmounts: []\n", box))
	e.cleanup("killed")

	// Each up is killed at the next step and resumes from what the one
	// before left; the base volume is in the pool already (see below for
	// an upload cut short).
	for _, step := range []string{"resolved", "volumes", "define", "started", "ssh", "provision", "agent"} {
		args := []string{"--no-provision"}
		if step == "provision" {
			args = nil
		}
		e.upKilledAt(step, args...)
	}
	r := e.ok(10*time.Minute, "up", "--no-provision")
	if strings.Contains(r.stderr, "imported Vagrant box") {
		t.Errorf("the .box was imported again, not found in the cache:\n%s", r)
	}
	if st := e.status(); st.State != "running" {
		t.Fatalf("after resuming: %+v", st)
	}
	contains(t, "status", e.ok(time.Minute, "status").stdout, "running (pid")
	// (Other tests' instances may use the same base volume: at least one.)
	if b, ok := e.box(t, "test.box"); !ok || !b.Cached || !b.InPool || b.PoolUsers < 1 || strings.Join(b.Instances, ",") != "killed" {
		t.Errorf("box list while the instance runs: %+v (found %v)", b, ok)
	}
	r = e.run(time.Minute, nil, "box", "prune", "--keep-recent", "0s")
	if b, ok := e.box(t, "test.box"); r.code != 0 || !ok || !b.Cached {
		t.Errorf("prune removed a box in use (%+v):\n%s", b, r)
	}
	e.ok(3*time.Minute, "destroy", "-f")
	e.assertGone("killed")
	// Unused here now: prune removes the imported image (and its base
	// volume, unless another home's instance uses it).
	e.ok(time.Minute, "box", "prune", "--keep-recent", "0s")
	if b, ok := e.box(t, "test.box"); ok {
		t.Errorf("box still listed after prune: %+v", b)
	}

	// Killed and then destroyed straight away.
	for _, step := range []string{"volumes", "define", "agent"} {
		t.Run("destroy after a kill at "+step, func(t *testing.T) {
			e.upKilledAt(step, "--no-provision")
			e.ok(3*time.Minute, "destroy", "-f")
			e.assertGone("killed")
		})
	}
}

// TestKillDuringUpload: a box upload cut short by kill -9 is uploaded
// again by the next up, and destroy leaves nothing of the instance.
func TestKillDuringUpload(t *testing.T) {
	// A small raw box of its own, so its base volume is not in the pool.
	box := filepath.Join(t.TempDir(), "small.raw")
	data := make([]byte, 8<<20)
	rand.Read(data[4<<20 : 4<<20+64])
	if err := os.WriteFile(box, data, 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, fmt.Sprintf("name: upload\nbox: %s\ncpus: 1\nmemory: 256MiB\ndisk: 1GiB\nmounts: []\n", box))
	e.cleanup("upload")
	e.upKilledAt("upload")
	e.ok(3*time.Minute, "destroy", "-f")
	e.assertGone("upload")
	// The next up finds the partial base, uploads it again, and goes on.
	e.upKilledAt("define")
	e.ok(3*time.Minute, "destroy", "-f")
	e.assertGone("upload")
}

// TestTwoUpsShareOneUpload: two instances that need the same new box at
// the same time upload it once; neither takes the other's upload for an
// incomplete one. Two projects of one user share a devbox home (its box
// lock makes one wait); two homes (two users on qemu:///system) share
// only the pool, and the driver waits for the other's upload.
func TestTwoUpsShareOneUpload(t *testing.T) {
	for _, tc := range []struct {
		name      string
		oneHome   bool
		instances []string
	}{
		{"one home", true, []string{"twin-a", "twin-b"}},
		{"two homes", false, []string{"twin-c", "twin-d"}},
	} {
		t.Run(tc.name, func(t *testing.T) { twoUps(t, tc.oneHome, tc.instances) })
	}
}

func twoUps(t *testing.T, oneHome bool, names []string) {
	// Random bytes, so the upload takes a few seconds: long enough for
	// the second up to find it half done when nothing makes it wait.
	box := filepath.Join(t.TempDir(), "shared.raw")
	data := make([]byte, 96<<20)
	rand.Read(data[4096:])
	if err := os.WriteFile(box, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var envs []*env
	for _, name := range names {
		e := newEnv(t, fmt.Sprintf("name: %s\nbox: %s\ncpus: 1\nmemory: 256MiB\ndisk: 1GiB\nmounts: []\n", name, box))
		if oneHome && len(envs) > 0 {
			e.home = envs[0].home
		}
		e.cleanup(name)
		envs = append(envs, e)
	}
	// Both stop dead once their domain is defined: proof that each got
	// through the base volume.
	outs := make([][]byte, len(envs))
	errs := make([]error, len(envs))
	var wg sync.WaitGroup
	for i, e := range envs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(e.bin, "up")
			cmd.Dir = e.project
			cmd.Env = append(os.Environ(), "DEVBOX_HOME="+e.home, "DEVBOX_ACCEL=tcg", "DEVBOX_TEST_KILL_AT=define")
			outs[i], errs[i] = cmd.CombinedOutput()
		}()
	}
	wg.Wait()
	for i := range envs {
		var ee *exec.ExitError
		if !errors.As(errs[i], &ee) || ee.ExitCode() != -1 {
			t.Errorf("up %d did not get to define: %v\n%s", i, errs[i], outs[i])
		}
	}
	// Uploaded once: a second upload means one up took the other's for
	// one cut short (and deleted it under its writer).
	uploads := 0
	for _, out := range outs {
		uploads += strings.Count(string(out), "box into base volume")
	}
	if uploads != 1 {
		t.Errorf("the box was uploaded %d times, want once:\n%s\n---\n%s", uploads, outs[0], outs[1])
	}
	for _, e := range envs {
		if t.Failed() {
			break
		}
		e.ok(3*time.Minute, "destroy", "-f")
	}
}

// vagrantBoxOf packs image as a Vagrant libvirt box (a plain tar with
// metadata.json and box.img) in a temp folder.
func vagrantBoxOf(t *testing.T, image string) string {
	t.Helper()
	src, err := os.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	fi, _ := src.Stat()
	out := filepath.Join(t.TempDir(), "test.box")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	meta := []byte(`{"provider": "libvirt", "format": "qcow2", "virtual_size": 3}`)
	for _, e := range []struct {
		name string
		size int64
		body io.Reader
	}{{"metadata.json", int64(len(meta)), bytes.NewReader(meta)}, {"box.img", fi.Size(), src}} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: e.size, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// box is the entry of devbox box list --json whose source ends with suffix.
func (e *env) box(t *testing.T, suffix string) (boxstore.Box, bool) {
	t.Helper()
	r := e.ok(time.Minute, "box", "list", "--json")
	var list []boxstore.Box
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("box list --json: %v\n%s", err, r)
	}
	for _, b := range list {
		if strings.HasSuffix(b.Source, suffix) {
			return b, true
		}
	}
	return boxstore.Box{}, false
}

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/devbox-vm/devbox/internal/boxstore"
	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/internal/instance"
	"github.com/devbox-vm/devbox/vm"
)

// cacheBox puts an image of content in home's box cache, as a download
// would, and returns its sha256.
func cacheBox(t *testing.T, home, content string) string {
	t.Helper()
	s := sha256.Sum256([]byte(content))
	sha := hex.EncodeToString(s[:])
	dir := filepath.Join(home, "cache", "boxes")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, sha+".img"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return sha
}

// TestBoxListRemovePrune: a box an instance uses is listed with it and
// cannot be removed; prune removes only the unused one, from the cache
// and the pool.
func TestBoxListRemovePrune(t *testing.T) {
	d, home := setup(t, "box: x.qcow2\n")
	used, unused := cacheBox(t, home, "used box"), cacheBox(t, home, "unused box")
	// Cached here, its base used by another home's instance only.
	elsewhere := cacheBox(t, home, "box used by another home")
	d.Create(t.Context(), vm.Spec{Name: "devbox-other-2", BoxSHA256: elsewhere}, nil)
	// An instance made from the used box: in the pool and in the home.
	d.Create(t.Context(), vm.Spec{Name: "devbox-demo-1", BoxSHA256: used}, nil)
	os.MkdirAll(instance.Home{State: home}.InstanceDir("demo"), 0o700)
	os.WriteFile(filepath.Join(instance.Home{State: home}.InstanceDir("demo"), filenames.BoxSHA256), []byte(used+"\n"), 0o600)

	code, out, errs := run(t, "box", "list", "--json")
	var list []boxstore.Box
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 3 {
		t.Fatalf("box list --json: exit %d\n%s\n%s", code, out, errs)
	}
	for _, b := range list {
		inUse := b.SHA256 == used
		if b.Cached != true || inUse != (strings.Join(b.Instances, ",") == "demo") || (inUse || b.SHA256 == elsewhere) != (b.PoolUsers == 1) {
			t.Errorf("listed %+v (used: %v)", b, inUse)
		}
	}
	code, out, _ = run(t, "box", "list")
	if code != 0 || !strings.Contains(out, used[:16]) || !strings.Contains(out, "demo, 1 volume(s) in the pool") {
		t.Errorf("box list: exit %d\n%s", code, out)
	}

	code, _, errs = run(t, "box", "remove", used[:12])
	if code != 1 || !strings.Contains(errs, "in use by instance(s) demo") || !strings.Contains(errs, "devbox destroy") {
		t.Errorf("box remove of a used box: exit %d: %s", code, errs)
	}
	code, _, errs = run(t, "box", "remove", "abc")
	if code != 1 || !strings.Contains(errs, "at least 8 digits") {
		t.Errorf("box remove abc: exit %d: %s", code, errs)
	}

	code, _, errs = run(t, "box", "prune", "--dry-run")
	if code != 0 || !strings.Contains(errs, "would remove box "+unused[:16]) {
		t.Errorf("prune --dry-run: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(home, "cache", "boxes", unused+".img")); err != nil {
		t.Errorf("dry run removed the box: %v", err)
	}
	partial := filepath.Join(home, "cache", "boxes", "partial", "sha256-"+strings.Repeat("0", 64))
	os.MkdirAll(filepath.Dir(partial), 0o755)
	os.WriteFile(partial, make([]byte, 3<<20), 0o600)
	code, _, errs = run(t, "box", "prune")
	if code != 0 || !strings.Contains(errs, "removed box "+unused[:16]) || strings.Contains(errs, used[:16]) ||
		!strings.Contains(errs, "removed downloads cut short (3 MiB)") {
		t.Errorf("prune: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(partial); err == nil {
		t.Error("prune left a download cut short")
	}
	for _, c := range d.Calls {
		if strings.HasPrefix(c, "DeleteBase") {
			t.Errorf("prune deleted a base volume in use: %s", c)
		}
	}
	for sha, want := range map[string]bool{used: true, unused: false, elsewhere: false} {
		if _, err := os.Stat(filepath.Join(home, "cache", "boxes", sha+".img")); (err == nil) != want {
			t.Errorf("box %s present after prune: %v, want %v", sha[:16], err == nil, want)
		}
	}
}

// TestBuildHomeUnderSudo: run through sudo, box build puts the box in the
// invoking user's home, owned by them; DEVBOX_HOME still wins.
func TestBuildHomeUnderSudo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("sudo's case is root's")
	}
	t.Setenv("DEVBOX_HOME", "")
	t.Setenv("SUDO_UID", "65534") // nobody
	home, owner, err := buildHome()
	if err != nil {
		t.Fatal(err)
	}
	if owner == nil || owner.uid != 65534 || !strings.HasSuffix(home.Cache, filepath.Join(".cache", "devbox")) || strings.HasPrefix(home.Cache, "/root") {
		t.Errorf("under sudo: home %+v, owner %+v", home, owner)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "boxes", "built"), 0o755)
	os.WriteFile(filepath.Join(dir, "boxes", "built", "x.json"), nil, 0o644)
	if err := chownTree(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if st, ok := fi.Sys().(*syscall.Stat_t); err == nil && ok && st.Uid != 65534 {
			t.Errorf("%s is still owned by %d", p, st.Uid)
		}
		return nil
	})
	t.Setenv("DEVBOX_HOME", dir)
	if home, owner, err := buildHome(); err != nil || owner != nil || home.State != dir {
		t.Errorf("with DEVBOX_HOME: %+v %+v %v", home, owner, err)
	}
}

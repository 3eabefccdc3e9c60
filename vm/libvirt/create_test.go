package libvirt

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/vm"
)

// boxSpec is testSpec with the box at path.
func boxSpec(t *testing.T, path, format string) vm.Spec {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	spec := testSpec("tcg")
	spec.BoxPath, spec.BoxFormat, spec.BoxSize = path, format, int64(len(data))
	spec.BoxSHA256 = hex.EncodeToString(sum[:])
	spec.DiskBytes = 1 << 30
	spec.Seed = []byte("new seed")
	return spec
}

// notes collects progress lines.
type notes []string

func (n *notes) progress(format string, args ...any) { *n = append(*n, fmt.Sprintf(format, args...)) }

// TestCreateRefusesBoxNamingOtherFiles: nothing reaches libvirt for a box
// whose header names a backing file, even one declared raw.
func TestCreateRefusesBoxNamingOtherFiles(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "host-secret")
	evil := qcow2Box(t, filepath.Join(dir, "evil.qcow2"), 1<<20, secret)
	for _, format := range []string{"qcow2", "raw"} {
		f := newFakeLibvirt()
		err := f.driver().Create(t.Context(), boxSpec(t, evil, format), nil)
		if err == nil || !strings.Contains(err.Error(), `refused: its qcow2 header names a backing file "`+secret+`"`) {
			t.Errorf("%s: Create = %v, want refused", format, err)
		}
		if len(f.calls) != 0 {
			t.Errorf("%s: libvirt saw %q, want nothing", format, f.calls)
		}
	}
}

// TestEnsureBaseRefusesBoxNamingOtherFiles: the check just before the
// upload holds on its own, for callers that skip Create's.
func TestEnsureBaseRefusesBoxNamingOtherFiles(t *testing.T) {
	dir := t.TempDir()
	evil := qcow2Box(t, filepath.Join(dir, "evil.qcow2"), 1<<20, filepath.Join(dir, "host-secret"))
	f := newFakeLibvirt()
	f.pool = true
	_, err := f.driver().ensureBase(t.Context(), fakePool, boxSpec(t, evil, "qcow2"), func(string, ...any) {})
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("ensureBase = %v, want refused", err)
	}
	if vols := f.volumes(); len(vols) != 0 {
		t.Errorf("volumes %q, want none", vols)
	}
}

func TestCreate(t *testing.T) {
	box := qcow2Box(t, filepath.Join(t.TempDir(), "ok.qcow2"), 1<<20, "")
	f := newFakeLibvirt()
	spec := boxSpec(t, box, "qcow2")
	if err := f.driver().Create(t.Context(), spec, nil); err != nil {
		t.Fatal(err)
	}
	want := []string{baseVolume(spec.BoxSHA256), seedVolume(spec.Name), diskVolume(spec.Name)}
	slices.Sort(want)
	if got := f.volumes(); !slices.Equal(got, want) {
		t.Errorf("volumes %q, want %q", got, want)
	}
	if _, ok := f.domains[spec.Name]; !ok {
		t.Error("domain not defined")
	}
	// An existing instance is an error, and its volumes stay.
	if err := f.driver().Create(t.Context(), spec, nil); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second Create = %v, want already exists", err)
	}
	if got := f.volumes(); !slices.Equal(got, want) {
		t.Errorf("after second Create: volumes %q, want %q", got, want)
	}
}

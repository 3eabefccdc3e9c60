//go:build e2e

package libvirt

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/devbox-vm/devbox/vm"
)

// realDriver connects to the system libvirtd, or skips the test.
func realDriver(t *testing.T) *Driver {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	d, err := Connect(ctx, "qemu:///system")
	if errors.Is(err, vm.ErrUnavailable) {
		t.Skipf("no libvirtd: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// rawBox writes a small raw box of random bytes, so its base volume is
// this test's own.
func rawBox(t *testing.T) (path, sha string) {
	t.Helper()
	b := make([]byte, 1<<20)
	rand.Read(b)
	path = filepath.Join(t.TempDir(), "box.img")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return path, hex.EncodeToString(sum[:])
}

// deleteVolume removes a volume of the devbox pool if it exists.
func deleteVolume(d *Driver, name string) {
	if pool, err := d.l.StoragePoolLookupByName(PoolName); err == nil {
		if vol, err := d.l.StorageVolLookupByName(pool, name); err == nil {
			d.l.StorageVolDelete(vol, 0)
		}
	}
}

// TestLeftoversOfInterruptedCreate plays a create killed after it made the
// instance's volumes and before it defined the domain, against the real
// libvirtd: Delete removes the volumes, and a new Create goes through.
func TestLeftoversOfInterruptedCreate(t *testing.T) {
	d := realDriver(t)
	ctx := t.Context()
	boxPath, sha := rawBox(t)
	name := fmt.Sprintf("devbox-leftovers-test-%d", os.Getpid())
	spec := testSpec("tcg")
	spec.Name, spec.SSHPort = name, 0
	spec.BoxPath, spec.BoxSHA256, spec.BoxFormat, spec.BoxSize = boxPath, sha, "raw", 1<<20
	spec.DiskBytes = 16 << 20
	spec.Seed = []byte("seed")
	t.Cleanup(func() {
		if err := d.Delete(context.Background(), name); err != nil && !errors.Is(err, vm.ErrNotFound) {
			t.Errorf("cleanup: %v", err)
		}
		deleteVolume(d, baseVolume(sha))
	})

	pool, err := d.ensurePool(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leave := func() {
		t.Helper()
		for _, v := range []string{diskVolume(name), seedVolume(name)} {
			if _, err := d.l.StorageVolCreateXML(pool, plainVolumeXML(v, 1<<20), 0); err != nil {
				t.Fatalf("leave volume %s: %v", v, err)
			}
		}
	}

	leave()
	if err := d.Delete(ctx, name); err != nil {
		t.Fatalf("Delete of volumes without domain: %v", err)
	}
	if vols, err := d.Volumes(name); err != nil || len(vols) != 0 {
		t.Fatalf("after Delete: volumes %q, %v", vols, err)
	}
	if err := d.Delete(ctx, name); !errors.Is(err, vm.ErrNotFound) {
		t.Fatalf("Delete of nothing = %v, want ErrNotFound", err)
	}

	leave()
	var notes []string
	progress := func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) }
	if err := d.Create(ctx, spec, progress); err != nil {
		t.Fatalf("Create over leftovers: %v", err)
	}
	if !strings.Contains(strings.Join(notes, "\n"), "left by an interrupted create") {
		t.Errorf("progress %q does not tell about the leftovers", notes)
	}
	if info, err := d.Inspect(ctx, name); err != nil || info.State != vm.StateStopped {
		t.Errorf("Inspect = %+v, %v; want a stopped instance", info, err)
	}
	if err := d.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	if vols, err := d.Volumes(name); err != nil || len(vols) != 0 {
		t.Errorf("after Delete: volumes %q, %v", vols, err)
	}
}

// TestRefusesBoxWithBackingFile: a box naming a backing file never becomes
// a base volume of the real pool.
func TestRefusesBoxWithBackingFile(t *testing.T) {
	d := realDriver(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "host-secret") // stands in for /etc/shadow
	if err := os.WriteFile(secret, []byte("not for guests"), 0o600); err != nil {
		t.Fatal(err)
	}
	evil := qcow2Box(t, filepath.Join(dir, "evil.qcow2"), 1<<20, secret)
	spec := boxSpec(t, evil, "qcow2")
	spec.Name = fmt.Sprintf("devbox-refuse-test-%d", os.Getpid())
	t.Cleanup(func() { deleteVolume(d, baseVolume(spec.BoxSHA256)) })

	err := d.Create(t.Context(), spec, nil)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Create = %v, want refused", err)
	}
	pool, err := d.l.StoragePoolLookupByName(PoolName)
	if err != nil {
		return // no pool, so no base volume either
	}
	if _, err := d.l.StorageVolLookupByName(pool, baseVolume(spec.BoxSHA256)); !isCode(err, golibvirt.ErrNoStorageVol) {
		t.Errorf("base volume of the refused box: lookup = %v, want none", err)
	}
}

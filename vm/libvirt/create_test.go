package libvirt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

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

// leftovers returns a fake holding what a create killed between making
// the instance's volumes and defining its domain leaves behind.
func leftovers(spec vm.Spec) *fakeLibvirt {
	f := newFakeLibvirt()
	f.pool = true
	f.vols[diskVolume(spec.Name)] = []byte("old disk")
	f.vols[seedVolume(spec.Name)] = []byte("old seed")
	return f
}

func TestCreateRemovesLeftovers(t *testing.T) {
	box := qcow2Box(t, filepath.Join(t.TempDir(), "ok.qcow2"), 1<<20, "")
	spec := boxSpec(t, box, "qcow2")
	f := leftovers(spec)
	var n notes
	if err := f.driver().Create(t.Context(), spec, n.progress); err != nil {
		t.Fatalf("Create over leftovers: %v", err)
	}
	if _, ok := f.domains[spec.Name]; !ok {
		t.Error("domain not defined")
	}
	if got := f.vols[seedVolume(spec.Name)]; !bytes.Equal(got, spec.Seed) {
		t.Errorf("seed volume holds %q, want the new seed", got)
	}
	if !slices.ContainsFunc(n, func(s string) bool { return strings.Contains(s, "left by an interrupted create") }) {
		t.Errorf("progress %q does not tell about the leftovers", n)
	}
}

// TestCreateKeepsVolumesWhenUnsure: a failed domain lookup says nothing
// about whether the volumes are leftovers: they stay.
func TestCreateKeepsVolumesWhenUnsure(t *testing.T) {
	box := qcow2Box(t, filepath.Join(t.TempDir(), "ok.qcow2"), 1<<20, "")
	spec := boxSpec(t, box, "qcow2")
	f := leftovers(spec)
	f.lookupDomainErr = libvirtErr(golibvirt.ErrInternalError, "connection reset")
	err := f.driver().Create(t.Context(), spec, nil)
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("Create = %v, want the lookup error", err)
	}
	if len(f.calls) != 0 {
		t.Errorf("libvirt saw %q, want nothing changed", f.calls)
	}
}

func TestDelete(t *testing.T) {
	box := qcow2Box(t, filepath.Join(t.TempDir(), "ok.qcow2"), 1<<20, "")
	spec := boxSpec(t, box, "qcow2")
	base := baseVolume(spec.BoxSHA256)

	t.Run("volumes without domain", func(t *testing.T) {
		f := leftovers(spec)
		if err := f.driver().Delete(t.Context(), spec.Name); err != nil {
			t.Fatalf("Delete = %v, want nil", err)
		}
		if vols := f.volumes(); len(vols) != 0 {
			t.Errorf("volumes %q left", vols)
		}
		err := f.driver().Delete(t.Context(), spec.Name)
		if !errors.Is(err, vm.ErrNotFound) || !strings.Contains(err.Error(), spec.Name) {
			t.Errorf("second Delete = %v, want ErrNotFound naming %s", err, spec.Name)
		}
	})
	t.Run("only the disk", func(t *testing.T) {
		f := leftovers(spec)
		delete(f.vols, seedVolume(spec.Name))
		if err := f.driver().Delete(t.Context(), spec.Name); err != nil {
			t.Fatalf("Delete = %v, want nil", err)
		}
		if vols := f.volumes(); len(vols) != 0 {
			t.Errorf("volumes %q left", vols)
		}
	})
	t.Run("nothing, no pool", func(t *testing.T) {
		if err := newFakeLibvirt().driver().Delete(t.Context(), spec.Name); !errors.Is(err, vm.ErrNotFound) {
			t.Errorf("Delete = %v, want ErrNotFound", err)
		}
	})
	t.Run("instance", func(t *testing.T) {
		f := newFakeLibvirt()
		if err := f.driver().Create(t.Context(), spec, nil); err != nil {
			t.Fatal(err)
		}
		if err := f.driver().Delete(t.Context(), spec.Name); err != nil {
			t.Fatal(err)
		}
		if len(f.domains) != 0 {
			t.Error("domain still defined")
		}
		if vols := f.volumes(); !slices.Equal(vols, []string{base}) {
			t.Errorf("volumes %q, want only the shared base %s", vols, base)
		}
	})
}

// TestCreateReplacesShortBase: a base volume cut short by an interrupted
// upload is uploaded again.
func TestCreateReplacesShortBase(t *testing.T) {
	box := qcow2Box(t, filepath.Join(t.TempDir(), "ok.qcow2"), 1<<20, "")
	spec := boxSpec(t, box, "qcow2")
	f := newFakeLibvirt()
	f.pool = true
	f.vols[baseVolume(spec.BoxSHA256)] = []byte("QFI")
	var n notes
	d := f.driver()
	d.pollEvery, d.baseStall = time.Millisecond, 50*time.Millisecond
	if err := d.Create(t.Context(), spec, n.progress); err != nil {
		t.Fatal(err)
	}
	if got := len(f.vols[baseVolume(spec.BoxSHA256)]); int64(got) != spec.BoxSize {
		t.Errorf("base volume holds %d bytes, want %d", got, spec.BoxSize)
	}
	if !slices.ContainsFunc(n, func(s string) bool { return strings.Contains(s, "incomplete") }) {
		t.Errorf("progress %q does not tell about the incomplete base", n)
	}
}

// otherUploader is a fakeLibvirt where another process uploads the base
// volume: it appears short and grows a chunk each time its size is read.
type otherUploader struct {
	*fakeLibvirt
	base  string
	data  []byte
	chunk int
	// createFirst: the other process creates the volume just before this
	// one tries to (its lookup saw nothing, its create fails "exists").
	createFirst bool
}

func (o *otherUploader) StorageVolCreateXML(p golibvirt.StoragePool, x string, fl golibvirt.StorageVolCreateFlags) (golibvirt.StorageVol, error) {
	if o.createFirst && strings.Contains(x, o.base) {
		o.createFirst = false
		o.mu.Lock()
		o.vols[o.base] = []byte{}
		o.mu.Unlock()
	}
	return o.fakeLibvirt.StorageVolCreateXML(p, x, fl)
}

func (o *otherUploader) StorageVolGetInfoFlags(vol golibvirt.StorageVol, fl uint32) (int8, uint64, uint64, error) {
	o.mu.Lock()
	if cur, ok := o.vols[vol.Name]; ok && vol.Name == o.base && len(cur) < len(o.data) {
		o.vols[vol.Name] = o.data[:min(len(cur)+o.chunk, len(o.data))]
	}
	o.mu.Unlock()
	return o.fakeLibvirt.StorageVolGetInfoFlags(vol, fl)
}

// TestCreateWaitsForAnotherUpload: a base volume another process is
// uploading (from another devbox home, so no shared lock) is waited for,
// neither deleted nor uploaded twice; also when that process creates it
// between this one's lookup and create.
func TestCreateWaitsForAnotherUpload(t *testing.T) {
	box := qcow2Box(t, filepath.Join(t.TempDir(), "ok.qcow2"), 1<<20, "")
	spec := boxSpec(t, box, "qcow2")
	data, _ := os.ReadFile(box)
	base := baseVolume(spec.BoxSHA256)
	for _, createFirst := range []bool{false, true} {
		f := newFakeLibvirt()
		f.pool = true
		if !createFirst {
			f.vols[base] = data[:1]
		}
		o := &otherUploader{fakeLibvirt: f, base: base, data: data, chunk: len(data)/8 + 1, createFirst: createFirst}
		// The stall is far longer than the whole upload takes in polls,
		// and far shorter than the test's deadline.
		d := &Driver{l: o, uri: f.driver().uri, pollEvery: time.Millisecond, baseStall: 10 * time.Second}
		var n notes
		if err := d.Create(t.Context(), spec, n.progress); err != nil {
			t.Fatalf("createFirst=%v: %v", createFirst, err)
		}
		for _, c := range f.calls {
			if c == "upload "+base || c == "delete volume "+base {
				t.Errorf("createFirst=%v: %s while another process was uploading it (calls %q)", createFirst, c, f.calls)
			}
		}
		if got := f.vols[base]; len(got) != len(data) {
			t.Errorf("createFirst=%v: base volume holds %d bytes, want %d", createFirst, len(got), len(data))
		}
		if !slices.ContainsFunc(n, func(s string) bool { return strings.Contains(s, "another devbox is uploading it") }) {
			t.Errorf("createFirst=%v: progress %q does not say it waits", createFirst, n)
		}
	}
}

// TestLocalBaseIsCopiedNotStreamed: on a local libvirt the box is written
// straight into the volume's file, not streamed through libvirt.
func TestLocalBaseIsCopiedNotStreamed(t *testing.T) {
	box := qcow2Box(t, filepath.Join(t.TempDir(), "ok.qcow2"), 1<<20, "")
	spec := boxSpec(t, box, "qcow2")
	f := newFakeLibvirt()
	f.pool, f.dir = true, t.TempDir()
	d := f.driver()
	d.local = true
	var n notes
	if err := d.Create(t.Context(), spec, n.progress); err != nil {
		t.Fatal(err)
	}
	base := baseVolume(spec.BoxSHA256)
	if slices.Contains(f.calls, "upload "+base) {
		t.Errorf("the box was streamed on a local libvirt (calls %q)", f.calls)
	}
	want, _ := os.ReadFile(box)
	if got, err := os.ReadFile(filepath.Join(f.dir, base)); err != nil || !bytes.Equal(got, want) {
		t.Errorf("base volume file holds %d bytes (%v), want the box's %d", len(got), err, len(want))
	}
	if !slices.ContainsFunc(n, func(s string) bool { return strings.Contains(s, "copied box into base volume") }) {
		t.Errorf("progress %q does not say the box was copied", n)
	}

	// Remote: streamed, as before.
	f = newFakeLibvirt()
	f.pool, f.dir = true, t.TempDir()
	if err := f.driver().Create(t.Context(), spec, n.progress); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(f.calls, "upload "+base) {
		t.Errorf("a remote libvirt's base was not streamed (calls %q)", f.calls)
	}
}

func TestStreamInsteadOnlyWhenNotWritable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&fs.PathError{Op: "open", Path: "/p", Err: syscall.EACCES}, true},
		{&fs.PathError{Op: "open", Path: "/p", Err: syscall.EPERM}, true},
		{&fs.PathError{Op: "open", Path: "/p", Err: syscall.EROFS}, true},
		{&fs.PathError{Op: "open", Path: "/p", Err: syscall.ELOOP}, false}, // a symlink where the volume should be
		{&fs.PathError{Op: "open", Path: "/p", Err: syscall.ENOENT}, false},
	} {
		if got := streamInstead(tc.err); got != tc.want {
			t.Errorf("streamInstead(%v) = %v", tc.err, got)
		}
	}
}

// TestBasesCountUsersAndDeleteRefusesInUse: a base volume is in use while
// any volume backs onto it, whichever instance (or home) made it.
func TestBasesCountUsersAndDeleteRefusesInUse(t *testing.T) {
	box := qcow2Box(t, filepath.Join(t.TempDir(), "ok.qcow2"), 1<<20, "")
	f := newFakeLibvirt()
	f.pool = true
	d := f.driver()
	var names []string
	for _, n := range []string{"devbox-a-111111", "devbox-b-222222"} {
		spec := boxSpec(t, box, "qcow2")
		spec.Name = n
		if err := d.Create(t.Context(), spec, func(string, ...any) {}); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	sha := boxSpec(t, box, "qcow2").BoxSHA256
	bases, err := d.Bases(t.Context())
	if err != nil || len(bases) != 1 || bases[0].BoxSHA256Prefix != sha[:16] || bases[0].Users != 2 || bases[0].Size == 0 {
		t.Fatalf("Bases = %+v, %v; want one base of %s used twice", bases, err, sha[:16])
	}
	if err := d.DeleteBase(t.Context(), sha); !errors.Is(err, vm.ErrInUse) {
		t.Errorf("DeleteBase while used: %v", err)
	}
	for _, n := range names {
		if err := d.Delete(t.Context(), n); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.DeleteBase(t.Context(), sha); err != nil {
		t.Errorf("DeleteBase once unused: %v", err)
	}
	if vols := f.volumes(); len(vols) != 0 {
		t.Errorf("volumes left: %q", vols)
	}
	if err := d.DeleteBase(t.Context(), sha); err != nil {
		t.Errorf("DeleteBase of a missing base: %v", err)
	}
}

func TestVolModifiedFromTimestamps(t *testing.T) {
	f := newFakeLibvirt()
	f.vols["v"] = nil
	f.volXML["v"] = "<volume><name>v</name><target><timestamps><atime>1</atime><mtime>1795656945.286266148</mtime></timestamps></target></volume>"
	if got := f.driver().volModified(golibvirt.StorageVol{Name: "v"}); !got.Equal(time.Unix(1795656945, 286266148)) {
		t.Errorf("volModified = %v", got)
	}
	f.volXML["v"] = "<volume><name>v</name></volume>"
	if got := f.driver().volModified(golibvirt.StorageVol{Name: "v"}); !got.IsZero() {
		t.Errorf("volModified without timestamps = %v, want zero", got)
	}
}

// TestExportFlattensAndCleansUp: Export streams libvirt's flattened clone
// of the instance's disk and deletes the clone.
func TestExportFlattensAndCleansUp(t *testing.T) {
	box := qcow2Box(t, filepath.Join(t.TempDir(), "ok.qcow2"), 1<<20, "")
	spec := boxSpec(t, box, "qcow2")
	f := newFakeLibvirt()
	f.pool = true
	d := f.driver()
	if err := d.Create(t.Context(), spec, func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	before := f.volumes()
	var out bytes.Buffer
	n, err := d.Export(t.Context(), spec.Name, &out, func(string, ...any) {})
	if err != nil || n != int64(out.Len()) || !strings.HasPrefix(out.String(), "flattened:") {
		t.Fatalf("Export = %d, %v; wrote %q", n, err, out.String())
	}
	if after := f.volumes(); !slices.Equal(after, before) {
		t.Errorf("volumes after export %q, want %q (the clone deleted)", after, before)
	}
	// An export killed midway leaves its clone: destroy removes it too.
	if _, err := f.StorageVolCreateXML(golibvirt.StoragePool{}, plainVolumeXML(exportVolume(spec.Name), 0), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(t.Context(), spec.Name); err != nil {
		t.Fatal(err)
	}
	if vols := f.volumes(); !slices.Equal(vols, []string{baseVolume(spec.BoxSHA256)}) {
		t.Errorf("volumes after delete %q, want only the base", vols)
	}
}

package boxes

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type tarEntry struct {
	name string
	body []byte
	kind byte // tar.TypeReg when zero
}

// vagrantBox writes a .box archive of entries (gzip-compressed if gz).
func vagrantBox(t *testing.T, gz bool, entries ...tarEntry) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: e.kind}
		if e.kind == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeSymlink {
			h.Linkname, h.Size = "/etc/shadow", 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write(e.body)
		}
	}
	tw.Close()
	data := buf.Bytes()
	if gz {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(data)
		zw.Close()
		data = z.Bytes()
	}
	return write(t, t.TempDir(), "test.box", data)
}

func vagrantMetaEntry(provider string) tarEntry {
	return tarEntry{name: "metadata.json", body: []byte(`{"provider": "` + provider + `", "format": "qcow2", "virtual_size": 40}`)}
}

// TestVagrantLibvirtBox: box.img comes out of a libvirt .box (tar or
// tar.gz, metadata first or last) into the cache; the next resolve uses
// the record, not the archive.
func TestVagrantLibvirtBox(t *testing.T) {
	img := fakeQcow2()
	for _, tc := range []struct {
		name    string
		gz      bool
		entries []tarEntry
	}{
		{"tar.gz", true, []tarEntry{vagrantMetaEntry("libvirt"), {name: "Vagrantfile", body: []byte("# nothing")}, {name: "box.img", body: img}}},
		{"tar, metadata last, ./ names", false, []tarEntry{{name: "./box.img", body: img}, {name: "./metadata.json", body: vagrantMetaEntry("libvirt").body}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			box := vagrantBox(t, tc.gz, tc.entries...)
			cache := filepath.Join(t.TempDir(), "cache")
			want := Box{Path: filepath.Join(cache, sum(img)+".img"), SHA256: sum(img), Format: "qcow2", Size: int64(len(img))}
			got, err := Resolve(t.Context(), box, "", Options{CacheDir: cache})
			if err != nil || got != want {
				t.Fatalf("Resolve = %+v, %v; want %+v", got, err, want)
			}
			if data, _ := os.ReadFile(want.Path); !bytes.Equal(data, img) {
				t.Error("cached image differs from box.img")
			}
			// Same size and mtime, other bytes: only the record can
			// resolve it now.
			fi, _ := os.Stat(box)
			os.WriteFile(box, bytes.Repeat([]byte{'x'}, int(fi.Size())), 0o644)
			os.Chtimes(box, time.Now(), fi.ModTime())
			if got, err := Resolve(t.Context(), box, "", Options{CacheDir: cache}); err != nil || got != want {
				t.Errorf("second Resolve = %+v, %v; want the record's %+v", got, err, want)
			}
		})
	}
}

func TestVagrantBoxDigest(t *testing.T) {
	box := vagrantBox(t, true, vagrantMetaEntry("libvirt"), tarEntry{name: "box.img", body: fakeQcow2()})
	data, _ := os.ReadFile(box)
	if _, err := Resolve(t.Context(), box, sum(data), Options{CacheDir: t.TempDir()}); err != nil {
		t.Errorf("box_sha256 of the .box: %v", err)
	}
	_, err := Resolve(t.Context(), box, sum([]byte("other")), Options{CacheDir: t.TempDir()})
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Errorf("wrong box_sha256: %v", err)
	}
}

// TestVagrantBoxRefused: each bad .box is refused with its reason and
// leaves nothing in the cache or beside the archive.
func TestVagrantBoxRefused(t *testing.T) {
	img := fakeQcow2()
	for _, tc := range []struct {
		name    string
		entries []tarEntry
		is      error
		parts   []string
	}{
		{"virtualbox", []tarEntry{vagrantMetaEntry("virtualbox"), {name: "box.ovf", body: []byte("<ovf/>")}}, ErrNotLibvirtBox,
			[]string{`provider "virtualbox"`, "--provider libvirt"}},
		{"dot-dot", []tarEntry{vagrantMetaEntry("libvirt"), {name: "../../evil", body: []byte("x")}, {name: "box.img", body: img}}, nil,
			[]string{`"../../evil" escapes`}},
		{"absolute", []tarEntry{vagrantMetaEntry("libvirt"), {name: "/etc/cron.d/evil", body: []byte("x")}, {name: "box.img", body: img}}, nil,
			[]string{`"/etc/cron.d/evil" is not a relative path`}},
		{"symlink image", []tarEntry{vagrantMetaEntry("libvirt"), {name: "box.img", kind: tar.TypeSymlink}}, nil,
			[]string{"box.img is not a regular file"}},
		{"backing file", []tarEntry{vagrantMetaEntry("libvirt"), {name: "box.img", body: qcow2Header(3, "/etc/shadow", 0)}}, ErrRefused,
			[]string{"box.img", "backing file"}},
		{"no metadata", []tarEntry{{name: "box.img", body: img}}, ErrNotDiskImage, []string{"without metadata.json"}},
		{"no image", []tarEntry{vagrantMetaEntry("libvirt")}, nil, []string{"has no box.img"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			box := vagrantBox(t, true, tc.entries...)
			cache := filepath.Join(t.TempDir(), "cache")
			_, err := Resolve(t.Context(), box, "", Options{CacheDir: cache})
			assertContains(t, err, append([]string{box}, tc.parts...)...)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v does not wrap %v", err, tc.is)
			}
			if names := listDir(t, cache); len(names) != 0 {
				t.Errorf("cache holds %q after a refused box", names)
			}
			if names := listDir(t, filepath.Dir(box)); len(names) != 1 {
				t.Errorf("the box's folder holds %q", names)
			}
		})
	}
}

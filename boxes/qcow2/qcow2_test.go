package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// hdr describes a hand-built image; zero values give a clean v3 image.
type hdr struct {
	version     uint32 // 3 if 0
	clusterBits uint32 // 16 if 0
	hdrLen      uint32 // 104 (v3) if 0
	backing     string // written at offset 512
	incompat    uint64
	crypt       uint32
	exts        []ext
}

type ext struct {
	typ  uint32
	data []byte
	len  uint32 // overrides len(data) when set
}

// build returns the image's first 4 KiB.
func (h hdr) build() []byte {
	b := make([]byte, 4096)
	be := binary.BigEndian
	if h.version == 0 {
		h.version = 3
	}
	if h.clusterBits == 0 {
		h.clusterBits = 16
	}
	if h.hdrLen == 0 {
		h.hdrLen = v3HeaderLen
	}
	copy(b, Magic)
	be.PutUint32(b[4:], h.version)
	if h.backing != "" {
		be.PutUint64(b[8:], 512)
		be.PutUint32(b[16:], uint32(len(h.backing)))
		copy(b[512:], h.backing)
	}
	be.PutUint32(b[20:], h.clusterBits)
	be.PutUint64(b[24:], 64<<20)
	be.PutUint32(b[32:], h.crypt)
	start := v2HeaderLen
	if h.version == 3 {
		be.PutUint64(b[72:], h.incompat)
		be.PutUint32(b[96:], 4) // refcount order
		be.PutUint32(b[100:], h.hdrLen)
		start = int(h.hdrLen)
	}
	off := start
	for _, e := range h.exts {
		n := uint32(len(e.data))
		if e.len != 0 {
			n = e.len
		}
		be.PutUint32(b[off:], e.typ)
		be.PutUint32(b[off+4:], n)
		copy(b[off+8:], e.data)
		off += 8 + (len(e.data)+7)&^7
	}
	return b
}

func TestReadAndCheck(t *testing.T) {
	backingFmt := ext{typ: 0xe2792aca, data: []byte("raw")}
	tests := []struct {
		name string
		data []byte
		// want* describe a successful Read
		wantVersion int
		wantCheck   string // "" means Check passes
		// readErr set means Read must fail wrapping it
		readErr error
		errPart string
	}{
		{name: "clean v3", data: hdr{}.build(), wantVersion: 3},
		{name: "clean v2", data: hdr{version: 2}.build(), wantVersion: 2},
		{name: "v3 with known extensions and features", data: hdr{hdrLen: 112, incompat: 1 << 3, exts: []ext{backingFmt}}.build(), wantVersion: 3},
		{name: "backing file", data: hdr{backing: "/x/shadow"}.build(), wantVersion: 3, wantCheck: `names a backing file "/x/shadow"`},
		{name: "v2 backing file", data: hdr{version: 2, backing: "/x/shadow"}.build(), wantVersion: 2, wantCheck: `names a backing file "/x/shadow"`},
		{name: "data file bit and extension", data: hdr{incompat: incompatDataFile, exts: []ext{backingFmt, {typ: extDataFile, data: []byte("/x/data")}}}.build(),
			wantVersion: 3, wantCheck: `names an external data file "/x/data"`},
		{name: "data file bit alone", data: hdr{incompat: incompatDataFile}.build(), wantVersion: 3, wantCheck: "declares an external data file"},
		{name: "data file extension alone", data: hdr{exts: []ext{{typ: extDataFile, data: []byte("/x/data")}}}.build(),
			wantVersion: 3, wantCheck: `names an external data file "/x/data"`},
		{name: "unknown incompatible feature", data: hdr{incompat: 1 << 9}.build(), wantVersion: 3, wantCheck: "unknown incompatible features 0x200"},
		{name: "encrypted", data: hdr{crypt: 2}.build(), wantVersion: 3, wantCheck: "encrypted"},

		{name: "version 1", data: hdr{version: 1}.build(), readErr: ErrUnsupported, errPart: "version 1"},
		{name: "version 4", data: hdr{version: 4}.build(), readErr: ErrUnsupported, errPart: "version 4"},
		{name: "no magic", data: make([]byte, 512), readErr: ErrMalformed, errPart: "magic"},
		{name: "empty", data: nil, readErr: ErrMalformed},
		{name: "truncated v3", data: hdr{}.build()[:80], readErr: ErrMalformed, errPart: "truncated: 80 bytes"},
		{name: "truncated v2", data: hdr{version: 2}.build()[:40], readErr: ErrMalformed, errPart: "truncated: 40 bytes"},
		{name: "cluster bits", data: hdr{clusterBits: 40}.build(), readErr: ErrMalformed, errPart: "cluster bits 40"},
		{name: "short header length", data: hdr{hdrLen: 72}.build(), readErr: ErrMalformed, errPart: "header length 72"},
		{name: "extension too long", data: hdr{exts: []ext{{typ: 0x12345678, len: 1 << 20}}}.build(), readErr: ErrMalformed, errPart: "runs past"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Read(bytes.NewReader(tt.data))
			if tt.readErr != nil {
				if !errors.Is(err, tt.readErr) || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("Read err = %v, want %v containing %q", err, tt.readErr, tt.errPart)
				}
				return
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if h.Version != tt.wantVersion || h.Size != 64<<20 {
				t.Errorf("version %d size %d, want %d and 64 MiB", h.Version, h.Size, tt.wantVersion)
			}
			err = h.Check()
			if tt.wantCheck == "" {
				if err != nil {
					t.Errorf("Check = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantCheck) {
				t.Errorf("Check = %v, want error containing %q", err, tt.wantCheck)
			}
		})
	}
}

// TestBackingNameUnreadable: a name beyond the end of the file still
// refuses the image.
func TestBackingNameUnreadable(t *testing.T) {
	b := hdr{}.build()
	binary.BigEndian.PutUint64(b[8:], 1<<40)
	binary.BigEndian.PutUint32(b[16:], 10)
	h, err := Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var ext *ExternalFileError
	if err := h.Check(); !errors.As(err, &ext) || ext.Kind != "backing file" || ext.Name != "" {
		t.Errorf("Check = %v, want a backing file error without a name", err)
	}
}

// TestQemuImg checks the parser against images qemu-img itself writes.
func TestQemuImg(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed")
	}
	dir := t.TempDir()
	// A harmless file stands in for a secret of the host.
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("not for guests"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Each case: qemu-img create arguments, and what Check must say.
	dataFile := filepath.Join(dir, "data.raw") // qemu-img creates it
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"ok", nil, ""},
		{"v2", []string{"-o", "compat=0.10"}, ""},
		{"backing", []string{"-b", secret, "-F", "raw"}, `names a backing file "` + secret + `"`},
		{"data", []string{"-o", "data_file=" + dataFile + ",data_file_raw=on"}, `names an external data file "` + dataFile + `"`},
	} {
		path := filepath.Join(dir, tc.name+".qcow2")
		args := append(append([]string{"create", "-f", "qcow2"}, tc.args...), path, "64M")
		if out, err := exec.Command(qemuImg, args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		h, err := Read(f)
		f.Close()
		if err != nil {
			t.Errorf("%s: Read: %v", tc.name, err)
			continue
		}
		if h.Size != 64<<20 {
			t.Errorf("%s: size %d, want 64 MiB", tc.name, h.Size)
		}
		err = h.Check()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Check = %v, want %q", tc.name, err, tc.want)
		}
	}
}

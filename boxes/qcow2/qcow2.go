// Package qcow2 reads the header of a qcow2 image: its version, virtual
// size, and whether it depends on files outside itself (a backing file or
// an external data file).
//
// That dependency is what makes a downloaded image dangerous: libvirt runs
// as root and opens (and relabels) every file in a disk's backing chain,
// so an image naming /etc/shadow as its backing file hands that file to
// the guest. boxes refuses such images before caching or using them, and
// vm/libvirt checks again just before uploading a box into a pool.
//
// It is a leaf package that imports nothing of devbox. That is why vm may
// import it, as the one exception to "vm imports only templates": both
// sides must apply the same parser, and it drags no dependency along.
package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Magic starts every qcow image (version 1 too).
const Magic = "QFI\xfb"

// Layout facts from QEMU's docs/interop/qcow2.txt.
const (
	v2HeaderLen    = 72  // fixed header of version 2
	v3HeaderLen    = 104 // smallest header_length of version 3
	minClusterBits = 9   // QEMU refuses anything outside 512 B..2 MiB
	maxClusterBits = 21
	maxNameLen     = 1023 // QEMU refuses longer backing file names

	incompatDataFile = 1 << 2
	// knownIncompat: dirty, corrupt, external data file, compression
	// type, extended L2 entries.
	knownIncompat = 1<<5 - 1

	extEnd      = 0x00000000
	extDataFile = 0x44415441 // "DATA": external data file name
)

var (
	// ErrMalformed is wrapped by errors about a header that is truncated
	// or does not follow the format.
	ErrMalformed = errors.New("malformed qcow2 header")
	// ErrUnsupported is wrapped by errors about a well-formed image devbox
	// cannot judge or use: another version, unknown incompatible features,
	// encryption.
	ErrUnsupported = errors.New("unsupported qcow2 image")
	// ErrRefused is wrapped by CheckImage's errors about an image that
	// cannot serve as a box: one that is not self-contained, or whose
	// header cannot be judged.
	ErrRefused = errors.New("refused")
)

// ExternalFileError reports an image whose header names a file outside
// the image.
type ExternalFileError struct {
	Kind string // "backing file" or "external data file"
	Name string // as written in the header; "" when it could not be read
}

func (e *ExternalFileError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("its qcow2 header declares an %s", e.Kind)
	}
	return fmt.Sprintf("its qcow2 header names %s %q", article(e.Kind), e.Name)
}

func article(kind string) string {
	switch kind[0] {
	case 'a', 'e', 'i', 'o', 'u':
		return "an " + kind
	}
	return "a " + kind
}

// Header is what devbox reads from a qcow2 header.
type Header struct {
	Version     int
	ClusterBits uint32
	Size        uint64 // virtual disk size in bytes
	CryptMethod uint32
	// IncompatibleFeatures is 0 for version 2.
	IncompatibleFeatures uint64

	BackingFileOffset uint64
	BackingFileSize   uint32
	BackingFile       string // "" when none, or when it could not be read

	HasDataFileExt bool   // a "DATA" header extension is present
	DataFile       string // its contents
}

// Read parses the header of the image r. It fails with an error wrapping
// ErrMalformed or ErrUnsupported when the bytes are not a qcow2 header of
// version 2 or 3, and passes on read errors. It judges nothing else: see
// Check.
func Read(r io.ReaderAt) (*Header, error) {
	b := make([]byte, v3HeaderLen)
	n, err := r.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read qcow2 header: %w", err)
	}
	b = b[:n]
	if n < 8 || string(b[:4]) != Magic {
		return nil, fmt.Errorf("%w: no qcow2 magic", ErrMalformed)
	}
	h := &Header{Version: int(be32(b[4:]))}
	var hdrLen uint64
	switch h.Version {
	case 2:
		hdrLen = v2HeaderLen
	case 3:
		hdrLen = v3HeaderLen
	default:
		// Version 1 has a different layout, backing file included: an
		// unknown version cannot be judged, so it is not used.
		return nil, fmt.Errorf("%w: version %d (only 2 and 3 are known)", ErrUnsupported, be32(b[4:]))
	}
	if uint64(n) < hdrLen {
		return nil, fmt.Errorf("%w: truncated: %d bytes, a version %d header has %d", ErrMalformed, n, h.Version, hdrLen)
	}
	h.BackingFileOffset = be64(b[8:])
	h.BackingFileSize = be32(b[16:])
	h.ClusterBits = be32(b[20:])
	h.Size = be64(b[24:])
	h.CryptMethod = be32(b[32:])
	if h.ClusterBits < minClusterBits || h.ClusterBits > maxClusterBits {
		return nil, fmt.Errorf("%w: cluster bits %d outside %d..%d", ErrMalformed, h.ClusterBits, minClusterBits, maxClusterBits)
	}
	clusterSize := uint64(1) << h.ClusterBits
	if h.Version == 3 {
		h.IncompatibleFeatures = be64(b[72:])
		hdrLen = uint64(be32(b[100:]))
		if hdrLen < v3HeaderLen || hdrLen > clusterSize {
			return nil, fmt.Errorf("%w: header length %d outside %d..%d", ErrMalformed, hdrLen, v3HeaderLen, clusterSize)
		}
	}

	if h.BackingFileSize > 0 {
		// The name is only for the error message: a short or failed read
		// leaves it empty, and the image is refused all the same.
		name := make([]byte, min(h.BackingFileSize, maxNameLen))
		if n, _ := r.ReadAt(name, int64(min(h.BackingFileOffset, 1<<62))); n == len(name) {
			h.BackingFile = string(name)
		}
	}

	// Extensions follow the header, up to the end of the first cluster or
	// the backing file name, whichever comes first (as QEMU reads them).
	end := clusterSize
	if h.BackingFileOffset != 0 && h.BackingFileOffset < end {
		end = h.BackingFileOffset
	}
	if end > hdrLen {
		if err := h.readExtensions(r, hdrLen, end); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// readExtensions scans the header extensions in [start, end). Bytes past
// the end of the file read as zeros, which is the end marker.
func (h *Header) readExtensions(r io.ReaderAt, start, end uint64) error {
	area := make([]byte, end-start)
	if _, err := r.ReadAt(area, int64(start)); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read qcow2 header extensions: %w", err)
	}
	for off := uint64(0); off+8 <= uint64(len(area)); {
		typ, length := be32(area[off:]), uint64(be32(area[off+4:]))
		off += 8
		if typ == extEnd {
			return nil
		}
		if length > uint64(len(area))-off {
			return fmt.Errorf("%w: header extension 0x%08x of %d bytes at offset %d runs past the header area (%d bytes)",
				ErrMalformed, typ, length, start+off-8, end)
		}
		if typ == extDataFile {
			h.HasDataFileExt = true
			h.DataFile = string(area[off : off+min(length, maxNameLen)])
		}
		off += (length + 7) &^ 7
	}
	return nil
}

// Check reports why the image cannot serve as a self-contained box: an
// *ExternalFileError when it names a backing file or an external data
// file, an error wrapping ErrUnsupported when it uses features devbox
// cannot judge or use. It returns nil for a standalone image.
func (h *Header) Check() error {
	if h.BackingFileSize > 0 {
		return &ExternalFileError{Kind: "backing file", Name: h.BackingFile}
	}
	// The feature bit alone makes QEMU look for a data file (libvirt may
	// supply one); the extension alone is ignored by QEMU, but an image
	// carrying either is not what a box should be.
	if h.IncompatibleFeatures&incompatDataFile != 0 || h.HasDataFileExt {
		return &ExternalFileError{Kind: "external data file", Name: h.DataFile}
	}
	if unknown := h.IncompatibleFeatures &^ knownIncompat; unknown != 0 {
		return fmt.Errorf("%w: unknown incompatible features 0x%x (hint: it was written by a newer QEMU; qemu-img convert -O qcow2 -o compat=1.1 rewrites it)", ErrUnsupported, unknown)
	}
	if h.CryptMethod != 0 {
		return fmt.Errorf("%w: encrypted (method %d); a box must boot without a key", ErrUnsupported, h.CryptMethod)
	}
	return nil
}

// CheckImage reads the header of the image r (see Read) and checks it
// (see Check), returning the header of a standalone image. An image it
// refuses yields an error wrapping ErrRefused, reading "refused: " and
// the reason followed by a hint on how to make it usable; the reason
// (an *ExternalFileError, or an error wrapping ErrMalformed or
// ErrUnsupported) is wrapped too. Read errors are passed on as is.
// Callers only add which box it is.
func CheckImage(r io.ReaderAt) (*Header, error) {
	h, err := Read(r)
	if err == nil {
		err = h.Check()
	}
	var ext *ExternalFileError
	switch {
	case err == nil:
		return h, nil
	case errors.As(err, &ext):
		return nil, fmt.Errorf("%w: %w; a box must be self-contained (hint: qemu-img convert -O qcow2 it into a standalone image)", ErrRefused, err)
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrUnsupported):
		return nil, fmt.Errorf("%w: %w (hint: see what qemu-img info says about it; qemu-img convert -O qcow2 rewrites a usable image as a standalone one)", ErrRefused, err)
	}
	return nil, err
}

func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
func be64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

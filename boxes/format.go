package boxes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/devbox-vm/devbox/boxes/qcow2"
)

// headerSize is how much of a file format detection looks at; it is also
// the smallest size accepted as a disk image (one sector).
const headerSize = 512

var qcow2Magic = []byte(qcow2.Magic)

// notImage lists signatures of files commonly mistaken for disk images.
var notImage = []struct {
	magic string
	what  string
	text  bool // may follow a BOM or leading whitespace
}{
	{"<", "an HTML/XML page", true},
	{"{", "a JSON document", true},
	{"#!", "a script", false},
	{"\x1f\x8b", "a gzip archive (a Vagrant box is imported from a local .box file; otherwise decompress it first)", false},
	{"\xfd7zXZ\x00", "an xz archive; decompress it first", false},
	{"\x28\xb5\x2f\xfd", "a zstd archive; decompress it first", false},
	{"BZh", "a bzip2 archive; decompress it first", false},
	{"PK\x03\x04", "a zip archive; extract it first", false},
	{"KDMV", "a VMDK image; convert it with qemu-img first", false},
	{"vhdxfile", "a VHDX image; convert it with qemu-img first", false},
}

// DetectFormat reports the format of the image at path: "qcow2" or "raw".
// Files smaller than 512 bytes or that are clearly something else (HTML,
// JSON, scripts, archives) yield an error wrapping ErrNotDiskImage.
func DetectFormat(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hdr := make([]byte, headerSize)
	n, err := io.ReadFull(f, hdr)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("%q: read header: %w", path, err)
	}
	format, err := detectHeader(hdr[:n])
	if err != nil {
		return "", fmt.Errorf("%q: %w", path, err)
	}
	return format, nil
}

// detectHeader classifies the first headerSize bytes of a file (fewer if
// the file is shorter).
func detectHeader(hdr []byte) (string, error) {
	if len(hdr) < headerSize {
		return "", fmt.Errorf("%w: only %d bytes (a disk image is at least %d)", ErrNotDiskImage, len(hdr), headerSize)
	}
	if bytes.HasPrefix(hdr, qcow2Magic) {
		return "qcow2", nil
	}
	if isTar(hdr) {
		return "", fmt.Errorf("%w: looks like a tar archive (a Vagrant box is imported from a local .box file)", ErrNotDiskImage)
	}
	// Text pages often start with a BOM or blank lines before the "<".
	text := bytes.TrimLeft(bytes.TrimPrefix(hdr, []byte("\xef\xbb\xbf")), " \t\r\n")
	for _, s := range notImage {
		b := hdr
		if s.text {
			b = text
		}
		if bytes.HasPrefix(b, []byte(s.magic)) {
			return "", fmt.Errorf("%w: looks like %s (starts with %q)", ErrNotDiskImage, s.what, preview(b))
		}
	}
	return "raw", nil
}

// preview returns the first few bytes of b for an error message.
func preview(b []byte) []byte {
	if len(b) > 16 {
		return b[:16]
	}
	return b
}

// checkSelfContained refuses a qcow2 image whose header names a backing
// file or an external data file, or that cannot be parsed. libvirt runs
// as root and opens every file in a disk's backing chain: a box naming
// /etc/shadow as its backing file would hand that file to the guest.
// what names the box in errors.
func checkSelfContained(path, what string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("box %q: %w", what, err)
	}
	defer f.Close()
	_, err = qcow2.CheckImage(f)
	if err != nil {
		return fmt.Errorf("box %q: %w", what, err)
	}
	return nil
}

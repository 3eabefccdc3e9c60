// Package seed builds the cloud-init NoCloud seed: an ISO 9660 image with
// the volume label "cidata" holding user-data and meta-data.
package seed

import (
	"bytes"
	"fmt"
	"os"

	"github.com/kdomanski/iso9660"

	"github.com/devbox-vm/devbox/templates"
)

// Data is what the seed's templates are rendered from.
type Data struct {
	Instance       string
	InstanceID     string // changes only when the instance is re-created
	Hostname       string
	User           string
	UID            int // 0: let the guest choose
	AuthorizedKey  string
	HostKeyPrivate string
	HostKeyPublic  string
}

// Files renders the seed's files, keyed by their names on the image.
func Files(d Data) (map[string][]byte, error) {
	files := map[string][]byte{}
	for name, tmpl := range map[string]string{"user-data": "user-data.tmpl", "meta-data": "meta-data.tmpl"} {
		b, err := templates.Render(tmpl, d)
		if err != nil {
			return nil, err
		}
		files[name] = b
	}
	return files, nil
}

// ISO renders the seed and writes it as an ISO 9660 image labelled cidata.
func ISO(d Data) ([]byte, error) {
	files, err := Files(d)
	if err != nil {
		return nil, err
	}
	w, err := iso9660.NewWriter()
	if err != nil {
		return nil, fmt.Errorf("seed image: %w", err)
	}
	defer w.Cleanup()
	for _, name := range []string{"meta-data", "user-data"} {
		if err := w.AddFile(bytes.NewReader(files[name]), name); err != nil {
			return nil, fmt.Errorf("seed image: add %s: %w", name, err)
		}
	}
	var out bytes.Buffer
	if err := w.WriteTo(&out, "cidata"); err != nil {
		return nil, fmt.Errorf("seed image: %w", err)
	}
	return out.Bytes(), nil
}

// WriteFile is ISO written to path (for inspection and tests).
func WriteFile(path string, d Data) error {
	b, err := ISO(d)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

package boxes

import (
	"fmt"
	"strings"
	"testing"
)

// TestCheckSource: which sources need, allow or refuse a digest.
func TestCheckSource(t *testing.T) {
	digest := strings.Repeat("ab", 32)
	for _, c := range []struct {
		source, digest string
		isName         bool
		want           string // "" or "field: part of the message"
	}{
		{"debian-12", "", true, ""},
		{"debian-12", digest, true, "box_sha256: is for a file or URL box"},
		{"./disk.qcow2", "", false, ""},
		{"./disk.qcow2", "sha256:" + strings.ToUpper(digest), false, ""},
		{"./disk.qcow2", "1234", false, "box_sha256: \"1234\" is not a sha256 digest"},
		{"https://example.org/d.qcow2", "", false, "box_sha256: is required when box is a URL"},
		{"https://example.org/d.qcow2", digest, false, ""},
		{"file:///boxes/d.qcow2", "", false, ""},
		{"file://server/d.qcow2", "", false, "box: \"file://server/d.qcow2\": a file URL with the remote host"},
		{"ftp://example.org/d.qcow2", digest, false, "box: \"ftp://example.org/d.qcow2\": unsupported scheme"},
		{"", "", false, "box: is required"},
	} {
		ps := CheckSource(c.source, c.digest, c.isName)
		got := ""
		if len(ps) > 0 {
			got = fmt.Sprintf("%s: %s", ps[0].Field, ps[0].Msg)
		}
		if (c.want == "") != (got == "") || !strings.HasPrefix(got, c.want) {
			t.Errorf("CheckSource(%q, %q, %v) = %q, want %q…", c.source, c.digest, c.isName, got, c.want)
		}
	}
}

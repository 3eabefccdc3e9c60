package boxes

import (
	"fmt"
	"net/url"
	"strings"
)

// Problem is something wrong with a box source or its digest, and the
// devbox.yaml field it concerns.
type Problem struct{ Field, Msg string }

// CheckSource is the one check of a box source and its digest (box and
// box_sha256), made by the config's validation and again by Resolve: which
// sources need a digest (URLs), allow one (local files), or refuse one
// (catalog names: the catalog pins their digests), and whether the digest
// reads as sha256. isName says the source names a catalog box (a local
// file of that name wins; the config knows).
func CheckSource(source, digest string, isName bool) []Problem {
	var ps []Problem
	bad := func(field, format string, a ...any) { ps = append(ps, Problem{field, fmt.Sprintf(format, a...)}) }
	if _, err := parseDigest(digest); err != nil {
		bad("box_sha256", "%q is not a sha256 digest (64 hex digits)", digest)
	}
	switch {
	case strings.TrimSpace(source) == "":
		bad("box", "is required (hint: a box name such as debian-12, see devbox box list; a local path; or a file:// or https:// URL of a qcow2 cloud image)")
	case isName:
		if digest != "" {
			bad("box_sha256", "is for a file or URL box; the catalog pins %s's digest (hint: remove box_sha256)", source)
		}
	case !strings.Contains(source, "://"):
		// A local path: a digest is optional.
	default:
		u, err := url.Parse(source)
		if err != nil {
			bad("box", "%q is not a URL: %v", source, err)
			break
		}
		switch strings.ToLower(u.Scheme) {
		case "file":
			if u.Host != "" && u.Host != "localhost" {
				bad("box", "%q: a file URL with the remote host %q (hint: use file:///absolute/path)", source, u.Host)
			} else if u.Path == "" {
				bad("box", "%q: a file URL without a path (hint: use file:///absolute/path)", source)
			}
		case "http", "https":
			if digest == "" {
				bad("box_sha256", "is required when box is a URL (hint: sha256sum the image and paste the digest)")
			}
		default:
			bad("box", "%q: unsupported scheme %q (use a box name, a local path, file:// or https://)", source, u.Scheme)
		}
	}
	return ps
}

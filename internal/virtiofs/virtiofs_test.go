package virtiofs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFindBinaryOverride: DEVBOX_VIRTIOFSD wins when it names an
// executable, and is refused, by name, when it does not.
func TestFindBinaryOverride(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "my-virtiofsd")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DEVBOX_VIRTIOFSD", exe)
	if got, err := FindBinary(); err != nil || got != exe {
		t.Errorf("override %s: %q, %v", exe, got, err)
	}
	for _, bad := range []string{plain, filepath.Join(dir, "missing"), dir} {
		t.Setenv("DEVBOX_VIRTIOFSD", bad)
		if got, err := FindBinary(); err == nil || !strings.Contains(err.Error(), "DEVBOX_VIRTIOFSD="+bad) {
			t.Errorf("override %s: %q, %v; want an error naming it", bad, got, err)
		}
	}
}

// TestRefusesWrites tells the Rust virtiofsd (which has --readonly) from
// QEMU's C one by what each prints for --version; the C one on this host,
// when there is one, is asked for real.
func TestRefusesWrites(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, version string
		want          bool
	}{
		{"rust", "virtiofsd 1.13.2", true},
		{"c", "virtiofsd version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers", false},
		{"other", "something else 1.0", false},
	} {
		bin := filepath.Join(dir, tc.name)
		if err := os.WriteFile(bin, []byte("#!/bin/sh\n[ \"$1\" = --version ] || exit 2\necho '"+tc.version+"'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if got := RefusesWrites(bin); got != tc.want {
			t.Errorf("%s (%q): %v, want %v", tc.name, tc.version, got, tc.want)
		}
	}
	if RefusesWrites(filepath.Join(dir, "missing")) {
		t.Error("a missing virtiofsd refuses writes")
	}
	if c := "/usr/lib/qemu/virtiofsd"; executable(c) && RefusesWrites(c) {
		t.Errorf("%s, QEMU's C virtiofsd, taken for one with --readonly", c)
	}
}

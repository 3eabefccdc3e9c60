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

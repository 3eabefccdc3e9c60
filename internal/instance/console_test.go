package instance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/internal/filenames"
)

func TestBootDiagnosis(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ log, arch, want string }{
		{"SeaBIOS (version 1.16.2)\nBooting from Hard Disk...\nBoot failed: not a bootable disk\nNo bootable device.\n", "x86_64", "no Linux kernel starting: the box may be for another arch than x86_64, or have no boot loader this VM's firmware (BIOS)"},
		{"BdsDxe: No bootable option or device was found.\n", "aarch64", "(UEFI)"},
		{"[    0.000000] Linux version 6.1.0-50-cloud-amd64\n[  OK  ] Started ssh.service\n", "x86_64", "never mentions cloud-init"},
		{"[    0.000000] Linux version 6.1.0\n[   12.1] cloud-init[301]: Cloud-init v. 22.4.2 running 'init'\n", "x86_64", ""},
	} {
		p := filepath.Join(dir, filenames.ConsoleLog)
		os.WriteFile(p, []byte(tc.log), 0o600)
		got := bootDiagnosis(p, tc.arch)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("log %q: %q, want %q", tc.log, got, tc.want)
		}
	}
	if got := bootDiagnosis(filepath.Join(dir, "missing"), "x86_64"); got != "" {
		t.Errorf("a missing log: %q", got)
	}
}

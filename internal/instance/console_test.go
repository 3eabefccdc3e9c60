package instance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/filenames"
)

func TestBootDiagnosis(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ log, arch, want string }{
		{"SeaBIOS (version 1.16.2)\nBooting from Hard Disk...\nBoot failed: not a bootable disk\nNo bootable device.\n", "x86_64", "no Linux kernel starting: the box may be for another arch than x86_64, or have no boot loader this VM's firmware (BIOS)"},
		{"BdsDxe: No bootable option or device was found.\n", "aarch64", "(UEFI)"},
		{"[    0.000000] Linux version 6.1.0-50-cloud-amd64\n[  OK  ] Started ssh.service\n\nDebian GNU/Linux 12 box ttyS0\n\nbox login: ", "x86_64", "never mentions cloud-init"},
		{"[    0.000000] Linux version 6.1.0\n[   12.1] cloud-init[301]: Cloud-init v. 22.4.2 running 'init'\nvf login: \n", "x86_64", ""},
		{"[    0.000000] Linux version 6.1.0\n[    1.2] \x1b[0;32mLoading, please wait...\x1b[0m\n\n", "x86_64", `boot did not finish; the console's last line: "[    1.2] Loading, please wait..."`},
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

// TestBootWatch: a console that keeps printing, or shows a finished boot,
// or no kernel, is left alone; one where Linux started and then went
// silent is reset once, and the line it hung at reported.
func TestBootWatch(t *testing.T) {
	const started = "[    0.000000] Linux version 6.1.0\n[    2.5] Run /init as init process\n"
	for _, tc := range []struct {
		name, log string
		growing   bool
		wantReset bool
	}{
		{"silent after the kernel started", started, false, true},
		{"still printing", started, true, false},
		{"boot finished", started + "\nvf login: ", false, false},
		{"no kernel yet", "SeaBIOS (version 1.16.2)\n", false, false},
		{"hung again after a reset", started + "vf login: \n" + started, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), filenames.ConsoleLog)
			if err := os.WriteFile(p, []byte(tc.log), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
			defer cancel()
			if tc.growing {
				go func() {
					for i := 0; ctx.Err() == nil; i++ {
						f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
						fmt.Fprintf(f, "[   %d.0] more\n", i)
						f.Close()
						time.Sleep(10 * time.Millisecond)
					}
				}()
			}
			var mu sync.Mutex
			var resets int
			var warned []string
			hungAt := bootWatch{
				console: p,
				stall:   100 * time.Millisecond,
				poll:    5 * time.Millisecond,
				reset: func(context.Context) error {
					mu.Lock()
					defer mu.Unlock()
					resets++
					return nil
				},
				warn: func(format string, args ...any) { warned = append(warned, fmt.Sprintf(format, args...)) },
			}.run(ctx)
			mu.Lock()
			defer mu.Unlock()
			if !tc.wantReset {
				if resets != 0 || hungAt != "" || len(warned) != 0 {
					t.Errorf("reset %d times, hung at %q, warned %q; want no reset", resets, hungAt, warned)
				}
				return
			}
			if resets != 1 || hungAt != "[    2.5] Run /init as init process" {
				t.Errorf("reset %d times, hung at %q; want one reset at the last line", resets, hungAt)
			}
			if len(warned) != 1 || !strings.Contains(warned[0], "resetting the VM once") || !strings.Contains(warned[0], "Run /init") {
				t.Errorf("warned %q", warned)
			}
		})
	}
}

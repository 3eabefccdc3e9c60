package instance

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"
)

// consoleTail is how much of the end of a console log is read.
const consoleTail = 4 << 20

// bootStall is how long the console of a booting guest may stay silent
// before devbox takes the boot for hung. A boot under emulation prints
// every few seconds (the longest gap measured here is 10 s, and systemd
// repeats "A start job is running" while it waits for something), so a
// minute and a half of silence is not a slow boot.
const bootStall = 90 * time.Second

// readConsole reads the end of a console log.
func readConsole(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > consoleTail {
		f.Seek(-consoleTail, io.SeekEnd)
	}
	return io.ReadAll(f)
}

// bootDiagnosis reads the guest's serial console log for why SSH never
// answered, as a hint ("" when the log says nothing useful or cannot be
// read): a kernel that never started (a box for another arch, or not
// bootable by this firmware), or Linux without cloud-init (no user, no
// key: not a cloud image).
func bootDiagnosis(consoleLog, arch string) string {
	log, err := readConsole(consoleLog)
	if err != nil {
		return ""
	}
	switch {
	case !bytes.Contains(log, []byte("Linux version")):
		return fmt.Sprintf("the console log shows no Linux kernel starting: the box may be for another arch than %s, or have no boot loader this VM's firmware (%s) can start", arch, firmwareOf(arch))
	case !bootFinished(lastBoot(log)):
		return fmt.Sprintf("Linux started but its boot did not finish; the console's last line: %q", lastLine(log))
	case !bytes.Contains(bytes.ToLower(log), []byte("cloud-init")):
		return "Linux started but the console log never mentions cloud-init: devbox needs a cloud image with cloud-init (NoCloud datasource) to create its user and install its key"
	}
	return ""
}

// lastBoot is the part of a console log from the last kernel start on (a
// reset boots again into the same log).
func lastBoot(log []byte) []byte {
	if i := bytes.LastIndex(log, []byte("Linux version")); i >= 0 {
		return log[i:]
	}
	return nil
}

// bootFinished says whether a boot's console shows a login prompt.
func bootFinished(boot []byte) bool {
	return bytes.Contains(boot, []byte(" login: "))
}

var terminalCodes = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// lastLine is the console's last line with text, without terminal codes.
func lastLine(log []byte) string {
	lines := bytes.Split(terminalCodes.ReplaceAll(log, nil), []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		if l := bytes.TrimSpace(lines[i]); len(l) > 0 {
			return string(l)
		}
	}
	return ""
}

// bootWatch resets a guest whose boot hung: Linux started, no login
// prompt yet, and the console silent for stall. Under emulation an early
// boot now and then stops for good (seen once in many boots here, before
// systemd had started anything); a reset boots it again.
type bootWatch struct {
	console     string
	stall, poll time.Duration
	reset       func(ctx context.Context) error
	warn        func(format string, args ...any)
}

// run watches until ctx ends or it has reset the guest once, and returns
// the console line the boot hung at ("" when it did not hang).
func (w bootWatch) run(ctx context.Context) string {
	t := time.NewTicker(w.poll)
	defer t.Stop()
	size, changed := int64(-1), time.Now()
	for {
		select {
		case <-ctx.Done():
			return ""
		case <-t.C:
		}
		fi, err := os.Stat(w.console)
		if err != nil {
			continue
		}
		if fi.Size() != size {
			size, changed = fi.Size(), time.Now()
			continue
		}
		quiet := time.Since(changed)
		if quiet < w.stall {
			continue
		}
		log, err := readConsole(w.console)
		boot := lastBoot(log)
		if err != nil || boot == nil || bootFinished(boot) {
			continue
		}
		at := lastLine(boot)
		w.warn("the guest's boot hung: its console has been silent for %s since %q; resetting the VM once", quiet.Round(time.Second), at)
		if err := w.reset(ctx); err != nil {
			w.warn("reset: %v", err)
		}
		return at
	}
}

func firmwareOf(arch string) string {
	if arch == "aarch64" {
		return "UEFI"
	}
	return "BIOS"
}

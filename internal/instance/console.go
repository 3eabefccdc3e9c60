package instance

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// consoleTail is how much of the end of a console log bootDiagnosis reads.
const consoleTail = 4 << 20

// bootDiagnosis reads the guest's serial console log for why SSH never
// answered, as a hint ("" when the log says nothing useful or cannot be
// read): a kernel that never started (a box for another arch, or not
// bootable by this firmware), or Linux without cloud-init (no user, no
// key: not a cloud image).
func bootDiagnosis(consoleLog, arch string) string {
	f, err := os.Open(consoleLog)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > consoleTail {
		f.Seek(-consoleTail, io.SeekEnd)
	}
	log, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	switch {
	case !bytes.Contains(log, []byte("Linux version")):
		return fmt.Sprintf("the console log shows no Linux kernel starting: the box may be for another arch than %s, or have no boot loader this VM's firmware (%s) can start", arch, firmwareOf(arch))
	case !bytes.Contains(bytes.ToLower(log), []byte("cloud-init")):
		return "Linux started but the console log never mentions cloud-init: devbox needs a cloud image with cloud-init (NoCloud datasource) to create its user and install its key"
	}
	return ""
}

func firmwareOf(arch string) string {
	if arch == "aarch64" {
		return "UEFI"
	}
	return "BIOS"
}

//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// shareFigures are one folder's timings in the VM.
type shareFigures struct {
	write, read time.Duration // one 200 MiB file, written (fsync) and read back with cold caches
	small       time.Duration // 2,000 small files created, then read (median of 3)
}

// measureDir times the share workloads in the guest folder dir.
func measureDir(t testing.TB, e *env, dir string) shareFigures {
	var f shareFigures
	dropCaches := "sync; echo 3 | sudo tee /proc/sys/vm/drop_caches >/dev/null"
	e.ok(time.Minute, "ssh", "--", "sh", "-c", "mkdir -p "+dir)
	f.write = guestTimed(t, e, 1, "dd if=/dev/zero of="+dir+"/big bs=1M count=200 conv=fsync status=none")
	e.ok(time.Minute, "ssh", "--", "sh", "-c", dropCaches)
	f.read = guestTimed(t, e, 1, "cat "+dir+"/big >/dev/null")
	small := "rm -rf %s/small && mkdir %s/small && cd %s/small && i=0; while [ $i -lt 2000 ]; do echo $i > f$i; i=$((i+1)); done; cat f* >/dev/null"
	f.small = guestTimed(t, e, 3, strings.ReplaceAll(small, "%s", dir))
	e.ok(time.Minute, "ssh", "--", "sh", "-c", "rm -rf "+dir)
	return f
}

// TestBenchShares measures each way a shared folder reaches the guest
// (reverse SSHFS, virtio-fs with and without file events) against the
// VM's own disk, in one VM made
// from the baked box, one after the other: the targets are small
// files at most 3x the disk's time, 200 MiB written and read at least
// half the disk's rate.
func TestBenchShares(t *testing.T) {
	benchmark(t)
	box := os.Getenv("DEVBOX_E2E_BOX_BAKED")
	if box == "" {
		t.Skip("DEVBOX_E2E_BOX_BAKED is not set (make bench sets it)")
	}
	e := &env{t: t, bin: builtBin, home: t.TempDir(), project: t.TempDir()}
	cfg := fmt.Sprintf("name: sharebench\nbox: %s\noffline: true\ncpus: 2\nmemory: 2GiB\ndisk: 8GiB\nuser: {name: dev}\n", box)
	e.writeConfig(cfg)
	e.cleanup("sharebench")
	contains(t, "up", e.ok(15*time.Minute, "up").stderr, "shared folder "+e.project+": reverse SSHFS")
	disk := measureDir(t, e, "$HOME/bench")
	sshfs := measureDir(t, e, e.project+"/bench")
	e.writeConfig(cfg + "mount_type: virtiofs\n")
	contains(t, "up", e.ok(5*time.Minute, "up").stderr, "shared folder "+e.project+": virtio-fs")
	virtiofs := measureDir(t, e, e.project+"/bench")
	// What file events cost there: the guest's helper watches the folder.
	e.writeConfig(cfg + "mount_type: virtiofs\nfile_events:\n  enabled: false\n")
	e.ok(5*time.Minute, "up")
	quiet := measureDir(t, e, e.project+"/bench")
	e.ok(3*time.Minute, "destroy", "-f")

	mibps := func(d time.Duration) float64 { return 200 / d.Seconds() }
	lines := fmt.Sprintf("\n%-18s %14s %14s %26s", "", "write 200 MiB", "read 200 MiB", "2,000 small files")
	for _, m := range []struct {
		name string
		f    shareFigures
	}{{"vm-disk", disk}, {"sshfs", sshfs}, {"virtiofs", virtiofs}, {"virtiofs-no-events", quiet}} {
		lines += fmt.Sprintf("\n%-18s %8.1f MiB/s %8.1f MiB/s %10s (%.1fx the disk)", m.name,
			mibps(m.f.write), mibps(m.f.read), m.f.small.Round(time.Millisecond), m.f.small.Seconds()/disk.small.Seconds())
		if m.name == "vm-disk" {
			continue
		}
		figure(t, m.name+"-small-files-x-vm-disk", m.f.small.Seconds()/disk.small.Seconds())
		figure(t, m.name+"-write-fraction-of-vm-disk", disk.write.Seconds()/m.f.write.Seconds())
		figure(t, m.name+"-read-fraction-of-vm-disk", disk.read.Seconds()/m.f.read.Seconds())
	}
	t.Log(lines)
}

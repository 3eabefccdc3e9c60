package boxes

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDownloadOntoAFullDisk: a cache on a 1 MiB tmpfs and a 4 MiB box:
// the error says the disk is full and how to fix it, and nothing of the
// box stays (no partial to fill the disk for good). Needs root (mount).
func TestDownloadOntoAFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "devbox-test", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	body := append(fakeQcow2(), make([]byte, 4<<20)...)
	srv := newServer(t, serveBytes(body))
	cache := filepath.Join(dir, "cache")
	_, err := Resolve(t.Context(), srv.URL+"/box.img", fmt.Sprintf("%x", sha256.Sum256(body)), Options{CacheDir: cache, Client: srv.Client()})
	if err == nil || !strings.Contains(err.Error(), "is full") || !strings.Contains(err.Error(), "DEVBOX_HOME") {
		t.Fatalf("download onto a full disk: %v", err)
	}
	var left []string
	filepath.Walk(cache, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("left in the cache: %v", left)
	}
}

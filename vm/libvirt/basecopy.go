package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/devbox-vm/devbox/vm"
)

// copyIntoVolume fills a base volume that libvirt just created, on a
// local libvirt, by writing the box straight into the volume's file: a
// kernel-side copy (copy_file_range, a reflink where the filesystem has
// them) instead of libvirt's stream, which pushes every byte through the
// RPC socket and libvirt's I/O helper. It returns false, having written
// nothing, when this user may not write the volume's file (qemu:///system
// as an ordinary user): the caller streams instead.
func (d *Driver) copyIntoVolume(ctx context.Context, vol golibvirt.StorageVol, box *os.File, size int64, progress vm.Progress) (bool, error) {
	path, err := d.l.StorageVolGetPath(vol)
	if err != nil {
		return false, fmt.Errorf("path of base volume %s: %w", vol.Name, err)
	}
	// No O_CREAT: the file must be the one libvirt made; no symlink.
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, 0)
	if streamInstead(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open base volume %s: %w", path, err)
	}
	defer out.Close()
	if fi, err := out.Stat(); err != nil || !fi.Mode().IsRegular() {
		return false, fmt.Errorf("base volume %s is not a regular file (%v)", path, err)
	}
	if _, err := box.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	start := time.Now()
	// A first slice, then the rest: a kill in between leaves a base cut
	// short, as an interrupted stream does (the kill tests stop here).
	first := min(size, 1<<20)
	n, err := io.CopyN(out, box, first)
	if err == nil {
		vm.Checkpoint("upload")
		if err = ctx.Err(); err == nil {
			var m int64
			m, err = io.CopyN(out, box, size-first)
			n += m
		}
	}
	if err == nil {
		err = out.Sync()
	}
	if err != nil {
		return false, fmt.Errorf("copy box into base volume %s: %w", path, err)
	}
	if n != size {
		return false, fmt.Errorf("copy box into base volume %s: %d of %d bytes", path, n, size)
	}
	progress("copied box into base volume %s (%d MiB in %s)", vol.Name, size>>20, time.Since(start).Round(10*time.Millisecond))
	return true, nil
}

// streamInstead reports whether an open of the volume's file failed only
// because this user may not write it there.
func streamInstead(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)
}

package libvirt

import (
	"context"
	"fmt"
	"io"

	"github.com/devbox-vm/devbox/vm"
)

// exportVolume names the temporary flattened copy Export streams out.
func exportVolume(name string) string { return name + "-export.qcow2" }

// Export implements vm.Driver: libvirt clones the instance's overlay into
// a new qcow2 volume (qemu-img convert, which folds the backing chain
// in), streams it to w, and deletes it.
func (d *Driver) Export(ctx context.Context, name string, w io.Writer, progress vm.Progress) (int64, error) {
	dom, err := d.lookup(name)
	if err != nil {
		return 0, err
	}
	if st, err := d.state(dom); err != nil {
		return 0, err
	} else if st != vm.StateStopped {
		return 0, fmt.Errorf("export %s: the instance is %s (hint: devbox halt first)", name, st)
	}
	pool, err := d.l.StoragePoolLookupByName(PoolName)
	if err != nil {
		return 0, fmt.Errorf("look up storage pool %s: %w", PoolName, err)
	}
	disk, err := d.l.StorageVolLookupByName(pool, diskVolume(name))
	if err != nil {
		return 0, fmt.Errorf("look up disk of %s: %w", name, err)
	}
	_, capacity, _, err := d.l.StorageVolGetInfoFlags(disk, 0)
	if err != nil {
		return 0, fmt.Errorf("size of disk of %s: %w", name, err)
	}
	tmpName := exportVolume(name)
	if old, err := d.l.StorageVolLookupByName(pool, tmpName); err == nil {
		d.l.StorageVolDelete(old, 0) // left by an export that was killed
	}
	progress("flattening the disk of %s into one image", name)
	x := fmt.Sprintf("<volume><name>%s</name><capacity unit='bytes'>%d</capacity><target><format type='qcow2'/></target></volume>", tmpName, capacity)
	tmp, err := d.l.StorageVolCreateXMLFrom(pool, x, disk, 0)
	if err != nil {
		return 0, fmt.Errorf("flatten the disk of %s: %w", name, err)
	}
	defer d.l.StorageVolDelete(tmp, 0)
	cw := &countingWriter{ctx: ctx, w: w}
	if err := d.l.StorageVolDownload(tmp, cw, 0, 0, 0); err != nil {
		if ctx.Err() != nil {
			return cw.n, ctx.Err()
		}
		return cw.n, fmt.Errorf("download the image of %s: %w", name, err)
	}
	return cw.n, nil
}

// countingWriter counts what passes and stops when ctx ends.
type countingWriter struct {
	ctx context.Context
	w   io.Writer
	n   int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

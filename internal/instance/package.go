package instance

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/devbox-vm/devbox/boxes"
	"github.com/devbox-vm/devbox/sshutil"
	"github.com/devbox-vm/devbox/vm"
)

// cleanForPackage runs as root in the guest before its disk becomes a
// box (see the script).
//
//go:embed clean-for-package.sh
var cleanForPackage string

// Package makes a box of the running instance, Vagrant's package: the
// guest is cleaned (cleanForPackage) and powered off, its disk flattened
// into one qcow2 image written to out, whose sha256 it returns. The
// instance stays; its next up re-runs cloud-init from its own seed.
func (in *Instance) Package(ctx context.Context, out string) (sha string, size int64, err error) {
	lk, err := in.lock(ctx, "package")
	if err != nil {
		return "", 0, err
	}
	defer in.unlock(lk)
	info, err := in.Running(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("%w (the guest is cleaned before it is packaged, so it must run: devbox up)", err)
	}
	d, err := in.Driver(ctx)
	if err != nil {
		return "", 0, err
	}
	in.Supervisor().Stop()
	if err := in.Status.Step("Cleaning the guest (machine-id, cloud-init state, host keys, keys, logs), trimming its free space and powering it off", func() error {
		c, err := in.dial(ctx, info)
		if err != nil {
			return err
		}
		defer c.Close()
		var outb bytes.Buffer
		code, err := c.Run(ctx, sshutil.Cmd{Script: cleanForPackage, Root: true, Stdout: &outb, Stderr: &outb})
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("cleaning the guest failed with exit status %d: %s", code, bytes.TrimSpace(outb.Bytes()))
		}
		for _, line := range strings.Split(outb.String(), "\n") {
			if strings.Contains(line, "trimmed on") || strings.HasPrefix(line, "fstrim failed") {
				in.Status.Infof("%s", strings.TrimSpace(line))
			}
		}
		// The connection drops as the guest goes down: the status is moot.
		c.Run(ctx, poweroff)
		return nil
	}); err != nil {
		return "", 0, err
	}
	if err := in.Status.Step("Waiting for the VM to stop", func() error {
		return in.awaitStop(ctx, d, true, time.Minute)
	}); err != nil {
		return "", 0, err
	}
	err = in.Status.Step("Writing the box "+out, func() error {
		sha, size, err = writeImage(ctx, d, in.Domain(), out, in.Status.Infof)
		return err
	})
	return sha, size, err
}

// writeImage exports the instance's disk to out through temporary files
// beside it: compressed with qemu-img when it is on PATH (libvirt's
// flattening does not compress; a box shrinks to about a third), else as
// it comes. It returns out's sha256 and size; on failure nothing is left
// at out.
func writeImage(ctx context.Context, d vm.Driver, domain, out string, progress vm.Progress) (string, int64, error) {
	dir, base := filepath.Dir(out), "."+filepath.Base(out)
	raw, err := os.CreateTemp(dir, base+".*")
	if err != nil {
		return "", 0, err
	}
	defer os.Remove(raw.Name())
	defer raw.Close()
	if _, err := d.Export(ctx, domain, raw, progress); err != nil {
		return "", 0, err
	}
	if err := raw.Close(); err != nil {
		return "", 0, err
	}
	final := raw.Name()
	if qemuImg, err := exec.LookPath("qemu-img"); err == nil {
		progress("compressing the image (qemu-img convert -c)")
		compressed := raw.Name() + ".c"
		defer os.Remove(compressed)
		if b, err := exec.CommandContext(ctx, qemuImg, "convert", "-c", "-f", "qcow2", "-O", "qcow2", raw.Name(), compressed).CombinedOutput(); err != nil {
			return "", 0, fmt.Errorf("compress the box: qemu-img convert: %v: %s", err, bytes.TrimSpace(b))
		}
		final = compressed
	} else {
		progress("qemu-img is not on PATH: the box is not compressed")
	}
	sha, err := boxes.HashFile(ctx, final)
	if err != nil {
		return "", 0, err
	}
	fi, err := os.Stat(final)
	if err != nil {
		return "", 0, err
	}
	if err := os.Chmod(final, 0o644); err != nil {
		return "", 0, err
	}
	if err := os.Rename(final, out); err != nil {
		return "", 0, err
	}
	return sha, fi.Size(), nil
}

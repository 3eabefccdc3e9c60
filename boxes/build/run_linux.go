package build

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Stamp is the digest of a build's inputs (the scripts, the guest's APT
// sources, the engine): a box built with the same stamp needs no rebuild.
// It asks the host's APT sources, so it runs the script (as any user).
func Stamp(ctx context.Context, o Options) (string, error) {
	if o.Out == "" {
		o.Out = "box.qcow2" // the script wants one; it writes nothing here
	}
	var out, errOut bytes.Buffer
	err := run(ctx, o, []string{"BOX_STAMP_ONLY=1"}, &out, &errOut)
	if err != nil {
		return "", fmt.Errorf("box build: %v: %s", err, strings.TrimSpace(errOut.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// Run builds the box into o.Out and returns its manifest. The script
// cleans up after itself on every exit (its trap unmounts and detaches
// what it made); a cancelled ctx sends it SIGTERM, and so does the death
// of this process (kill -9 included).
func Run(ctx context.Context, o Options) (Manifest, error) {
	if err := o.Check(); err != nil {
		return Manifest{}, err
	}
	if err := run(ctx, o, nil, o.Log, o.Log); err != nil {
		return Manifest{}, fmt.Errorf("box build %s (%s): %w", o.Distro, o.Arch, err)
	}
	return ReadManifest(o.Out + ".manifest")
}

func run(ctx context.Context, o Options, extraEnv []string, stdout, stderr interface{ Write([]byte) (int, error) }) error {
	dir, err := os.MkdirTemp("", "devbox-box-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, name := range []string{"lib.sh", scriptFor[o.Arch]} {
		data, err := scripts.ReadFile(name)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o700); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(dir, scriptFor[o.Arch]), o.Out)
	cmd.Env = append(o.env(), extraEnv...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Its own process group, so a signal reaches debootstrap and the rest;
	// SIGTERM (never SIGKILL first) so the script's trap cleans up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 2 * time.Minute
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return nil
}

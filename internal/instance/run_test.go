package instance

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/internal/cli"
	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/vm"
	"github.com/devbox-vm/devbox/vm/fake"
)

func testInstance(t *testing.T, yaml string) (*Instance, *fake.Driver) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse(strings.NewReader(yaml), filepath.Join(dir, "devbox.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d := fake.New()
	in := New(cfg, Home{State: filepath.Join(t.TempDir(), "home")}, cli.NewStatus(io.Discard),
		func(context.Context, string) (vm.Driver, error) { return d, nil })
	return in, d
}

func TestRunOutsideSharedFolder(t *testing.T) {
	in, _ := testInstance(t, "name: demo\nbox: /x.qcow2\n")
	os.MkdirAll(in.Dir(), 0o700)
	if err := in.recordShares(in.wantedShares()); err != nil {
		t.Fatal(err)
	}
	code, err := in.Run(context.Background(), []string{"true"}, RunOptions{Dir: t.TempDir(), Stderr: io.Discard})
	if code != 1 || err == nil || !strings.Contains(err.Error(), "is not shared with the VM") || !strings.Contains(err.Error(), in.Cfg.Dir) {
		t.Errorf("code %d, err %v", code, err)
	}
}

package instance

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/internal/cli"
	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/shell"
	"github.com/devbox-vm/devbox/vm"
	"github.com/devbox-vm/devbox/vm/fake"
)

func TestJoinArgs(t *testing.T) {
	got := shell.Join([]string{"sh", "-c", "echo 'hi' | wc -c", "", "a=b"})
	want := `sh -c 'echo '\''hi'\'' | wc -c' '' a=b`
	if got != want {
		t.Errorf("joinArgs = %s, want %s", got, want)
	}
}

func TestDomainNameSeparatesHomes(t *testing.T) {
	a, b := Home{State: "/a"}.DomainName("demo"), Home{State: "/b"}.DomainName("demo")
	if a == b || !strings.HasPrefix(a, "devbox-demo-") {
		t.Errorf("names %s, %s", a, b)
	}
	if a != (Home{State: "/a"}).DomainName("demo") {
		t.Error("name not stable")
	}
}

func TestDefaultHome(t *testing.T) {
	t.Setenv("DEVBOX_HOME", "/tmp/dbx")
	h, err := DefaultHome()
	if err != nil || h.State != "/tmp/dbx" || h.Cache != "/tmp/dbx/cache" {
		t.Errorf("DEVBOX_HOME: %+v %v", h, err)
	}
	t.Setenv("DEVBOX_HOME", "")
	t.Setenv("XDG_DATA_HOME", "/x/data")
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	h, _ = DefaultHome()
	if h.State != "/x/data/devbox" || h.Cache != "/x/cache/devbox" {
		t.Errorf("XDG: %+v", h)
	}
}

// A cancelled up (Ctrl-C) removes what that run created.
func TestUpInterruptedRollsBack(t *testing.T) {
	dir := t.TempDir()
	box := filepath.Join(dir, "box.qcow2")
	if err := os.WriteFile(box, qcow2Header(1<<30), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(strings.NewReader("name: demo\nbox: "+box+"\naccel: tcg\nuser: {name: dev}\n"), filepath.Join(dir, "devbox.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	homeDir := t.TempDir() // not inside the shared project folder
	home := Home{State: filepath.Join(homeDir, "home"), Cache: filepath.Join(homeDir, "cache")}
	d := fake.New()
	ctx, cancel := context.WithCancel(context.Background())
	d.OnCall = func(call string) {
		if strings.HasPrefix(call, "Start ") {
			cancel() // Ctrl-C while the VM boots
		}
	}
	in := New(cfg, home, cli.NewStatus(io.Discard), func(context.Context, string) (vm.Driver, error) { return d, nil })
	err = in.Up(ctx, UpOptions{NoAgent: true})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Up = %v, want context.Canceled", err)
	}
	calls := strings.Join(d.Calls, ",")
	if !strings.Contains(calls, "Create "+in.Domain()) || !strings.Contains(calls, "Delete "+in.Domain()) {
		t.Errorf("calls: %s", calls)
	}
	if len(d.Instances) != 0 {
		t.Errorf("instance left in the driver: %v", d.Instances)
	}
	if _, err := os.Stat(in.Dir()); !os.IsNotExist(err) {
		t.Errorf("instance folder left: %v", err)
	}
}

// A cancelled up of an existing stopped instance only stops what it started.
func TestUpInterruptedKeepsExisting(t *testing.T) {
	dir := t.TempDir()
	cfg, _ := config.Parse(strings.NewReader("name: demo\nbox: /x.qcow2\n"), filepath.Join(dir, "devbox.yaml"))
	home := Home{State: filepath.Join(dir, "home")}
	d := fake.New()
	in := New(cfg, home, cli.NewStatus(io.Discard), func(context.Context, string) (vm.Driver, error) { return d, nil })
	d.Instances[in.Domain()] = &vm.Info{Name: in.Domain(), State: vm.StateStopped, SSHPort: 1}
	os.MkdirAll(in.Dir(), 0o700)
	ctx, cancel := context.WithCancel(context.Background())
	d.OnCall = func(call string) {
		if strings.HasPrefix(call, "Start ") {
			cancel()
		}
	}
	if err := in.Up(ctx, UpOptions{NoAgent: true}); err == nil {
		t.Fatal("Up succeeded")
	}
	if d.Instances[in.Domain()] == nil || d.Instances[in.Domain()].State != vm.StateStopped {
		t.Errorf("existing instance not kept stopped: %+v", d.Instances)
	}
	if _, err := os.Stat(in.Dir()); err != nil {
		t.Errorf("existing instance folder removed: %v", err)
	}
}

// qcow2Header is a minimal self-contained qcow2 v3 image of size bytes.
func qcow2Header(size uint64) []byte {
	b := make([]byte, 4096)
	copy(b, "QFI\xfb")
	binary.BigEndian.PutUint32(b[4:], 3)     // version
	binary.BigEndian.PutUint32(b[20:], 16)   // cluster_bits
	binary.BigEndian.PutUint64(b[24:], size) // size
	binary.BigEndian.PutUint32(b[100:], 112) // header_length
	return b
}

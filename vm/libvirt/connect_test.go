package libvirt

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/vm"
)

func TestConnectErrorsHaveHints(t *testing.T) {
	dir := t.TempDir()
	// A socket file nobody listens on: connection refused.
	refused := filepath.Join(dir, "refused.sock")
	l, err := net.Listen("unix", refused)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	for _, tc := range []struct{ uri, want string }{
		{"qemu:///system?socket=" + filepath.Join(dir, "absent.sock"), "hint: start the libvirt daemon"},
		{"qemu:///system?socket=" + refused, "hint: start the libvirt daemon"},
	} {
		_, err := Connect(context.Background(), tc.uri)
		if !errors.Is(err, vm.ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.uri, err)
		}
	}
	for _, uri := range []string{"xen:///system", "not a uri"} {
		if _, err := Connect(context.Background(), uri); err == nil || !strings.Contains(err.Error(), "libvirt_uri") {
			t.Errorf("%s: %v", uri, err)
		}
	}
}

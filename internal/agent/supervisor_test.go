package agent

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/devbox-vm/devbox/internal/lockfile"
)

func TestStateFromLiveFacts(t *testing.T) {
	s := Supervisor{Dir: t.TempDir()}
	ctx := context.Background()
	if st := s.State(ctx); st.Running || !strings.Contains(st.Reason, "never started") {
		t.Errorf("no pid file: %+v", st)
	}
	// A pid that cannot exist.
	os.WriteFile(s.PIDFile(), []byte("2147483646\n"), 0o600)
	if st := s.State(ctx); st.Running || !strings.Contains(st.Reason, "is gone") {
		t.Errorf("dead pid: %+v", st)
	}
	// A live process (this test, holding the pid file's lock as the
	// agent does) that does not answer on the socket.
	lk, err := lockfile.TryLock(s.PIDFile(), "devbox agent of demo")
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Unlock()
	if st := s.State(ctx); st.Running || !strings.Contains(st.Reason, "does not answer") {
		t.Errorf("silent process: %+v", st)
	}
}

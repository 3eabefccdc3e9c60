package instance

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/filenames"
)

// Shares is what the VM may reach on the host: the folders it sees and
// the host addresses that lead into it. devbox.yaml says what it wants;
// the instance folder (outside every share, so the VM cannot edit it)
// records what the user accepted, and only that is served.
type Shares struct {
	Mounts   []config.Mount   `json:"mounts"`
	Forwards []config.Forward `json:"forwards"`
}

// sharesFile records the accepted shares in the instance folder.
func (in *Instance) sharesFile() string { return filepath.Join(in.Dir(), filenames.Shares) }

// wantedShares is what devbox.yaml asks for.
func (in *Instance) wantedShares() Shares {
	return Shares{Mounts: in.Cfg.Mounts, Forwards: in.Cfg.Forwards}
}

// AcceptedShares reads what the user accepted; ok is false when nothing
// was recorded yet.
func (in *Instance) AcceptedShares() (s Shares, ok bool, err error) {
	b, err := os.ReadFile(in.sharesFile())
	if errors.Is(err, fs.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("read accepted shares: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, false, fmt.Errorf("read accepted shares %s: %w (hint: devbox up --accept-shares records them again)", in.sharesFile(), err)
	}
	return s, true, nil
}

// recordShares remembers s as accepted.
func (in *Instance) recordShares(s Shares) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := in.sharesFile() + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("record accepted shares: %w", err)
	}
	return os.Rename(tmp, in.sharesFile())
}

// Widening lists, one line each, what wanted lets the VM reach beyond
// accepted: a new or moved folder, ro made rw, a new forward, a forward
// that listens beyond loopback. Narrowing is not listed.
func Widening(accepted, wanted Shares) []string {
	var lines []string
	for _, m := range wanted.Mounts {
		old, found := findMount(accepted.Mounts, m.Host)
		switch {
		case !found:
			lines = append(lines, fmt.Sprintf("+ shared folder %s (%s)", m.Host, m.Mode))
		case old.ReadOnly() && !m.ReadOnly():
			lines = append(lines, fmt.Sprintf("~ shared folder %s: ro → %s (the VM could write it)", m.Host, m.Mode))
		}
	}
	for _, f := range wanted.Forwards {
		if containsForward(accepted.Forwards, f) {
			continue
		}
		line := fmt.Sprintf("+ forward %s → guest port %d (%s)", f.Host, f.Guest, f.Proto)
		if !f.IsLoopback() {
			line += ": NOT loopback, other machines could reach the VM through it"
		}
		lines = append(lines, line)
	}
	return lines
}

func findMount(ms []config.Mount, host string) (config.Mount, bool) {
	for _, m := range ms {
		if m.Host == host {
			return m, true
		}
	}
	return config.Mount{}, false
}

func containsForward(fs []config.Forward, f config.Forward) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

// checkHomeNotShared refuses a mount that holds devbox's own state or
// cache (keys, sockets, boxes), whatever the user accepts.
func (in *Instance) checkHomeNotShared() error {
	for _, own := range []string{in.Home.State, in.Home.Cache} {
		real, err := config.ResolvePath(own)
		if err != nil {
			continue
		}
		for i, m := range in.Cfg.Mounts {
			if config.Within(real, m.Host) {
				return fmt.Errorf("%s is invalid:\n  - mounts[%d].host: %s holds devbox's own folder %s (keys, sockets): share a folder that does not contain it, or move DEVBOX_HOME", in.Cfg.File, i, m.Host, own)
			}
		}
	}
	return nil
}

// settleShares compares devbox.yaml with what was accepted. Widening needs
// a yes: acceptAll (--accept-shares), or confirm on a terminal (nil when
// there is none). The accepted record then follows devbox.yaml, narrowing
// included.
func (in *Instance) settleShares(acceptAll bool, confirm func(question string) bool) error {
	if err := in.checkHomeNotShared(); err != nil {
		return err
	}
	wanted := in.wantedShares()
	accepted, ok, err := in.AcceptedShares()
	if err != nil && !acceptAll {
		return err
	}
	if !ok || err != nil {
		// First up of this instance: the user runs it on this config.
		return in.recordShares(wanted)
	}
	if lines := Widening(accepted, wanted); len(lines) > 0 {
		diff := "  " + strings.Join(lines, "\n  ")
		question := fmt.Sprintf("%s asks to let the VM reach more of this host than you accepted:\n%s\nA file in a shared folder can be changed from inside the VM. Accept?", in.Cfg.File, diff)
		switch {
		case acceptAll:
			in.Status.Infof("accepting (--accept-shares):\n%s", diff)
		case confirm != nil:
			if !confirm(question) {
				return fmt.Errorf("not accepted: %s keeps what it served before (hint: undo the change in %s, or accept it with devbox up --accept-shares)", in.Name(), in.Cfg.File)
			}
		default:
			return fmt.Errorf("%s asks to let the VM reach more of this host than you accepted:\n%s\n(a file in a shared folder can be changed from inside the VM; hint: review %s, then run devbox up --accept-shares to accept it)", in.Cfg.File, diff, in.Cfg.File)
		}
	}
	return in.recordShares(wanted)
}

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/devbox-vm/devbox/internal/config"
	"github.com/devbox-vm/devbox/internal/filenames"
	"github.com/devbox-vm/devbox/sshutil"
)

// Status is what the agent serves and what it could not, with reasons.
type Status struct {
	PID        int             `json:"pid"`
	Connection ConnStatus      `json:"connection"`
	Docker     ServiceStatus   `json:"docker_socket"`
	Mounts     []MountStatus   `json:"mounts"`
	Forwards   []ForwardStatus `json:"forwards"` // configured forwards, then published ports
}

// ConnStatus is the agent's connection to the guest.
type ConnStatus struct {
	State  string    `json:"state"` // ConnConnecting, ConnUp, ConnReconnecting or ConnHostKeyMismatch
	Since  time.Time `json:"since"`
	Reason string    `json:"reason,omitempty"` // why it is not up: the last dial error, "keepalives unanswered", "connection lost"
	// SHA256 fingerprints of the pinned and the presented host key, on a
	// mismatch.
	WantHostKey string `json:"want_host_key,omitempty"`
	GotHostKey  string `json:"got_host_key,omitempty"`
}

// ServiceStatus is a socket the agent listens on.
type ServiceStatus struct {
	Path   string `json:"path"`
	State  string `json:"state"` // Pending, Listening or Failed
	Reason string `json:"reason,omitempty"`
}

// MountStatus is a shared folder. It goes back to Pending while the
// connection is down, and is mounted again after a reconnect.
type MountStatus struct {
	Host   string `json:"host"`
	Mode   string `json:"mode"`  // rw or ro
	State  string `json:"state"` // Pending, Mounted or Failed
	Reason string `json:"reason,omitempty"`
	// Events says whether host changes are replayed in the guest for
	// inotify: "on (watching N folders)", "limited: why", "off: why".
	Events string `json:"events,omitempty"`
	// Type is how the folder reaches the guest (sshfs or virtiofs), and
	// Note why that is not the configured mount_type.
	Type string `json:"type,omitempty"`
	Note string `json:"note,omitempty"`
}

// ForwardStatus is a configured forward (Guest is the guest port) or a
// port a container publishes (Container names it; Guest is the same
// port in the guest).
type ForwardStatus struct {
	Host      string `json:"host"` // host address, "127.0.0.1:8080"
	Guest     int    `json:"guest"`
	Proto     string `json:"proto"` // tcp or udp
	Container string `json:"container,omitempty"`
	State     string `json:"state"` // Pending, Listening or Failed
	Reason    string `json:"reason,omitempty"`
}

// States in Status.
const (
	ConnConnecting      = "connecting"        // never connected yet
	ConnUp              = "up"                // connected
	ConnReconnecting    = "reconnecting"      // connected before, not now
	ConnHostKeyMismatch = "host key mismatch" // something else answers on the guest's address

	Pending   = "pending"   // not served yet (a mount waits for the connection)
	Listening = "listening" // a socket or forward accepts connections
	Mounted   = "mounted"   // the guest sees the shared folder as a mount point
	Failed    = "failed"    // could not be served; Reason says why
)

// StatusRequest is the SSH global request on the control socket that
// the agent answers with its Status as JSON.
const StatusRequest = "status@devbox"

// waitingReason is a pending mount's reason while there is no connection.
const waitingReason = "waiting for the connection to the guest"

// Status is the agent's current state.
func (a *Agent) Status() Status {
	a.init()
	a.mu.Lock()
	st := Status{
		PID:        os.Getpid(),
		Connection: a.conn,
		Docker:     a.docker,
		Mounts:     append([]MountStatus{}, a.mounts...),
		Forwards:   append([]ForwardStatus{}, a.forwards...),
	}
	published := a.published
	a.mu.Unlock()
	// Not under a.mu: the publisher has its own lock.
	if published != nil {
		st.Forwards = append(st.Forwards, published.status()...)
	}
	return st
}

// answer serves the control socket's global requests.
func (a *Agent) answer(typ string, _ []byte) (bool, []byte) {
	if typ != StatusRequest {
		return false, nil
	}
	b, err := json.Marshal(a.Status())
	if err != nil {
		a.Log.Printf("status request: %v", err)
		return false, nil
	}
	return true, b
}

// QueryStatus asks the agent of the instance folder dir for its Status
// over its control socket, pinning the agent's host key.
func QueryStatus(ctx context.Context, dir string) (Status, error) {
	sock, err := SocketPath(dir, filenames.AgentSocket)
	if err != nil {
		return Status{}, fmt.Errorf("agent status: %w", err)
	}
	kp, err := sshutil.ReadKeyPair(filepath.Join(dir, filenames.AgentHostKey))
	if err != nil {
		return Status{}, fmt.Errorf("agent status: %w (hint: devbox up starts the agent)", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := sshutil.DialProxy(ctx, sock, kp.Public)
	if err != nil {
		return Status{}, fmt.Errorf("agent status: %w (hint: devbox up restarts the agent)", err)
	}
	defer c.Close()
	ok, reply, err := c.GlobalRequest(ctx, StatusRequest, nil)
	if err != nil {
		return Status{}, fmt.Errorf("agent status: %w (hint: devbox up restarts the agent)", err)
	}
	if !ok {
		return Status{}, fmt.Errorf("agent status: the agent on %s does not answer %s (hint: an older agent; devbox up restarts it)", sock, StatusRequest)
	}
	var st Status
	if err := json.Unmarshal(reply, &st); err != nil {
		return Status{}, fmt.Errorf("agent status: reply of the agent on %s: %w", sock, err)
	}
	return st, nil
}

func modeName(m config.Mount) string {
	if m.ReadOnly() {
		return "ro"
	}
	return "rw"
}

// setConnLocked changes the connection state; Since moves only when the
// state does.
func (a *Agent) setConnLocked(st ConnStatus) {
	if st.State == a.conn.State {
		st.Since = a.conn.Since
	} else {
		st.Since = time.Now()
	}
	a.conn = st
	a.signalLocked()
}

// notUpState is the state while a dial fails: connecting until the first
// connection, reconnecting after.
func (a *Agent) notUpStateLocked() string {
	if a.everUp {
		return ConnReconnecting
	}
	return ConnConnecting
}

func (a *Agent) setDialFailure(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.setConnLocked(ConnStatus{State: a.notUpStateLocked(), Reason: err.Error()})
}

func (a *Agent) setMismatch(mm *sshutil.HostKeyMismatchError) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.setConnLocked(ConnStatus{
		State:       ConnHostKeyMismatch,
		Reason:      fmt.Sprintf("%s presents another host key: another program may listen on the guest's SSH port since the VM stopped, or the guest's host key changed", mm.Addr),
		WantHostKey: mm.Want,
		GotHostKey:  mm.Got,
	})
}

// lost records the end of the connection: nothing is handed out any
// more and shared folders wait for the next one.
func (a *Agent) lost(reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.client = nil
	for i := range a.mounts {
		a.mounts[i].State, a.mounts[i].Reason = Pending, waitingReason
	}
	a.setConnLocked(ConnStatus{State: ConnReconnecting, Reason: reason})
}

// setMount records shared folder i's state as seen on connection gen;
// news from an older connection is dropped.
func (a *Agent) setMount(gen, i int, state, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen != a.gen || a.client == nil {
		return
	}
	a.mounts[i].State, a.mounts[i].Reason = state, reason
}

func (a *Agent) setMountType(gen, i int, typ, note string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen != a.gen || a.client == nil {
		return
	}
	a.mounts[i].Type, a.mounts[i].Note = typ, note
}

func (a *Agent) setMountEvents(gen, i int, events string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen != a.gen || a.client == nil {
		return
	}
	a.mounts[i].Events = events
}

func (a *Agent) setForward(i int, state, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.forwards[i].State, a.forwards[i].Reason = state, reason
}

func (a *Agent) setDocker(state, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.docker.State, a.docker.Reason = state, reason
}

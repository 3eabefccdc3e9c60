package dockerports

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

const wait = 5 * time.Second

// engine is a fake Docker engine on a unix socket: /containers/json serves
// a mutable list, /events streams the lines the test sends.
type engine struct {
	sock       string
	events     chan string   // one JSON line per send; close to end the stream
	subscribed chan struct{} // signalled when /events is being followed
	listed     chan struct{} // signalled after each /containers/json read

	mu         sync.Mutex
	containers []fakeContainer
	lists      int // /containers/json requests served
}

type fakeContainer struct {
	Names []string
	Ports []fakePort
}

type fakePort struct {
	IP          string `json:",omitempty"`
	PrivatePort int
	PublicPort  int `json:",omitempty"`
	Type        string
}

func newEngine(t *testing.T) *engine {
	t.Helper()
	e := &engine{
		sock:       filepath.Join(t.TempDir(), "d.sock"),
		events:     make(chan string),
		subscribed: make(chan struct{}, 1),
		listed:     make(chan struct{}, 64),
	}
	l, err := net.Listen("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containers/json", func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.lists++
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(e.containers)
		e.listed <- struct{}{}
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		if f := r.URL.Query().Get("filters"); f != `{"type":["container"]}` {
			http.Error(w, `{"message":"bad filters `+f+`"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case e.subscribed <- struct{}{}:
		default:
		}
		for {
			select {
			case line, ok := <-e.events:
				if !ok {
					return
				}
				fmt.Fprintln(w, line)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return e
}

func (e *engine) set(cs ...fakeContainer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.containers = cs
}

func (e *engine) listCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lists
}

// send streams one container event with the given action.
func (e *engine) send(t *testing.T, action string) {
	t.Helper()
	line := fmt.Sprintf(`{"status":%q,"id":"abc","from":"nginx","Type":"container","Action":%q,`+
		`"Actor":{"ID":"abc","Attributes":{"name":"web"}},"scope":"local","time":1,"timeNano":1}`, action, action)
	select {
	case e.events <- line:
	case <-time.After(wait):
		t.Fatalf("event %q not taken by the engine's /events handler", action)
	}
}

// awaitList waits for the engine to have served one more listing.
func (e *engine) awaitList(t *testing.T) {
	t.Helper()
	select {
	case <-e.listed:
	case <-time.After(wait):
		t.Fatal("containers not listed")
	}
}

func (e *engine) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", e.sock)
}

// watcher is one running Watch.
type watcher struct {
	updates chan []Port
	done    chan error
	cancel  context.CancelFunc
}

func start(t *testing.T, e *engine) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{updates: make(chan []Port, 16), done: make(chan error, 1), cancel: cancel}
	go func() {
		w.done <- Watch(ctx, e.dial, func(p []Port) { w.updates <- p })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(wait):
			t.Error("Watch did not return after cleanup cancel")
		}
	})
	return w
}

// next returns the next update, failing if none comes or Watch returns.
func (w *watcher) next(t *testing.T) []Port {
	t.Helper()
	select {
	case p := <-w.updates:
		return p
	case err := <-w.done:
		t.Fatalf("Watch returned %v, want an update", err)
	case <-time.After(wait):
		t.Fatal("no update")
	}
	return nil
}

// result waits for Watch to return.
func (w *watcher) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-w.done:
		w.done <- err // for the cleanup
		return err
	case <-time.After(wait):
		t.Fatal("Watch did not return")
	}
	return nil
}

func wantPorts(t *testing.T, got []Port, want ...Port) {
	t.Helper()
	if want == nil {
		want = []Port{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ports = %+v, want %+v", got, want)
	}
}

func tcp(ip string, public, private int) fakePort {
	return fakePort{IP: ip, PublicPort: public, PrivatePort: private, Type: "tcp"}
}

func web(ports ...fakePort) fakeContainer {
	return fakeContainer{Names: []string{"/web"}, Ports: ports}
}
func db(ports ...fakePort) fakeContainer { return fakeContainer{Names: []string{"/db"}, Ports: ports} }

func TestInitialSet(t *testing.T) {
	e := newEngine(t)
	e.set(web(tcp("0.0.0.0", 8080, 80)), db(tcp("127.0.0.1", 5432, 5432)))
	w := start(t, e)
	wantPorts(t, w.next(t),
		Port{HostIP: "127.0.0.1", HostPort: 5432, Container: "db", Proto: "tcp"},
		Port{HostIP: "0.0.0.0", HostPort: 8080, Container: "web", Proto: "tcp"})
}

func TestInitialEmptySetIsReported(t *testing.T) {
	e := newEngine(t)
	w := start(t, e)
	wantPorts(t, w.next(t))
}

func TestStartAddsPort(t *testing.T) {
	e := newEngine(t)
	e.set(db(tcp("0.0.0.0", 5432, 5432)))
	w := start(t, e)
	wantPorts(t, w.next(t), Port{"0.0.0.0", 5432, "db", "tcp"})

	e.set(db(tcp("0.0.0.0", 5432, 5432)), web(tcp("0.0.0.0", 8080, 80)))
	e.send(t, "start")
	wantPorts(t, w.next(t), Port{"0.0.0.0", 5432, "db", "tcp"}, Port{"0.0.0.0", 8080, "web", "tcp"})
}

func TestIPv4AndIPv6Collapse(t *testing.T) {
	e := newEngine(t)
	// Order as engines often report it, IPv6 sometimes first.
	e.set(web(tcp("::", 8080, 80), tcp("0.0.0.0", 8080, 80), tcp("::", 8443, 443), tcp("0.0.0.0", 8443, 443)))
	w := start(t, e)
	wantPorts(t, w.next(t), Port{"0.0.0.0", 8080, "web", "tcp"}, Port{"0.0.0.0", 8443, "web", "tcp"})
}

func TestUDPReportedUnpublishedAndSCTPIgnored(t *testing.T) {
	e := newEngine(t)
	e.set(web(
		fakePort{IP: "0.0.0.0", PublicPort: 5353, PrivatePort: 53, Type: "udp"},
		fakePort{IP: "0.0.0.0", PublicPort: 5353, PrivatePort: 53, Type: "tcp"},
		fakePort{IP: "0.0.0.0", PublicPort: 9999, PrivatePort: 9999, Type: "sctp"},
		fakePort{PrivatePort: 9000, Type: "tcp"}, // exposed, not published
		tcp("0.0.0.0", 8080, 80),
	))
	w := start(t, e)
	wantPorts(t, w.next(t), Port{"0.0.0.0", 5353, "web", "tcp"}, Port{"0.0.0.0", 5353, "web", "udp"}, Port{"0.0.0.0", 8080, "web", "tcp"})
}

func TestDieRemovesPort(t *testing.T) {
	e := newEngine(t)
	e.set(web(tcp("0.0.0.0", 8080, 80)), db(tcp("0.0.0.0", 5432, 5432)))
	w := start(t, e)
	wantPorts(t, w.next(t), Port{"0.0.0.0", 5432, "db", "tcp"}, Port{"0.0.0.0", 8080, "web", "tcp"})

	e.set(db(tcp("0.0.0.0", 5432, 5432)))
	e.send(t, "die")
	wantPorts(t, w.next(t), Port{"0.0.0.0", 5432, "db", "tcp"})

	e.set()
	e.send(t, "stop")
	wantPorts(t, w.next(t))
}

// An event that leaves the set as it was lists again but reports nothing:
// the next update seen is the one after a real change.
func TestNoUpdateWhenSetUnchanged(t *testing.T) {
	e := newEngine(t)
	e.set(web(tcp("0.0.0.0", 8080, 80)))
	w := start(t, e)
	wantPorts(t, w.next(t), Port{"0.0.0.0", 8080, "web", "tcp"})
	e.awaitList(t)

	// Same set, reported in another order and with an SCTP port.
	e.set(web(fakePort{IP: "0.0.0.0", PublicPort: 5353, PrivatePort: 53, Type: "sctp"},
		tcp("::", 8080, 80), tcp("0.0.0.0", 8080, 80)))
	e.send(t, "start")
	e.send(t, "pause")
	e.awaitList(t)
	e.awaitList(t)

	e.set()
	e.send(t, "die")
	wantPorts(t, w.next(t))
	if n := e.listCount(); n != 4 {
		t.Errorf("containers listed %d times, want 4 (initial, start, pause, die)", n)
	}
}

// Events that cannot change published ports do not cause a listing.
// Ending the stream makes Watch finish every event first, so the count
// of listings is then exact.
func TestOtherEventsIgnored(t *testing.T) {
	e := newEngine(t)
	w := start(t, e)
	wantPorts(t, w.next(t))

	e.set(web(tcp("0.0.0.0", 8080, 80)))
	e.send(t, "exec_start: sh -c date")
	e.send(t, "health_status: healthy")
	e.send(t, "start")
	close(e.events)
	if err := w.result(t); err == nil {
		t.Fatal("Watch returned nil after the event stream ended")
	}
	select {
	case got := <-w.updates:
		wantPorts(t, got, Port{"0.0.0.0", 8080, "web", "tcp"})
	default:
		t.Fatal("no update after start")
	}
	if n := e.listCount(); n != 2 {
		t.Errorf("containers listed %d times, want 2 (initial, start)", n)
	}
}

func TestRenameUpdatesName(t *testing.T) {
	e := newEngine(t)
	e.set(web(tcp("0.0.0.0", 8080, 80)))
	w := start(t, e)
	wantPorts(t, w.next(t), Port{"0.0.0.0", 8080, "web", "tcp"})

	e.set(fakeContainer{Names: []string{"/site"}, Ports: []fakePort{tcp("0.0.0.0", 8080, 80)}})
	e.send(t, "rename")
	wantPorts(t, w.next(t), Port{"0.0.0.0", 8080, "site", "tcp"})
}

func TestStreamEndReturnsError(t *testing.T) {
	e := newEngine(t)
	w := start(t, e)
	wantPorts(t, w.next(t))

	close(e.events)
	if err := w.result(t); err == nil {
		t.Fatal("Watch returned nil after the event stream ended, want an error")
	}
}

func TestUnreachableEngineReturnsError(t *testing.T) {
	e := newEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	dialOther := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(filepath.Dir(e.sock), "missing.sock"))
	}
	err := Watch(ctx, dialOther, func([]Port) { t.Error("update called") })
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Watch with no engine = %v (ctx %v), want a prompt error", err, ctx.Err())
	}
}

func TestCancelReturnsNil(t *testing.T) {
	e := newEngine(t)
	w := start(t, e)
	wantPorts(t, w.next(t))
	select {
	case <-e.subscribed:
	case <-time.After(wait):
		t.Fatal("Watch is not following events")
	}

	w.cancel()
	if err := w.result(t); err != nil {
		t.Fatalf("Watch after cancel = %v, want nil", err)
	}
}

func TestPublishedPrefersIPv4AndSmallestName(t *testing.T) {
	got := published([]container{
		{Names: []string{"/b"}, Ports: []apiPort{{"::", 80, "tcp"}, {"0.0.0.0", 80, "tcp"}}},
		{Names: []string{"/a"}, Ports: []apiPort{{"0.0.0.0", 80, "tcp"}, {"", 0, "tcp"}}},
	})
	wantPorts(t, got, Port{"0.0.0.0", 80, "a", "tcp"})
	if published(nil) == nil {
		t.Error("published(nil) is nil, want empty")
	}
}

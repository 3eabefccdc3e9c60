package boxes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devbox-vm/devbox/internal/testutil"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fakeQcow2 is a clean, self-contained qcow2 image (as far as its header
// goes) followed by a non-trivial payload.
func fakeQcow2() []byte {
	b := qcow2Header(3, "", 0)
	for i := 512; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

// qcow2Header builds a 4 KiB image with a qcow2 header of version, 512-byte
// clusters (so that the header area ends at 512), a 64 MiB virtual size,
// a backing file name (at offset 1024) if backing is set, and v3
// incompatible feature bits.
func qcow2Header(version uint32, backing string, incompat uint64) []byte {
	b := make([]byte, 4096)
	be := binary.BigEndian
	copy(b, "QFI\xfb")
	be.PutUint32(b[4:], version)
	if backing != "" {
		be.PutUint64(b[8:], 1024)
		be.PutUint32(b[16:], uint32(len(backing)))
		copy(b[1024:], backing)
	}
	be.PutUint32(b[20:], 9)
	be.PutUint64(b[24:], 64<<20)
	if version == 3 {
		be.PutUint64(b[72:], incompat)
		be.PutUint32(b[96:], 4)
		be.PutUint32(b[100:], 104)
	}
	return b
}

func write(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// listDir returns the names of everything in dir (recursively, relative).
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, rel)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return names
}

func assertContains(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want error containing %q, got nil", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func TestDetectFormat(t *testing.T) {
	dir := t.TempDir()
	pad := func(s string) []byte { return append([]byte(s), make([]byte, 1024)...) }
	tests := []struct {
		name, want, errPart string
		data                []byte
	}{
		{name: "qcow2", data: fakeQcow2(), want: "qcow2"},
		{name: "raw zeros", data: make([]byte, 1<<20), want: "raw"},
		{name: "raw exactly 512", data: bytes.Repeat([]byte{0xeb}, 512), want: "raw"},
		{name: "tiny", data: []byte("QFI\xfb"), errPart: "only 4 bytes"},
		{name: "empty", data: nil, errPart: "only 0 bytes"},
		{name: "html", data: pad("<html><body>404</body></html>"), errPart: "HTML"},
		{name: "html after bom", data: pad("\xef\xbb\xbf\n  <!DOCTYPE html>"), errPart: "HTML"},
		{name: "json", data: pad(`{"error":"nope"}`), errPart: "JSON"},
		{name: "script", data: pad("#!/bin/sh\n"), errPart: "script"},
		{name: "gzip", data: pad("\x1f\x8b\x08"), errPart: "gzip"},
		{name: "xz", data: pad("\xfd7zXZ\x00"), errPart: "xz"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := write(t, dir, strconv.Itoa(i), tt.data)
			got, err := DetectFormat(p)
			if tt.errPart != "" {
				assertContains(t, err, tt.errPart, p)
				if !errors.Is(err, ErrNotDiskImage) {
					t.Errorf("error %v does not wrap ErrNotDiskImage", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("DetectFormat = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := DetectFormat(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want ErrNotExist", err)
	}
}

func TestParseDigest(t *testing.T) {
	d := sum([]byte("x"))
	tests := []struct{ in, want string }{
		{"", ""},
		{d, d},
		{strings.ToUpper(d), d},
		{"sha256:" + d, d},
		{"SHA256:" + strings.ToUpper(d), d},
		{" " + d + "\n", d},
	}
	for _, tt := range tests {
		got, err := parseDigest(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseDigest(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"abc", d[:63] + "g", d + "0", "sha256:", "md5:" + d} {
		if _, err := parseDigest(bad); err == nil || !strings.Contains(err.Error(), "box_sha256") {
			t.Errorf("parseDigest(%q) err = %v, want error naming box_sha256", bad, err)
		}
	}
}

func TestResolveLocal(t *testing.T) {
	dir := t.TempDir()
	qcow := fakeQcow2()
	raw := make([]byte, 1<<20)
	qPath := write(t, dir, "a.qcow2", qcow)
	rPath := write(t, dir, "b.img", raw)
	t.Chdir(dir)

	tests := []struct {
		name, source, want string
		wantBox            Box
	}{
		{"qcow2 absolute", qPath, "", Box{qPath, sum(qcow), "qcow2", int64(len(qcow))}},
		{"qcow2 with digest", qPath, "sha256:" + strings.ToUpper(sum(qcow)), Box{qPath, sum(qcow), "qcow2", int64(len(qcow))}},
		{"raw relative", "b.img", sum(raw), Box{rPath, sum(raw), "raw", 1 << 20}},
		{"raw file url", "file://" + rPath, "", Box{rPath, sum(raw), "raw", 1 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(t.Context(), tt.source, tt.want, Options{CacheDir: filepath.Join(t.TempDir(), "cache")})
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.wantBox {
				t.Errorf("Resolve = %+v, want %+v", got, tt.wantBox)
			}
		})
	}
}

func TestResolveLocalErrors(t *testing.T) {
	dir := t.TempDir()
	qPath := write(t, dir, "a.qcow2", fakeQcow2())
	htmlPath := write(t, dir, "page.img", append([]byte("<html>"), make([]byte, 600)...))
	missing := filepath.Join(dir, "nope.qcow2")
	other := sum([]byte("other"))

	tests := []struct {
		name, source, want string
		parts              []string
		is                 error
	}{
		{"missing", missing, "", []string{missing, "hint", `"box"`}, fs.ErrNotExist},
		{"mismatch", qPath, other, []string{qPath, other, sum(fakeQcow2()), "box_sha256"}, ErrChecksumMismatch},
		{"html", htmlPath, "", []string{htmlPath, "not a disk image", "HTML"}, ErrNotDiskImage},
		{"directory", dir, "", []string{dir, "not a regular file"}, nil},
		{"bad digest", qPath, "1234", []string{"box_sha256"}, nil},
		{"empty source", "", "", []string{"box", "hint"}, nil},
		{"ftp", "ftp://example.com/a.img", other, []string{`"ftp"`, "ftp://example.com/a.img"}, nil},
		{"remote file url", "file://host/a.img", "", []string{"host"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Resolve(t.Context(), tt.source, tt.want, Options{CacheDir: t.TempDir()})
			assertContains(t, err, tt.parts...)
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
		})
	}
}

// TestResolveLocalRecord checks that the sha256 record is reused while size
// and mtime are unchanged, and recomputed once they change.
func TestResolveLocalRecord(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(t.TempDir(), "cache")
	orig := fakeQcow2()
	p := write(t, dir, "a.qcow2", orig)
	mtime := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	opts := Options{CacheDir: cache}
	if b, err := Resolve(t.Context(), p, "", opts); err != nil || b.SHA256 != sum(orig) {
		t.Fatalf("first Resolve = %+v, %v", b, err)
	}
	if fi, err := os.Stat(cache); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("cache dir: %v, %v; want 0755 dir", fi, err)
	}

	// Same size and mtime, different bytes: the record is trusted.
	changed := bytes.Clone(orig)
	changed[len(changed)-1] ^= 0xff
	write(t, dir, "a.qcow2", changed)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if b, err := Resolve(t.Context(), p, "", opts); err != nil || b.SHA256 != sum(orig) {
		t.Fatalf("Resolve with unchanged stat = %+v, %v; want recorded %s", b, err, sum(orig))
	}

	// New mtime: the file is hashed again.
	mtime = mtime.Add(time.Second)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if b, err := Resolve(t.Context(), p, "", opts); err != nil || b.SHA256 != sum(changed) {
		t.Fatalf("Resolve after touch = %+v, %v; want %s", b, err, sum(changed))
	}
}

// server serves body at /box.img and counts requests.
type server struct {
	*httptest.Server
	hits atomic.Int64
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	s := &server{}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func serveBytes(body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/box.img" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}
}

// assertNoDownloads fails if dir holds any *.img or temporary file.
func assertNoDownloads(t *testing.T, dir string) {
	t.Helper()
	for _, n := range listDir(t, dir) {
		if strings.HasSuffix(n, ".img") || strings.HasSuffix(n, ".tmp") || strings.HasPrefix(filepath.Base(n), ".") {
			t.Errorf("cache dir holds %q, want nothing left behind", n)
		}
	}
}

func TestResolveURL(t *testing.T) {
	body := fakeQcow2()
	srv := newServer(t, serveBytes(body))
	cache := filepath.Join(t.TempDir(), "cache")
	var out testutil.Buffer
	opts := Options{CacheDir: cache, Client: srv.Client(), Progress: &out}
	url := srv.URL + "/box.img"
	want := Box{Path: filepath.Join(cache, sum(body)+".img"), SHA256: sum(body), Format: "qcow2", Size: int64(len(body))}

	got, err := Resolve(t.Context(), url, "sha256:"+strings.ToUpper(sum(body)), opts)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Resolve = %+v, want %+v", got, want)
	}
	if data, err := os.ReadFile(want.Path); err != nil || !bytes.Equal(data, body) {
		t.Errorf("cached file: %v, equal=%v", err, bytes.Equal(data, body))
	}
	if names := listDir(t, cache); !slices.Equal(names, []string{sum(body) + ".img", "meta", "meta/" + sum(body) + ".json"}) {
		t.Errorf("cache holds %q, want only %s.img and its label", names, sum(body))
	}
	if c, err := List(cache); err != nil || len(c) != 1 || c[0].SHA256 != sum(body) || c[0].Source != url || c[0].Size != int64(len(body)) {
		t.Errorf("List = %+v, %v", c, err)
	}
	if !strings.Contains(out.String(), "downloaded 4.0 KiB") {
		t.Errorf("progress output %q lacks a final line", out.String())
	}
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("first Resolve made %d requests, want 1", n)
	}

	// Cached: no request at all, even with a client that cannot connect.
	opts.Client = &http.Client{Transport: failTransport{t}}
	got, err = Resolve(t.Context(), url, sum(body), opts)
	if err != nil || got != want {
		t.Errorf("cached Resolve = %+v, %v; want %+v", got, err, want)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("after cached Resolve: %d requests, want 1", n)
	}
}

type failTransport struct{ t *testing.T }

func (f failTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.t.Errorf("unexpected request %s", r.URL)
	return nil, errors.New("no network in this test")
}

func TestResolveURLErrors(t *testing.T) {
	body := fakeQcow2()
	html := append([]byte("<html><body>Login required</body></html>"), bytes.Repeat([]byte(" "), 1000)...)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		path    string
		digest  string
		parts   []string
		is      error
	}{
		{"mismatch", serveBytes(body), "/box.img", sum([]byte("old")),
			[]string{sum(body), sum([]byte("old")), "/box.img", "box_sha256", "stale", "corrupt"}, ErrChecksumMismatch},
		{"404", serveBytes(body), "/gone.img", sum(body), []string{"404", "/gone.img"}, nil},
		{"500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }, "/box.img", sum(body),
			[]string{"500", "/box.img"}, nil},
		{"html", serveBytes(html), "/box.img", sum(html), []string{"not a disk image", "HTML", "/box.img"}, ErrNotDiskImage},
		{"html with other digest", serveBytes(html), "/box.img", sum(body), []string{"not a disk image"}, ErrNotDiskImage},
		{"no digest", serveBytes(body), "/box.img", "", []string{"box_sha256", "/box.img"}, nil},
		{"bad digest", serveBytes(body), "/box.img", "deadbeef", []string{"box_sha256"}, nil},
		{"truncated", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100000")
			w.Write(body)
		}, "/box.img", sum(body), []string{"/box.img"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.handler)
			cache := t.TempDir()
			_, err := Resolve(t.Context(), srv.URL+tt.path, tt.digest, Options{CacheDir: cache, Client: srv.Client()})
			assertContains(t, err, tt.parts...)
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
			assertNoDownloads(t, cache)
		})
	}
}

// signalWriter closes ch on its first write.
type signalWriter struct {
	once sync.Once
	ch   chan struct{}
}

func (s *signalWriter) Write(p []byte) (int, error) {
	s.once.Do(func() { close(s.ch) })
	return len(p), nil
}

// TestResolveURLCancelThenResume: a cancelled download keeps its partial
// file (and no cache entry); the next Resolve asks for the rest with an
// HTTP Range and verifies the whole.
func TestResolveURLCancelThenResume(t *testing.T) {
	body := fakeQcow2()
	cut := 1500
	release := make(chan struct{})
	defer close(release)
	var ranges []string
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		ranges = append(ranges, r.Header.Get("Range"))
		if len(ranges) == 1 { // the first request stalls after cut bytes
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body[:cut])
			w.(http.Flusher).Flush()
			select { // stall until the client gives up
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		http.ServeContent(w, r, "box.img", time.Time{}, bytes.NewReader(body))
	})
	cache := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	started := &signalWriter{ch: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		_, err := Resolve(ctx, srv.URL+"/box.img", sum(body), Options{CacheDir: cache, Client: srv.Client(), Progress: started})
		errc <- err
	}()
	select {
	case <-started.ch: // the partial file exists and the body is being read
	case err := <-errc:
		t.Fatalf("Resolve returned before the download started: %v", err)
	}
	partial := filepath.Join("partial", "sha256-"+sum(body))
	deadline := time.Now().Add(10 * time.Second)
	for fi, err := os.Stat(filepath.Join(cache, partial)); err != nil || fi.Size() < int64(cut); fi, err = os.Stat(filepath.Join(cache, partial)) {
		if time.Now().After(deadline) {
			t.Fatalf("the partial file never held the first %d bytes: %v", cut, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "run it again to resume") {
		t.Fatalf("err = %v, want context.Canceled with a hint to resume", err)
	}
	if names := listDir(t, cache); !slices.Equal(names, []string{"partial", partial}) {
		t.Fatalf("after cancel the cache holds %q, want only the partial download", names)
	}

	var out bytes.Buffer
	got, err := Resolve(t.Context(), srv.URL+"/box.img", sum(body), Options{CacheDir: cache, Client: srv.Client(), Progress: &out})
	if err != nil || got.SHA256 != sum(body) {
		t.Fatalf("resumed Resolve = %+v, %v", got, err)
	}
	if want := fmt.Sprintf("bytes=%d-", cut); len(ranges) != 2 || ranges[1] != want {
		t.Errorf("requests' Range headers %q, want the second to be %q", ranges, want)
	}
	if !strings.Contains(out.String(), "resuming download") {
		t.Errorf("progress %q does not say it resumed", out.String())
	}
	if data, _ := os.ReadFile(got.Path); !bytes.Equal(data, body) {
		t.Error("resumed download differs from the box")
	}
	if _, err := os.Stat(filepath.Join(cache, "partial")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("partial folder left after the download: %v", err)
	}
}

// TestResumeWithoutRangeStartsOver: a server that ignores Range (200)
// gets the whole file again, and the result is still right.
func TestResumeWithoutRangeStartsOver(t *testing.T) {
	body := fakeQcow2()
	srv := newServer(t, serveBytes(body))
	cache := t.TempDir()
	part := filepath.Join(cache, "partial", "sha256-"+sum(body))
	os.MkdirAll(filepath.Dir(part), 0o755)
	os.WriteFile(part, []byte("stale bytes of some earlier try"), 0o600)
	got, err := Resolve(t.Context(), srv.URL+"/box.img", sum(body), Options{CacheDir: cache, Client: srv.Client()})
	if err != nil || got.SHA256 != sum(body) {
		t.Fatalf("Resolve = %+v, %v", got, err)
	}
}

// TestTwoResolvesDownloadOnce: two downloads of one digest at once make
// one request; the second waits and finds the box cached.
func TestTwoResolvesDownloadOnce(t *testing.T) {
	body := fakeQcow2()
	gate := make(chan struct{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-gate
		serveBytes(body)(w, r)
	})
	cache := t.TempDir()
	var out testutil.Buffer
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := Resolve(t.Context(), srv.URL+"/box.img", sum(body), Options{CacheDir: cache, Client: srv.Client(), Progress: &out})
			errc <- err
		}()
	}
	out.WaitFor(t, "waiting for another download", 10*time.Second)
	close(gate)
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestProgressThrottle(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, "https://x/box.img", 0, 1<<20)
	for range 1000 {
		p.Write(make([]byte, 1024))
	}
	p.done()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	// A fast loop fits in well under one interval: only first and final lines.
	if len(lines) != 2 || !strings.Contains(lines[0], "1.0 MiB") || !strings.HasPrefix(lines[1], "downloaded 1000.0 KiB") {
		t.Errorf("progress lines = %q", lines)
	}
	p.last = p.last.Add(-time.Second)
	out.Reset()
	p.Write(make([]byte, 24*1024))
	if got := out.String(); !strings.Contains(got, "1.0 MiB / 1.0 MiB (100%)") {
		t.Errorf("progress line = %q", got)
	}
}

func TestHumanBytes(t *testing.T) {
	tests := map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"}
	for n, want := range tests {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestResumeOfACompletePartial: a try that ended after the last byte but
// before the rename leaves the whole file; the server answers the Range
// with 416 and the partial file is verified and cached as it is.
func TestResumeOfACompletePartial(t *testing.T) {
	body := fakeQcow2()
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/box.img" {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "box.img", time.Time{}, bytes.NewReader(body))
	})
	cache := t.TempDir()
	part := filepath.Join(cache, "partial", "sha256-"+sum(body))
	os.MkdirAll(filepath.Dir(part), 0o755)
	os.WriteFile(part, body, 0o600)
	got, err := Resolve(t.Context(), srv.URL+"/box.img", sum(body), Options{CacheDir: cache, Client: srv.Client()})
	if err != nil || got.SHA256 != sum(body) || got.Size != int64(len(body)) {
		t.Fatalf("Resolve = %+v, %v", got, err)
	}
	// A 404 then drops a partial file: there is nothing to resume.
	other := fakeQcow2()
	other[700] ^= 1
	part = filepath.Join(cache, "partial", "sha256-"+sum(other))
	os.MkdirAll(filepath.Dir(part), 0o755)
	os.WriteFile(part, other[:100], 0o600)
	if _, err := Resolve(t.Context(), srv.URL+"/gone.img", sum(other), Options{CacheDir: cache, Client: srv.Client()}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("a 404: %v", err)
	}
	if _, err := os.Stat(part); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("partial file after a 404: %v", err)
	}
}

// barWriter is a terminal's progress writer: it keeps the last update.
type barWriter struct {
	bytes.Buffer
	updates []string
}

func (w *barWriter) Update(text string) { w.updates = append(w.updates, text) }
func (w *barWriter) Redraws() bool      { return true }

// TestProgressBarOnATerminal: an Updater that redraws gets the first line
// and a bar with size, rate and time left in place; only the final line
// is written as a line.
func TestProgressBarOnATerminal(t *testing.T) {
	var w barWriter
	p := newProgress(&w, "https://x/box.img", 0, 4<<20)
	p.start = p.start.Add(-2 * time.Second) // a rate to report
	p.last = p.last.Add(-time.Second)
	p.Write(make([]byte, 1<<20))
	p.done()
	if len(w.updates) != 2 || w.updates[0] != "downloading the box (4.0 MiB)" {
		t.Fatalf("updates = %q", w.updates)
	}
	if want := "[######..................] 1.0 MiB / 4.0 MiB (25%), "; !strings.HasPrefix(w.updates[1], want) || !strings.Contains(w.updates[1], " left") {
		t.Errorf("bar = %q, want it to start %q and say the time left", w.updates[1], want)
	}
	if got := w.String(); !strings.HasPrefix(got, "downloaded 1.0 MiB in ") || strings.Count(got, "\n") != 1 {
		t.Errorf("lines written = %q", got)
	}
}

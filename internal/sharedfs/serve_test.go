package sharedfs

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

// fixture is a served folder with a folder beside it that must stay out
// of reach, and a client connected to the server over an in-memory pipe.
type fixture struct {
	root    string // the shared folder
	outside string // a sibling folder holding "secret"
	c       *sftp.Client
	cancel  context.CancelFunc
	done    chan error // receives Serve's result

	once sync.Once
	err  error
}

// result waits for Serve to return and gives its result.
func (f *fixture) result(t *testing.T) error {
	t.Helper()
	f.once.Do(func() { f.err = wait(t, f.done) })
	return f.err
}

// Layout of root:
//
//	a.txt          "hello"
//	sub/b.txt      "bee"
//	empty/
//	in     -> a.txt                 (relative, inside)
//	out    -> <outside>/secret      (absolute, outside)
//	outrel -> ../<outside>/secret   (relative, outside)
//	outdir -> <outside>             (directory outside)
func start(t *testing.T, readOnly bool) *fixture {
	t.Helper()
	return startWith(t, func(ctx context.Context, rwc io.ReadWriteCloser, root string) error {
		return Serve(ctx, rwc, root, readOnly)
	})
}

// startOpts is start with [ServeOptions].
func startOpts(t *testing.T, opts Options) *fixture {
	t.Helper()
	return startWith(t, func(ctx context.Context, rwc io.ReadWriteCloser, root string) error {
		return ServeOptions(ctx, rwc, root, opts)
	})
}

func startWith(t *testing.T, serve func(context.Context, io.ReadWriteCloser, string) error) *fixture {
	t.Helper()
	f := &fixture{root: realTempDir(t), outside: realTempDir(t)}
	must(t, os.WriteFile(filepath.Join(f.outside, "secret"), []byte("secret"), 0o600))
	must(t, os.WriteFile(filepath.Join(f.root, "a.txt"), []byte("hello"), 0o644))
	must(t, os.Mkdir(filepath.Join(f.root, "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(f.root, "sub", "b.txt"), []byte("bee"), 0o644))
	must(t, os.Mkdir(filepath.Join(f.root, "empty"), 0o755))
	must(t, os.Symlink("a.txt", filepath.Join(f.root, "in")))
	must(t, os.Symlink(filepath.Join(f.outside, "secret"), filepath.Join(f.root, "out")))
	must(t, os.Symlink(filepath.Join("..", filepath.Base(f.outside), "secret"), filepath.Join(f.root, "outrel")))
	must(t, os.Symlink(f.outside, filepath.Join(f.root, "outdir")))

	srvConn, cliConn := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.done = make(chan error, 1)
	go func() { f.done <- serve(ctx, srvConn, f.root) }()
	c, err := sftp.NewClientPipe(cliConn, cliConn)
	if err != nil {
		cancel()
		t.Fatalf("sftp client: %v", err)
	}
	f.c = c
	t.Cleanup(func() {
		c.Close()
		cancel()
		f.result(t)
	})
	return f
}

// p returns the absolute path of name inside the shared folder.
func (f *fixture) p(name string) string { return filepath.Join(f.root, name) }

// realTempDir returns a fresh directory with symlinks resolved, so that
// paths compare equal to what the server sees.
func realTempDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	must(t, err)
	return dir
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wait returns Serve's result, failing the test if Serve does not end.
func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
		return nil
	}
}

// isDenied reports whether err carries SFTP's permission denied status.
func isDenied(err error) bool {
	var se *sftp.StatusError
	if errors.As(err, &se) {
		return se.FxCode() == sftp.ErrSSHFxPermissionDenied
	}
	return errors.Is(err, fs.ErrPermission)
}

func readAll(c *sftp.Client, p string) (string, error) {
	f, err := c.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}

func writeFile(c *sftp.Client, p, data string) error {
	f, err := c.Create(p)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte(data)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func hostRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return string(b)
}

func TestServeReads(t *testing.T) {
	f := start(t, false)

	infos, err := f.c.ReadDir(f.root)
	must(t, err)
	var names []string
	for _, fi := range infos {
		names = append(names, fi.Name())
	}
	slices.Sort(names)
	want := []string{"a.txt", "empty", "in", "out", "outdir", "outrel", "sub"}
	if !slices.Equal(names, want) {
		t.Errorf("ReadDir(root) = %v, want %v", names, want)
	}

	fi, err := f.c.Stat(f.p("a.txt"))
	must(t, err)
	if fi.Size() != 5 || fi.IsDir() {
		t.Errorf("Stat(a.txt): size %d dir %v, want 5, false", fi.Size(), fi.IsDir())
	}
	if got, err := readAll(f.c, f.p("a.txt")); err != nil || got != "hello" {
		t.Errorf("read a.txt = %q, %v; want hello", got, err)
	}
	if got, err := readAll(f.c, f.p("sub/b.txt")); err != nil || got != "bee" {
		t.Errorf("read sub/b.txt = %q, %v; want bee", got, err)
	}
	if got, err := readAll(f.c, "a.txt"); err != nil || got != "hello" {
		t.Errorf("read relative a.txt = %q, %v; want hello", got, err)
	}
	if got, err := readAll(f.c, f.p("in")); err != nil || got != "hello" {
		t.Errorf("read through inside symlink = %q, %v; want hello", got, err)
	}
	if fi, err := f.c.Stat(f.p("in")); err != nil || fi.Size() != 5 {
		t.Errorf("Stat(in) follows the link: %v, %v", fi, err)
	}
	if fi, err := f.c.Lstat(f.p("in")); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("Lstat(in) is not a symlink: %v, %v", fi, err)
	}
	if got, err := f.c.ReadLink(f.p("in")); err != nil || got != "a.txt" {
		t.Errorf("ReadLink(in) = %q, %v; want a.txt", got, err)
	}
	if got, err := f.c.RealPath("."); err != nil || got != f.root {
		t.Errorf("RealPath(.) = %q, %v; want %q", got, err, f.root)
	}
	vfs, err := f.c.StatVFS(f.root)
	must(t, err)
	if vfs.Blocks == 0 || vfs.Bsize == 0 {
		t.Errorf("StatVFS(root) = %+v, want sizes", vfs)
	}
}

func TestServeWrites(t *testing.T) {
	f := start(t, false)
	c := f.c

	must(t, writeFile(c, f.p("new.txt"), "data"))
	if got := hostRead(t, f.p("new.txt")); got != "data" {
		t.Fatalf("host new.txt = %q, want data", got)
	}
	hfi, err := os.Stat(f.p("new.txt"))
	must(t, err)
	if uid := hfi.Sys().(*syscall.Stat_t).Uid; int(uid) != os.Getuid() {
		t.Errorf("new.txt owned by uid %d, want %d", uid, os.Getuid())
	}

	// Read and write through one handle, as sshfs does for O_RDWR.
	h, err := c.OpenFile(f.p("new.txt"), os.O_RDWR)
	must(t, err)
	_, err = h.WriteAt([]byte("D"), 0)
	must(t, err)
	buf := make([]byte, 4)
	_, err = h.ReadAt(buf, 0)
	must(t, err)
	must(t, h.Close())
	if string(buf) != "Data" {
		t.Errorf("read back through O_RDWR handle = %q, want Data", buf)
	}

	must(t, c.Rename(f.p("new.txt"), f.p("renamed.txt")))
	must(t, writeFile(c, f.p("other.txt"), "other"))
	must(t, c.PosixRename(f.p("other.txt"), f.p("renamed.txt")))
	if got := hostRead(t, f.p("renamed.txt")); got != "other" {
		t.Errorf("host renamed.txt = %q, want other", got)
	}
	for _, gone := range []string{"new.txt", "other.txt"} {
		if _, err := os.Lstat(f.p(gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still exists after rename: %v", gone, err)
		}
	}

	must(t, c.Truncate(f.p("renamed.txt"), 2))
	if got := hostRead(t, f.p("renamed.txt")); got != "ot" {
		t.Errorf("host renamed.txt after truncate = %q, want ot", got)
	}
	must(t, c.Chmod(f.p("renamed.txt"), 0o600))
	mtime := time.Unix(1_600_000_000, 0)
	must(t, c.Chtimes(f.p("renamed.txt"), mtime, mtime))
	hfi, err = os.Stat(f.p("renamed.txt"))
	must(t, err)
	if hfi.Mode().Perm() != 0o600 || !hfi.ModTime().Equal(mtime) {
		t.Errorf("renamed.txt mode %v mtime %v, want 0600 %v", hfi.Mode().Perm(), hfi.ModTime(), mtime)
	}
	must(t, c.Chown(f.p("renamed.txt"), os.Getuid(), os.Getgid()))

	must(t, c.Symlink("renamed.txt", f.p("link")))
	if got, err := os.Readlink(f.p("link")); err != nil || got != "renamed.txt" {
		t.Errorf("host link -> %q, %v; want renamed.txt", got, err)
	}
	must(t, c.Link(f.p("renamed.txt"), f.p("hard")))
	if got := hostRead(t, f.p("hard")); got != "ot" {
		t.Errorf("host hard link = %q, want ot", got)
	}

	must(t, c.Mkdir(f.p("dir")))
	if hfi, err := os.Stat(f.p("dir")); err != nil || !hfi.IsDir() {
		t.Fatalf("host dir after Mkdir: %v, %v", hfi, err)
	}
	if err := c.Mkdir(f.p("dir")); err == nil {
		t.Error("Mkdir of an existing directory succeeded")
	}
	must(t, writeFile(c, f.p("dir/x"), "x"))
	if err := c.RemoveDirectory(f.p("dir")); err == nil {
		t.Error("RemoveDirectory of a non-empty directory succeeded")
	}
	if err := c.RemoveDirectory(f.p("dir/x")); err == nil {
		t.Error("RemoveDirectory of a file succeeded")
	}
	must(t, c.Remove(f.p("dir/x")))
	must(t, c.RemoveDirectory(f.p("dir")))
	if _, err := os.Lstat(f.p("dir")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dir still exists after RemoveDirectory: %v", err)
	}
	for _, name := range []string{"link", "hard"} {
		must(t, c.Remove(f.p(name)))
		if _, err := os.Lstat(f.p(name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still exists after remove: %v", name, err)
		}
	}
	if got := hostRead(t, f.p("renamed.txt")); got != "ot" {
		t.Errorf("removing the links changed renamed.txt to %q", got)
	}
}

// snapshot records every path under dir with its mode and contents, so a
// test can check that nothing changed.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		v := fi.Mode().String() + " " + fi.ModTime().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			v += " -> " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		m[p] = v
		return nil
	})
	must(t, err)
	return m
}

func checkUnchanged(t *testing.T, dir string, before map[string]string) {
	t.Helper()
	after := snapshot(t, dir)
	for p, v := range before {
		if after[p] != v {
			t.Errorf("%s changed: %q, was %q", p, after[p], v)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
}

// writeOps are all the requests that change the folder; each acts on the
// path it is given (and, for two-path requests, a second path inside root).
func writeOps(f *fixture) map[string]func(p string) error {
	c := f.c
	return map[string]func(string) error{
		"create":        func(p string) error { return writeFile(c, p, "x") },
		"open wronly":   func(p string) error { h, err := c.OpenFile(p, os.O_WRONLY); closeIf(h); return err },
		"open rdwr":     func(p string) error { h, err := c.OpenFile(p, os.O_RDWR); closeIf(h); return err },
		"open trunc":    func(p string) error { h, err := c.OpenFile(p, os.O_WRONLY|os.O_TRUNC); closeIf(h); return err },
		"remove":        func(p string) error { return c.Remove(p) },
		"rmdir":         func(p string) error { return c.RemoveDirectory(p) },
		"mkdir":         func(p string) error { return c.Mkdir(p) },
		"rename from":   func(p string) error { return c.Rename(p, f.p("moved")) },
		"rename to":     func(p string) error { return c.Rename(f.p("a.txt"), p) },
		"posix-rename":  func(p string) error { return c.PosixRename(f.p("a.txt"), p) },
		"chmod":         func(p string) error { return c.Chmod(p, 0o777) },
		"chown":         func(p string) error { return c.Chown(p, os.Getuid(), os.Getgid()) },
		"chtimes":       func(p string) error { return c.Chtimes(p, time.Unix(1, 0), time.Unix(1, 0)) },
		"truncate":      func(p string) error { return c.Truncate(p, 0) },
		"symlink at":    func(p string) error { return c.Symlink("a.txt", p) },
		"link from":     func(p string) error { return c.Link(p, f.p("hard")) },
		"link to":       func(p string) error { return c.Link(f.p("a.txt"), p) },
		"open for read": func(p string) error { _, err := readAll(c, p); return err },
	}
}

func closeIf(h *sftp.File) {
	if h != nil {
		h.Close()
	}
}

func TestServeRefusesPathsOutsideRoot(t *testing.T) {
	f := start(t, false)
	before := snapshot(t, f.outside)
	secret := filepath.Join(f.outside, "secret")
	dotdot := f.root + "/../" + filepath.Base(f.outside) + "/secret"

	// Paths that are outside lexically: every request is refused.
	for _, p := range []string{dotdot, secret, f.outside, "/"} {
		ops := writeOps(f)
		ops["stat"] = func(p string) error { _, err := f.c.Stat(p); return err }
		ops["lstat"] = func(p string) error { _, err := f.c.Lstat(p); return err }
		ops["readlink"] = func(p string) error { _, err := f.c.ReadLink(p); return err }
		ops["readdir"] = func(p string) error { _, err := f.c.ReadDir(p); return err }
		ops["statvfs"] = func(p string) error { _, err := f.c.StatVFS(p); return err }
		for name, op := range ops {
			if err := op(p); !isDenied(err) {
				t.Errorf("%s %s: got %v, want permission denied", name, p, err)
			}
		}
	}
	// A symlink may not be created from outside into root either.
	if err := f.c.Symlink("x", secret+"2"); !isDenied(err) {
		t.Errorf("symlink at %s2: got %v, want permission denied", secret, err)
	}

	// Following a symlink inside root out of it is refused.
	follow := map[string]func(p string) error{
		"open for read": func(p string) error { _, err := readAll(f.c, p); return err },
		"open rdwr":     func(p string) error { h, err := f.c.OpenFile(p, os.O_RDWR); closeIf(h); return err },
		"open trunc":    func(p string) error { h, err := f.c.OpenFile(p, os.O_WRONLY|os.O_TRUNC); closeIf(h); return err },
		"stat":          func(p string) error { _, err := f.c.Stat(p); return err },
		"chmod":         func(p string) error { return f.c.Chmod(p, 0o777) },
		"chtimes":       func(p string) error { return f.c.Chtimes(p, time.Unix(1, 0), time.Unix(1, 0)) },
		"truncate":      func(p string) error { return f.c.Truncate(p, 0) },
	}
	for _, link := range []string{"out", "outrel"} {
		for name, op := range follow {
			if err := op(f.p(link)); !isDenied(err) {
				t.Errorf("%s via symlink %s: got %v, want permission denied", name, link, err)
			}
		}
		// The link itself is visible.
		if fi, err := f.c.Lstat(f.p(link)); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("Lstat(%s) = %v, %v; want a symlink", link, fi, err)
		}
	}
	if got, err := f.c.ReadLink(f.p("out")); err != nil || got != secret {
		t.Errorf("ReadLink(out) = %q, %v; want %q", got, err, secret)
	}

	// A symlinked directory pointing out is refused as a path component.
	inDir := map[string]func(p string) error{
		"readdir": func(p string) error { _, err := f.c.ReadDir(p); return err },
		"create":  func(p string) error { return writeFile(f.c, p+"/new", "x") },
		"read":    func(p string) error { _, err := readAll(f.c, p+"/secret"); return err },
		"remove":  func(p string) error { return f.c.Remove(p + "/secret") },
		"mkdir":   func(p string) error { return f.c.Mkdir(p + "/d") },
		"rename":  func(p string) error { return f.c.Rename(p+"/secret", f.p("stolen")) },
		"link":    func(p string) error { return f.c.Link(p+"/secret", f.p("stolen")) },
	}
	for name, op := range inDir {
		if err := op(f.p("outdir")); !isDenied(err) {
			t.Errorf("%s through symlinked dir outdir: got %v, want permission denied", name, err)
		}
	}

	checkUnchanged(t, f.outside, before)
	if _, err := os.Lstat(f.p("stolen")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stolen exists in root: %v", err)
	}
}

func TestServeReadOnly(t *testing.T) {
	f := start(t, true)
	before := snapshot(t, f.root)

	for name, op := range writeOps(f) {
		if name == "open for read" {
			continue
		}
		for _, p := range []string{f.p("a.txt"), f.p("empty"), f.p("fresh")} {
			if err := op(p); !isDenied(err) {
				t.Errorf("read-only %s %s: got %v, want permission denied", name, p, err)
			}
		}
	}
	checkUnchanged(t, f.root, before)

	// Reads still work.
	if got, err := readAll(f.c, f.p("a.txt")); err != nil || got != "hello" {
		t.Errorf("read-only read a.txt = %q, %v; want hello", got, err)
	}
	if _, err := f.c.ReadDir(f.root); err != nil {
		t.Errorf("read-only ReadDir: %v", err)
	}
	if _, err := f.c.Stat(f.p("sub/b.txt")); err != nil {
		t.Errorf("read-only Stat: %v", err)
	}
	if _, err := f.c.ReadLink(f.p("in")); err != nil {
		t.Errorf("read-only ReadLink: %v", err)
	}
	if _, err := f.c.StatVFS(f.root); err != nil {
		t.Errorf("read-only StatVFS: %v", err)
	}
}

func TestServeReturnsNilWhenClientCloses(t *testing.T) {
	for _, openFile := range []bool{false, true} {
		f := start(t, false)
		if openFile {
			// A file left open turns EOF into io.ErrUnexpectedEOF in pkg/sftp.
			if _, err := f.c.Open(f.p("a.txt")); err != nil {
				t.Fatal(err)
			}
		}
		must(t, f.c.Close())
		if err := f.result(t); err != nil {
			t.Errorf("Serve after client close (file open: %v) = %v, want nil", openFile, err)
		}
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	f := start(t, false)
	if _, err := f.c.Stat(f.root); err != nil {
		t.Fatal(err)
	}
	f.cancel()
	if err := f.result(t); err != nil {
		t.Errorf("Serve after cancel = %v, want nil", err)
	}
	if _, err := f.c.Stat(f.root); err == nil {
		t.Error("request after cancel succeeded")
	}
}

func TestServeReportsProtocolError(t *testing.T) {
	root := realTempDir(t)
	srvConn, cliConn := net.Pipe()
	defer cliConn.Close()
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), srvConn, root, false) }()
	// A packet length far above what SFTP allows.
	if _, err := cliConn.Write([]byte{0xff, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	err := wait(t, done)
	if err == nil || !strings.Contains(err.Error(), root) {
		t.Errorf("Serve on a bad packet = %v, want an error naming %s", err, root)
	}
	// Serve closed its end.
	if _, err := cliConn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read from closed server = %v, want EOF", err)
	}
}

func TestServeRejectsBadRoot(t *testing.T) {
	missing := filepath.Join(realTempDir(t), "missing")
	for _, root := range []string{"relative/dir", missing} {
		srvConn, cliConn := net.Pipe()
		err := Serve(context.Background(), srvConn, root, false)
		if err == nil || !strings.Contains(err.Error(), root) {
			t.Errorf("Serve(%q) = %v, want an error naming it", root, err)
		}
		if _, err := cliConn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("Serve(%q) left its end open: %v", root, err)
		}
		cliConn.Close()
	}
}

func TestCreatePerm(t *testing.T) {
	tests := []struct {
		attrs []byte
		want  fs.FileMode
	}{
		{nil, 0o666},
		{[]byte{0, 0, 0x01, 0xed}, 0o755}, // 0755, big-endian
		{[]byte{0, 0, 0x81, 0xed}, 0o755}, // S_IFREG|0755
		{[]byte{0, 0, 0x09, 0xed}, 0o755}, // 04755: no setuid
		{[]byte{0, 0, 0x0f, 0xed}, 0o755}, // 07755: no setuid, setgid, sticky
		{make([]byte, 8), 0o666},          // not permissions alone
	}
	for _, tt := range tests {
		if got := createPerm(tt.attrs); got != tt.want {
			t.Errorf("createPerm(%v) = %v, want %v", tt.attrs, got, tt.want)
		}
	}
}

func TestCheck(t *testing.T) {
	dir := realTempDir(t)
	file := filepath.Join(dir, "file")
	must(t, os.WriteFile(file, nil, 0o644))
	tests := []struct {
		path string
		want string // substring of the error; "" for success
	}{
		{dir, ""},
		{dir + "/", ""},
		{"proj", `"proj": path is not absolute`},
		{"/", "cannot share /"},
		{filepath.Join(dir, "missing"), filepath.Join(dir, "missing") + " does not exist: create it"},
		{file, file + " is not a directory"},
	}
	for _, tt := range tests {
		err := Check(tt.path)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Check(%q) = %v, want nil", tt.path, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Check(%q) = %v, want error containing %q", tt.path, err, tt.want)
		}
	}
}

func TestRel(t *testing.T) {
	tests := []struct {
		dir, p, want string // want "" means permission denied
	}{
		{"/home/u/proj", "/home/u/proj", "."},
		{"/home/u/proj", "/home/u/proj/", "."},
		{"/home/u/proj", "/home/u/proj/a/b.txt", "a/b.txt"},
		{"/home/u/proj", "/home/u/proj/a/../b.txt", "b.txt"},
		{"/home/u/proj", "a/b.txt", "a/b.txt"},
		{"/home/u/proj", "/home/u/proj2/a", ""},
		{"/home/u/proj", "/home/u/proj/../x", ""},
		{"/home/u/proj", "../x", ""},
		{"/home/u/proj", "/home/u", ""},
		{"/home/u/proj", "/", ""},
		{"/", "/etc/passwd", "etc/passwd"},
		{"/", "/", "."},
	}
	for _, tt := range tests {
		h := &handler{dir: tt.dir}
		got, err := h.rel("open", tt.p)
		switch {
		case tt.want == "" && !errors.Is(err, fs.ErrPermission):
			t.Errorf("rel(%q) under %s = %q, %v; want permission denied", tt.p, tt.dir, got, err)
		case tt.want != "" && (err != nil || got != tt.want):
			t.Errorf("rel(%q) under %s = %q, %v; want %q", tt.p, tt.dir, got, err, tt.want)
		}
	}
}

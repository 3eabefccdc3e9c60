package sharedfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/pkg/sftp"
)

// The tests in this file act as a hostile guest: anything in the VM can
// send any SFTP request.

const setid = fs.ModeSetuid | fs.ModeSetgid

func hostMode(t *testing.T, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	must(t, err)
	return fi.Mode()
}

func TestServeDropsSetuidSetgid(t *testing.T) {
	f := start(t, false)
	raw := startRaw(t, f.root, Options{GuestUID: -1, GuestGID: -1})

	// Created by an open that carries the mode, as sshfs sends it.
	if code := raw.create(f.p("suid"), true, perms(0o104755)); code != statusOK {
		t.Fatalf("create suid with mode 04755: status %d", code)
	}
	if code := raw.create(f.p("sgid"), false, perms(0o6755)); code != statusOK {
		t.Fatalf("create sgid with mode 06755: status %d", code)
	}
	// Made so by chmod (setstat) and by fchmod (fsetstat) of an open handle.
	must(t, f.c.Chmod(f.p("a.txt"), 0o755|setid))
	h, err := f.c.OpenFile(f.p("sub/b.txt"), os.O_RDWR)
	must(t, err)
	must(t, h.Chmod(0o755|setid))
	must(t, h.Close())
	// A setgid directory, by setstat and by mkdir with attributes.
	if code := raw.status(fxpSetstat, append(str(nil, f.p("empty")), perms(0o2755)...)); code != statusOK {
		t.Fatalf("setstat empty 02755: status %d", code)
	}
	if code := raw.status(fxpMkdir, append(str(nil, f.p("dir")), perms(0o6755)...)); code != statusOK {
		t.Fatalf("mkdir dir 06755: status %d", code)
	}

	for _, name := range []string{"suid", "sgid", "a.txt", "sub/b.txt", "empty", "dir"} {
		if m := hostMode(t, f.p(name)); m&setid != 0 {
			t.Errorf("host %s has mode %v, want no setuid or setgid bit", name, m)
		}
	}
	if m := hostMode(t, f.p("a.txt")); m.Perm() != 0o755 {
		t.Errorf("host a.txt has permissions %v after chmod 06755, want 0755", m.Perm())
	}

	// The sticky bit is kept: it restricts deletion, it grants nothing.
	must(t, f.c.Chmod(f.p("empty"), 0o777|fs.ModeSticky))
	if m := hostMode(t, f.p("empty")); m&fs.ModeSticky == 0 || m.Perm() != 0o777 {
		t.Errorf("host empty has mode %v after chmod 01777, want the sticky bit and 0777", m)
	}
}

// A setuid or setgid file made on the host loses the bits as soon as the
// guest opens it for writing or truncates it, so the guest cannot put its
// own contents under them. The kernel does this for unprivileged writers
// but not for root, the host user this guards.
func TestServeClearsSetidOnWrite(t *testing.T) {
	f := start(t, false)
	for _, name := range []string{"w", "rw", "trunc"} {
		must(t, os.WriteFile(f.p(name), []byte("host"), 0o755))
		must(t, os.Chmod(f.p(name), 0o755|setid))
	}
	h, err := f.c.OpenFile(f.p("w"), os.O_WRONLY)
	must(t, err)
	must(t, h.Close())
	h, err = f.c.OpenFile(f.p("rw"), os.O_RDWR)
	must(t, err)
	must(t, h.Close())
	must(t, f.c.Truncate(f.p("trunc"), 1))

	for _, name := range []string{"w", "rw", "trunc"} {
		if m := hostMode(t, f.p(name)); m&setid != 0 || m.Perm() != 0o755 {
			t.Errorf("host %s has mode %v after the guest wrote to it, want 0755", name, m)
		}
	}

	// Reading leaves the bits alone.
	must(t, os.Chmod(f.p("w"), 0o755|setid))
	if _, err := readAll(f.c, f.p("w")); err != nil {
		t.Fatal(err)
	}
	if m := hostMode(t, f.p("w")); m&setid != setid {
		t.Errorf("host w has mode %v after the guest read it, want setuid and setgid kept", m)
	}
}

// owner returns the host owner of p.
func owner(t *testing.T, p string) (uid, gid int) {
	t.Helper()
	fi, err := os.Stat(p)
	must(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}

func TestServeRefusesChownToOthers(t *testing.T) {
	const guestUID, guestGID, other = 4242, 4343, 12345
	f := startOpts(t, Options{GuestUID: guestUID, GuestGID: guestGID})
	uid, gid := owner(t, f.p("a.txt"))
	if uid == other || gid == other || uid == guestUID || gid == guestGID || uid == guestGID {
		t.Skipf("the host user's ids %d:%d clash with the test's", uid, gid)
	}
	checkOwner := func(what string) {
		t.Helper()
		if u, g := owner(t, f.p("a.txt")); u != uid || g != gid {
			t.Errorf("after %s: a.txt owned by %d:%d, want %d:%d", what, u, g, uid, gid)
		}
	}

	// No-ops: the file's own ids (root's, when the tests run as root), the
	// guest user's, -1 for "unchanged", and mixes of these.
	for _, ids := range [][2]int{{uid, gid}, {guestUID, guestGID}, {-1, guestGID}, {guestUID, -1}, {-1, -1}, {uid, guestGID}} {
		what := fmt.Sprintf("chown %d:%d", ids[0], ids[1])
		if err := f.c.Chown(f.p("a.txt"), ids[0], ids[1]); err != nil {
			t.Errorf("%s: %v, want success", what, err)
		}
		checkOwner(what)
	}

	// Anything else is refused, by path, through a symlink and by handle.
	for _, ids := range [][2]int{{other, other}, {other, gid}, {uid, other}, {-1, other}, {guestGID, guestUID}} {
		what := fmt.Sprintf("chown %d:%d", ids[0], ids[1])
		if err := f.c.Chown(f.p("a.txt"), ids[0], ids[1]); !isDenied(err) {
			t.Errorf("%s: got %v, want permission denied", what, err)
		}
		if err := f.c.Chown(f.p("in"), ids[0], ids[1]); !isDenied(err) {
			t.Errorf("%s through symlink in: got %v, want permission denied", what, err)
		}
		checkOwner(what)
	}
	h, err := f.c.OpenFile(f.p("a.txt"), os.O_RDWR)
	must(t, err)
	if err := h.Chown(other, other); !isDenied(err) {
		t.Errorf("fchown %d:%d: got %v, want permission denied", other, other, err)
	}
	if err := h.Chown(guestUID, guestGID); err != nil {
		t.Errorf("fchown to the guest's ids: %v, want success", err)
	}
	must(t, h.Close())
	checkOwner("fchown")

	// A refused chown takes the rest of its setstat down with it.
	raw := startRaw(t, f.root, Options{GuestUID: guestUID, GuestGID: guestGID})
	attrs := be32(be32(be32(be32(nil, attrUIDGID|attrPerms), other), other), 0o600)
	if code := raw.status(fxpSetstat, append(str(nil, f.p("a.txt")), attrs...)); code != statusPerm {
		t.Errorf("setstat chown %d:%d and chmod 0600: status %d, want permission denied", other, other, code)
	}
	if m := hostMode(t, f.p("a.txt")); m.Perm() != 0o644 {
		t.Errorf("a.txt has permissions %v after a refused setstat, want 0644", m.Perm())
	}
	checkOwner("setstat")

	// With the guest's ids unknown, only the file's own ids are a no-op.
	g := start(t, false)
	if err := g.c.Chown(g.p("a.txt"), guestUID, guestGID); !isDenied(err) {
		t.Errorf("Serve: chown to %d:%d: got %v, want permission denied", guestUID, guestGID, err)
	}
	if err := g.c.Chown(g.p("a.txt"), uid, gid); err != nil {
		t.Errorf("Serve: chown to the file's own ids: %v, want success", err)
	}
}

// countFDs returns the number of open file descriptors of the test
// process, or -1 where /proc/self/fd does not list them.
func countFDs(t *testing.T) int {
	t.Helper()
	if runtime.GOOS != "linux" {
		return -1
	}
	ents, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	return len(ents)
}

// isHandleLimit reports whether err is the SFTP failure that tells the
// guest the folder's open-file limit was reached.
func isHandleLimit(err error) bool {
	var se *sftp.StatusError
	return errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxFailure &&
		strings.Contains(err.Error(), "open-file limit")
}

func TestServeCapsOpenHandles(t *testing.T) {
	const max = 8
	// Make the runtime open what it keeps open (the poller) before counting.
	warm, err := os.Open(os.Args[0])
	must(t, err)
	warm.Close()
	before := countFDs(t)

	f := startOpts(t, Options{GuestUID: -1, GuestGID: -1, MaxHandles: max})
	for i := range max {
		must(t, os.WriteFile(f.p(fmt.Sprint(i)), []byte("data"), 0o644))
	}
	// Every way of opening a file holds a handle: read-only (Fileread),
	// write-only (Filewrite) and read-write (OpenFile).
	openers := []func(p string) (*sftp.File, error){
		func(p string) (*sftp.File, error) { return f.c.Open(p) },
		func(p string) (*sftp.File, error) { return f.c.OpenFile(p, os.O_WRONLY) },
		func(p string) (*sftp.File, error) { return f.c.OpenFile(p, os.O_RDWR) },
		func(p string) (*sftp.File, error) { return f.c.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL) },
	}
	openAll := func() []*sftp.File {
		t.Helper()
		var hs []*sftp.File
		for i := range max {
			h, err := openers[i%3](f.p(fmt.Sprint(i)))
			must(t, err)
			hs = append(hs, h)
		}
		return hs
	}
	refused := func(when string) {
		t.Helper()
		for i, open := range openers {
			h, err := open(f.p("a.txt"))
			if i == 3 {
				h, err = open(f.p("new"))
			}
			if err == nil {
				h.Close()
			}
			if !isHandleLimit(err) {
				t.Errorf("%s: opener %d: got %v, want the open-file limit failure", when, i, err)
			}
		}
		if _, err := os.Lstat(f.p("new")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: a refused create made the file: %v", when, err)
		}
	}

	hs := openAll()
	refused("with the cap reached")
	if before >= 0 {
		// The root directory and one per handle; refused opens hold none.
		if n := countFDs(t); n != before+1+max {
			t.Errorf("%d descriptors open at the cap, want %d", n, before+1+max)
		}
	}

	// The handles still work: fstat, read, write and fsetstat.
	if fi, err := hs[0].Stat(); err != nil || fi.Size() != 4 {
		t.Errorf("fstat of an open handle = %v, %v; want size 4", fi, err)
	}
	buf := make([]byte, 4)
	if _, err := hs[0].ReadAt(buf, 0); err != nil || string(buf) != "data" {
		t.Errorf("read through a read-only handle = %q, %v", buf, err)
	}
	if _, err := hs[1].WriteAt([]byte("D"), 0); err != nil {
		t.Errorf("write through a write-only handle: %v", err)
	}
	if _, err := hs[2].WriteAt([]byte("X"), 3); err != nil {
		t.Errorf("write through a read-write handle: %v", err)
	}
	if _, err := hs[2].ReadAt(buf, 0); err != nil || string(buf) != "datX" {
		t.Errorf("read through a read-write handle = %q, %v; want datX", buf, err)
	}
	if err := hs[2].Chmod(0o600); err != nil {
		t.Errorf("fsetstat of an open handle: %v", err)
	}
	if got := hostRead(t, f.p("1")); got != "Data" {
		t.Errorf("host file 1 = %q, want Data", got)
	}
	// Requests that hold no file stay available.
	if _, err := f.c.ReadDir(f.root); err != nil {
		t.Errorf("readdir at the cap: %v", err)
	}
	if _, err := f.c.Stat(f.p("a.txt")); err != nil {
		t.Errorf("stat at the cap: %v", err)
	}

	// Closing a handle frees exactly one slot.
	must(t, hs[0].Close())
	hs[0], err = f.c.Open(f.p("a.txt"))
	if err != nil {
		t.Fatalf("open after closing a handle: %v", err)
	}
	refused("with the cap reached again")

	// Closing them all frees all the slots.
	for _, h := range hs {
		must(t, h.Close())
	}
	openAll()
	refused("after reopening")

	// The guest going away with files open closes them.
	must(t, f.c.Close())
	if err := f.result(t); err != nil {
		t.Errorf("Serve = %v", err)
	}
	if before >= 0 {
		if n := countFDs(t); n != before {
			t.Errorf("%d descriptors open after Serve returned, want %d as before", n, before)
		}
	}
}

// nlink returns the number of names of the host file p.
func nlink(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	must(t, err)
	return uint64(fi.Sys().(*syscall.Stat_t).Nlink)
}

// A hard link made by the guest never gives a file outside the folder a
// name inside it (or the reverse), and never gives a setuid or setgid file
// a second name.
func TestServeLinkStaysInside(t *testing.T) {
	f := start(t, false)
	secret := filepath.Join(f.outside, "secret")
	// Chains of symlinks that lead out only after more than one hop:
	// indir -> sub (inside), sub/o -> <outside>, chain -> outdir.
	must(t, os.Symlink("sub", f.p("indir")))
	must(t, os.Symlink(f.outside, f.p("sub/o")))
	must(t, os.Symlink("outdir", f.p("chain")))
	before := snapshot(t, f.outside)

	for _, src := range []string{"outdir/secret", "indir/o/secret", "chain/secret"} {
		if err := f.c.Link(f.p(src), f.p("stolen")); !isDenied(err) {
			t.Errorf("link from %s: got %v, want permission denied", src, err)
		}
	}
	for _, dst := range []string{"outdir/planted", "indir/o/planted", "chain/planted"} {
		if err := f.c.Link(f.p("a.txt"), f.p(dst)); !isDenied(err) {
			t.Errorf("link to %s: got %v, want permission denied", dst, err)
		}
	}
	if _, err := os.Lstat(f.p("stolen")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stolen exists in root: %v", err)
	}
	checkUnchanged(t, f.outside, before)

	// A link whose source is itself a symlink names the symlink, as
	// link(2) does, not the file it points to: the outside file gets no
	// second name, only a second symlink the guest could have made anyway.
	for _, src := range []string{"out", "outrel"} {
		dst := src + "-hard"
		if err := f.c.Link(f.p(src), f.p(dst)); err != nil {
			t.Errorf("link from symlink %s: %v", src, err)
			continue
		}
		if m := hostMode(t, f.p(dst)); m&fs.ModeSymlink == 0 {
			t.Errorf("link from symlink %s made a %v, want a symlink", src, m)
		}
	}
	if n := nlink(t, secret); n != 1 {
		t.Errorf("the outside secret has %d names, want 1", n)
	}

	// A setuid or setgid file made on the host gets no second name.
	for what, mode := range map[string]fs.FileMode{"setuid": fs.ModeSetuid, "setgid": fs.ModeSetgid} {
		p := f.p("setid")
		must(t, os.WriteFile(p, nil, 0o755))
		must(t, os.Chmod(p, 0o755|mode))
		if err := f.c.Link(p, f.p("setid-hard")); !isDenied(err) {
			t.Errorf("link from a %s file: got %v, want permission denied", what, err)
		}
		if n := nlink(t, p); n != 1 {
			t.Errorf("the %s file has %d names, want 1", what, n)
		}
		must(t, os.Remove(p))
		os.Remove(f.p("setid-hard"))
	}
}

# Replays changes made on the host in a shared folder, so that inotify in
# the guest sees them. devbox's agent runs it as root over its SSH
# connection. Records on stdin are "id NUL op NUL path NUL size NUL"; each
# gets one line on stdout, "id ok" or "id why it failed", in the order they
# finish: a few threads replay at once (each request waits on the host),
# and the records of one path always go to the same thread, in order.
#
# On a reverse-SSHFS folder (no arguments) the requests are the changes
# themselves, and the server answers them without touching the host, where
# they already happened (see sharedfs.Replays).
#
# On a virtio-fs folder ("virtiofs ROOT IGNORED-NAME...") every request
# reaches the host, so none may change a thing there: an edited or new
# file is opened for writing and closed, and given its own mode again
# (close_write and attrib, and nothing written); a new folder gets its own
# mode again (attrib); a removal raises nothing. The guest's own changes
# are seen here by inotify, so that their echo from the host is dropped:
# each is reported on stdout as "g HEX-PATH" (the agent then sends no
# request for its echo), and a request that comes anyway is skipped.
import ctypes
import os
import queue
import struct
import sys
import threading
import time
import zlib


def fields(stream):
    buf = b""
    while True:
        i = buf.find(b"\0")
        if i >= 0:
            yield buf[:i]
            buf = buf[i + 1:]
            continue
        chunk = stream.read1(65536)
        if not chunk:
            return
        buf += chunk


def arm(path):
    # The server hides path from the lookup that follows this one
    # (sharedfs.ReplayMarker), so the kernel takes the create path.
    try:
        os.lstat(os.path.join(os.path.dirname(path), b".devbox-replay"))
    except OSError:
        pass


IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_TO, IN_CREATE, IN_ISDIR = 0x80, 0x100, 0x40000000
ECHO = 2.0  # seconds after a guest change in which a host event is its echo
MINE = 1.0  # seconds after a replay in which inotify events on it are its own


class GuestChanges:
    """The paths the guest itself changed under root, by inotify."""

    def __init__(self, root, ignored):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.ignored = set(ignored)
        self.dirs = {}
        self.lock = threading.Lock()
        self.changed = {}
        self.mine = {}
        self.add_tree(root)
        threading.Thread(target=self.follow, daemon=True).start()

    def add_tree(self, top):
        mask = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
        for path, subdirs, _ in os.walk(top):
            subdirs[:] = [d for d in subdirs if d not in self.ignored]
            wd = self.libc.inotify_add_watch(self.fd, path, mask)
            if wd >= 0:
                with self.lock:
                    self.dirs[wd] = path

    def follow(self):
        while True:
            buf = os.read(self.fd, 65536)
            now = time.monotonic()
            seen = []
            i = 0
            while i < len(buf):
                wd, mask, _, n = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + n].rstrip(b"\0")
                i += 16 + n
                with self.lock:
                    folder = self.dirs.get(wd)
                if folder is None or not name:
                    continue
                path = os.path.join(folder, name)
                if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                    self.add_tree(path)
                with self.lock:
                    if now - self.mine.get(path, -MINE) >= MINE:
                        self.changed[path] = now
                        seen.append(path)
                    if len(self.changed) > 10000:
                        self.changed = {p: t for p, t in self.changed.items() if now - t < ECHO}
                        self.mine = {p: t for p, t in self.mine.items() if now - t < MINE}
            if seen:
                emit("".join("g %s\n" % p.hex() for p in dict.fromkeys(seen)))

    def echo(self, path):
        """Whether path changed in the guest lately; if not, the replay about
        to happen is marked as ours."""
        now = time.monotonic()
        with self.lock:
            if now - self.changed.get(path, -ECHO) < ECHO:
                return True
            self.mine[path] = now
            return False


guest = None  # GuestChanges on a virtio-fs folder


def touch(path):
    if guest.echo(path):
        return
    folder = os.path.isdir(path)
    flags = os.O_RDONLY | os.O_DIRECTORY if folder else os.O_WRONLY | os.O_NONBLOCK
    fd = os.open(path, flags | os.O_NOFOLLOW)
    try:
        os.fchmod(fd, os.fstat(fd).st_mode & 0o1777)
    finally:
        os.close(fd)


def replay(op, path, size):
    if guest is not None:
        if op in (b"modify", b"create", b"mkdir"):
            touch(path)
        if op == b"mkdir":
            # The host made it: the guest's inotify never saw it appear.
            guest.add_tree(path)
        return
    if op == b"modify":  # open, modify, close_write
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
    elif op == b"create":  # create, open, close_write
        arm(path)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644))
    elif op == b"mkdir":
        arm(path)
        os.mkdir(path)
    elif op == b"remove":
        os.unlink(path)
    elif op == b"rmdir":
        os.rmdir(path)
    else:
        raise ValueError("unknown operation %r" % op)


WORKERS = 8
out_lock = threading.Lock()


def emit(text):
    with out_lock:
        sys.stdout.write(text)
        sys.stdout.flush()


def answer(rid, msg):
    emit("%s %s\n" % (rid, msg))


def worker(q):
    while True:
        rid, op, path, size = q.get()
        try:
            replay(op, path, size)
            answer(rid, "ok")
        except OSError as e:
            answer(rid, e.strerror or e)
        except ValueError as e:
            answer(rid, e)


if len(sys.argv) > 2 and sys.argv[1] == "virtiofs":
    guest = GuestChanges(os.fsencode(sys.argv[2]), [os.fsencode(a) for a in sys.argv[3:]])
queues = [queue.Queue() for _ in range(WORKERS)]
for q in queues:
    threading.Thread(target=worker, args=(q,), daemon=True).start()
records = fields(sys.stdin.buffer)
for rid in records:
    op = next(records)
    path = next(records)
    size = int(next(records) or b"0")
    queues[zlib.crc32(path) % WORKERS].put((rid.decode(), op, path, size))

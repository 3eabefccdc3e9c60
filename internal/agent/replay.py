# Replays changes made on the host in a shared folder, so that inotify in
# the guest sees them (see sharedfs.Replays: the server answers these
# requests without touching the host, where they already happened).
# devbox's agent runs it as root over its SSH connection. Records on
# stdin are "id NUL op NUL path NUL size NUL"; each gets one line on
# stdout, "id ok" or "id why it failed", in the order they finish: a
# few threads replay at once (each request waits on the host), and the
# records of one path always go to the same thread, in order.
import os
import queue
import sys
import threading
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


def replay(op, path, size):
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


def answer(rid, msg):
    with out_lock:
        sys.stdout.write("%s %s\n" % (rid, msg))
        sys.stdout.flush()


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


queues = [queue.Queue() for _ in range(WORKERS)]
for q in queues:
    threading.Thread(target=worker, args=(q,), daemon=True).start()
records = fields(sys.stdin.buffer)
for rid in records:
    op = next(records)
    path = next(records)
    size = int(next(records) or b"0")
    queues[zlib.crc32(path) % WORKERS].put((rid.decode(), op, path, size))

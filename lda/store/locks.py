"""Mailbox locks: the check-deliver-record sequence runs under one of these.

A lock is an flock(2) on one of 256 stripe files, picked by a hash of the
mailbox key, so the lock directory never grows and the kernel releases the
lock when a holder dies (even by SIGKILL).  Several stripes are always taken
in ascending order, so two fan-outs cannot deadlock.  filelock's UnixFileLock
takes the same flock, so admin commands built on it exclude deliveries.
"""

import _thread
import errno
import fcntl
import os
import sys
import time

from ..errors import TemporaryFailure, UnsafePath
from ..startup.zlib import crc32_for

STRIPES = 256
# A key's stripe is zlib.crc32 of its UTF-8 % STRIPES, and must stay so: an
# older and a newer lda may run side by side.  A delivery's few keys are
# hashed without loading zlib (startup/zlib.py).


def stripes_of(keys):
    """The sorted, distinct stripes of mailbox keys."""
    data = [key.encode("utf-8", "surrogatepass") for key in keys]
    crc32 = crc32_for(len(data))
    return sorted({crc32(d) % STRIPES for d in data})


def stripe_of(key):
    return stripes_of([key])[0]


def lock_path(lock_dir, stripe):
    return os.path.join(lock_dir, f"{stripe:03d}.lock")


class MailboxLocks:
    """Holds the stripe locks for a set of mailbox keys (context manager)."""

    def __init__(self, lock_dir, keys, timeout=60, clock=time.monotonic, open_dir=None):
        self.lock_dir = lock_dir
        # open_dir(): a descriptor of lock_dir, checked by the caller (lda as
        # root, see Delivery._open_state); None: lock_dir by its path.
        self.open_dir = open_dir
        self.dir_fd = None
        self.stripes = stripes_of(keys)
        self.timeout = timeout
        self.clock = clock
        self.fds = []

    def __enter__(self):
        deadline = self.clock() + self.timeout
        try:
            if self.open_dir is not None:
                self.dir_fd = self.open_dir()
            for stripe in self.stripes:
                self.fds.append(self._acquire(lock_path(self.lock_dir, stripe), deadline))
        except OSError as e:
            self.release()
            if e.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink someone planted
                raise UnsafePath(f"{self.lock_dir}: a lock file is a symlink") from None
            raise TemporaryFailure(f"{self.lock_dir}: cannot lock: {e.strerror}") from None
        except BaseException:
            self.release()
            raise
        return self

    def _open(self, path):
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        if self.dir_fd is not None:
            return os.open(os.path.basename(path), flags, 0o600, dir_fd=self.dir_fd)
        try:
            return os.open(path, flags, 0o600)
        except FileNotFoundError:  # no lock directory yet: made once, not checked each time
            os.makedirs(self.lock_dir, mode=0o700, exist_ok=True)
            return os.open(path, flags, 0o600)

    def _acquire(self, path, deadline):
        fd = self._open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        except BaseException:
            os.close(fd)
            raise
        if not _wait_for(fd, deadline - self.clock()):  # fd is the waiter's now
            raise TemporaryFailure(f"mailbox busy: lock {path} held for "
                                   f"more than {self.timeout}s")
        return fd

    def release(self):
        for fd in self.fds:
            os.close(fd)  # closing drops the flock
        self.fds = []
        if self.dir_fd is not None:
            os.close(self.dir_fd)
            self.dir_fd = None

    def __exit__(self, *exc):
        self.release()


def _wait_for(fd, timeout):
    """Take the flock on fd, waiting at most timeout seconds: True once it
    is held, False when the time ran out first.

    A blocking flock, in a thread of its own, so that the lock goes to a
    waiter the moment its holder lets go: polling with LOCK_NB and growing
    sleeps left a hot mailbox's lock free for nearly half of the time that
    deliveries were waiting for it (bench/profiles/lmtp-hot-mailbox-after.txt).
    The caller waits for that thread at most timeout seconds.  A thread given
    up on keeps fd: it closes it, dropping the lock, as soon as it gets it;
    an error of the flock itself (EINTR is retried by Python, ENOLCK...) is
    raised here.  _thread rather than threading: `lda deliver` does not
    load threading, and only a delivery that meets a held lock starts one."""
    taken = _thread.allocate_lock()
    taken.acquire()
    mutex = _thread.allocate_lock()
    state = []  # [] waiting; ["gave up"]; [None] taken; [OSError]

    def take():
        error = None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            error = e
        with mutex:
            if state:  # given up on: nobody else will close fd
                os.close(fd)
                return
            state.append(error)
        taken.release()

    _thread.start_new_thread(take, ())
    try:
        taken.acquire(timeout=max(timeout, 0.0))
    finally:  # an exception here (a signal's) gives up too
        with mutex:
            gave_up = not state
            if gave_up:
                state.append("gave up")
            elif sys.exc_info()[0] is not None:
                os.close(fd)
    if gave_up:
        return False
    if state[0] is not None:
        os.close(fd)
        raise state[0]
    return True

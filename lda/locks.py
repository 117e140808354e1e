"""Mailbox locks: the check-deliver-record sequence runs under one of these.

A lock is an flock(2) on one of 256 stripe files, picked by a hash of the
mailbox key, so the lock directory never grows and the kernel releases the
lock when a holder dies (even by SIGKILL).  Several stripes are always taken
in ascending order, so two fan-outs cannot deadlock.  filelock's UnixFileLock
takes the same flock, so admin commands built on it exclude deliveries.
"""

import fcntl
import os
import time
import zlib

from .errors import TemporaryFailure

STRIPES = 256


def stripe_of(key):
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % STRIPES


def lock_path(lock_dir, stripe):
    return os.path.join(lock_dir, f"{stripe:03d}.lock")


class MailboxLocks:
    """Holds the stripe locks for a set of mailbox keys (context manager)."""

    def __init__(self, lock_dir, keys, timeout=60, clock=time.monotonic):
        self.lock_dir = lock_dir
        self.stripes = sorted({stripe_of(k) for k in keys})
        self.timeout = timeout
        self.clock = clock
        self.fds = []

    def __enter__(self):
        deadline = self.clock() + self.timeout
        try:
            os.makedirs(self.lock_dir, mode=0o700, exist_ok=True)
            for stripe in self.stripes:
                self.fds.append(self._acquire(lock_path(self.lock_dir, stripe), deadline))
        except OSError as e:
            self.release()
            raise TemporaryFailure(f"{self.lock_dir}: cannot lock: {e.strerror}") from None
        except BaseException:
            self.release()
            raise
        return self

    def _acquire(self, path, deadline):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        delay = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if self.clock() >= deadline:
                    os.close(fd)
                    raise TemporaryFailure(f"mailbox busy: lock {path} held for "
                                           f"more than {self.timeout}s") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def release(self):
        for fd in self.fds:
            os.close(fd)  # closing drops the flock
        self.fds = []

    def __exit__(self, *exc):
        self.release()

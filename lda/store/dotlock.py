"""Dovecot's dotlock (lib/file-dotlock.c), for the files lda changes in a
Maildir that Dovecot changes too: dovecot-keywords, under the folder's
dovecot-uidlist.lock (lda.store.keywords), and the subscriptions file,
under subscriptions.lock (lda.store.subscriptions).

The lock is NAME created with O_EXCL, never through a symlink.  A writer
either keeps "pid:host" in it (holder=True), or, as Dovecot does for the
subscriptions file, writes the file's new contents into it and renames it
over the file (replace()).  A lock whose holder, a process on this host,
is gone, or that has not changed for the lock's stale time, is a dead
writer's: it is removed, only if it is still the very lock judged stale,
and the writer tries again.
"""

import os
import time

READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
LOCK_POLL_SECONDS = 0.05


class DotLock:
    """Dovecot's dotlock on a file of the directory open as dir_fd (context
    manager): NAME made O_EXCL, waited for until timeout, a stale one
    replaced (see the module docstring).  Every failure raises `unusable`
    (an LdaError class) naming the lock (under path, when given); the
    caller goes on without the change, since neither file may fail a
    delivery."""

    def __init__(self, dir_fd, path, name, timeout, unusable, stale_seconds,
                 clock=time.monotonic, sleep=time.sleep, host=None, holder=True):
        self.dir_fd, self.name = dir_fd, name
        self.where = f"{path}/{name}" if path else name  # as failures name the lock
        self.path = path
        self.timeout, self.unusable, self.stale_seconds = timeout, unusable, stale_seconds
        self.clock, self.sleep, self.holder = clock, sleep, holder
        self.host = host or os.uname().nodename  # Dovecot's my_hostname
        self.inode = self.fd = None

    def __enter__(self):
        deadline = self.clock() + self.timeout
        while True:
            try:
                fd = os.open(self.name, CREATE_FLAGS, 0o600, dir_fd=self.dir_fd)
                break
            except FileExistsError:
                if self._override_stale():
                    continue
                if self.clock() >= deadline:
                    raise self.unusable(f"{self.where}: still held after "
                                        f"{self.timeout} s") from None
                self.sleep(LOCK_POLL_SECONDS)
            except OSError as e:
                raise self.unusable(f"{self.where}: {e.strerror}") from None
        try:
            self.inode = os.fstat(fd).st_ino
            if self.holder:
                os.write(fd, f"{os.getpid()}:{self.host}".encode())
        except OSError as e:  # a full disk: an empty lock would wait out its stale time
            os.close(fd)
            self.__exit__()
            raise self.unusable(f"{self.where}: {e.strerror}") from None
        if self.holder:
            os.close(fd)
        else:
            self.fd = fd
        return self

    def replace(self, target, data, give):
        """Write data into the lock (holder=False), fsync it, give it the
        target's permissions (give: a function of its descriptor; see
        maildir.give_file) and rename it over target: the lock is then
        gone, the file replaced in one step."""
        try:
            give(self.fd)
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
            os.fsync(self.fd)
            os.rename(self.name, target, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except OSError as e:
            where = f"{self.path}/{target}" if self.path else target
            raise self.unusable(f"{where}: cannot write: {e.strerror}") from None

    def __exit__(self, *exc):
        """Remove the lock, unless another process judged it stale and
        replaced it meanwhile (or replace() renamed it): that one is not
        ours to remove."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        try:
            if os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False).st_ino == self.inode:
                os.unlink(self.name, dir_fd=self.dir_fd)
        except OSError:
            pass  # gone already; a leftover one turns stale

    def _override_stale(self):
        """Remove the lock if it is stale: its holder, a process on this
        host, is gone, or it has not changed for stale_seconds.  True when
        it was removed (or vanished): try again at once."""
        try:
            st = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return True
        stale = (time.time() - st.st_mtime > self.stale_seconds
                 or _holder_gone(self._holder(), self.host))
        if not stale:
            return False
        try:  # only the lock judged stale, not one made since (as Dovecot checks)
            now = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
            if (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns):
                os.unlink(self.name, dir_fd=self.dir_fd)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise self.unusable(f"{self.where}: stale, cannot remove: "
                                f"{e.strerror}") from None
        return True

    def _holder(self):
        """The lock's text ("pid:host"), or b"" when it cannot be read."""
        try:
            fd = os.open(self.name, READ_FLAGS, dir_fd=self.dir_fd)
        except OSError:
            return b""
        try:
            return os.read(fd, 512)
        except OSError:
            return b""
        finally:
            os.close(fd)


def _holder_gone(text, host):
    """Whether text names a process of this host that no longer exists.
    A lock without a pid (being written, another host's, or one that
    holds a file's new contents) is not judged by its holder, only by its
    age."""
    pid, colon, holder_host = text.strip().partition(b":")
    if not (colon and pid.isdigit() and holder_host.decode("utf-8", "replace") == host):
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # EPERM: it exists, as another user's
    # Alive, even if it is this process: an LMTP server's other thread.
    return False

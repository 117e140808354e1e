"""The Maildir's `subscriptions` file, which IMAP's LSUB and LIST
(SUBSCRIBED) read: a folder a delivery makes is added to it, as Dovecot's
lda_mailbox_autosubscribe = yes does, so that a client that lists
subscribed folders only (Thunderbird's and Roundcube's default) shows the
folder the mail went to.

The file is Dovecot's (lib-storage's subscription-file.c), written as
Dovecot writes it so that Dovecot and lda can take turns: one folder a line;
a file that starts "V<tab>2" and an empty line names a folder by its
Maildir++ levels joined with a tab ("Lists<tab>Sub"), a file without that
header (Dovecot's version 1) by its Maildir++ name ("Lists.Sub"); a new
file is version 2.  Names are modified UTF-7, as on disk.  A writer holds
`subscriptions.lock` (made with O_EXCL, Dovecot's dotlock), writes the new
contents into it and renames it over the file; a lock left untouched for
STALE_SECONDS is a dead writer's and is removed, as Dovecot does.

Kept apart from lda.store.maildir: only a delivery that makes a folder
imports it.
"""

import errno
import os
import stat
import time

NAME = "subscriptions"
LOCK = NAME + ".lock"
HEADER = b"V\t2\n\n"
# Dovecot's stale_timeout for this lock: older than this, its writer is gone.
STALE_SECONDS = 30
# How long a delivery waits for another writer's lock before it goes on
# without the subscription (a writer holds it for a read and a write).
WAIT_SECONDS = 2
# Larger than this, the file is not one a delivery rewrites.
MAX_BYTES = 1 << 20


def subscribe(root_fd, folder):
    """Add folder (a Maildir++ directory name: ".Lists.Sub") to the
    subscriptions file of the Maildir open as root_fd, unless it is there.
    None, or why it was not added: the caller logs that and goes on, as
    Dovecot does (a subscription never fails a delivery)."""
    try:
        fd = _lock(root_fd)
    except OSError as e:
        return f"{LOCK}: {e.strerror}"
    if fd is None:
        return f"{LOCK} held by another process for over {WAIT_SECONDS} s"
    locked = True
    try:
        old, why = _read(root_fd)
        new = _with(old, folder[1:]) if why is None else None
        if new is not None:
            view = memoryview(new)
            while view:  # lda.store.maildir's write_all, which imports this module
                view = view[os.write(fd, view):]
            os.fsync(fd)
            os.rename(LOCK, NAME, src_dir_fd=root_fd, dst_dir_fd=root_fd)
            locked = False
        return why
    except OSError as e:
        return f"{NAME}: {e.strerror}"
    finally:
        os.close(fd)
        if locked:
            _unlink(root_fd, LOCK)


def _lock(root_fd):
    """The lock file, open for writing; None after WAIT_SECONDS of another
    writer's lock."""
    mode = os.fstat(root_fd).st_mode & 0o666
    deadline, delay = time.monotonic() + WAIT_SECONDS, 0.005
    while True:
        try:
            fd = os.open(LOCK, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, mode, dir_fd=root_fd)
        except FileExistsError:
            if _stale(root_fd):
                _unlink(root_fd, LOCK)
                continue
            if time.monotonic() >= deadline:
                return None
            time.sleep(delay)
            delay = min(2 * delay, 0.1)
            continue
        os.fchmod(fd, mode)  # whatever the umask: the Maildir's own mode
        return fd


def _stale(root_fd):
    try:
        changed = os.stat(LOCK, dir_fd=root_fd, follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return True  # gone meanwhile: try again
    return time.time() - changed > STALE_SECONDS


def _read(root_fd):
    """(the file's bytes or None when there is none, None) or (None, why
    it is not one to rewrite)."""
    try:
        fd = os.open(NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=root_fd)
    except FileNotFoundError:
        return None, None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None, f"{NAME} is a symlink; not followed"
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, f"{NAME} is not a regular file"
        if info.st_size > MAX_BYTES:
            return None, f"{NAME} is larger than {MAX_BYTES} bytes"
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks), None
    finally:
        os.close(fd)


def _with(old, name):
    """The file's new contents with the folder Maildir++-named `name`
    ("Lists.Sub") subscribed, or None when it already is.  An unterminated
    last line is kept (Dovecot drops it: a subscription lost)."""
    if old is None or old.startswith(HEADER):
        header, lines, line = HEADER, (old or HEADER)[len(HEADER):].split(b"\n"), \
            name.replace(".", "\t").encode()
    else:
        header, lines, line = b"", old.split(b"\n"), name.encode()
    if lines[-1] == b"":
        lines.pop()
    if line in lines:
        return None
    return header + b"".join(entry + b"\n" for entry in [*lines, line])


def _unlink(root_fd, name):
    try:
        os.unlink(name, dir_fd=root_fd)
    except FileNotFoundError:
        pass

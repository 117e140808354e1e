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
`subscriptions.lock` (Dovecot's dotlock: lda.store.dotlock), writes the
new contents into it and renames it over the file; a lock left untouched
for STALE_SECONDS is a dead writer's.

Kept apart from lda.store.maildir: only a delivery that makes a folder
imports it.
"""

import errno
import os
import stat

from ..errors import SubscriptionsUnusable
from .dotlock import READ_FLAGS, DotLock

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


def subscribe(root_fd, folder, give):
    """Add folder (a Maildir++ directory name: ".Lists.Sub") to the
    subscriptions file of the Maildir open as root_fd, unless it is there;
    give(fd) gives the new file the root's file mode and group, as Dovecot
    gives them (maildir.give_file).
    None, or why it was not added: the caller logs that and goes on, as
    Dovecot does (a subscription never fails a delivery)."""
    try:
        with DotLock(root_fd, None, LOCK, WAIT_SECONDS, SubscriptionsUnusable, STALE_SECONDS,
                     holder=False) as lock:
            new = _with(_read(root_fd), folder[1:])
            if new is not None:
                lock.replace(NAME, new, give)
    except SubscriptionsUnusable as e:
        return str(e)
    return None


def _read(root_fd):
    """The file's bytes, or None when there is none; SubscriptionsUnusable
    for one lda does not rewrite."""
    try:
        fd = os.open(NAME, READ_FLAGS, dir_fd=root_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SubscriptionsUnusable(f"{NAME} is a symlink; not followed"
                                    if e.errno == errno.ELOOP else f"{NAME}: {e.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SubscriptionsUnusable(f"{NAME} is not a regular file")
        if info.st_size > MAX_BYTES:
            raise SubscriptionsUnusable(f"{NAME} is larger than {MAX_BYTES} bytes")
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as e:
        raise SubscriptionsUnusable(f"{NAME}: {e.strerror}") from None
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

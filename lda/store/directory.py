"""The managed directory: which mailboxes exist, where, and their quotas.

A SQLite file under state_dir, written by the admin commands (see
lda/admin/mailboxes.py, through sqlite-utils) and read here, on the delivery
path, with the standard library only.  A mailbox's Maildir path is chosen by
the admin tooling when the mailbox is created and stored relative to its
database root: a recipient string never becomes a path.

Where several hosts share a directory (README, "Scaling out"), each
database names the host that holds it, and a host delivers only to its own
(check_host); with a PostgreSQL directory this file is the host's mirror of
it, and its `mirror` row says how fresh it is (unknown()).
"""

import os
import time

from ..errors import (ConfigError, DirectoryStale, OnOtherHost, TemporaryFailure,
                      UnknownRecipient)
from ..startup.collections import record
from ..startup.sqlite3 import sqlite3

# maildir is relative to db_root; a quota of None means the lda.toml default;
# host is the host that holds the database (None: the only host).
Mailbox = record("Mailbox", "address database db_root maildir quota_storage "
                 "quota_messages forward keep_copy host")

# With directory = "postgresql://...", directory.sqlite is this host's mirror
# of the shared directory: an address it does not know is unknown (5.1.1)
# only while the mirror heard from PostgreSQL this recently; after that it
# may just not have the mailbox yet, and the recipient is deferred (4.3.0).
MIRROR_STALE_SECONDS = 30


def in_domain(domain):
    """A LIKE pattern (ESCAPE '\\') for the addresses of `domain`."""
    for special in "\\%_":
        domain = domain.replace(special, "\\" + special)
    return "%@" + domain


class Directory:
    """Read-only view used by deliveries."""

    def __init__(self, path, untouched=False):
        """untouched (`lda explain`): not even SQLite's WAL is created; with
        none there, the file is read as it stands."""
        self.path = path
        if not os.path.exists(path):
            raise ConfigError(f"{path}: no mailbox directory; create mailboxes with "
                              "'lda mailbox create' (or set mode = \"user\")")
        # A directory that is there but cannot be read (an I/O error, a disk
        # going away) is a temporary failure, not a configuration error: 75
        # is what every MTA retries (Exim's pipe, for one, bounces on 78).
        try:
            as_is = untouched and not os.path.exists(path + "-wal")
            self.conn = sqlite3.connect(f"file:{path}?mode=ro" + "&immutable=1" * as_is,
                                        uri=True, timeout=30,
                                        isolation_level=None)
        except sqlite3.Error as e:
            raise TemporaryFailure(f"{path}: cannot open mailbox directory: {e}") from None

    # The host in the same SELECT: a delivery pays no query for it.
    MAILBOX = ("SELECT m.address, m.database, d.path, m.maildir, m.quota_storage, "
               "m.quota_messages, m.forward, m.keep_copy, {host} FROM mailboxes m "
               "JOIN databases d ON d.name = m.database WHERE m.address = ?")

    DEFAULT_DATABASE = ("SELECT name, path, {host} FROM databases "
                        "ORDER BY name = 'default' DESC, name")

    def _with_host(self, sql, column, args=()):
        """sql run with {host} as column; as NULL on a directory from before
        hosts (m003) that no admin command has migrated yet, where every
        database is this host's."""
        try:
            return self.conn.execute(sql.format(host=column), args)
        except sqlite3.OperationalError as e:
            if "no such column" not in str(e):
                raise
            return self.conn.execute(sql.format(host="NULL"), args)

    def mailbox(self, address):
        try:
            row = self._with_host(self.MAILBOX, "d.host", (address,)).fetchone()
        except sqlite3.DatabaseError as e:
            raise TemporaryFailure(f"{self.path}: unreadable mailbox directory: {e}") from None
        if row is None:
            return None
        forward = tuple(a for a in (row[6] or "").split("\n") if a)
        return Mailbox(*row[:6], forward, bool(row[7]), row[8])

    @staticmethod
    def on_other_host(host, host_name):
        """Whether a database held by `host` is another host's than host_name
        (lda.toml's): one of no host is every host's (a site of one host), one
        of a host that host's alone, and no host's whose host_name is empty.
        Only its host delivers to it or opens its files."""
        return bool(host) and host != host_name

    @staticmethod
    def check_host(mailbox, host_name):
        """OnOtherHost (451 4.3.0, exit 75) when mailbox's database is held
        by another host than host_name (on_other_host): writing here would
        split its Maildir and DeliveredTo rows over two machines."""
        if Directory.on_other_host(mailbox.host, host_name):
            raise OnOtherHost(mailbox.address, mailbox.host)

    def snapshot(self):
        """A context in which every read sees the directory as of its first
        one: one read transaction (SQLite's shared-memory read mark taken and
        given back once) for the several reads of a resolve, instead of one
        each.  It is ended however the block ends, exception or not: a read
        transaction left open would pin this connection to an old copy of
        the directory for the rest of the process (a mailbox created or
        moved since would stay unseen)."""
        return _Snapshot(self.conn, self.path)

    def version(self):
        """A number that changes whenever another connection commits to the
        directory (a mailbox created, deleted or moved)."""
        try:
            return self.conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise TemporaryFailure(f"{self.path}: unreadable mailbox directory: {e}") from None

    def has_domain(self, domain):
        """Whether any mailbox has an address in `domain` (lower case)."""
        try:
            return self.conn.execute("SELECT 1 FROM mailboxes WHERE address LIKE ? ESCAPE '\\' "
                                     "LIMIT 1", (in_domain(domain),)).fetchone() is not None
        except sqlite3.DatabaseError as e:
            raise TemporaryFailure(f"{self.path}: unreadable mailbox directory: {e}") from None

    def moving(self, address):
        """Whether `lda mailbox move` is working on this mailbox right now.
        A move to another host (admin/hostmove.py) that has flipped is the
        target's to deliver: there the mailbox is no longer moving, and
        here check_host defers it."""
        try:
            return self.conn.execute("SELECT 1 FROM moves WHERE address = ? AND "
                                     "coalesce(step, '') != 'flipped'",
                                     (address,)).fetchone() is not None
        except sqlite3.OperationalError:  # a directory from before moves existed
            return False

    def unknown(self, address, mirror, clock=time.time):
        """The error for an address nobody answers to: UnknownRecipient
        (5.1.1), unless this file is a mirror (mirror: lda.toml's directory
        is PostgreSQL) that has not heard from its source for
        MIRROR_STALE_SECONDS, or never has: then a temporary failure, since
        the mailbox may exist and not be copied here yet."""
        if mirror:
            age = self.mirror_age(clock)
            if age is None:
                return DirectoryStale(f"unknown recipient {address}: the directory "
                                        "mirror has never been synced")
            if age > MIRROR_STALE_SECONDS:
                return DirectoryStale(f"unknown recipient {address}: directory mirror "
                                        f"is {int(age)} s old")
        return UnknownRecipient(f"unknown recipient {address}")

    def mirror_age(self, clock=time.time):
        """Seconds since the mirror last heard from its source; None when
        it never has (no `mirror` row, or a directory from before m003)."""
        try:
            row = self.conn.execute("SELECT max(synced) FROM mirror").fetchone()
        except sqlite3.OperationalError:
            return None
        except sqlite3.DatabaseError as e:
            raise TemporaryFailure(f"{self.path}: unreadable mailbox directory: {e}") from None
        return None if row[0] is None else max(0.0, clock() - row[0])

    def transport(self, host):
        """hosts.transport of host (what a front-end MTA's transport map
        answers for its mailboxes), or None when there is no such host."""
        try:
            row = self.conn.execute("SELECT transport FROM hosts WHERE name = ?",
                                    (host,)).fetchone()
        except sqlite3.DatabaseError as e:
            raise TemporaryFailure(f"{self.path}: unreadable mailbox directory: {e}") from None
        return row[0] if row else None

    def default_database(self, host_name=""):
        """(name, path) of the database that holds records for aliases:
        'default', else the first by name, of those this host holds (by
        check_host's rule): another host's path is on its disk, not here."""
        rows = self._with_host(self.DEFAULT_DATABASE, "host").fetchall()
        if not rows:
            raise ConfigError(f"{self.path}: no mailbox database defined")
        for name, path, host in rows:
            if not self.on_other_host(host, host_name):
                return name, path
        raise TemporaryFailure(f"no mailbox database on host {host_name or '(none)'} "
                               "to keep an alias's DeliveredTo rows in: create one "
                               "(`lda db create NAME --host HOST`)")

    def close(self):
        self.conn.close()


class _Snapshot:
    """Directory.snapshot().  Inside one that is open already (nested), a
    no-op: the outer one ends the transaction."""

    __slots__ = ("conn", "path", "began")

    def __init__(self, conn, path):
        self.conn, self.path, self.began = conn, path, False

    def __enter__(self):
        if not self.conn.in_transaction:
            try:
                self.conn.execute("BEGIN")  # deferred: the first read starts it
            except sqlite3.DatabaseError as e:
                raise TemporaryFailure(f"{self.path}: unreadable mailbox directory: "
                                       f"{e}") from None
            self.began = True
        return self

    def __exit__(self, *exc):
        if self.began:
            self.began = False
            # A read transaction has nothing to undo: ROLLBACK only ends it,
            # and, unlike COMMIT, cannot fail for want of a lock.
            self.conn.rollback()
        return False

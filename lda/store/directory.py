"""The managed directory: which mailboxes exist, where, and their quotas.

A SQLite file under state_dir, written by the admin commands (see
directory_admin.py, through sqlite-utils) and read here, on the delivery
path, with the standard library only.  A mailbox's Maildir path is chosen by
the admin tooling when the mailbox is created and stored relative to its
database root: a recipient string never becomes a path.
"""

import os

from ..errors import ConfigError, TemporaryFailure
from ..startup.collections import record
from ..startup.sqlite3 import sqlite3

# maildir is relative to db_root; a quota of None means the lda.toml default.
Mailbox = record("Mailbox", "address database db_root maildir quota_storage "
                 "quota_messages forward keep_copy")


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

    def mailbox(self, address):
        try:
            row = self.conn.execute(
                "SELECT m.address, m.database, d.path, m.maildir, m.quota_storage, "
                "m.quota_messages, m.forward, m.keep_copy FROM mailboxes m "
                "JOIN databases d ON d.name = m.database WHERE m.address = ?",
                (address,)).fetchone()
        except sqlite3.DatabaseError as e:
            raise TemporaryFailure(f"{self.path}: unreadable mailbox directory: {e}") from None
        if row is None:
            return None
        forward = tuple(a for a in (row[6] or "").split("\n") if a)
        return Mailbox(*row[:6], forward, bool(row[7]))

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
        """Whether `lda mailbox move` is working on this mailbox right now."""
        try:
            return self.conn.execute("SELECT 1 FROM moves WHERE address = ?",
                                     (address,)).fetchone() is not None
        except sqlite3.OperationalError:  # a directory from before moves existed
            return False

    def default_database(self):
        """(name, path) of the database that holds records for aliases."""
        row = self.conn.execute(
            "SELECT name, path FROM databases ORDER BY name = 'default' DESC, name "
            "LIMIT 1").fetchone()
        if row is None:
            raise ConfigError(f"{self.path}: no mailbox database defined")
        return row

    def close(self):
        self.conn.close()

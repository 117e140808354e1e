"""Mailbox databases as the admin sees them: a row in the directory's
`databases` table (name, path) and, under that path, the Maildirs and the
lda.sqlite file with the DeliveredTo table and the partial records.

Admin commands only; the delivery path opens databases through
deliveredto.py.  Nothing here creates an lda.sqlite that does not exist yet:
a database nobody has delivered to simply has no rows.
"""

import os
import time
from contextlib import contextmanager
from datetime import datetime, timezone

from ..errors import UnknownName, UsageError
from ..store.deliveredto import DB_FILE, DeliveredTo
from ..store.directory import Directory
from .state import guarded, probe


def iso_utc(timestamp):
    """A Unix time as ISO 8601 UTC ("2026-11-24T10:00:00Z"); None stays None."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(float(timestamp), timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# 10000-01-01T00:00:00Z: datetime, and so every date lda prints, ends before it.
LAST_MOMENT = 253402300800


def parse_moment(text, key="time"):
    """A moment as an admin writes it: Unix seconds ("1800000000") or ISO
    8601 ("2026-12-04T10:00:00Z", "2026-12-04"); without a zone it is UTC,
    as every time lda prints is.  UsageError (64) otherwise."""
    text = text.strip()
    if text.isascii() and text.replace(".", "", 1).isdigit():
        moment = float(text)
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(f"{key}: {text!r} is neither Unix seconds nor an ISO 8601 "
                             "time such as 2026-12-04T10:00:00Z") from None
        moment = (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
    if not 0 <= moment < LAST_MOMENT:  # what iso_utc can print
        raise UsageError(f"{key}: {text!r} is not between 1970 and the year 9999")
    return moment


def database_row(db, name):
    """The directory row of database name; UnknownName (67) if there is none."""
    rows = list(db["databases"].rows_where("name = ?", [name]))
    if not rows:
        raise UnknownName(f"no mailbox database named {name!r}")
    return rows[0]


def held_here(config, database):
    """Whether this host holds `database` (a directory row as a dict), so
    that its files are on this host's disk: a database of no host is the
    only host's (a single-host site), one of a host that host's alone, by
    the rule deliveries follow (Directory.check_host).  Commands that open
    a database's files work on these only; on another host, the same path
    may be nothing, or another database."""
    return not Directory.on_other_host(database.get("host"), config.host_name)


def refuse_elsewhere(config, database):
    """UsageError (64) for a database another host holds: the command that
    reads or changes its files runs there."""
    if not held_here(config, database):
        raise UsageError(f"database {database['name']} is on host {database['host']}: "
                         "run this on that host")


def database_rows(db, name=None):
    """One database's row (name given) or all of them, by name."""
    if name is not None:
        return [database_row(db, name)]
    return list(db["databases"].rows_where(order_by="name"))


def open_deliveredto(config, path, clock=time.time, create=False):
    """The DeliveredTo table of the database at path; None while its
    lda.sqlite does not exist, unless create (listing must not create it).
    A file that is damaged or cannot be opened is an LdaError naming it."""
    file = os.path.join(path, DB_FILE)
    if os.path.lexists(file):
        probe(file)  # before DeliveredTo, whose errors name no file
    elif not create:
        return None
    with guarded(file):
        return DeliveredTo(path, config.expiration_hours,
                           config.cleanup_interval_seconds, clock)


@contextmanager
def deliveredto(config, path, clock=time.time):
    """open_deliveredto() for a with block: the store, or None while there
    is none; closed at the end.  A page found damaged in the block (the
    open reads only the schema) is an LdaError naming the file too."""
    store = open_deliveredto(config, path, clock)
    try:
        with guarded(os.path.join(path, DB_FILE)):
            yield store
    finally:
        if store is not None:
            store.close()


def disk_bytes(path):
    """Bytes in the regular files below path (Maildirs and SQLite files),
    or None if path is missing.  Iterative, so deep folder trees cannot hit
    the recursion limit, and symlinks are neither followed nor counted: a
    link out of the database must not make it look bigger."""
    if not os.path.isdir(path):
        return None
    total, pending = 0, [path]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except (FileNotFoundError, NotADirectoryError):
            continue    # removed while we walked (a message expunged)
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue
    return total


def _table_counts(config, path):
    """(DeliveredTo rows, partial records) of the database at path."""
    with deliveredto(config, path) as store:
        if store is None:
            return 0, 0
        rows = store.conn.execute("SELECT COUNT(*) FROM delivered_to").fetchone()[0]
        partial = store.conn.execute(
            "SELECT COUNT(*) FROM partial_deliveries").fetchone()[0]
        return rows, partial


def describe(db, config, row):
    """Everything `lda db list` and `lda db show` print about one database."""
    mailboxes = db["mailboxes"].count_where("database = ?", [row["name"]])
    rows, partial = _table_counts(config, row["path"])
    return {"name": row["name"], "path": row["path"], "host": row.get("host"),
            "mailboxes": mailboxes,
            "deliveredto_rows": rows, "pending_partial": partial,
            "disk_bytes": disk_bytes(row["path"]), "created": iso_utc(row["created"])}


def list_databases(db, config):
    return [describe(db, config, row) for row in database_rows(db)]


def show_database(db, config, name):
    return describe(db, config, database_row(db, name))

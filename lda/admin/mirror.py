"""This host's mirror of a PostgreSQL directory: directory.sqlite in
state_dir, which deliveries read as they read a single host's directory.

sync() copies the directory's rows into the mirror when PostgreSQL's
version counter (pgdirectory.py) differs from the one the mirror holds, all
in one SQLite transaction on the file in place (never a file swapped in
under the readers' feet: a delivery that has it open keeps a consistent
view, WAL), and records in the `mirror` row the source (its URL without a
password), the version copied, and when it last heard from PostgreSQL.
Follower is `lda directory sync --follow`: LISTEN for the directory's
NOTIFY, poll once a second all the same (the heartbeat that keeps
`synced` fresh, so that deliveries can tell a dead follower), and while
PostgreSQL is down, retry with backoff and leave the mirror as it is.
"""

import os
import select
import sqlite3
import time

import psycopg
from psycopg.rows import tuple_row

from ..errors import TemporaryFailure
from .databases import iso_utc
from .pgdirectory import (CHANNEL, TABLES, PgDirectory, checked_url, connect, guarded_pg,
                          public_url, unreachable)
from .state import check_state_dir, connect as connect_sqlite

HEARTBEAT_SECONDS = 1.0
# Reconnect attempts while PostgreSQL is down: at most 5 s apart, so that a
# mirror is fresh again within seconds of PostgreSQL's return (unknown
# recipients defer while it is stale).
BACKOFF_SECONDS = (1, 2, 5)


def snapshot(directory):
    """(version, {table: rows}) as of one moment of PostgreSQL."""
    conn = directory.conn
    with guarded_pg(directory.url), conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor = conn.cursor(row_factory=tuple_row)
        version = cursor.execute("SELECT version FROM directory_version").fetchone()[0]
        rows = {}
        for table, (pk, columns) in TABLES.items():
            rows[table] = cursor.execute(
                f"SELECT {', '.join(columns)} FROM {table} ORDER BY {pk}").fetchall()
    return version, rows


def mirrored_version(mirror, source):
    row = mirror.conn.execute("SELECT version FROM mirror WHERE source = ?",
                              (source,)).fetchone()
    return row[0] if row else None


def sync(directory, mirror, clock=time.time):
    """One pass: bring the mirror (an open SQLite directory, migrated) up
    to date with directory (a PgDirectory).  Returns what it did.

    PostgreSQL is read while the mirror's write lock is held: two passes
    (the follower's, an admin command's) then copy in the order of their
    snapshots, so the mirror never goes back to an older one.  Deliveries
    read on meanwhile (WAL); they wait for no lock."""
    start = time.monotonic()
    source = public_url(directory.url)
    conn = mirror.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        current, copied = directory.version(), None
        if mirrored_version(mirror, source) != current:
            current, copied = snapshot(directory)
            for table in reversed(TABLES):
                conn.execute(f"DELETE FROM {table}")
            for table, (_, columns) in TABLES.items():
                conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                                 f"({', '.join('?' * len(columns))})", copied[table])
        conn.execute("DELETE FROM mirror WHERE source != ?", (source,))
        conn.execute("INSERT INTO mirror (source, version, synced) VALUES (?, ?, ?) "
                     "ON CONFLICT (source) DO UPDATE SET version = excluded.version, "
                     "synced = excluded.synced", (source, current, clock()))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return {"source": source, "version": current, "copied": copied is not None,
            "mailboxes": len(copied["mailboxes"]) if copied else None,
            "seconds": round(time.monotonic() - start, 3)}


def sync_once(url, open_mirror, clock=time.time):
    """`lda directory sync`: one pass.  PostgreSQL unreachable: a
    TemporaryFailure (75) before the mirror is even opened."""
    directory = PgDirectory(url)
    try:
        mirror = open_mirror()
        try:
            return sync(directory, mirror, clock)
        finally:
            mirror.close()
    finally:
        directory.close()


def mirror_row(path):
    """The mirror row of the SQLite directory at path, or None."""
    if not os.path.exists(path):
        return None
    conn = connect_sqlite(path, readonly=True)
    try:
        row = conn.execute("SELECT source, version, synced FROM mirror "
                           "ORDER BY synced DESC LIMIT 1").fetchone()
    except sqlite3.OperationalError:
        return None  # a directory from before m003: no mirror table yet
    finally:
        conn.close()
    return dict(zip(("source", "version", "synced"), row)) if row else None


def status(config, clock=time.time, timeout=3):
    """`lda directory status`: where the directory is, and for a shared
    one, the mirror's source, version and age, and PostgreSQL's version
    now (None when it cannot be reached within timeout seconds)."""
    check_state_dir(config)
    row = mirror_row(config.directory_path) or {}
    synced = row.get("synced")
    report = {"directory": public_url(config.directory), "shared": True,
              "mirror": config.directory_path, "mirror_source": row.get("source"),
              "version": row.get("version"),
              "synced": iso_utc(synced) if synced is not None else None,
              "age_seconds": round(clock() - synced, 1) if synced is not None else None,
              "directory_version": None}
    try:
        conn = connect(config.directory, connect_timeout=timeout)
    except TemporaryFailure as e:
        report["error"] = str(e)
        return report
    try:
        with guarded_pg(config.directory):
            report["directory_version"] = conn.execute(
                "SELECT version FROM directory_version").fetchone()["version"]
    except TemporaryFailure as e:
        report["error"] = str(e)  # reachable, but no lda directory there yet
    finally:
        conn.close()
    return report


class Follower:
    """`lda directory sync --follow`.  open_mirror() opens the SQLite
    directory; log(line) reports; stop() (from a signal handler) ends
    run() within a moment, between two passes."""

    def __init__(self, url, open_mirror, log, clock=time.time):
        self.url, self.open_mirror, self.log, self.clock = url, open_mirror, log, clock
        checked_url(url)  # a malformed URL is the admin's to fix (78), not retried
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self.stopping = False

    def stop(self):
        self.stopping = True
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass  # the pipe is full: run() is waking already

    def _wait(self, seconds, conn=None):
        """Sleep up to seconds, or until a NOTIFY (conn readable) or stop()."""
        watched = [self._wake_read] + ([conn.fileno()] if conn is not None else [])
        ready, _, _ = select.select(watched, [], [], seconds)
        if self._wake_read in ready:
            os.read(self._wake_read, 64)

    def run(self):
        failures = 0
        while not self.stopping:
            try:
                self._follow()
            except Exception as e:  # noqa: BLE001 (reported, then retried)
                reason = e if not isinstance(e, psycopg.Error) else unreachable(self.url, e)
                delay = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)]
                failures += 1
                self.log(f"{reason}; mirror left as it is, retrying in {delay} s")
                self._wait(delay)
            else:
                failures = 0
        self.log("stopped")
        return 0

    def _follow(self):
        directory = PgDirectory(self.url)
        mirror = self.open_mirror()
        try:
            with guarded_pg(self.url):
                directory.conn.execute(f"LISTEN {CHANNEL}")
            # A handler, so psycopg keeps no backlog of the notifications:
            # each one only wakes _wait(), and the version says the rest.
            directory.conn.add_notify_handler(lambda notify: None)
            self.log(f"following {public_url(self.url)}")
            while not self.stopping:
                done = sync(directory, mirror, self.clock)
                if done["copied"]:
                    self.log(f"copied version {done['version']}: {done['mailboxes']} "
                             f"mailboxes in {done['seconds']} s")
                self._wait(HEARTBEAT_SECONDS, directory.conn)
                # Whatever woke us, the next pass reads the version anew; the
                # notifications themselves are drained by that query.
        finally:
            mirror.close()
            directory.close()

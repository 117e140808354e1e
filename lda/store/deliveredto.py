"""The DeliveredTo table: what each mailbox of one database has received.

Key: (mailbox, Message-ID or content digest, client submit time in UTC).  A
row is written "pending" (with the file name it will get), and the WAL
synced, before the file is linked into new/ under the mailbox lock, and
marked "delivered" after new/ is fsynced.  A plain Maildir delivery writes
its pending row before it takes the lock and syncs new/ after it lets go
(lda.deliver.delivery).  A pending row found by a lock holder is a delivery
that died midway, one whose "delivered" commit a power cut took back (that
commit is not synced), one still to take the lock, or one that let go and
is syncing new/: the file name in it says whether the link happened; a file
found is synced again before the row counts as delivered, and a row without
its file is claimed anew (its own writer, if alive, then finds the new row
under the lock and judges it).

The schema is versioned with PRAGMA user_version rather than sqlite-utils
migrations because the delivery path creates it and must not pay for
importing sqlite-utils, which costs several deliveries' time.
"""

import _thread
import os
import time

from ..errors import TemporaryFailure, UnsafePath
from ..startup.sqlite3 import sqlite3
from .maildir import fsync_dir

SCHEMA_VERSION = 4
ROW_COLUMNS = "(mailbox, message_id, submit_time, delivered_at, state, location)"
SCHEMA = """
CREATE TABLE IF NOT EXISTS delivered_to (
    mailbox TEXT NOT NULL,
    message_id TEXT NOT NULL,
    submit_time TEXT NOT NULL,
    delivered_at REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered')),
    location TEXT,
    body_digest TEXT,
    PRIMARY KEY (mailbox, message_id, submit_time)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS delivered_to_age ON delivered_to (delivered_at);
CREATE TABLE IF NOT EXISTS partial_deliveries (
    id INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    target TEXT NOT NULL,
    mailbox TEXT,
    message_id TEXT NOT NULL,
    submit_time TEXT NOT NULL,
    reason TEXT NOT NULL,
    spool_file TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    last_attempt REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sieve_duplicates (
    mailbox TEXT NOT NULL, key TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (mailbox, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sieve_vacations (
    mailbox TEXT NOT NULL, sender TEXT NOT NULL, handle TEXT NOT NULL,
    sent_at REAL NOT NULL, expires REAL, PRIMARY KEY (mailbox, sender, handle)
) WITHOUT ROWID;
"""
# UPGRADES[n] takes a version n database to n+1; version 0 is a new file,
# which SCHEMA creates whole.


def _add_body_digest(conn):
    columns = [row[1] for row in conn.execute("PRAGMA table_info(delivered_to)")]
    if "body_digest" not in columns:
        conn.execute("ALTER TABLE delivered_to ADD COLUMN body_digest TEXT")


def _created_by_schema(conn):
    pass


def _add_vacation_expiry(conn):
    """When a vacation reply's period ends, so that cleanup can drop the
    row; rows from before have none and are kept, as they always were."""
    columns = [row[1] for row in conn.execute("PRAGMA table_info(sieve_vacations)")]
    if "expires" not in columns:
        conn.execute("ALTER TABLE sieve_vacations ADD COLUMN expires REAL")


# Version 3 added the Sieve tables, which SCHEMA creates IF NOT EXISTS;
# version 4 the end of each vacation reply's period.
UPGRADES = [_created_by_schema, _add_body_digest, _created_by_schema, _add_vacation_expiry]
DB_FILE = "lda.sqlite"
BUSY_TIMEOUT_MS = 30_000
# Pages the WAL may hold before a commit checkpoints it.  A process that
# exits without closing (see leave_open_until_exit) leaves the WAL for the
# next one to read back, which takes time in proportion to its pages: at
# SQLite's default of 1000, a noticeable part of a delivery.
WAL_AUTOCHECKPOINT = 100
# A cleanup transaction deletes at most CLEANUP_BATCH rows and commits once
# it has held the write lock for about CLEANUP_HOLD_SECONDS, looking at the
# clock every CLEANUP_CHUNK rows.  Expired keys are scattered over the table,
# so each row dirties a page of its own, and costs more to delete than to
# commit.  On a loaded machine a hold can take several times as long as it
# aims for.
CLEANUP_BATCH = 600
CLEANUP_HOLD_SECONDS = 0.010
CLEANUP_CHUNK = 16
CLEANUP_BUDGET_SECONDS = 0.05


def connect(path, timeout_ms=BUSY_TIMEOUT_MS):
    """A connection in autocommit mode; transactions are explicit."""
    try:
        # timeout= is sqlite3_busy_timeout(): PRAGMA busy_timeout would set it again.
        conn = sqlite3.connect(path, timeout=timeout_ms / 1000, isolation_level=None)
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
        return conn
    except sqlite3.Error as e:
        raise TemporaryFailure(f"{path}: cannot open database: {e}") from None


# Connections that close() leaves to the end of the process, or None.
_left_open = None
# database path -> the lock this process's threads queue on before writing.
_writer_locks = {}
# (st_dev, st_ino) of the WAL files whose directory entry this process synced.
_wals_synced = set()


def leave_open_until_exit():
    """From now on close() keeps connections open; the caller must end the
    process with os._exit, never closing them.

    When the last connection to a WAL database closes, SQLite checkpoints it,
    syncs the database file and deletes the WAL, and the next process creates
    the WAL again, syncing its header and the directory: half the fsyncs of
    a one-shot `lda deliver`.  Exiting without closing is what
    SQLite sees when a process dies, a case it is built for: the next
    connection reads the WAL back (recovery), and commits checkpoint it every
    WAL_AUTOCHECKPOINT pages.  Nothing committed is at risk: the WAL holds it.
    (Python 3.12 could say this with SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE; 3.11
    has no way to.)"""
    global _left_open
    if _left_open is None:
        _left_open = []


class DeliveredTo:
    """One mailbox database's DeliveredTo table (and partial records)."""

    def __init__(self, db_root, expiration_hours=168, cleanup_interval=3600,
                 clock=time.time, kept=False, open_root=None):
        """open_root(): a descriptor of db_root that the caller checked (lda
        as root, see Delivery._open_state), whose SQLite files are then
        checked too; None: db_root by its path."""
        self.db_root = db_root
        self.path = os.path.join(db_root, DB_FILE)
        self.expiration = expiration_hours * 3600
        self.cleanup_interval = cleanup_interval
        self.clock = clock
        if open_root is not None:
            check_files(open_root(), self.path)
        else:
            try:
                os.makedirs(db_root, mode=0o700, exist_ok=True)
            except OSError as e:
                raise TemporaryFailure(f"{db_root}: cannot create: {e.strerror}") from None
        self.conn = connect(self.path)
        # meta.last_cleanup as read_cleanup_stamp() found it, for the next
        # cleanup_if_due() to use once; None: it reads the row itself.
        self._cleanup_stamp = None
        self._wal = None  # (fd, (st_dev, st_ino)) of the WAL sync_wal() syncs
        try:
            self._prepare()
        except sqlite3.Error as e:
            self.conn.close()
            raise database_failure(e, self.path) from None
        # Only a connection kept between deliveries needs it (one stat):
        # `lda deliver` opens once and exits.
        self._identity = file_identity(self.path) if kept else None

    def is_current(self):
        """Whether the path still names the file this connection has open:
        one kept between deliveries (lda lmtp, kept=True) must not go on
        writing to a database that was deleted or replaced (a restore)."""
        return self._identity is not None and file_identity(self.path) == self._identity

    def _prepare(self):
        """Settings and schema.  A database that another process is creating
        at this instant can answer "locked" at once, without waiting on
        busy_timeout (PRAGMA journal_mode does not): wait here instead, as
        long as busy_timeout would."""
        # No sync inside COMMIT, under the write lock: a durable transaction
        # syncs the WAL once the lock is free (sync_wal).
        self.conn.execute("PRAGMA synchronous = NORMAL")
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = 0.001
        while True:
            try:
                return self._ensure_schema()
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(2 * delay, 0.05)

    def _ensure_schema(self):
        if self.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        # WAL: readers never block the writer, and a commit needs no fsync of
        # the main file; a process crash loses nothing committed.
        self.conn.execute("PRAGMA journal_mode = WAL")
        with self.transaction():
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return  # another process upgraded it while we waited
            # executescript() would COMMIT on its own; run each statement.
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)
            for upgrade in UPGRADES[version:]:
                upgrade(self.conn)
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def transaction(self, durable=True):
        """BEGIN IMMEDIATE ... COMMIT, then (durable) sync_wal().  Without
        the sync the commit survives the process dying, and a power cut may
        take it back (never corrupting the file); the next durable commit
        syncs it along with its own."""
        return _Transaction(self, durable)

    def sync_wal(self):
        """Make every commit so far durable, after the write lock is gone.

        WAL frames are only ever appended, so one fdatasync of the WAL covers
        this commit and every one before it, and deliveries committing at the
        same moment share it (group commit): what synchronous = FULL would do
        inside COMMIT, with the lock held.  A WAL that a closing connection
        deleted had been checkpointed into the database file, and synced
        there, first.  The first sync of a WAL file in a process also syncs
        its directory entry, as SQLite does after creating one."""
        wal = self.path + "-wal"
        try:
            if self._wal is None or self._wal[1] != _identity(os.stat(wal)):
                self._close_wal()
                fd = os.open(wal, os.O_RDONLY | os.O_CLOEXEC)
                self._wal = (fd, _identity(os.fstat(fd)))
                if self._wal[1] not in _wals_synced:
                    fsync_dir(self.db_root)
                    _wals_synced.add(self._wal[1])
            os.fdatasync(self._wal[0])
        except FileNotFoundError:
            return
        except OSError as e:
            raise TemporaryFailure(f"{wal}: cannot sync: {e.strerror}") from None

    def _close_wal(self):
        if self._wal is not None:
            os.close(self._wal[0])
            self._wal = None

    def close(self):
        self._close_wal()
        if _left_open is not None:
            _left_open.append(self.conn)
        else:
            self.conn.close()

    def cutoff(self):
        return self.clock() - self.expiration

    def lookup(self, keys):
        """{key: (state, location, body_digest)} for the unexpired rows.

        Call inside a transaction while holding the mailbox locks, or
        outside one for rows that only a lock holder changes (a row claimed
        early: lda.deliver.delivery)."""
        found = {}
        cutoff = self.cutoff()
        try:
            for key in keys:
                row = self.conn.execute(
                    "SELECT state, location, body_digest, delivered_at FROM delivered_to "
                    "WHERE mailbox = ? AND message_id = ? AND submit_time = ?", key).fetchone()
                if row and row[3] >= cutoff:
                    found[key] = row[:3]
        except sqlite3.Error as e:
            raise database_failure(e, self.path) from None
        return found

    def mark_pending(self, entries, body_digest=None):
        """entries: [(key, location)]; replaces expired or dead rows."""
        now = self.clock()
        self._each("INSERT OR REPLACE INTO delivered_to VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                   [(*key, now, location, body_digest) for key, location in entries])

    def mark_delivered(self, keys):
        self._each("UPDATE delivered_to SET state = 'delivered' WHERE mailbox = ? "
                   "AND message_id = ? AND submit_time = ?", keys)

    def forget(self, keys):
        self._each("DELETE FROM delivered_to WHERE mailbox = ? AND message_id = ? "
                   "AND submit_time = ? AND state = 'pending'", keys)

    def forget_named(self, entries):
        """entries: [(key, location)]: forget each pending row that still
        names that location (None: a forward's), not one that another
        delivery wrote since."""
        self._each("DELETE FROM delivered_to WHERE mailbox = ? AND message_id = ? "
                   "AND submit_time = ? AND state = 'pending' AND location IS ?",
                   [(*key, location) for key, location in entries])

    def _each(self, sql, rows):
        """executemany, unless there are no rows: nothing to mark or forget is
        the usual case, and a statement costs its preparation (in a fresh
        process, with no statement cached) even with no rows to run on."""
        if rows:
            self.conn.executemany(sql, rows)

    def pending_partial(self, target, key):
        """The id of an unresolved partial record for this target and message."""
        row = self.conn.execute(
            "SELECT id FROM partial_deliveries WHERE target = ? AND message_id = ? "
            "AND submit_time = ?", (target, key[1], key[2])).fetchone()
        return row[0] if row else None

    def count_attempt(self, partial_id, reason):
        self.conn.execute(
            "UPDATE partial_deliveries SET attempts = attempts + 1, last_attempt = ?, "
            "reason = ? WHERE id = ?", (self.clock(), reason, partial_id))

    def record_partial(self, sender, recipient, target, mailbox, key, reason, spool_file):
        now = self.clock()
        self.conn.execute(
            "INSERT INTO partial_deliveries (created, sender, recipient, target, mailbox, "
            "message_id, submit_time, reason, spool_file, last_attempt) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (now, sender, recipient, target, mailbox, key[1], key[2], reason, spool_file, now))

    def cleanup(self, batch=CLEANUP_BATCH, max_seconds=None, older_than=None,
                on_batch=None, hold_seconds=CLEANUP_HOLD_SECONDS):
        """Delete expired rows in short transactions; returns the count.

        The keys to delete are read outside the write lock (a WAL reader
        never blocks a writer), reading their table pages too, so the
        transaction that deletes them mostly does CPU work.  It commits after
        `batch` rows or ~hold_seconds, so a delivery waiting for the
        lock is delayed by milliseconds, never stalled.  on_batch, if given,
        is called after each commit with (deleted so far, seconds the write
        lock was held), for the admin's progress and figures."""
        cutoff = self.clock() - older_than if older_than is not None else self.cutoff()
        # No automatic checkpoint meanwhile: it would run inside COMMIT, after
        # the write lock is released, yet count in the hold the admin sees;
        # _checkpoint() runs between the transactions instead.
        self.conn.execute("PRAGMA wal_autocheckpoint = 0")
        try:
            self._delete_expired_sieve_ids(batch)
            return self._delete_expired(cutoff, batch, max_seconds, on_batch, hold_seconds)
        finally:
            self.conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")

    def _delete_expired_sieve_ids(self, batch):
        """Sieve duplicate IDs (RFC 7352) past their :seconds, and vacation
        replies (RFC 5230) past the period they were sent with, at most a
        batch of each a run in one short transaction: no delivery reads
        them as seen any more.  (A vacation row from before version 4 has
        no period and stays.)"""
        now = self.clock()
        with self.transaction(durable=False):
            self.conn.execute(
                "DELETE FROM sieve_duplicates WHERE (mailbox, key) IN (SELECT mailbox, key "
                "FROM sieve_duplicates WHERE expires < ? LIMIT ?)", (now, batch))
            self.conn.execute(
                "DELETE FROM sieve_vacations WHERE (mailbox, sender, handle) IN (SELECT "
                "mailbox, sender, handle FROM sieve_vacations WHERE expires < ? LIMIT ?)",
                (now, batch))

    def _delete_expired(self, cutoff, batch, max_seconds, on_batch, hold_seconds):
        start, deleted, commit = time.monotonic(), 0, 0.0
        while True:
            keys = self._expired_keys(cutoff, 2 * batch)
            done = 0
            while done < len(keys):
                n, count, held, commit = self._delete_some(
                    keys[done:done + batch], cutoff, hold_seconds, commit)
                done += n
                deleted += count
                if on_batch is not None:
                    on_batch(deleted, held)
                self._checkpoint()
                if max_seconds is not None and time.monotonic() - start > max_seconds:
                    return deleted, done == len(keys) < 2 * batch
            if len(keys) < 2 * batch:
                return deleted, True

    def _expired_keys(self, cutoff, limit):
        """The oldest expired keys, in age order, so that a bounded run still
        leaves the table younger.  location is not needed: reading it reads
        the row's table page now, from disk if need be, not under the lock."""
        try:
            return [row[:3] for row in self.conn.execute(
                "SELECT mailbox, message_id, submit_time, location FROM delivered_to "
                "WHERE delivered_at < ? ORDER BY delivered_at LIMIT ?", (cutoff, limit))]
        except sqlite3.Error as e:
            raise database_failure(e, self.path) from None

    def _delete_some(self, keys, cutoff, hold_seconds, commit):
        """One transaction: delete keys from the front until about
        hold_seconds have passed, keeping as long for the COMMIT as
        the last one took.  (keys taken, rows deleted, seconds the write lock
        was held, seconds this COMMIT took)"""
        done = deleted = 0
        # Not synced: a power cut may undo the last deletions, never a
        # delivery, whose own synced commit covers every frame before it; the
        # checkpoint after the transaction syncs them, outside the lock.
        with self.transaction(durable=False):
            locked = time.monotonic()
            while done < len(keys) and (
                    not done or time.monotonic() - locked + commit < hold_seconds):
                # A delivery may have written the key again since it was
                # read: delivered_at says whether it is still expired.
                deleted += self.conn.executemany(
                    "DELETE FROM delivered_to WHERE mailbox = ? AND message_id = ? "
                    "AND submit_time = ? AND delivered_at < ?",
                    [(*key, cutoff) for key in keys[done:done + CLEANUP_CHUNK]]).rowcount
                done = min(len(keys), done + CLEANUP_CHUNK)
            committing = time.monotonic()
        end = time.monotonic()
        return done, deleted, end - locked, end - committing

    def _checkpoint(self):
        """Copy the WAL back into the database between transactions, where it
        holds no write lock, so that the next writer restarts a short WAL and
        no delivery's commit pays for checkpointing our pages."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as e:
            raise database_failure(e, self.path) from None

    def cleanup_if_due(self):
        """Opportunistic cleanup during a delivery, bounded to ~50 ms.

        The first delivery after the interval claims the run with a
        compare-and-set on meta.last_cleanup, so concurrent deliveries do not
        all start one; unfinished work leaves the claim open for the next."""
        now = self.clock()
        # A plain read first (no lock in WAL mode): nearly every delivery
        # stops here rather than queueing for the write lock.  A delivery
        # read it already, inside its last transaction (read_cleanup_stamp).
        last, self._cleanup_stamp = self._cleanup_stamp, None
        if now - (self._last_cleanup() if last is None else last) < self.cleanup_interval:
            return None
        with self.transaction():
            if now - self._last_cleanup() < self.cleanup_interval:
                return None
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('last_cleanup', ?)",
                              (repr(now),))
        deleted, finished = self.cleanup(max_seconds=CLEANUP_BUDGET_SECONDS)
        if not finished:
            with self.transaction():
                self.conn.execute("UPDATE meta SET value = '0' WHERE key = 'last_cleanup'")
        return deleted

    def read_cleanup_stamp(self):
        """Inside a transaction: read meta.last_cleanup now, for the next
        cleanup_if_due().  Each statement outside a transaction is a read
        transaction of its own, taking and dropping SQLite's locks (four
        fcntl calls, bench/profiles/delivery-cpu.txt); a delivery makes this
        read in the transaction that marks its rows delivered instead.  The
        claim itself is still a compare-and-set in a transaction of its own."""
        self._cleanup_stamp = self._last_cleanup()

    def _last_cleanup(self):
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'last_cleanup'").fetchone()
        return float(row[0]) if row else 0.0


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception.

    IMMEDIATE takes the write lock up front, so two deliveries never both
    read "absent" and then both insert; busy_timeout makes another process
    wait.  Threads of one process (lda lmtp) queue on a lock of their own
    first: SQLite's busy handler sleeps 1, 2, 5, 10 ms ... between tries,
    where the lock wakes the next writer as soon as it is free."""

    def __init__(self, db, durable=True):
        self.db = db
        self.conn = db.conn
        self.durable = durable
        self.lock = _writer_locks.get(db.path) or _writer_locks.setdefault(
            db.path, _thread.allocate_lock())

    def __enter__(self):
        if not self.lock.acquire(timeout=BUSY_TIMEOUT_MS / 1000):
            raise TemporaryFailure(f"DeliveredTo database busy: {self.db.path}: "
                                   f"no write lock within {BUSY_TIMEOUT_MS // 1000}s")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            self.lock.release()
            raise database_failure(e, self.db.path) from None
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            self._end(exc_type, exc)
        finally:
            self.lock.release()
        if exc_type is None and self.durable:
            self.db.sync_wal()
        return False

    def _end(self, exc_type, exc):
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return False
            except sqlite3.Error as e:
                self._rollback()
                raise database_failure(e, self.db.path) from None
        self._rollback()
        if issubclass(exc_type, sqlite3.Error):
            raise database_failure(exc, self.db.path) from None
        return False

    def _rollback(self):
        # A failed COMMIT (disk full, I/O error) may have rolled back already.
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass


def check_files(dir_fd, path):
    """Close dir_fd, the directory of the database at path, after making
    sure that SQLite, which opens its files by path and follows symlinks,
    finds no file there but its own: each that exists is a regular file,
    the database linked once (a hard link to another file would be written
    through).  As root without allow_root_delivery the directory is root's,
    so nobody else can change them after the check; with it, its owner still
    could in the instant before SQLite opens them (it opens by path only)."""
    import stat

    try:
        for suffix in ("", "-wal", "-shm", "-journal"):
            name = DB_FILE + suffix
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise TemporaryFailure(f"{path}{suffix}: {e.strerror}") from None
            if not stat.S_ISREG(st.st_mode) or (not suffix and st.st_nlink != 1):
                kind = "symlink" if stat.S_ISLNK(st.st_mode) else (
                    "hard link" if stat.S_ISREG(st.st_mode) else "not a regular file")
                raise UnsafePath(f"{path}{suffix}: {kind}: refused")
    finally:
        os.close(dir_fd)


def _identity(st):
    return st.st_dev, st.st_ino


def file_identity(path):
    try:
        return _identity(os.stat(path))
    except OSError:
        return None


def database_failure(error, path):
    """A one-line temporary failure for an SQLite error: busy, full, read-only
    or corrupt, the message stays with the MTA and is retried.  The error
    goes along (sqlite_error), for an admin command to tell a damaged file
    from a busy one (admin_sqlite)."""
    text = str(error)
    what = "busy" if "locked" in text or "busy" in text else "unusable"
    failure = TemporaryFailure(f"DeliveredTo database {what}: {path}: {text}")
    failure.sqlite_error = error
    return failure

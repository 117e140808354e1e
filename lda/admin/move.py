"""Moving a mailbox to another database, DeliveredTo rows and all.

A move is journalled in the directory's `moves` table, one step at a time:

    maildir  -> the Maildir is renamed (one filesystem) or copied, fsynced and
                verified (across filesystems) to the target database
    rows     -> its DeliveredTo rows, the rows of its forwards and its pending
                partial deliveries (with their spooled copies) are copied
    cleanup  -> the directory entry has switched (in the same transaction
                that set this step); the source copies are removed

The mailbox lock is held throughout, and while a journal row exists every
delivery to the mailbox is deferred (4.2.1), so deliveries never see a
half-moved mailbox, even after a kill -9.  Running the same command again
resumes; `--rollback` undoes a move that has not switched yet.
"""

import hashlib
import os
import shutil
import time
from contextlib import contextmanager

from ..errors import AlreadyExists, ConfigError, TemporaryFailure, UnknownName
from ..store.locks import lock_path, stripe_of
from ..store.maildir import fsync_dir, give_carried
from .databases import open_deliveredto
from .mailboxes import directory_transaction, get_mailbox
from .partial import RUN_LOCK
from .state import state_dir
from .transfer import active_link, file_digest, make_active_link

ROW_BATCH = 5000
COLUMNS = ("mailbox, message_id, submit_time, delivered_at, state, location, "
           "body_digest")
# Sieve's memory per mailbox (deliveredto.SCHEMA), moved with the rows.
SIEVE_TABLES = ("sieve_duplicates", "sieve_vacations")
STEPS = ("maildir", "rows", "cleanup")
COPY_SUFFIX = ".lda-move"


class Move:
    """One mailbox move; `progress(phase, done, total)` and `after_step(step)`
    are side effects the CLI and the crash tests pass in."""

    def __init__(self, config, directory, address, progress=None, after_step=None,
                 clock=time.time):
        self.config = config
        self.directory = directory
        self.address = address.lower()
        self.progress = progress or (lambda phase, done, total: None)
        self.after_step = after_step or (lambda step: None)
        self.clock = clock
        self.report = {"address": self.address, "messages": 0, "rows": 0,
                       "sieve_rows": 0, "partials": 0, "method": None}

    def run(self, target_db, rollback=False):
        with self.mailbox_lock():
            return self._run_locked(target_db, rollback)

    def mailbox_lock(self):
        """The lock deliveries to the mailbox take (locks.py's stripe)."""
        lock_dir = state_dir(self.config, "locks")
        return held_lock(lock_path(lock_dir, stripe_of(self.address)),
                         self.config.lock_timeout_seconds,
                         f"mailbox {self.address} is busy; try again")

    def _run_locked(self, target_db, rollback):
        start = time.monotonic()
        journal = self._journal()
        if journal is None:
            if rollback:
                raise UnknownName(f"no unfinished move of {self.address} to roll back")
            journal = self._begin(target_db)
        elif target_db and target_db != journal["target_db"]:
            raise AlreadyExists(f"a move of {self.address} to {journal['target_db']} is "
                            f"unfinished: resume it with --to {journal['target_db']} "
                            "or undo it with --rollback")
        self.report.update(source=journal["source_db"], target=journal["target_db"])
        if rollback and journal["step"] != "cleanup":
            self._rollback(journal)
            self.report["result"] = "rolled back"
        else:
            self._forward(journal)
            self.report["result"] = "moved"
        # Where the mailbox is now, whichever way the run went.
        source, target = self._paths(journal)
        self.report["maildir"] = source if self.report["result"] == "rolled back" else target
        self.report["seconds"] = round(time.monotonic() - start, 3)
        return self.report

    def _journal(self):
        rows = list(self.directory["moves"].rows_where("address = ?", [self.address]))
        return rows[0] if rows else None

    def _db_path(self, name):
        rows = list(self.directory["databases"].rows_where("name = ?", [name]))
        if not rows:
            raise UnknownName(f"no mailbox database named {name!r}")
        return rows[0]["path"]

    def _begin(self, target_db):
        mailbox = get_mailbox(self.directory, self.address)
        if mailbox["database"] == target_db:
            raise AlreadyExists(f"{self.address} is in {target_db} already")
        target_root = self._db_path(target_db)
        destination = os.path.join(target_root, mailbox["maildir"])
        if os.path.lexists(destination):
            raise AlreadyExists(f"{destination} exists already; remove it or pick "
                            "another database")
        for name in (mailbox["database"], target_db):
            # A damaged DeliveredTo file stops the move before it starts.
            self._open_db(name).close()
        journal = {"address": self.address, "source_db": mailbox["database"],
                   "target_db": target_db, "source_maildir": mailbox["maildir"],
                   "target_maildir": mailbox["maildir"], "step": "maildir",
                   "started": self.clock()}
        self.directory["moves"].insert(journal)
        self.after_step("begin")
        return journal

    def _set_step(self, step):
        self.directory["moves"].update(self.address, {"step": step})
        self.after_step(step)

    def _paths(self, journal):
        source = os.path.join(self._db_path(journal["source_db"]), journal["source_maildir"])
        target = os.path.join(self._db_path(journal["target_db"]), journal["target_maildir"])
        return source, target

    def _forward(self, journal):
        """Go on from the journal's step; the report counts what the move
        carried, steps done by an interrupted run included."""
        source, target = self._paths(journal)
        if journal["step"] == "maildir":
            self._move_maildir(source, target)
            self._set_step("rows")
            journal["step"] = "rows"
        else:
            self.report["messages"] = count_messages(target)
        if journal["step"] == "rows":
            self._copy_rows(journal)
            self._switch(journal)
        else:
            self._count_moved_rows(journal)
        self._clean_source(journal, source)

    def _count_moved_rows(self, journal):
        """What an interrupted run had copied into the target database
        before the directory switched (the rows, Sieve state, partials)."""
        db = self._open_db(journal["target_db"])
        try:
            def count(table, key):
                return db.conn.execute(f"SELECT count(*) FROM {table} WHERE mailbox = ?",
                                       (key,)).fetchone()[0]

            keys = self._row_keys()
            self.report["rows"] = sum(count("delivered_to", k) for k in keys)
            self.report["sieve_rows"] = sum(count(t, self.address) for t in SIEVE_TABLES)
            self.report["partials"] = count("partial_deliveries", self.address)
        finally:
            db.close()

    def _switch(self, journal):
        """One directory transaction: the entry moves and the step advances."""
        with directory_transaction(self.directory) as execute:
            execute("UPDATE mailboxes SET database = ?, maildir = ? WHERE address = ?",
                    (journal["target_db"], journal["target_maildir"], self.address))
            execute("UPDATE moves SET step = 'cleanup' WHERE address = ?", (self.address,))
        self.after_step("cleanup")

    def _open_db(self, name):
        return open_deliveredto(self.config, self._db_path(name), self.clock, create=True)

    # -- the Maildir -------------------------------------------------------

    def _move_maildir(self, source, target):
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        if not os.path.lexists(source) and os.path.isdir(target):
            self.report["method"] = "rename"  # done before an interruption
            self.report["messages"] = count_messages(target)
            return
        if not os.path.isdir(source) or os.path.islink(source):
            # The directory names a Maildir that is not there: damaged state.
            raise ConfigError(f"{source}: Maildir missing or not a directory")
        if os.stat(source).st_dev == os.stat(os.path.dirname(target)).st_dev:
            self.report["method"] = "rename"
            self.report["messages"] = count_messages(source)
            os.rename(source, target)
            fsync_dir(os.path.dirname(target))
            fsync_dir(os.path.dirname(source))
            return
        self.report["method"] = "copy"
        staging = target + COPY_SUFFIX
        if os.path.lexists(staging):
            shutil.rmtree(staging)  # an interrupted copy: start it again
        self.report["messages"] = copy_tree(source, staging, self.progress)
        os.rename(staging, target)
        fsync_dir(os.path.dirname(target))

    # -- DeliveredTo rows and partial deliveries ---------------------------

    def _copy_rows(self, journal):
        source_db = self._open_db(journal["source_db"])
        target_db = self._open_db(journal["target_db"])
        try:
            keys = self._row_keys()
            total = sum(source_db.conn.execute(
                "SELECT count(*) FROM delivered_to WHERE mailbox = ?", (k,)).fetchone()[0]
                for k in keys)
            copied = 0
            for key in keys:
                # The mailbox's own rows replace any stale ones; rows of a
                # forward target are shared with others, so existing ones stay.
                verb = "REPLACE" if key == self.address else "IGNORE"
                for n in _copy_mailbox_rows(source_db, target_db, "delivered_to", key,
                                            verb, COLUMNS):
                    copied += n
                    self.progress("rows", copied, total)
            self.report["rows"] = copied
            # What the mailbox's Sieve script remembers (duplicate, vacation):
            # left behind, the moved mailbox would answer a sender again
            # within vacation's :days.
            self.report["sieve_rows"] = sum(
                n for table in SIEVE_TABLES
                for n in _copy_mailbox_rows(source_db, target_db, table, self.address))
            with self._partial_lock():
                self.report["partials"] = self._copy_partials(source_db, target_db)
        finally:
            source_db.close()
            target_db.close()

    def _partial_lock(self):
        """The lock `lda partial retry` holds, so no retry unlinks a spooled
        copy while the move copies it."""
        from filelock import FileLock  # lazy: see run()

        return FileLock(os.path.join(self.config.state_dir, "locks", RUN_LOCK),
                        timeout=self.config.lock_timeout_seconds)

    def _row_keys(self):
        """The DeliveredTo keys that go with the mailbox: its own and its
        forwards' (forward:ADDRESS)."""
        return [self.address] + [f"forward:{a}" for a in self._forwards()]

    def _forwards(self):
        forward = get_mailbox(self.directory, self.address)["forward"] or ""
        return [a for a in forward.split("\n") if a]

    def _copy_partials(self, source_db, target_db):
        rows = source_db.conn.execute(
            "SELECT * FROM partial_deliveries WHERE mailbox = ?", (self.address,))
        columns = [d[0] for d in rows.description]
        records = [dict(zip(columns, row)) for row in rows]
        spool_dir = os.path.join(target_db.db_root, "partial")
        os.makedirs(spool_dir, mode=0o700, exist_ok=True)
        for record in records:
            spooled = os.path.join(spool_dir, os.path.basename(record["spool_file"]))
            if not os.path.exists(spooled):
                copy_file(record["spool_file"], spooled)
            record["spool_file"] = spooled
        fsync_dir(spool_dir)
        with target_db.transaction():
            target_db.conn.execute("DELETE FROM partial_deliveries WHERE mailbox = ?",
                                   (self.address,))
            for record in records:
                del record["id"]
                target_db.conn.execute(
                    f"INSERT INTO partial_deliveries ({', '.join(record)}) "
                    f"VALUES ({', '.join('?' * len(record))})", list(record.values()))
        return len(records)

    # -- finishing and undoing ---------------------------------------------

    def _clean_source(self, journal, source):
        self._forget_mailbox(journal["source_db"])
        _, target = self._paths(journal)
        if os.path.isdir(source) and not os.path.islink(source):
            retire_source(source, target)
        self.directory["moves"].delete(self.address)
        self.after_step("done")

    def _forget_mailbox(self, name):
        """Remove the mailbox's DeliveredTo rows, Sieve state, partial records
        and spooled copies from the database that no longer holds it."""
        db = self._open_db(name)
        try:
            _delete_rows(db, self.address)
            with db.transaction():
                for table in SIEVE_TABLES:
                    db.conn.execute(f"DELETE FROM {table} WHERE mailbox = ?", (self.address,))
            self._drop_partials(db)
        finally:
            db.close()

    def _drop_partials(self, db):
        with self._partial_lock():
            spools = [r[0] for r in db.conn.execute(
                "SELECT spool_file FROM partial_deliveries WHERE mailbox = ?",
                (self.address,))]
            with db.transaction():
                db.conn.execute("DELETE FROM partial_deliveries WHERE mailbox = ?",
                                (self.address,))
            for spool in spools:
                _unlink(spool)

    def _rollback(self, journal):
        source, target = self._paths(journal)
        self._forget_mailbox(journal["target_db"])
        if os.path.lexists(target + COPY_SUFFIX):
            shutil.rmtree(target + COPY_SUFFIX)
        if os.path.isdir(target) and not os.path.lexists(source):
            os.rename(target, source)  # it had been renamed: rename it back
        elif os.path.isdir(target):
            shutil.rmtree(target)  # a verified copy; the original is intact
        self.directory["moves"].delete(self.address)
        self.after_step("rolled-back")


@contextmanager
def held_lock(path, timeout, busy):
    """A file lock held for the with-block; TemporaryFailure(busy) when it
    stays taken for timeout seconds."""
    # Lazy, as in partial._run_lock: filelock brings the logging package.
    from filelock import FileLock, Timeout

    lock = FileLock(path, timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise TemporaryFailure(busy) from None
    try:
        yield
    finally:
        lock.release()


def _batches(cursor, size=ROW_BATCH):
    while batch := cursor.fetchmany(size):
        yield batch


def _copy_mailbox_rows(source_db, target_db, table, mailbox, verb="REPLACE", columns="*"):
    """Copy one mailbox's rows of `table`, a transaction per batch (other
    mailboxes' deliveries wait milliseconds); yields each batch's size."""
    cursor = source_db.conn.execute(f"SELECT {columns} FROM {table} WHERE mailbox = ?",
                                    (mailbox,))
    names = "" if columns == "*" else f" ({columns})"
    for batch in _batches(cursor):
        with target_db.transaction():
            target_db.conn.executemany(
                f"INSERT OR {verb} INTO {table}{names} "
                f"VALUES ({', '.join('?' * len(batch[0]))})", batch)
        yield len(batch)


def _delete_rows(db, mailbox):
    """Delete one mailbox's rows in short transactions (deliveries to other
    mailboxes of the database wait milliseconds, not the whole move)."""
    while True:
        with db.transaction():
            n = db.conn.execute(
                "DELETE FROM delivered_to WHERE mailbox = ? AND (message_id, submit_time) "
                "IN (SELECT message_id, submit_time FROM delivered_to WHERE mailbox = ? "
                "LIMIT ?)", (mailbox, mailbox, ROW_BATCH)).rowcount
        if n < ROW_BATCH:
            return


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def count_messages(root):
    return sum(len(files) for parent, _, files in os.walk(root)
               if os.path.basename(parent) in ("new", "cur"))


def retire_source(source, target):
    """Remove the source Maildir once every message in it is at the target.

    One that is not (it cannot happen while the journal defers deliveries,
    but a message is never deleted on that belief) is copied over first.
    Names compare without the ":2,flags" part, since a reader may have moved
    a message from new/ to cur/ at the target in the meantime."""
    for parent, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(parent, d))]
        if os.path.basename(parent) not in ("new", "cur") or not files:
            continue
        folder = os.path.join(target, os.path.relpath(os.path.dirname(parent), source))
        present = {name.split(":", 1)[0] for sub in ("new", "cur")
                   for name in _listdir(os.path.join(folder, sub))}
        for name in files:
            if name.split(":", 1)[0] not in present:
                destination = os.path.join(folder, os.path.basename(parent))
                os.makedirs(destination, mode=0o700, exist_ok=True)
                copy_file(os.path.join(parent, name), os.path.join(destination, name))
    shutil.rmtree(source)


def _listdir(path):
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def copy_file(source, target):
    """Copy with fsync, keep the mode and group (what Dovecot and lda gave
    it in a Maildir open to a group: maildir.permissions) and the mtime
    (IMAP servers read it as the arrival time), and verify by reading the
    copy back."""
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(target, "xb") as dst:
        stat = os.fstat(src.fileno())
        give_carried(dst.fileno(), stat.st_mode & 0o7777, stat.st_gid)
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    if file_digest(target) != digest.hexdigest():
        raise TemporaryFailure(f"{target}: copy does not match {source}")


def copy_tree(source, target, progress):
    """Copy a Maildir tree (regular files and directories only; symlinks are
    not followed or copied, but ManageSieve's active script link, which is
    made anew: transfer.active_link) and return how many messages it held.
    Files and directories keep their modes and groups (copy_file; a
    directory's once all is copied into it)."""
    entries = []
    for parent, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(parent, d))]
        entries.append((parent, files))
    total = sum(len(files) for _, files in entries)
    done = messages = 0
    for parent, files in entries:
        relative = os.path.relpath(parent, source)
        destination = os.path.normpath(os.path.join(target, relative))
        os.makedirs(destination, mode=0o700, exist_ok=True)
        for name in files:
            path = os.path.join(parent, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            copy_file(path, os.path.join(destination, name))
            messages += os.path.basename(parent) in ("new", "cur")
            done += 1
            progress("maildir", done, total)
        fsync_dir(destination)
    link = active_link(source)
    if link is not None:  # ManageSieve's active script stays active
        make_active_link(target, link)
        fsync_dir(target)
    for parent, _ in reversed(entries):
        _carry_dir(parent, os.path.normpath(os.path.join(target,
                                                         os.path.relpath(parent, source))))
    return messages


def _carry_dir(source, target):
    """Give the directory target the mode and group of source."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(target, flags)
    try:
        stat = os.stat(source, follow_symlinks=False)
        give_carried(fd, stat.st_mode & 0o7777, stat.st_gid)
    finally:
        os.close(fd)

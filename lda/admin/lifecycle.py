"""A mailbox's beginning and end: what `lda mailbox create` finds of an
earlier mailbox at the same address, and what `lda mailbox delete` does with
its Maildir, DeliveredTo rows, Sieve state and partial records.

DeliveredTo rows and partial records are keyed by address, not by Maildir.
Left behind by a delete, they would pass to the next mailbox of the address:
a resend of an old Message-ID discarded as a duplicate, an old owner's
pending copy delivered to the new one.  So a delete takes them with the
mailbox, and a create that finds an earlier mailbox's data takes it over
only when told to (adopt).

A delete runs under the mailbox lock, in an order that a rerun finishes:
  1. partial records: each spooled copy linked into the Maildir's new/
     (keep; it was this mailbox's mail) or removed (purge);
  2. the Maildir: renamed aside to <maildir>.deleted-<UTC time> (keep; one
     that holds no file is removed), or renamed to <maildir>.DELETING and
     removed (purge);
  3. the mailbox's DeliveredTo rows and Sieve state;
  4. the directory entry.
Until step 4 the mailbox exists, so a crash leaves it for the same command
to finish; a delivery in between lands in a fresh Maildir, which the rerun
treats as the first run did.  The new names hold upper-case letters, which
maildir_path_for() escapes, so they can never be another address's Maildir.
"""

import os
import shutil
import time
from contextlib import contextmanager

from ..errors import EX_CANTCREAT, AlreadyExists, LdaError, MailboxMoving
from ..store.locks import MailboxLocks
from ..store.maildir import fsync_dir
from .databases import open_deliveredto
from .dedup import owned_keys
from .mailboxes import (create_mailbox, delete_mailbox, ensure_database, get_mailbox,
                        mailbox_path, maildir_path_for, validate_address)
from .move import ROW_BATCH, SIEVE_TABLES, copy_file, count_messages
from .partial import _run_lock as partial_run_lock
from .state import state_dir

PURGE, KEEP = "purge", "keep"
PURGING_SUFFIX = ".DELETING"
ASIDE_FORMAT = ".deleted-%Y-%m-%dT%H%M%SZ"  # ISO 8601 basic time: no ':' in a path


class EarlierMailboxData(LdaError):
    """A new mailbox would take over data of an earlier one at its address."""

    exit_code = EX_CANTCREAT
    smtp_reply = "550 5.3.0"


def files_below(path):
    """Regular files (and anything else that is not a directory) below path:
    what a Maildir holds beyond its empty skeleton.  0 if path is missing."""
    return sum(len(files) for _, _, files in os.walk(path))


def create(db, config, address, database="default", quota_storage=None,
           quota_messages=None, forward=(), keep_copy=True, adopt=False):
    """Create a mailbox.  Data an earlier mailbox of the address left in the
    database (its Maildir with files, partial records) is refused
    (EarlierMailboxData, 73) unless adopt; its DeliveredTo rows and Sieve
    state, which hold no mail, are cleared unless adopt keeps them.
    Returns the directory row with what was adopted or cleared."""
    address = validate_address(address)
    if db["mailboxes"].count_where("address = ?", [address]):
        raise AlreadyExists(f"mailbox {address} exists already")
    root = ensure_database(db, config, database)
    path = os.path.join(root, maildir_path_for(address))
    # Under the mailbox lock: no delivery to the new mailbox records a row
    # before the earlier mailbox's rows are gone.
    with MailboxLocks(state_dir(config, "locks"), [address],
                      config.lock_timeout_seconds):
        found = _earlier_data(config, root, address, path)
        if not adopt:
            _refuse_earlier_data(address, database, path, found)
        row = create_mailbox(db, config, address, database, quota_storage,
                             quota_messages, forward, keep_copy)
        if not adopt and found["rows"] + found["sieve_rows"]:
            with _store(config, root) as store:
                _delete_owned_rows(store, address)
    kept = {k: found[k] for k in ("messages", "rows", "partials")}
    return {**row, "adopted": kept if adopt else None,
            "cleared_rows": 0 if adopt else found["rows"]}


def _earlier_data(config, root, address, path):
    """What an earlier mailbox of address left: files in its Maildir, and
    DeliveredTo rows, Sieve state and partial records in the database."""
    found = {"messages": count_messages(path), "files": files_below(path), "rows": 0,
             "sieve_rows": 0, "partials": 0}
    with _store(config, root) as store:
        if store is not None:
            found.update(_count_owned(store, address))
    return found


@contextmanager
def _store(config, root):
    """The database's DeliveredTo store, or None while it has no lda.sqlite."""
    store = open_deliveredto(config, root)
    try:
        yield store
    finally:
        if store is not None:
            store.close()


def _refuse_earlier_data(address, database, path, found):
    """EarlierMailboxData for what holds mail (files, partial records):
    handing it to a new owner must be the admin's decision."""
    if found["files"]:
        raise EarlierMailboxData(
            f"{path} holds {found['files']} files ({found['messages']} messages) of an "
            f"earlier mailbox {address}; give --adopt to make them this mailbox's, "
            "or move the directory away first")
    if found["partials"]:
        raise EarlierMailboxData(
            f"{found['partials']} partial deliveries for an earlier mailbox {address} "
            f"wait in database {database}; bounce them (`lda partial list --db "
            f"{database}`, `lda partial bounce --id ...`) or give --adopt")


def _count_owned(store, address):
    """How many DeliveredTo rows, Sieve state rows and partial records the
    database holds for the mailbox of address."""
    where, args = owned_keys(address)
    conn = store.conn
    return {"rows": conn.execute(f"SELECT count(*) FROM delivered_to WHERE {where}",
                                 args).fetchone()[0],
            "sieve_rows": sum(conn.execute(f"SELECT count(*) FROM {t} WHERE mailbox = ?",
                                           (address,)).fetchone()[0]
                              for t in SIEVE_TABLES),
            "partials": conn.execute("SELECT count(*) FROM partial_deliveries WHERE "
                                     "mailbox = ?", (address,)).fetchone()[0]}


def _delete_owned_rows(store, address, progress=None):
    """Delete the mailbox's DeliveredTo rows in short transactions (other
    mailboxes' deliveries wait milliseconds), then its Sieve state.
    progress(done) after each batch.  Returns the rows deleted."""
    where, args = owned_keys(address)
    deleted = 0
    while True:
        with store.transaction() as conn:
            n = conn.execute(
                "DELETE FROM delivered_to WHERE (mailbox, message_id, submit_time) IN "
                f"(SELECT mailbox, message_id, submit_time FROM delivered_to WHERE {where} "
                "LIMIT ?)", (*args, ROW_BATCH)).rowcount
        deleted += n
        if progress is not None:
            progress(deleted)
        if n < ROW_BATCH:
            break
    with store.transaction() as conn:
        for table in SIEVE_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE mailbox = ?", (address,))
    return deleted


class Deletion:
    """One `lda mailbox delete`; progress(phase, done, total) is the CLI's
    bar, clock the time in the kept Maildir's name."""

    def __init__(self, config, directory, address, mode, progress=None,
                 clock=time.time):
        """Looks the mailbox up at once: an unknown one is 67 before any lock."""
        if mode not in (PURGE, KEEP):
            raise ValueError(f"mode must be {PURGE!r} or {KEEP!r}")
        self.config, self.directory, self.mode, self.clock = config, directory, mode, clock
        self.progress = progress or (lambda phase, done, total: None)
        self.row = get_mailbox(directory, address)
        self.address = self.row["address"]
        self.path = mailbox_path(directory, self.row)
        self.report = {"address": self.address, "database": self.row["database"],
                       "maildir": self.path, "result": "purged" if mode == PURGE
                       else "kept", "kept_as": None, "messages": 0, "rows": 0,
                       "sieve_rows": 0, "partials": 0}

    def run(self):
        """Steps 1-4 of the module docstring, under the mailbox lock."""
        if self.directory["moves"].count_where("address = ?", [self.address]):
            raise MailboxMoving(f"a move of {self.address} is unfinished: finish it "
                                "(`lda mailbox move`) or roll it back first")
        start = time.monotonic()
        # The lock `lda partial retry` holds (busy: 75), so no retry delivers
        # or unlinks a copy meanwhile; taken before the mailbox lock, in the
        # order a retry takes both, so the two cannot wait on each other.
        with partial_run_lock(self.config), MailboxLocks(
                state_dir(self.config, "locks"), [self.address],
                self.config.lock_timeout_seconds):
            root = self.directory["databases"].get(self.row["database"])["path"]
            with _store(self.config, root) as store:
                if store is not None:
                    self.report["sieve_rows"] = _count_owned(store, self.address)["sieve_rows"]
                    self._partials(store)
                self._maildir()
                if store is not None:
                    self.report["rows"] = self._rows(store)
            delete_mailbox(self.directory, self.address)
        self.report["seconds"] = round(time.monotonic() - start, 3)
        return self.report

    def _rows(self, store):
        """Step 3; after the Maildir step, so that a crash before it leaves
        the rows that stop resends into the Maildir still there."""
        total = _count_owned(store, self.address)["rows"]
        return _delete_owned_rows(store, self.address,
                                  lambda done: self.progress("rows", done, total))

    def _partials(self, store):
        """Step 1: each copy kept in the Maildir before its record goes,
        and the record gone before its copy (as partial._remove orders it)."""
        records = store.conn.execute(
            "SELECT id, spool_file FROM partial_deliveries WHERE mailbox = ?",
            (self.address,)).fetchall()
        if self.mode == KEEP:
            for _, spool in records:
                keep_in_maildir(spool, self.path)
        with store.transaction() as conn:
            conn.executemany("DELETE FROM partial_deliveries WHERE id = ?",
                             [(r[0],) for r in records])
        for _, spool in records:
            _unlink(spool)
        self.report["partials"] = len(records)

    def _maildir(self):
        """Step 2."""
        self.report["messages"] = count_messages(self.path)
        if self.mode == PURGE:
            doomed = self.path + PURGING_SUFFIX
            if os.path.isdir(self.path):
                if os.path.lexists(doomed):
                    remove_tree(doomed, self.progress)  # an interrupted purge
                os.rename(self.path, doomed)
                fsync_dir(os.path.dirname(self.path))
            if os.path.lexists(doomed):
                remove_tree(doomed, self.progress)
        elif os.path.isdir(self.path) and not files_below(self.path):
            shutil.rmtree(self.path)  # an empty skeleton holds nothing to keep
        elif os.path.isdir(self.path):
            aside = aside_name(self.path, self.clock())
            os.rename(self.path, aside)
            fsync_dir(os.path.dirname(self.path))
            self.report["kept_as"] = aside


def aside_name(path, now):
    """<path>.deleted-<UTC time>, with -2, -3... if that exists already."""
    base = path + time.strftime(ASIDE_FORMAT, time.gmtime(now))
    name, n = base, 1
    while os.path.lexists(name):
        n += 1
        name = f"{base}-{n}"
    return name


def keep_in_maildir(spool, maildir):
    """A partial record's spooled copy, as a message in maildir/new/: copied
    (the spool may be a hard link of another mailbox's message), fsynced,
    then renamed in under its spool name, so that a rerun sees it there."""
    name = os.path.basename(spool)
    new = os.path.join(maildir, "new")
    if not os.path.exists(spool) or os.path.exists(os.path.join(new, name)):
        return
    os.makedirs(new, mode=0o700, exist_ok=True)
    tmp = os.path.join(maildir, "tmp", name)
    os.makedirs(os.path.dirname(tmp), mode=0o700, exist_ok=True)
    _unlink(tmp)
    copy_file(spool, tmp)
    os.rename(tmp, os.path.join(new, name))
    fsync_dir(new)


def remove_tree(path, progress):
    """shutil.rmtree with progress("removing", done, total) per file, for a
    big Maildir; symlinks are removed, never followed."""
    entries = list(os.walk(path, topdown=False))
    total = sum(len(files) for _, _, files in entries)
    done = 0
    for parent, dirs, files in entries:
        for name in files:
            os.unlink(os.path.join(parent, name))
            done += 1
            if done % 100 == 0 or done == total:
                progress("removing", done, total)
        for name in dirs:
            child = os.path.join(parent, name)
            (os.unlink if os.path.islink(child) else os.rmdir)(child)
    os.rmdir(path)
    fsync_dir(os.path.dirname(path))


def _unlink(path):
    """Remove path; one a previous run removed already is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

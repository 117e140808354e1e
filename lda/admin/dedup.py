"""The DeliveredTo tables for the admin: look a message up, forget it so a
wanted resend gets through, prune expired rows on demand (or say what a
prune would delete), and report what each database holds.

Per-user mode has one table, in state_dir, whose rows are keyed by the
user's login name (resolve.UserResolver): it is named USER_DATABASE here,
and the commands work on it without a mailbox directory.

Admin commands only (`lda dedup ...`); a delivery prunes through
DeliveredTo.cleanup_if_due() and never imports this module.
"""

import time

from ..deliver.message import MessageInfo
from ..deliver.resolve import current_user
from ..errors import UnknownName
from ..store.deliveredto import CLEANUP_BATCH
from ..store.locks import MailboxLocks
from .databases import database_rows, deliveredto, held_here, iso_utc, refuse_elsewhere
from .mailboxes import get_mailbox, open_directory, read_directory
from .state import state_dir

USER_DATABASE = "user"

LOOKUP_COLUMNS = ("mailbox", "message_id", "submit_time", "delivered_at", "state",
                  "location")


def normalize_message_id(text):
    """The Message-ID as deliveries store it: "<a@b>" and "a@b" find the same
    rows, and an overlong ID becomes the same digest."""
    return MessageInfo._message_id(text.encode("utf-8", "surrogateescape")) or text


def directory_for(config, write=False, warn=None):
    """The mailbox directory the dedup commands read (write: create it if
    need be; warn: see read_directory); None in per-user mode, which has
    none and needs none."""
    if config.per_user:
        return None
    return open_directory(config) if write else read_directory(config, warn)


def databases(db, config, name=None):
    """The databases to work on: one or all of the directory's that this
    host holds (one of another host is refused, 64), or per-user mode's
    single one (state_dir, where UserResolver keeps it)."""
    if not config.per_user:
        rows = database_rows(db, name)
        for row in rows if name is not None else ():
            refuse_elsewhere(config, row)
        return [row for row in rows if held_here(config, row)]
    if name not in (None, USER_DATABASE):
        raise UnknownName(f"no mailbox database named {name!r}: per-user mode has "
                          f"one, {USER_DATABASE!r}")
    return [{"name": USER_DATABASE, "path": config.state_dir}]


def owned_keys(key):
    """SQL and arguments matching a mailbox's own DeliveredTo keys: its key,
    and those of its Sieve script's extra stores ("key#folder", filtering.py)."""
    return "(mailbox = ? OR (mailbox >= ? AND mailbox < ?))", [key, key + "#", key + "$"]


def _selection(db, config, message_id, mailbox):
    """(database name or None for all, WHERE clause, arguments) for the rows
    of message_id, of one mailbox if given.  Every address is the user's
    one mailbox in per-user mode, as for a delivery."""
    where, args = "message_id = ?", [normalize_message_id(message_id)]
    if mailbox is None:
        return None, where, args
    if config.per_user:
        only, key = USER_DATABASE, current_user()
    else:
        row = get_mailbox(db, mailbox)
        only, key = row["database"], row["address"]
    owned, more = owned_keys(key)
    return only, f"{where} AND {owned}", args + more


def lookup(db, config, message_id, mailbox=None, clock=time.time):
    """The DeliveredTo rows for message_id in every database, or only in the
    home database of mailbox (UnknownRecipient, 67, if it does not exist).

    The key starts with the mailbox, so without one each table is scanned:
    fine for an admin's question, and no index costs the deliveries."""
    only, where, args = _selection(db, config, message_id, mailbox)
    cutoff = clock() - config.expiration_hours * 3600
    found = []
    for database in databases(db, config, only):
        with deliveredto(config, database["path"]) as store:
            if store is None:
                continue
            rows = store.conn.execute(
                f"SELECT {', '.join(LOOKUP_COLUMNS)} FROM delivered_to WHERE {where} "
                "ORDER BY delivered_at", args).fetchall()
        for values in rows:
            found.append(_described(values, database["name"], cutoff))
    return found


def _described(values, database, cutoff):
    """A row as lookup and forget print it."""
    item = dict(zip(LOOKUP_COLUMNS, values))
    # An expired row no longer stops a resend: say so, it is the usual
    # answer to "why did this arrive twice?".
    item["expired"] = item["delivered_at"] < cutoff
    item["delivered_at"] = iso_utc(item["delivered_at"])
    item["database"] = database
    return item


def forget(db, config, message_id, mailbox=None, clock=time.time):
    """Delete the DeliveredTo rows of message_id (of one mailbox, or all),
    so that the next delivery of it is not discarded as a duplicate: the
    resend an admin wants.  Each database's rows go in one transaction
    under the locks of their mailboxes, so no delivery is between its
    check and its record meanwhile.  Returns the rows deleted."""
    only, where, args = _selection(db, config, message_id, mailbox)
    cutoff = clock() - config.expiration_hours * 3600
    lock_dir = state_dir(config, "locks")
    deleted = []
    for database in databases(db, config, only):
        with deliveredto(config, database["path"]) as store:
            if store is None:
                continue
            keys = [k for (k,) in store.conn.execute(
                f"SELECT DISTINCT mailbox FROM delivered_to WHERE {where}", args)]
            if not keys:
                continue
            with MailboxLocks(lock_dir, _lock_keys(keys),
                              config.lock_timeout_seconds), store.transaction() as conn:
                rows = conn.execute(f"SELECT {', '.join(LOOKUP_COLUMNS)} FROM "
                                    f"delivered_to WHERE {where}", args).fetchall()
                conn.execute(f"DELETE FROM delivered_to WHERE {where}", args)
        deleted.extend(_described(values, database["name"], cutoff) for values in rows)
    return deleted


def _lock_keys(keys):
    """The mailbox locks for rows with these keys.  A Sieve store's key
    ("key#folder") locks as its mailbox (resolve.Target.derive); since an
    address may hold a "#" too, every prefix before one is locked as well:
    a lock too many costs a wait, a lock too few a duplicate."""
    locks = set()
    for key in keys:
        locks.add(key)
        locks.update(key[:i] for i, c in enumerate(key) if c == "#")
    return locks


def cleanup_preview(db, config, name=None, older_than=None, clock=time.time):
    """What cleanup() with these arguments would delete, deleting nothing:
    per database, the rows delivered before the cutoff (`--dry-run`, with
    `--now` to ask about another moment)."""
    now = clock()
    cutoff = now - (older_than if older_than is not None
                    else config.expiration_hours * 3600)
    per_database = []
    for database in databases(db, config, name):
        with deliveredto(config, database["path"]) as store:
            count = 0 if store is None else store.conn.execute(
                "SELECT COUNT(*) FROM delivered_to WHERE delivered_at < ?",
                (cutoff,)).fetchone()[0]
        per_database.append({"database": database["name"], "would_delete": count})
    return {"now": iso_utc(now), "cutoff": iso_utc(cutoff),
            "would_delete": sum(d["would_delete"] for d in per_database),
            "databases": per_database}


def count_expired(db, config, name=None, older_than=None, clock=time.time):
    """Rows a cleanup with these arguments would delete (for a progress bar)."""
    return cleanup_preview(db, config, name, older_than, clock)["would_delete"]


def cleanup(db, config, name=None, older_than=None, batch=CLEANUP_BATCH,
            progress=None, clock=time.time):
    """Delete rows older than older_than seconds (default: expiration_hours)
    from one database or all, in DeliveredTo's short transactions.

    progress(deleted, expected) is called after each batch.  Returns the
    totals, with the longest single batch: the longest a delivery could have
    waited for the write lock because of us."""
    summary = {"deleted": 0, "batches": 0, "longest_batch_ms": 0.0, "databases": 0}
    on_batch = None
    if progress is not None:
        # Counted first (an index range scan) so the bar has an end.
        expected = count_expired(db, config, name, older_than, clock)

        def on_batch():
            progress(summary["deleted"], expected)
    start = time.monotonic()
    for database in databases(db, config, name):
        with deliveredto(config, database["path"], clock) as store:
            if store is None:
                continue
            _cleanup_one(store, older_than, batch, summary, on_batch, clock)
        summary["databases"] += 1
    summary["seconds"] = round(time.monotonic() - start, 3)
    summary["longest_batch_ms"] = round(summary["longest_batch_ms"], 2)
    return summary


def _cleanup_one(store, older_than, batch, summary, on_batch, clock):
    done = 0

    def count(deleted_so_far, seconds_held):
        nonlocal done
        summary["deleted"] += deleted_so_far - done
        summary["batches"] += 1
        summary["longest_batch_ms"] = max(summary["longest_batch_ms"],
                                          seconds_held * 1000)
        done = deleted_so_far
        if on_batch is not None:
            on_batch()

    store.cleanup(batch=batch, older_than=older_than, on_batch=count)
    if older_than is None or older_than <= store.expiration:
        # Nothing expired is left: deliveries need not start a cleanup for
        # another interval (the claim cleanup_if_due() compares against).
        with store.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('last_cleanup', ?)",
                         (repr(clock()),))


def stats(db, config, name=None, clock=time.time):
    """Per database: rows, pending and expired rows, the oldest and newest
    delivery, the expiry settings and the last cleanup."""
    cutoff = clock() - config.expiration_hours * 3600
    result = []
    for database in databases(db, config, name):
        item = {"database": database["name"], "rows": 0, "pending": 0, "expired": 0,
                "oldest": None, "newest": None, "last_cleanup": None}
        with deliveredto(config, database["path"]) as store:
            if store is not None:
                item.update(_table_stats(store.conn, cutoff))
        item["expiration_hours"] = config.expiration_hours
        item["cleanup_interval_seconds"] = config.cleanup_interval_seconds
        result.append(item)
    return result


def _table_stats(conn, cutoff):
    rows, pending, oldest, newest = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(state = 'pending'), 0), MIN(delivered_at), "
        "MAX(delivered_at) FROM delivered_to").fetchone()
    expired = conn.execute("SELECT COUNT(*) FROM delivered_to WHERE delivered_at < ?",
                           (cutoff,)).fetchone()[0]
    last = conn.execute("SELECT value FROM meta WHERE key = 'last_cleanup'").fetchone()
    # cleanup_if_due() writes '0' when a bounded run did not finish: the claim
    # is open again, so there is no completed cleanup to show.
    last = float(last[0]) if last and float(last[0]) > 0 else None
    return {"rows": rows, "pending": pending, "expired": expired,
            "oldest": iso_utc(oldest), "newest": iso_utc(newest),
            "last_cleanup": iso_utc(last)}

"""The DeliveredTo tables for the admin: look a message up, prune expired
rows on demand, and report what each database holds.

Admin commands only (`lda dedup ...`); a delivery prunes through
DeliveredTo.cleanup_if_due() and never imports this module.
"""

import time

from ..deliver.message import MessageInfo
from ..store.deliveredto import CLEANUP_BATCH
from .databases import database_rows, deliveredto, iso_utc
from .mailboxes import get_mailbox

LOOKUP_COLUMNS = ("mailbox", "message_id", "submit_time", "delivered_at", "state",
                  "location")


def normalize_message_id(text):
    """The Message-ID as deliveries store it: "<a@b>" and "a@b" find the same
    rows, and an overlong ID becomes the same digest."""
    return MessageInfo._message_id(text.encode("utf-8", "surrogateescape")) or text


def lookup(db, config, message_id, mailbox=None, clock=time.time):
    """The DeliveredTo rows for message_id in every database, or only in the
    home database of mailbox (UnknownRecipient, 67, if it does not exist).

    The key starts with the mailbox, so without one each table is scanned:
    fine for an admin's question, and no index costs the deliveries."""
    where, args = "message_id = ?", [normalize_message_id(message_id)]
    only = None
    if mailbox is not None:
        row = get_mailbox(db, mailbox)
        only, where = row["database"], where + " AND mailbox = ?"
        args.append(row["address"])
    cutoff = clock() - config.expiration_hours * 3600
    found = []
    for database in database_rows(db, only):
        with deliveredto(config, database["path"]) as store:
            if store is None:
                continue
            rows = store.conn.execute(
                f"SELECT {', '.join(LOOKUP_COLUMNS)} FROM delivered_to WHERE {where} "
                "ORDER BY delivered_at", args).fetchall()
        for values in rows:
            item = dict(zip(LOOKUP_COLUMNS, values))
            # An expired row no longer stops a resend: say so, it is the
            # usual answer to "why did this arrive twice?".
            item["expired"] = item["delivered_at"] < cutoff
            item["delivered_at"] = iso_utc(item["delivered_at"])
            item["database"] = database["name"]
            found.append(item)
    return found


def count_expired(db, config, name=None, older_than=None, clock=time.time):
    """Rows a cleanup with these arguments would delete (for a progress bar)."""
    cutoff = clock() - (older_than if older_than is not None
                        else config.expiration_hours * 3600)
    total = 0
    for database in database_rows(db, name):
        with deliveredto(config, database["path"]) as store:
            if store is not None:
                total += store.conn.execute(
                    "SELECT COUNT(*) FROM delivered_to WHERE delivered_at < ?",
                    (cutoff,)).fetchone()[0]
    return total


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
    for database in database_rows(db, name):
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
    for database in database_rows(db, name):
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

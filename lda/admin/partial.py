"""Partial deliveries: list them, retry them, bounce the ones given up.

`lda deliver` records a forward target that could not take a message while
other targets did (delivery.py, `_record_partial`): a row in the
`partial_deliveries` table of a mailbox database and the delivered bytes
spooled under `<db_root>/partial/`.  A retry redelivers that copy to the
target as it is now (its mailbox in its current database, or the external
address through sendmail); a record older than `partial_expiration` is
bounced to its sender with an RFC 3464 DSN instead.

Order of effects, for "never lose, never twice" (DESIGN.md):
- a retry delivers first (the DeliveredTo row commits with the file), then
  deletes the record, then unlinks the spooled copy.  A crash in between
  leaves a record whose next retry is a duplicate (DeliveredTo says so, and
  the record goes), or an unreferenced spool file; never a record without a
  copy, never a second copy;
- a bounce sends the DSN first, then removes record and copy: a crash can
  repeat a DSN, never drop one.
One run at a time (a lock under state_dir/locks), so a timer and an admin
never send the same DSN twice.
"""

import os
import sqlite3
import time
from contextlib import contextmanager

from ..deliver.delivery import Delivery
from ..deliver.envelope import split_extension
from ..deliver.resolve import ManagedResolver, Plan, address_folder
from ..errors import LdaError, TemporaryFailure, UnknownName, UnknownRecipient, UsageError
from ..store.deliveredto import DB_FILE, DeliveredTo
from ..store.directory import Directory
from .databases import held_here, refuse_elsewhere
from .state import check_state_dir, connect, guarded, probe, state_dir

# delivered and duplicate are delivery.py's outcome values, used as they are.
DELIVERED, DUPLICATE, DEFERRED, BOUNCED = "delivered", "duplicate", "deferred", "bounced"
LOST, ERROR = "lost-spool", "error"
WOULD_BOUNCE = "would-bounce"
RUN_LOCK = "partial.lock"


def list_partials(config, database=None, clock=time.time):
    """Every partial-delivery record, across the mailbox databases (or one),
    with its `database` name, `db_root` and `age_seconds`."""
    now = clock()
    records = []
    for name, db_root in _databases(config, database):
        path = os.path.join(db_root, DB_FILE)
        if not os.path.lexists(path):
            continue  # no delivery has touched this database yet
        conn = connect(path, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            with guarded(path):
                rows = conn.execute("SELECT * FROM partial_deliveries ORDER BY id").fetchall()
        finally:
            conn.close()
        records.extend({**dict(row), "database": name, "db_root": db_root,
                        "age_seconds": int(now - row["created"])} for row in rows)
    return records


def retry_partials(config, log, clock=time.time, sendmail=None, ids=None, progress=None):
    """Redeliver each record (or those `ids`: "N" or "DATABASE:N"); bounce the
    expired ones.  Returns one report dict per record; `progress(done, total)`
    is called once with done=0, then after each record."""
    with _run_lock(config):
        records = select(list_partials(config, clock=clock), ids)
        if not records:
            return []
        resolver = _resolver(config)
        reports = []
        try:
            if progress:
                progress(0, len(records))
            for done, record in enumerate(records, 1):
                reports.append(_guarded(_retry_one, config, log, record, clock, sendmail,
                                        resolver))
                if progress:
                    progress(done, len(records))
        finally:
            resolver.directory.close()
        return reports


def bounce_partials(config, log, clock=time.time, sendmail=None, ids=None,
                    older_than=None):
    """Give up on the records (those `ids`, those older than `older_than`
    seconds, or all): DSN to the sender, then remove record and copy."""
    with _run_lock(config):
        records = _to_bounce(config, clock, ids, older_than)
        return [_guarded(_bounce_one, config, log, r, clock, sendmail) for r in records]


def bounce_preview(config, clock=time.time, ids=None, older_than=None):
    """The reports bounce_partials() would give, with the outcome
    WOULD_BOUNCE, sending and removing nothing (`--dry-run`; with `--now`,
    the ages at that moment).  Takes no run lock: it changes nothing."""
    from ..deliver.dsn import returned_to, status_for  # lazy, as in _bounce_one

    reports = []
    for record in _to_bounce(config, clock, ids, older_than):
        note = (f"DSN to <{record['sender']}>" if returned_to(record["sender"])
                else "null sender, no DSN")
        reports.append({**_report(record, WOULD_BOUNCE, f"{status_for(record['reason'])} "
                                                        f"{record['reason']}; {note}"),
                        "age_seconds": record["age_seconds"]})
    return reports


def _to_bounce(config, clock, ids, older_than):
    """The records a bounce with these arguments gives up on."""
    records = select(list_partials(config, clock=clock), ids)
    if older_than is None:
        return records
    now = clock()
    return [r for r in records if now - r["created"] >= older_than]


def select(records, ids):
    """The records named by ids ("7", or "db2:7" where an id is in several
    databases); all records when ids is None."""
    if ids is None:
        return records
    chosen = []
    for spec in map(str, ids):
        found = [r for r in records if spec in (str(r["id"]), f"{r['database']}:{r['id']}")]
        if not found:
            raise UnknownName(f"no partial delivery {spec}; see 'lda partial list'")
        if len(found) > 1:
            names = ", ".join(f"{r['database']}:{r['id']}" for r in found)
            raise UsageError(f"partial delivery {spec} is ambiguous ({names}); "
                             "give DATABASE:ID")
        if found[0] not in chosen:
            chosen.append(found[0])
    return chosen


def _retry_one(config, log, record, clock, sendmail, resolver):
    if clock() - record["created"] > config.partial_expiration:
        return _bounce_one(config, log, record, clock, sendmail)
    if not os.path.exists(record["spool_file"]):
        # Keep the record: the admin decides (bounce it, or restore the file).
        log.error(f"partial {_name(record)}: to=<{record['target']}>: spooled copy "
                  f"{record['spool_file']} is missing; record kept")
        return _report(record, LOST, f"spooled copy {record['spool_file']} is missing")
    try:
        target = _target(resolver, record)
    except LdaError as e:
        error = e
    else:
        outcome = _redeliver(config, log, record, clock, sendmail, resolver, target)
        if outcome in (DELIVERED, DUPLICATE):
            _remove(config, log, record, clock)
            return _report(record, outcome, "")
        error = outcome
    # Led by the RFC 3463 code, as delivery.py records it: the DSN of a
    # bounce below takes its status from there (5.2.3 for a message too big
    # for the quota has no wording dsn.STATUS_WORDS would know).
    reason = error.reason()
    if error.permanent:  # retrying cannot help: return it now
        return _bounce_one(config, log, {**record, "reason": reason}, clock, sendmail)
    _count_attempt(config, record, reason, clock)
    return _report(record, DEFERRED, reason)


def _redeliver(config, log, record, clock, sendmail, resolver, target):
    """DELIVERED, DUPLICATE, or the LdaError the target answered."""
    delivery = Delivery(config, resolver, log, sender=record["sender"] or None,
                        clock=clock, sendmail=sendmail)
    plan = Plan(record["recipient"], record["recipient"], [target], target.db_root)
    result = delivery.redeliver(plan, record["spool_file"])
    outcome = result.outcomes.get(target)
    if outcome in (DELIVERED, DUPLICATE) or isinstance(outcome, LdaError):
        return outcome
    return result.error or TemporaryFailure("no outcome for the target")


def _target(resolver, record):
    """The record's target as it is now, without alias expansion: its mailbox
    in the database it lives in today (a folder for an address extension),
    or the external address (a mailbox another host holds now included:
    re-sent for that host), checked against its recipient's home database
    (where `lda deliver` keeps the DeliveredTo rows of forwards)."""
    if not record["mailbox"]:
        return resolver.direct_target(record["target"], _home_db(resolver, record),
                                      resend_elsewhere=True)
    target = resolver.direct_target(record["mailbox"], record["db_root"])
    if not target.local:
        raise UnknownRecipient(f"mailbox {record['mailbox']} no longer exists")
    if record["target"] != record["mailbox"]:
        _, extension = split_extension(record["target"], resolver.config.recipient_delimiter)
        target.address = record["target"]
        target.folder = address_folder(resolver.config, extension)
    return target


def _home_db(resolver, record):
    directory = resolver.directory
    base, _ = split_extension(record["recipient"], resolver.config.recipient_delimiter)
    own = directory.mailbox(record["recipient"]) or directory.mailbox(base)
    return own.db_root if own else directory.default_database(resolver.config.host_name)[1]


def _bounce_one(config, log, record, clock, sendmail):
    """DSN to the sender (none to the null sender: RFC 5321 section 4.5.5,
    a bounce is never bounced), then remove record and copy."""
    # Lazy: dsn brings the email package, which only a bounce needs and
    # every other admin command (cli imports this module) would load.
    from ..deliver import dsn

    status = dsn.status_for(record["reason"])
    if dsn.returned_to(record["sender"]):
        message = dsn.build_dsn(config, record, dsn.read_header_block(record["spool_file"]),
                                clock())
        try:
            dsn.send_dsn(config, record["sender"], message, sendmail)
        except LdaError as e:
            log.warning(f"partial {_name(record)}: DSN to <{record['sender']}> not sent: {e}")
            return _report(record, DEFERRED, f"DSN not sent: {e}")
        note = f"DSN sent to <{record['sender']}>"
    else:
        note = "null sender, no DSN"
    log.info(f"partial {_name(record)}: to=<{record['target']}>, orig_to="
             f"<{record['recipient']}>, dsn={status}, status=bounced ({note})")
    _remove(config, log, record, clock)
    return _report(record, BOUNCED, f"{dsn.final_reason(record['reason'])}; {note}")


def _remove(config, log, record, clock):
    """Delete the record, then unlink its copy (in that order: see above)."""
    with _database(config, record, clock) as db, db.transaction():
        # The spool name too: an id can be reused once the highest row is gone.
        db.conn.execute("DELETE FROM partial_deliveries WHERE id = ? AND spool_file = ?",
                        (record["id"], record["spool_file"]))
    spool = record["spool_file"]
    if os.path.dirname(os.path.abspath(spool)) != os.path.join(record["db_root"], "partial"):
        log.warning(f"partial {_name(record)}: {spool} is outside "
                    f"{record['db_root']}/partial; left in place")
        return
    try:
        os.unlink(spool)
    except FileNotFoundError:
        pass


def _count_attempt(config, record, reason, clock):
    with _database(config, record, clock) as db, db.transaction():
        db.conn.execute(
            "UPDATE partial_deliveries SET attempts = attempts + 1, last_attempt = ?, "
            "reason = ? WHERE id = ? AND spool_file = ?",
            (clock(), reason, record["id"], record["spool_file"]))


@contextmanager
def _database(config, record, clock):
    db = DeliveredTo(record["db_root"], config.expiration_hours,
                     config.cleanup_interval_seconds, clock)
    try:
        yield db
    finally:
        db.close()


def _guarded(step, config, log, record, *args):
    """One record's failure is reported, never the end of the run: an
    LdaError leaves it for the next run, anything else is logged with its
    traceback and reported as "error" (the CLI then exits 75)."""
    try:
        return step(config, log, record, *args)
    except LdaError as e:
        log.warning(f"partial {_name(record)}: {e}")
        return _report(record, DEFERRED, " ".join(str(e).split()))
    except Exception as e:  # noqa: BLE001 - report it, go on with the others
        log.exception(e, prefix=f"partial {_name(record)}: ")
        return _report(record, ERROR, " ".join(f"{type(e).__name__}: {e}".split()))


def _report(record, outcome, reason):
    return {"database": record["database"], "id": record["id"],
            "target": record["target"], "recipient": record["recipient"],
            "outcome": outcome, "reason": reason}


def _name(record):
    return f"{record['database']}:{record['id']}"


def _databases(config, only=None):
    """(name, path) of the mailbox databases this host holds (one of another
    host named is refused, 64); none in per-user mode, whose single target
    is always the primary one and so never partial."""
    if config.per_user:
        return []
    check_state_dir(config)
    if os.path.lexists(config.directory_path):
        probe(config.directory_path)
    directory = Directory(config.directory_path)
    try:
        with guarded(config.directory_path):
            cursor = directory.conn.execute("SELECT * FROM databases ORDER BY name")
            columns = [d[0] for d in cursor.description]
            rows = [dict(zip(columns, row)) for row in cursor]
    finally:
        directory.close()
    if only is not None:
        rows = [r for r in rows if r["name"] == only]
        if not rows:
            raise UnknownName(f"no mailbox database named {only!r}")
        refuse_elsewhere(config, rows[0])
    return [(r["name"], r["path"]) for r in rows if held_here(config, r)]


def _resolver(config):
    return ManagedResolver(config, Directory(config.directory_path))


@contextmanager
def _run_lock(config):
    # Lazy: filelock brings the logging package, which only the commands
    # that take this lock need and every other admin command would load.
    from filelock import FileLock, Timeout

    lock = FileLock(os.path.join(state_dir(config, "locks"), RUN_LOCK),
                    timeout=config.lock_timeout_seconds)
    try:
        lock.acquire()
    except Timeout:
        raise TemporaryFailure("another 'lda partial' run holds "
                               f"{lock.lock_file}; try again later") from None
    try:
        yield
    finally:
        lock.release()

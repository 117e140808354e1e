"""`lda db check`: what is wrong with lda's state, and how to repair it.

It reads and never writes: state_dir; the directory's SQLite integrity and
its unfinished moves; then, for each mailbox database this host holds (or
the one named; another host's are checked on that host),
its directory, the integrity of its lda.sqlite (PRAGMA quick_check), the
Maildirs its mailboxes name, and the DeliveredTo rows and partial records
that name a mailbox it does not hold.  Each problem is the file it concerns,
what is wrong, and the repair, naming only commands that exist.
"""

import glob
import os

from ..errors import (EX_CONFIG, EX_NOPERM, EX_TEMPFAIL, LdaError,
                      NoPermission, TemporaryFailure, UnknownName)
from ..store.deliveredto import DB_FILE
from .databases import held_here, refuse_elsewhere
from .state import DamagedDatabase, check_access, connect, guarded, salvage_hint

# quick_check lists at most this many faults: the first few say enough.
MAX_FAULTS = 5
MAILDIR_PARTS = ("cur", "new", "tmp")


class Findings:
    """The problems found so far; the exit status they call for."""

    def __init__(self):
        self.problems, self.temporary, self.denied = [], 0, 0

    def add(self, file, problem, repair, temporary=False):
        self.problems.append({"file": str(file), "problem": problem, "repair": repair})
        self.temporary += temporary

    def failed_to_open(self, path, error):
        """An LdaError met opening path, as a problem."""
        if isinstance(error, DamagedDatabase):
            return self.add(path, error.problem, error.repair)
        if isinstance(error, NoPermission):  # the user's, not the file's
            self.denied += 1
            problem, _, repair = str(error).removeprefix(f"{path}: ").partition("; ")
            return self.add(path, problem, repair)
        temporary = isinstance(error, TemporaryFailure)
        self.add(path, str(error).removeprefix(f"{path}: "),
                 "run the check again later" if temporary else
                 "check its kind and permissions, or restore it from a backup", temporary)

    def exit_code(self):
        """78 if a file needs repair; else 77 if this user may not read
        one; else 75 if one was only busy; else 0."""
        if len(self.problems) > self.temporary + self.denied:
            return EX_CONFIG
        if self.denied:
            return EX_NOPERM
        return EX_TEMPFAIL if self.problems else 0


def check(config, name=None, progress=None):
    """Check lda's state (one mailbox database's, name given): a summary
    with "problems", each {file, problem, repair}, and "exit_code" (0 clean,
    78 problems to repair, 75 only files that were busy or unreadable for
    now).  progress(done, total) after each database and each mailbox."""
    check_access(config)  # else another user's state_dir looks empty, and clean
    findings = Findings()
    summary = inspect(config, findings, name, progress)
    del summary["tables"]
    summary["exit_code"] = findings.exit_code()
    return summary


def inspect(config, findings, name=None, progress=None):
    """check()'s work, its problems added to findings (`lda config check`
    adds its own to the same): the summary, and under "tables" the
    directory's databases and mailboxes as read (None if it could not be),
    for a caller that goes on to each mailbox."""
    summary = {"databases": 0, "mailboxes": 0, "problems": findings.problems,
               "elsewhere": [], "tables": None}
    if _state_dir_usable(config, findings):
        if config.per_user:
            _integrity(os.path.join(config.state_dir, DB_FILE), findings)
        else:
            _check_managed(config, name, summary, findings, progress)
    return summary


def _state_dir_usable(config, findings):
    if os.path.isdir(config.state_dir):
        return True
    if os.path.lexists(config.state_dir):
        findings.add(config.state_dir, "state_dir is not a directory",
                     "move the file away, or set state_dir in lda.toml to a directory")
    return False  # no state at all: nothing to check


def _check_managed(config, name, summary, findings, progress):
    tables = _read_directory(config, findings)
    if tables is None:
        return
    databases, mailboxes, moves = tables
    if name is not None:
        databases = [d for d in databases if d["name"] == name]
        if not databases:
            raise UnknownName(f"no mailbox database named {name!r}")
        refuse_elsewhere(config, databases[0])
    # Another host's databases are that host's to check: their paths are on
    # its disks, and here may be nothing, or something else.
    summary["elsewhere"] = [d["name"] for d in databases if not held_here(config, d)]
    databases = [d for d in databases if held_here(config, d)]
    here = {d["name"] for d in databases}
    summary["tables"] = (databases, [m for m in mailboxes if m["database"] in here])
    moving = {move["address"] for move in moves}
    for move in moves:
        address, target = move["address"], move["target_db"]
        findings.add(config.directory_path, f"unfinished move of {address} from "
                     f"{move['source_db']} to {target} (step {move['step']})",
                     f"`lda mailbox move {address} --to {target}` finishes it, "
                     f"`lda mailbox move {address} --rollback` undoes it")
    homes = {m["address"]: m["database"] for m in mailboxes}
    held = [[m for m in mailboxes if m["database"] == d["name"]] for d in databases]
    total, done = len(databases) + sum(map(len, held)), 0
    for database, its_mailboxes in zip(databases, held):
        _check_database(database, its_mailboxes, homes, moving, findings)
        done += 1 + len(its_mailboxes)
        if progress is not None:
            progress(done, total)
    summary["databases"], summary["mailboxes"] = len(databases), sum(map(len, held))


def _read_directory(config, findings):
    """(databases, mailboxes, moves) as lists of dicts; None if the
    directory is missing or damaged (a problem then, unless a new site)."""
    path = config.directory_path
    if not os.path.lexists(path):
        orphans = glob.glob(os.path.join(glob.escape(config.state_dir), "databases", "*",
                                         DB_FILE))
        if orphans:
            findings.add(path, f"no mailbox directory, but {orphans[0]} has DeliveredTo "
                         "rows", "restore it from a backup, or register each database "
                         "again (`lda db create NAME --path DIR`) and create its "
                         "mailboxes (`lda mailbox create ADDRESS --db NAME`)")
        return None
    conn = _integrity(path, findings)
    if conn is None:
        return None
    try:
        with guarded(path):
            if not (_has_table(conn, "databases") and _has_table(conn, "mailboxes")):
                findings.add(path, "not an lda mailbox directory (no mailboxes or "
                             "databases table)", "restore it from a backup")
                return None
            return (_rows(conn, "SELECT * FROM databases ORDER BY name"),
                    _rows(conn, "SELECT address, database, maildir FROM mailboxes "
                                "ORDER BY address"),
                    _rows(conn, "SELECT * FROM moves") if _has_table(conn, "moves") else [])
    except LdaError as e:
        findings.failed_to_open(path, e)
        return None
    finally:
        conn.close()


def _integrity(path, findings):
    """A read-only connection to the SQLite file at path if it opens and
    passes PRAGMA quick_check; else None, and the problem is recorded."""
    try:
        conn = connect(path, readonly=True)
    except LdaError as e:
        findings.failed_to_open(path, e)
        return None
    try:
        with guarded(path):
            faults = [row[0] for row in conn.execute(f"PRAGMA quick_check({MAX_FAULTS})")]
    except LdaError as e:
        conn.close()
        findings.failed_to_open(path, e)
        return None
    if faults == ["ok"]:
        return conn
    conn.close()
    findings.add(path, "integrity check failed: " + "; ".join(faults), salvage_hint(path))
    return None


def _check_database(database, mailboxes, homes, moving, findings):
    name, root = database["name"], database["path"]
    if not os.path.isdir(root):
        findings.add(root, f"the directory of mailbox database {name} is missing "
                     f"({len(mailboxes)} mailboxes)", "restore it from a backup, or "
                     "`lda mailbox delete ADDRESS` each of its mailboxes")
        return
    for mailbox in mailboxes:
        _check_maildir(os.path.join(root, mailbox["maildir"]), mailbox["address"], findings)
    path = os.path.join(root, DB_FILE)
    if not os.path.lexists(path):
        return  # no delivery has reached this database yet
    conn = _integrity(path, findings)
    if conn is None:
        return
    try:
        with guarded(path):
            _check_rows(conn, path, name, homes, moving, findings)
            _check_partials(conn, path, name, homes, moving, findings)
    except LdaError as e:
        findings.failed_to_open(path, e)
    finally:
        conn.close()


def _check_maildir(path, address, findings):
    missing = [part for part in MAILDIR_PARTS if not os.path.isdir(os.path.join(path, part))]
    if not missing:
        return
    what = ("is missing" if not os.path.isdir(path)
            else "has no " + ", ".join(f"{part}/" for part in missing))
    findings.add(path, f"the Maildir of {address} {what}",
                 f"restore it from a backup, or recreate it (`mkdir -p {path}/cur "
                 f"{path}/new {path}/tmp`, owned by the owner of state_dir); or "
                 f"`lda mailbox delete {address}`")


def _check_rows(conn, path, name, homes, moving, findings):
    """DeliveredTo rows whose mailbox is not one of this database's."""
    for key in _row_keys(conn):
        owner = _owner(key, homes)
        if owner is None or owner in moving or homes.get(owner) == name:
            continue
        count = conn.execute("SELECT COUNT(*) FROM delivered_to WHERE mailbox = ?",
                             (key,)).fetchone()[0]
        expire = (f"they expire after expiration_hours, and `lda dedup cleanup --db "
                  f"{name}` then removes them")
        if owner in homes:
            findings.add(path, f"{count} DeliveredTo rows of {key}, whose mailbox is in "
                         f"database {homes[owner]}", f"left by a move; {expire}")
        else:
            findings.add(path, f"{count} DeliveredTo rows of {key}, which is no mailbox",
                         f"{expire}; or `lda mailbox create {owner} --db {name}` if it "
                         "was deleted by mistake")


def _row_keys(conn):
    """The distinct mailbox keys of delivered_to: one seek each in its
    primary key, not a scan of every row."""
    keys, key = [], ""
    while row := conn.execute("SELECT mailbox FROM delivered_to WHERE mailbox > ? "
                              "ORDER BY mailbox LIMIT 1", (key,)).fetchone():
        key = row[0]
        keys.append(key)
    return keys


def _owner(key, homes):
    """The mailbox a DeliveredTo key belongs to (resolve.Target.key_mailbox
    and sieve_delivery); None for a forward outside the store."""
    if key.startswith("forward:"):
        return None
    for prefix in ("redirect:", "vacation:"):
        if key.startswith(prefix):
            return key[len(prefix):].rpartition(":")[0]
    return key if key in homes else key.partition("#")[0]  # a Sieve store: MBOX#folder


def _check_partials(conn, path, name, homes, moving, findings):
    for record in _rows(conn, "SELECT id, mailbox, target, spool_file FROM "
                              "partial_deliveries ORDER BY id"):
        which, mailbox = f"{name}:{record['id']}", record["mailbox"]
        bounce = f"`lda partial bounce --id {which}` returns it to its sender"
        if mailbox is not None and mailbox not in moving and homes.get(mailbox) != name:
            where = (f"whose mailbox is in database {homes[mailbox]}" if mailbox in homes
                     else "which is no mailbox")
            findings.add(path, f"partial delivery {which} is for {mailbox}, {where}",
                         bounce)
        if not os.path.isfile(record["spool_file"]):
            findings.add(record["spool_file"], f"the spooled copy of partial delivery "
                         f"{which} (to {record['target']}) is missing",
                         f"restore the file, or {bounce}")


def _rows(conn, sql):
    cursor = conn.execute(sql)
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row)) for row in cursor]


def _has_table(conn, table):
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (table,)).fetchone() is not None

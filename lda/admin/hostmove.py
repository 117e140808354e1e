"""Moving a mailbox to a database on another host of a shared directory
(README, "Moving a mailbox to another host").

Ownership passes in one direction, each step journalled in PostgreSQL's
`moves` row (the same table as a move between databases, move.py):

    begin    -> under the source's mailbox lock, the `moves` row is written
                and this host's mirror updated before the lock is released:
                from then on this host's deliveries defer (4.2.1), and the
                target's defer too (its mirror says the mailbox is here:
                4.3.0); step `send`
    send     -> the Maildir (every folder, maildirsize, keywords, Sieve
                scripts), the spooled partial deliveries and the rows
                (DeliveredTo, forwards', Sieve state, partial records) go
                through move_command to `lda mailbox receive` there, which
                verifies, fsyncs and imports them; step `flip`
    flip     -> one PostgreSQL transaction: the mailbox's database is the
                target and the step `flipped` (the target's deliveries go
                ahead once its mirror shows it; here they get 4.3.0)
    flipped  -> the target confirms (`lda mailbox receive --confirm`), then
                this host removes its copy and rows; the journal row last.

The same command, or --resume, goes on from the journalled step;
--rollback before the flip has the target drop what it received
(`receive --abort`) and lifts the tombstone.  After the flip the mailbox
is the target's: move it back instead.
"""

import hashlib
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import tempfile
import time
from contextlib import ExitStack, contextmanager

from ..deliver.envelope import MAX_ADDRESS
from ..errors import (AlreadyExists, TemporaryFailure, UnknownName, UnknownRecipient,
                      UsageError)
from ..store.directory import Directory
from ..store.maildir import fsync_dir
from .mailboxes import directory_transaction, get_mailbox, open_sqlite_directory
from .move import COLUMNS, SIEVE_TABLES, Move, count_messages, held_lock
from .state import state_dir
from .transfer import (ROWS, StreamRefused, active_link, dir_modes, maildir_entries,
                       make_active_link, receive_stream, write_stream)

SEND, FLIP, FLIPPED = "send", "flip", "flipped"
STAGING = ".lda-receive"
COMMAND_TIMEOUT = 300  # --confirm and --abort: one mirror sync and some unlinks
ROW_TABLES = ("delivered_to", *SIEVE_TABLES, "partial_deliveries")


def database_host(directory, name):
    rows = list(directory["databases"].rows_where("name = ?", [name]))
    if not rows:
        raise UnknownName(f"no mailbox database named {name!r}")
    return rows[0]["host"]


def is_host_move(config, directory, address, target_db):
    """Whether `lda mailbox move` of address (to target_db, or where its
    unfinished move goes) crosses to another host."""
    rows = list(directory["moves"].rows_where("address = ?", [address.lower()]))
    name = rows[0]["target_db"] if rows else target_db
    if not name:
        return False
    host = database_host(directory, name)
    return host is not None and host != config.host_name


def sync_mirror(config, directory):
    """Bring this host's mirror up to date with directory (a PgDirectory)."""
    from .mirror import sync  # lazy: psycopg, for a shared directory only

    mirror = open_sqlite_directory(config)
    try:
        sync(directory, mirror)
    finally:
        mirror.close()


def mirror_view(config):
    return Directory(config.directory_path)


class HostMove(Move):
    """One mailbox's move to another host, run on the host that holds it;
    run_command(argv, stdin) -> (returncode, output) reaches the target."""

    def __init__(self, config, directory, address, progress=None, after_step=None,
                 clock=time.time, run_command=None):
        super().__init__(config, directory, address, progress, after_step, clock)
        self.run_command = run_command or run_command_line
        self.report["method"] = "stream"

    def run(self, target_db, rollback=False):
        if not self.config.directory:
            raise UsageError("a move to another host needs the directory they share: "
                             "directory = \"postgresql://...\" in lda.toml")
        with self._only_move():
            return self._run(target_db, rollback)

    def _only_move(self):
        """One run at a time per mailbox: the mailbox lock is not held
        throughout (deliveries find the tombstone instead of waiting)."""
        name = "move-" + hashlib.sha256(self.address.encode()).hexdigest()[:16] + ".lock"
        return held_lock(os.path.join(state_dir(self.config, "locks"), name), 0,
                         f"another move of {self.address} is running")

    def _run(self, target_db, rollback):
        start = time.monotonic()
        journal = self._journal()
        if journal is None:
            if rollback:
                raise UnknownName(f"no unfinished move of {self.address} to roll back")
            with self.mailbox_lock():
                journal = self._begin(target_db)
        elif target_db and target_db != journal["target_db"]:
            raise AlreadyExists(f"a move of {self.address} to {journal['target_db']} is "
                                f"unfinished: resume it with --to {journal['target_db']} "
                                "or undo it with --rollback")
        self.report.update(source=journal["source_db"], target=journal["target_db"],
                           target_host=database_host(self.directory, journal["target_db"]))
        if rollback:
            self._rollback(journal)
            self.report.update(result="rolled back", maildir=self._paths(journal)[0])
        else:
            self._forward(journal)
            self.report.update(result="moved", maildir=journal["target_maildir"])
        self.report["seconds"] = round(time.monotonic() - start, 3)
        return self.report

    def _begin(self, target_db):
        mailbox = get_mailbox(self.directory, self.address)
        source_host = database_host(self.directory, mailbox["database"])
        if not self.config.host_name or source_host != self.config.host_name:
            raise UsageError(f"{self.address} is in {mailbox['database']} on host "
                             f"{source_host or '(none)'}: run the move on that host")
        target_host = database_host(self.directory, target_db)
        if target_host in (None, self.config.host_name):
            raise UsageError(f"{target_db} is not on another host")
        self._open_db(mailbox["database"]).close()  # a damaged file stops it here
        journal = {"address": self.address, "source_db": mailbox["database"],
                   "target_db": target_db, "source_maildir": mailbox["maildir"],
                   "target_maildir": mailbox["maildir"], "step": SEND,
                   "started": self.clock()}
        self.directory["moves"].insert(journal)  # the mirror follows (after_commit)
        self._check_tombstone()
        self.after_step("begin")
        return journal

    def _check_tombstone(self):
        """This host's deliveries see the move (its mirror has the row)
        before anything leaves: else a delivery could land after the copy."""
        view = mirror_view(self.config)
        try:
            if not view.moving(self.address):
                raise TemporaryFailure(f"this host's directory mirror does not show the "
                                       f"move of {self.address} yet; run the move again")
        finally:
            view.close()

    def _target_argv(self, journal, *args):
        """move_command for the target's host, then args quoted for a POSIX
        shell: ssh joins its arguments into one line that the remote user's
        shell reads, and an address may hold ', $ or ` (RFC 5322 atext)."""
        host = database_host(self.directory, journal["target_db"])
        return ([a.replace("{host}", host) for a in self.config.move_command]
                + [shlex.quote(a) for a in args])

    def _step(self, step, event):
        self.directory["moves"].update(self.address, {"step": step})
        self.after_step(event)

    def _forward(self, journal):
        if journal["step"] == SEND:
            with self.mailbox_lock():
                sync_mirror(self.config, self.directory)
                self._check_tombstone()
            self._send(journal)
            self._step(FLIP, "sent")
            journal["step"] = FLIP
        if journal["step"] == FLIP:
            with directory_transaction(self.directory) as execute:
                execute("UPDATE mailboxes SET database = ?, maildir = ? WHERE address = ?",
                        (journal["target_db"], journal["target_maildir"], self.address))
                execute("UPDATE moves SET step = ? WHERE address = ?", (FLIPPED, self.address))
            self.after_step("flipped")
        self._ask_target(journal, "--confirm")
        self.after_step("confirmed")
        self._clean_source(journal)

    def _send(self, journal):
        source, _ = self._paths(journal)
        dirs, files = maildir_entries(source)
        db = self._open_db(journal["source_db"])
        try:
            rows, spools = self._rows(db)
        finally:
            db.close()
        files += [(f"partial/{os.path.basename(s)}", s) for s in spools]
        files.append((ROWS, json.dumps(rows).encode()))
        header = {"address": self.address, "target_db": journal["target_db"],
                  "target_maildir": journal["target_maildir"], "dirs": dirs,
                  "dir_modes": dir_modes(source, dirs),
                  "active_link": active_link(source)}
        self.report.update(messages=count_messages(source),
                           rows=len(rows["delivered_to"]["rows"]),
                           sieve_rows=sum(len(rows[t]["rows"]) for t in SIEVE_TABLES),
                           partials=len(spools))
        try:
            code, output = self.run_command(
                self._target_argv(journal),
                lambda out: write_stream(out, header, files,
                                         lambda done, total: self.progress("send", done, total)))
        except OSError as e:
            # A reader of the Maildir (an IMAP server) renamed a file meanwhile.
            raise TemporaryFailure(f"{e.filename}: {e.strerror} while it was sent; run the "
                                   "move again") from None
        if code != 0:
            raise TemporaryFailure(f"the target refused or did not take {self.address}: "
                                   f"{command_said(code, output)}")

    def _rows(self, db):
        """What goes to the target's lda.sqlite, and the spooled copies."""
        def select(table, columns, keys):
            cursor = db.conn.execute(
                f"SELECT {columns} FROM {table} WHERE mailbox IN "
                f"({', '.join('?' * len(keys))})", keys)
            return {"columns": [d[0] for d in cursor.description], "rows": cursor.fetchall()}

        rows = {"delivered_to": select("delivered_to", COLUMNS, self._row_keys())}
        for table in SIEVE_TABLES:
            rows[table] = select(table, "*", [self.address])
        partial = select("partial_deliveries", "*", [self.address])
        at = partial["columns"].index("spool_file")
        spools = [row[at] for row in partial["rows"]]
        keep = [i for i, c in enumerate(partial["columns"]) if c != "id"]
        rows["partial_deliveries"] = {
            "columns": [partial["columns"][i] for i in keep],
            "rows": [[row[i] for i in keep] for row in partial["rows"]]}
        return rows, spools

    def _ask_target(self, journal, option):
        code, output = self.run_command(self._target_argv(journal, option, self.address),
                                        None)
        if code != 0:
            raise TemporaryFailure(f"the target host did not {option[2:]} {self.address}: "
                                   f"{command_said(code, output)}")

    def _clean_source(self, journal):
        source, _ = self._paths(journal)
        with self.mailbox_lock():
            self._forget_mailbox(journal["source_db"])
            if os.path.isdir(source) and not os.path.islink(source):
                shutil.rmtree(source)
                fsync_dir(os.path.dirname(source))
        self.after_step("cleaned")
        self.directory["moves"].delete(self.address)
        self.after_step("done")

    def _rollback(self, journal):
        if journal["step"] == FLIPPED:
            raise UsageError(f"{self.address} is in {journal['target_db']} already (the "
                             "directory has flipped); nothing rolled back: finish the move, "
                             f"then move it back with --to {journal['source_db']}")
        self._ask_target(journal, "--abort")
        self.directory["moves"].delete(self.address)  # the mirror follows: deliveries resume
        self.after_step("rolled-back")


def command_said(code, output):
    """move_command's last line and its exit status, which tells ssh's own
    failures (255: unreachable, host key, authentication) from the remote
    lda's (its sysexits code)."""
    return f"{output} (exit {code})" if output else f"exit {code}"


def run_command_line(argv, feed):
    """Run argv; feed(stdin) writes its input (None: no input).  Returns
    (exit status, its last line of output)."""
    with tempfile.TemporaryFile() as output:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=output,
                                    stderr=subprocess.STDOUT)
        except OSError as e:
            raise TemporaryFailure(f"move_command {argv[0]}: {e.strerror}") from None
        try:
            if feed is not None:
                feed(proc.stdin)
        except BrokenPipeError:
            pass  # it stopped reading: its status and message say why
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            code = proc.wait(timeout=None if feed else COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise TemporaryFailure(f"move_command {argv[0]}: no answer within "
                                   f"{COMMAND_TIMEOUT} s") from None
        output.seek(0)
        lines = output.read().decode(errors="replace").strip().splitlines()
    return code, lines[-1] if lines else ""


# -- the target's side: `lda mailbox receive` ---------------------------------


def checked_address(address):
    """An address as a stream or the command line gives it: printable and
    of an address's length, or UsageError (64)."""
    if not isinstance(address, str) or len(address) > MAX_ADDRESS or not address.isprintable():
        raise UsageError(f"invalid address {str(address)[:80]!r}")
    return address.lower()


class Receiver(Move):
    """The target host's part of a move: receive(), confirm(), abort()."""

    def __init__(self, config, directory, address, clock=time.time):
        if not config.directory:
            raise UsageError("lda mailbox receive takes mailboxes of a shared directory: "
                             "directory = \"postgresql://...\" in lda.toml")
        super().__init__(config, directory, checked_address(address), clock=clock)

    def _incoming(self, target_db=None):
        """The journal of the move coming here; UsageError when there is
        none, or when the mailbox is already served by this host."""
        journal = self._journal()
        if journal is None or (target_db and journal["target_db"] != target_db):
            raise UnknownName(f"no move of {self.address} to this host is under way")
        if database_host(self.directory, journal["target_db"]) != self.config.host_name:
            raise UsageError(f"{journal['target_db']} is not on this host "
                             f"({self.config.host_name or 'no host_name'})")
        return journal

    def _staging(self, journal):
        name = hashlib.sha256(self.address.encode()).hexdigest()[:32]
        return os.path.join(self._db_path(journal["target_db"]), STAGING, name)

    def _served_here(self):
        mailbox = get_mailbox(self.directory, self.address)
        return database_host(self.directory, mailbox["database"]) == self.config.host_name

    def receive(self, stream):
        with ExitStack() as held:
            return self._receive(stream, held)

    def _receive(self, stream, held):
        """The mailbox lock here is held from the manifest on: a receive
        still refusing the rest of a cut stream finishes before the next."""
        state = {}

        def place(manifest):
            try:
                self.address = checked_address(manifest.get("address"))
            except UsageError as e:
                raise StreamRefused(f"malformed manifest: {e}") from None
            held.enter_context(self.mailbox_lock())
            journal = self._incoming(manifest.get("target_db"))
            if journal["step"] != SEND or self._served_here():
                raise UsageError(f"{self.address} is past sending (step {journal['step']})")
            staging = self._staging(journal)
            if os.path.lexists(staging):
                shutil.rmtree(staging)
            os.makedirs(staging, mode=0o700)
            disk = os.statvfs(staging)
            state.update(journal=journal, staging=staging)
            return staging, disk.f_bavail * disk.f_frsize

        try:
            manifest = receive_stream(stream, place)
            return self._accept(state["journal"], state["staging"], manifest)
        finally:
            if "staging" in state and os.path.lexists(state["staging"]):
                shutil.rmtree(state["staging"])

    def _accept(self, journal, staging, manifest):
        """Rows into lda.sqlite in one transaction, then the Maildir into place."""
        root = self._db_path(journal["target_db"])
        if manifest.get("active_link") is not None:  # checked before anything is kept
            make_active_link(os.path.join(staging, "maildir"), manifest["active_link"])
        spools = {e["path"].split("/", 1)[1] for e in manifest["files"]
                  if e["path"].startswith("partial/")}
        try:
            with open(os.path.join(staging, ROWS), "rb") as f:
                rows = checked_rows(json.load(f), self.address, root, spools)
        except (OSError, ValueError):
            raise StreamRefused(f"no readable {ROWS} in the stream") from None
        if spools:
            spool_dir = os.path.join(root, "partial")
            os.makedirs(spool_dir, mode=0o700, exist_ok=True)
            for name in spools:
                os.replace(os.path.join(staging, "partial", name),
                           os.path.join(spool_dir, name))
            fsync_dir(spool_dir)
        db = self._open_db(journal["target_db"])
        try:
            with db.transaction(), guarded_rows():
                for table in ROW_TABLES:
                    db.conn.execute(f"DELETE FROM {table} WHERE mailbox = ?", (self.address,))
                for table, verb, columns, values in rows:
                    db.conn.executemany(
                        f"INSERT OR {verb} INTO {table} ({', '.join(columns)}) "
                        f"VALUES ({', '.join('?' * len(columns))})", values)
        finally:
            db.close()
        final = os.path.join(root, journal["target_maildir"])
        if os.path.lexists(final):
            shutil.rmtree(final)  # an earlier, unconfirmed receive of this move
        os.makedirs(os.path.dirname(final), mode=0o700, exist_ok=True)
        os.rename(os.path.join(staging, "maildir"), final)
        fsync_dir(os.path.dirname(final))
        return {"address": self.address, "database": journal["target_db"],
                "files": len(manifest["files"]), "messages": count_messages(final),
                "rows": sum(len(values) for _, _, _, values in rows)}

    def confirm(self):
        """The target's mirror shows the flip and the mailbox is here."""
        sync_mirror(self.config, self.directory)
        view = mirror_view(self.config)
        try:
            mailbox = view.mailbox(self.address)
            serves = (mailbox is not None and mailbox.host == self.config.host_name
                      and not view.moving(self.address)
                      and os.path.isdir(os.path.join(mailbox.db_root, mailbox.maildir)))
        finally:
            view.close()
        if not serves:
            raise TemporaryFailure(f"this host does not serve {self.address} yet")
        return {"address": self.address, "database": mailbox.database, "confirmed": True}

    def abort(self):
        """Drop what a move that will not flip sent here."""
        with self.mailbox_lock():
            return self._abort()

    def _abort(self):
        journal = self._incoming()
        try:
            if self._served_here():
                raise UsageError(f"{self.address} is served by this host; nothing removed")
        except UnknownRecipient:
            pass
        for path in (self._staging(journal),
                     os.path.join(self._db_path(journal["target_db"]),
                                  journal["target_maildir"])):
            if os.path.lexists(path):
                shutil.rmtree(path)
        self._forget_mailbox(journal["target_db"])
        return {"address": self.address, "database": journal["target_db"], "aborted": True}


@contextmanager
def guarded_rows():
    """A row SQLite will not take (a column the table lacks): refused."""
    try:
        yield
    except sqlite3.Error as e:
        raise StreamRefused(f"{ROWS}: rows refused: {e}") from None


def checked_rows(rows, address, root, spools):
    """[(table, verb, columns, values)] from rows.json, every row checked
    before any is written: known tables and columns, the mailbox's own keys
    (or its forwards' in delivered_to), spooled copies that came along."""
    if not isinstance(rows, dict) or set(rows) - set(ROW_TABLES):
        raise StreamRefused(f"{ROWS}: unknown tables")
    checked = []
    for table, block in rows.items():
        columns, values = block.get("columns"), block.get("rows")
        allowed = set(COLUMNS.replace(" ", "").split(",")) if table == "delivered_to" else None
        if (not isinstance(columns, list) or "mailbox" not in columns or "id" in columns
                or not all(isinstance(c, str) and c.isidentifier() for c in columns)
                or (allowed and not set(columns) <= allowed) or not isinstance(values, list)):
            raise StreamRefused(f"{ROWS}: bad columns for {table}")
        at = columns.index("mailbox")
        own, shared = [], []
        for row in values:
            if not isinstance(row, list) or len(row) != len(columns):
                raise StreamRefused(f"{ROWS}: malformed row in {table}")
            key = row[at]
            if key == address:
                own.append(row)
            elif table == "delivered_to" and isinstance(key, str) and key.startswith("forward:"):
                shared.append(row)
            else:
                raise StreamRefused(f"{ROWS}: a {table} row of another mailbox")
        if table == "partial_deliveries" and own:
            spool = columns.index("spool_file")
            for row in own:
                name = os.path.basename(str(row[spool]))
                if name not in spools:
                    raise StreamRefused(f"{ROWS}: a partial delivery without its copy")
                row[spool] = os.path.join(root, "partial", name)
        checked += [(table, "REPLACE", columns, own), (table, "IGNORE", columns, shared)]
    return checked

"""Writing the managed directory (admin commands only; never on the delivery
path, which reads it through directory.py with the standard library)."""

import os
import time
from contextlib import contextmanager

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from ..errors import (AlreadyExists, ConfigError, TemporaryFailure, UnknownName, UnknownRecipient,
                      UsageError)
from ..store.aliases import checked_aliases, table_path, write_table
from ..store.directory import Directory
from ..store.maildir import open_mailbox
from .state import check_state_dir, connect, guarded, state_dir

migrations = Migrations("lda.store.directory")
SAFE_PATH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-+=")


@migrations()
def m001_databases_and_mailboxes(db):
    db["databases"].create({"name": str, "path": str, "created": float}, pk="name")
    db["mailboxes"].create(
        {"address": str, "database": str, "maildir": str, "quota_storage": int,
         "quota_messages": int, "forward": str, "keep_copy": int, "created": float},
        pk="address", not_null={"database", "maildir"},
        foreign_keys=[("database", "databases", "name")])


@migrations()
def m002_moves(db):
    # One row per mailbox move in progress: deliveries to that mailbox
    # tempfail while it exists, and `lda mailbox move` resumes from `step`.
    db["moves"].create(
        {"address": str, "source_db": str, "target_db": str, "source_maildir": str,
         "target_maildir": str, "step": str, "started": float}, pk="address")


@migrations()
def m003_hosts(db):
    # Several hosts sharing one directory (README, "Scaling out"): the host
    # that holds each mailbox database (NULL: the only host), and how a
    # front-end MTA reaches each host (the socketmap transport map's value).
    db["databases"].add_column("host", str)
    db["hosts"].create({"name": str, "transport": str, "created": float}, pk="name")
    # On a host whose directory is PostgreSQL, directory.sqlite is a mirror:
    # one row saying which directory it copies, the version copied, and
    # when it last heard from it (a delivery defers unknown recipients
    # while that is too old).
    db["mirror"].create({"source": str, "version": int, "synced": float}, pk="source")


class ManagedModeOnly(ConfigError):
    """A command of the mailbox directory, run in per-user mode."""

    # Where `lda mailbox receive`, run by another host's move_command through
    # ssh (which carries no environment), can be told of its lda.toml.
    IN_MOVE_COMMAND = ("with -c FILE in the move_command of the host that runs the move "
                       "(ssh carries no LDA_CONFIG)")

    def __init__(self, config, where="with -c FILE or LDA_CONFIG"):
        super().__init__(
            "a managed-mode command, and lda is in per-user mode (no lda.toml, or "
            f"mode = \"user\"): one Maildir, {config.maildir}, and no mailbox "
            f"directory; give an lda.toml for managed mode {where}")


def open_directory(config):
    """The directory for writing: directory.sqlite in state_dir, created on
    first use (a damaged or unopenable file is an LdaError naming it,
    admin_sqlite), or with `directory = "postgresql://..."` the shared one
    in PostgreSQL (pgdirectory.py), whose every committed change is copied
    to this host's mirror before the command goes on.  Per-user mode has
    none: creating one there would only leave a file no delivery reads."""
    if config.per_user:
        raise ManagedModeOnly(config)
    if config.directory:
        return open_shared_directory(config)
    return open_sqlite_directory(config)


def open_sqlite_directory(config):
    """directory.sqlite in state_dir, migrated: the directory of a single
    host, or the mirror of a shared one."""
    path = config.directory_path
    state_dir(config)
    with guarded(path):
        db = Database(connect(path))
        db.execute("PRAGMA journal_mode = WAL")
        migrations.apply(db)
    return db


def require_psycopg():
    """ConfigError (78) when psycopg, which a PostgreSQL directory needs, is
    not installed (the postgresql extra)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ConfigError("a PostgreSQL directory needs psycopg: pip install "
                          "'lda[postgresql]'") from None


def open_shared_directory(config):
    require_psycopg()
    # Lazy: psycopg only for a site whose directory is PostgreSQL.
    from .mirror import sync
    from .pgdirectory import PgDirectory

    def update_mirror(directory):
        mirror = open_sqlite_directory(config)
        try:
            with guarded(config.directory_path):
                sync(directory, mirror)
        finally:
            mirror.close()

    return PgDirectory(config.directory, after_commit=update_mirror)


def read_directory(config, warn=None):
    """The directory for a command that only reads: while there is no
    directory.sqlite yet, an empty one in memory, so that asking creates
    neither the file nor state_dir.  A shared directory is read where it
    is; while PostgreSQL cannot be reached, and given warn, this host's
    mirror, if it was ever synced, is read instead (what deliveries here go
    by), and warn(text) says so and how old it is: an outage is when an
    admin most needs to look."""
    if config.per_user:
        raise ManagedModeOnly(config)
    if config.directory:
        try:
            return open_shared_directory(config)
        except TemporaryFailure as e:
            if warn is None or not os.path.lexists(config.directory_path):
                raise
            mirror = open_sqlite_directory(config)
            age = mirror_age(mirror)
            if age is None:  # never a copy of it: a former directory, say
                mirror.close()
                raise
            warn(f"{e}; this host's mirror read instead, synced {age} s ago")
            return mirror
    check_state_dir(config)
    if os.path.lexists(config.directory_path):
        return open_directory(config)
    db = Database(memory=True)
    migrations.apply(db)
    return db


def mirror_age(mirror, clock=time.time):
    """Seconds since the mirror was last brought up to date; None if never."""
    row = mirror.conn.execute("SELECT max(synced) FROM mirror").fetchone()
    if not row or row[0] is None:
        return None
    return max(0, int(clock() - row[0]))


@contextmanager
def directory_transaction(db):
    """Statements that commit together, on either directory: yields
    execute(sql, args), sql with ? placeholders."""
    if not isinstance(db, Database):
        with db.transaction():
            yield db.execute
        return
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn.execute
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def validate_address(address):
    """An address as RFC 5321/5322 allow it (email-validator, no DNS)."""
    # Lazy: only `lda mailbox create` validates, and email-validator (with
    # idna) would slow every other admin command (cli imports this module).
    from email_validator import EmailNotValidError, validate_email

    try:
        valid = validate_email(address, check_deliverability=False,
                               allow_smtputf8=True)
    except EmailNotValidError as e:
        # Typed on the command line: a usage error (64), not an unknown one.
        raise UsageError(f"{address!r} is not an address: {e}") from None
    return valid.normalized.lower()


def maildir_path_for(address):
    """domain/local, each component made safe: a mailbox path is chosen here,
    once, by the admin tooling; characters outside a small set are %XX-escaped
    so no address can produce "..", "/" or a dot file."""
    local, _, domain = address.rpartition("@")

    def safe(part):
        escaped = "".join(c if c in SAFE_PATH_CHARS else
                          "".join(f"%{b:02X}" for b in c.encode()) for c in part)
        return "%2E" + escaped[1:] if escaped.startswith(".") else escaped

    return f"{safe(domain)}/{safe(local)}"


def create_database(db, config, name, path=None, host=None):
    """Register a mailbox database: a directory for Maildirs and lda.sqlite,
    held by host (None: every host's).  The directory is made here unless
    another host holds the database: path is then a path on that host, and
    its first `lda mailbox create` there makes it (ensure_database)."""
    if not name or not set(name) <= SAFE_PATH_CHARS - {"+", "="} or name.startswith("."):
        raise UsageError(f"invalid database name {name!r} (use a-z, 0-9, . _ -)")
    if db["databases"].count_where("name = ?", [name]):
        raise AlreadyExists(f"mailbox database {name!r} exists already")
    path = os.path.abspath(path or os.path.join(config.state_dir, "databases", name))
    if not Directory.on_other_host(host, config.host_name):
        os.makedirs(path, mode=0o700, exist_ok=True)
    row = {"name": name, "path": path, "created": time.time()}
    if host:
        row["host"] = host
    db["databases"].insert(row)
    return row


def ensure_database(db, config, name):
    """The path of database name, for a mailbox created in it on this host
    ("default" is created on first use).  A database another host holds is
    refused (64): its Maildirs are made on the host that delivers to them,
    by `lda mailbox create` run there."""
    if not db["databases"].count_where("name = ?", [name]):
        if name != "default":
            raise UnknownName(f"no mailbox database named {name!r}")
        create_database(db, config, name)
    row = db["databases"].get(name)
    host = row.get("host")
    if Directory.on_other_host(host, config.host_name):
        raise UsageError(f"database {name} is on host {host}: create the mailbox there")
    if host and not db["mailboxes"].count_where("database = ?", [name]):
        # Registered from another host (`lda db create --host`), so made by
        # no one yet: its first mailbox makes it here, parents included.
        os.makedirs(row["path"], mode=0o700, exist_ok=True)
    return row["path"]


def create_mailbox(db, config, address, database="default", quota_storage=None,
                   quota_messages=None, forward=(), keep_copy=True):
    address = validate_address(address)
    if any(q is not None and q < 0 for q in (quota_storage, quota_messages)):
        raise UsageError("a quota must be 0 (unlimited) or more")
    if db["mailboxes"].count_where("address = ?", [address]):
        raise AlreadyExists(f"mailbox {address} exists already")
    forward = [validate_address(a) for a in forward]
    root = ensure_database(db, config, database)
    relative = maildir_path_for(address)
    open_mailbox(root, relative).close()  # create the Maildir now, mode 0700
    row = {"address": address, "database": database, "maildir": relative,
           "quota_storage": quota_storage, "quota_messages": quota_messages,
           "forward": "\n".join(forward), "keep_copy": int(keep_copy),
           "created": time.time()}
    db["mailboxes"].insert(row)
    return row


def get_mailbox(db, address):
    rows = list(db["mailboxes"].rows_where("address = ?", [address.lower()]))
    if not rows:
        raise UnknownRecipient(f"no mailbox {address}")
    return rows[0]


def list_mailboxes(db, database=None):
    where, args = ("database = ?", [database]) if database else (None, None)
    return list(db["mailboxes"].rows_where(where, args, order_by="address"))


def delete_mailbox(db, address):
    """Remove the directory entry; the Maildir stays on disk for the admin."""
    row = get_mailbox(db, address)
    db["mailboxes"].delete(row["address"])
    return row


QUOTA_COLUMNS = ("quota_storage", "quota_messages")


def mailbox_path(db, row):
    """The absolute path of a mailbox's Maildir: its database root + maildir."""
    return os.path.join(db["databases"].get(row["database"])["path"], row["maildir"])


def set_mailbox_quota(db, address, limits):
    """Change a mailbox's limits.  limits: {column: bytes or messages, 0 for
    unlimited, None for the lda.toml default}; columns left out stay as
    they are.  Returns the updated row."""
    if set(limits) - set(QUOTA_COLUMNS):
        raise ValueError(f"not quota columns: {sorted(set(limits) - set(QUOTA_COLUMNS))}")
    row = get_mailbox(db, address)
    if limits:
        db["mailboxes"].update(row["address"], dict(limits))
    return {**row, **limits}


class AliasFileInvalid(ConfigError):
    """The aliases file cannot be compiled (a loop, or no file); no table was written."""

    def __init__(self, path, problems):
        super().__init__(f"{path}: {len(problems)} problem(s); table not written")
        self.problems = problems


def aliases_file(path):
    """path, absolute, if there is something there to read; else a
    ConfigError (78) in one line, as for the configured file."""
    path = os.path.abspath(path)
    try:
        os.stat(path)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read aliases: {e.strerror}") from None
    return path


def compile_aliases(config, path):
    """Check the aliases file and write its compiled table (aliases.table_path
    under state_dir): each key with its members, :include: files expanded,
    and every file read with its stamp, so deliveries look keys up instead
    of parsing, and parse again once any of those files changes.

    As newaliases(1) does, bad lines are skipped, not fatal: the summary's
    "problems" lists them for the caller to warn about, and the keys they
    define are written as deferred.  Alias loops and over-deep chains are
    still refused (AliasFileInvalid, every problem listed; the old table
    then stays): they are no typo on one line, and the file read on each
    delivery already defers only the addresses on them."""
    path = aliases_file(path)
    problems, aliases = checked_aliases(path)
    skipped = [p for p in aliases.problems if p.line]
    if len(skipped) < len(problems):
        raise AliasFileInvalid(path, problems)
    target = table_path(state_dir(config))
    write_table(aliases, target)
    return {"source": path, "index": target, "entries": len(aliases),
            "deferred": len(aliases.bad), "problems": [p._asdict() for p in skipped]}

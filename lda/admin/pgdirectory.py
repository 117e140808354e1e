"""The mailbox directory in PostgreSQL (`directory = "postgresql://..."`),
shared by several hosts (README, "Scaling out").

The admin commands write it through the same small interface they use on
the SQLite directory (sqlite-utils): `db[table]` with insert, update,
delete, get, rows_where and count_where, and directory_transaction() in
mailboxes.py for the writes that must go together.  Nothing else of
sqlite-utils is imitated.

The schema is the SQLite directory's after m003 (mailboxes.py), created or
upgraded here on first use, plus what the hosts' mirrors need: a version
counter that a trigger bumps, and a NOTIFY on CHANNEL, on every change of
any table (mirror.py).  Deliveries never come here: they read the mirror,
directory.sqlite in state_dir.  Admin commands only; psycopg is imported by
this module and mirror.py alone.
"""

import re
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..errors import ConfigError, TemporaryFailure, UnknownName
from .pgurl import public_url, scrubbed, secrets  # noqa: F401 (used here and re-exported)

CHANNEL = "lda_directory"
CONNECT_TIMEOUT = 10

# What libpq says, when it connects (not when it parses the URL), of an
# option with a value it does not know ("sslmode=bogus"): the URL's fault,
# which no retry mends.
_BAD_OPTION_VALUE = re.compile(r"^connection is bad: invalid [a-z_]+ value: ")

# Each table's primary key and columns, in the SQLite directory's order;
# the order of the dict is the order rows are copied in (foreign keys).
TABLES = {
    "databases": ("name", ("name", "path", "created", "host")),
    "hosts": ("name", ("name", "transport", "created")),
    "mailboxes": ("address", ("address", "database", "maildir", "quota_storage",
                              "quota_messages", "forward", "keep_copy", "created")),
    "moves": ("address", ("address", "source_db", "target_db", "source_maildir",
                          "target_maildir", "step", "started")),
}

SCHEMA = [
    ("m001_directory", f"""
    CREATE TABLE databases (name text PRIMARY KEY, path text, created double precision,
                            host text);
    CREATE TABLE hosts (name text PRIMARY KEY, transport text, created double precision);
    CREATE TABLE mailboxes (
        address text PRIMARY KEY, database text NOT NULL REFERENCES databases (name),
        maildir text NOT NULL, quota_storage bigint, quota_messages bigint, forward text,
        keep_copy integer, created double precision);
    CREATE TABLE moves (address text PRIMARY KEY, source_db text, target_db text,
                        source_maildir text, target_maildir text, step text,
                        started double precision);
    -- One row: bumped by every statement that changes the directory, so a
    -- mirror knows whether it is current (mirror.version) without a copy.
    CREATE TABLE directory_version (id integer PRIMARY KEY CHECK (id = 1),
                                    version bigint NOT NULL);
    INSERT INTO directory_version VALUES (1, 0);
    CREATE FUNCTION lda_directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        current bigint;
    BEGIN
        UPDATE directory_version SET version = version + 1 WHERE id = 1
            RETURNING version INTO current;
        PERFORM pg_notify('{CHANNEL}', current::text);
        RETURN NULL;
    END $$;
    """ + "".join(f"""
    CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION lda_directory_changed();"""
                  for table in TABLES)),
]


def checked_url(url):
    """url, or ConfigError (78) when it is no PostgreSQL URL libpq can read."""
    try:
        if not url.startswith(("postgresql://", "postgres://")) or any(
                c in url for c in "\0\r\n"):
            raise ValueError("not a postgresql:// URL")
        urlsplit(url).port  # noqa: B018 (raises ValueError on a bad port)
        psycopg.conninfo.conninfo_to_dict(url)
    except (ValueError, psycopg.ProgrammingError) as e:
        raise ConfigError(f"directory {public_url(url) if url.isprintable() else '(URL)'}: "
                          f"malformed URL ({scrubbed(str(e), url)})") from None
    return url


def connect(url, **options):
    """An autocommit psycopg connection returning dict rows; an unreachable
    server (or one that refuses us) is a TemporaryFailure (75), an option
    value libpq refuses a ConfigError (78)."""
    checked_url(url)
    if "connect_timeout" not in url:
        options.setdefault("connect_timeout", CONNECT_TIMEOUT)
    try:
        return psycopg.connect(url, autocommit=True, row_factory=dict_row, **options)
    except psycopg.Error as e:
        if _BAD_OPTION_VALUE.search(str(e)):
            raise ConfigError(f"directory {public_url(url)}: "
                              f"{scrubbed(str(e), url)}") from None
        raise unreachable(url, e) from None


def unreachable(url, error):
    return TemporaryFailure(f"directory {public_url(url)}: cannot reach PostgreSQL: "
                            f"{scrubbed(str(error), url)}")


@contextmanager
def guarded_pg(url):
    """psycopg errors inside become one line naming the masked URL: a lost
    connection is temporary (75), anything else the server refused is too,
    since the admin may retry it once the server is back."""
    try:
        yield
    except psycopg.OperationalError as e:
        raise unreachable(url, e) from None
    except psycopg.Error as e:
        raise TemporaryFailure(f"directory {public_url(url)}: "
                               f"{scrubbed(str(e), url)}") from None


def upgrade_schema(conn):
    """Create or upgrade the schema, each step once, in its own transaction;
    an advisory lock keeps two first commands from racing."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('lda_migrations'))")
        if conn.execute("SELECT to_regclass('lda_migrations') AS t").fetchone()["t"] is None:
            conn.execute("CREATE TABLE lda_migrations "
                         "(name text PRIMARY KEY, applied double precision)")
        done = {r["name"] for r in conn.execute("SELECT name FROM lda_migrations")}
        for name, statements in SCHEMA:
            if name not in done:
                conn.execute(statements)
                conn.execute("INSERT INTO lda_migrations VALUES (%s, %s)",
                             (name, time.time()))


class PgTable:
    """One table of the directory, with the methods the admin code calls."""

    def __init__(self, directory, name):
        if name not in TABLES:
            raise KeyError(name)
        self.directory, self.name = directory, name
        self.pk, self.columns = TABLES[name]
        self.table = sql.Identifier(name)

    def _names(self, row):
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"{self.name}: no columns {sorted(unknown)}")
        return [sql.Identifier(c) for c in row]

    def insert(self, row):
        query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            self.table, sql.SQL(", ").join(self._names(row)),
            sql.SQL(", ").join(sql.Placeholder() * len(row)))
        self.directory.write(query, list(row.values()))

    def update(self, key, changes):
        query = sql.SQL("UPDATE {} SET {} WHERE {} = %s").format(
            self.table, sql.SQL(", ").join(sql.SQL("{} = %s").format(c)
                                           for c in self._names(changes)),
            sql.Identifier(self.pk))
        self.directory.write(query, [*changes.values(), key])

    def delete(self, key):
        self.directory.write(sql.SQL("DELETE FROM {} WHERE {} = %s").format(
            self.table, sql.Identifier(self.pk)), [key])

    def get(self, key):
        rows = self.rows_where(f"{self.pk} = ?", [key])
        if not rows:
            raise UnknownName(f"no {self.name} row {key!r}")
        return rows[0]

    def exists(self):
        """Always: upgrade_schema made every table on the first connection."""
        return True

    def rows_where(self, where=None, args=None, order_by=None):
        """where: the admin code's own SQL with ? placeholders (never a
        user's text: values go in args)."""
        query = f"SELECT {', '.join(self.columns)} FROM {self.name}"
        if where:
            query += f" WHERE {where.replace('?', '%s')}"
        if order_by:
            query += f" ORDER BY {order_by}"
        return self.directory.read(query, args or [])

    def count_where(self, where=None, args=None):
        query = f"SELECT count(*) AS n FROM {self.name}"
        if where:
            query += f" WHERE {where.replace('?', '%s')}"
        return self.directory.read(query, args or [])[0]["n"]


class PgDirectory:
    """The directory in PostgreSQL.  after_commit() runs once a change is
    committed (at the end of the outermost transaction()): the admin
    commands bring this host's mirror up to date there."""

    def __init__(self, url, after_commit=None):
        self.url = url
        self.conn = connect(url)
        self.after_commit = after_commit or (lambda directory: None)
        self._depth = 0
        with guarded_pg(url):
            upgrade_schema(self.conn)

    def __getitem__(self, name):
        return PgTable(self, name)

    def read(self, query, args=()):
        with guarded_pg(self.url):
            return self.conn.execute(query, args).fetchall()

    def write(self, query, args=()):
        with guarded_pg(self.url):
            self.conn.execute(query, args)
        self._changed()

    def execute(self, query, args=()):
        """A statement of the admin code's own, ? placeholders as in SQLite."""
        self.write(query.replace("?", "%s"), args)

    @contextmanager
    def transaction(self):
        """Writes inside commit together (nested: with the outermost)."""
        self._depth += 1
        try:
            with guarded_pg(self.url), self.conn.transaction():
                yield self
        finally:
            self._depth -= 1
        self._changed()

    def _changed(self):
        if self._depth == 0:
            self.after_commit(self)

    def version(self):
        return self.read("SELECT version FROM directory_version")[0]["version"]

    def close(self):
        self.conn.close()

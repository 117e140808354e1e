"""`lda directory migrate --to postgresql://...`: a site's SQLite directory
copied into an empty PostgreSQL one, in one PostgreSQL transaction.

The copy refuses what it cannot carry whole: a move in progress (its
journal row names a step only this host can finish), a directory.sqlite
that is already a mirror, and a target that holds any directory rows (a
second run after a successful one says so, and changes nothing).  The
counts are checked inside the transaction before it commits.  lda.toml is
left to the admin: the summary says which `directory` line to set.
"""

import os
import time

from ..errors import AlreadyExists, TemporaryFailure, UnknownName
from .mailboxes import ManagedModeOnly, open_sqlite_directory
from .state import check_state_dir
from .pgdirectory import TABLES, checked_url, connect, guarded_pg, public_url, secrets, upgrade_schema

PROGRESS_EVERY = 1000


def read_source(config):
    """{table: [row tuples]} of directory.sqlite, in one read transaction."""
    check_state_dir(config)
    if not os.path.exists(config.directory_path):
        raise UnknownName(f"{config.directory_path}: no directory to migrate")
    db = open_sqlite_directory(config)
    try:
        conn = db.conn
        conn.execute("BEGIN")
        mirror = conn.execute("SELECT source FROM mirror").fetchone()
        if mirror:
            raise AlreadyExists(f"{config.directory_path} is the mirror of {mirror[0]}, "
                                "not a directory to migrate")
        moving = [r[0] for r in conn.execute("SELECT address FROM moves ORDER BY address")]
        if moving:
            raise TemporaryFailure(
                f"{len(moving)} mailbox move(s) unfinished ({', '.join(moving[:3])}): "
                "finish each (`lda mailbox move ADDRESS --to DB`) or roll it back "
                "(--rollback), then migrate")
        rows = {table: conn.execute(f"SELECT {', '.join(columns)} FROM {table} "
                                    f"ORDER BY {pk}").fetchall()
                for table, (pk, columns) in TABLES.items()}
        conn.execute("COMMIT")
        return rows
    finally:
        db.close()


def copy_rows(conn, rows, progress):
    """COPY each table: one statement per table, so the version trigger
    fires once per table, not once per row."""
    total, done = sum(map(len, rows.values())), 0
    for table, (_, columns) in TABLES.items():
        with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows[table]:
                copy.write_row(row)
                done += 1
                if done % PROGRESS_EVERY == 0:
                    progress("copying", done, total)
    progress("copying", done, total)


def migrate(config, url, progress=None, clock=time.monotonic):
    """Copy; returns the summary `lda directory migrate` prints."""
    if config.per_user:
        raise ManagedModeOnly(config)
    target = public_url(url)
    if config.directory:
        raise AlreadyExists(f"{config.path}: directory is {public_url(config.directory)} "
                            "already; migrate copies a site whose directory is "
                            "directory.sqlite")
    progress = progress or (lambda phase, done, total: None)
    start = clock()
    checked_url(url)  # a malformed URL: 78
    rows = read_source(config)
    conn = connect(url)  # an unreachable server: 75
    try:
        with guarded_pg(url):
            upgrade_schema(conn)
            with conn.transaction():
                conn.execute(f"LOCK TABLE {', '.join(TABLES)} IN EXCLUSIVE MODE")
                held = {t: conn.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"]
                        for t in TABLES}
                if any(held.values()):
                    raise AlreadyExists(
                        f"directory {target} is not empty ({held['mailboxes']} mailboxes, "
                        f"{held['databases']} databases): migrate into an empty database")
                copy_rows(conn, rows, progress)
                copied = {t: conn.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"]
                          for t in TABLES}
                expected = {t: len(r) for t, r in rows.items()}
                if copied != expected:
                    raise TemporaryFailure(f"directory {target}: copied {copied}, expected "
                                           f"{expected}; nothing was committed")
            version = conn.execute("SELECT version FROM directory_version").fetchone()
    finally:
        conn.close()
    password = " (and its password)" if secrets(url) else ""
    return {"source": config.directory_path, "target": target,
            **{t: n for t, n in copied.items() if t != "moves"},
            "version": version["version"], "seconds": round(clock() - start, 3),
            "next": f'set directory = "{target}"{password} in {config.path or "lda.toml"}, '
                    "then run `lda directory sync` on each host"}

"""lda's state as the admin commands open it: state_dir and its SQLite files.

One place turns what goes wrong with a file (a database overwritten or
damaged, a path that is a directory or a regular file, a permission) into one
line naming the file, with the exit status of the rule in errors.py: a
problem of the file's own, which the admin must repair, is a configuration
error (78); the machine's (a busy database, a failing disk, a full one) is
temporary (75).  A damaged database is the file's own problem: retrying
cannot repair it, so an admin command does not say "will retry" (a delivery,
which must not lose the message, still answers 75 and keeps it queued).

Admin commands only; the delivery path opens its files in directory.py and
deliveredto.py.
"""

import errno
import os
import sqlite3
from contextlib import contextmanager
from urllib.parse import quote

from ..errors import ConfigError, NoPermission, TemporaryFailure, is_file_problem

# SQLite primary result codes (https://sqlite.org/rescode.html).
SQLITE_PERM, SQLITE_READONLY, SQLITE_CORRUPT, SQLITE_CANTOPEN = 3, 8, 11, 14
SQLITE_AUTH, SQLITE_NOTADB = 23, 26
DAMAGED = {SQLITE_CORRUPT, SQLITE_NOTADB}
UNOPENABLE = {SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_AUTH}


def salvage_hint(path):
    """How to repair a damaged SQLite file, with commands that exist."""
    return (f"restore it from a backup, or salvage it: "
            f"`sqlite3 {path} .recover | sqlite3 {path}.recovered`")


class DamagedDatabase(ConfigError):
    """An SQLite file of lda's is not a database, or a damaged one."""

    def __init__(self, path, error):
        self.path, self.problem = path, f"not an SQLite database, or a damaged one ({error})"
        self.repair = salvage_hint(path)
        super().__init__(f"{path}: {self.problem}; {self.repair}")


def sqlite_failure(path, error):
    """The LdaError for an sqlite3.DatabaseError met on the file at path
    (None: met past the open, on a file the library no longer names)."""
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    if path is None:
        # Which file it is, is `lda db check`'s to say.
        text = f"an SQLite database of lda's is unusable ({error}); see `lda db check`"
        return (ConfigError if code in DAMAGED | UNOPENABLE else TemporaryFailure)(text)
    if code in DAMAGED:
        return DamagedDatabase(path, error)
    if code in UNOPENABLE:
        if permission_denied(path):
            return NoPermission(f"{path}: cannot open database: permission denied"
                                f"{AS_OWNER}")
        kind = "a directory" if os.path.isdir(path) else None
        return ConfigError(f"{path}: cannot open database: {kind or error}")
    return TemporaryFailure(f"{path}: database unusable, try again later: {error}")


def file_failure(error, path=None):
    """The LdaError for an OSError: whose problem it is, by errors.py's rule."""
    where = error.filename or path
    text = f"{where}: {error.strerror or error}" if where else str(error)
    if error.errno in (errno.EACCES, errno.EPERM):
        return NoPermission(text + AS_OWNER)
    return (ConfigError if is_file_problem(error) else TemporaryFailure)(text)


def failure(error, path=None):
    """The LdaError an admin command reports for error, or None when error
    is neither an SQLite nor an OS one (a bug: a traceback is logged)."""
    if isinstance(error, sqlite3.DatabaseError):
        return sqlite_failure(path, error)
    if isinstance(error, OSError):
        return file_failure(error, path)
    return None


@contextmanager
def guarded(path):
    """SQLite and OS errors raised inside become the LdaError naming path;
    so does the temporary failure a DeliveredTo method makes of an SQLite
    error (deliveredto.database_failure), which a damaged file makes 78."""
    try:
        yield
    except (sqlite3.DatabaseError, OSError) as e:
        raise failure(e, path) from None
    except TemporaryFailure as e:
        if getattr(e, "sqlite_error", None) is None:
            raise
        raise sqlite_failure(path, e.sqlite_error) from None


def check_state_dir(config):
    """ConfigError naming state_dir when it is there and no directory; for
    the commands that read state and must not create it."""
    check_access(config)
    if os.path.lexists(config.state_dir) and not os.path.isdir(config.state_dir):
        raise ConfigError(f"{config.state_dir}: state_dir is not a directory")


AS_OWNER = "; run lda as the user that owns state_dir"


def permission_denied(path):
    """Whether this user may not reach, or not read, the file at path (a
    missing file in a directory it can search is not denied)."""
    if not os.access(os.path.dirname(path) or ".", os.X_OK):
        return True
    return os.path.lexists(path) and not os.access(path, os.R_OK)


def check_access(config):
    """NoPermission (77) when this user cannot look into state_dir: else a
    state_dir owned by another user looks empty (its files cannot even be
    seen), and a command would report a new site, or create one."""
    try:
        os.stat(config.state_dir)
    except PermissionError:
        denied = True
    except OSError:
        return  # missing (a new site), or not a directory: another check's
    else:
        denied = (os.path.isdir(config.state_dir)
                  and not os.access(config.state_dir, os.R_OK | os.X_OK))
    if denied:
        raise NoPermission(f"{config.state_dir}: permission denied{AS_OWNER}")


def state_dir(config, *parts):
    """state_dir (or a directory under it, such as "locks"), created if
    missing; ConfigError naming it when it is a file, or under one."""
    check_state_dir(config)
    path = os.path.join(config.state_dir, *parts)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{path}: not a directory (under state_dir)") from None
    except OSError as e:
        raise file_failure(e, path) from None
    return path


def connect(path, readonly=False, **options):
    """A connection to the SQLite file at path, its header and schema read
    once, so that a file that is not a database, or not one SQLite can open,
    fails here with its name rather than in the middle of a command.
    readonly: never create or change the file (`lda db check`)."""
    if os.path.isdir(path):
        raise ConfigError(f"{path}: cannot open database: "
                          f"{os.strerror(errno.EISDIR)}")
    if readonly:
        # RFC 8089 file URI; SQLite wants ?, # and % escaped in the path.
        target, options = f"file:{quote(path)}?mode=ro", {**options, "uri": True}
    else:
        target = path
    with guarded(path):
        conn = sqlite3.connect(target, **options)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except BaseException:
            conn.close()
            raise
    return conn


def probe(path):
    """Raise the LdaError naming path if the SQLite file there cannot be used."""
    connect(path).close()

"""The Sieve scripts of managed mailboxes: install, list, activate, show,
deactivate, delete, rename.

A delivery runs one script per mailbox, lda.sieve in the mailbox root
(config.SCRIPT_IN_MAILBOX), so that a move carries it.  As with ManageSieve,
a mailbox may keep several scripts by name, in sieve/NAME.sieve under its
root, one of them active: lda.sieve is then a symlink to sieve/NAME.sieve,
the form Pigeonhole's ManageSieve makes (`sieve =
file:~/sieve;active=~/lda.sieve`, the mailbox root as home), so that
webmail and lda agree on which script is active.  Such a link is read only
into sieve/ (a file there opened without following further links);
activating makes a new link and renames it over the old one.  A regular
lda.sieve (written by hand, or an older lda's copy) still runs, and is
kept as lda.orig when another script replaces it.

Every script is compiled before it is written (a bad one changes nothing),
and written as a new file beside its name, fsynced and renamed over it, so
a delivery reads the old script or the new one, never a part, and a
symlink planted at the name is replaced, never written through.
"""

import errno
import os
import stat

from ..config import SCRIPT_IN_MAILBOX, SCRIPTS_IN_MAILBOX
from ..errors import (EX_DATAERR, AlreadyExists, LdaError, MailboxMoving, UnknownName,
                      UnsafePath, UsageError)
from ..sieve.script import MAX_NAME_BYTES, SUFFIX, bad_name
from .mailboxes import get_mailbox, list_mailboxes, mailbox_path

SCRIPTS_DIR = SCRIPTS_IN_MAILBOX
MAX_SCRIPT = 1 << 20  # Pigeonhole's sieve_max_script_size default
RESCUED = "lda.orig"  # where a hand-written lda.sieve is kept (_make_active)
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ScriptInvalid(LdaError):
    """A script that does not compile; nothing was installed."""

    exit_code = EX_DATAERR
    smtp_reply = "554 5.6.0"

    def __init__(self, message, lines=()):
        super().__init__(message)
        self.lines = list(lines)


def install(db, address, source, name=None, activate=True, extensions=()):
    """Install the script at path `source` for the mailbox at address as
    NAME (default: the file's name without .sieve), and make it the active
    one unless activate is False; a script installed under the active
    name is activated either way (it replaces the one running).
    `extensions`: lda.toml's sieve_extensions_extra."""
    with open(source, "rb") as f:
        data = f.read(MAX_SCRIPT + 1)
    name = check_name(_name_of(source) if name is None else name)
    check_script(data, source, extensions)
    row, root = _mailbox(db, address)
    with _directory(root) as root_fd:
        active = _active_name(root_fd)  # before NAME changes: it may be the active one
        was_active = active == name
        with _directory(SCRIPTS_DIR, root_fd, create=True) as scripts_fd:
            _write(scripts_fd, name + SUFFIX, data)
        if activate or was_active:
            _make_active(root_fd, data, hand_written=active is None, name=name)
    return {"address": row["address"], "name": name, "active": activate or was_active,
            "size": len(data), "path": os.path.join(root, SCRIPTS_DIR, name + SUFFIX)}


def activate(db, address, name, extensions=()):
    """Make the stored script NAME the mailbox's active one (compiled
    again first: a stored file may have been edited by hand)."""
    name = check_name(name, stored=True)
    row, root = _mailbox(db, address)
    with _directory(root) as root_fd:
        data = _existing(root_fd, row, name)
        check_script(data, os.path.join(root, SCRIPTS_DIR, name + SUFFIX), extensions)
        _make_active(root_fd, data, hand_written=_active_name(root_fd) is None, name=name)
    return {"address": row["address"], "name": name, "active": True, "size": len(data)}


def deactivate(db, address):
    """Turn the mailbox's filter off: lda.sieve goes, as ManageSieve's
    SETACTIVE "" removes its symlink; the stored scripts stay.  A regular
    lda.sieve (written by hand, or an older lda's copy) is stored first as
    RESCUED, as _make_active keeps it.  name: the script that was active
    (None: none was)."""
    row, root = _mailbox(db, address)
    with _directory(root) as root_fd:
        data = _read_active(root_fd)
        name = _active_name(root_fd, data)
        if name is None and data is not None:
            _rescue(root_fd, data)
        try:
            os.unlink(SCRIPT_IN_MAILBOX, dir_fd=root_fd)
        except FileNotFoundError:
            pass  # none active: nothing to do
        except IsADirectoryError:
            raise UnsafePath(f"{os.path.join(root, SCRIPT_IN_MAILBOX)} is a directory, "
                             "no script: remove it by hand") from None
        else:
            os.fsync(root_fd)
    return {"address": row["address"], "name": name, "active": False}


def delete(db, address, name):
    """Remove the stored script NAME, unless it is the active one (as
    ManageSieve's DELETESCRIPT refuses it: deactivate it, or activate
    another, first)."""
    name = check_name(name, stored=True)
    row, root = _mailbox(db, address)
    with _directory(root) as root_fd:
        _existing(root_fd, row, name)
        if _active_name(root_fd) == name:
            raise UsageError(f"{name!r} is {row['address']}'s active script: "
                             f"'lda sieve deactivate {row['address']}' first")
        with _directory(SCRIPTS_DIR, root_fd) as scripts_fd:
            os.unlink(name + SUFFIX, dir_fd=scripts_fd)
            os.fsync(scripts_fd)
    return {"address": row["address"], "name": name, "deleted": True}


def rename(db, address, old, new):
    """Rename the stored script OLD to NEW, as ManageSieve's RENAMESCRIPT:
    NEW must be free (AlreadyExists) and a name install takes; an active
    OLD stays the active script under NEW (lda.sieve is linked to NEW
    before OLD goes, so a delivery always finds one)."""
    old, new = check_name(old, stored=True), check_name(new)
    row, root = _mailbox(db, address)
    with _directory(root) as root_fd:
        data = _existing(root_fd, row, old)
        active = _active_name(root_fd) == old
        with _directory(SCRIPTS_DIR, root_fd) as scripts_fd:
            try:  # a second name for the file: refused if NEW is taken
                os.link(old + SUFFIX, new + SUFFIX, src_dir_fd=scripts_fd,
                        dst_dir_fd=scripts_fd, follow_symlinks=False)
            except FileExistsError:
                raise AlreadyExists(f"{row['address']} has a script {new!r} already") from None
            os.fsync(scripts_fd)
            if active:
                _make_active(root_fd, data, hand_written=False, name=new)
            os.unlink(old + SUFFIX, dir_fd=scripts_fd)
            os.fsync(scripts_fd)
    return {"address": row["address"], "name": new, "old_name": old, "active": active}


def list_scripts(db, address=None):
    """One row per script of the mailbox at address (default: every
    mailbox that has one): address, name, active, size.  An active
    lda.sieve that is none of the stored scripts (written by hand) is
    listed with name None."""
    rows = [get_mailbox(db, address)] if address else list_mailboxes(db)
    listed = []
    for row in rows:
        root = mailbox_path(db, row)
        try:
            with _directory(root) as root_fd:
                listed += _scripts_of(row["address"], root_fd)
        except FileNotFoundError:
            continue  # a mailbox whose Maildir is not there yet has no script
    return listed


def show(db, address):
    """The active script of the mailbox at address: address, name (None
    if it is none of the stored ones), path and the text; script None
    when the mailbox has no script of its own."""
    row, root = _mailbox(db, address, moving_ok=True)
    with _directory(root) as root_fd:
        data = _read_active(root_fd)
        name = _active_name(root_fd, data)
    text = None if data is None else data.decode("utf-8", "replace")
    return {"address": row["address"], "name": name,
            "path": os.path.join(root, SCRIPT_IN_MAILBOX), "script": text}


def check_name(name, stored=False):
    """name if it can name a stored script (sieve.script.bad_name; stored:
    one already there, which ManageSieve may have named ".x"), else
    UsageError."""
    why = bad_name(name, stored)
    if why is not None:
        shown = repr(name[:80]) + ("..." if len(name) > 80 else "")
        raise UsageError(f"bad script name {shown}: {why}; a script name is UTF-8 "
                         f"text of up to {MAX_NAME_BYTES} bytes, with no \"/\" or control "
                         "character, not starting with \".\"")
    return name


def check_script(data, where, extensions=()):
    """ScriptInvalid unless data is a Sieve script lda compiles."""
    from ..sieve import SieveError, compile_script

    if len(data) > MAX_SCRIPT:
        raise ScriptInvalid(f"{where}: larger than {MAX_SCRIPT} bytes; nothing installed")
    try:
        compile_script(data, extensions=extensions)
    except SieveError as e:
        lines = e.lines(str(where))
        raise ScriptInvalid(f"{where}: does not compile; nothing installed", lines) from None
    except UnicodeDecodeError:
        raise ScriptInvalid(f"{where}: not UTF-8; nothing installed") from None


def _name_of(source):
    base = os.path.basename(source)
    return base[: -len(SUFFIX)] if base.endswith(SUFFIX) else base


def _mailbox(db, address, moving_ok=False):
    """(directory row, Maildir root) of the mailbox; MailboxMoving while
    `lda mailbox move` works on it, since a script written to the old
    place would be left behind."""
    row = get_mailbox(db, address)
    if not moving_ok and db["moves"].exists() and list(
            db["moves"].rows_where("address = ?", [row["address"]])):
        raise MailboxMoving(f"mailbox {row['address']} is being moved; try again later")
    return row, mailbox_path(db, row)


class _directory:
    """A directory opened without following a symlink, as a context manager
    yielding its fd; create=True makes it (0700) when it is missing."""

    def __init__(self, name, dir_fd=None, create=False):
        self.name, self.dir_fd, self.create = name, dir_fd, create

    def __enter__(self):
        if self.create:
            try:
                os.mkdir(self.name, 0o700, dir_fd=self.dir_fd)
            except FileExistsError:
                pass
        try:
            self.fd = os.open(self.name, _OPEN_DIR, dir_fd=self.dir_fd)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            raise UnsafePath(f"{self.name}: a symlink or not a directory in the mailbox; "
                             "not followed") from None
        return self.fd

    def __exit__(self, *exc):
        os.close(self.fd)


def _write(dir_fd, name, data):
    """name in dir_fd holds data: a unique new file (O_EXCL, O_NOFOLLOW),
    fsynced, renamed over name (which replaces a symlink there rather than
    following it), the directory fsynced.  Mode 0644 whatever the umask: a
    script writable by group or others is one deliveries ignore."""
    tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644, dir_fd=dir_fd)
    try:
        try:
            os.fchmod(fd, 0o644)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise
    os.fsync(dir_fd)


def _make_active(root_fd, data, hand_written, name):
    """lda.sieve becomes a symlink to sieve/NAME.sieve (whose bytes are
    data), as Pigeonhole's ManageSieve makes it: webmail and lda then show
    the same active script, and no copy of it goes stale.  A hand_written
    lda.sieve (a regular file none of the stored scripts had before this
    command) is stored first as RESCUED (or RESCUED-N), as Pigeonhole keeps
    a regular ~/.dovecot.sieve as "dovecot.orig": activating another script
    loses no one's work."""
    current = _read_at(root_fd, SCRIPT_IN_MAILBOX) if hand_written else None
    if current is not None and current != data:
        _rescue(root_fd, current)
    tmp = f".{SCRIPT_IN_MAILBOX}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    os.symlink(f"{SCRIPTS_DIR}/{name}{SUFFIX}", tmp, dir_fd=root_fd)
    try:
        os.rename(tmp, SCRIPT_IN_MAILBOX, src_dir_fd=root_fd, dst_dir_fd=root_fd)
    except BaseException:
        os.unlink(tmp, dir_fd=root_fd)
        raise
    os.fsync(root_fd)


def _existing(root_fd, row, name):
    """The bytes of the mailbox's stored script NAME; UnknownName if it has none."""
    data = _read_stored(root_fd, name)
    if data is None:
        raise UnknownName(f"{row['address']} has no script {name!r} "
                          f"(see 'lda sieve list {row['address']}')")
    return data


def _rescue(root_fd, data):
    """Store a hand-written lda.sieve's bytes as RESCUED (or RESCUED-N)."""
    with _directory(SCRIPTS_DIR, root_fd, create=True) as scripts_fd:
        taken = set(os.listdir(scripts_fd))
        rescued = next(f"{RESCUED}{suffix}{SUFFIX}" for suffix in
                       ("", *(f"-{n}" for n in range(2, len(taken) + 3)))
                       if f"{RESCUED}{suffix}{SUFFIX}" not in taken)
        _write(scripts_fd, rescued, data)


def _read_at(dir_fd, name):
    """The bytes of the regular file name in dir_fd, None if there is none;
    a symlink there is refused (ELOOP), never followed."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None  # a symlink: not a script lda installed, not read through
        raise
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return f.read(MAX_SCRIPT + 1)


def _link_name(root_fd):
    """NAME when lda.sieve is ManageSieve's symlink to sieve/NAME.sieve,
    else None (no link, or one that points anywhere else)."""
    try:
        target = os.readlink(SCRIPT_IN_MAILBOX, dir_fd=root_fd)
    except OSError:  # none there, or not a symlink
        return None
    prefix = SCRIPTS_DIR + "/"
    name = target[len(prefix):-len(SUFFIX)]
    if not target.startswith(prefix) or not target.endswith(SUFFIX) or not name or "/" in name:
        return None
    return name


def _read_active(root_fd):
    """The active script's bytes: lda.sieve's, or those of the stored
    script ManageSieve's symlink names; None when there is none."""
    name = _link_name(root_fd)
    if name is not None:
        return _read_stored(root_fd, name)
    return _read_at(root_fd, SCRIPT_IN_MAILBOX)


def _read_stored(root_fd, name):
    try:
        with _directory(SCRIPTS_DIR, root_fd) as scripts_fd:
            return _read_at(scripts_fd, name + SUFFIX)
    except FileNotFoundError:
        return None


def _stored(root_fd):
    """{name: bytes} of the stored scripts, in name order."""
    try:
        with _directory(SCRIPTS_DIR, root_fd) as scripts_fd:
            # ".x.sieve" too: ManageSieve stores and lists ".x" (lda's own
            # temporary files end in .tmp).
            names = sorted(n[: -len(SUFFIX)] for n in os.listdir(scripts_fd)
                           if n.endswith(SUFFIX) and n != SUFFIX)
            found = {name: _read_at(scripts_fd, name + SUFFIX) for name in names}
    except FileNotFoundError:
        return {}
    return {name: data for name, data in found.items() if data is not None}


def _active_name(root_fd, active=False):
    """The name of the stored script ManageSieve's symlink names, else of
    the one whose bytes lda.sieve has, or None."""
    linked = _link_name(root_fd)
    if linked is not None:
        return linked if _read_stored(root_fd, linked) is not None else None
    if active is False:
        active = _read_at(root_fd, SCRIPT_IN_MAILBOX)
    if active is None:
        return None
    return next((name for name, data in _stored(root_fd).items() if data == active), None)


def _scripts_of(address, root_fd):
    linked = _link_name(root_fd)
    active = _read_active(root_fd)
    rows = [{"address": address, "name": name,
             "active": name == linked if linked is not None else data == active,
             "size": len(data)}
            for name, data in _stored(root_fd).items()]
    if active is not None and not any(r["active"] for r in rows):
        rows.append({"address": address, "name": None, "active": True, "size": len(active)})
    return rows

"""Maildir++ quota accounting: the ``maildirsize`` file.

Follows Courier's Maildir++ specification (README.maildirquota, "the spec"
below) as Courier's maildirquota.c and Dovecot's quota-maildir.c read it, so
lda, Courier and Dovecot agree on a mailbox's usage.  The file holds a quota
line such as ``10000000S,1000C`` and then ``<bytes> <count>`` lines, which may
be negative; the usage is their sum.  Writers append one line per change and
the file is rebuilt from a scan of the Maildir when the spec says so.

What a scan counts follows lda.toml's quota_rules: "dovecot" (the default)
as Dovecot 2.3's `doveadm quota recalc` does, every file in new/ and cur/ of
the Maildir and of every ".Name" directory, .Trash and T-flagged messages
included; "courier" as the spec and Courier's maildirquota.c do, without
.Trash, T-flagged messages and dot files (a ".Name" folder counts with or
without its maildirfolder file, which only tells a delivery agent handed a
folder where the parent is).  Under either, the folders quota_ignore_folders
names are left out, as Dovecot leaves out a mailbox that a `quota_rule =
NAME:ignore` names (quota-maildir.c, maildir_list_next; quota-util.c,
quota_root_rule_find): the whole name, case-sensitive, "*" and "?" as
wildcards.  Rules holds both settings, and every count asks it: a delivery's
line, a recount, `lda quota`, the policy service, quota warnings.

Where lda still differs from both: it never follows a symlink (they stat()
through one), counts regular files only (they count whatever stat() sizes,
a directory in cur/ included), never counts a "..Name" directory (the spec
forbids them; Courier counts one), and stat()s a name whose ",S=" is not
followed by digits (Courier reads the digits there are:
tests/test_quota_courier.py).

The limit check is Dovecot's (quota.c, quota_transaction_is_over): a
mailbox under its storage limit takes a message that ends at most
quota_grace bytes past it; one at or over the limit takes none; grace never
applies to the message count.  A message that does not fit and is larger
than the storage limit itself is "too big" (Dovecot's
QUOTA_ALLOC_RESULT_OVER_QUOTA_LIMIT, grace not added): lda refuses it for
good (QuotaTooBig, 5.2.3), where Dovecot 2.3's deliveries answer it as any
full mailbox and only its quota-status service tells it apart.

This is on the per-message path: it imports only cheap modules (not typing:
bench/profiles/deliver-case1-startup.txt, section 9), never reads a message file, and never follows a symlink inside the
Maildir.
"""

import errno
import os
import stat
import time

from ..errors import CannotCreate, QuotaExceeded, QuotaTooBig
from ..startup.collections import record
from .maildir import give_file, permissions

FILENAME = "maildirsize"
# The spec: a maildirsize of at least 5120 bytes is rebuilt; this bounds both
# the read and the drift that racing writers or older clients leave behind.
MAX_SIZE = 5120
# The spec: an over-quota figure this old is not trusted.
STALE_SECONDS = 15 * 60
# The spec: the one folder whose messages do not count under the courier
# rules (unless Courier is built --with-trashquota: use the dovecot rules).
TRASH = ".Trash"
# lda.toml's quota_rules.
DOVECOT, COURIER = "dovecot", "courier"
# The inbox's name in quota_ignore_folders (config.parse_folder_masks).
INBOX = "INBOX"
# Scans to try when the Maildir keeps changing under a recalculation.
RECALCULATION_PASSES = 3

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK so that a FIFO planted as maildirsize cannot hang a delivery.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# What open() says about a symlink under O_NOFOLLOW (ELOOP; EMLINK on
# FreeBSD), a FIFO without reader (ENXIO) or a directory (EISDIR).
_NOT_A_PLAIN_FILE = frozenset({errno.ELOOP, errno.EMLINK, errno.ENXIO, errno.EISDIR})
_NOT_A_REAL_DIR = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EMLINK})


class Quota(record("Quota", "storage messages", defaults=(0, 0))):
    """A mailbox's limits in bytes and in messages; 0 means unlimited."""

    __slots__ = ()

    def unlimited(self) -> bool:
        """True when neither storage nor the message count is limited."""
        return self.storage <= 0 and self.messages <= 0


Usage = record("Usage", "storage messages",
               doc="What a mailbox holds: bytes and messages, as the spec counts them.")
# data: at most MAX_SIZE bytes of the file; mtime: its modification time.
_File = record("_File", "data mtime")
# usage is None when the file cannot be trusted; lines: usage lines after the
# quota line.
_Contents = record("_Contents", "quota usage lines")


class Rules(record("Rules", "kind ignored", defaults=(DOVECOT, ()))):
    """What counts towards the quota: kind is lda.toml's quota_rules
    (DOVECOT or COURIER), ignored its quota_ignore_folders (the masks
    config.parse_folder_masks makes of it)."""

    __slots__ = ()

    @classmethod
    def of(cls, config):
        return cls(config.quota_rules, config.quota_ignore_folders)

    def counts_folder(self, folder) -> bool:
        """Whether the messages of a folder (".Name"; None or "" for INBOX)
        count.  A wildcard never leaves the inbox out: only "INBOX" does."""
        folder = (folder or "").rstrip("/")
        if self.kind == COURIER and folder == TRASH:
            return False
        if not self.ignored:
            return True
        if not folder:
            return INBOX not in self.ignored
        from .folders import folder_name   # only with quota_ignore_folders set

        name = folder_name(folder)
        return not any(_matches(name, mask) for mask in self.ignored)


def _matches(name, mask):
    """Dovecot's wildcard_match: the whole name, "*" for any run of
    characters (the hierarchy separator too), "?" for exactly one."""
    at = position = 0
    retry = None    # (mask position after the last "*", name position it took)
    while at < len(name):
        if position < len(mask) and mask[position] == "*":
            retry = (position + 1, at)
            position += 1
        elif position < len(mask) and mask[position] in ("?", name[at]):
            at, position = at + 1, position + 1
        elif retry is not None:
            retry = (retry[0], retry[1] + 1)   # the "*" takes one character more
            position, at = retry
        else:
            return False
    return not mask[position:].strip("*")


def format_quota(quota: Quota) -> str:
    """The spec's quota definition: "1000000S,100C", "1000000S", "100C", or
    "" when nothing is limited."""
    if quota.storage < 0 or quota.messages < 0:
        raise ValueError(f"negative quota {tuple(quota)}")
    parts = []
    if quota.storage:
        parts.append(f"{quota.storage}S")
    if quota.messages:
        parts.append(f"{quota.messages}C")
    return ",".join(parts)


def parse_quota(line: str) -> Quota:
    """Read a quota definition; parts that are not <digits>S or <digits>C are
    skipped, as Courier and Dovecot skip them, and an absent part (or 0) is
    unlimited."""
    storage = messages = 0
    for part in line.strip().split(","):
        part = part.strip()
        number, kind = part[:-1], part[-1:]
        if not _is_digits(number):
            continue
        if kind == "S":
            storage = int(number)
        elif kind == "C":
            messages = int(number)
    return Quota(storage, messages)


def would_exceed(usage: Usage, quota: Quota, size: int, count: int = 1,
                 grace: int = 0) -> bool:
    """True when adding size bytes and count messages goes past a limit.

    Reaching a limit exactly is allowed: Courier and Dovecot refuse only when
    the total is greater than the limit.  grace (bytes) is Dovecot's
    quota_grace: only a mailbox under its storage limit gets it, and only
    for storage (quota.c, quota_transaction_set_limits)."""
    if quota.storage > 0:
        ceiling = quota.storage + grace if usage.storage < quota.storage else quota.storage
        if usage.storage + size > ceiling:
            return True
    return quota.messages > 0 and usage.messages + count > quota.messages


def grace_bytes(quota: Quota, grace: tuple) -> int:
    """The bytes quota_grace (percent, bytes) allows past this storage limit;
    a percentage is of the limit, rounded down, as Dovecot computes it."""
    percent, size = grace
    return quota.storage * percent // 100 if percent else size


def counts_towards_quota(folder: str | None, info: str | None = None,
                         rules: Rules = Rules()) -> bool:
    """Whether a message stored in a folder (".Name"; None or "" for INBOX)
    with Maildir info flags ("ST") counts: not in a folder the rules leave
    out, nor flagged T under the courier rules.  A delivery of one that
    does not count calls no add_usage()."""
    if not rules.counts_folder(folder):
        return False
    return rules.kind != COURIER or "T" not in (info or "")


def quota_for(own: Quota, maildir: str) -> Quota:
    """The limits a mailbox is held to: lda's own when it has any (the admin
    set them through lda, so they win and are written), else those of the
    quota line found in maildirsize (Dovecot's or Courier's, kept rather
    than thrown away), else none."""
    if not own.unlimited():
        return own
    return existing_quota(maildir) or own


def read_usage(maildir: str, quota: Quota, clock=time.time, *,
               size: int = 0, count: int = 0, rules: Rules = Rules(), grace: int = 0) -> Usage:
    """The usage of the Maildir rooted at maildir, from maildirsize when the
    spec trusts it, else from a recalculation that rewrites the file.

    Recalculates when maildirsize is missing (or a symlink, or not a plain
    file), at least MAX_SIZE bytes, unreadable as numbers, negative, written
    for a quota other than this one, or over quota while it has more than one
    usage line or is STALE_SECONDS old (the spec, "Calculating the quota").
    Pass the incoming message as size/count to judge "over quota" with it
    included, as Courier's maildir_checkquota() does; otherwise a mailbox just
    under its limit, with deletions the file missed, refuses big messages
    until something else rebuilds the file.  A quota of Quota() is written too:
    pass quota_for() so a limit set by Dovecot or Courier is kept."""
    return judged_usage(maildir, quota, clock, size, count, rules, grace)[0]


def judged_usage(maildir, quota, clock=time.time, size=0, count=0, rules=Rules(), grace=0,
                 write=True):
    """(usage, recounted): read_usage's figures, and whether maildirsize
    could not be trusted and was recounted (write=False: counted, the file
    left as it is, for `lda explain`)."""
    found = _load(maildir)
    if found is not None:
        usage = _trusted_usage(found, quota, clock(), size, count, grace)
        if usage is not None:
            return usage, False
    if not write:
        return count_usage(maildir, rules=rules), True
    return recalculate(maildir, quota, rules=rules), True


def _trusted_usage(found, quota, now, size, count, grace):
    """The usage a maildirsize records, or None when the spec says recount."""
    if len(found.data) >= MAX_SIZE:
        return None
    contents = _parse(found.data)
    if contents.usage is None or contents.quota != quota:
        return None
    if not would_exceed(contents.usage, quota, size, count, grace):
        return contents.usage
    # Over quota: racing writers and clients that do not keep maildirsize
    # make appended figures drift, so only a fresh one-line file is believed.
    if contents.lines > 1 or now - found.mtime >= STALE_SECONDS:
        return None
    return contents.usage


def existing_quota(maildir: str) -> Quota | None:
    """The quota line of an existing maildirsize, so per-user mode can honour
    a limit that Dovecot or Courier set; None if there is no plain file or it
    is empty.  Read even from an oversized file, as Courier does."""
    found = _load(maildir)
    if found is None or not found.data:
        return None
    return parse_quota(found.data.split(b"\n", 1)[0].decode("ascii", "replace"))


def add_usage(maildir: str, size: int, count: int = 1) -> None:
    """Append "size count" to maildirsize after a message was stored (or, with
    negative numbers, removed).

    One write() on an O_APPEND descriptor, so lines from concurrent writers
    never interleave.  Without a maildirsize (or with a symlink in its place)
    this does nothing: the spec appends only when the quota check found a
    file, and the next read_usage() recount includes the message anyway.
    Raises CannotCreate on an I/O error; the message is already delivered by
    then, so callers should log it and carry on (the file is rebuilt later)."""
    path = os.path.join(maildir, FILENAME)
    line = f"{int(size)} {int(count)}\n".encode()
    try:
        fd = os.open(path, _APPEND_FLAGS)
    except FileNotFoundError:
        return
    except OSError as err:
        if err.errno in _NOT_A_PLAIN_FILE:
            return
        raise _cannot(f"cannot update {path}", err) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        if os.write(fd, line) != len(line):
            # A torn line makes the next reader recount (see _parse).
            raise CannotCreate(f"cannot update {path}: short write")
    except OSError as err:
        raise _cannot(f"cannot update {path}", err) from None
    finally:
        os.close(fd)


def recalculate(maildir: str, quota: Quota, *, rules: Rules = Rules()) -> Usage:
    """Count the Maildir and its folders afresh, replace maildirsize with the
    quota line and one usage line, and return the usage.

    The spec, "Calculating maildirsize": if a new/ or cur/ directory changed
    while we counted, a delivery may have appended to the file we replaced,
    so count again; after RECALCULATION_PASSES the file stays as written and a
    later recount corrects it, as Courier does."""
    try:
        for _ in range(RECALCULATION_PASSES):
            usage, stamp = _count(maildir, rules)
            _replace(maildir, quota, usage)
            if _latest_change(maildir, rules) <= stamp:
                break
    except OSError as err:
        raise _cannot(f"cannot recalculate the quota of {maildir}", err) from None
    return usage


def count_usage(maildir: str, *, rules: Rules = Rules()) -> Usage:
    """Count the Maildir as recalculate() does, writing nothing: for a
    Maildir that has no maildirsize and must not get one from a reader
    (per-user mode's, which its deliveries never give one)."""
    try:
        return _count(maildir, rules)[0]
    except OSError as err:
        raise _cannot(f"cannot count the usage of {maildir}", err) from None


def _load(maildir):
    """The first MAX_SIZE bytes of maildirsize and its mtime, or None when
    there is no plain file there (a symlink is never followed)."""
    path = os.path.join(maildir, FILENAME)
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno in _NOT_A_PLAIN_FILE:
            return None
        raise _cannot(f"cannot read {path}", err) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        return _File(_read_at_most(fd, MAX_SIZE), st.st_mtime)
    except OSError as err:
        raise _cannot(f"cannot read {path}", err) from None
    finally:
        os.close(fd)


def _read_at_most(fd, limit):
    # Loop: the spec warns that some NFS clients return short reads.
    chunks, got = [], 0
    while got < limit:
        chunk = os.read(fd, limit - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _parse(data):
    """The quota line, the summed usage lines, and how many there are.

    Dovecot calls a file with NUL bytes or a line that is not two integers
    broken, and both refuse a negative total; so do we (usage None), and the
    caller recounts.  So is a last line without its newline: a torn append
    that the next append would otherwise glue into a wrong number."""
    lines = data.decode("ascii", "replace").split("\n")
    quota = parse_quota(lines[0])
    body = lines[1:-1]
    if lines[-1] or not body or b"\0" in data:
        return _Contents(quota, None, len(body))
    storage = messages = 0
    for line in body:
        fields = line.split()
        if len(fields) != 2 or not all(_is_integer(f) for f in fields):
            return _Contents(quota, None, len(body))
        storage += int(fields[0])
        messages += int(fields[1])
    if storage < 0 or messages < 0:
        return _Contents(quota, None, len(body))
    return _Contents(quota, Usage(storage, messages), len(body))


def _count(maildir, rules):
    """Sum the messages in new/ and cur/ of the Maildir and of each folder;
    also return the latest mtime of those directories, taken before reading
    each one (the spec, "Calculating maildirsize", steps 2 and 3)."""
    storage = messages = stamp = 0
    dirs = _mail_dirs(maildir, rules)
    try:
        for fd in dirs:
            stamp = max(stamp, os.fstat(fd).st_mtime_ns)
            with os.scandir(fd) as entries:
                for entry in entries:
                    size = _message_size(entry, rules)
                    if size is not None:
                        storage += size
                        messages += 1
    finally:
        dirs.close()
    return Usage(storage, messages), stamp


def _latest_change(maildir, rules):
    dirs = _mail_dirs(maildir, rules)
    try:
        return max((os.fstat(fd).st_mtime_ns for fd in dirs), default=0)
    finally:
        dirs.close()


def _mail_dirs(maildir, rules):
    """Yield an open fd for each new/ and cur/ that counts: the Maildir's own
    (unless the rules leave the INBOX out) and those of each Maildir++
    folder the rules count (Rules.counts_folder).
    A folder is any ".Name" directory, as the spec's recount ("each
    Maildir++ folder, except Trash"), Courier's and Dovecot's have it: a
    client that made one without maildirfolder still keeps mail there.
    One pair is open at a time, so a mailbox with thousands of folders stays
    within the fd limit."""
    root = os.open(maildir, _DIR_FLAGS)   # the root may be a symlink the admin made
    try:
        inbox = ["."] if rules.counts_folder(None) else []
        for name in [*inbox, *_folder_names(root, rules)]:
            folder = _open_real_dir(name, root)
            if folder is None:
                continue
            try:
                yield from _new_and_cur(folder)
            finally:
                os.close(folder)
    finally:
        os.close(root)


def _new_and_cur(folder):
    for sub in ("new", "cur"):
        fd = _open_real_dir(sub, folder)
        if fd is None:
            continue
        try:
            yield fd
        finally:
            os.close(fd)


def _folder_names(root, rules):
    """Entries that may be Maildir++ folders and count: ".Name" directories
    that are not symlinks.  The spec forbids names starting with two periods
    (and Dovecot keeps its half-deleted folders under "..DOVECOT-TRASHED")."""
    with os.scandir(root) as entries:
        return [entry.name for entry in entries
                if entry.name.startswith(".") and not entry.name.startswith("..")
                and rules.counts_folder(entry.name)
                and entry.is_dir(follow_symlinks=False)]


def _message_size(entry, rules):
    """A message's size as the rules count it, or None if it does not count."""
    name = entry.name
    if rules.kind != COURIER:
        # quota-maildir.c, maildir_sum_dir: only ".", ".." and "..name" are
        # passed over; dot files and T-flagged messages count.
        if name.startswith(".."):
            return None
        size = _dovecot_size_in_name(name)
    elif name.startswith(".") or _flagged_trashed(name.partition(":")[2]):
        return None     # not a message, or marked deleted: Courier skips these
    else:
        size = _size_in_name(name.partition(":")[0])
    if size is not None:
        return size
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return None     # the spec: stat() failing means it was just removed
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _size_in_name(base):
    """nnnnn from a ",S=nnnnn" field (the spec, step 3), or None, in which
    case the file is stat()ed.  Dovecot writes ",S=n,W=m", so a comma may
    follow the digits."""
    start = base.rfind(",S=")
    if start < 0:
        return None
    digits = base[start + 3:].split(",", 1)[0]
    return int(digits) if _is_digits(digits) else None


def _dovecot_size_in_name(name):
    """The size Dovecot reads from a name: the digits after its first ",S=",
    which must end the name or be followed by ":" or ","; None (stat the
    file) otherwise.  "S=" without digits is 0 bytes to Dovecot, too."""
    start = name.find(",S=")
    if start < 0:
        return None
    rest = name[start + 3:]
    end = 0
    while end < len(rest) and "0" <= rest[end] <= "9":
        end += 1
    if rest[end:end + 1] not in ("", ":", ","):
        return None
    return int(rest[:end] or "0")


def _flagged_trashed(info):
    """True when the info part ("2,FLAGS") carries T.  Courier does not count
    messages marked deleted; the spec lists this with Trash ("Quotas and
    deleted messages").  Flags are upper case and come first; lower-case
    letters after them are Dovecot keywords."""
    if not info.startswith("2,"):
        return False
    for flag in info[2:]:
        if flag == "T":
            return True
        if not "A" <= flag <= "Z":
            return False
    return False


def _replace(maildir, quota, usage):
    """Write maildirsize anew: a unique file in tmp/, then rename() over the
    old one, so a reader sees the old file or the new, never a part (the
    spec, step 4), with the root's file permissions, as Dovecot writes it
    (maildir.permissions).  No fsync: a file lost in a crash is simply
    rebuilt."""
    # Dovecot writes "0S" rather than an empty quota line; both mean unlimited.
    data = f"{format_quota(quota) or '0S'}\n{usage.storage} {usage.messages}\n".encode()
    root = os.open(maildir, _DIR_FLAGS)
    try:
        tmp = _open_real_dir("tmp", root)
        if tmp is None:
            raise FileNotFoundError(errno.ENOENT, "no tmp/ directory", "tmp")
        try:
            name = _write_unique(tmp, data, permissions(os.fstat(root)))
            try:
                os.rename(name, FILENAME, src_dir_fd=tmp, dst_dir_fd=root)
            except OSError:
                os.unlink(name, dir_fd=tmp)
                raise
        finally:
            os.close(tmp)
    finally:
        os.close(root)


def _write_unique(tmp, data, perms):
    """Create a new file in tmp/ (O_EXCL, mode 0600, then perms's file
    mode and group), write data, return its name."""
    for _ in range(10):
        name = f"{time.time_ns()}.P{os.getpid()}R{os.urandom(8).hex()}_maildirsize"
        try:
            fd = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=tmp)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(errno.EEXIST, "no unique name in tmp/", name)
    try:
        give_file(fd, perms)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        os.unlink(name, dir_fd=tmp)
        raise
    finally:
        os.close(fd)
    return name


def _open_real_dir(name, dir_fd):
    """An fd for directory name under dir_fd; None if it is absent, not a
    directory, or a symlink, which is never followed."""
    try:
        return os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as err:
        if err.errno in _NOT_A_REAL_DIR:
            return None
        raise


def _is_digits(text):
    # str.isdigit() alone accepts "²" and other non-ASCII digits.
    return text.isascii() and text.isdigit()


def _is_integer(text):
    return _is_digits(text[1:] if text.startswith("-") else text)


def _cannot(what, err):
    where = f" ({err.filename})" if err.filename else ""
    return CannotCreate(f"{what}: {err.strerror or err}{where}")


def quota_failure(config, target, size, clock=time.time):
    """QuotaExceeded if `size` more bytes would put a local target over its
    Maildir++ quota, else None.  A primary target's is permanent when
    quota_full = "reject".  QuotaTooBig, always permanent, when the message
    does not fit and is larger than the storage limit: emptying the mailbox
    would not make room (see the module's docstring for grace)."""
    return quota_judgement(config, target, size, clock)[0]


def quota_judgement(config, target, size, clock=time.time, write=True):
    """(quota_failure's answer, the usage it was judged on or None, whether
    maildirsize was recounted): write=False recounts without rewriting it."""
    if not target.local or target.quota is None or target.quota.unlimited():
        return None, None, False
    limit = target.quota
    grace = grace_bytes(limit, config.quota_grace)
    usage, recounted = judged_usage(target.maildir_path, limit, clock, size, 1,
                                    Rules.of(config), grace, write)
    return _over_quota(config, target, size, limit, grace, usage), usage, recounted


def _over_quota(config, target, size, limit, grace, usage):
    """The failure, its text for the log: the sender reads its `public`
    words alone (lda.errors.LdaError.public)."""
    if not would_exceed(usage, limit, size, grace=grace):
        return None
    if 0 < limit.storage < size:
        return QuotaTooBig(f"message too big for the mailbox: {size} bytes, and "
                           f"{target.address} may hold {limit.storage} bytes in all")
    return QuotaExceeded(
        f"mailbox full: {target.address} uses {usage.storage} of "
        f"{limit.storage or 'unlimited'} bytes, {usage.messages} of "
        f"{limit.messages or 'unlimited'} messages", config.quota_exceeded_message,
        reject=target.primary and config.quota_full == "reject")

"""Maildir writing as the Maildir spec (cr.yp.to/proto/maildir.html) asks.

A file is created O_EXCL in tmp/, written, fsynced, then linked into new/
under a unique name, and new/ itself is fsynced so the name survives a
crash; only then does the delivery count.  What lda makes in a mailbox
takes its permissions from the mailbox's directory, as Dovecot's does (see
"Permissions" below): 0600 files and 0700 directories in lda's own roots.  The whole protocol is
the "write protocol" section below (stage, stage_copies, link or link_new,
sync_linked, spool), which a delivery calls in that order; batching splits it into runs,
so it is not one function as in CPython's Maildir.add.  Every directory below
the mailbox root is opened relative to its parent with O_NOFOLLOW, so a
symlink planted inside a Maildir is never followed for a write.  lda's
state directories below a user's HOME are opened the same way when it runs
as root (open_state).  As root without allow_root_delivery, lda writes only
into directories root owns, and creates one only inside such a directory
(`owner`, checked before anything is made): Postfix's local(8) runs
mailbox_command as the recipient, and what root made in a user's HOME would
fail every later delivery as that user.
"""

import _thread
import errno
import os
import stat

from ..errors import CannotCreate, MaildirMissing, MessageTooBig, NotOwner, UnsafePath

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
SUBDIRS = ("tmp", "new", "cur")
_counter = 0


MAX_HOST_IN_NAME = 100  # bytes of the escaped host; the rest of a name needs < 155


def escape_hostname(hostname):
    """The host part of a file name.  The Maildir spec writes "/" and ":"
    in octal; "," too, or Dovecot would read a host "mx,S=5" as the size
    field.  A longer host is cut: the time, pid, counter and random part
    keep the name unique, and the whole name fits NAME_MAX (255)."""
    escaped = hostname.replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")
    if len(escaped) <= MAX_HOST_IN_NAME // 4:  # the usual host: no UTF-8 to count
        return escaped
    return escaped.encode("utf-8", "surrogateescape")[:MAX_HOST_IN_NAME].decode(
        "utf-8", "ignore")


def unique_name(hostname, clock_ns=None):
    """time.M<usec>P<pid>Q<count>R<random>.<host>, unique without a lock."""
    import time

    global _counter
    _counter += 1
    ns = clock_ns if clock_ns is not None else time.time_ns()
    sec, usec = divmod(ns // 1000, 1_000_000)
    return (f"{sec}.M{usec}P{os.getpid()}Q{_counter}R{os.urandom(8).hex()}"
            f".{escape_hostname(hostname)}")


# --- Permissions ---------------------------------------------------------------
# Dovecot gives what it makes in a mailbox the permissions of the mailbox's
# directory (lib-storage's mailbox_list_get_permissions; a folder about to
# be made, its nearest parent's: folder_permissions), and refuses to rename
# a folder under another whose permissions differ.  lda derives its own
# the same way, so that the two make the same folders and files, and a
# group the root lets in (backup, webmail) reads what both make.  lda runs
# with umask 077 (lda/main.py; Postfix runs delivery so too): a mode is
# given with fchmod, after the group, so that nothing is ever open to more
# than it is meant for.

# (directory mode, file mode, group to give or -1): in a root of mode 0700.
PRIVATE = (0o700, 0o600, -1)
_UMASK = _thread.allocate_lock()  # held while _mkdir changes the process's umask


def permissions(st):
    """The permissions of what is made in the mailbox directory whose stat
    is st: directories its mode (0700 at least), files its read and write
    bits (0600 at least), both its group, unless the kernel hands that down
    (a setgid directory), it is this process's own, or the group may do no
    more than others may anyway."""
    mode = st.st_mode
    if (mode & stat.S_ISGID or (mode >> 3) & 0o7 == mode & 0o7
            or st.st_gid == os.getegid()):
        gid = -1
    else:
        gid = st.st_gid
    return (mode & 0o777) | 0o700, (mode & 0o666) | 0o600, gid


def folder_permissions(root_fd, folder):
    """The permissions of a Maildir++ folder about to be made in the root
    open as root_fd: its nearest parent folder's (".A" for ".A.B"), else
    the root's, as Dovecot takes them."""
    parent = folder
    while "." in parent[1:]:
        parent = parent[:parent.rindex(".")]
        try:
            st = os.stat(parent, dir_fd=root_fd, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            return permissions(st)
    return permissions(os.fstat(root_fd))


def _give(fd, mode, gid, current):
    """Give what was just made (open as fd, of mode `current`) the group
    gid (-1: the one it has), then mode.  A group this process may not
    give (not one of its own) leaves the group's bits closed."""
    if gid != -1:
        try:
            os.fchown(fd, -1, gid)
        except PermissionError:
            mode &= ~0o070
    if mode != current:
        os.fchmod(fd, mode)


def give_file(fd, perms):
    """Give a file just made 0600 (open as fd) perms's file mode and
    group: what lda writes beside the messages (maildirsize,
    dovecot-keywords, subscriptions, its quota-warning state) takes them
    as Dovecot gives its own, from the directory it lies in."""
    _give(fd, perms[1], perms[2], 0o600)


def give_carried(fd, mode, gid):
    """Give what a mailbox move made (open as fd) the mode and group that
    its source had (gid -1: none), group first; a group this process may
    not give leaves the group's bits closed, as _give does."""
    _give(fd, mode, gid, -1)


def _mkdir(name, dir_fd, perms):
    """Make the directory name in dir_fd for _give_dir to finish (perms
    None: 0700, less the umask, as it is).  With perms, as Dovecot makes
    it: with its directory mode already, under a umask that leaves the
    mode whole for that one call, so that nobody finds it with another
    mode (a second delivery that finds a new folder makes its cur/, new/,
    tmp/ with the folder's mode); a setgid parent's setgid bit is handed
    down too.  But a group to give (not one the kernel hands down) comes
    with chown after mkdir: until then the directory is 0700, not open to
    this process's own group, and one who finds it then takes 0700, as
    Dovecot's own mkdir-then-chown leaves it.  The umask is the process's:
    _UMASK keeps two delivery threads from restoring each other's, but a
    file another thread makes in that instant with a mode wider than
    lda's own 0600 (a new SQLite database) takes it."""
    if perms is None or perms[0] == 0o700 or perms[2] != -1:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
        return
    mode = perms[0]
    with _UMASK:
        umask = os.umask(0o777 & ~mode)
        try:
            os.mkdir(name, mode, dir_fd=dir_fd)
        finally:
            os.umask(umask)


def _give_dir(fd, perms):
    """_give for a directory _mkdir just made: perms's directory mode
    (nothing to change when mkdir gave it), keeping the setgid bit a
    setgid parent handed down unless another group is given (as
    Dovecot's mkdir_chgrp)."""
    mode, _, gid = perms
    current = stat.S_IMODE(os.fstat(fd).st_mode)
    if gid == -1:
        mode |= current & stat.S_ISGID
    _give(fd, mode, gid, current)


def open_path(path, create=False):
    """Open an absolute directory path given by the configuration."""
    if create:
        os.makedirs(path, mode=0o700, exist_ok=True)
    return os.open(path, DIR_FLAGS)


def fsync_dir(path):
    """Make the names created, renamed or removed in a directory durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_owner(fd, path, owner):
    """NotOwner unless the directory open as fd belongs to owner (None: any).
    Returns the fstat it read (None: none read, for owner None)."""
    if owner is None:
        return None
    st = os.fstat(fd)
    uid = st.st_uid
    if uid != owner:
        # Files root writes there would be unreadable to the owner's IMAP
        # server; Postfix should run lda as that user instead.
        raise NotOwner(f"refusing to deliver as root into {path}, owned by uid {uid}: "
                       "run lda as that user (Postfix: user= in master.cf) or set "
                       "allow_root_delivery = true")
    return st


def _check_parent(path, owner):
    """Before creating an absolute path: the nearest directory above it that
    exists must be owner's."""
    if owner is None:
        return
    parent = os.path.dirname(path)
    while True:
        try:
            uid = os.stat(parent).st_uid
            break
        except FileNotFoundError:
            parent = os.path.dirname(parent)
    if uid != owner:
        raise NotOwner(f"refusing to create {path} as root in {parent}, owned by uid "
                       f"{uid}: run lda as that user (Postfix: user= in master.cf) or "
                       "set allow_root_delivery = true")


def open_dir(name, dir_fd=None, create=False, follow=False, owner=None, path=None,
             perms=None, with_stat=False):
    """Open (creating if asked) one directory level, never through a symlink.

    owner: the uid it must belong to (None: any); a directory given by
    dir_fd was checked by the caller, so one made in it needs no check.
    perms: for a directory this makes, a function that returns the
    permissions to give it (None: 0700, less the umask).  with_stat:
    returns (the descriptor, its fstat), the one the owner check read."""
    flags = DIR_FLAGS | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            raise
        if dir_fd is None:
            _check_parent(name, owner)
        given = perms() if perms is not None else None
        try:
            _mkdir(name, dir_fd, given)
            made = given is not None
        except FileExistsError:
            made = False
        fd = os.open(name, flags, dir_fd=dir_fd)
        if made:
            try:
                _give_dir(fd, given)
            except BaseException:
                os.close(fd)
                raise
    try:
        st = check_owner(fd, path or name, owner)
        if with_stat:
            return fd, st or os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def walk_confined(root, relative, create=True, owner=None, with_stat=False):
    """Open root/relative one component at a time, refusing '..' and
    symlinks (with_stat: as open_dir's, for the last)."""
    parts = relative.split("/")
    if any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise UnsafePath(f"unsafe mailbox path {relative!r}")
    fd = open_dir(root, create=create, follow=True, owner=owner)
    path, st = root, None
    try:
        for i, part in enumerate(parts, 1):
            path = os.path.join(path, part)
            last = with_stat and i == len(parts)
            next_fd = open_dir(part, fd, create=create, owner=owner, path=path, with_stat=last)
            os.close(fd)
            fd, st = next_fd if last else (next_fd, None)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(f"{path}: symlink or non-directory in path") from None
        raise
    except BaseException:
        os.close(fd)
        raise
    return (fd, st) if with_stat else fd


def is_below(path, base):
    """Whether the absolute, normalised path lies below base."""
    return path != base and path.startswith(os.path.join(base, ""))


def open_state(path, base, owner=None, make_base=True):
    """A state directory (path: base or below it), created if need be: base
    as the configuration or HOME names it (made with its parents when
    make_base says so, as open_path makes it), the rest of the way without
    following a symlink, each directory checked for owner.  Root uses it, so
    that a symlink a user planted in ~/.local/state/lda cannot lead root's
    writes elsewhere."""
    try:
        if not os.path.isdir(base):
            if not make_base:
                raise CannotCreate(f"{base}: no such directory")
            _check_parent(base, owner)
            os.makedirs(base, mode=0o700, exist_ok=True)
        if path == base:
            return open_dir(path, follow=True, owner=owner)
        if not is_below(path, base):
            raise UnsafePath(f"{path}: state directory outside {base}")
        return walk_confined(base, path[len(os.path.join(base, "")):], True, owner)
    except OSError as e:  # base itself (the configuration's): retry, as before
        raise CannotCreate(f"{path}: cannot create: {e.strerror}") from None


class Maildir:
    """An open Maildir (or Maildir++ folder) with fds for tmp/, new/, cur/
    and the folder itself (dir_fd: its dovecot-keywords lives there)."""

    unsubscribed = None  # why a folder open_mailbox made is not subscribed

    def __init__(self, path, root_fd, folder=None, create=True):
        self.root_path = path        # the mailbox root: maildirsize lives here
        self.folder = folder         # ".Name" or None for INBOX
        self.path = os.path.join(path, folder) if folder else path
        self._fds = []
        self._perms = None
        try:
            if folder:
                # The root too, for in_place(): a reader may take the folder away.
                self.root_fd = self._keep(os.dup(root_fd))
                self.dir_fd = self._keep(open_dir(
                    folder, root_fd, create=create,
                    perms=lambda: folder_permissions(root_fd, folder)))
                if create:
                    _touch(self.dir_fd, "maildirfolder", self.permissions)
            else:  # the caller closes root_fd
                self.dir_fd = self._keep(os.dup(root_fd))
            # new/ made last: a Maildir with new/ has its tmp/ and cur/ too,
            # even when a delivery was killed while making it (link_new).
            perms = self.permissions
            self.tmp_fd = self._keep(open_dir("tmp", self.dir_fd, create=create, perms=perms))
            self.cur_fd = self._keep(open_dir("cur", self.dir_fd, create=create, perms=perms))
            self.new_fd = self._keep(open_dir("new", self.dir_fd, create=create, perms=perms))
        except OSError as e:
            self.close()
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePath(f"{self.path}: symlink or non-directory in Maildir") from None
            failure = MaildirMissing if e.errno == errno.ENOENT else CannotCreate
            raise failure(f"{self.path}: cannot open Maildir: {e.strerror}") from None

    def _keep(self, fd):
        self._fds.append(fd)
        return fd

    def permissions(self):
        """The permissions of what is made in this Maildir (see
        permissions()), from its directory, read once."""
        if self._perms is None:
            self._perms = permissions(os.fstat(self.dir_fd))
        return self._perms

    def close(self):
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def in_place(self):
        """Whether the folder opened is still the one at its name: IMAP
        DELETE (Dovecot) renames it away (..DOVECOT-TRASHED) and then
        empties it, and RENAME moves it, while its descriptors here still
        work.  A message linked in before the rename was in the folder
        when the user deleted or renamed it; one linked in after it is in
        no folder the user has."""
        if not self.folder:
            return True  # the INBOX is the Maildir itself
        try:
            there = os.stat(self.folder, dir_fd=self.root_fd, follow_symlinks=False)
        except OSError:
            return False
        here = os.fstat(self.dir_fd)
        return (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino)

    def contains(self, name):
        """Whether new/NAME, or NAME moved to cur/ by a reader, exists; or,
        failing that, NAME moved to another folder of the mailbox: Dovecot's
        move (IMAP MOVE, doveadm move) links the file there under the same
        base name, and lda's names are unique over the whole Maildir."""
        if _exists(name, self.new_fd):
            return True
        base = name.split(":", 1)[0]
        if _holds(self.cur_fd, base):
            return True
        return self._elsewhere(base)

    def _elsewhere(self, base):
        """Whether a file of base name is in new/ or cur/ of the mailbox's
        other folders (or its INBOX, for a folder), no symlink followed."""
        root = os.open("..", DIR_FLAGS, dir_fd=self.dir_fd) if self.folder else self.dir_fd
        try:
            others = [entry for entry in os.listdir(root) if entry.startswith(".")
                      and entry not in (".", "..", self.folder)]
            return any(_folder_holds(root, folder, base)
                       for folder in ([None] if self.folder else []) + others)
        finally:
            if root != self.dir_fd:
                os.close(root)

    def sync_contents(self):
        """fsync new/ and cur/: whatever was linked (or moved) into them is
        then durable, whoever linked it."""
        os.fsync(self.new_fd)
        os.fsync(self.cur_fd)


def _folder_holds(root, folder, base):
    """Whether new/ or cur/ of root's folder (None: root's own) has a file
    of base name; a folder that is a symlink or no Maildir has none."""
    fds = []
    try:
        parent = root
        if folder:
            parent = os.open(folder, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=root)
            fds.append(parent)
        for sub in ("new", "cur"):
            fds.append(os.open(sub, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent))
            if _holds(fds[-1], base):
                return True
        return False
    except OSError:
        return False
    finally:
        for fd in fds:
            os.close(fd)


def _holds(dir_fd, base):
    """Whether the directory has a file of base name, whatever its info."""
    return any(entry.split(":", 1)[0] == base for entry in os.listdir(dir_fd))


def _exists(name, dir_fd):
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def _touch(dir_fd, name, perms):
    """Make the empty file name, unless it exists, with the file mode and
    group of perms() (a function: called only when the file is made)."""
    try:
        fd = os.open(name, FILE_FLAGS, 0o600, dir_fd=dir_fd)
    except FileExistsError:
        return
    try:
        _, mode, gid = perms()
        _give(fd, mode, gid, 0o600)
    finally:
        os.close(fd)


def _joined(root_path, relative):
    """The path of the mailbox open_root opens, as the errors name it."""
    return os.path.join(root_path, relative) if relative else root_path


def open_root(root_path, relative, owner, create=False, with_stat=False):
    """A descriptor of a mailbox's root: root_path itself (per-user mode,
    which may be a symlink the user made) or root_path/relative confined
    below a database root.  owner: the uid it must belong to, checked
    before anything is created in it (None: any); with_stat: (the
    descriptor, its fstat), one fstat for both.  OSError as it comes."""
    if relative:
        return walk_confined(root_path, relative, create, owner, with_stat)
    return open_dir(root_path, create=create, follow=True, owner=owner,
                    with_stat=with_stat)


def open_tmp(root_path, relative=None, owner=None):
    """(a descriptor of a mailbox's tmp/ (its INBOX's), the permissions of
    the files made there, the mailbox's path), nothing created: where a
    delivery stages its file, so that a hard link reaches the Maildir's
    new/.  Only tmp/ is opened: _link opens the Maildir again under the
    mailbox locks.  Errors as open_mailbox's."""
    try:
        root_fd, st = open_root(root_path, relative, owner, with_stat=True)
    except FileNotFoundError:
        raise MaildirMissing(f"{root_path}: mailbox directory does not exist") from None
    except OSError as e:
        raise CannotCreate(f"{root_path}: cannot open mailbox: {e.strerror}") from None
    path = _joined(root_path, relative)
    try:
        return open_dir("tmp", root_fd), permissions(st), path
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(f"{path}: symlink or non-directory in Maildir") from None
        failure = MaildirMissing if e.errno == errno.ENOENT else CannotCreate
        raise failure(f"{path}: cannot open Maildir: {e.strerror}") from None
    finally:
        os.close(root_fd)


def open_mailbox(root_path, relative=None, folder=None, create=True,
                 create_folder=False, owner=None, subscribe=False):
    """Open a mailbox (its root as open_root finds it, its Maildir made
    unless create is false).  subscribe: a folder this makes is added to
    the Maildir's subscriptions (lda.store.subscriptions); the Maildir's
    `unsubscribed` then says why not, if it was not."""
    path = _joined(root_path, relative)
    try:
        root_fd = open_root(root_path, relative, owner, create)
    except FileNotFoundError:
        raise MaildirMissing(f"{root_path}: mailbox directory does not exist") from None
    except OSError as e:
        raise CannotCreate(f"{root_path}: cannot open mailbox: {e.strerror}") from None
    try:
        inbox = Maildir(path, root_fd, create=create)
        # An address extension names a folder only if the user made it;
        # Sieve's fileinto :create makes one.
        if not folder or not (create_folder or _folder_exists(root_fd, folder)):
            return inbox
        inbox.close()
        unsubscribed = None
        # Subscribed before it is made, so that a delivery killed in between
        # leaves a folder the next one completes, and subscribes, again.
        if create_folder and subscribe and _to_be_made(root_fd, folder):
            from .subscriptions import subscribe as add

            perms = permissions(os.fstat(root_fd))
            unsubscribed = add(root_fd, folder, lambda fd: give_file(fd, perms))
        box = Maildir(path, root_fd, folder, create=create_folder)
        box.unsubscribed = unsubscribed
        return box
    finally:
        os.close(root_fd)


def _folder_exists(root_fd, folder):
    try:
        fd = os.open(folder, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=root_fd)
    except OSError:
        return False
    os.close(fd)
    return True


def _to_be_made(root_fd, folder):
    """Whether opening folder with create makes it: no directory there, or
    one without new/, which Maildir makes last.  Anything but a directory
    (a symlink) is no folder a delivery makes."""
    for name in (folder, f"{folder}/new"):
        try:
            if not stat.S_ISDIR(os.stat(name, dir_fd=root_fd, follow_symlinks=False).st_mode):
                return False
        except FileNotFoundError:
            return True
        except OSError:
            return False
    return False


# --- The write protocol ----------------------------------------------------------
# A delivery calls these in this order: stage (the first recipient's copy),
# stage_copies (the other recipients', each with its own prefix; stage_edited
# for a Sieve script that edited the header), link (into a target's new/ or
# cur/; link_new for a plain INBOX delivery), sync_linked (those directories,
# a run at a time); spool keeps a copy for a partial-delivery retry.  The caller decides which
# targets, and when a delivery counts: not before sync_linked says so.

# Copies written, or links made, before the run is fsynced, at most: a link
# awaiting its directory's fsync holds a descriptor (RLIMIT_NOFILE is often
# 1,024).
SYNC_BATCH = 64


def write_all(fd, data):
    """os.write until every byte of data is written (a short write is not
    an error)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class TmpFile:
    """A new file in a tmp/ directory (given by fd): O_EXCL, no symlinks,
    the file mode and group of perms (see permissions())."""

    def __init__(self, dir_fd, hostname, label="tmp", perms=PRIVATE):
        self.dir_fd = dir_fd
        for _ in range(100):
            self.name = unique_name(hostname)
            try:
                self.fd = os.open(self.name, FILE_FLAGS, 0o600, dir_fd=self.dir_fd)
                break
            except FileExistsError:
                continue  # another writer had this name: pick a new one
            except OSError as e:
                raise CannotCreate(f"{label}: {e.strerror}") from None
        else:
            raise CannotCreate(f"{label}: no unique file name after 100 tries")
        try:
            _give(self.fd, perms[1], perms[2], 0o600)
        except OSError as e:
            self.discard()
            raise CannotCreate(f"{label}: {e.strerror}") from None

    def finish(self):
        """fsync and close; the file is then safe to link into new/."""
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = None

    def discard(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        try:
            os.unlink(self.name, dir_fd=self.dir_fd)
        except OSError:
            pass  # left in tmp/: swept after 36 hours


class VirtualSize:
    """The size of bytes written in pieces as RFC 3501 counts it, with CRLF
    line ends: each LF that no CR precedes counts two bytes.  Dovecot reads
    it from a file name's ",W=" as the message's RFC822.SIZE, unread."""

    def __init__(self):
        self.size = 0
        self._cr = False  # the last piece ended with CR: a LF next ends that line

    def add(self, data):
        """Count data; returns it, for the writer to write."""
        if data:
            self.size += virtual_size(data)
            if self._cr and data[:1] == b"\n":
                self.size -= 1
            self._cr = data[-1:] == b"\r"
        return data


def virtual_size(data):
    """VirtualSize's count of bytes given whole."""
    # Most messages hold no CR at all: a memchr finds that, where a count
    # of CR LF would scan the bytes a second time.
    crlf = data.count(b"\r\n") if b"\r" in data else 0
    return len(data) + data.count(b"\n") - crlf


class Staged:
    """The message as written (and fsynced) once for one recipient, with its
    prefix, in a tmp/ (or the partial spool, for a retry) open as dir_fd;
    vsize its VirtualSize (None: not known, so no W= in its names); perms
    the permissions it was made with, those of the mailbox directory at
    path origin (None: no mailbox's; lda's own, PRIVATE)."""

    def __init__(self, dir_fd, name, size, prefix_len, lead=(), vsize=None, prefix_vsize=0,
                 perms=PRIVATE, origin=None):
        self.dir_fd, self.name, self.size, self.prefix_len = dir_fd, name, size, prefix_len
        self.lead = lead  # the MTA's own prepended fields, for other prefixes
        self.vsize, self.prefix_vsize = vsize, prefix_vsize
        self.perms, self.origin = perms, origin

    def fits(self, path, perms):
        """Whether a hard link of this file may go into the mailbox
        directory at path, whose permissions perms() returns (called only
        for another mailbox's): its files take this file's mode and group.
        A link shares them, so Dovecot links only then, and copies else."""
        return path == self.origin or perms()[1:] == self.perms[1:]

    def vsize_with(self, prefix):
        """The vsize of this message with prefix in place of its own (a
        prefix never ends in CR: lda's fields end in LF)."""
        if self.vsize is None:
            return None
        return self.vsize - self.prefix_vsize + virtual_size(prefix)

    def file_name(self, hostname):
        """A new name for a link of this file: unique_name, then its size
        (the Maildir spec's ",S=") and vsize (",W=", as dovecot-lda writes
        it), which Dovecot and quota recounts read instead of the file."""
        name = f"{unique_name(hostname)},S={self.size}"
        return name if self.vsize is None else f"{name},W={self.vsize}"

    def open(self):
        return os.open(self.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                       dir_fd=self.dir_fd)

    def unlink(self):
        try:
            os.unlink(self.name, dir_fd=self.dir_fd)
        except OSError:
            pass  # left in tmp/: swept after 36 hours; the outcome stands


def stage(dir_fd, hostname, prefix, chunks, lead=(), perms=PRIVATE, origin=None):
    """Write prefix and then the message's chunks into a new file in the
    tmp/ open as dir_fd, and fsync it: the Staged copy every link of this
    recipient's is made from, with the permissions perms of the mailbox
    at origin (Staged).  MessageTooBig past a file size limit,
    CannotCreate for any other write failure; nothing is left behind."""
    tmp = TmpFile(dir_fd, hostname, "staging tmp/", perms)
    size, vsize = len(prefix), VirtualSize()
    try:
        write_all(tmp.fd, vsize.add(prefix))
        prefix_vsize = vsize.size
        for chunk in chunks:
            write_all(tmp.fd, vsize.add(chunk))
            size += len(chunk)
        tmp.finish()
    except OSError as e:
        tmp.discard()
        if e.errno == errno.EFBIG:  # a file size limit: Postfix's mailbox_size_limit
            raise MessageTooBig("message exceeds the file size limit") from None
        raise CannotCreate(f"cannot write message: {e.strerror}") from None
    except BaseException:
        tmp.discard()
        raise
    return Staged(dir_fd, tmp.name, size, len(prefix), lead, vsize.size, prefix_vsize,
                  perms, origin)


def stage_copies(first, prefixes, hostname):
    """({i: Staged}, {i: LdaError}): for each prefixes[i], the message of
    `first` (without its prefix) after that prefix, in first's directory,
    or why it could not be written.  Written SYNC_BATCH at a time before
    any is fsynced: the first fsync commits the filesystem's journal with
    the whole run, and the others find theirs committed."""
    staged, failed = {}, {}
    run = []  # (index, TmpFile written but not synced, its Staged)
    try:
        for i, prefix in prefixes.items():
            try:
                tmp = TmpFile(first.dir_fd, hostname, "staging tmp/", first.perms)
            except CannotCreate as e:
                failed[i] = e
                continue
            try:
                copy_file(first.dir_fd, first.name, first.prefix_len, prefix, tmp)
            except OSError as e:
                tmp.discard()
                failed[i] = CannotCreate(f"cannot write message: {e.strerror}")
                continue
            run.append((i, tmp, Staged(first.dir_fd, tmp.name,
                                       first.size - first.prefix_len + len(prefix),
                                       len(prefix), vsize=first.vsize_with(prefix),
                                       prefix_vsize=virtual_size(prefix),
                                       perms=first.perms, origin=first.origin)))
            if len(run) >= SYNC_BATCH:
                _finish_copies(run, staged, failed)
        _finish_copies(run, staged, failed)
    except BaseException:  # nothing unexpected leaves a copy behind
        for copy in staged.values():
            copy.unlink()
        raise
    finally:
        for _, tmp, _ in run:  # only when something unexpected was raised
            tmp.discard()
    return staged, failed


def stage_edited(staged, head, skip, hostname):
    """A copy of the staged message whose first `skip` bytes are replaced
    by `head` (lda's prefix and a Sieve script's edited header; the body
    follows byte for byte), in the same tmp/, fsynced: the copy the
    script's stores and redirects are linked or sent from.  CannotCreate
    when it cannot be written; nothing is left behind."""
    tmp = TmpFile(staged.dir_fd, hostname, "staging tmp/", staged.perms)
    vsize = VirtualSize()
    try:
        copy_file(staged.dir_fd, staged.name, skip, head, tmp, vsize)
        tmp.finish()
    except OSError as e:
        tmp.discard()
        raise CannotCreate(f"cannot write the edited message: {e.strerror}") from None
    except BaseException:
        tmp.discard()
        raise
    return Staged(staged.dir_fd, tmp.name, staged.size - skip + len(head), staged.prefix_len,
                  vsize=vsize.size, prefix_vsize=staged.prefix_vsize, perms=staged.perms,
                  origin=staged.origin)


def _finish_copies(run, staged, failed):
    """fsync and close each written copy of the run (see stage_copies)."""
    while run:
        i, tmp, copy = run.pop(0)
        try:
            tmp.finish()
            staged[i] = copy
        except OSError as e:
            tmp.discard()
            failed[i] = CannotCreate(f"cannot write message: {e.strerror}")


def link_new(staged, root_path, relative, name, owner=None):
    """link's plain case with one directory opened: the staged file linked
    into new/ of the mailbox at root_path (or root_path/relative, confined
    as open_mailbox walks it) as name.  Returns (a descriptor of new/, its
    path), as link does; None when the caller must take the whole way
    (open_mailbox, then link) instead: no new/ there (a Maildir to make:
    Maildir makes new/ last), no cur/ (a Maildir half made by an older lda,
    which made new/ first: open_mailbox completes it for its readers),
    files of another mode or group there (link copies), another
    filesystem, or any other error, which that way reports as it always
    has."""
    path = _joined(root_path, relative)
    try:
        root_fd = open_root(root_path, relative, owner)
    except OSError:
        return None
    try:
        if not staged.fits(path, lambda: permissions(os.fstat(root_fd))):
            return None
        if not stat.S_ISDIR(os.stat("cur", dir_fd=root_fd, follow_symlinks=False).st_mode):
            return None
        new_fd = open_dir("new", root_fd)
    except OSError:
        return None
    finally:
        os.close(root_fd)
    try:
        os.link(staged.name, name, src_dir_fd=staged.dir_fd, dst_dir_fd=new_fd,
                follow_symlinks=False)
    except OSError:
        os.close(new_fd)
        return None
    return new_fd, f"{path}/new"


def info(flags, keywords=""):
    """The letters after ":2,": system flags (S, F, ...) in ASCII order as
    the Maildir spec asks, then keyword letters (a..z, see keywords.py) in
    order, as Dovecot writes them."""
    return "".join(sorted(set(flags or ""))) + "".join(sorted(set(keywords)))


def link(staged, box, name, flags, hostname, keywords=""):
    """Link the staged file into box's new/ as name, or into cur/ as
    name:2,INFO (the Maildir spec's place for a message with info, here
    Sieve imap4flags: system flag letters, then Dovecot keyword letters);
    on another filesystem, or when box's files take another mode or group
    (Staged.fits), copy it into box's tmp/ and fsync it first.
    Returns (a descriptor of that directory, its path): the link is not
    durable, and the delivery does not count, until sync_linked has
    fsynced it.  CannotCreate when it fails."""
    letters = info(flags, keywords)
    sub, dst_fd, final = ("cur", box.cur_fd, f"{name}:2,{letters}") if letters else (
        "new", box.new_fd, name)
    path = f"{box.path}/{sub}"
    try:
        if not staged.fits(box.path, box.permissions):
            _copy_in(box, staged, final, dst_fd, hostname)
        else:
            try:
                os.link(staged.name, final, src_dir_fd=staged.dir_fd,
                        dst_dir_fd=dst_fd, follow_symlinks=False)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                _copy_in(box, staged, final, dst_fd, hostname)
    except OSError as e:
        raise CannotCreate(f"{path}: {e.strerror}") from None
    if not box.in_place():
        # Linked into a folder a reader deleted or renamed meanwhile: taken
        # back, and retried, as a message that comes after the delete.
        try:
            os.unlink(final, dir_fd=dst_fd)
        except OSError:
            pass  # the reader removed it already
        raise CannotCreate(f"{box.path}: the folder was deleted or renamed while "
                           "the message was stored into it")
    return os.dup(dst_fd), path


def _copy_in(box, staged, name, dst_fd, hostname):
    """Another filesystem, or other permissions: copy into its tmp/ (with
    box's), fsync, link into dst_fd (new/, or cur/ for a message with
    flags)."""
    tmp = TmpFile(box.tmp_fd, hostname, f"{box.path}/tmp", box.permissions())
    try:
        copy_file(staged.dir_fd, staged.name, 0, b"", tmp)
        tmp.finish()
        os.link(tmp.name, name, src_dir_fd=box.tmp_fd, dst_dir_fd=dst_fd,
                follow_symlinks=False)
    finally:
        tmp.discard()


def sync_linked(linked):
    """fsync the new/ (or cur/) of each (key, descriptor, path) that link
    returned since the last call, closing each and emptying `linked`;
    returns [(key, path, None, or the OSError that failed it)].  Only a
    synced link survives a power cut, so only then does a delivery count.
    Linking a run first and then syncing lets the first fsync commit the
    filesystem's journal with every link, and the others find theirs
    committed (bench/profiles/deliver-case1-startup.txt, section 9)."""
    synced = []
    while linked:
        key, fd, path = linked.pop(0)
        try:
            os.fsync(fd)
            synced.append((key, path, None))
        except OSError as e:
            synced.append((key, path, e))
        finally:
            os.close(fd)
    return synced


def spool(staged, spool_fd, spool_path, hostname):
    """Keep a copy of the staged message in the directory open as spool_fd
    (a database's partial/, for `lda partial retry`): a hard link, or a
    fsynced copy on another filesystem or of a file made with a mailbox's
    permissions (a retry takes the copy as lda's own, PRIVATE); the
    directory is fsynced so that the copy the record names survives a
    crash.  Returns the copy's path."""
    name = None
    if staged.perms[1:] == PRIVATE[1:]:
        name = unique_name(hostname)
        try:
            os.link(staged.name, name, src_dir_fd=staged.dir_fd, dst_dir_fd=spool_fd,
                    follow_symlinks=False)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            name = None
    if name is None:
        tmp = TmpFile(spool_fd, hostname, spool_path)
        try:
            copy_file(staged.dir_fd, staged.name, 0, b"", tmp)
            tmp.finish()
        except BaseException:
            tmp.discard()
            raise
        name = tmp.name
    os.fsync(spool_fd)
    return os.path.join(spool_path, name)


def copy_file(src_dir_fd, src_name, skip, prefix, dst, vsize=None):
    """Copy src (from byte `skip` on) after `prefix` into the open TmpFile
    dst; vsize, a VirtualSize, counts what is written."""
    count = vsize.add if vsize is not None else (lambda data: data)
    src = os.open(src_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir_fd)
    try:
        write_all(dst.fd, count(prefix))
        os.lseek(src, skip, os.SEEK_SET)
        while chunk := os.read(src, 1 << 20):
            write_all(dst.fd, count(chunk))
    finally:
        os.close(src)


TMP_MAX_AGE = 36 * 3600


def sweep_tmp(path, now, max_age=TMP_MAX_AGE):
    """Remove files older than 36 hours from path/tmp/, as the Maildir spec
    says a reader may: what a killed writer left behind.  Returns the names."""
    import stat

    try:
        root_fd = open_dir(path, follow=True)
    except OSError:
        return []
    try:
        tmp_fd = open_dir("tmp", root_fd)
    except OSError:
        return []
    finally:
        os.close(root_fd)
    removed = []
    try:
        for name in os.listdir(tmp_fd):
            try:
                st = os.stat(name, dir_fd=tmp_fd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_mtime < now - max_age:
                    os.unlink(name, dir_fd=tmp_fd)
                    removed.append(name)
            except OSError:
                continue  # gone meanwhile, or not ours to remove
    finally:
        os.close(tmp_fd)
    return removed

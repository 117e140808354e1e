"""The stream that carries a mailbox to another host (`lda mailbox move`
to a database on another host, `lda mailbox receive` there).

    lda-mailbox-stream 1\\n
    LENGTH\\n MANIFEST            JSON: address, target_db, dirs, files
                                 (path, size, sha256, mtime_ns, and for
                                 the Maildir's mode and group), dir_modes
                                 (each directory's mode and group), and
                                 active_link when ManageSieve keeps the
                                 active script as a symlink
    the files' bytes, in the manifest's order
    end SHA256\\n                 of every byte before it

Paths are relative and of three kinds: maildir/... (the Maildir with its
folders, maildirsize, keywords and Sieve scripts), partial/NAME (the
spooled copies of partial deliveries) and rows.json (DeliveredTo, Sieve
state and partial-delivery rows).  The receiver trusts none of it: every
path is checked before it becomes one, files are created anew (O_EXCL,
O_NOFOLLOW) under a staging directory it made itself, the declared sizes
must fit the disk, and every hash and the trailer must match before the
caller accepts anything.  The Maildir's files and directories keep their
modes and groups (a Maildir open to a group: maildir.permissions), a group
by its name, as hosts may number it differently; a receiver gives a file
no more than read and write, nothing setuid or sticky, others never
write, the owner always its bits, and closes the group's bits where it
cannot give the group.
"""

import errno
import grp
import hashlib
import json
import os

from ..config import SCRIPT_IN_MAILBOX, SCRIPTS_IN_MAILBOX
from ..errors import EX_DATAERR, LdaError
from ..sieve.script import SUFFIX, bad_name
from ..store.maildir import fsync_dir, give_carried

MAGIC = b"lda-mailbox-stream 1\n"
ROWS = "rows.json"
KINDS = ("maildir", "partial")
MAX_MANIFEST = 256 << 20
MAX_PATH = 4096
CHUNK = 1 << 20


class StreamRefused(LdaError):
    """A mailbox stream that is cut, corrupted or unsafe; nothing was accepted."""

    exit_code = EX_DATAERR


def checked_path(path):
    """path, if it is one a stream may carry: relative, no "." or ".."
    component, no NUL or line break, under maildir/ or partial/ (one name)
    or rows.json.  Else StreamRefused."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH or any(
            c in path for c in "\0\r\n\\"):
        raise StreamRefused(f"unsafe path in stream: {str(path)[:80]!r}")
    parts = path.split("/")
    if path == ROWS:
        return path
    if (parts[0] not in KINDS or len(parts) < 2 or any(p in ("", ".", "..") for p in parts)
            or (parts[0] == "partial" and len(parts) != 2)):
        raise StreamRefused(f"unsafe path in stream: {path[:80]!r}")
    return path


def file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_entry(name, path):
    """The manifest's entry for the file at path, carried as name (one of
    the Maildir's with its mode and group)."""
    stat = os.stat(path)
    entry = {"path": name, "size": stat.st_size, "sha256": file_digest(path),
             "mtime_ns": stat.st_mtime_ns}
    if name.startswith("maildir/"):
        entry["mode"], entry["group"] = mode_and_group(stat)
    return entry


def mode_and_group(stat):
    """[mode, group name or None (a gid without a name)] of a stat."""
    try:
        group = grp.getgrgid(stat.st_gid).gr_name
    except KeyError:
        group = None
    return [stat.st_mode & 0o7777, group]


def dir_modes(root, dirs):
    """{path: mode_and_group} of the Maildir's directories, as maildir_entries
    names them (root is "maildir")."""
    return {path: mode_and_group(os.stat(os.path.join(root, path[len("maildir/"):])
                                         if path != "maildir" else root))
            for path in dirs}


def _give_carried(fd, carried, directory):
    """Give what the receiver made (open as fd) a carried [mode, group]:
    no more than a Maildir's file or directory needs (no setuid, sticky
    or execute bit on a file, others never write), the owner's bits
    always, the group's bits closed for a group unknown here."""
    mode, group = carried
    mode = (mode & 0o2775 | 0o700) if directory else (mode & 0o664 | 0o600)
    gid = -1
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            pass
    if gid == -1:
        mode &= ~0o070
    give_carried(fd, mode, gid)


def _carried(value):
    """Whether value is a [mode, group] a manifest may carry."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)
            and 0 <= value[0] <= 0o7777 and (value[1] is None or isinstance(value[1], str)))


def maildir_entries(root):
    """(dirs, [(name, path)]) of a Maildir tree: directories and regular
    files only; symlinks are neither followed nor carried, nor what is in
    a tmp/ (a delivery under way, which the mailbox's tombstone will
    defer and which removes its file then)."""
    dirs, files = [], []
    for parent, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not os.path.islink(os.path.join(parent, d)))
        relative = os.path.relpath(parent, root)
        base = "maildir" if relative == "." else f"maildir/{relative}"
        dirs.append(base)
        if os.path.basename(parent) == "tmp":
            continue
        for name in sorted(names):
            path = os.path.join(parent, name)
            if not os.path.islink(path) and os.path.isfile(path):
                files.append((f"{base}/{name}", path))
    return dirs, files


def active_link(root):
    """The active script's symlink in the mailbox root, as ManageSieve makes
    it (lda.sieve -> sieve/NAME.sieve), when it points to a regular file
    directly in that mailbox's own sieve/ (the rule a delivery follows it
    by, lda/deliver/sievescripts.py): "sieve/NAME.sieve", else None.  A
    move carries no other link."""
    from ..deliver.sievescripts import mailbox_script

    path = os.path.join(root, SCRIPT_IN_MAILBOX)
    if not os.path.islink(path):
        return None
    real = mailbox_script(root, path, warn=lambda line: None)
    return None if real is None else f"{SCRIPTS_IN_MAILBOX}/{os.path.basename(real)}"


def make_active_link(root, link):
    """Make lda.sieve in the mailbox root `root` the symlink `link` that
    active_link read at the source, once it is checked: sieve/NAME.sieve,
    NAME one a stored script may have (sieve.script.bad_name), a regular
    file there (a stream is not trusted: StreamRefused)."""
    directory, _, name = link.partition("/") if isinstance(link, str) else ("", "", "")
    if (directory != SCRIPTS_IN_MAILBOX or not name.endswith(SUFFIX)
            or bad_name(name.removesuffix(SUFFIX), stored=True) is not None
            or not os.path.isfile(os.path.join(root, link))
            or os.path.islink(os.path.join(root, link))):
        raise StreamRefused(f"unsafe active script link: {str(link)[:80]!r}")
    os.symlink(link, os.path.join(root, SCRIPT_IN_MAILBOX))


def write_stream(out, header, files, progress=lambda done, total: None):
    """Send header (address, target_db, dirs) and files [(name, path or
    bytes)] to the binary file out: manifest first, then the bytes."""
    entries = []
    for name, source in files:
        if isinstance(source, bytes):
            entries.append({"path": name, "size": len(source),
                            "sha256": hashlib.sha256(source).hexdigest(), "mtime_ns": None})
        else:
            entries.append(manifest_entry(name, source))
    manifest = json.dumps({**header, "files": entries}).encode()
    whole = hashlib.sha256()

    def put(data):
        whole.update(data)
        out.write(data)

    put(MAGIC)
    put(b"%d\n" % len(manifest) + manifest)
    for done, ((_, source), entry) in enumerate(zip(files, entries), 1):
        if isinstance(source, bytes):
            put(source)
        else:
            with open(source, "rb") as f:
                left = entry["size"]
                while left > 0:
                    chunk = f.read(min(CHUNK, left))
                    if not chunk:
                        raise OSError(errno.EAGAIN, "shrank", source)
                    put(chunk)
                    left -= len(chunk)
        progress(done, len(files))
    out.write(b"end " + whole.hexdigest().encode() + b"\n")
    out.flush()


class Reader:
    """The incoming stream, hashed as it is read."""

    def __init__(self, stream):
        self.stream, self.whole = stream, hashlib.sha256()

    def read(self, n):
        data = self.stream.read(n)
        if len(data) != n:
            raise StreamRefused("stream cut short")
        self.whole.update(data)
        return data

    def line(self, limit):
        data = self.stream.readline(limit + 1)
        if not data.endswith(b"\n"):
            raise StreamRefused("stream cut short or malformed")
        self.whole.update(data)
        return data


def read_manifest(reader):
    if reader.line(len(MAGIC)) != MAGIC:
        raise StreamRefused("not a mailbox stream (lda-mailbox-stream 1)")
    length = reader.line(20).strip()
    if not length.isdigit() or int(length) > MAX_MANIFEST:
        raise StreamRefused("malformed manifest length")
    try:
        manifest = json.loads(reader.read(int(length)))
        files, dirs = manifest["files"], manifest["dirs"]
        seen = set()
        for entry in files:
            checked_path(entry["path"])
            if entry["path"] in seen:
                raise StreamRefused(f"path twice in stream: {entry['path'][:80]!r}")
            seen.add(entry["path"])
            if (not isinstance(entry["size"], int) or entry["size"] < 0
                    or not isinstance(entry["sha256"], str) or len(entry["sha256"]) != 64
                    or ("mode" in entry and not _carried([entry["mode"], entry["group"]]))):
                raise StreamRefused(f"malformed manifest entry for {entry['path'][:80]!r}")
        for path in dirs:
            if path != "maildir" and not checked_path(path).startswith("maildir/"):
                raise StreamRefused(f"unsafe directory in stream: {path[:80]!r}")
        modes, known = manifest.get("dir_modes", {}), set(dirs)
        if not all(path in known and _carried(value) for path, value in modes.items()):
            raise StreamRefused("malformed directory modes in manifest")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise StreamRefused("malformed manifest") from None
    return manifest


def receive_stream(stream, place):
    """Read a stream from the binary file stream into a staging directory:
    every file written, fsynced and checked against its size and hash, and
    the trailer against the whole.  place(manifest) is asked, once the
    manifest has been read and checked, for (staging, free_bytes): an
    empty directory and what its disk can take.  Returns the manifest;
    StreamRefused (nothing to accept: the caller removes staging) on any
    fault."""
    reader = Reader(stream)
    manifest = read_manifest(reader)
    staging, free_bytes = place(manifest)
    total = sum(entry["size"] for entry in manifest["files"])
    if total > free_bytes:
        raise StreamRefused(f"stream of {total} bytes does not fit ({free_bytes} free)")
    try:
        for path in manifest["dirs"]:
            os.makedirs(os.path.join(staging, path), mode=0o700, exist_ok=True)
        for entry in manifest["files"]:
            _receive_file(reader, staging, entry)
        # Deepest first, once all is in them: a mode may leave them unwritable.
        for path, carried in sorted(manifest.get("dir_modes", {}).items(), reverse=True):
            fd = os.open(os.path.join(staging, path),
                         os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                _give_carried(fd, carried, directory=True)
            finally:
                os.close(fd)
        for parent, _, _ in os.walk(staging):
            fsync_dir(parent)
    except OSError as e:
        raise StreamRefused(f"cannot stage stream: {e.strerror}: "
                            f"{os.path.relpath(e.filename or staging, staging)}") from None
    expected = b"end " + reader.whole.hexdigest().encode() + b"\n"
    if stream.readline(len(expected) + 1) != expected:
        raise StreamRefused("stream trailer missing or does not match: corrupted")
    return manifest


def _receive_file(reader, staging, entry):
    path = os.path.join(staging, entry["path"])
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    digest = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    if "mode" in entry and entry["path"].startswith("maildir/"):
        try:
            _give_carried(fd, [entry["mode"], entry["group"]], directory=False)
        except BaseException:
            os.close(fd)
            raise
    with os.fdopen(fd, "wb") as f:
        left = entry["size"]
        while left > 0:
            chunk = reader.read(min(CHUNK, left))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
        f.flush()
        os.fsync(f.fileno())
    if digest.hexdigest() != entry["sha256"]:
        raise StreamRefused(f"hash mismatch: {entry['path'][:80]!r}")
    if isinstance(entry.get("mtime_ns"), int):
        os.utime(path, ns=(entry["mtime_ns"], entry["mtime_ns"]))

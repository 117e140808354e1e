"""IMAP keywords in a Maildir folder, stored as Dovecot stores them.

Dovecot writes a keyword ($Junk, Work) as a lower-case letter in the info
part of a message's file name (":2,Sa"): letter a is the name on line
"0 NAME" of the folder's dovecot-keywords file, b on "1 NAME", up to z.
lda follows the rules of Dovecot's maildir-keywords.c, so that
`doveadm fetch flags` and IMAP clients see what a Sieve script set:

- Reading: each line is "<index> <name>"; a line without a space, whose
  index is not a number below 26, whose name is empty or already named
  (names compare case-insensitively, ASCII only, as strcasecmp) is ignored.
- A new name takes the first index no line names, in a line added after
  the others, which stay as they were; with all 26 taken the keyword is
  refused (the message is still stored).
- Changes happen only under the folder's dovecot-uidlist.lock, the dotlock
  Dovecot itself holds whenever it changes dovecot-keywords.  The new file
  is written as dovecot-keywords.lock, fsynced and renamed over the old
  one, its mtime later than the old file's: Dovecot rereads the file only
  when the mtime changed.  The rename is durable before the message is
  linked, so no reader meets a letter without its name.
- The dotlock (lda.store.dotlock) holds "pid:host"; one whose process on
  this host is gone, or that has not changed for two minutes, is stale and
  replaced (Dovecot's file-dotlock.c, which touches a lock it holds for long).

A file that cannot be used (a symlink, not a regular file, over
MAX_FILE_BYTES, unreadable, its lock held past the timeout) raises
KeywordsUnusable: the caller stores the message without keywords.
"""

import errno
import os
import stat
import time

from ..errors import KeywordsUnusable
from .dotlock import CREATE_FLAGS, READ_FLAGS, DotLock
from .maildir import give_file, permissions

KEYWORDS_FILE = "dovecot-keywords"
UIDLIST_LOCK = "dovecot-uidlist.lock"
MAX_KEYWORDS = 26                 # the letters a..z
MAX_KEYWORD_LENGTH = 50           # Dovecot's mail_max_keyword_length default
MAX_FILE_BYTES = 64 * 1024        # 26 names of 50 bytes need 1.4 KB
MAX_LINE_BYTES = 1024             # Dovecot reads the file through a buffer this big
STALE_LOCK_SECONDS = 120          # Dovecot's KEYWORDS/UIDLIST_LOCK_STALE_TIMEOUT
# RFC 3501 section 9, atom-specials (with SP, CTL and 8-bit, below): "["
# and "}" are atom characters, and Dovecot stores keywords with them.
NOT_IN_ATOM = frozenset('(){%*"\\]')


def refusal(name):
    """Why name cannot be stored as a keyword, or None when it can: an
    IMAP atom (printable ASCII without atom-specials), 1..50 characters."""
    if not name or any(not "!" <= c <= "~" or c in NOT_IN_ATOM for c in name):
        return "not a valid IMAP keyword (an atom: no spaces, (){%*\"\\], controls or 8-bit)"
    if len(name) > MAX_KEYWORD_LENGTH:
        return f"longer than {MAX_KEYWORD_LENGTH} characters"
    return None


def parse(lines):
    """(index_of, taken) for dovecot-keywords' lines, read as Dovecot reads
    them: index_of maps each name, lower-cased (ASCII only, as strcasecmp),
    to the index of its first line; taken[i] says a line names index i.  A
    CR before the LF and anything from a NUL on are not part of a line;
    bad lines, and a name already seen, are ignored."""
    index_of, taken = {}, [False] * MAX_KEYWORDS
    for line in lines:
        line = line.split(b"\0", 1)[0].removesuffix(b"\r")
        index, space, name = line.partition(b" ")
        if not (space and index.isdigit() and index.isascii() and name):
            continue
        if int(index) >= MAX_KEYWORDS or name.lower() in index_of:
            continue
        index_of[name.lower()] = int(index)
        taken[int(index)] = True
    return index_of, taken


def split_lines(data, where):
    """(lines, tail): the complete lines of data, and what follows the last
    LF, which Dovecot never reads (kept as it is, last, when lda rewrites
    the file).  Dovecot stops at a line longer than its 1,024-byte buffer,
    so that a line added after one would be lost on it: KeywordsUnusable."""
    *lines, tail = data.split(b"\n")
    if any(len(line) >= MAX_LINE_BYTES for line in lines):
        raise KeywordsUnusable(f"{where}: a line longer than Dovecot reads")
    return lines, tail


def read_lines(dir_fd, path):
    """(lines, tail, stat result or None when there is no file) of the dovecot-keywords
    in the folder open as dir_fd, never through a symlink; KeywordsUnusable
    for a file that is no regular file, too large, or unreadable."""
    where = f"{path}/{KEYWORDS_FILE}"
    try:
        fd = os.open(KEYWORDS_FILE, READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return [], b"", None
    except OSError as e:
        reason = "a symlink" if e.errno == errno.ELOOP else e.strerror
        raise KeywordsUnusable(f"{where}: {reason}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeywordsUnusable(f"{where}: not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise KeywordsUnusable(f"{where}: {st.st_size} bytes, more than "
                                   f"{MAX_FILE_BYTES}")
        data = os.read(fd, MAX_FILE_BYTES + 1)
    except OSError as e:
        raise KeywordsUnusable(f"{where}: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:  # grew between fstat and read
        raise KeywordsUnusable(f"{where}: more than {MAX_FILE_BYTES} bytes")
    return (*split_lines(data, where), st)


def letters(indexes):
    """Info letters for keyword indexes, in order, as Dovecot writes them."""
    return "".join(chr(ord("a") + i) for i in sorted(set(indexes)))


def assign(dir_fd, path, names, timeout=60, clock=time.monotonic):
    """(letters, refused) for keyword names in the Maildir folder open as
    dir_fd (its path for messages): the info letters of the names that
    have or now get an index, and [(name, why)] for the others.  Names
    already in dovecot-keywords need no lock; new ones are added under
    the dotlock.  KeywordsUnusable when the file or its lock cannot be used."""
    wanted, refused = [], []
    for name in names:
        why = refusal(name)
        if why:
            refused.append((name, why))
        else:
            wanted.append(name)
    if not wanted:
        return "", refused
    index_of, _ = parse(read_lines(dir_fd, path)[0])
    found = [index_of.get(name.encode("ascii").lower()) for name in wanted]
    if None not in found:
        return letters(found), refused
    with DotLock(dir_fd, path, UIDLIST_LOCK, timeout, KeywordsUnusable, STALE_LOCK_SECONDS,
                 clock):
        lines, tail, old = read_lines(dir_fd, path)  # as it is now, under the lock
        (index_of, taken), indexes, added = parse(lines), [], []
        for name in wanted:
            key = name.encode("ascii")
            index = index_of.get(key.lower())
            if index is None and not all(taken):
                index = taken.index(False)
                index_of[key.lower()], taken[index] = index, True
                added.append(b"%d %s" % (index, key))
            if index is None:
                refused.append((name, f"no keyword letter left: {path}/{KEYWORDS_FILE} "
                                      f"names {MAX_KEYWORDS} keywords already"))
            else:
                indexes.append(index)
        if added:
            write_lines(dir_fd, path, lines + added, tail, old)
    return letters(indexes), refused


def write_lines(dir_fd, path, lines, tail, old):
    """Replace dovecot-keywords with lines and then tail: the old ones, kept
    as they were (lda discards nothing it did not write; Dovecot reads them
    as before), and the new.  Written to dovecot-keywords.lock (a leftover
    one removed first: the caller holds the uidlist lock, as Dovecot does)
    with the folder's file permissions, as Dovecot gives them whatever the
    old file had (maildir.permissions: a group the folder lets in reads
    it), its mtime past the old one (old: the old file's stat), fsynced,
    renamed into place, the directory fsynced.
    KeywordsUnusable when any step fails."""
    temp = KEYWORDS_FILE + ".lock"
    data = b"".join(line + b"\n" for line in lines) + tail
    try:
        _unlink_if_exists(temp, dir_fd)
        fd = os.open(temp, CREATE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            give_file(fd, permissions(os.fstat(dir_fd)))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            mtime = os.fstat(fd).st_mtime
            if old is not None and int(mtime) <= int(old.st_mtime):
                later = int(old.st_mtime) + 1
                os.utime(fd, (later, later))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, KEYWORDS_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    except OSError as e:
        _unlink_if_exists(temp, dir_fd, quiet=True)
        raise KeywordsUnusable(f"{path}/{KEYWORDS_FILE}: cannot write: {e.strerror}") from None


def _unlink_if_exists(name, dir_fd, quiet=False):
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError:
        if not quiet:
            raise

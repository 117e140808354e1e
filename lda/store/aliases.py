"""Alias files in the /etc/aliases format, and recursive alias expansion.

The format is the one Postfix aliases(5) and sendmail read:

    # comment
    postmaster: root
    root:       alice, bob@example.com,
                "carol@example.net"
    staff:      :include:staff.list
    bob@example.org: robert

A key without "@" answers to that local part in every domain lda delivers
for; a key with "@" answers to that one address.  Keys and addresses are
folded to lower case.  lda only delivers to mailboxes and re-sends to
addresses, so the `|command`, `/file` and `\\name` targets other agents accept
are configuration errors here, reported with file and line, rather than mail
quietly going somewhere the admin did not mean.

`lda aliases compile` writes what a file expands to into a table (an
SQLite file, see write_table()); open_aliases() answers from that table,
one indexed query per key, while it still matches every file it was built
from, and parses the source otherwise, as postalias(1) and Postfix do with
aliases.db.

A bad line does not spoil the file, as with newaliases(1): it is skipped
with a warning and the other aliases answer.  Unlike Postfix, an alias
whose own definition is on a bad line (its name still readable, as in
`team alice` without a colon) is not unknown but deferred (AliasLineBad,
4.3.5): mail to it waits for the fix instead of bouncing for a typo.

This module is on the per-message path: it imports only cheap standard
modules (SQLite through lda.sqlite, already loaded for DeliveredTo), and
email-validator only once an address needs checking.
"""

import os
import stat
import time

from ..errors import ConfigError, TemporaryFailure, is_file_problem
from ..startup.collections import record

MAX_NAME = 254  # RFC 5321 section 4.5.3.1.3: no path (address) is longer
MAX_PATH = 4096  # PATH_MAX on Linux: file names in messages are shown whole up to this
MAX_INCLUDE_DEPTH = 20
# No one writes a line this long on purpose (continuation lines are the
# idiom for long lists); past it, the line is garbage such as a binary file.
MAX_LINE = 1 << 20
INCLUDE = ":include:"
# "/" and "\\" make paths, ":" a misspelt :include:, '"' a quote that did not close cleanly.
_FORBIDDEN_IN_NAMES = '/\\:"'
# Target kinds other agents accept and lda refuses: it runs no commands and
# writes no files except Maildir messages.
_UNSUPPORTED = {"|": "command", "/": "file", "\\": "backslash (no further aliasing)"}
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"}


class Problem(record("Problem", "path line message")):
    """One thing wrong in an alias file; line 0 means the file as a whole."""

    __slots__ = ()

    def __str__(self):
        if self.line:
            return f"{self.path}:{self.line}: {self.message}"
        return f"{self.path}: {self.message}"


class AliasLineBad(TemporaryFailure):
    """An alias whose definition is on a bad line: deferred, never bounced."""

    smtp_reply = "451 4.3.5"


class Expansion(record("Expansion", "leaves cycles via")):
    """What an address expands to.

    leaves: the addresses to deliver to, lowercased, in first-seen order.
    cycles: each chain that met an address already on it, root first,
            such as ["a", "b", "a"]; that address became a leaf.
    via:    for each leaf, the chain from the root that first reached it.
    """

    __slots__ = ()


class Aliases:
    """A parsed alias file: lowercased key -> member addresses."""

    def __init__(self, path, entries, lines, sources=None, bad=None, problems=()):
        self.path = path
        self._entries = entries  # key -> tuple of lowercased members
        self._lines = lines  # key -> line number in path
        # absolute path -> (st_mtime_ns, st_size, st_ino) of each file read,
        # the alias file first, taken before reading (see _Parser.read)
        self.sources = sources or {}
        # key -> the Problem of the bad line that defines it: lookups defer
        self.bad = bad or {}
        self.problems = list(problems)  # every bad line skipped, in file order

    def __len__(self):
        return len(self._entries)

    def __iter__(self):
        """The keys, in file order."""
        return iter(self._entries)

    def key_for(self, address, local_part=True):
        """The key lookup() would use for address, or None.

        local_part=False matches full-address keys only, for addresses
        in a domain lda does not deliver for.
        """
        address = address.lower()
        if address in self._entries or address in self.bad:
            return address
        if local_part:
            local, at, _ = address.rpartition("@")
            if at and (local in self._entries or local in self.bad):
                return local
        return None

    def lookup(self, address, local_part=True):
        """The members of address: full-address key first, then local part
        (unless local_part is False); None if no alias.  Raises AliasLineBad
        for a key defined on a bad line."""
        key = self.key_for(address, local_part)
        if key in self.bad:
            raise deferred(key, self.bad[key])
        return None if key is None else list(self._entries[key])

    def has_domain(self, domain):
        """Whether a key names an address in `domain` (a bare key answers for
        every domain, so it names none)."""
        suffix = "@" + domain
        return any(key.endswith(suffix) for key in self._entries)

    def line_of(self, key):
        """The line of the file that defines key."""
        return self._lines[key]


def deferred(key, problem):
    """The AliasLineBad a lookup of key raises: the same words from the
    file and from the table, which stores str(problem)."""
    return AliasLineBad(f"alias {_show(key)} is defined on a bad line, {problem}; "
                        "deferred until the line is fixed")


def load_aliases(path, strict=True):
    """Parse the alias file at path.

    strict: raise ConfigError at the first problem.  Otherwise bad lines
    are skipped and kept in .problems, the keys they define in .bad (as a
    delivery reads the file); only a file that cannot be read at all
    raises, since then no alias can be told from an unknown address.
    """

    def fail(problem):
        raise ConfigError(str(problem))

    problems = []

    def skip(problem):
        if not problem.line:
            fail(problem)
        problems.append(problem)

    aliases = _Parser(fail if strict else skip).parse(path)
    aliases.problems = problems
    return aliases


def check_aliases(path, local_domains=None):
    """Every problem in the alias file at path, alias loops included.

    local_domains: the domains whose addresses bare keys answer to while
    looking for loops.  Without them a bare key matches bare names only, so
    `bob: bob@gmail.com` is not mistaken for a loop.
    """
    return checked_aliases(path, local_domains)[0]


def checked_aliases(path, local_domains=None):
    """(problems as check_aliases() finds them, the Aliases parsed), from one
    reading of the files: what `lda aliases compile` writes is what it checked."""
    problems = []
    aliases = _Parser(problems.append).parse(path)
    aliases.problems = list(problems)
    problems.extend(loop_problems(aliases, local_domains or ()))
    return problems, aliases


# --- the compiled table --------------------------------------------------------
#
# One SQLite file, written whole beside its final name and renamed over it,
# never changed in place (so readers open it immutable, without locks):
#   aliases(key PRIMARY KEY, members, problem)  members joined by "\n", which
#                                      no address or name can hold (lines are
#                                      split at it before parsing); for a key
#                                      on a bad line, members NULL and problem
#                                      the line's Problem as text (a deferral)
#   sources(position, path, mtime_ns, size, ino)  each file read, the alias
#                                      file at position 0, its includes after
#   PRAGMA user_version = TABLE_FORMAT

TABLE_NAME = "aliases.sqlite"
TABLE_FORMAT = 2
_RECOMPILE = "run 'lda aliases compile'"
# Bad lines met while a delivery parses the file are logged at most once
# per WARN_EVERY seconds for the same files (WARNED_NAME in the state
# directory keeps when and for which), so a busy site logs them a few
# times an hour, not with every message, yet an edit is reported at once.
WARNED_NAME = "aliases.warned"
WARN_EVERY = 600
MAX_WARNED_LINES = 20
_warned = {}  # stamp text -> when this process last logged it


def table_path(state_dir):
    """Where `lda aliases compile` writes the table and deliveries look."""
    return os.path.join(state_dir, TABLE_NAME)


def open_aliases(path, table, warn, clock=time.time, stamp=True):
    """What the alias file at path holds: its compiled table at table, if
    that was built from exactly the files there now, else the file parsed by
    load_aliases(), bad lines skipped.  warn(line) says why a table that
    exists is not used, and which lines were skipped (see warn_bad_lines);
    no table at all means no warning about it (compiling is optional).
    stamp=False (`lda explain`): every bad line warned, no stamp file
    written."""
    from ..startup.sqlite3 import sqlite3

    if not os.path.exists(table):
        return _parsed(path, table, warn, clock, stamp)
    conn = None
    try:
        conn = sqlite3.connect(_readonly_uri(table), uri=True)
        why = _table_problem(conn, os.path.abspath(path))
    except sqlite3.Error as e:
        why = f"is unreadable ({e})"
    if why is None:
        return AliasTable(path, table, conn, warn)
    if conn is not None:
        conn.close()
    warn(f"aliases table {table} {why}; reading {path} instead; {_RECOMPILE}")
    return _parsed(path, table, warn, clock, stamp)


def _parsed(path, table, warn, clock, stamp=True):
    """The file parsed as a delivery reads it, its bad lines logged."""
    aliases = load_aliases(path, strict=False)
    if aliases.problems and stamp:
        warn_bad_lines(aliases, os.path.dirname(table), warn, clock)
    elif aliases.problems:
        for problem in aliases.problems:
            warn(f"aliases {problem}; line skipped")
    return aliases


def warn_bad_lines(aliases, state_dir, warn, clock=time.time):
    """Log the bad lines of aliases unless they were logged lately.

    A stamp file rather than only memory: each `lda deliver` is a new
    process.  It holds the files' stamps, so an edited file is news.  A
    stamp that cannot be read or written costs a warning too many, never
    a delivery.
    """
    now = clock()
    stamp = repr(sorted(aliases.sources.items()))
    if now - _warned.get(stamp, -WARN_EVERY) < WARN_EVERY:
        return
    _warned[stamp] = now
    name = os.path.join(state_dir, WARNED_NAME)
    try:
        with open(name, encoding="utf-8", errors="replace") as f:
            if f.read() == stamp and now - os.fstat(f.fileno()).st_mtime < WARN_EVERY:
                return
    except (OSError, ValueError):
        pass
    problems = aliases.problems
    for problem in problems[:MAX_WARNED_LINES]:
        warn(f"aliases {problem}; line skipped")
    if len(problems) > MAX_WARNED_LINES:
        warn(f"aliases {aliases.path}: {len(problems) - MAX_WARNED_LINES} more bad lines "
             "skipped; run 'lda aliases check'")
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o644)
        with open(fd, "w", encoding="utf-8") as f:
            f.write(stamp)
    except OSError:
        pass


def table_problem(path, table):
    """Why the compiled table at table would not answer for the alias file
    at path (so deliveries parse the file instead), or None when it would;
    None too when there is no table (compiling is optional).  Reads only
    (`lda config check`)."""
    from ..startup.sqlite3 import sqlite3

    if not os.path.exists(table):
        return None
    try:
        conn = sqlite3.connect(_readonly_uri(table), uri=True)
    except sqlite3.Error as e:
        return f"is unreadable ({e})"
    try:
        return _table_problem(conn, os.path.abspath(path))
    except sqlite3.Error as e:
        return f"is unreadable ({e})"
    finally:
        conn.close()


def _readonly_uri(path):
    # RFC 8089 file URI as SQLite reads it: only %, ? and # need escaping.
    quoted = os.path.abspath(path).replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    return f"file://{quoted}?mode=ro&immutable=1"


def _table_problem(conn, source):
    """Why the table open on conn does not answer for source now, or None."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version != TABLE_FORMAT:
        return f"has format {version}, not {TABLE_FORMAT}"
    rows = conn.execute("SELECT path, mtime_ns, size, ino FROM sources ORDER BY position")
    rows = rows.fetchall()
    if not rows or rows[0][0] != source:
        return f"was compiled from {rows[0][0] if rows else 'nothing'}, not {source}"
    for name, *stamp in rows:
        try:
            st = os.stat(name)
        except (OSError, ValueError, TypeError):
            return f"is older than its source {name} (gone)"
        if [st.st_mtime_ns, st.st_size, st.st_ino] != stamp:
            return f"is older than its source {name}"
    return None


class AliasTable:
    """A compiled table: Aliases.lookup() as one indexed query, nothing loaded
    up front.  Should the file fail under a lookup (damaged after it was
    opened), the source is parsed instead and answers from then on."""

    def __init__(self, path, table, conn, warn):
        self.path = path
        self.table = table
        self._conn = conn
        self._warn = warn
        self._parsed = None

    def lookup(self, address, local_part=True):
        """As Aliases.lookup()."""
        if self._parsed is None:
            try:
                found = self._query(address.lower(), local_part)
                members = found[1].split("\n") if found and found[1] is not None else None
            except self._unreadable() as e:
                self._read_source(e)
            else:
                if found is not None and members is None:
                    raise deferred(found[0], found[2])
                return members
        return self._parsed.lookup(address, local_part)

    def key_for(self, address, local_part=True):
        """As Aliases.key_for() (lda explain names the alias's line)."""
        if self._parsed is None:
            try:
                found = self._query(address.lower(), local_part)
            except self._unreadable() as e:
                self._read_source(e)
            else:
                return None if found is None else found[0]
        return self._parsed.key_for(address, local_part)

    @staticmethod
    def _unreadable():
        from ..startup.sqlite3 import sqlite3

        return (sqlite3.Error, AttributeError, TypeError)

    def _read_source(self, e):
        """The table failed under a query: the source answers from now on."""
        self._warn(f"aliases table {self.table} is unreadable ({e}); "
                   f"reading {self.path} instead; {_RECOMPILE}")
        self._parsed = _parsed(self.path, self.table, self._warn, time.time)

    def has_domain(self, domain):
        """As Aliases.has_domain()."""
        if self._parsed is None:
            from ..startup.sqlite3 import sqlite3
            from .directory import in_domain

            try:
                return self._conn.execute(
                    "SELECT 1 FROM aliases WHERE key LIKE ? ESCAPE '\\' LIMIT 1",
                    (in_domain(domain),)).fetchone() is not None
            except sqlite3.Error as e:
                self._warn(f"aliases table {self.table} is unreadable ({e}); "
                           f"reading {self.path} instead; {_RECOMPILE}")
                self._parsed = _parsed(self.path, self.table, self._warn, time.time)
        return self._parsed.has_domain(domain)

    def _query(self, address, local_part):
        """(key, members, problem) of the row address looks up, or None."""
        local, at, _ = address.rpartition("@")
        # Both keys in one query; the full address wins, as in key_for().
        keys = (address, local) if local_part and at else (address, address)
        found = {key: (key, members, problem) for key, members, problem in self._conn.execute(
            "SELECT key, members, problem FROM aliases WHERE key IN (?, ?)", keys)}
        return found.get(address) or found.get(local)


def write_table(aliases, target):
    """Write aliases (as checked_aliases() parsed them) to the table at
    target: built in a unique file beside it, fsynced and renamed over it, so
    a delivery sees the old table or the new one, never a part.  Mode 0644
    less the umask, like directory.sqlite, for a delivery user other than
    the admin."""
    from ..startup.sqlite3 import sqlite3
    from .maildir import fsync_dir

    directory = os.path.dirname(target) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = f"{target}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            # A private new file: no journal to roll back to, fsync below.
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("BEGIN")
            conn.execute("CREATE TABLE sources (position INTEGER PRIMARY KEY, path TEXT NOT "
                         "NULL, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL, ino "
                         "INTEGER NOT NULL)")
            conn.execute("CREATE TABLE aliases (key TEXT PRIMARY KEY, members TEXT, "
                         "problem TEXT) WITHOUT ROWID")
            conn.executemany("INSERT INTO sources VALUES (?, ?, ?, ?, ?)",
                             ((i, name, *stamp)
                              for i, (name, stamp) in enumerate(aliases.sources.items())))
            conn.executemany("INSERT INTO aliases VALUES (?, ?, NULL)",
                             ((key, "\n".join(aliases.lookup(key, False))) for key in aliases))
            conn.executemany("INSERT INTO aliases VALUES (?, NULL, ?)",
                             ((key, str(problem)) for key, problem in aliases.bad.items()))
            conn.execute(f"PRAGMA user_version = {TABLE_FORMAT}")
            conn.execute("COMMIT")
        finally:
            conn.close()
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)  # the rename itself survives a crash


def expand(address, lookup, max_depth=20):
    """Expand address recursively through lookup(addr) -> members or None.

    As sendmail and Postfix do, an address met again on its own chain is a
    leaf (so `alice: alice, bob` reaches alice's mailbox and bob) and the
    chain goes to Expansion.cycles.  An alias met again elsewhere is not
    expanded twice: its leaves are already in, and this bounds the work on
    any graph.  A chain through more than max_depth aliases is a ConfigError.
    """
    leaves, cycles, via = [], [], {}
    done = set()  # addresses fully handled: meeting one again adds nothing
    path = []  # aliases being expanded, root first
    stack = [iter([address])]  # stack[i + 1] walks the members of path[i]
    while stack:
        member = next(stack[-1], None)
        if member is None:
            stack.pop()
            if path:
                done.add(path.pop())
            continue
        member = member.lower()
        if member in path:
            cycles.append(path + [member])
            if member not in via:
                leaves.append(member)
                via[member] = path + [member]
            continue
        if member in done:
            continue
        members = lookup(member)
        if members is None:
            done.add(member)
            if member not in via:
                leaves.append(member)
                via[member] = path + [member]
            continue
        if len(path) >= max_depth:
            error = ConfigError(
                f"alias expansion deeper than {max_depth} levels: {' -> '.join(path + [member])}"
            )
            error.chain = path + [member]
            raise error
        path.append(member)
        stack.append(iter(members))
    return Expansion(leaves, cycles, via)


class _Parser:
    """Reads one alias file and its includes, handing each problem to report.

    report raises for load_aliases and collects for check_aliases; after a
    problem that returns, parsing goes on without the bad part.
    """

    def __init__(self, report):
        self.report = report
        self.checked = {}  # target text -> (address, reason): lists repeat addresses
        self.sources = {}  # see Aliases.sources
        self.found = []  # every problem reported, to tell which entry had one

    def problem(self, path, line, message):
        problem = Problem(path, line, message)
        self.found.append(problem)
        self.report(problem)

    def parse(self, path):
        """The Aliases of path.  An entry with any problem is left out; its
        key, when readable, goes to Aliases.bad so lookups defer rather than
        miss.  A duplicate keeps the first, as postalias(1) does, unless
        either is bad: then which one the admin meant is unknown."""
        entries, lines, bad = {}, {}, {}
        text = self.read(path, None)
        if text is not None:
            stack = [os.path.realpath(path)]
            for parts in _entries(self, path, text):
                before = len(self.found)
                key, members = self.entry(path, parts, stack)
                if key is None:
                    continue
                number = parts[0][0]
                if len(self.found) > before:
                    bad.setdefault(key, self.found[before])
                    lines.setdefault(key, number)
                elif key in entries:
                    first = f"first at line {lines[key]}"
                    self.problem(path, number, f"duplicate alias {_show(key)} ({first})")
                elif key not in bad:
                    entries[key], lines[key] = tuple(members), number
        for key in bad:
            entries.pop(key, None)
        return Aliases(path, entries, lines, self.sources, bad)

    def read(self, path, at):
        """The lines of path, or None once the reason is reported.

        at: (file, line) of the :include: that names path, None for the
        alias file itself.
        """
        where, name = (at, _show(path, MAX_PATH)) if at else ((path, 0), "")
        try:
            # O_NONBLOCK: a FIFO named by mistake must not hang a delivery.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                st = os.fstat(fd)
                regular = stat.S_ISREG(st.st_mode)
                if regular:
                    # Stamped before reading: a file changed meanwhile keeps
                    # its older stamp, so a compiled table of it reads stale.
                    self.sources.setdefault(
                        os.path.abspath(path), (st.st_mtime_ns, st.st_size, st.st_ino))
                    with open(fd, "rb", closefd=False) as f:
                        data = f.read()
            finally:
                os.close(fd)
        except (OSError, ValueError) as e:  # ValueError: NUL in the path
            if isinstance(e, OSError) and not is_file_problem(e):
                raise TemporaryFailure(f"{path}: cannot read: {e.strerror}") from None
            reason = getattr(e, "strerror", None) or e
            what = f" {name}" if name else ""
            self.problem(*where, f"cannot read{what}: {reason}")
            return None
        if not regular:
            self.problem(*where, f"{name or 'it'} is not a regular file")
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # Kept apart, not lost: _line_problem() finds the bytes on the
            # lines that hold them, and only those lines are bad.
            text = data.decode("utf-8", "surrogateescape")
        text = text.removeprefix("\ufeff")
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        return text.split("\n")  # not splitlines(): it also splits at \f, \x1c and more

    def entry(self, path, parts, stack):
        """(key, members) of one entry; key None when it is unusable.

        A line that cannot be read still gives its key if its first word is
        a valid name (`team alice` lacks only the colon): mail to it must
        wait for the fix, not bounce as if no alias existed.
        """
        number, first = parts[0]
        for line, text in parts:
            reason = _line_problem(text)
            if reason:
                self.problem(path, line, reason)
                return self.readable_key(first), []
        colon = _unquoted(first, ":")
        if colon is None:
            self.problem(path, number, "unterminated quote")
            return self.readable_key(first), []
        if not colon:
            self.problem(path, number, f'missing ":" after the alias name {_show(first)}')
            return self.readable_key(first), []
        key = self.key(path, number, first[: colon[0]].strip(" \t"))
        members, ok = [], True
        for line, text in [(number, first[colon[0] + 1 :])] + parts[1:]:
            ok &= self.targets(path, line, text, members, stack)
        if ok and not members and key is not None:
            self.problem(path, number, f"alias {_show(key)} has no targets")
        return key, members

    def readable_key(self, text):
        """The key a bad line means to define, or None: its text before any
        colon, the first word of it unless quoted, if a valid name."""
        head = text.split(":", 1)[0].strip(" \t")
        if head[:1] != '"':
            head = head.split(None, 1)[0] if head.split(None, 1) else ""
        name = _unquote(head)
        if not name or _line_problem(name):
            return None
        key, reason = self.address(name)
        return None if reason else key

    def key(self, path, number, text):
        """The lowercased alias name, or None once the problem is reported."""
        name = _unquote(text)
        if not name:
            self.problem(path, number, "missing alias name before the colon")
            return None
        key, reason = self.address(name)
        if reason:
            self.problem(path, number, f"alias name {_show(name)} {reason}")
        return key

    def targets(self, path, number, text, members, stack):
        """Append the members one line lists; False if any was bad."""
        if '"' not in text:
            pieces = text.split(",")
        else:
            cuts = _unquoted(text, ",")
            if cuts is None:
                self.problem(path, number, "unterminated quote")
                return False
            pieces = [text[i + 1 : j] for i, j in zip([-1] + cuts, cuts + [len(text)])]
        ok = True
        for piece in pieces:
            piece = piece.strip(" \t")
            if piece:  # "a, , b" and a trailing comma are harmless, as in sendmail
                ok &= self.target(path, number, piece, members, stack)
        return ok

    def target(self, path, number, token, members, stack):
        value = _unquote(token)
        kind = _UNSUPPORTED.get(value[:1])
        if kind:
            self.problem(path, number, f"{_show(value)} {kind} targets are not supported")
            return False
        if value[: len(INCLUDE)].lower() == INCLUDE:
            name = value[len(INCLUDE) :].strip(" \t")
            return self.include(path, number, name, members, stack)
        address, reason = self.address(value)
        if reason:
            self.problem(path, number, f"{_show(value)} {reason}")
            return False
        members.append(address)
        return True

    def include(self, path, number, name, members, stack):
        """Append the addresses of an :include: file, nested includes too.

        stack holds the real paths being read, so a file that includes
        itself, directly or not, is caught instead of recursing forever.
        """
        if not name or not name.isprintable():
            self.problem(path, number, f"bad :include: file name {_show(name, MAX_PATH)}")
            return False
        full = os.path.join(os.path.dirname(path), name)  # relative to the including file
        real = os.path.realpath(full)
        if real in stack:
            chain = " -> ".join(stack[stack.index(real) :] + [real])
            self.problem(path, number, f"include cycle: {chain}")
            return False
        if len(stack) > MAX_INCLUDE_DEPTH:
            self.problem(path, number, f"includes nested deeper than {MAX_INCLUDE_DEPTH}")
            return False
        lines = self.read(full, (path, number))
        if lines is None:
            return False
        ok = True
        for line, text in enumerate(lines, 1):
            body = text.strip(" \t")
            if body and body[0] != "#":
                reason = _line_problem(body)
                if reason:
                    self.problem(full, line, reason)
                    ok = False
                    continue
                ok &= self.targets(full, line, body, members, stack + [real])
        return ok

    def address(self, value):
        """(lowercased address, None) or (None, reason it is refused)."""
        if "@" not in value:
            reason = _name_problem(value)
            if reason:
                return None, f"is not a valid local name: {reason}"
            return value.lower(), None
        if value not in self.checked:
            self.checked[value] = _check_address(value)
        return self.checked[value]


def member_sources(path):
    """{key: (line, [(member, file, line)])} of the alias file, with the
    file and line each member came from (an :include: file's own), for
    `lda explain`; bad lines are left out, as a delivery leaves them."""
    class SourceParser(_Parser):
        def entry(self, path, parts, stack):
            self.current, self.named = [], set()
            key, members = super().entry(path, parts, stack)
            if key is not None and key not in self.found_sources:
                self.found_sources[key] = (parts[0][0], self.current)
            return key, members

        def target(self, path, number, token, members, stack):
            before = len(members)
            ok = super().target(path, number, token, members, stack)
            for member in members[before:]:
                if member not in self.named:  # the first line that names it
                    self.named.add(member)
                    self.current.append((member, path, number))
            return ok

    parser = SourceParser(lambda problem: None)
    parser.current, parser.named, parser.found_sources = [], set(), {}
    try:
        parser.parse(path)
    except TemporaryFailure:  # unreadable now: the steps go without lines
        return {}
    return parser.found_sources


def _entries(parser, path, lines):
    """Each entry as [(line number, text), ...], continuation lines after the first.

    As in aliases(5), comments and blank lines do not end an entry, and a
    line that starts with whitespace continues the one before.  Lines are
    kept apart, not joined, so a problem is reported at its own line.
    """
    parts = []
    for number, line in enumerate(lines, 1):
        body = line.strip(" \t")
        if not body or body[0] == "#":
            continue
        if line[0] in " \t":
            if parts:
                parts.append((number, body))
            else:
                parser.problem(path, number, "continuation line without an alias before it")
            continue
        if parts:
            yield parts
        parts = [(number, body)]
    if parts:
        yield parts


def _line_problem(text):
    """Why a line cannot be read at all, or None: bytes that are not UTF-8
    (surrogates, as read() decodes them), or more than MAX_LINE characters."""
    if len(text) > MAX_LINE:
        return f"line longer than {MAX_LINE} characters"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "not valid UTF-8"
    return None


def _check_address(value):
    """(lowercased normal form, None) or (None, why email-validator refuses it)."""
    # Imported here: it costs more than a whole delivery, and most
    # deliveries never parse a file.
    from email_validator import EmailNotValidError, validate_email

    try:
        # globally_deliverable=False: a LAN host without a dot (bob@mailhost)
        # is a normal alias target; no DNS is asked either way.
        valid = validate_email(
            value, check_deliverability=False, allow_smtputf8=True, globally_deliverable=False
        )
    except EmailNotValidError as e:
        return None, f"is not a valid address: {e}"
    return valid.normalized.lower(), None


def _name_problem(name):
    """Why name cannot be a local name, or None.

    Local names end up as mailbox names, so anything that could act as a
    path or hide in a log line is refused.
    """
    if not name:
        return "empty"
    if len(name) > MAX_NAME:
        return f"longer than {MAX_NAME} characters"
    if "\0" in name:
        return "contains NUL"
    if " " in name or "\t" in name:
        return "contains whitespace (targets are separated by commas)"
    if not name.isprintable():  # also false for format characters and odd spaces
        return "contains a control character"
    for char in _FORBIDDEN_IN_NAMES:
        if char in name:
            return f"contains {_show(char)}"
    if name[0] == "." or name[-1] == "." or ".." in name:
        return 'starts or ends with "." or contains ".."'
    return None


def _unquoted(text, char):
    """Indexes of char in text outside "..." quoted strings; None if a quote is left open."""
    if '"' not in text:  # the common case, kept off the per-character loop
        found, i = [], text.find(char)
        while i >= 0:
            found.append(i)
            i = text.find(char, i + 1)
        return found
    found, quoted, escaped = [], False, False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            escaped, quoted = c == "\\", c != '"'
        elif c == '"':
            quoted = True
        elif c == char:
            found.append(i)
    return None if quoted else found


def _unquote(token):
    """The inside of a token that is one quoted string, escapes undone; other tokens unchanged."""
    if len(token) < 2 or token[0] != '"' or token[-1] != '"':
        return token
    out, escaped = [], False
    for c in token[1:-1]:
        if escaped:
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == '"':
            return token  # "a"@"b" is two quoted strings, not one
        else:
            out.append(c)
    return "".join(out)


def loop_problems(aliases, local_domains=()):
    """Expand every alias; report each loop and each over-deep chain once.
    A key on a bad line is left out: it is deferred, it expands to nothing."""
    domains = {d.lower() for d in local_domains}

    def key_for(address):
        local, at, domain = address.rpartition("@")
        return aliases.key_for(address, local_part=not at or domain in domains)

    def lookup(address):
        return aliases._entries.get(key_for(address))

    problems, seen, too_deep = [], set(), set()
    for key in aliases:
        if key in too_deep:
            continue
        try:
            found = expand(key, lookup)
        except ConfigError as e:
            too_deep.update(e.chain)  # each alias on it would report the same chain again
            problems.append(Problem(aliases.path, aliases.line_of(key), str(e)))
            continue
        for chain in found.cycles:
            loop = chain[chain.index(chain[-1]) :]
            if len(loop) == 2:
                continue  # alice: alice, ... is the idiom for "keep a copy in my mailbox"
            start = loop.index(min(loop[:-1]))
            # The same loop, whichever of its aliases the walk entered it by.
            canonical = tuple(loop[start:-1] + loop[:start])
            if canonical in seen:
                continue
            seen.add(canonical)
            line = aliases.line_of(key_for(chain[-2]))  # the alias whose member closes it
            problems.append(
                Problem(
                    aliases.path,
                    line,
                    f"alias loop {' -> '.join(loop)}: {_show(loop[-1])} is delivered "
                    "as a mailbox, not expanded again",
                )
            )
    return problems


def _show(text, limit=64):
    """text in double quotes for a message: control characters visible, long text cut."""
    shown = "".join(_escape(c) for c in text[:limit])
    more = f"... ({len(text)} characters)" if len(text) > limit else ""
    return f'"{shown}"{more}'


def _escape(char):
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

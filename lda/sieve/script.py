"""A compiled Sieve script, compiling it, and the per-script cache.

load_script() is on the delivery path: when the script's (path, mtime_ns,
size, inode) match the cache file, the AST is read back from JSON with
lda/startup/json.py (no json, no re) and neither parser.py nor grammar.py
is imported.  A long-running process (the LMTP server) also keeps compiled
scripts in memory under the same key.

Some extensions are off until lda.toml's sieve_extensions_extra names them
(OPTIONAL; Pigeonhole leaves editheader out of its default set too).  The
AST, and so the cache, never depends on that setting: a script is compiled
as if every extension were on, and the Script's `requires` is checked
against the enabled set on every load.  Only a script that requires a
disabled extension is parsed again, to report it at its FILE:LINE:COL as an
unknown extension is; enabling or disabling one needs no cache flush.
"""

import os

from .errors import SieveError

SUFFIX = ".sieve"  # a stored script is NAME.sieve
# NAME.sieve and the temporary `lda sieve install` writes beside it,
# ".NAME.sieve.PID.XXXXXXXX.tmp" (a PID has at most 7 digits), both fit in a
# file name (NAME_MAX, 255 bytes).
MAX_NAME_BYTES = 255 - len("." + SUFFIX + ".4194304.12345678.tmp")
FORMAT = 2  # bump when the AST changes shape: older cache files are ignored
MAX_SCRIPT_BYTES = 1 << 20
MEMO_LIMIT = 256
# Extensions a script may require only when sieve_extensions_extra enables them.
OPTIONAL = frozenset({"editheader"})
_memo = {}  # in-process: text or file stamp -> Script


def bad_name(name, stored=False):
    """Why `name` cannot name a stored script (NAME.sieve: include's
    :personal and :global, `lda sieve install/activate`), or None.

    RFC 5804 section 1.6's rule, as Pigeonhole's file storage applies it,
    so that a name webmail gave ("my filter") is one lda takes: any UTF-8
    text but control characters (C0, DEL, C1, U+2028, U+2029) and "/".
    Unlike Pigeonhole, not a name starting with "." (".", "..", a hidden
    file: the names lda's temporary files take), unless `stored`: a script
    already there, which ManageSieve may have stored as ".x" and made the
    active one (a mailbox move carries it).  None longer than NAME.sieve
    and its temporary name fit in a file name."""
    if not name:
        return "an empty name"
    if any("\ud800" <= c <= "\udfff" for c in name):
        return "a name that is not UTF-8"  # undecodable bytes from a command line
    if "/" in name:
        return 'a name with "/" (a path)'
    if name.startswith(".") and not stored:
        return 'a name starting with "."'
    if any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c in "\u2028\u2029" for c in name):
        return "a control character in the name"
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"a name longer than {MAX_NAME_BYTES} bytes"
    return None


class Script:
    """A compiled script: its AST (plain lists and dicts) and the
    extensions it requires.  `cache_status` says where it came from:
    "compiled", "memory", "cache", "cache written" or "cache not written: ..."."""

    __slots__ = ("commands", "requires", "name", "cache_status")

    def __init__(self, commands, requires, name="<script>", cache_status="compiled"):
        self.commands = commands
        self.requires = frozenset(requires)
        self.name = name
        self.cache_status = cache_status

    def __repr__(self):
        return f"Script({self.name!r}, requires={sorted(self.requires)})"


def compile_script(source, name=None, extensions=()):
    """A Script from a path (an os.PathLike such as pathlib.Path) or from
    the script text itself (str, or UTF-8 bytes).  `extensions`: the
    OPTIONAL ones the site enables.  Raises SieveError."""
    if isinstance(source, os.PathLike):
        name = name or os.fspath(source)
        source = _read(os.fspath(source))
    text = _decode(source) if isinstance(source, bytes) else source
    memo = _memo.get(("text", text))
    if memo is None:
        from .parser import parse

        memo = parse(text)
        _remember(("text", text), memo)
    commands, requires = memo
    _check_enabled(requires, extensions, lambda: text)
    return Script(commands, requires, name or "<script>")


def load_script(path, cache_dir=None, extensions=()):
    """The compiled script at `path`, or None when there is no such file.

    With `cache_dir`, the AST is kept there as JSON keyed by (path,
    mtime_ns, size, inode), so an unchanged script is not parsed again.
    Raises SieveError for a script that does not compile or cannot be read,
    or that requires an OPTIONAL extension not in `extensions`; an
    unwritable cache only shows in `cache_status`."""
    path = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SieveError(0, 0, f"cannot read {path}: {e.strerror}") from None
    stamp = [path, st.st_mtime_ns, st.st_size, st.st_ino]

    def source():  # read again only to report a disabled extension
        return _decode(_read(path))

    memo = _memo.get(("file", *stamp))
    if memo is not None:
        _check_enabled(memo[1], extensions, source)
        return Script(*memo, name=path, cache_status="memory")
    cache_file = _cache_file(cache_dir, path) if cache_dir else None
    cached = _read_cache(cache_file, stamp) if cache_file else None
    if cached is not None:
        _remember(("file", *stamp), cached)
        _check_enabled(cached[1], extensions, source)
        return Script(*cached, name=path, cache_status="cache")
    script = compile_script(_read(path), name=path, extensions=OPTIONAL)
    _remember(("file", *stamp), (script.commands, sorted(script.requires)))
    if cache_file:
        script.cache_status = _write_cache(cache_dir, cache_file, stamp, script)
    _check_enabled(script.requires, extensions, source)
    return script


def _check_enabled(requires, extensions, source):
    """SieveError, at the require that names it, for an OPTIONAL extension
    the site has not enabled: the text (source()) is parsed again with it
    refused, which reports it as an unknown extension is reported."""
    wanted = OPTIONAL.intersection(requires)
    if wanted <= set(extensions):
        return
    from .parser import parse

    parse(source(), disabled=OPTIONAL - set(extensions))
    raise SieveError(1, 1, f'unsupported extension "{min(wanted - set(extensions))}"')


def _read(path):
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SCRIPT_BYTES + 1)
    except OSError as e:
        raise SieveError(0, 0, f"cannot read {path}: {e.strerror}") from None
    if len(data) > MAX_SCRIPT_BYTES:
        raise SieveError(1, 1, f"script larger than {MAX_SCRIPT_BYTES >> 20} MiB")
    return data


def _decode(data):
    """A script is UTF-8 (RFC 5228 section 2.2), but a comment may hold any
    octet (section 8.1's grammar), as Pigeonhole reads it: bytes that are
    not UTF-8 come through as surrogate escapes, and the parser refuses a
    string that holds one."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape")


def _remember(key, value):
    if len(_memo) >= MEMO_LIMIT:
        _memo.clear()
    _memo[key] = value


def _cache_file(cache_dir, path):
    import zlib

    base = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_"
                   for c in os.path.basename(path))[:64]
    digest = zlib.crc32(path.encode("utf-8", "surrogateescape"))
    return os.path.join(cache_dir, f"{base}-{digest:08x}.json")


def _read_cache(cache_file, stamp):
    from ..startup.json import loads

    try:
        with open(cache_file, encoding="utf-8") as f:
            data = loads(f.read())
        if data["format"] != FORMAT or data["source"] != stamp:
            return None
        return data["commands"], data["requires"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing, stale or damaged: compile again


def _write_cache(cache_dir, cache_file, stamp, script):
    """Write-then-rename, so a reader sees the old file or the whole new one."""
    from ..startup.json import dumps

    text = dumps({"format": FORMAT, "source": stamp, "requires": sorted(script.requires),
                  "commands": script.commands})
    tmp = f"{cache_file}.{os.getpid()}.tmp"
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(text.encode("utf-8"))
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, cache_file)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return f"cache not written: {e.strerror}"
    return "cache written"

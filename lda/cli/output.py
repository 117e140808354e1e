"""What the admin commands share: --json, --bytes and --dry-run/--now,
the table and record printers (dates as ISO 8601 UTC, sizes as 1.5M),
option values the library parses, and the progress bar."""

import json
import sys
import time

import click

from ..admin.databases import iso_utc, parse_moment
from ..deliver.envelope import MAX_ADDRESS
from ..errors import LdaError
from ..log import printable


def warn(text):
    """One line on stderr, led by "lda: " as every error lda prints; what
    is not printable in it (an argument's line break or escape sequence, a
    byte that was not UTF-8) escaped, so that it stays one line."""
    click.echo(f"lda: {printable(text)}", err=True)


def note(text):
    """A line on stderr as a compiler prints it (FILE:LINE:COL: message),
    escaped as warn() escapes."""
    click.echo(printable(text), err=True)


def output_options(fn):
    """--json for scripts; a table for people."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


def size_option(fn):
    """--bytes: exact byte counts in the text output, for a script that
    reads the table (JSON always has them)."""
    return click.option("--bytes", "in_bytes", is_flag=True,
                        help="Sizes in bytes, not as 1.5M or 2.0G.")(fn)


# Fields that hold a Unix time or a byte count, whichever command prints
# them: one rule for dates (ISO 8601 UTC, in text and JSON) and sizes.
DATE_FIELDS = frozenset({"created", "last_attempt", "started"})
SIZE_FIELDS = frozenset({"quota_storage", "disk_bytes", "storage_limit", "storage_used",
                         "storage"})


def human_size(n):
    """1536 -> "1.5K", 2**30 -> "1.0G" (binary units, as parse_size reads
    them); below 1024, the plain number."""
    if n < 1024:
        return str(n)
    for unit in "KMGTP":
        n /= 1024
        if n < 1024 or unit == "P":
            return f"{n:.1f}{unit}"


def shown(row, as_json, in_bytes=False):
    """row with dates as ISO 8601 and, in text without --bytes, sizes as
    1.5M; a float Unix time never reaches the reader."""
    out = {}
    for key, value in row.items():
        if key in DATE_FIELDS and isinstance(value, (int, float)):
            value = iso_utc(value)
        elif (key in SIZE_FIELDS and not (as_json or in_bytes) and isinstance(value, int)
              and not isinstance(value, bool)):
            value = human_size(value)
        out[key] = value
    return out


def dry_run_options(fn):
    """--dry-run, and --now to ask what a run would do at another moment
    (for the commands that work on age).  --now only with --dry-run: a real
    run writes its clock (the last cleanup, a DSN's date), and a wrong one
    would hold off the deliveries' own cleanups or misdate a bounce."""
    def check(ctx, param, value):
        """--now alone is a usage error (64), before any work."""
        if value is not None and not ctx.params.get("dry_run"):
            raise click.UsageError("--now needs --dry-run", ctx)
        return value

    fn = click.option("--now", type=Parsed("time", parse_moment), callback=check,
                      metavar="TIME", help="With --dry-run: as if it were TIME "
                      "(ISO 8601, UTC unless a zone is given, or Unix seconds).")(fn)
    return click.option("--dry-run", is_flag=True, is_eager=True,
                        help="Say what would be done; change nothing.")(fn)


def clock_at(now):
    """A clock stopped at now (Unix seconds), or the real one for None."""
    return time.time if now is None else (lambda: now)


def emit(rows, as_json, columns, in_bytes=False):
    """A table of columns for people, or every field as a JSON list."""
    rows = [shown(r, as_json, in_bytes) for r in rows]
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c) if r.get(c) is not None else "-"))
                               for r in rows)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        click.echo("  ".join(str(row.get(c) if row.get(c) is not None else "-")
                             .ljust(widths[c]) for c in columns))


def emit_record(row, as_json, in_bytes=False):
    """One object ("show", a summary): a JSON object, or key/value lines."""
    row = shown(row, as_json, in_bytes)
    if as_json:
        click.echo(json.dumps(row, indent=2, default=str))
        return
    width = max(map(len, row), default=0)
    for key, value in row.items():
        click.echo(f"{key.ljust(width)}  {'-' if value in (None, '') else value}")


DEFAULT = "default"


class Parsed(click.ParamType):
    """A value the library parses (a size, a duration, a count); its
    ConfigError becomes a usage error.  With keep_default, the word
    "default" passes through as DEFAULT (back to the lda.toml value)."""

    def __init__(self, name, parse, keep_default=False):
        self.name, self.parse, self.keep_default = name, parse, keep_default

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        if self.keep_default and value.strip().lower() == DEFAULT:
            return DEFAULT
        try:
            return self.parse(value, self.name)
        except LdaError as e:
            # click names the option itself: drop the library's "key: ".
            self.fail(str(e).removeprefix(f"{self.name}: "), param, ctx)


class Name(click.ParamType):
    """A name lda stores and looks up: a mailbox address, a database, a
    host, a partial delivery's [DB:]ID.  What no stored
    name can hold is refused here, one usage error (64) for every command,
    before a lookup hands it to SQLite (a byte that was not UTF-8 is a
    lone surrogate there: UnicodeEncodeError) or says "no mailbox" with a
    raw line break: text that is not printable (bytes that were not UTF-8,
    control characters, line breaks, bidi overrides) or longer than an
    address may be (MAX_ADDRESS).  What a kind of name allows beyond this
    (an address's syntax, a database's characters) the library checks."""

    def __init__(self, kind):
        self.name = kind

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        if not value.isprintable():
            self.fail(f"'{value[:100]}' is not {article(self.name)}: it holds "
                      f"{unprintable(value)}", param, ctx)
        if len(value) > MAX_ADDRESS:
            self.fail(f"'{value[:100]}...' is not {article(self.name)}: longer than "
                      f"{MAX_ADDRESS} characters", param, ctx)
        return value


class StoredPath(click.Path):
    """A path lda keeps in its directory (a database's), so one it can
    store and print: printable text, as Name's rule."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.isprintable():
            self.fail(f"'{value[:100]}' holds {unprintable(value)}; lda stores only a path "
                      "that is printable text", param, ctx)
        return super().convert(value, param, ctx)


def unprintable(value):
    """What keeps value from being printable text, in the reader's words."""
    if any("\udc80" <= c <= "\udcff" for c in value):  # surrogateescape's bytes
        return "a byte that is not UTF-8"
    return "a control character (a line break, an escape, a bidi override)"


def article(noun):
    return ("an " if noun[0] in "aeiou" else "a ") + noun


# A Sieve script's name has its own check, sieve.script.bad_name (64).
ADDRESS, DATABASE, HOST, RECORD = (Name(kind) for kind in (
    "address", "database name", "host name", "partial delivery id"))


class Progress:
    """A click progress bar per phase, shown only on a terminal."""

    def __init__(self, enabled=True):
        self.enabled = enabled and sys.stdout.isatty()
        self.bar = self.phase = None
        self.done = 0

    def update(self, phase, done, total):
        if not self.enabled:
            return
        if phase != self.phase:
            self.close()
            self.phase, self.done = phase, 0
            self.bar = click.progressbar(length=total, label=phase).__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

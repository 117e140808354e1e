"""The admin command line: a thin click skin over the library.

The only module that imports click.  `lda deliver` never comes here on the
per-message path (main.py dispatches it first); it is declared below so that
`lda --help` and the manual list it.
"""

import io
import json
import sys
import time
from collections import Counter

import click

from .admin.check import check as check_state
from .admin.configuration import as_toml
from .admin.configuration import check as check_configuration
from .admin.configuration import show as show_configuration
from .admin.databases import iso_utc, list_databases, parse_moment, show_database
from .admin.dedup import (LOOKUP_COLUMNS, cleanup, cleanup_preview, directory_for, forget,
                          lookup, stats)
from .admin.lifecycle import KEEP, PURGE, Deletion
from .admin.lifecycle import create as create_mailbox
from .admin.mailboxes import (AliasFileInvalid, compile_aliases, create_database,
                              get_mailbox, list_mailboxes, open_directory, read_directory)
from .admin.move import Move
from .admin.partial import bounce_partials, bounce_preview, list_partials, retry_partials
from .admin.quota import recalc, recalc_all, set_quota, show_user
from .admin.quota import show as show_quota
from .admin.sieve import ScriptInvalid
from .admin.sieve import activate as activate_script
from .admin.sieve import install as install_script
from .admin.sieve import list_scripts as list_sieve_scripts
from .admin.sieve import show as show_sieve_script
from .admin.state import failure
from .config import load_config, parse_duration, parse_size
from .deliver.command import deliver as deliver_message
from .errors import (EX_CONFIG, EX_DATAERR, EX_TEMPFAIL, EX_USAGE, LdaError, UsageError,
                     unexpected)
from .log import Log, printable
from .sieve.dryrun import check as check_script
from .sieve.dryrun import dry_run
from .sieve.procmail import convert as procmail_to_sieve
from .store.aliases import check_aliases


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


def parse_count(value, key="count"):
    if not (value.strip().isascii() and value.strip().isdigit()):
        raise UsageError(f"{key}: {value!r} is not a number of messages")
    return int(value)


class LdaGroup(click.Group):
    """Turns library errors into one line on stderr and their sysexits code,
    and anything unexpected into a logged traceback and 75 (EX_TEMPFAIL), so
    a timer or a script retries instead of reading Python's 1.  An SQLite
    or OS error that the library met past the point where it names the file
    (admin_sqlite) is still one line, with the same exit status rule."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LdaError as e:
            click.echo(f"lda: {e}", err=True)
            sys.exit(e.exit_code)
        except click.UsageError as e:
            # EX_USAGE, not click's 2 (no sysexits code), and one line.
            where = e.ctx.command_path if e.ctx else "lda"
            click.echo(f"lda: {e.format_message()} (try '{where} --help')", err=True)
            sys.exit(EX_USAGE)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:  # noqa: BLE001
            known = failure(e)
            if known is not None:
                click.echo(f"lda: {known}", err=True)
                sys.exit(known.exit_code)
            sys.exit(unexpected(e, None))


def load(ctx):
    return load_config(ctx.obj.get("config"))


@click.group(cls=LdaGroup)
@click.version_option(package_name="lda")
@click.option("-c", "--config", envvar="LDA_CONFIG", type=click.Path(dir_okay=False),
              help="Configuration file (default /etc/lda/lda.toml).")
@click.pass_context
def cli(ctx, config):
    """lda: a Maildir delivery agent that delivers each message exactly once."""
    ctx.obj = {"config": config}


@cli.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def deliver(ctx, args):
    """Deliver the message on stdin (see `lda deliver --help`).

    \b
    Example:
        lda deliver -f sender@example.org alice@example.org < message.eml
    """
    config = ctx.obj.get("config")  # `lda -c FILE deliver ...`
    sys.exit(deliver_message((["-c", config] if config else []) + list(args)))


@cli.command()
@click.option("-f", "sender", help="Envelope sender, as lda deliver -f.")
@click.option("-a", "original", help="Original recipient, as lda deliver -a.")
@click.argument("recipients", nargs=-1)
@output_options
@click.pass_context
def explain(ctx, sender, original, recipients, as_json):
    """Say what lda deliver would do with the message on stdin; write nothing.

    How each recipient resolves (aliases with file and line, :include:,
    forwards, Sieve rules), every target with its database, Maildir folder
    and quota, the DeliveredTo key and whether each target has it, pending
    partial deliveries, and the exit status and reply.  Without a message
    (stdin a terminal, or empty) only resolution and quota are shown.
    Exits 0 when explained, whatever the delivery would do.

    \b
    Example:
        lda explain -f bob@example.org team@example.org < message.eml
        lda explain --json alice@example.org < message.eml
    """
    from .deliver.envelope import check_sender
    from .deliver.explain import explain as explain_delivery
    from .deliver.explain import text_lines

    config = load(ctx)
    if sender is not None:
        try:
            sender = check_sender(sender)
        except LdaError as e:
            raise UsageError(f"-f: {e}") from None
    if not recipients and not config.per_user:
        raise click.UsageError("give at least one RECIPIENT", ctx)
    stdin = click.get_binary_stream("stdin")
    data = b"" if stdin.isatty() else stdin.read()
    report = explain_delivery(config, list(recipients), io.BytesIO(data) if data else None,
                              sender, original)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for line in text_lines(report):
        click.echo(line)


@cli.group()
def mailbox():
    """Mailboxes of the managed directory."""


@mailbox.command("create")
@click.argument("address")
@click.option("--db", "database", default="default", show_default=True,
              help="Mailbox database that holds it.")
@click.option("--quota-storage", type=Parsed("size", parse_size),
              help="Storage quota, e.g. 500M (default: lda.toml).")
@click.option("--quota-messages", type=Parsed("count", parse_count),
              help="Message-count quota.")
@click.option("--forward", multiple=True, help="Forward copies to this address.")
@click.option("--keep-copy/--no-keep-copy", default=True, show_default=True,
              help="With --forward, also deliver to the mailbox itself.")
@click.option("--adopt", is_flag=True,
              help="Take over what an earlier mailbox of the address left: its "
                   "Maildir, DeliveredTo rows and partial deliveries.")
@output_options
@size_option
@click.pass_context
def mailbox_create(ctx, address, database, quota_storage, quota_messages, forward,
                   keep_copy, adopt, as_json, in_bytes):
    """Create a mailbox and its Maildir.

    A Maildir with files of an earlier mailbox at the same place is refused
    (exit 73) unless --adopt says to take it over.

    \b
    Example:
        lda mailbox create alice@example.org --quota-storage 1G
    """
    config = load(ctx)
    row = create_mailbox(open_directory(config), config, address, database, quota_storage,
                         quota_messages, forward, keep_copy, adopt)
    emit([row], as_json, ["address", "database", "maildir", "quota_storage"], in_bytes)
    if not as_json and row["adopted"]:
        click.echo("adopted {messages} messages, {rows} DeliveredTo rows, {partials} "
                   "partial deliveries".format(**row["adopted"]))
    elif not as_json and row["cleared_rows"]:
        click.echo(f"cleared {row['cleared_rows']} DeliveredTo rows of an earlier mailbox")


@mailbox.command("list")
@click.option("--db", "database", help="Only this database.")
@output_options
@size_option
@click.pass_context
def mailbox_list(ctx, database, as_json, in_bytes):
    """List mailboxes.

    \b
    Example:
        lda mailbox list --json
    """
    rows = list_mailboxes(read_directory(load(ctx)), database)
    emit(rows, as_json, ["address", "database", "quota_storage", "quota_messages",
                         "forward"], in_bytes)


@mailbox.command("show")
@click.argument("address")
@output_options
@size_option
@click.pass_context
def mailbox_show(ctx, address, as_json, in_bytes):
    """Show one mailbox.

    \b
    Example:
        lda mailbox show alice@example.org
    """
    emit_record(get_mailbox(read_directory(load(ctx)), address), as_json, in_bytes)


@mailbox.command("delete")
@click.argument("address")
@click.option("--keep-maildir", is_flag=True,
              help="Rename the Maildir aside to MAILDIR.deleted-TIME (the default).")
@click.option("--purge", is_flag=True, help="Remove the Maildir and its mail.")
@output_options
@click.pass_context
def mailbox_delete(ctx, address, keep_maildir, purge, as_json):
    """Delete a mailbox: its Maildir kept aside (or purged), its DeliveredTo
    rows, Sieve state and partial deliveries gone with it.

    A later mailbox of the same address starts empty.  An interrupted
    delete is finished by running it again.

    \b
    Example:
        lda mailbox delete alice@example.org
        lda mailbox delete bob@example.org --purge --json
    """
    if keep_maildir and purge:
        raise click.UsageError("--purge and --keep-maildir exclude each other")
    mode = PURGE if purge else KEEP
    config = load(ctx)
    with Progress(enabled=not as_json) as progress:
        report = Deletion(config, open_directory(config), address, mode,
                          progress=progress.update).run()
    if as_json:
        return emit_record(report, True)
    where = (f"Maildir kept as {report['kept_as']}" if report["kept_as"] else
             "Maildir removed" if mode == PURGE else "empty Maildir removed")
    click.echo(f"deleted {report['address']}: {where} ({report['messages']} messages); "
               f"{report['rows']} DeliveredTo rows, {report['sieve_rows']} Sieve state "
               f"rows, {report['partials']} partial deliveries removed")


@mailbox.command("move")
@click.argument("address")
@click.option("--to", "target", help="Target mailbox database.")
@click.option("--rollback", is_flag=True, help="Undo an unfinished move instead.")
@output_options
@click.pass_context
def mailbox_move(ctx, address, target, rollback, as_json):
    """Move a mailbox and its DeliveredTo rows to another database.

    Deliveries to the mailbox are deferred (4.2.1) until the move is done.
    An interrupted move is resumed by running the same command again, or
    undone with --rollback until the directory entry has switched.

    \b
    Example:
        lda mailbox move alice@example.org --to db2
    """
    if bool(target) == rollback:
        raise click.UsageError("--to DATABASE and --rollback conflict: give one" if rollback
                               else "--to DATABASE (or --rollback) is required")
    with Progress(enabled=not as_json) as progress:
        report = Move(load(ctx), open_directory(load(ctx)), address,
                      progress=progress.update).run(target, rollback)
    click.echo(json.dumps(report, indent=2) if as_json else move_summary(report, rollback))


def move_summary(report, rollback):
    """One line that says what moved and, either way, where the mailbox
    is now: a rollback asked for after the switch finishes the move."""
    if report["result"] == "rolled back":
        return (f"{report['address']}: move to {report['target']} rolled back; "
                f"the mailbox is in {report['source']}: {report['maildir']}")
    late = (f" (the directory had switched to {report['target']}: finished, not rolled "
            "back)") if rollback else ""
    return (f"{report['address']}: moved {report['source']} -> {report['target']}{late} "
            f"({report['method'] or 'resumed'}; {report['messages']} messages, "
            f"{report['rows']} DeliveredTo rows, {report['sieve_rows']} Sieve state rows, "
            f"{report['partials']} partial records) in {report['seconds']}s; "
            f"the mailbox is in {report['target']}: {report['maildir']}")


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


@cli.command()
@click.option("--listen", help="unix:PATH or HOST:PORT (default: lmtp_listen).")
@click.option("--processes", type=click.IntRange(min=0),
              help="Server processes; 0: 4 per CPU (at most 32), or 1 per CPU with "
                   "--workers (default: lmtp_processes).")
@click.option("--workers", type=click.IntRange(min=0),
              help="Delivery threads in each process; 0: none, deliver in the "
                   "process's own thread (default: lmtp_workers).")
@click.option("--grace", default=300, show_default=True, type=click.IntRange(min=0),
              help="Seconds to finish deliveries after SIGTERM.")
@click.pass_context
def lmtp(ctx, listen, processes, workers, grace):
    """Serve LMTP (RFC 2033): one reply per recipient after DATA.

    \b
    Example:
        lda lmtp --listen unix:/var/spool/postfix/lda/lmtp
        lda lmtp --listen 127.0.0.1:24
    """
    # Lazy: asyncio and aiosmtpd would slow every admin command, and the
    # admin side never needs them.
    from .lmtp.server import run

    config = load(ctx)
    if processes is not None:
        config.lmtp_processes = processes
    if workers is not None:
        config.lmtp_workers = workers
    run(config, Log.configured(config), listen, grace)


@cli.command()
@click.option("--listen", metavar="unix:PATH|HOST:PORT",
              help="Where to listen (default: policy_listen).")
@click.pass_context
def policy(ctx, listen):
    """Serve Postfix's policy delegation: refuse at RCPT what lda would refuse.

    A recipient over quota (with the client's SIZE) gets quota_status_overquota,
    one larger than its whole quota quota_status_toolarge, an unknown one
    quota_status_nouser when policy_reject_unknown is set; anything else DUNNO.
    An unreadable directory answers DEFER_IF_PERMIT, never a rejection.

    In main.cf: smtpd_recipient_restrictions = reject_unauth_destination,
    check_policy_service unix:private/lda-policy (contrib/postfix/main.cf.services).

    \b
    Example:
        lda policy --listen unix:/var/spool/postfix/private/lda-policy
    """
    from .services.server import run

    config = load(ctx)
    run(config, Log.configured(config), listen or config.policy_listen, "policy")


@cli.command()
@click.option("--listen", metavar="unix:PATH|HOST:PORT",
              help="Where to listen (default: socketmap_listen).")
@click.pass_context
def socketmap(ctx, listen):
    """Serve the directory as Postfix socketmap tables.

    Maps: mailbox (every address lda delivers to), alias (one level of an
    alias or forward), domain, transport.  TEMP when the directory cannot
    be read, never NOTFOUND.

    In main.cf: virtual_mailbox_maps = socketmap:inet:127.0.0.1:8025:mailbox
    (contrib/postfix/main.cf.services).

    \b
    Example:
        lda socketmap --listen 127.0.0.1:8025
    """
    from .services.server import run

    config = load(ctx)
    run(config, Log.configured(config), listen or config.socketmap_listen, "socketmap")


@mailbox.command("set-quota")
@click.argument("address")
@click.option("--storage", type=Parsed("size", parse_size, keep_default=True),
              help="Bytes, e.g. 500M or 2G; 0 = unlimited; 'default' = lda.toml's.")
@click.option("--messages", type=Parsed("count", parse_count, keep_default=True),
              help="Messages; 0 = unlimited; 'default' = lda.toml's.")
@output_options
@size_option
@click.pass_context
def mailbox_set_quota(ctx, address, storage, messages, as_json, in_bytes):
    """Change a mailbox's quota; maildirsize gets the new limit at once.

    \b
    Example:
        lda mailbox set-quota alice@example.org --storage 2G --messages default
    """
    given = {"quota_storage": storage, "quota_messages": messages}
    limits = {k: None if v == DEFAULT else v for k, v in given.items() if v is not None}
    if not limits:
        raise click.UsageError("give --storage and/or --messages")
    config = load(ctx)
    emit_record(set_quota(open_directory(config), config, address, limits), as_json,
                in_bytes)


DB_COLUMNS = ["name", "path", "mailboxes", "deliveredto_rows", "pending_partial",
              "disk_bytes"]


@cli.group("db")
def database_group():
    """Mailbox databases: where Maildirs and DeliveredTo tables live."""


@database_group.command("list")
@output_options
@size_option
@click.pass_context
def db_list(ctx, as_json, in_bytes):
    """List mailbox databases: mailboxes, DeliveredTo rows, disk use.

    \b
    Example:
        lda db list --json
    """
    config = load(ctx)
    emit(list_databases(open_directory(config), config), as_json, DB_COLUMNS, in_bytes)


@database_group.command("create")
@click.argument("name")
@click.option("--path", type=click.Path(file_okay=False),
              help="Its directory (default: STATE_DIR/databases/NAME).")
@output_options
@size_option
@click.pass_context
def db_create(ctx, name, path, as_json, in_bytes):
    """Register a mailbox database and create its directory.

    \b
    Example:
        lda db create db2 --path /srv/mail2
    """
    config = load(ctx)
    directory = open_directory(config)
    create_database(directory, config, name, path)
    emit_record(show_database(directory, config, name), as_json, in_bytes)


@database_group.command("show")
@click.argument("name")
@output_options
@size_option
@click.pass_context
def db_show(ctx, name, as_json, in_bytes):
    """Show one mailbox database.

    \b
    Example:
        lda db show default
    """
    config = load(ctx)
    emit_record(show_database(open_directory(config), config, name), as_json, in_bytes)


@database_group.command("check")
@click.argument("name", required=False)
@output_options
@click.pass_context
def db_check(ctx, name, as_json):
    """Check the directory, databases and Maildirs; say how to repair each problem.

    Reads only.  Exits 0 when all is well, 78 when there are problems to
    repair, 77 when this user may not read a file, 75 when a file was only
    busy or unreadable for now.

    \b
    Example:
        lda db check
        lda db check default --json
    """
    with Progress(enabled=not as_json) as progress:
        summary = check_state(load(ctx), name, progress=lambda done, total: progress.update(
            "checking", done, total))
    if as_json:
        emit_record(summary, True)
    else:
        for problem in summary["problems"]:
            click.echo(f"{problem['file']}: {problem['problem']}; {problem['repair']}")
        click.echo(f"checked {summary['databases']} database(s), {summary['mailboxes']} "
                   f"mailbox(es): {len(summary['problems']) or 'no'} problem(s)")
    sys.exit(summary["exit_code"])


@cli.group("config")
def config_group():
    """The effective configuration, and a check of everything a delivery reads."""


@config_group.command("show")
@click.option("--changed", is_flag=True,
              help="Only the keys lda.toml sets to another value than the default.")
@output_options
@click.pass_context
def config_show(ctx, changed, as_json):
    """Print every key, its effective value and where it came from.

    The text is TOML, `key = value  # source`, that lda.toml takes back;
    the source is default, lda.toml, environment (HOME or XDG_STATE_HOME)
    or derived (uname, hostname, state_dir).  --changed prints only what
    lda.toml changes, as doveconf -n.

    \b
    Example:
        lda config show
        lda config show --changed
    """
    report = show_configuration(ctx.obj.get("config"), changed=changed)
    if as_json:
        return emit_record(report, True)
    for line in as_toml(report):
        click.echo(line)


@config_group.command("check")
@output_options
@click.pass_context
def config_check(ctx, as_json):
    """Check everything a delivery reads; one line per problem, with its repair.

    lda.toml, the aliases file and its compiled table, state_dir and its
    permissions and owners, the directory and each database, every
    mailbox's Maildir and Sieve scripts.  Reads only.  Exits 0 when all is
    well, 78 when there is something to repair, 77 when this user may not
    read a file, 75 when a file was only unreadable for now.

    \b
    Example:
        lda config check
        lda config check --json
    """
    with Progress(enabled=not as_json) as progress:
        summary = check_configuration(ctx.obj.get("config"), progress=progress.update)
    if as_json:
        emit_record(summary, True)
    else:
        for problem in summary["problems"]:  # a path may hold a line break: escaped
            click.echo(printable(f"{problem['file']}: {problem['problem']}; "
                                 f"{problem['repair']}"))
        click.echo(f"checked {printable(summary['config'] or 'per-user defaults')}, "
                   f"{summary['mailboxes']} mailbox(es), {summary['scripts']} Sieve "
                   f"script(s): {len(summary['problems']) or 'no'} problem(s)")
    sys.exit(summary["exit_code"])


@cli.group()
def dedup():
    """The DeliveredTo tables that stop a message arriving twice."""


@dedup.command("lookup")
@click.option("--message-id", required=True, help="With or without <>.")
@click.option("--mailbox", help="Only this mailbox (and its database).")
@output_options
@click.pass_context
def dedup_lookup(ctx, message_id, mailbox, as_json):
    """Find the DeliveredTo rows of a message: who has it, since when.

    \b
    Example:
        lda dedup lookup --message-id '<abc@example.org>' --mailbox alice@example.org
    """
    config = load(ctx)
    rows = lookup(directory_for(config), config, message_id, mailbox)
    emit(rows, as_json, [*LOOKUP_COLUMNS, "expired", "database"])


@dedup.command("forget")
@click.option("--message-id", required=True, help="With or without <>.")
@click.option("--mailbox", help="Only this mailbox's rows (default: every mailbox's).")
@output_options
@click.pass_context
def dedup_forget(ctx, message_id, mailbox, as_json):
    """Delete a message's DeliveredTo rows, so that a resend is delivered.

    \b
    Example:
        lda dedup forget --message-id '<abc@example.org>' --mailbox alice@example.org
    """
    config = load(ctx)
    rows = forget(directory_for(config), config, message_id, mailbox)
    if as_json:
        return click.echo(json.dumps({"deleted": len(rows), "rows": rows}, indent=2))
    for row in rows:
        click.echo(f"{row['mailbox']} ({row['database']}): {row['state']} "
                   f"{row['delivered_at']}")
    click.echo(f"forgot {len(rows)} DeliveredTo rows; the next delivery of "
               f"{message_id} to {'them' if rows else 'any mailbox'} is not a duplicate")


@dedup.command("cleanup")
@click.option("--db", "database", help="Only this database (default: all).")
@click.option("--older-than", type=Parsed("duration", parse_duration),
              help="e.g. 36h or 7d (default: expiration_hours).")
@dry_run_options
@output_options
@click.pass_context
def dedup_cleanup(ctx, database, older_than, dry_run, now, as_json):
    """Delete expired DeliveredTo rows now, in short transactions.

    \b
    Example:
        lda dedup cleanup --db default --older-than 7d
        lda dedup cleanup --dry-run --now 2026-12-24T00:00:00Z
    """
    config = load(ctx)
    if dry_run:
        preview = cleanup_preview(directory_for(config), config, database, older_than,
                                  clock=clock_at(now))
        if as_json:
            return emit_record(preview, True)
        return click.echo(f"would delete {preview['would_delete']} rows delivered before "
                          f"{preview['cutoff']} from {len(preview['databases'])} "
                          f"database(s) (at {preview['now']})")
    with Progress(enabled=not as_json) as progress:
        summary = cleanup(directory_for(config, write=True), config, database, older_than,
                          progress=lambda done, total: progress.update(
                              "deleting", done, total))
    if as_json:
        emit_record(summary, True)
    else:
        click.echo(f"deleted {summary['deleted']} rows from {summary['databases']} "
                   f"database(s) in {summary['seconds']}s ({summary['batches']} "
                   f"batches, longest {summary['longest_batch_ms']} ms)")


@dedup.command("stats")
@click.option("--db", "database", help="Only this database (default: all).")
@output_options
@click.pass_context
def dedup_stats(ctx, database, as_json):
    """Rows, pending and expired rows, age range and last cleanup.

    \b
    Example:
        lda dedup stats --db default
    """
    config = load(ctx)
    rows = stats(directory_for(config), config, database)
    if database:
        emit_record(rows[0], as_json)
    else:
        emit(rows, as_json, ["database", "rows", "pending", "expired", "oldest",
                             "newest", "last_cleanup"])


@cli.group()
def quota():
    """Quota limits and maildirsize usage."""


@quota.command("show")
@click.argument("address", required=False)
@output_options
@size_option
@click.pass_context
def quota_show(ctx, address, as_json, in_bytes):
    """A mailbox's limits (0 = unlimited), where they come from, and usage.

    In per-user mode, the invoking user's Maildir (ADDRESS is optional).

    \b
    Example:
        lda quota show alice@example.org
    """
    config = load(ctx)
    if config.per_user:
        return emit_record(show_user(config), as_json, in_bytes)
    if not address:
        raise click.UsageError("give the ADDRESS of a mailbox")
    emit_record(show_quota(read_directory(config), config, address), as_json, in_bytes)


@quota.command("recalc")
@click.argument("address", required=False)
@click.option("--all", "every", is_flag=True, help="Every mailbox.")
@output_options
@size_option
@click.pass_context
def quota_recalc(ctx, address, every, as_json, in_bytes):
    """Recount a Maildir (or all) and rewrite maildirsize.

    \b
    Example:
        lda quota recalc --all
    """
    if bool(address) == every:
        raise click.UsageError("give an ADDRESS or --all")
    config = load(ctx)
    if address:
        return emit_record(recalc(open_directory(config), config, address), as_json,
                           in_bytes)
    with Progress(enabled=not as_json) as progress:
        summary = recalc_all(open_directory(config), config, lambda done, total:
                             progress.update("recounting", done, total))
    for failed in summary["failed"]:
        click.echo(f"lda: {failed['address']}: {failed['error']}", err=True)
    if as_json:
        emit_record(summary, True)
    else:
        storage = (f"{summary['storage']} bytes" if in_bytes or summary["storage"] < 1024
                   else human_size(summary["storage"]))
        click.echo(f"recounted {summary['mailboxes']} mailboxes: {storage}, "
                   f"{summary['messages']} messages in {summary['seconds']}s"
                   + (f"; {len(summary['failed'])} failed" if summary["failed"] else ""))
    sys.exit(summary["failed"][0]["exit_code"] if summary["failed"] else 0)


@cli.group()
def partial():
    """Partial deliveries: forward targets that have not taken a message yet."""


PARTIAL_REPORT_COLUMNS = ["database", "id", "target", "outcome", "reason"]
PROGRESS_MIN_RECORDS = 5


def partial_summary(reports, as_json, bounce=False):
    """The per-record reports and a count line, led by what the command
    was for (a bounce: how many were bounced); exit 75 when a record needs
    the admin (spooled copy missing, unexpected error)."""
    emit(reports, as_json, PARTIAL_REPORT_COLUMNS)
    count = Counter(r["outcome"] for r in reports)
    if not as_json:
        done = count["delivered"] + count["duplicate"]
        extra = "".join(f", {count[o]} {o}" for o in ("lost-spool", "error") if count[o])
        if bounce:  # a record is deferred here only when its DSN was not sent
            click.echo(f"{count['bounced']} bounced, {count['deferred']} deferred{extra}")
        else:
            click.echo(f"{done} delivered"
                       + (f" ({count['duplicate']} already there)" if count["duplicate"]
                          else "")
                       + f", {count['deferred']} deferred, {count['bounced']} bounced{extra}")
    if count["lost-spool"] or count["error"]:
        sys.exit(EX_TEMPFAIL)


@partial.command("list")
@click.option("--db", "database", help="Only this database.")
@output_options
@click.pass_context
def partial_list(ctx, database, as_json):
    """List partial deliveries waiting for a retry.

    \b
    Example:
        lda partial list --db default --json
    """
    rows = list_partials(load(ctx), database)
    emit(rows, as_json, ["database", "id", "target", "recipient", "sender", "attempts",
                         "age_seconds", "reason"])


@partial.command("retry")
@click.option("--id", "ids", multiple=True, metavar="[DB:]ID",
              help="Only this record (repeatable); default: all.")
@output_options
@click.pass_context
def partial_retry(ctx, ids, as_json):
    """Redeliver partial deliveries; bounce those older than partial_expiration.

    A target that has the message already counts as done (DeliveredTo
    decides), so a retry never makes a second copy.  Exits 0 when records
    are merely deferred.

    \b
    Example:
        lda partial retry
        lda partial retry --id 3 --id db2:7 --json
    """
    config = load(ctx)
    with Progress(enabled=not as_json) as bar:
        # Behind a progress bar, the log lines wait until it is done.
        held = io.StringIO() if bar.enabled and Log.configured(config).to_stderr else None

        def progress(done, total):
            if total > PROGRESS_MIN_RECORDS:
                bar.update("retrying", done, total)

        reports = retry_partials(config, Log.configured(config, held),
                                 ids=ids or None, progress=progress)
    if held is not None:
        click.echo(held.getvalue(), err=True, nl=False)
    partial_summary(reports, as_json)


@partial.command("bounce")
@click.option("--id", "ids", multiple=True, metavar="[DB:]ID",
              help="This record (repeatable).")
@click.option("--older-than", type=Parsed("duration", parse_duration),
              help="Records older than this, e.g. 5d or 36h.")
@click.option("--all", "everything", is_flag=True, help="Every record.")
@dry_run_options
@output_options
@click.pass_context
def partial_bounce(ctx, ids, older_than, everything, dry_run, now, as_json):
    """Give up on partial deliveries: DSN to the sender, record removed.

    No DSN goes to the null sender (a bounce is never bounced).

    \b
    Example:
        lda partial bounce --older-than 5d
        lda partial bounce --id 3
        lda partial bounce --older-than 5d --dry-run --now 2026-12-24
    """
    if not (ids or older_than or everything):
        raise click.UsageError("give --id, --older-than or --all")
    if everything and (ids or older_than):
        raise click.UsageError("--all conflicts with --id and --older-than")
    config = load(ctx)
    if dry_run:
        reports = bounce_preview(config, clock_at(now), ids=ids or None,
                                 older_than=older_than)
        emit(reports, as_json, [*PARTIAL_REPORT_COLUMNS, "age_seconds"])
        return None if as_json else click.echo(f"would bounce {len(reports)}")
    reports = bounce_partials(config, Log.configured(config),
                              ids=ids or None, older_than=older_than)
    partial_summary(reports, as_json, bounce=True)


@cli.group()
def aliases():
    """The aliases file."""


def aliases_path(config, path):
    """The file given on the command line, else the configured one."""
    if not (path or config.aliases):
        raise click.UsageError("no aliases file given or configured")
    return path or config.aliases


@aliases.command("compile")
@click.argument("path", required=False)
@output_options
@click.pass_context
def aliases_compile(ctx, path, as_json):
    """Check the aliases file, then write the table deliveries look up.

    The table is state_dir/aliases.sqlite; while the file or one it
    includes is newer, deliveries read the file instead and log a warning.
    As newaliases(1), a bad line is skipped with a warning and the rest is
    compiled (exit 0); mail to an alias defined on a bad line is deferred.
    An alias loop writes no table (exit 78).

    \b
    Example:
        lda aliases compile /etc/lda/aliases
    """
    config = load(ctx)
    path = aliases_path(config, path)
    try:
        summary = compile_aliases(config, path)
    except AliasFileInvalid as e:
        problems = [p._asdict() for p in e.problems]
        if as_json:
            click.echo(json.dumps({"source": path, "problems": problems}, indent=2))
        for problem in e.problems:
            click.echo(f"lda: {problem}", err=True)
        raise
    for problem in summary["problems"]:
        click.echo(f"lda: warning: {problem['path']}:{problem['line']}: "
                   f"{problem['message']}; line skipped", err=True)
    if as_json:
        return emit_record(summary, True)
    skipped = len(summary["problems"])
    click.echo(f"compiled {summary['entries']} aliases from {summary['source']} "
               f"into {summary['index']}"
               + (f"; {skipped} bad lines skipped, {summary['deferred']} aliases deferred"
                  if skipped else ""))


@aliases.command("check")
@click.argument("path", required=False)
@output_options
@click.pass_context
def aliases_check(ctx, path, as_json):
    """Check the aliases file: syntax, addresses, cycles, with line numbers.

    Exits 78 if anything is wrong, every bad line listed: run it before
    deploying a file (compile and deliveries skip bad lines).

    \b
    Example:
        lda aliases check /etc/lda/aliases
    """
    path = aliases_path(load(ctx), path)
    problems = [p._asdict() for p in check_aliases(path)]
    emit(problems, as_json, ["path", "line", "message"])
    sys.exit(EX_CONFIG if problems else 0)


@cli.group()
def sieve():
    """Sieve filters (RFC 5228): check, try; install and activate a mailbox's."""


@sieve.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def sieve_check(ctx, path):
    """Compile a script; print FILE:LINE:COL: message per error (exit 65).

    \b
    Example:
        lda sieve check ~/.dovecot.sieve
    """
    errors = check_script(path, load(ctx).sieve_extensions_extra)
    for line in errors:
        click.echo(line, err=True)
    sys.exit(EX_DATAERR if errors else 0)


@sieve.command("test")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("-f", "sender", help="Envelope sender (default: Return-Path, else From).")
@click.option("-r", "recipient", help="Envelope recipient (default: Delivered-To, else To).")
@click.option("-a", "original", help="Original recipient (default: none).")
@output_options
@click.pass_context
def sieve_test(ctx, path, sender, recipient, original, as_json):
    """Dry run: print the actions the script takes on the message on stdin.

    Nothing is delivered, sent or recorded; :user and :detail split at the
    configuration's recipient_delimiter, as a delivery would.  include
    :personal reads sieve_dir in per-user mode, else the script's own
    directory (sieve/ beside an lda.sieve).

    \b
    Example:
        lda sieve test ~/.dovecot.sieve -f bob@example.org < message.eml
        lda sieve test ~/.dovecot.sieve --json < message.eml
    """
    config = load(ctx)
    actions, notes, status = dry_run(path, click.get_binary_stream("stdin"), sender,
                                     recipient, config.recipient_delimiter,
                                     config.sieve_options(),
                                     config.sieve_dir if config.per_user else None,
                                     original, as_json)
    for line in notes:
        click.echo(line, err=True)
    for line in actions:
        click.echo(line)
    sys.exit(status)


def sieve_admin(call, as_json):
    """Run an admin/sieve.py call; a script that does not compile is its
    errors, one per line on stderr (and under "errors" with --json), and
    exit 65, as `lda sieve check` reports them."""
    try:
        return call()
    except ScriptInvalid as e:
        if as_json:
            click.echo(json.dumps({"error": str(e), "errors": e.lines}, indent=2))
        for line in e.lines:
            click.echo(line, err=True)
        raise


@sieve.command("install")
@click.argument("address")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", help="Store it under this name (default: the file's, less .sieve).")
@click.option("--activate/--no-activate", default=True, show_default=True,
              help="Make it the mailbox's active script.")
@output_options
@click.pass_context
def sieve_install(ctx, address, path, name, activate, as_json):
    """Install a managed mailbox's Sieve script, checked first.

    A script that does not compile changes nothing (exit 65).  Written
    atomically into the mailbox (sieve/NAME.sieve, and lda.sieve when
    active); a symlink there is replaced, never written through.

    \b
    Example:
        lda sieve install alice@example.org vacation.sieve
        lda sieve install alice@example.org spam.sieve --name spam --no-activate
    """
    config = load(ctx)
    db = open_directory(config)
    emit_record(sieve_admin(
        lambda: install_script(db, address, path, name, activate,
                               config.sieve_extensions_extra), as_json), as_json)


@sieve.command("list")
@click.argument("address", required=False)
@output_options
@click.pass_context
def sieve_list(ctx, address, as_json):
    """List the Sieve scripts of a managed mailbox, or of every mailbox.

    A name "-" is an active lda.sieve that none of the stored scripts
    matches (one written by hand).

    \b
    Example:
        lda sieve list alice@example.org
    """
    rows = list_sieve_scripts(open_directory(load(ctx)), address)
    emit(rows, as_json, ["address", "name", "active", "size"])


@sieve.command("activate")
@click.argument("address")
@click.argument("name")
@output_options
@click.pass_context
def sieve_activate(ctx, address, name, as_json):
    """Make a stored script the mailbox's active one (checked first).

    \b
    Example:
        lda sieve activate alice@example.org vacation
    """
    config = load(ctx)
    db = open_directory(config)
    emit_record(sieve_admin(lambda: activate_script(db, address, name,
                                                    config.sieve_extensions_extra),
                            as_json), as_json)


@sieve.command("show")
@click.argument("address")
@output_options
@click.pass_context
def sieve_show(ctx, address, as_json):
    """Print a managed mailbox's active Sieve script.

    \b
    Example:
        lda sieve show alice@example.org
    """
    shown = show_sieve_script(open_directory(load(ctx)), address)
    if as_json:
        return emit_record(shown, True)
    if shown["script"] is None:
        click.echo(f"lda: {shown['address']} has no Sieve script of its own", err=True)
        return
    click.echo(shown["script"], nl=False)


@cli.command("procmail-convert")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def procmail_convert(ctx, path):
    """Print a .procmailrc's recipes as a Sieve script.

    Recipes with no Sieve equivalent (pipes, body conditions, complex
    regular expressions) are left in the script as comments; those that
    Sieve does differently (an mbox becomes a Maildir++ folder, a MAILDIR
    outside ~/Maildir) carry a comment.  Each is one stderr line with its
    line number; the exit status is 0 only when nothing was.

    \b
    Example:
        lda procmail-convert ~/.procmailrc > ~/.lda.sieve
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    config = load(ctx)  # per-user mode's maildir is where the script delivers
    script, problems = procmail_to_sieve(text, path,
                                         maildir=config.maildir if config.per_user else None)
    click.echo(script, nl=False)
    for line, kind, reason in sorted(problems, key=lambda problem: problem.line):
        click.echo(f"{path}:{line}: {kind}: {reason}", err=True)
    sys.exit(EX_DATAERR if problems else 0)

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
from .admin.databases import list_databases, parse_moment, show_database
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
from .admin.state import failure
from .config import load_config, parse_duration, parse_size
from .deliver.command import deliver as deliver_message
from .errors import (EX_CONFIG, EX_DATAERR, EX_TEMPFAIL, EX_USAGE, LdaError, UsageError,
                     unexpected)
from .log import Log
from .sieve.dryrun import check as check_script
from .sieve.dryrun import dry_run
from .sieve.procmail import convert as procmail_to_sieve
from .store.aliases import check_aliases


def output_options(fn):
    """--json for scripts; a table for people."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


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


def emit(rows, as_json, columns):
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


def emit_record(row, as_json):
    """One object ("show", a summary): a JSON object, or key/value lines."""
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


@cli.group()
def mailbox():
    """Mailboxes of the managed directory."""


@mailbox.command("create")
@click.argument("address")
@click.option("--db", "database", default="default", show_default=True,
              help="Mailbox database that holds it.")
@click.option("--quota-storage", help="Storage quota, e.g. 500M (default: lda.toml).")
@click.option("--quota-messages", type=int, help="Message-count quota.")
@click.option("--forward", multiple=True, help="Forward copies to this address.")
@click.option("--keep-copy/--no-keep-copy", default=True, show_default=True,
              help="With --forward, also deliver to the mailbox itself.")
@click.option("--adopt", is_flag=True,
              help="Take over what an earlier mailbox of the address left: its "
                   "Maildir, DeliveredTo rows and partial deliveries.")
@output_options
@click.pass_context
def mailbox_create(ctx, address, database, quota_storage, quota_messages, forward,
                   keep_copy, adopt, as_json):
    """Create a mailbox and its Maildir.

    A Maildir with files of an earlier mailbox at the same place is refused
    (exit 73) unless --adopt says to take it over.

    \b
    Example:
        lda mailbox create alice@example.org --quota-storage 1G
    """
    config = load(ctx)
    storage = parse_size(quota_storage, "--quota-storage") if quota_storage else None
    row = create_mailbox(open_directory(config), config, address, database, storage,
                         quota_messages, forward, keep_copy, adopt)
    emit([row], as_json, ["address", "database", "maildir", "quota_storage"])
    if not as_json and row["adopted"]:
        click.echo("adopted {messages} messages, {rows} DeliveredTo rows, {partials} "
                   "partial deliveries".format(**row["adopted"]))
    elif not as_json and row["cleared_rows"]:
        click.echo(f"cleared {row['cleared_rows']} DeliveredTo rows of an earlier mailbox")


@mailbox.command("list")
@click.option("--db", "database", help="Only this database.")
@output_options
@click.pass_context
def mailbox_list(ctx, database, as_json):
    """List mailboxes.

    \b
    Example:
        lda mailbox list --json
    """
    rows = list_mailboxes(read_directory(load(ctx)), database)
    emit(rows, as_json, ["address", "database", "quota_storage", "quota_messages",
                         "forward"])


@mailbox.command("show")
@click.argument("address")
@output_options
@click.pass_context
def mailbox_show(ctx, address, as_json):
    """Show one mailbox.

    \b
    Example:
        lda mailbox show alice@example.org
    """
    emit_record(get_mailbox(read_directory(load(ctx)), address), as_json)


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
    if not target and not rollback:
        raise click.UsageError("--to DATABASE (or --rollback) is required")
    with Progress(enabled=not as_json) as progress:
        report = Move(load(ctx), open_directory(load(ctx)), address,
                      progress=progress.update).run(target, rollback)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(f"{report['address']}: {report['result']} {report['source']} -> "
                   f"{report['target']} ({report['method'] or 'resumed'}; "
                   f"{report['messages']} messages, {report['rows']} DeliveredTo rows, "
                   f"{report['sieve_rows']} Sieve state rows, "
                   f"{report['partials']} partial records) in {report['seconds']}s")


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
        lda lmtp --listen unix:/var/spool/postfix/private/lda
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


@mailbox.command("set-quota")
@click.argument("address")
@click.option("--storage", type=Parsed("size", parse_size, keep_default=True),
              help="Bytes, e.g. 500M or 2G; 0 = unlimited; 'default' = lda.toml's.")
@click.option("--messages", type=Parsed("count", parse_count, keep_default=True),
              help="Messages; 0 = unlimited; 'default' = lda.toml's.")
@output_options
@click.pass_context
def mailbox_set_quota(ctx, address, storage, messages, as_json):
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
    emit_record(set_quota(open_directory(config), config, address, limits), as_json)


DB_COLUMNS = ["name", "path", "mailboxes", "deliveredto_rows", "pending_partial",
              "disk_bytes"]


@cli.group("db")
def database_group():
    """Mailbox databases: where Maildirs and DeliveredTo tables live."""


@database_group.command("list")
@output_options
@click.pass_context
def db_list(ctx, as_json):
    """List mailbox databases: mailboxes, DeliveredTo rows, disk use.

    \b
    Example:
        lda db list --json
    """
    config = load(ctx)
    emit(list_databases(open_directory(config), config), as_json, DB_COLUMNS)


@database_group.command("create")
@click.argument("name")
@click.option("--path", type=click.Path(file_okay=False),
              help="Its directory (default: STATE_DIR/databases/NAME).")
@output_options
@click.pass_context
def db_create(ctx, name, path, as_json):
    """Register a mailbox database and create its directory.

    \b
    Example:
        lda db create db2 --path /srv/mail2
    """
    config = load(ctx)
    directory = open_directory(config)
    create_database(directory, config, name, path)
    emit_record(show_database(directory, config, name), as_json)


@database_group.command("show")
@click.argument("name")
@output_options
@click.pass_context
def db_show(ctx, name, as_json):
    """Show one mailbox database.

    \b
    Example:
        lda db show default
    """
    config = load(ctx)
    emit_record(show_database(open_directory(config), config, name), as_json)


@database_group.command("check")
@click.argument("name", required=False)
@output_options
@click.pass_context
def db_check(ctx, name, as_json):
    """Check the directory, databases and Maildirs; say how to repair each problem.

    Reads only.  Exits 0 when all is well, 78 when there are problems to
    repair, 75 when a file was only busy or unreadable for now.

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
@click.pass_context
def quota_show(ctx, address, as_json):
    """A mailbox's limits (0 = unlimited), where they come from, and usage.

    In per-user mode, the invoking user's Maildir (ADDRESS is optional).

    \b
    Example:
        lda quota show alice@example.org
    """
    config = load(ctx)
    if config.per_user:
        return emit_record(show_user(config), as_json)
    if not address:
        raise click.UsageError("give the ADDRESS of a mailbox")
    emit_record(show_quota(read_directory(config), config, address), as_json)


@quota.command("recalc")
@click.argument("address", required=False)
@click.option("--all", "every", is_flag=True, help="Every mailbox.")
@output_options
@click.pass_context
def quota_recalc(ctx, address, every, as_json):
    """Recount a Maildir (or all) and rewrite maildirsize.

    \b
    Example:
        lda quota recalc --all
    """
    if bool(address) == every:
        raise click.UsageError("give an ADDRESS or --all")
    config = load(ctx)
    if address:
        return emit_record(recalc(open_directory(config), config, address), as_json)
    with Progress(enabled=not as_json) as progress:
        summary = recalc_all(open_directory(config), config, lambda done, total:
                             progress.update("recounting", done, total))
    for failed in summary["failed"]:
        click.echo(f"lda: {failed['address']}: {failed['error']}", err=True)
    if as_json:
        emit_record(summary, True)
    else:
        click.echo(f"recounted {summary['mailboxes']} mailboxes: {summary['storage']} "
                   f"bytes, {summary['messages']} messages in {summary['seconds']}s"
                   + (f"; {len(summary['failed'])} failed" if summary["failed"] else ""))
    sys.exit(summary["failed"][0]["exit_code"] if summary["failed"] else 0)


@cli.group()
def partial():
    """Partial deliveries: forward targets that have not taken a message yet."""


PARTIAL_REPORT_COLUMNS = ["database", "id", "target", "outcome", "reason"]
PROGRESS_MIN_RECORDS = 5


def partial_summary(reports, as_json):
    """The per-record reports and a count line; exit 75 when a record needs
    the admin (spooled copy missing, unexpected error)."""
    emit(reports, as_json, PARTIAL_REPORT_COLUMNS)
    count = Counter(r["outcome"] for r in reports)
    if not as_json:
        done = count["delivered"] + count["duplicate"]
        extra = "".join(f", {count[o]} {o}" for o in ("lost-spool", "error") if count[o])
        click.echo(f"{done} delivered"
                   + (f" ({count['duplicate']} already there)" if count["duplicate"] else "")
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
    config = load(ctx)
    if dry_run:
        reports = bounce_preview(config, clock_at(now), ids=ids or None,
                                 older_than=older_than)
        emit(reports, as_json, [*PARTIAL_REPORT_COLUMNS, "age_seconds"])
        return None if as_json else click.echo(f"would bounce {len(reports)}")
    reports = bounce_partials(config, Log.configured(config),
                              ids=ids or None, older_than=older_than)
    partial_summary(reports, as_json)


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
    if as_json:
        return emit_record(summary, True)
    click.echo(f"compiled {summary['entries']} aliases from {summary['source']} "
               f"into {summary['index']}")


@aliases.command("check")
@click.argument("path", required=False)
@output_options
@click.pass_context
def aliases_check(ctx, path, as_json):
    """Check the aliases file: syntax, addresses, cycles, with line numbers.

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
    """Sieve filters (RFC 5228): check a script, or try it on a message."""


@sieve.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def sieve_check(path):
    """Compile a script; print FILE:LINE:COL: message per error (exit 65).

    \b
    Example:
        lda sieve check ~/.dovecot.sieve
    """
    errors = check_script(path)
    for line in errors:
        click.echo(line, err=True)
    sys.exit(EX_DATAERR if errors else 0)


@sieve.command("test")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("-f", "sender", help="Envelope sender (default: Return-Path, else From).")
@click.option("-r", "recipient", help="Envelope recipient (default: Delivered-To, else To).")
@click.pass_context
def sieve_test(ctx, path, sender, recipient):
    """Dry run: print the actions the script takes on the message on stdin.

    Nothing is delivered, sent or recorded; :user and :detail split at the
    configuration's recipient_delimiter, as a delivery would.

    \b
    Example:
        lda sieve test ~/.dovecot.sieve -f bob@example.org < message.eml
    """
    actions, notes, status = dry_run(path, click.get_binary_stream("stdin"), sender,
                                     recipient, load(ctx).recipient_delimiter)
    for line in notes:
        click.echo(line, err=True)
    for line in actions:
        click.echo(line)
    sys.exit(status)


@cli.command("procmail-convert")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def procmail_convert(path):
    """Print a .procmailrc's recipes as a Sieve script.

    Recipes with no Sieve equivalent (pipes, body conditions, complex
    regular expressions) are listed on stderr with their line numbers and
    left in the script as comments.

    \b
    Example:
        lda procmail-convert ~/.procmailrc > ~/.dovecot.sieve
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        script, problems = procmail_to_sieve(f.read(), path)
    click.echo(script, nl=False)
    for line, reason in problems:
        click.echo(f"{path}:{line}: not translated: {reason}", err=True)

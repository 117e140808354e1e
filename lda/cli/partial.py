"""`lda partial`: list, retry and bounce partial deliveries."""

import io
import sys
from collections import Counter

import click

from ..admin.partial import bounce_partials, bounce_preview, list_partials, retry_partials
from ..config import parse_duration
from ..errors import EX_TEMPFAIL
from ..log import Log
from .output import (DATABASE, RECORD, Parsed, Progress, clock_at, dry_run_options, emit,
                     output_options)
from .root import cli, load


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
@click.option("--db", "database", type=DATABASE, help="Only this database.")
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
@click.option("--id", "ids", type=RECORD, multiple=True, metavar="[DB:]ID",
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
@click.option("--id", "ids", type=RECORD, multiple=True, metavar="[DB:]ID",
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

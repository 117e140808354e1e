"""`lda dedup`: the DeliveredTo tables (lookup, forget, cleanup, stats)."""

import json

import click

from ..admin.dedup import (LOOKUP_COLUMNS, cleanup, cleanup_preview, directory_for, forget, lookup,
                           stats)
from ..config import parse_duration
from ..log import printable
from .output import (ADDRESS, DATABASE, Parsed, Progress, clock_at, dry_run_options, emit,
                     emit_record, output_options, warn)
from .root import cli, load


@cli.group()
def dedup():
    """The DeliveredTo tables that stop a message arriving twice."""


@dedup.command("lookup")
@click.option("--message-id", required=True, help="With or without <>.")
@click.option("--mailbox", type=ADDRESS, help="Only this mailbox (and its database).")
@output_options
@click.pass_context
def dedup_lookup(ctx, message_id, mailbox, as_json):
    """Find the DeliveredTo rows of a message: who has it, since when.

    \b
    Example:
        lda dedup lookup --message-id '<abc@example.org>' --mailbox alice@example.org
    """
    config = load(ctx)
    rows = lookup(directory_for(config, warn=warn), config, message_id, mailbox)
    emit(rows, as_json, [*LOOKUP_COLUMNS, "expired", "database"])


@dedup.command("forget")
@click.option("--message-id", required=True, help="With or without <>.")
@click.option("--mailbox", type=ADDRESS,
              help="Only this mailbox's rows (default: every mailbox's).")
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
               f"{printable(message_id)} to {'them' if rows else 'any mailbox'} is not a "
               "duplicate")


@dedup.command("cleanup")
@click.option("--db", "database", type=DATABASE, help="Only this database (default: all).")
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
@click.option("--db", "database", type=DATABASE, help="Only this database (default: all).")
@output_options
@click.pass_context
def dedup_stats(ctx, database, as_json):
    """Rows, pending and expired rows, age range and last cleanup.

    \b
    Example:
        lda dedup stats --db default
    """
    config = load(ctx)
    rows = stats(directory_for(config, warn=warn), config, database)
    if database:
        emit_record(rows[0], as_json)
    else:
        emit(rows, as_json, ["database", "rows", "pending", "expired", "oldest",
                             "newest", "last_cleanup"])

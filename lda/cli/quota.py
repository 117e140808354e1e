"""`lda quota`: show limits and usage, recount maildirsize."""

import sys

import click

from ..admin.mailboxes import open_directory, read_directory
from ..admin.quota import recalc, recalc_all, show_user
from ..admin.quota import show as show_quota
from .output import (ADDRESS, Progress, emit_record, human_size, output_options, size_option,
                     warn)
from .root import cli, load


@cli.group()
def quota():
    """Quota limits and maildirsize usage."""


@quota.command("show")
@click.argument("address", type=ADDRESS, required=False)
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
    emit_record(show_quota(read_directory(config, warn), config, address), as_json, in_bytes)


@quota.command("recalc")
@click.argument("address", type=ADDRESS, required=False)
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
        warn(f"{failed['address']}: {failed['error']}")
    if as_json:
        emit_record(summary, True)
    else:
        storage = (f"{summary['storage']} bytes" if in_bytes or summary["storage"] < 1024
                   else human_size(summary["storage"]))
        click.echo(f"recounted {summary['mailboxes']} mailboxes: {storage}, "
                   f"{summary['messages']} messages in {summary['seconds']}s"
                   + (f"; {len(summary['failed'])} failed" if summary["failed"] else ""))
    sys.exit(summary["failed"][0]["exit_code"] if summary["failed"] else 0)

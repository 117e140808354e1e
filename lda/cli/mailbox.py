"""`lda mailbox`: create, list, show, delete, move, receive and set-quota."""

import json

import click

from ..admin.lifecycle import KEEP, PURGE, Deletion
from ..admin.lifecycle import create as create_mailbox
from ..admin.mailboxes import (ManagedModeOnly, get_mailbox, list_mailboxes, open_directory,
                               read_directory)
from ..admin.hostmove import HostMove, Receiver, is_host_move
from ..admin.move import Move
from ..admin.quota import set_quota
from ..config import parse_count, parse_size
from ..errors import UnknownName
from .output import (ADDRESS, DATABASE, DEFAULT, Parsed, Progress, emit, emit_record,
                     output_options, size_option, warn)
from .root import cli, load


@cli.group()
def mailbox():
    """Mailboxes of the managed directory."""


@mailbox.command("create")
@click.argument("address", type=ADDRESS)
@click.option("--db", "database", type=DATABASE, default="default", show_default=True,
              help="Mailbox database that holds it.")
@click.option("--quota-storage", type=Parsed("size", parse_size),
              help="Storage quota, e.g. 500M (default: lda.toml).")
@click.option("--quota-messages", type=Parsed("count", parse_count),
              help="Message-count quota.")
@click.option("--forward", type=ADDRESS, multiple=True, help="Forward copies to this address.")
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
@click.option("--db", "database", type=DATABASE, help="Only this database.")
@output_options
@size_option
@click.pass_context
def mailbox_list(ctx, database, as_json, in_bytes):
    """List mailboxes.

    \b
    Example:
        lda mailbox list --json
    """
    rows = list_mailboxes(read_directory(load(ctx), warn), database)
    emit(rows, as_json, ["address", "database", "quota_storage", "quota_messages",
                         "forward"], in_bytes)


@mailbox.command("show")
@click.argument("address", type=ADDRESS)
@output_options
@size_option
@click.pass_context
def mailbox_show(ctx, address, as_json, in_bytes):
    """Show one mailbox.

    \b
    Example:
        lda mailbox show alice@example.org
    """
    emit_record(get_mailbox(read_directory(load(ctx), warn), address), as_json, in_bytes)


@mailbox.command("delete")
@click.argument("address", type=ADDRESS)
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
@click.argument("address", type=ADDRESS)
@click.option("--to", "target", type=DATABASE,
              help="Target mailbox database (on this host or another).")
@click.option("--resume", is_flag=True, help="Go on with the unfinished move, wherever it goes.")
@click.option("--rollback", is_flag=True, help="Undo an unfinished move instead.")
@output_options
@click.pass_context
def mailbox_move(ctx, address, target, resume, rollback, as_json):
    """Move a mailbox and its DeliveredTo rows to another database.

    Deliveries to the mailbox are deferred (4.2.1) until the move is done.
    An interrupted move is resumed by running the same command again (or
    with --resume), or undone with --rollback until the directory entry has
    switched.  A database on another host of a shared directory is reached
    through move_command (lda.toml), where `lda mailbox receive` takes it.

    \b
    Example:
        lda mailbox move alice@example.org --to db2
        lda mailbox move alice@example.org --resume
    """
    if rollback and (target or resume) or not (target or resume or rollback):
        raise click.UsageError("give --to DATABASE (and/or --resume), or --rollback alone")
    config = load(ctx)
    directory = open_directory(config)
    if resume and not directory["moves"].count_where("address = ?", [address.lower()]):
        raise UnknownName(f"no unfinished move of {address} to resume")
    kind = HostMove if is_host_move(config, directory, address, target) else Move
    with Progress(enabled=not as_json) as progress:
        report = kind(config, directory, address, progress=progress.update).run(target,
                                                                               rollback)
    click.echo(json.dumps(report, indent=2) if as_json else move_summary(report, rollback))


@mailbox.command("receive")
@click.option("--confirm", "confirm", type=ADDRESS, metavar="ADDRESS",
              help="Check that this host now serves ADDRESS (after the flip).")
@click.option("--abort", "abort", type=ADDRESS, metavar="ADDRESS",
              help="Drop what a move of ADDRESS to this host left here.")
@output_options
@click.pass_context
def mailbox_receive(ctx, confirm, abort, as_json):
    """Take a mailbox another host moves here, from standard input.

    Run by `lda mailbox move` on the source host through move_command: the
    stream (a manifest of sizes and SHA-256 hashes, the Maildir, Sieve
    scripts and rows) is staged, verified, fsynced and imported; anything
    wrong in it is refused (65) and nothing is kept.

    \b
    Example:
        lda mailbox receive < alice.stream
        lda mailbox receive --confirm alice@example.org
    """
    if confirm and abort:
        raise click.UsageError("--confirm and --abort exclude each other")
    config = load(ctx)
    if config.per_user:
        raise ManagedModeOnly(config, ManagedModeOnly.IN_MOVE_COMMAND)
    receiver = Receiver(config, open_directory(config), confirm or abort or "")
    if confirm:
        report = receiver.confirm()
    elif abort:
        report = receiver.abort()
    else:
        report = receiver.receive(click.get_binary_stream("stdin"))
    click.echo(json.dumps(report) if as_json else
               "OK " + " ".join(f"{k}={v}" for k, v in report.items()))


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


@mailbox.command("set-quota")
@click.argument("address", type=ADDRESS)
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

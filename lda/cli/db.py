"""`lda db`: the mailbox databases (list, create, show, check)."""

import sys

import click

from ..admin.check import check as check_state
from ..admin.databases import list_databases, show_database
from ..admin.hosts import create_database_on
from ..admin.mailboxes import open_directory
from .output import (DATABASE, HOST, Progress, StoredPath, emit, emit_record, output_options,
                     size_option)
from .root import cli, load


DB_COLUMNS = ["name", "path", "host", "mailboxes", "deliveredto_rows", "pending_partial",
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
@click.argument("name", type=DATABASE)
@click.option("--path", type=StoredPath(file_okay=False),
              help="Its directory (default: STATE_DIR/databases/NAME).")
@click.option("--host", type=HOST, help="The host that holds it, one 'lda host add' registered "
                             "(default: none; every host delivers to it).  From another "
                             "host, its directory is made there, not here.")
@output_options
@size_option
@click.pass_context
def db_create(ctx, name, path, host, as_json, in_bytes):
    """Register a mailbox database and create its directory.

    \b
    Example:
        lda db create db2 --path /srv/mail2
        lda db create db3 --host b
    """
    config = load(ctx)
    directory = open_directory(config)
    create_database_on(directory, config, name, path, host)
    emit_record(show_database(directory, config, name), as_json, in_bytes)


@database_group.command("show")
@click.argument("name", type=DATABASE)
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
@click.argument("name", type=DATABASE, required=False)
@output_options
@click.pass_context
def db_check(ctx, name, as_json):
    """Check the directory, databases and Maildirs; say how to repair each problem.

    Reads only.  On a site of several hosts, checks the databases this host
    holds.  Exits 0 when all is well, 78 when there are problems to
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
        if summary["elsewhere"]:
            click.echo(f"not checked here, held by other hosts: "
                       f"{', '.join(summary['elsewhere'])}")
    sys.exit(summary["exit_code"])

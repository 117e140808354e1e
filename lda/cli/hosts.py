"""`lda host`: the delivery hosts of a shared directory (add, list, remove)."""

import click

from ..admin.hosts import add_host, list_hosts, remove_host
from ..admin.mailboxes import open_directory, read_directory
from .output import HOST, emit, emit_record, output_options, warn
from .root import cli, load

HOST_COLUMNS = ["name", "transport", "databases", "created"]


@cli.group("host")
def host_group():
    """Delivery hosts: which host holds which mailbox databases, and the route to it."""


@host_group.command("add")
@click.argument("name", type=HOST)
@click.option("--transport", required=True, metavar="TRANSPORT:NEXTHOP",
              help="What a front-end Postfix's transport map answers for the host's "
                   "mailboxes, e.g. lmtp:inet:10.0.0.2:24.")
@output_options
@click.pass_context
def host_add(ctx, name, transport, as_json):
    """Register a host (its NAME is the host_name in its lda.toml).

    \b
    Example:
        lda host add b --transport lmtp:inet:10.0.0.2:24
    """
    emit_record(shown(add_host(open_directory(load(ctx)), name, transport), as_json), as_json)


@host_group.command("list")
@output_options
@click.pass_context
def host_list(ctx, as_json):
    """List the hosts, their transports and the databases each holds.

    \b
    Example:
        lda host list --json
    """
    emit([shown(row, as_json) for row in list_hosts(read_directory(load(ctx), warn))], as_json,
         HOST_COLUMNS)


def shown(row, as_json):
    """A host for people: its databases comma-separated ("-" for none)."""
    return row if as_json else {**row, "databases": ",".join(row["databases"]) or "-"}


@host_group.command("remove")
@click.argument("name", type=HOST)
@output_options
@click.pass_context
def host_remove(ctx, name, as_json):
    """Forget a host; refused while a mailbox database names it.

    \b
    Example:
        lda host remove b
    """
    emit_record(shown(remove_host(open_directory(load(ctx)), name), as_json), as_json)

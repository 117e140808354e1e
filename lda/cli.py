"""The admin command line: a thin click skin over the library.

The only module that imports click.  `lda deliver` never comes here on the
per-message path (main.py dispatches it first); it is declared below so that
`lda --help` and the manual list it.
"""

import json
import sys

import click

from .errors import EX_CONFIG, LdaError


def output_options(fn):
    """--json for scripts; a table for people."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


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


class LdaGroup(click.Group):
    """Turns library errors into one line on stderr and their sysexits code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LdaError as e:
            click.echo(f"lda: {e}", err=True)
            sys.exit(e.exit_code)


def load(ctx):
    from .config import load_config

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
def deliver(args):
    """Deliver the message on stdin (see `lda deliver --help`).

    \b
    Example:
        lda deliver -f sender@example.org alice@example.org < message.eml
    """
    from .deliver_cmd import deliver as run

    sys.exit(run(list(args)))


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
@output_options
@click.pass_context
def mailbox_create(ctx, address, database, quota_storage, quota_messages, forward,
                   keep_copy, as_json):
    """Create a mailbox and its Maildir.

    \b
    Example:
        lda mailbox create alice@example.org --quota-storage 1G
    """
    from .config import parse_size
    from .directory_admin import create_mailbox, open_directory

    config = load(ctx)
    storage = parse_size(quota_storage, "--quota-storage") if quota_storage else None
    row = create_mailbox(open_directory(config), config, address, database, storage,
                         quota_messages, forward, keep_copy)
    emit([row], as_json, ["address", "database", "maildir", "quota_storage"])


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
    from .directory_admin import list_mailboxes, open_directory

    rows = list_mailboxes(open_directory(load(ctx)), database)
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
    from .directory_admin import get_mailbox, open_directory

    row = get_mailbox(open_directory(load(ctx)), address)
    emit([row], as_json, list(row))


@mailbox.command("delete")
@click.argument("address")
@click.pass_context
def mailbox_delete(ctx, address):
    """Remove a mailbox from the directory (its Maildir stays on disk).

    \b
    Example:
        lda mailbox delete alice@example.org
    """
    from .directory_admin import delete_mailbox, open_directory

    row = delete_mailbox(open_directory(load(ctx)), address)
    click.echo(f"deleted {row['address']}; Maildir left in place: {row['maildir']}")


@cli.group()
def aliases():
    """The aliases file."""


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
    from .aliases import check_aliases

    path = path or load(ctx).aliases
    if not path:
        raise click.UsageError("no aliases file given or configured")
    problems = [p._asdict() for p in check_aliases(path)]
    emit(problems, as_json, ["path", "line", "message"])
    sys.exit(EX_CONFIG if problems else 0)

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
    from .directory_admin import open_directory
    from .move import Move

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

"""`lda config`: show the effective configuration, check what a delivery
reads.  (Named so as not to be read as lda/config.py, the keys.)"""

import sys

import click

from ..admin.configuration import as_toml
from ..admin.configuration import check as check_configuration
from ..admin.configuration import show as show_configuration
from ..log import printable
from .output import Progress, emit_record, output_options
from .root import cli


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

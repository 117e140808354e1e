"""`lda aliases`: check the aliases file and compile its table."""

import json
import sys

import click

from ..admin.mailboxes import AliasFileInvalid, aliases_file, compile_aliases
from ..errors import EX_CONFIG
from ..store.aliases import check_aliases
from .output import emit, emit_record, output_options, warn
from .root import cli, load


@cli.group()
def aliases():
    """The aliases file."""


def aliases_path(config, path):
    """The file given on the command line, else the configured one."""
    if not (path or config.aliases):
        raise click.UsageError("no aliases file given or configured")
    return aliases_file(path or config.aliases)


@aliases.command("compile")
@click.argument("path", required=False)
@output_options
@click.pass_context
def aliases_compile(ctx, path, as_json):
    """Check the aliases file, then write the table deliveries look up.

    The table is state_dir/aliases.sqlite; while the file or one it
    includes is newer, deliveries read the file instead and log a warning.
    As newaliases(1), a bad line is skipped with a warning and the rest is
    compiled (exit 0); mail to an alias defined on a bad line is deferred.
    An alias loop writes no table (exit 78).

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
            warn(str(problem))
        raise
    for problem in summary["problems"]:
        warn(f"warning: {problem['path']}:{problem['line']}: {problem['message']}; "
             "line skipped")
    if as_json:
        return emit_record(summary, True)
    skipped = len(summary["problems"])
    click.echo(f"compiled {summary['entries']} aliases from {summary['source']} "
               f"into {summary['index']}"
               + (f"; {skipped} bad lines skipped, {summary['deferred']} aliases deferred"
                  if skipped else ""))


@aliases.command("check")
@click.argument("path", required=False)
@output_options
@click.pass_context
def aliases_check(ctx, path, as_json):
    """Check the aliases file: syntax, addresses, cycles, with line numbers.

    Exits 78 if anything is wrong, every bad line listed: run it before
    deploying a file (compile and deliveries skip bad lines).

    \b
    Example:
        lda aliases check /etc/lda/aliases
    """
    path = aliases_path(load(ctx), path)
    problems = [p._asdict() for p in check_aliases(path)]
    emit(problems, as_json, ["path", "line", "message"])
    sys.exit(EX_CONFIG if problems else 0)

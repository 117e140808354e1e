"""`lda sieve` (check, test; install, list, activate, show, deactivate,
delete, rename a managed mailbox's scripts) and `lda procmail-convert`."""

import json
import sys

import click

from ..admin.mailboxes import open_directory
from ..admin.sieve import ScriptInvalid
from ..admin.sieve import activate as activate_script
from ..admin.sieve import deactivate as deactivate_script
from ..admin.sieve import delete as delete_script
from ..admin.sieve import install as install_script
from ..admin.sieve import list_scripts as list_sieve_scripts
from ..admin.sieve import rename as rename_script
from ..admin.sieve import show as show_sieve_script
from ..errors import EX_DATAERR
from ..sieve.dryrun import check as check_script
from ..sieve.dryrun import dry_run
from ..sieve.procmail import convert as procmail_to_sieve
from .output import ADDRESS, emit, emit_record, note, output_options, warn
from .root import cli, load


@cli.group()
def sieve():
    """Sieve filters (RFC 5228): check, try; install and activate a mailbox's."""


@sieve.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def sieve_check(ctx, path):
    """Compile a script; print FILE:LINE:COL: message per error (exit 65).

    \b
    Example:
        lda sieve check ~/.dovecot.sieve
    """
    errors = check_script(path, load(ctx).sieve_extensions_extra)
    for line in errors:
        note(line)
    sys.exit(EX_DATAERR if errors else 0)


@sieve.command("test")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("-f", "sender", help="Envelope sender (default: Return-Path, else From).")
@click.option("-r", "recipient", help="Envelope recipient (default: Delivered-To, else To).")
@click.option("-a", "original", help="Original recipient (default: none).")
@output_options
@click.pass_context
def sieve_test(ctx, path, sender, recipient, original, as_json):
    """Dry run: print the actions the script takes on the message on stdin.

    Nothing is delivered, sent or recorded; :user and :detail split at the
    configuration's recipient_delimiter, as a delivery would.  include
    :personal reads sieve_dir in per-user mode, else the script's own
    directory (sieve/ beside an lda.sieve).

    \b
    Example:
        lda sieve test ~/.dovecot.sieve -f bob@example.org < message.eml
        lda sieve test ~/.dovecot.sieve --json < message.eml
    """
    config = load(ctx)
    actions, notes, status = dry_run(path, click.get_binary_stream("stdin"), sender,
                                     recipient, config.recipient_delimiter,
                                     config.sieve_options(),
                                     config.sieve_dir if config.per_user else None,
                                     original, as_json)
    for line in notes:
        note(line)
    for line in actions:
        click.echo(line)
    sys.exit(status)


def sieve_admin(call, as_json):
    """Run an admin/sieve.py call; a script that does not compile is its
    errors, one per line on stderr (and under "errors" with --json), and
    exit 65, as `lda sieve check` reports them."""
    try:
        return call()
    except ScriptInvalid as e:
        if as_json:
            click.echo(json.dumps({"error": str(e), "errors": e.lines}, indent=2))
        for line in e.lines:
            note(line)
        raise


@sieve.command("install")
@click.argument("address", type=ADDRESS)
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", help="Store it under this name (default: the file's, less .sieve).")
@click.option("--activate/--no-activate", default=True, show_default=True,
              help="Make it the mailbox's active script.")
@output_options
@click.pass_context
def sieve_install(ctx, address, path, name, activate, as_json):
    """Install a managed mailbox's Sieve script, checked first.

    A script that does not compile changes nothing (exit 65).  Written
    atomically into the mailbox (sieve/NAME.sieve, and lda.sieve when
    active); a symlink there is replaced, never written through.

    \b
    Example:
        lda sieve install alice@example.org vacation.sieve
        lda sieve install alice@example.org spam.sieve --name spam --no-activate
    """
    config = load(ctx)
    db = open_directory(config)
    emit_record(sieve_admin(
        lambda: install_script(db, address, path, name, activate,
                               config.sieve_extensions_extra), as_json), as_json)


@sieve.command("list")
@click.argument("address", type=ADDRESS, required=False)
@output_options
@click.pass_context
def sieve_list(ctx, address, as_json):
    """List the Sieve scripts of a managed mailbox, or of every mailbox.

    A name "-" is an active lda.sieve that none of the stored scripts
    matches (one written by hand).

    \b
    Example:
        lda sieve list alice@example.org
    """
    rows = list_sieve_scripts(open_directory(load(ctx)), address)
    emit(rows, as_json, ["address", "name", "active", "size"])


@sieve.command("activate")
@click.argument("address", type=ADDRESS)
@click.argument("name")
@output_options
@click.pass_context
def sieve_activate(ctx, address, name, as_json):
    """Make a stored script the mailbox's active one (checked first).

    NAME as ManageSieve takes it ("my filter"); one starting with a dash
    after --.

    \b
    Example:
        lda sieve activate alice@example.org vacation
        lda sieve activate alice@example.org "my filter"
    """
    config = load(ctx)
    db = open_directory(config)
    emit_record(sieve_admin(lambda: activate_script(db, address, name,
                                                    config.sieve_extensions_extra),
                            as_json), as_json)


@sieve.command("show")
@click.argument("address", type=ADDRESS)
@output_options
@click.pass_context
def sieve_show(ctx, address, as_json):
    """Print a managed mailbox's active Sieve script.

    \b
    Example:
        lda sieve show alice@example.org
    """
    shown = show_sieve_script(open_directory(load(ctx)), address)
    if as_json:
        return emit_record(shown, True)
    if shown["script"] is None:
        warn(f"{shown['address']} has no Sieve script of its own")
        return
    click.echo(shown["script"], nl=False)


@sieve.command("deactivate")
@click.argument("address", type=ADDRESS)
@output_options
@click.pass_context
def sieve_deactivate(ctx, address, as_json):
    """Turn a managed mailbox's filter off; its stored scripts stay.

    As ManageSieve's SETACTIVE "": no script runs until one is activated.
    A hand-written lda.sieve is kept as sieve/lda.orig.sieve first.

    \b
    Example:
        lda sieve deactivate alice@example.org
    """
    emit_record(deactivate_script(open_directory(load(ctx)), address), as_json)


@sieve.command("delete")
@click.argument("address", type=ADDRESS)
@click.argument("name")
@output_options
@click.pass_context
def sieve_delete(ctx, address, name, as_json):
    """Remove a stored script; not the active one (deactivate it first).

    \b
    Example:
        lda sieve delete alice@example.org old-vacation
    """
    emit_record(delete_script(open_directory(load(ctx)), address, name), as_json)


@sieve.command("rename")
@click.argument("address", type=ADDRESS)
@click.argument("old")
@click.argument("new")
@output_options
@click.pass_context
def sieve_rename(ctx, address, old, new, as_json):
    """Rename a stored script; the active one stays active.

    \b
    Example:
        lda sieve rename alice@example.org spam "junk filter"
    """
    emit_record(rename_script(open_directory(load(ctx)), address, old, new), as_json)


@cli.command("procmail-convert")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def procmail_convert(ctx, path):
    """Print a .procmailrc's recipes as a Sieve script.

    Recipes with no Sieve equivalent (pipes, body conditions, complex
    regular expressions) are left in the script as comments; those that
    Sieve does differently (an mbox becomes a Maildir++ folder, a MAILDIR
    outside ~/Maildir) carry a comment.  Each is one stderr line with its
    line number; the exit status is 0 only when nothing was.

    \b
    Example:
        lda procmail-convert ~/.procmailrc > ~/.lda.sieve
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    config = load(ctx)  # per-user mode's maildir is where the script delivers
    script, problems = procmail_to_sieve(text, path,
                                         maildir=config.maildir if config.per_user else None)
    click.echo(script, nl=False)
    for line, kind, reason in sorted(problems, key=lambda problem: problem.line):
        note(f"{path}:{line}: {kind}: {reason}")
    sys.exit(EX_DATAERR if problems else 0)

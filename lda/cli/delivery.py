"""`lda deliver` (declared for `lda --help` and the manual; lda/main.py
runs a delivery before click is imported) and `lda explain`."""

import io
import json
import sys

import click

from ..deliver.command import deliver as deliver_message
from ..errors import LdaError, UsageError
from .output import output_options
from .root import cli, load


@cli.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def deliver(ctx, args):
    """Deliver the message on stdin (see `lda deliver --help`).

    \b
    Example:
        lda deliver -f sender@example.org alice@example.org < message.eml
    """
    config = ctx.obj.get("config")  # `lda -c FILE deliver ...`
    sys.exit(deliver_message((["-c", config] if config else []) + list(args)))


@cli.command()
@click.option("-f", "sender", help="Envelope sender, as lda deliver -f.")
@click.option("-a", "original", help="Original recipient, as lda deliver -a.")
@click.argument("recipients", nargs=-1)
@output_options
@click.pass_context
def explain(ctx, sender, original, recipients, as_json):
    """Say what lda deliver would do with the message on stdin; write nothing.

    How each recipient resolves (aliases with file and line, :include:,
    forwards, Sieve rules), every target with its database, Maildir folder
    and quota, the DeliveredTo key and whether each target has it, pending
    partial deliveries, and the exit status and reply.  Without a message
    (stdin a terminal, or empty) only resolution and quota are shown.
    Exits 0 when explained, whatever the delivery would do.

    \b
    Example:
        lda explain -f bob@example.org team@example.org < message.eml
        lda explain --json alice@example.org < message.eml
    """
    from ..deliver.envelope import check_sender
    from ..deliver.explain import explain as explain_delivery
    from ..deliver.explain import text_lines

    config = load(ctx)
    if sender is not None:
        try:
            sender = check_sender(sender)
        except LdaError as e:
            raise UsageError(f"-f: {e}") from None
    if not recipients and not config.per_user:
        raise click.UsageError("give at least one RECIPIENT", ctx)
    stdin = click.get_binary_stream("stdin")
    data = b"" if stdin.isatty() else stdin.read()
    report = explain_delivery(config, list(recipients), io.BytesIO(data) if data else None,
                              sender, original)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for line in text_lines(report):
        click.echo(line)

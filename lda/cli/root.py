"""The root `lda` command group: -c/--config, and the one place where
library errors become a line on stderr and a sysexits status."""

import sys

import click

from ..admin.state import failure
from ..config import load_config
from ..errors import EX_USAGE, LdaError, unexpected


class LdaGroup(click.Group):
    """Turns library errors into one line on stderr and their sysexits code,
    and anything unexpected into a logged traceback and 75 (EX_TEMPFAIL), so
    a timer or a script retries instead of reading Python's 1.  An SQLite
    or OS error that the library met past the point where it names the file
    (admin_sqlite) is still one line, with the same exit status rule."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LdaError as e:
            click.echo(f"lda: {e}", err=True)
            sys.exit(e.exit_code)
        except click.UsageError as e:
            # EX_USAGE, not click's 2 (no sysexits code), and one line.
            where = e.ctx.command_path if e.ctx else "lda"
            click.echo(f"lda: {e.format_message()} (try '{where} --help')", err=True)
            sys.exit(EX_USAGE)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:  # noqa: BLE001
            known = failure(e)
            if known is not None:
                click.echo(f"lda: {known}", err=True)
                sys.exit(known.exit_code)
            sys.exit(unexpected(e, None))


def load(ctx):
    return load_config(ctx.obj.get("config"))


@click.group(cls=LdaGroup)
@click.version_option(package_name="lda")
@click.option("-c", "--config", envvar="LDA_CONFIG", type=click.Path(dir_okay=False),
              help="Configuration file (default /etc/lda/lda.toml).")
@click.pass_context
def cli(ctx, config):
    """lda: a Maildir delivery agent that delivers each message exactly once."""
    ctx.obj = {"config": config}

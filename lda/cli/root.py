"""The root `lda` command group: -c/--config, and the one place where
library errors become a line on stderr and a sysexits status."""

import sys

import click

from ..admin.state import failure
from ..config import load_config
from ..errors import EX_USAGE, LdaError, unexpected
from .output import warn


class LdaGroup(click.Group):
    """Turns library errors into one line on stderr and their sysexits code,
    and anything unexpected into a logged traceback and 75 (EX_TEMPFAIL), so
    a timer or a script retries instead of reading Python's 1.  An SQLite
    or OS error that the library met past the point where it names the file
    (admin_sqlite) is still one line, with the same exit status rule.  The
    line is printed by warn(), which escapes what it quotes of the command
    line (a line break, an escape sequence, a byte that was not UTF-8)."""

    def parse_args(self, ctx, args):
        # lda's own options (-c), parsed before invoke(): the same one line.
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            usage_error(e)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LdaError as e:
            warn(str(e))
            sys.exit(e.exit_code)
        except click.UsageError as e:
            usage_error(e)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:  # noqa: BLE001
            known = failure(e)
            if known is not None:
                warn(str(known))
                sys.exit(known.exit_code)
            sys.exit(unexpected(e, None))


def usage_error(error):
    """EX_USAGE, not click's 2 (no sysexits code), and one line."""
    where = error.ctx.command_path if error.ctx else "lda"
    warn(f"{error.format_message()} (try '{where} --help')")
    sys.exit(EX_USAGE)


def load(ctx):
    return load_config(ctx.obj.get("config"))


@click.group(cls=LdaGroup)
@click.version_option(package_name="lda")
@click.option("-c", "--config", envvar="LDA_CONFIG", metavar="FILE",
              help="Configuration file (default /etc/lda/lda.toml).")
@click.pass_context
def cli(ctx, config):
    """lda: a Maildir delivery agent that delivers each message exactly once."""
    ctx.obj = {"config": config}

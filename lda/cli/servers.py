"""The long-running servers: `lda lmtp`, `lda policy`, `lda socketmap`.
Each imports its server only when run (asyncio and aiosmtpd would slow
every other command)."""

import click

from ..config import DAY, RANGES
from ..log import Log
from .root import cli, load


@cli.command()
@click.option("--listen", help="unix:PATH or HOST:PORT (default: lmtp_listen).")
@click.option("--processes", type=click.IntRange(*RANGES["lmtp_processes"][:2]),
              help="Server processes; 0: 4 per CPU (at most 32), or 1 per CPU with "
                   "--workers (default: lmtp_processes).")
@click.option("--workers", type=click.IntRange(*RANGES["lmtp_workers"][:2]),
              help="Delivery threads in each process; 0: none, deliver in the "
                   "process's own thread (default: lmtp_workers).")
@click.option("--grace", default=300, show_default=True, type=click.IntRange(0, DAY),
              help="Seconds to finish deliveries after SIGTERM.")
@click.pass_context
def lmtp(ctx, listen, processes, workers, grace):
    """Serve LMTP (RFC 2033): one reply per recipient after DATA.

    \b
    Example:
        lda lmtp --listen unix:/var/spool/postfix/lda/lmtp
        lda lmtp --listen 127.0.0.1:24
    """
    # Lazy: asyncio and aiosmtpd would slow every admin command, and the
    # admin side never needs them.
    from ..lmtp.server import run

    config = load(ctx)
    if processes is not None:
        config.lmtp_processes = processes
    if workers is not None:
        config.lmtp_workers = workers
    run(config, Log.configured(config), listen, grace)


@cli.command()
@click.option("--listen", metavar="unix:PATH|HOST:PORT",
              help="Where to listen (default: policy_listen).")
@click.pass_context
def policy(ctx, listen):
    """Serve Postfix's policy delegation: refuse at RCPT what lda would refuse.

    A recipient over quota (with the client's SIZE) gets quota_status_overquota,
    one larger than its whole quota quota_status_toolarge, an unknown one
    quota_status_nouser when policy_reject_unknown is set; anything else DUNNO.
    An unreadable directory answers DEFER_IF_PERMIT, never a rejection.

    In main.cf: smtpd_recipient_restrictions = reject_unauth_destination,
    check_policy_service unix:private/lda-policy (contrib/postfix/main.cf.services).

    \b
    Example:
        lda policy --listen unix:/var/spool/postfix/private/lda-policy
    """
    from ..services.server import run

    config = load(ctx)
    run(config, Log.configured(config), listen or config.policy_listen, "policy")


@cli.command()
@click.option("--listen", metavar="unix:PATH|HOST:PORT",
              help="Where to listen (default: socketmap_listen).")
@click.pass_context
def socketmap(ctx, listen):
    """Serve the directory as Postfix socketmap tables.

    Maps: mailbox (every address lda delivers to), alias (one level of an
    alias or forward), domain, transport (the transport of the host that
    holds a mailbox's database, see lda host).  TEMP when the directory
    cannot be read, never NOTFOUND.

    In main.cf: virtual_mailbox_maps = socketmap:inet:127.0.0.1:8025:mailbox
    (contrib/postfix/main.cf.services).

    \b
    Example:
        lda socketmap --listen 127.0.0.1:8025
    """
    from ..services.server import run

    config = load(ctx)
    run(config, Log.configured(config), listen or config.socketmap_listen, "socketmap")

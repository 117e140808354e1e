"""`lda directory`: the shared PostgreSQL directory and this host's mirror
(migrate, sync, status).  psycopg is imported only when one of these runs."""

import signal
import sys

import click

from ..admin.mailboxes import open_sqlite_directory, require_psycopg
from ..log import Log
from .output import Progress, emit_record, output_options
from .root import cli, load


@cli.group("directory")
def directory_group():
    """The mailbox directory: PostgreSQL shared by several hosts, and the mirror."""


@directory_group.command("migrate")
@click.option("--to", "url", required=True, metavar="URL",
              help="The empty PostgreSQL database: postgresql://USER@HOST/NAME.")
@output_options
@click.pass_context
def directory_migrate(ctx, url, as_json):
    """Copy this site's SQLite directory into an empty PostgreSQL database.

    One transaction: databases, mailboxes (quotas, forwards) and hosts, the
    counts checked before it commits.  Refuses a target that is not empty
    and a site with a mailbox move unfinished.  lda.toml is not changed:
    set `directory` to the URL afterwards, as the summary says.

    \b
    Example:
        lda directory migrate --to postgresql://lda@db.example.org/lda
    """
    require_psycopg()
    from ..admin.pgmigrate import migrate

    config = load(ctx)
    with Progress(enabled=not as_json) as progress:
        summary = migrate(config, url, progress.update)
    emit_record(summary, as_json)


@directory_group.command("sync")
@click.option("--follow", is_flag=True,
              help="Keep the mirror current until SIGTERM: LISTEN, and poll each second.")
@output_options
@click.pass_context
def directory_sync(ctx, follow, as_json):
    """Copy the PostgreSQL directory into this host's mirror, directory.sqlite.

    Once, or with --follow as a service (contrib/systemd/lda-directory-sync.service):
    each change is copied as its NOTIFY arrives; while PostgreSQL is down
    the mirror stays as it is and the follower retries.  Exits 75 when
    PostgreSQL cannot be reached (one pass).

    \b
    Example:
        lda directory sync
        lda directory sync --follow
    """
    config = load(ctx)
    if not config.directory:
        # One host: its directory.sqlite is the directory itself; a
        # follower enabled there has nothing to do and says so.
        return emit_record({"directory": config.directory_path, "shared": False,
                            "result": "nothing to mirror"}, as_json)
    require_psycopg()
    from ..admin.mirror import Follower, sync_once

    if not follow:
        emit_record(sync_once(config.directory, lambda: open_sqlite_directory(config)),
                    as_json)
        return
    log = Log.configured(config)
    follower = Follower(config.directory, lambda: open_sqlite_directory(config),
                        lambda line: log.info(f"directory sync: {line}"))
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: follower.stop())
    sys.exit(follower.run())


@directory_group.command("status")
@output_options
@click.pass_context
def directory_status(ctx, as_json):
    """Say where the directory is and how current this host's mirror is.

    \b
    Example:
        lda directory status --json
    """
    config = load(ctx)
    if not config.directory:
        emit_record({"directory": config.directory_path, "shared": False}, as_json)
        return
    require_psycopg()
    from ..admin.mirror import status

    emit_record(status(config), as_json)

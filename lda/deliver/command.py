"""`lda deliver`: the per-message command, kept free of click and other
heavy imports (importing click alone takes longer than Python's start; see
bench/profiles/startup-figures.txt).

Exit statuses are sysexits only.  Anything unexpected is logged with its
traceback and exits 75, so the MTA keeps the message and retries.
"""

import io
import os
import sys

from ..errors import EX_OK, EX_TEMPFAIL, LdaError, UsageError, unexpected
from ..startup.getopt import GetoptError, getopt
from .envelope import check_sender, original_recipient

USAGE = """\
usage: lda deliver [-f SENDER] [-a ORIGINAL_RECIPIENT] [-c CONFIG] [-e] [RECIPIENT...]

Deliver the message on standard input.  With no RECIPIENT, Postfix's
RECIPIENT environment variable (mailbox_command) or the invoking user.
  -f SENDER   envelope sender (default: $SENDER)
  -a ADDRESS  original recipient (default: $ORIGINAL_RECIPIENT)
  -c CONFIG   configuration file (default: $LDA_CONFIG, /etc/lda/lda.toml,
              else per-user mode: ~/Maildir)
  -e          over-quota primary recipient is rejected (exit 77), as with
              quota_full = "reject"
"""


def parse_args(argv, environ):
    try:
        options, recipients = getopt(argv, "f:a:c:eh")
    except GetoptError as e:
        raise UsageError(f"{e}; try 'lda deliver --help'") from None
    if "-h" in options:
        return None
    if not recipients and environ.get("RECIPIENT"):
        recipients = [environ["RECIPIENT"]]
    sender = options.get("-f", environ.get("SENDER"))
    if sender is not None:
        sender = check_sender(sender)
    original, ignored = original_recipient(options.get("-a",
                                                       environ.get("ORIGINAL_RECIPIENT")))
    return {"sender": sender, "recipients": recipients, "original": original,
            "original_ignored": ignored, "config": options.get("-c"),
            "reject": "-e" in options}


def exit_status(results):
    """One status for all recipients: a temporary failure wins (the MTA then
    retries, and DeliveredTo discards what already arrived), then the first
    permanent one, then success."""
    errors = [r.error for r in results if r.error is not None]
    if not errors:
        return EX_OK, None
    temporary = [e for e in errors if e.exit_code == EX_TEMPFAIL or not e.permanent]
    chosen = temporary[0] if temporary else errors[0]
    return chosen.exit_code, chosen


def run(argv):
    """The `lda deliver` process: deliver, then exit without closing the
    DeliveredTo connections (see deliveredto.leave_open_until_exit), which
    spares the checkpoint and the WAL's deletion and re-creation."""
    from ..store.deliveredto import leave_open_until_exit

    leave_open_until_exit()
    status = deliver(argv)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: the status still counts
            pass
    os._exit(status)


def deliver(argv, stdin=None, environ=os.environ, clock=None):
    """Run one delivery; returns the exit status.

    Postfix takes the enhanced status code from the start of a command's
    output (local(8), pipe(8)), so the one-line reason is written first and
    the per-target log lines are held back until after it."""
    held = io.StringIO()
    log = None
    reason = None
    try:
        status, error, log = _deliver(argv, stdin or sys.stdin.buffer, environ, clock, held)
        reason = error.reason() if error is not None else None
        return status
    except LdaError as e:
        reason = e.reason()
        return e.exit_code
    except BaseException as e:  # noqa: BLE001 - the MTA must get 75, never 1
        return unexpected(e, log, held)
    finally:
        if reason:
            sys.stderr.write(reason + "\n")
        sys.stderr.write(held.getvalue())
        sys.stderr.flush()


def _deliver(argv, stdin, environ, clock, held):
    args = parse_args(argv, environ)
    if args is None:
        sys.stdout.write(USAGE)
        return EX_OK, None, None
    from ..config import load_config
    from ..log import Log
    from .delivery import Delivery
    from .resolve import make_resolver

    config = load_config(args["config"], environ)
    if args["reject"]:
        config.quota_full = "reject"
    # The log's own lines, or its one note that syslog is missing, follow
    # the reason in `held`; under an MTA (log = "auto") they go to syslog.
    log = Log.configured(config, stream=held, mta_stderr=sys.stderr)
    if args["original_ignored"]:
        log.warning(f"original recipient ignored: {args['original_ignored']}")
    kwargs = {"clock": clock} if clock else {}
    delivery = Delivery(config, make_resolver(config, environ, log), log,
                        sender=args["sender"], original_recipient=args["original"],
                        **kwargs)
    recipients = args["recipients"] or ([None] if config.per_user else [])
    if not recipients:
        raise UsageError("no recipient given and RECIPIENT is not set")
    status, error = exit_status(delivery.run(recipients, stdin))
    return status, error, log

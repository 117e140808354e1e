"""`lda deliver`: the per-message command, kept free of click and other
heavy imports (importing click alone takes longer than Python's start; see
bench/profiles/startup-figures.txt).

Exit statuses are sysexits only.  Anything unexpected is logged with its
traceback and exits 75, so the MTA keeps the message and retries.
"""

import io
import os
import sys

from ..errors import (EX_OK, ConfigError, LdaError, TemporaryFailure, is_file_problem,
                      unexpected)
from ..startup.getopt import GetoptError, getopt
from .envelope import check_sender, original_recipient

USAGE = """\
usage: lda deliver [-ekt] [-f SENDER] [-a ADDRESS|EXTENSION] [-c CONFIG] [-d RECIPIENT]
                   [-m FOLDER] [-o SETTING=VALUE] [-p FILE] [-r ADDRESS] [RECIPIENT...]
       lda [-ekt] [-f SENDER] [-a ...] [-d RECIPIENT] ...   (no "deliver": the same)

Deliver the message on standard input.  With no RECIPIENT, Postfix's
RECIPIENT environment variable (mailbox_command) or the invoking user.
dovecot-lda's and procmail's options mean what they mean there:
  -f SENDER     envelope sender (default: $SENDER, else a leading From_ line's)
  -a ADDRESS    original recipient (default: $ORIGINAL_RECIPIENT); a value
                without "@" is procmail's: the address extension ($EXTENSION)
  -d RECIPIENT  the recipient (dovecot-lda, procmail -d)
  -r ADDRESS    final recipient: the recipient when -d is not given
  -m FOLDER     default folder instead of INBOX ("Lists", "INBOX/Lists",
                "INBOX.Lists"); made only with lda_mailbox_autocreate=yes
                (-o, else dovecot.conf, as dovecot-lda reads it)
  -p FILE       read the message from FILE instead of standard input
  -c CONFIG     configuration file (default: $LDA_CONFIG, /etc/lda/lda.toml,
                else per-user mode: ~/Maildir); one not named *.toml is
                dovecot-lda's dovecot.conf: only -m's folder settings are read
  -o KEY=VALUE  a dovecot setting: quota_full_tempfail, lda_mailbox_autocreate,
                lda_mailbox_autosubscribe, plugin/quota_exceeded_message,
                recipient_delimiter, lda_original_recipient_header, hostname,
                postmaster_address, sendmail_path, mail_location=maildir:PATH;
                others are ignored
  -e            over-quota primary recipient is rejected (exit 77), as with
                quota_full = "reject", unless -o quota_full_tempfail=yes
  -k            accepted, no effect (dovecot-lda: keep the environment)
  -t            accepted, no effect (procmail: tempfail rather than bounce,
                which lda does already)
An unknown option exits 78 with a 4.3.5 reason: Postfix defers the message;
so does -h when a message is waiting.
"""
OPTIONS = "f:a:c:d:m:o:p:r:ekth"


def parse_args(argv, environ):
    """The delivery's arguments from dovecot-lda's, procmail's and lda's
    options; None for --help.  An option lda does not know is the
    administrator's mistake in master.cf or main.cf, not the message's:
    exit 78 with 4.3.5, so Postfix defers the mail until it is fixed
    (a 5.X.X would bounce it)."""
    try:
        options, operands = getopt(argv, OPTIONS, repeatable="om")
    except GetoptError as e:
        raise ConfigError(f"{e} in lda's command line (see lda(1), 'lda deliver "
                          "--help')") from None
    if "-h" in options:
        if "-p" in options:
            raise ConfigError(_HELP_WITH_MESSAGE)
        return None
    notes = []
    recipients = ([options["-d"]] if "-d" in options else []) + operands
    if "-r" in options:
        if recipients:
            notes.append(f"-r {options['-r'][:80]!r}: the final recipient is "
                         "informational when -d or a recipient is given; ignored")
        else:
            recipients = [options["-r"]]
    if not recipients and environ.get("RECIPIENT"):
        recipients = [environ["RECIPIENT"]]
    sender = options.get("-f", environ.get("SENDER"))
    if sender is not None:
        sender = check_sender(sender)
    args = {"sender": sender, "recipients": recipients, "notes": notes,
            "reject": "-e" in options, "message": options.get("-p"),
            "destination": options.get("-d")}
    args.update(_addresses(options.get("-a"), environ, notes))
    args.update(_dovecot_options(options, notes))
    return args


def _addresses(value, environ, notes):
    """-a: dovecot-lda's original recipient, or procmail's argument, which
    Postfix's `procmail -a "$EXTENSION"` makes the address extension.  An
    original recipient always has an "@" (Postfix passes the whole
    address), an extension never does, so the value tells them apart."""
    extension = None  # else Postfix's $EXTENSION, read with the address (make_resolver)
    if value is not None and "@" not in value:
        extension, value = value, None
        if extension:
            from .dropin import extension_folder_problem

            problem = extension_folder_problem(extension)
            if problem:
                notes.append(problem)
    # Checked once the configuration names recipient_delimiter (_deliver).
    return {"original": value if value is not None else environ.get("ORIGINAL_RECIPIENT"),
            "extension": extension}


_HELP_WITH_MESSAGE = ("-h asks for lda's usage, but a message is waiting: remove -h from "
                      "the command line (printing the usage and exiting 0 would lose it)")


def _message_given(stdin):
    """Whether a message came with -h: in-process, a stream with a byte
    in it; else standard input (lda.deliver.stdin.message_present)."""
    if stdin is not None:
        return stdin.read(1) != b""
    from .stdin import message_present

    return message_present(0)


def _dovecot_options(options, notes):
    """-c, -m and -o: what lda takes from dovecot-lda's configuration.
    A line without them does not import dropin (the start-up budget of
    lda/startup/__init__.py; bench/profiles/dropin-startup.txt).  A -c
    that is not an lda.toml is dovecot-lda's dovecot.conf: read, as
    DOVECOT_CONF is without -c, only for -m's folder (folder_settings)."""
    config = options.get("-c")
    dovecot_conf = config is not None and not config.endswith(".toml")
    if not (options.get("-o") or any(options.get("-m", ())) or dovecot_conf):
        return {"config": config, "overrides": {}, "folder": None, "autocreate": False,
                "original_header": None}
    from .dropin import default_folder, dovecot_settings, folder_settings

    overrides, autocreate, header, warnings = dovecot_settings(options.get("-o", []))
    notes.extend(warnings)
    # dovecot-lda ignores an empty -m (${extension} without one) wherever
    # it comes: the last -m that names a folder counts.
    folder, problem = default_folder(next((m for m in reversed(options.get("-m", [])) if m), ""))
    if problem:
        notes.append(problem)
    create = folder_settings(folder, config if dovecot_conf else None, autocreate,
                             "subscribe_new_folders" in overrides, notes)
    return {"config": None if dovecot_conf else config, "overrides": overrides,
            "folder": folder, "autocreate": create, "original_header": header}


def exit_status(results):
    """One status for all recipients: a temporary failure wins (the MTA then
    retries, and DeliveredTo discards what already arrived), then the first
    permanent one, then success."""
    errors = [r.error for r in results if r.error is not None]
    if not errors:
        return EX_OK, None
    temporary = [e for e in errors if not e.bounces]
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
        status, error, log = _deliver(argv, stdin, environ, clock, held)
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
    """(status, the error it reports, the log): the options applied to the
    configuration, the resolver and the message's source, then one run."""
    args = parse_args(argv, environ)
    if args is None:
        if _message_given(stdin):
            raise ConfigError(_HELP_WITH_MESSAGE)
        sys.stdout.write(USAGE)
        return EX_OK, None, None
    from ..config import load_config
    from ..log import Log
    from .delivery import Delivery
    from .resolve import make_resolver

    config = load_config(args["config"], environ, args["overrides"])
    if args["reject"] and "quota_full" not in args["overrides"]:
        # dovecot-lda's -e answers a rejection with 77 rather than a mail,
        # and over quota is one under Dovecot's default; an -o
        # quota_full_tempfail=yes on the same line still defers.
        config.quota_full = "reject"
    # The log's own lines, or its one note that syslog is missing, follow
    # the reason in `held`; under an MTA (log = "auto") they go to syslog.
    log = Log.configured(config, stream=held, mta_stderr=sys.stderr)
    args["original"], ignored = original_recipient(args["original"],
                                                   config.recipient_delimiter)
    if ignored:
        args["notes"].append(f"original recipient ignored: {ignored}")
    for note in args["notes"]:
        log.warning(note)
    if args["extension"] is not None:
        environ = dict(environ, EXTENSION=args["extension"])
    elif not config.extension_folders and "EXTENSION" in environ:
        # Postfix's $EXTENSION is the address's own: off with it, as for
        # the address (lda.deliver.resolve.address_folder); -a names one.
        environ = {k: v for k, v in environ.items() if k != "EXTENSION"}
    if config.per_user and args["destination"] is not None:
        _own_destination(config, args["destination"])
    resolver = make_resolver(config, environ, log)
    if args["folder"]:
        from .dropin import DefaultFolder

        resolver = DefaultFolder(resolver, args["folder"], args["autocreate"])
    kwargs = {"clock": clock} if clock else {}
    delivery = Delivery(config, resolver, log, sender=args["sender"],
                        original_recipient=args["original"],
                        original_header=args["original_header"],
                        peer=_smtp_client(environ),
                        procmail="PROCMAIL_VERSION" in environ, **kwargs)
    recipients = args["recipients"] or ([None] if config.per_user else [])
    if not recipients:
        # The pipe line lost its ${recipient}: the line's mistake, deferred
        # until it is fixed, as an unknown option is (not the sender's).
        raise ConfigError("no recipient given and RECIPIENT is not set (see lda(1))")
    if args["message"] is None:
        stream = stdin if stdin is not None else standard_input()
        return (*exit_status(delivery.run(recipients, stream, together=True)), log)
    with open_message(args["message"]) as stream:
        return (*exit_status(delivery.run(recipients, stream, together=True)), log)


def _own_destination(config, destination):
    """Per-user mode stores into the running user's own Maildir, whoever a
    recipient names.  -d names the user to deliver to (dovecot-lda's
    userdb user, procmail's -d USER): another user's name is a line meant
    for managed mode, as dovecot-lda's virtual `-d ${user}@${nexthop}` run
    as vmail, where every user's mail would land in vmail's Maildir.  78,
    so the MTA keeps the mail until the configuration is fixed."""
    from .envelope import normalize, split_extension
    from .resolve import current_user

    me = current_user()
    base, _ = split_extension(normalize(destination, config.recipient_delimiter),
                              config.recipient_delimiter)
    if base.partition("@")[0] != me.lower():
        raise ConfigError(f"-d {destination[:80]!r}: per-user mode (no lda.toml, or "
                          f'mode = "user") delivers only into the running user\'s '
                          f"({me}) own Maildir; for the users -d names, set "
                          'mode = "managed" in lda.toml (lda(1))')


def standard_input():
    """The message's stream when no -p names a file.  An MTA always opens
    fd 0; a process started without it (Python's sys.stdin is then None)
    has no message to read: 75 with one line, and the MTA keeps it."""
    if sys.stdin is None:
        raise TemporaryFailure("no standard input to read the message from "
                               "(file descriptor 0 is closed)")
    return sys.stdin.buffer


def _smtp_client(environ):
    """The SMTP client Postfix's local(8) names in CLIENT_ADDRESS and
    CLIENT_HOSTNAME ("unknown" when it has no name): Sieve's environment
    items remote-ip and remote-host (RFC 5183)."""
    name = environ.get("CLIENT_HOSTNAME", "")
    return environ.get("CLIENT_ADDRESS", ""), "" if name == "unknown" else name


def open_message(path):
    """The file of dovecot-lda's -p, read as standard input would be.  A
    path that names no readable file is the command line's mistake (78,
    Postfix defers); an I/O error is the machine's (75)."""
    try:
        return open(path, "rb")
    except OSError as e:
        kind = ConfigError if is_file_problem(e) else TemporaryFailure
        raise kind(f"-p {path[:200]}: cannot read the message: {e.strerror}") from None
    except ValueError:  # a NUL, which only an in-process caller can pass
        raise ConfigError(f"-p {path[:200]!r}: not a path") from None

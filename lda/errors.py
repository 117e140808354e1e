"""The exception tree: every failure lda expects carries its sysexits code.

Postfix reads the exit status of a delivery command through sysexits.h; any
unknown code, Python's 1 included, is a permanent bounce.  Library code raises
these, and only the command-line layer turns them into exit statuses (or LMTP
replies).  The enhanced status code of each reply (RFC 3463) is what Postfix
uses when the command output begins with one.  Anything else that reaches
an entry point is unexpected(): exit 75, so the message is retried.

The admin commands take their exit status from the class too, by one rule
(lda(1), EXIT STATUS): UsageError 64 for the command line, UnknownName or
UnknownRecipient 67 for a name that does not exist, AlreadyExists 73 for
what is there already, TemporaryFailure 75, NoPermission 77, and
ConfigError 78 for lda.toml, the aliases file and damaged state only.
cli.LdaGroup is the one place that turns them (and click's usage errors)
into exits.
"""

import errno
import sys

from .log import printable

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78

# Why a file cannot be read that is the file's own doing (its path, its
# permissions, its kind): the administrator's to fix, a configuration error.
# Any other reason (EIO from a failing disk, a full file table) is the
# machine's, and temporary.
_FILE_ERRNOS = frozenset({errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR,
                          errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.ENXIO,
                          errno.ENODEV})


def is_file_problem(error):
    """Whether the OSError that kept a configuration file from being read is
    the file's problem (exit 78) rather than the machine's (exit 75)."""
    return error.errno in _FILE_ERRNOS


class LdaError(Exception):
    """A failure lda understands; the default is a temporary one."""

    exit_code = EX_TEMPFAIL
    smtp_reply = "451 4.3.0"
    # What the sender's side reads where the text, str(self), is for lda's
    # log alone: None, the text itself.  An MTA copies the reply into its
    # bounce and an LMTP client into its own, so a full mailbox's usage and
    # limits stay in the log (Dovecot answers its quota_exceeded_message).
    public = None
    # Whether the text is about the server's own state (its paths, files,
    # locks, databases, configuration) rather than the message or the
    # recipient: an LMTP reply then says only "internal error", as
    # Dovecot's lmtp does, and the text goes to lda's log alone.
    internal = False

    @property
    def status(self):
        """The RFC 3463 enhanced status code, such as "4.2.2"."""
        return self.smtp_reply.split()[1]

    @property
    def permanent(self):
        return self.smtp_reply.startswith("5")

    @property
    def bounces(self):
        """Whether a command that exits with it has the MTA bounce the
        message: a permanent reply that does not exit 75."""
        return self.permanent and self.exit_code != EX_TEMPFAIL

    def reply_text(self):
        """The one line the sender's side reads: `public`, else the text."""
        return " ".join((self.public or str(self) or type(self).__doc__).split())

    def reason(self):
        """One line for stderr, led by the enhanced status code; an MTA
        copies it into its log and bounces, so what is not printable (an
        address's bidi override, a control character) is escaped."""
        return f"{self.status} {printable(self.reply_text())}"


class TemporaryFailure(LdaError):
    """Delivery failed for a reason that a later retry may not meet."""

    internal = True


class UsageError(LdaError):
    """The command line is wrong."""

    exit_code = EX_USAGE
    smtp_reply = "501 5.5.4"


class UnknownName(LdaError):
    """A mailbox, database, move or partial-delivery record named on the
    admin command line does not exist (67, as an unknown recipient)."""

    exit_code = EX_NOUSER
    smtp_reply = "550 5.1.1"


class AlreadyExists(LdaError):
    """What an admin command would create (a mailbox, a database, a Maildir
    at a move's target) is there already: 73, sysexits' "can't create
    output file", so a script can tell "done before" from a failure."""

    exit_code = EX_CANTCREAT
    smtp_reply = "550 5.0.0"


class NoPermission(LdaError):
    """This user may not read or write lda's state (an admin command run as
    someone other than the owner of state_dir): 77, not a configuration
    error, since nothing in the configuration is wrong."""

    exit_code = EX_NOPERM
    smtp_reply = "550 5.7.1"


class Rejected(LdaError):
    """A Sieve script refused the message for this recipient (ereject, RFC
    5429 section 2.1.1): a permanent answer carrying the script's reason."""

    exit_code = EX_NOPERM
    smtp_reply = "550 5.7.1"


class ConfigError(LdaError):
    """The configuration is wrong; Postfix defers, so mail waits for the fix."""

    internal = True

    exit_code = EX_CONFIG
    smtp_reply = "451 4.3.5"


class BadMessage(LdaError):
    """The message cannot be delivered as it is."""

    exit_code = EX_DATAERR
    smtp_reply = "554 5.6.0"


class MailLoop(BadMessage):
    """The message already passed through this recipient."""

    smtp_reply = "554 5.4.6"


class BadSender(LdaError):
    """The envelope sender cannot be written into Return-Path."""

    exit_code = EX_DATAERR
    smtp_reply = "553 5.1.7"


class UnknownRecipient(LdaError):
    """No mailbox, alias or forward answers to this address."""

    exit_code = EX_NOUSER
    smtp_reply = "550 5.1.1"


class BadAddress(UnknownRecipient):
    """The address is not one lda will deliver to."""

    smtp_reply = "553 5.1.3"


class QuotaExceeded(LdaError):
    """The mailbox is over its storage or message quota: the text names the
    mailbox and its figures, for the log; `public` is lda.toml's
    quota_exceeded_message."""

    smtp_reply = "452 4.2.2"

    def __init__(self, message, public, reject=False):
        super().__init__(message)
        self.public = public
        if reject:
            # quota_full = "reject": a permanent answer, as dovecot-lda -e gives.
            self.exit_code = EX_NOPERM
            self.smtp_reply = "552 5.2.2"


class QuotaTooBig(LdaError):
    """The message is larger than the mailbox's whole storage quota: no
    retry can store it, so it is refused at once rather than retried for
    days as a full mailbox is (RFC 3463 X.2.3, message length exceeds
    administrative limit).  The text, with the figures, is for the log;
    the sender reads `public`, the words of lda policy's
    quota_status_toolarge."""

    exit_code = EX_NOPERM
    smtp_reply = "552 5.2.3"
    public = "Message is larger than the mailbox quota"


class DirectoryStale(TemporaryFailure):
    """An address no mailbox answers to, in a directory mirror that has not
    heard from its source for a while: the mailbox may exist and not be
    copied here yet.  The text names the mirror's age, no path."""

    internal = False


class MailboxMoving(LdaError):
    """The mailbox is being moved to another database; retry shortly."""

    smtp_reply = "450 4.2.1"


class OnOtherHost(TemporaryFailure):
    """The mailbox's database is held by another host of a shared
    directory; the MTA retries, and its transport map sends it there."""

    internal = False  # a host name, for the MTA's transport map

    def __init__(self, address, host):
        super().__init__(f"mailbox {address} is on host {host}")
        self.address, self.host = address, host


class MessageTooBig(LdaError):
    """The message is larger than this system stores (a file size limit)."""

    exit_code = EX_CANTCREAT
    smtp_reply = "552 5.3.4"


class CannotCreate(LdaError):
    """A mailbox file or directory cannot be created (and retrying may help)."""

    smtp_reply = "451 4.3.0"
    internal = True


class MaildirMissing(CannotCreate):
    """A Maildir, or its tmp/, new/ or cur/, does not exist and was not to be
    created (a delivery killed while creating it leaves one half made)."""


class UnsafePath(LdaError):
    """A path would leave its mailbox root or pass through a symlink."""

    exit_code = EX_CONFIG
    smtp_reply = "451 4.3.5"
    internal = True


class NotOwner(LdaError):
    """Running as root, lda does not write into another user's Maildir."""

    exit_code = EX_CONFIG
    smtp_reply = "451 4.3.5"
    internal = True


class KeywordsUnusable(LdaError):
    """A Maildir folder's dovecot-keywords cannot be read or changed (a
    symlink, too large, its lock held too long): the message is stored
    without keywords, and the reason logged; it never fails a delivery."""


class SubscriptionsUnusable(LdaError):
    """A Maildir's subscriptions file cannot be read or changed (a symlink,
    too large, its lock held too long): the folder a delivery made is not
    subscribed, and the reason logged; it never fails a delivery."""


class ForwardFailed(LdaError):
    """The sendmail command did not accept a forwarded copy."""

    internal = True


def unexpected(error, log=None, held=None):
    """Exit status 75 for what no LdaError covers: one line first (Postfix
    reads the status from it), then the traceback to the log, so the
    message is retried, never lost, and no traceback reaches the MTA."""
    if isinstance(error, KeyboardInterrupt):
        sys.stderr.write("4.3.0 lda: interrupted\n")
        return EX_TEMPFAIL
    reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
    sys.stderr.write(f"4.3.0 lda: unexpected error, will retry: {reason}\n")
    if log is not None:
        log.exception(error)
    else:  # before the configuration was read: no log to write it to
        # Lazy: only a failing delivery pays for traceback's imports.
        import traceback

        (held if held is not None else sys.stderr).write(
            "".join(traceback.format_exception(error)))
    return EX_TEMPFAIL

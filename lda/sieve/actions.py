"""What a Sieve run decides: the actions, the Outcome, and the state protocol.

These classes are what the delivery code reads, so they stay small and
import nothing beyond the standard library's cheapest modules.  Folder names
are checked and mapped to Maildir++ directory names in lda.store.folders
(a folder name is the one piece of script output that becomes a path),
where `lda deliver -m` checks its own without importing lda.sieve.
"""

import time

from ..store.folders import (  # noqa: F401 - offered here to the Sieve code
    INBOX,
    MAX_FOLDER_LENGTH,
    UnsafeFolder,
    check_folder,
    maildir_folder,
    modified_utf7,
)

# RFC 5232 section 3 flags that Maildir can store, as info letters
# (cr.yp.to/proto/maildir.html; Dovecot and Courier read the same letters).
MAILDIR_FLAGS = {"\\draft": "D", "\\flagged": "F", "\\answered": "R", "\\seen": "S",
                 "\\deleted": "T"}


def maildir_info(flags):
    """Maildir info letters for the system flags among `flags`, in ASCII
    order as the Maildir spec asks ("FS" for \\Seen \\Flagged)."""
    return "".join(sorted({MAILDIR_FLAGS[f.lower()] for f in flags
                           if f.lower() in MAILDIR_FLAGS}))


def keywords(flags):
    """The flags that are no Maildir system flag: IMAP keywords such as
    $Junk, stored as Dovecot's keyword letters (lda/store/keywords.py,
    which also refuses names that are no IMAP atom, such as a :flags
    argument may carry, as in Pigeonhole)."""
    return [f for f in flags if f.lower() not in MAILDIR_FLAGS]


class Action:
    """Base: value equality and a readable repr, for tests and logs."""

    __slots__ = ()

    def _key(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other):
        return type(self) is type(other) and self._key() == other._key()

    def __hash__(self):
        return hash((type(self).__name__, self._key()))

    def __repr__(self):
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({args})"

    def conflict(self, other):
        """Why this action cannot stand with `other` in one run (a runtime
        error, so implicit keep), or None: the extension that defines an
        action states its incompatibilities here (RFC 5429 section 2.1)."""
        return None


def _flags_text(flags):
    return f' :flags "{" ".join(flags)}"' if flags else ""


class _Store(Action):
    """An action that stores the message: its flags as a Maildir file name
    carries them (system flags in the info, keywords as letters)."""

    __slots__ = ()

    @property
    def maildir_info(self):
        return maildir_info(self.flags)

    @property
    def keywords(self):
        return tuple(keywords(self.flags))


class Keep(_Store):
    """Store into the mailbox the message was addressed to (its inbox, or
    the folder the address extension selects), with these IMAP flags."""

    __slots__ = ("flags", "implicit")
    folder = INBOX
    maildir_folder = None
    create = False
    copy = False

    def __init__(self, flags=(), implicit=False):
        self.flags = tuple(flags)
        self.implicit = implicit

    def describe(self):
        return ("keep (implicit)" if self.implicit else "keep") + _flags_text(self.flags)


class FileInto(_Store):
    """Store into a folder of the same Maildir.  Without `create`, a folder
    that does not exist means the inbox instead, and an error in the log."""

    __slots__ = ("folder", "flags", "create", "copy")

    def __init__(self, folder, flags=(), create=False, copy=False):
        self.folder = folder
        self.flags = tuple(flags)
        self.create = create
        self.copy = copy

    @property
    def maildir_folder(self):
        return maildir_folder(self.folder)

    def describe(self):
        return (f'fileinto "{self.folder}"' + (" :copy" if self.copy else "")
                + (" :create" if self.create else "") + _flags_text(self.flags))


class Redirect(Action):
    """Forward the message, unchanged, to another address."""

    __slots__ = ("address", "copy")

    def __init__(self, address, copy=False):
        self.address = address
        self.copy = copy

    def describe(self):
        return f'redirect "{self.address}"' + (" :copy" if self.copy else "")


class Discard(Action):
    """The script threw the message away (it only cancels the implicit keep)."""

    __slots__ = ()

    def describe(self):
        return "discard"


class Vacation(Action):
    """An auto-reply (RFC 5230) to send to `to` with the null envelope sender
    (RFC 3834 section 3.3); `reply_bytes` is the whole message, LF line ends;
    no other reply to `to` for `handle` within `seconds` (RFC 6131)."""

    __slots__ = ("to", "reply_bytes", "handle", "seconds", "subject", "from_")

    def __init__(self, to, reply_bytes, handle, seconds, subject="", from_=""):
        self.to = to
        self.reply_bytes = reply_bytes
        self.handle = handle
        self.seconds = seconds
        self.subject = subject
        self.from_ = from_

    def describe(self):
        return f'vacation to {self.to} (subject "{self.subject}")'


STORES = (Keep, FileInto)


class Outcome:
    """The result of one run.

    actions: explicit actions, in script order, duplicates merged.
    implicit_keep: True when no action cancelled the implicit keep (RFC 5228
      section 2.10.2); implicit_flags are the flags it carries (RFC 5232).
    errors: one line each ("line 7: ..."); an error means implicit keep.
    log: what the script did that the delivery log should show.
    records: state writes to make once the message is safely delivered
      (commit()); empty after an error, as RFC 7352 section 3 asks.
    header: None, or the header fields as editheader left them, which every
      copy stored or redirected carries: [(lower-case name, value, source)],
      source the field's index in message.headers.fields or, for an added
      one, its bytes as written ("Name: value\n", folded).  None after an
      error (RFC 5293 section 7: the implicit keep takes the original).
    """

    def __init__(self, actions=(), implicit_keep=True, implicit_flags=(), errors=(),
                 log=(), records=(), header=None):
        self.actions = list(actions)
        self.implicit_keep = implicit_keep
        self.implicit_flags = tuple(implicit_flags)
        self.errors = list(errors)
        self.log = list(log)
        self.records = list(records)
        self.header = header
        self.flags = ()  # imap4flags' internal variable as the script left it

    def all_actions(self):
        """The explicit actions plus, when it applies, Keep(implicit=True):
        everything the delivery has to carry out, in order."""
        if not self.implicit_keep:
            return list(self.actions)
        return self.actions + [Keep(self.implicit_flags, implicit=True)]

    def describe(self):
        return [action.describe() for action in self.all_actions()]

    def commit(self, state):
        """Record duplicate IDs and vacation replies in the caller's state.
        Call it after the message is stored (and the reply handed over), so
        that a delivery retried after a failure sees the same answers."""
        for kind, *args in self.records:
            if kind == "duplicate":
                state.duplicate_record(*args)
            elif kind == "vacation":
                state.vacation_record(*args)
        self.records = []

    def __repr__(self):
        return (f"Outcome(actions={self.actions!r}, implicit_keep={self.implicit_keep}, "
                f"errors={self.errors!r})")


class Envelope:
    """The SMTP envelope of the delivery and what else a script may know of
    it: from_ is "" for the null sender; delimiters (lda's
    recipient_delimiter) split :user from :detail."""

    __slots__ = ("from_", "to", "original_recipient", "delimiters", "environment", "options")

    def __init__(self, from_="", to="", original_recipient=None, delimiters="+",
                 environment=None, options=None):
        self.from_ = _bare(from_ or "")
        self.to = _bare(to or "")
        self.original_recipient = _bare(original_recipient) if original_recipient else None
        self.delimiters = delimiters
        # RFC 5183 items the caller knows ("remote-ip", "phase", ...), and
        # the site's Sieve settings from lda.toml (Config.sieve_options()).
        self.environment = dict(environment or {})
        self.options = dict(options or {})


def _bare(address):
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return address


class MemoryState:
    """The state protocol, kept in memory: for `lda sieve test` and tests.

    A caller's own state object needs the same five members:
      now() -> seconds since the epoch
      duplicate_seen(key, seconds, last) -> bool: key recorded and not expired
      duplicate_record(key, seconds, last): remember key for `seconds`;
        without `last` an entry that has not expired keeps its time (RFC 7352
        section 3.3: :last measures from the most recent occurrence)
      vacation_recently(sender, handle, seconds) -> bool: a reply recorded
        less than `seconds` ago (the period, RFC 5230 :days or RFC 6131 :seconds)
      vacation_record(sender, handle, seconds)
    and, for the mailbox extension's mailboxexists test (RFC 5490):
      mailbox_exists(folder) -> bool: folder (checked by check_folder,
        "INBOX" for the inbox) exists in the user's Maildir; here INBOX
        and the names given as `folders`
    """

    def __init__(self, now=time.time, folders=()):
        self.now = now
        self.duplicates = {}  # key -> expiry time
        self.vacations = {}   # (sender, handle) -> time of the reply
        self.folders = {check_folder(name) for name in folders}

    def mailbox_exists(self, folder):
        return folder == INBOX or folder in self.folders

    def duplicate_seen(self, key, seconds, last):
        expiry = self.duplicates.get(key)
        return expiry is not None and expiry > self.now()

    def duplicate_record(self, key, seconds, last):
        if last or not self.duplicate_seen(key, seconds, last):
            self.duplicates[key] = self.now() + seconds

    def vacation_recently(self, sender, handle, seconds):
        when = self.vacations.get((sender.lower(), handle))
        return when is not None and self.now() - when < seconds

    def vacation_record(self, sender, handle, seconds):
        self.vacations[(sender.lower(), handle)] = self.now()

"""What lda tells Postfix at SMTP time, from the code a delivery runs.

Every answer resolves the address with the delivery's own resolver
(lda/deliver/resolve.py: aliases, the directory, forwards, +extensions) and
judges quota with the delivery's own quota_failure(), so `postmap -q`, a
policy reply and the delivery that follows cannot disagree.  An answer that
lda cannot give because the directory, the aliases or a maildirsize cannot
be read is a temporary one (DEFER_IF_PERMIT, TEMP): lda being unwell never
rejects mail.

With databases on several hosts (README, "Scaling out") the front asks
these of every host's mailboxes: a mailbox another host holds exists (the
mailbox map says OK), is that host's to judge (the policy says DUNNO), is
routed to that host (the transport map answers its transport), and has
its forwards applied there (the alias map says NOTFOUND).
"""

from ..deliver.envelope import domain_of, normalize, split_extension
from ..deliver.resolve import Plan
from ..errors import (BadAddress, LdaError, MailboxMoving, OnOtherHost, QuotaTooBig,
                      TemporaryFailure, UnknownRecipient)
from ..store.maildirsize import quota_failure

# The policy action that leaves the decision to the restrictions after.
DUNNO = "DUNNO"
# Socketmap replies (Postfix's socketmap_table(5)).
OK, NOTFOUND, TEMP, PERM = "OK", "NOTFOUND", "TEMP", "PERM"
MAPS = ("mailbox", "alias", "domain", "transport")


class Answers:
    """The policy decision and the socketmap lookups; `resolvers` is a
    ThreadResolvers, so each server thread has its own; `failed` is called
    (in that thread) with what made an answer a temporary failure."""

    def __init__(self, config, resolvers, failed):
        self.config, self.resolvers, self.failed = config, resolvers, failed

    # --- the policy service ----------------------------------------------

    def policy(self, attributes):
        """The action for one smtpd_access_policy request (a dict).

        quota_status_success (which a site may set to OK) answers only a
        recipient lda judged to fit; what lda does not judge (another
        stage, an unknown or invalid recipient without policy_reject_unknown,
        a mailbox another host holds or a move is taking there, room for a
        message whose size= is no number) is DUNNO, as Dovecot's
        quota-status answers most of it, so an OK never permits it past the
        restrictions after check_policy_service."""
        config = self.config
        if attributes.get("protocol_state", "").upper() != "RCPT":
            return DUNNO
        # As written in RCPT TO: Postfix strips a dot that ends the
        # domain when it routes the address, so a delivery never sees it.
        recipient = attributes.get("recipient", "")
        if recipient.endswith(".") and "@" in recipient:
            recipient = recipient[:-1]
        size = declared_size(attributes.get("size", ""))  # None: policy.decide logs it
        try:
            plan = self.resolvers.get().resolve(recipient)
            failures = [quota_failure(config, t, max(1, size or 0)) for t in plan.targets]
        except BadAddress as e:
            return self._unknown(recipient, f"553 5.1.3 {e}")
        except UnknownRecipient:
            return self._unknown(recipient, config.quota_status_nouser)
        except (OnOtherHost, MailboxMoving):
            # Its maildirsize is on that host, or on its way to another:
            # the host that delivers judges it (a move defers there, 4.2.1,
            # and Postfix queues the message rather than the sender).
            return DUNNO
        except LdaError as e:  # unreadable directory, aliases, maildirsize; a move
            return _defer(self.failed, recipient, e)
        # An alias or forward with several targets refuses only when none
        # of them could take the message: otherwise lda delivers to the
        # others and keeps a partial delivery for the full one.
        if any(f is None for f in failures):
            # Room for one byte says nothing of a message of unknown size.
            return DUNNO if size is None else config.quota_status_success
        if all(isinstance(f, QuotaTooBig) for f in failures):
            return config.quota_status_toolarge
        return self.overquota()

    def overquota(self):
        """quota_status_overquota, else by quota_full: a 5XX when lda would
        reject the message (77), a 4XX when it would defer it (75), with
        the text a delivery answers (quota_exceeded_message)."""
        if self.config.quota_status_overquota:
            return self.config.quota_status_overquota
        code = "552 5.2.2" if self.config.quota_full == "reject" else "452 4.2.2"
        return f"{code} {self.config.quota_exceeded_message}"

    def _unknown(self, recipient, reply):
        return reply if self.config.policy_reject_unknown else DUNNO

    # --- the socketmap ---------------------------------------------------

    def lookup(self, name, key):
        """(status, value) for a socketmap request `name key`."""
        method = getattr(self, "map_" + name, None) if name in MAPS else None
        if method is None:
            return PERM, f"no map named {_printable(name, 80)!r} (lda has {', '.join(MAPS)})"
        try:
            return method(key)
        except LdaError as e:
            self.failed(f"{name} {_printable(key)}: {e}")
            return TEMP, _one_line(str(e))

    def map_mailbox(self, key):
        """Every address a delivery accepts (its mailboxes, their
        +extensions, aliases and forwards), for virtual_mailbox_maps."""
        plan = self._plan(key)
        return (OK, plan.canonical) if plan else (NOTFOUND, "")

    def map_alias(self, key):
        """What an alias expands to, one level, comma-separated, for
        virtual_alias_maps: Postfix expands the members further itself.

        Never a mailbox's forwards, which the host that delivers the mailbox
        applies, as local(8) applies ~/.forward at delivery: expanded here
        too, a forward that keeps a copy ("alice -> carol, alice") would
        reach carol twice, once from Postfix and once from alice's host,
        which resolves alice again."""
        address = _address(key, self.config.recipient_delimiter)
        if address is None:
            return NOTFOUND, ""
        members = self.resolvers.get().members(address)
        return (OK, ",".join(members)) if members else (NOTFOUND, "")

    def map_domain(self, key):
        """The domains lda has mailboxes or aliases in, for
        virtual_mailbox_domains."""
        domain = key.strip().lower().rstrip(".")
        # RFC 5321 section 4.5.3.1.2: no domain is longer (and SQLite's
        # LIKE refuses a pattern of 50,000 characters).
        if not domain or len(domain) > 255 or not _printable_ascii(domain) or "@" in domain:
            return NOTFOUND, ""
        resolver = self.resolvers.get()
        if resolver.directory.has_domain(domain) or (
                resolver.aliases is not None and resolver.aliases.has_domain(domain)):
            return OK, domain
        return NOTFOUND, ""

    def map_transport(self, key):
        """The delivery service of an address (or a domain) lda takes, for
        transport_maps.  A mailbox (or its +extension) whose database a
        host holds: that host's transport (`lda host add`), so a front-end
        Postfix sends it there.  Anything else lda takes (a mailbox in a
        database of no host, an alias, a domain): socketmap_transport,
        else lmtp_listen as Postfix writes it.  An alias is expanded by
        the host that receives it; on a site of several hosts, the front
        expands aliases first (virtual_alias_maps with the alias map), so
        each host receives only its own mailboxes, and applies their
        forwards (re-sending through the front what another host holds)."""
        if "@" not in key:
            found = self.map_domain(key)[0] == OK
            return self._default_transport() if found else (NOTFOUND, "")
        if self._plan(key) is None:
            return NOTFOUND, ""
        resolver = self.resolvers.get()
        mailbox = resolver.directory.mailbox(_address(key, self.config.recipient_delimiter))
        if mailbox is None:  # alice+tag@: the mailbox of the address without it
            base, _ = split_extension(_address(key, self.config.recipient_delimiter), self.config.recipient_delimiter)
            mailbox = resolver.directory.mailbox(base)
        if mailbox is None or not mailbox.host:
            return self._default_transport()
        transport = resolver.directory.transport(mailbox.host)
        if not transport:  # `lda host remove` refuses this; a directory edited by hand
            raise TemporaryFailure(f"database {mailbox.database} is on host "
                                   f"{mailbox.host}, which has no transport")
        return OK, transport

    def _default_transport(self):
        transport = self.transport()
        if not transport:
            return PERM, "neither socketmap_transport nor lmtp_listen is set"
        return OK, transport

    def transport(self):
        config = self.config
        if config.socketmap_transport:
            return config.socketmap_transport
        listen = config.lmtp_listen
        if not listen:
            return ""
        if listen.startswith("unix:") or listen.startswith("/"):
            return "lmtp:unix:" + listen.removeprefix("unix:")
        return "lmtp:inet:" + listen

    def _plan(self, key):
        """The delivery's Plan for an address key, None when lda would not
        take it (unknown, or no valid address: "@domain" and bare local
        parts, which Postfix also asks, included)."""
        address = _address(key, self.config.recipient_delimiter)
        if address is None:
            return None
        try:
            return self.resolvers.get().resolve(address)
        except UnknownRecipient:
            return None
        except (OnOtherHost, MailboxMoving):
            # It exists; another host delivers it, or the host that has it
            # defers it until its move is done (Postfix queues it meanwhile).
            return Plan(key, address, [], None)


def declared_size(value):
    """The size= attribute: ASCII digits (SMTPD_POLICY_README; RFC 1870's
    SIZE=), empty or absent as 0, no size declared; None for anything else,
    which Postfix never writes ("3000" and a NUL, which Dovecot's C string
    reads as 3000, "-1", "abc"): a size lda cannot read.  One too long to be
    a number is no smaller: it stays larger than any quota.  Without SIZE=
    the message is at least one byte (the caller's max): a mailbox at its
    limit can take none."""
    if not value:
        return 0
    if not (value.isascii() and value.isdigit()):
        return None
    return int(value) if len(value) <= 40 else 10 ** 40


def _address(key, delimiters):
    """The normalized address of a lookup key, or None for a key that is no
    address lda delivers to (read as a delivery reads it: a space or
    length in the extension is the extension's, see envelope.normalize)."""
    if "@" not in key or key.startswith("@"):
        return None
    try:
        address = normalize(key, delimiters)
    except BadAddress:
        return None
    return address if domain_of(address) else None


def _defer(failed, recipient, error):
    """The reply reaches the SMTP client (Postfix's 450 4.3.0 ...): it says
    what Postfix says of a table it cannot read, and only the log names
    the file and the error, as Dovecot's quota-status does."""
    failed(f"{_printable(recipient)}: {error}")
    return "DEFER_IF_PERMIT 4.3.0 Temporary lookup failure"


def _one_line(text, limit=200):
    return " ".join(text.split())[:limit]


def _printable(text, limit=200):
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _printable_ascii(text):
    return text.isascii() and text.isprintable() and " " not in text

"""What `lda lmtp` does with each command: the delivery core, in threads.

RCPT resolves the address at once (550 5.1.1 for an unknown user, and with
lmtp_rcpt_check_quota, the default, a 452 for a full mailbox, as Dovecot's
lmtp_rcpt_check_quota does, or 552 5.2.3 when MAIL's SIZE= is more than the
whole quota).  At RCPT by default, unlike Dovecot: fetchmail answers a 4xx
after DATA for one recipient of several with a bounce and deletes the
message from its server (that recipient never gets it), where a 4xx at RCPT
keeps it for the next poll.  DATA runs the same Delivery as `lda deliver`
and answers each recipient.  Disk and SQLite work runs on the event loop,
holding up the process's other sessions while it lasts, as a Dovecot lmtp
process does (other processes take the new sessions), or with lmtp_workers
in a pool of threads.
"""

import asyncio
import io
import threading
from email.utils import formatdate

from ..deliver.delivery import Delivery, prefix_for
from ..deliver.envelope import check_sender, normalize
from ..deliver.resolve import ThreadResolvers
from ..errors import BadAddress, BadSender, LdaError, UnknownRecipient
from ..log import failure_status
from ..store.maildirsize import quota_failure


class DeliveryHandler:
    def __init__(self, config, executor, log, clock=None):
        self.config = config
        self.executor = executor
        self.log = log
        self.clock = clock
        self.local = threading.local()
        self.resolvers = ThreadResolvers(config)
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def _resolver(self):
        return self.resolvers.get()

    async def _work(self, fn, *args):
        """fn(*args) in a delivery thread, or here on the event loop when the
        process has none (lmtp_workers = 0)."""
        if self.executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        """The sender goes into Return-Path: checked as `lda deliver -f` is,
        and refused here (RFC 3463 5.1.7) rather than at DATA, where it
        would fail every recipient."""
        try:
            check_sender(address)
        except BadSender as e:
            return f"501 {e.status} {_text(e)}"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if len(envelope.rcpt_tos) >= self.config.lmtp_max_recipients:
            # RFC 5321 section 4.5.3.1.10: the client sends the rest in
            # another transaction.
            return "452 4.5.3 too many recipients"
        try:
            normalize(address, self.config.recipient_delimiter)
        except BadAddress as e:  # as `lda deliver` refuses it (RFC 3463 5.1.3)
            if _quoted_with_space(address, self.config.recipient_delimiter):
                # Well formed (RFC 5321 section 4.1.2), and no mailbox of
                # lda's has a space: no such user, as Dovecot's lmtp says.
                return f"{UnknownRecipient.smtp_reply} <{address}>: unknown recipient {address}"
            return f"501 {e.status} {_text(e)}"
        try:
            plan = await self._work(self._check_recipient, address, envelope, session)
        except LdaError as e:
            if e.public is not None or e.internal:
                # The reply leaves out what the administrator needs (a full
                # mailbox's figures, a path): the log line a delivery would write.
                self.log.target(None, address, None, failure_status(e), e.status, str(e))
            return f"{e.smtp_reply} <{address}>: {_text(e)}"
        except Exception as e:  # noqa: BLE001 - answer 451, never drop the session
            self.log.error(f"RCPT {address}: {type(e).__name__}: {e}")
            return f"451 4.3.0 <{address}>: internal error, try again later"
        envelope.rcpt_tos.append(address)
        # DATA delivers by this plan, if nothing it came from has changed by
        # then; aiosmtpd gives each transaction a new envelope.
        vars(envelope).setdefault("lda_plans", {})[address] = plan
        return "250 2.1.5 OK"

    def _check_recipient(self, address, envelope, session):
        """The recipient's Plan, or the LdaError that refuses it."""
        plan = self._resolver().resolve(address)
        if self.config.lmtp_rcpt_check_quota:
            # SIZE= is the message as sent; stored, it has lda's own fields
            # on top, which must fit too, or a 250 here becomes a refusal
            # after DATA (fetchmail: a bounce and a delete).
            size = _declared_size(envelope.mail_options)
            if size:
                size += len(prefix_for(plan, envelope.mail_from or "", ()))
                if self.config.lmtp_add_received_header:
                    size += len(self.received(session, envelope))
            for target in plan.targets:
                failure = target.primary and quota_failure(self.config, target, size)
                if failure:
                    raise failure
        return plan

    async def handle_DATA(self, server, session, envelope):
        """A reply for each recipient, in RCPT order (RFC 2033 section 4.2)."""
        self.in_flight += 1
        self.idle.clear()
        if self.config.lmtp_add_received_header:
            envelope.original_content = (self.received(session, envelope)
                                         + envelope.original_content)
        try:
            # The Delivery logs each recipient's outcome, once (its status
            # line has the path and reason that an internal error's reply,
            # _text, leaves out).
            results = await self._work(self._deliver, envelope, _peer(session))
            replies = [_reply(r) for r in results]
        except Exception as e:  # noqa: BLE001 - 451 for all: the MTA retries
            self.log.exception(e)
            replies = [f"451 4.3.0 <{r}>: internal error, try again later"
                       for r in envelope.rcpt_tos]
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()
        return replies

    def received(self, session, envelope):
        """The trace field of RFC 5321 section 4.4, as Dovecot's
        lmtp_add_received_header writes it: the recipient is named only
        when there is one, as the others would see it in their copy.  The
        LHLO name, sender and recipient were checked for control
        characters (lda.lmtp.protocol, lda.deliver.envelope): none can start a field."""
        peer = session.peer
        source = f" ([{peer[0]}])" if isinstance(peer, tuple) and peer else ""
        rcpts = envelope.rcpt_tos
        recipient = f"\r\n\tfor <{rcpts[0]}>" if len(rcpts) == 1 else ""
        field = (f"Received: from {session.host_name}{source}\r\n"
                 f"\tby {self.config.hostname} (lda) with LMTP\r\n"
                 f"\t(envelope-from <{envelope.mail_from or ''}>){recipient};\r\n"
                 f"\t{formatdate(localtime=True)}\r\n")
        return field.encode("utf-8", "surrogateescape")

    def _deliver(self, envelope, peer=None):
        kwargs = {"clock": self.clock} if self.clock else {}
        if not hasattr(self.local, "databases"):
            # Kept per thread (a connection stays in its thread): no connect,
            # settings and schema check, nor close, per message.  Nor does
            # SQLite checkpoint and delete the WAL, as it does when the last
            # connection to a database closes, for the next one to re-create.
            self.local.databases = {}
        delivery = Delivery(self.config, self._resolver(), self.log,
                            sender=envelope.mail_from or "", kept=self.local.databases,
                            peer=peer, **kwargs)
        # RCPT's plans, which Delivery resolves again if the aliases or the
        # directory changed since: resolving is a fifth of a message's
        # Python time.
        return delivery.run(list(envelope.rcpt_tos), io.BytesIO(envelope.original_content),
                            getattr(envelope, "lda_plans", None))


def preload():
    """Import now, once before the fork, what a delivery imports only when
    it first needs it (the modules this one names at its top are loaded
    already), rather than in the first delivery of each process (and under
    the import lock, in every worker at once)."""
    import zlib  # noqa: F401  (lock stripes: see lda.startup.zlib.FEW)

    from ..deliver import message  # noqa: F401
    from ..store import deliveredto, directory  # noqa: F401

    # Sieve: ~60 ms of imports (the interpreter, the parser and every
    # extension) that each child paid at its first script, holding up its
    # sessions meanwhile; here once, for all of them, whether or not a
    # mailbox has a script (a user may install one at any time).
    from ..deliver import filtering, sievescripts  # noqa: F401
    from ..sieve import interpreter, parser  # noqa: F401


def _reply(result):
    if result.ok:
        duplicate = result.outcomes and all(o == "duplicate"
                                            for o in result.outcomes.values())
        detail = "already delivered, duplicate discarded" if duplicate else "delivered"
        return f"250 2.0.0 <{result.recipient}> {detail}"
    return f"{result.error.smtp_reply} <{result.recipient}> {_text(result.error)}"


def _peer(session):
    """(client address, its LHLO name) for Sieve's environment extension;
    a Unix socket has no address ("")."""
    peer = session.peer
    address = peer[0] if isinstance(peer, tuple) and peer else ""
    return str(address), session.host_name or ""


def _text(error):
    """What the client reads: an MTA copies it into the sender's bounce, so
    a failure of the server's own files names none of them (lda's log
    has the text), as Dovecot's lmtp answers an internal error."""
    if error.internal:
        return "internal error, details in the server log"
    return error.reply_text()[:300]


def _quoted_with_space(address, delimiters):
    """A quoted local part with a space in it, and nothing else the
    recipient check refuses: "a b"@example.org, "a b+x"@example.org."""
    local = address.rpartition("@")[0]
    if not (len(local) > 2 and local[0] == local[-1] == '"' and " " in local):
        return False
    try:
        normalize(address.replace(" ", ""), delimiters)
    except BadAddress:
        return False
    return True


def _declared_size(mail_options):
    for option in mail_options or ():
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0

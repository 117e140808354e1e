"""reject and ereject (RFC 5429): the recipient refuses the message.

ereject refuses it in the protocol (section 2.1.1): over LMTP the
recipient is answered 550 5.7.1 with the reason, and `lda deliver` exits
77 with it, so the MTA bounces; nothing is stored.  reject sends the
sender a refusal in the MDN format of RFC 3798 (section 2.2.1), from the
null envelope sender, once per message (the delivery's reply target,
which DeliveredTo keeps to exactly once).  Both cancel the implicit keep.

As Pigeonhole (checked with sieve-test 0.5.19), either one with keep,
fileinto or redirect (with or without :copy), with vacation, or with a
second reject or ereject is a runtime error: implicit keep.  discard and
the flag commands stand with it.

Decisions:
- reject of a message from the null sender sends nothing and logs why
  (Pigeonhole does the same): a refusal must not answer a bounce.
- ereject of one mailbox among several that one envelope recipient reaches
  (an alias) cannot refuse that recipient without refusing the others'
  copies: the refusal goes as reject's MDN instead (RFC 5429 section 2.1.2
  asks for a DSN when the protocol cannot carry it; lda sends the MDN it
  already builds).
- ereject's reason becomes one line of printable ASCII (an LMTP reply is
  ASCII), at most MAX_PROTOCOL_REASON characters.
- The MDN's third part is the original header as it came
  (text/rfc822-headers, RFC 3798 section 3 allows it), not the body.
"""

import os

from ..actions import Action
from ..spec import STRING, Spec

CAPABILITIES = ("reject", "ereject")
COMMANDS = {"reject": Spec("reject", positional=[("reason", STRING)]),
            "ereject": Spec("ereject", positional=[("reason", STRING)])}
TESTS = {}
TAGS = {}

MAX_PROTOCOL_REASON = 200  # characters of ereject's reason in the 550 reply
MAX_REASON = 16384         # characters of the reason in the MDN's text
MAX_ORIGINAL_HEADER = 65536  # bytes of the original header in the MDN
DELIVERING = ("Keep", "FileInto", "Redirect")


class Reject(Action):
    """Refuse the message with an MDN to `to` (RFC 5429 section 2.2.1);
    `reply_bytes` is the whole MDN (LF line ends), None when the sender is
    null and nothing is sent."""

    __slots__ = ("reason", "to", "reply_bytes")
    command = "reject"

    def __init__(self, reason, to, reply_bytes):
        self.reason = reason
        self.to = to
        self.reply_bytes = reply_bytes

    def conflict(self, other):
        kind = type(other).__name__
        if isinstance(other, Reject):
            return f"{self.command}: the message was refused already (RFC 5429 section 2.1)"
        if kind in DELIVERING:
            return (f"{self.command} cannot stand with {other.describe()}: it delivers the "
                    "message (RFC 5429 section 2.1)")
        if kind == "Vacation":
            return (f"{self.command} cannot stand with vacation: both answer the sender "
                    "(RFC 5429 section 2.1)")
        return None

    def describe(self):
        refusal = f"refusal to {self.to}" if self.reply_bytes is not None else (
            "no refusal sent to the null sender")
        return f'{self.command} "{one_line(self.reason)[:60]}" ({refusal})'


class Ereject(Reject):
    """Refuse the message in the protocol: 550 5.7.1 `reason` (one line);
    `to` and `reply_bytes` are the MDN sent instead where the protocol
    cannot refuse this mailbox alone (see the module's Decisions)."""

    __slots__ = ()
    command = "ereject"

    def describe(self):
        return f'ereject "{self.reason}"'


def cmd_reject(execution, node):
    reason = execution.string(node["reason"])
    execution.keep_cancelled = True
    sender = execution.envelope.from_
    if not sender:
        execution.log.append("reject: the sender is null: no refusal sent")
    execution.add(Reject(reason, sender, mdn(execution, reason) if sender else None))


def cmd_ereject(execution, node):
    reason = execution.string(node["reason"])
    execution.keep_cancelled = True
    sender = execution.envelope.from_
    execution.add(Ereject(protocol_reason(reason), sender,
                          mdn(execution, reason) if sender else None))


def protocol_reason(reason):
    """The reason as one line of printable ASCII for an SMTP/LMTP reply."""
    text = " ".join(reason.replace("\0", " ").split())
    text = "".join(c if " " <= c <= "~" else "?" for c in text)[:MAX_PROTOCOL_REASON]
    return text or "rejected by the recipient's filter"


def one_line(value):
    return " ".join(value.split())


def mdn(execution, reason):
    """The refusal of RFC 5429 section 2.2.1: a multipart/report of RFC
    3798, bytes with LF line ends."""
    from ... import __version__
    from ..fields import text
    from ..vacation import encode, rfc5322_date

    envelope = execution.envelope
    host = envelope.environment.get("host") or "localhost"
    postmaster = envelope.options.get("postmaster") or f"MAILER-DAEMON@{host}"
    now = execution.state.now()
    boundary = f"lda-{os.urandom(8).hex()}"
    original_id = execution.fields("message-id")
    original_id = one_line(text(original_id[0])) if original_id else ""
    subject = execution.fields("subject")
    subject = one_line(text(subject[0]))[:200] if subject else ""
    fields = [("From", postmaster), ("To", f"<{envelope.from_}>"),
              ("Subject", encode(f"Refused: {subject}" if subject else "Message refused")),
              ("Date", rfc5322_date(now)),
              ("Message-ID", f"<{boundary}.{int(now)}@{host}>")]
    if original_id:
        fields += [("In-Reply-To", original_id), ("References", original_id)]
    fields += [("Auto-Submitted", "auto-replied"), ("Precedence", "bulk"), ("MIME-Version", "1.0"),
               ("Content-Type", "multipart/report; report-type=disposition-notification;"
                                f'\n\tboundary="{boundary}"')]
    human = reason.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "")[:MAX_REASON]
    report = [f"Reporting-UA: {host}; lda {__version__}"]
    if envelope.original_recipient:
        report.append(f"Original-Recipient: rfc822; {envelope.original_recipient}")
    report.append(f"Final-Recipient: rfc822; {envelope.to}")
    if original_id:
        report.append(f"Original-Message-ID: {original_id}")
    report.append("Disposition: automatic-action/MDN-sent-automatically; deleted")
    head = "".join(f"{name}: {value}\n" for name, value in fields)
    body = (f"\n--{boundary}\n"
            "Content-Type: text/plain; charset=utf-8\n"
            f"Content-Transfer-Encoding: {'7bit' if human.isascii() else '8bit'}\n\n"
            f"Your message to <{envelope.to}> was refused by the recipient's mail filter:\n\n"
            f"{human.rstrip(chr(10))}\n"
            f"\n--{boundary}\n"
            "Content-Type: message/disposition-notification\n\n"
            + "".join(line + "\n" for line in report)
            + f"\n--{boundary}\n"
            "Content-Type: text/rfc822-headers\n\n")
    return (head + body).encode("utf-8") + original_header(execution) + (
        f"\n--{boundary}--\n".encode())


def original_header(execution):
    """The message's header block as it came (RFC 3798 section 3), LF line
    ends, cut after the last whole line within MAX_ORIGINAL_HEADER bytes."""
    raw = execution.message.raw(MAX_ORIGINAL_HEADER + 2).replace(b"\r\n", b"\n")
    if raw.startswith(b"\n"):
        return b""  # no header at all
    end = raw.find(b"\n\n")
    if end >= 0:
        return raw[:end + 1]
    if len(raw) <= MAX_ORIGINAL_HEADER:  # a message that is all header
        return raw if raw.endswith(b"\n") else raw + b"\n"
    return raw[:raw.rfind(b"\n", 0, MAX_ORIGINAL_HEADER) + 1]

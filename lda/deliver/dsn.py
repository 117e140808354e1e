"""Delivery status notifications (RFC 3464): lda bouncing one recipient alone.

Two recipients are bounced by lda itself rather than by the MTA:
- a partial delivery given up: it reached every target but one forward,
  and `lda partial` stops retrying that target;
- one recipient of several that share a command's exit status, refused for
  good once another's copy is stored (delivery.Delivery._bounce_alone): a
  5.X.X exit would make pipe(8) bounce the stored ones too.

The sender learns of it from a `multipart/report; report-type=delivery-status`
message (RFC 6522): a human-readable part, the machine-readable
`message/delivery-status` part, and the returned message's header block as
`text/rfc822-headers` (RFC 6522 section 3.3: the headers only, not the
body).  It is sent with the null envelope sender so that it can never itself
be bounced (RFC 5321 section 4.5.5).

It uses the standard `email` package, which a delivery imports only to send
one: it would re-serialize a message, and it costs import time.
"""

import email.policy
import email.utils
import re
import tempfile
import textwrap
from datetime import datetime, timezone
from email.message import EmailMessage, Message, MIMEPart

from .sendmail import sendmail as run_sendmail

SUBJECT = "Undelivered Mail Returned to Sender (partial delivery)"
# A header block larger than this is cut at a line end: the sender needs to
# recognise the message, not receive 8 MB of Received: fields back.
MAX_HEADER_BYTES = 256 * 1024
# sendmail -i reads LF line ends, as the Maildir copies have them.
POLICY = email.policy.default.clone(linesep="\n")

# An enhanced status code (RFC 3463) leading the reason, or after a ": ",
# as an MTA's own reply text carries it.
ENHANCED_STATUS = re.compile(r"(?:^|: )[245]\.(\d{1,3})\.(\d{1,3})\b")
# Without one, the reason's wording picks the subject and detail (RFC 3463
# section 3); the class is always 5, the delivery having been given up.
STATUS_WORDS = (
    ("mailbox full", "5.2.2"),         # X.2.2 mailbox full
    ("over quota", "5.2.2"),
    ("being moved", "5.2.1"),          # X.2.1 mailbox disabled
    ("no longer exists", "5.1.1"),     # X.1.1 bad destination mailbox address
    ("unknown recipient", "5.1.1"),
    ("loop", "5.4.6"),                 # X.4.6 routing loop detected
    (" exited ", "5.3.0"),             # X.3.0 the sendmail command failed
    ("cannot run", "5.3.0"),
    ("timed out", "5.3.0"),
)
LEADING_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3} ")
REPLY_CODES = {"5.2.2": "552", "5.1.1": "550", "5.2.1": "550"}


def returned_to(sender):
    """Whom a DSN for a message from sender goes to: None for the null
    sender, and for MAILER-DAEMON, the name Postfix's pipe(8) gives it
    unless its line sets null_sender= (a bounce is never bounced, RFC 5321
    section 4.5.5)."""
    if not sender or sender.lower() == "mailer-daemon":
        return None
    return sender


def status_for(reason):
    """The RFC 3463 status for a final failure with this reason (default 5.0.0)."""
    found = ENHANCED_STATUS.search(reason)
    if found:
        return f"5.{found[1]}.{found[2]}"
    lowered = reason.lower()
    for words, status in STATUS_WORDS:
        if words in lowered:
            return status
    return "5.0.0"


def final_reason(reason):
    """The reason as a bounce states it: the final status once, in place of
    the temporary code the record was led by ("4.2.2 mailbox full" becomes
    "5.2.2 mailbox full", never "5.2.2 4.2.2 mailbox full")."""
    return f"{status_for(reason)} {LEADING_STATUS.sub('', reason)}"


def build_dsn(config, record, header_block, now):
    """The DSN for one partial-delivery record, as bytes ready for sendmail.

    record: a partial_deliveries row (sender, recipient, target, reason,
    created, last_attempt, attempts), or the same of a recipient bounced at
    its first attempt with "kept": False; header_block: the message's
    header bytes, or None when the spooled copy is gone."""
    # One line: a header field or a text line must never be split by a reason.
    record = {**record, "reason": " ".join(str(record["reason"]).split())}
    status = status_for(record["reason"])
    report = EmailMessage(policy=POLICY)
    report["From"] = f"Mail Delivery System <{config.postmaster}>"
    report["To"] = record["sender"]
    report["Subject"] = SUBJECT
    report["Date"] = mail_date(now)
    report["Message-ID"] = email.utils.make_msgid("lda.dsn", domain=config.hostname)
    report["Auto-Submitted"] = "auto-replied"  # RFC 3834 section 5
    report.set_type("multipart/report")
    report.set_param("report-type", "delivery-status")
    text = MIMEPart(policy=POLICY)
    text.set_content(explanation(config, record, now))
    report.attach(text)
    report.attach(_status_part(config, record, status))
    if header_block:
        headers = MIMEPart(policy=POLICY)
        returned = header_block.decode("utf-8", "replace")
        headers.set_content(returned, subtype="rfc822-headers", cte=_plain_cte(returned))
        report.attach(headers)
    return report.as_bytes()


def _plain_cte(text):
    """7bit or 8bit while every line fits SMTP's 998 octets (RFC 5322 section
    2.1.1), so the returned header reads as it was; else the email package's
    choice (quoted-printable or base64)."""
    if max(map(len, text.encode().split(b"\n"))) > 998:
        return None
    return "7bit" if text.isascii() else "8bit"


def _status_part(config, record, status):
    """message/delivery-status: one per-message block, one per-recipient block
    (RFC 3464 sections 2.2 and 2.3)."""
    per_message = Message(policy=POLICY)
    per_message["Reporting-MTA"] = f"dns; {config.hostname}"
    per_message["Arrival-Date"] = mail_date(record["created"])
    per_recipient = Message(policy=POLICY)
    if record["recipient"] and record["recipient"] != record["target"]:
        per_recipient["Original-Recipient"] = f"rfc822; {record['recipient']}"
    per_recipient["Final-Recipient"] = f"rfc822; {record['target']}"
    per_recipient["Action"] = "failed"
    per_recipient["Status"] = status
    reply = REPLY_CODES.get(status, "554")
    # The stored reason leads with lda's own (temporary) code: say it once,
    # as the final status.
    detail = LEADING_STATUS.sub("", record["reason"])
    per_recipient["Diagnostic-Code"] = f"smtp; {reply} {status} {detail}"
    per_recipient["Last-Attempt-Date"] = mail_date(record["last_attempt"])
    part = MIMEPart(policy=POLICY)
    part["Content-Type"] = "message/delivery-status"
    part.set_payload([per_message, per_recipient])
    return part


def explanation(config, record, now):
    """The human-readable first part, in paragraphs wrapped at 72 columns."""
    via = (f" (a recipient of <{record['recipient']}>)"
           if record["recipient"] and record["recipient"] != record["target"] else "")
    attempts = record["attempts"]
    kept = (f"  It was kept and tried again for {duration(now - record['created'])} "
            f"({attempts} attempt{'s' if attempts != 1 else ''}), and has now been "
            "given up." if record.get("kept", True) else "")
    paragraphs = [
        f"This is the mail system at host {config.hostname}.",
        "Your message was delivered to its other recipients, but it could not be "
        f"delivered to <{record['target']}>{via}.{kept}  The other recipients are "
        "not affected.",
        f"<{record['target']}>: {final_reason(record['reason'])}",
        "The delivery status report and the header of your message follow.",
    ]
    return "\n\n".join(textwrap.fill(p, 72, break_long_words=False,
                                     break_on_hyphens=False) for p in paragraphs) + "\n"


def duration(seconds):
    """'3 days', '5 hours', '12 minutes' or '40 seconds'."""
    seconds = max(0, int(seconds))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def mail_date(timestamp):
    """An RFC 5322 date-time in UTC ("+0000": the zone is known)."""
    return email.utils.format_datetime(datetime.fromtimestamp(timestamp, timezone.utc))


def read_header_block(path, limit=MAX_HEADER_BYTES):
    """The header block of a spooled message (up to its blank line), or None
    when the file is gone."""
    try:
        with open(path, "rb") as spooled:
            data = spooled.read(limit)
    except FileNotFoundError:
        return None
    return header_of(data, limit)


def header_of(data, limit=MAX_HEADER_BYTES):
    """The header block of a message's first `limit` bytes, data: up to its
    blank line, or cut at a line end when it goes on past them."""
    end = data.find(b"\n\n")
    if end != -1:
        return data[:end + 1]
    return data[:data.rfind(b"\n") + 1] if len(data) == limit else data


def send_dsn(config, sender, message, sendmail=None):
    """Hand the DSN to sendmail with the null envelope sender
    (`sendmail -i -f <> -- SENDER`); raises ForwardFailed if it refuses."""
    with tempfile.TemporaryFile() as spooled:
        spooled.write(message)
        spooled.flush()
        spooled.seek(0)
        run_sendmail(sendmail or config.sendmail, None, sender, spooled.fileno())

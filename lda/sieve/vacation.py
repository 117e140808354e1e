"""The vacation action (RFC 5230): whether to answer, and the answer.

Imported only when a script runs vacation.  The reply is built as bytes
(LF line ends) for the caller to hand to sendmail with the null envelope
sender; nothing is sent or recorded here.
"""

import os
import time
import zlib

from .actions import Vacation
from .fields import addresses, split, text, valid_address

# RFC 5230 section 4.6 and RFC 2369 / RFC 2919: mailing list fields.
LIST_FIELDS = ("list-id", "list-help", "list-subscribe", "list-unsubscribe", "list-post",
               "list-owner", "list-archive")
# RFC 5230 section 4.5: where the user's address must appear.
RECIPIENT_FIELDS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")
# RFC 5230 section 4.6: senders that are programs, not people.
AUTOMATED_SENDERS = ("mailer-daemon", "listserv", "majordomo")
MAX_SUBJECT = 256
# How often one sender may be answered, in seconds: Pigeonhole's defaults
# for sieve_vacation_min_period (1d: :days 0 or :seconds 60 means a day),
# sieve_vacation_max_period (0: no upper limit) and
# sieve_vacation_default_period (7d, without :days or :seconds).
MIN_PERIOD = 86400
MAX_PERIOD = 0
DEFAULT_PERIOD = 7 * 86400
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def respond(execution, node):
    """(Vacation action or None, one line for the log)."""
    sender = execution.envelope.from_
    refusal = automated(execution, sender)
    if refusal:
        return None, f"vacation: no reply: {refusal}"
    reply_from = reply_from_address(execution, node)
    mine = own_addresses(execution, node, reply_from)
    if normalize(sender) in mine:
        return None, "vacation: no reply: the sender is the recipient"
    if not addressed_to(execution, mine):
        return None, "vacation: no reply: none of the user's addresses is in To/Cc/Bcc"
    seconds = period(node)
    handle = (execution.string(node["handle"]) if node["handle"] is not None
              else default_handle(node))
    if execution.state.vacation_recently(sender, handle, seconds):
        return None, (f"vacation: no reply: {sender} was answered within "
                      f"{describe_period(seconds)}")
    subject = reply_subject(execution, node)
    reply = build_reply(execution, node, sender, reply_from, subject)
    address = (addresses(reply_from) or [reply_from])[0]
    return (Vacation(sender, reply, handle, seconds, subject, address),
            f"vacation: reply to {sender}")


def period(node):
    """Seconds between two replies to one sender: :seconds (RFC 6131), else
    :days, else DEFAULT_PERIOD, held between MIN_PERIOD and MAX_PERIOD."""
    if node.get("seconds") is not None:
        seconds = node["seconds"]
    elif node["days"] is not None:
        seconds = node["days"] * 86400
    else:
        seconds = DEFAULT_PERIOD
    seconds = max(MIN_PERIOD, seconds)
    return min(seconds, MAX_PERIOD) if MAX_PERIOD else seconds


def describe_period(seconds):
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day" + ("s" if seconds != 86400 else "")
    return f"{seconds} seconds"


def automated(execution, sender):
    """Why an answer would go to a program or a list, or None."""
    if not sender:
        return "the sender is null (a bounce or an auto-reply)"
    field = execution.fields("auto-submitted")
    if field and text(field[0]).split(";")[0].strip().lower() != "no":
        return "Auto-Submitted: " + text(field[0]).strip()
    precedence = execution.fields("precedence")
    if precedence and text(precedence[0]).strip().lower() in ("bulk", "list", "junk"):
        return "Precedence: " + text(precedence[0]).strip()
    for name in LIST_FIELDS:
        if execution.fields(name):
            return f"a mailing list message ({name} field)"
    local = split(sender)[0].lower()
    if (local in AUTOMATED_SENDERS or local.startswith("owner-")
            or local.endswith("-request")):
        return f"{sender} is an automated sender"
    return None


def normalize(address):
    """Lower case, and without a +detail, for "is this me?" comparisons."""
    local, domain = split(address.lower())
    local = local.split("+", 1)[0]
    return f"{local}@{domain}" if domain is not None else local


def reply_from_address(execution, node):
    """:from when it holds one valid address, else the recipient."""
    if node["from"] is not None:
        value = " ".join(execution.string(node["from"]).split())
        found = addresses(value)
        if len(found) == 1 and valid_address(found[0]):
            return value
        execution.log.append(f"vacation: ignoring invalid :from {value!r}")
    envelope = execution.envelope
    return envelope.original_recipient or envelope.to


def own_addresses(execution, node, reply_from):
    envelope = execution.envelope
    candidates = [envelope.to, envelope.original_recipient or "",
                  *addresses(reply_from), *execution.strings(node["addresses"])]
    return {normalize(a) for a in candidates if a}


def addressed_to(execution, mine):
    for name in RECIPIENT_FIELDS:
        for raw in execution.fields(name):
            for address in addresses(raw.decode("utf-8", "replace")):
                if address and normalize(address) in mine:
                    return True
    return False


def default_handle(node):
    """RFC 5230 section 4.2: without :handle, the same arguments are the
    same vacation.  The script's own strings, before variables."""
    data = "\0".join([node["reason"], node["subject"] or "", node["from"] or "",
                      "mime" if node["mime"] else ""]).encode("utf-8", "surrogateescape")
    return f"auto-{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def reply_subject(execution, node):
    if node["subject"] is not None:
        return one_line(execution.string(node["subject"]))
    field = execution.fields("subject")
    original = one_line(text(field[0])) if field else ""
    if not original:
        return "Automated reply"
    if len(original) > MAX_SUBJECT:
        original = original[:MAX_SUBJECT] + "\u2026"
    return "Auto: " + original


def reply_to_field(execution, sender):
    """The To: of the reply: the original From or Sender when that is the
    envelope sender (keeping the display name), else the bare address."""
    for name in ("from", "sender"):
        for raw in execution.fields(name):
            value = raw.decode("utf-8", "replace")
            found = addresses(value)
            if len(found) == 1 and found[0].lower() == sender.lower():
                return one_line(value)
    return f"<{sender}>"


def build_reply(execution, node, sender, reply_from, subject):
    """RFC 5230 section 5 and RFC 3834: In-Reply-To, References,
    Auto-Submitted: auto-replied; the reason as text/plain UTF-8, or with
    :mime as the MIME entity the script wrote.  X-Auto-Response-Suppress:
    All (MS-OXCMAIL) as Pigeonhole: Exchange's out-of-office reads it where
    it ignores Auto-Submitted, and would otherwise answer the reply."""
    now = execution.state.now()
    domain = split((addresses(reply_from) or [""])[0])[1] or "localhost"
    fields = [("From", encode_mailbox(reply_from)),
              ("To", encode_mailbox(reply_to_field(execution, sender))),
              ("Subject", encode(subject)), ("Date", rfc5322_date(now)),
              ("Message-ID", f"<{os.urandom(8).hex()}.{int(now)}@{domain}>")]
    original_id = execution.fields("message-id")
    original_id = one_line(text(original_id[0])) if original_id else ""
    references = execution.fields("references")
    references = one_line(text(references[0])) if references else ""
    if original_id:
        fields.append(("In-Reply-To", original_id))
    if references or original_id:
        fields.append(("References", " ".join(filter(None, [references, original_id]))))
    fields += [("Auto-Submitted", "auto-replied (vacation)"), ("Precedence", "bulk"),
               ("X-Auto-Response-Suppress", "All"), ("MIME-Version", "1.0")]
    reason = execution.string(node["reason"]).replace("\r\n", "\n")
    if not reason.endswith("\n"):
        reason += "\n"
    head = "".join(f"{name}: {value}\n" for name, value in fields)
    if node["mime"]:
        return (head + reason).encode("utf-8")
    encoding = "7bit" if reason.isascii() else "8bit"
    return (head + "Content-Type: text/plain; charset=utf-8\n"
            f"Content-Transfer-Encoding: {encoding}\n\n" + reason).encode("utf-8")


def one_line(value):
    """No line break may reach a header field the reply writes."""
    return " ".join(value.split())


def encode(value):
    """RFC 2047 encoded-words for a non-ASCII header value."""
    value = one_line(value)
    if value.isascii():
        return value
    from binascii import b2a_base64

    words, chunk = [], ""
    for char in value:
        if len((chunk + char).encode("utf-8")) > 45:
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return "\n ".join("=?utf-8?b?" + b2a_base64(w.encode("utf-8"), newline=False).decode()
                      + "?=" for w in words)


def encode_mailbox(value):
    """A display name may need encoding; the <address> after it may not."""
    value = one_line(value)
    name, bracket, address = value.rpartition("<")
    if not bracket or value.isascii():
        return value
    return f"{encode(name)} <{address}".lstrip()


def rfc5322_date(now):
    t = time.gmtime(now)
    return (f"{WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000")

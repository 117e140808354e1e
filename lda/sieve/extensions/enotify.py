"""Notifications (RFC 5435) by mail (the mailto method, RFC 5436).

notify sends a short message about the one being delivered; it does not
cancel the implicit keep.  Each recipient of a notification becomes one
Notify action with the whole message in `reply_bytes`, so the delivery
sends it as it sends a vacation reply (sendmail with the null sender) and
DeliveredTo keys it "notify:MAILBOX:ADDRESS": a resent message is not
notified again.  The set modifier :encodeurl (RFC 5435 section 7) lives
here too; the interpreter calls encode_url() for it.

The URI is read as RFC 6068 says: addresses before "?" and in "to" and
"cc" fields, percent-encoded UTF-8, "subject" and "body" fields.
Choices where the RFCs leave room, and where lda differs from Pigeonhole:
- A URI field other than to, cc, subject and body makes the URI invalid
  (lda writes every header field of the notification itself); "from"
  (RFC 5436 section 2.7: MUST be ignored) and "bcc" are ignored and logged.
  Pigeonhole ignores a list of reserved fields and copies the others.
- An invalid or unsupported URI is a compile error when it is a constant,
  else a runtime error (implicit keep); a URI with no recipient is invalid
  (Pigeonhole: a warning, and nothing is sent).  Percent-encoded UTF-8 in a
  subject is accepted (Pigeonhole refuses it).  As RFC 6068 has it, ","
  separates addresses (Pigeonhole refuses it) and an address is a bare
  addr-spec (Pigeonhole also takes "Name <addr>"); a field needs "=".
- From: is :from when it holds one valid address, else the recipient
  (RFC 5436 section 2.7; Pigeonhole uses the postmaster); the envelope
  sender is always null (RFC 5436 section 2.7 asks for it when the
  triggering message had one; lda also never gives bounces to :from).
- Subject: :message, else the URI's subject, else "Notification: " and
  the message's (as Pigeonhole).  Without a body field the body names the
  recipient and the message's From, Subject and Date (Pigeonhole: one
  fixed sentence).  X-Priority and Importance only for :importance 1 or 3.
- More than MAX_RECIPIENTS recipients: the rest are dropped and logged, as
  Pigeonhole.  Every recipient counts as one action towards the
  interpreter's MAX_ACTIONS (Pigeonhole counts a notify once).  A second
  notification to one address in one run is dropped (the first stands).
"""

import os

from ..actions import Action
from ..fields import addresses, text, valid_address
from ..spec import MATCH, MATCH_DEFAULTS, STRING, STRINGS, Spec, tag

CAPABILITIES = ("enotify",)
COMMANDS = {
    "notify": Spec("enotify", {
        ":from": tag("from", kind=STRING), ":importance": tag("importance", kind=STRING),
        ":options": tag("options", kind=STRINGS), ":message": tag("message", kind=STRING)},
        [("method", STRING)], {"from": None, "importance": "2", "options": [],
                               "message": None}),
}
TESTS = {
    "valid_notify_method": Spec("enotify", positional=[("uris", STRINGS)]),
    "notify_method_capability": Spec("enotify", MATCH, [
        ("uri", STRING), ("capability", STRING), ("keys", STRINGS)], MATCH_DEFAULTS),
}
TAGS = {"set": {":encodeurl": tag("modifiers", "encodeurl", extension="enotify")}}

MAX_URI_LENGTH = 8192
MAX_RECIPIENTS = 8     # per notification, as Pigeonhole's mailto method
MAX_SUBJECT = 256      # characters of :message or a subject taken over
UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# RFC 3986 characters a mailto URI may hold as they are; the rest must be
# percent-encoded (RFC 6068 section 2).
URI_CHARS = UNRESERVED | frozenset("!$'()*+,;:@/?&=%")
HEX = "0123456789ABCDEFabcdef"
USED_FIELDS = ("to", "cc", "subject", "body")
IMPORTANCE = {"1": ("1 (Highest)", "high"), "3": ("5 (Lowest)", "low")}


class BadUri(ValueError):
    """A notification URI lda cannot use; the text says why."""


class Notify(Action):
    """A notification (RFC 5436) to send to `to` with the null envelope
    sender; `reply_bytes` is the whole message, LF line ends."""

    __slots__ = ("to", "reply_bytes", "subject", "from_", "importance")

    def __init__(self, to, reply_bytes, subject="", from_="", importance="2"):
        self.to = to
        self.reply_bytes = reply_bytes
        self.subject = subject
        self.from_ = from_
        self.importance = importance

    def describe(self):
        return f'notify mailto:{self.to} (subject "{self.subject}")'


class Mailto:
    """A parsed mailto URI: recipients [(address, "To" or "Cc")], the
    subject and body fields (None when absent) and notes for the log."""

    def __init__(self):
        self.recipients = []
        self.subject = None
        self.body = None
        self.notes = []

    def add(self, address, field):
        if any(address.lower() == known.lower() for known, _ in self.recipients):
            return
        if len(self.recipients) >= MAX_RECIPIENTS:
            self.notes.append(f"more than {MAX_RECIPIENTS} recipients: {address} dropped")
            return
        self.recipients.append((address, field))


def parse_uri(uri):
    """The Mailto of a notification URI; BadUri when lda cannot use it."""
    scheme, colon, rest = uri.partition(":")
    if not colon or not scheme or not scheme.isalpha():
        raise BadUri(f'"{shorten(uri)}" is not a URI')
    if scheme.lower() != "mailto":
        raise BadUri(f'unsupported notification method "{scheme}" (lda supports mailto)')
    if len(uri) > MAX_URI_LENGTH:
        raise BadUri(f"the URI is longer than {MAX_URI_LENGTH} characters")
    stray = next((c for c in rest if c not in URI_CHARS), None)
    if stray is not None:
        raise BadUri(f"{stray!r} must be percent-encoded in a mailto URI (set :encodeurl "
                     "does it)")
    mailto = Mailto()
    to_part, _, query = rest.partition("?")
    for address in to_part.split(",") if to_part else ():
        mailto.add(recipient(decode(address)), "To")
    for field in query.split("&"):
        if field:
            read_field(mailto, field)
    if not mailto.recipients:
        raise BadUri("the URI names no recipient")
    return mailto


def read_field(mailto, field):
    name, equals, value = field.partition("=")
    name = decode(name).lower()
    if not equals or not name:
        raise BadUri(f'"{shorten(field)}" is no NAME=VALUE field')
    value = decode(value)
    if name in ("to", "cc"):
        for address in value.split(","):
            mailto.add(recipient(address.strip(" ")), name.capitalize())
    elif name in ("subject", "body"):
        if getattr(mailto, name) is not None:
            mailto.notes.append(f"second {name} field ignored")
            return
        allowed = "\t\r\n" if name == "body" else ""
        if any((ord(c) < 32 and c not in allowed) or ord(c) == 127 for c in value):
            raise BadUri(f"a control character or line break in the {name} field")
        setattr(mailto, name, value)
    elif name == "from":
        mailto.notes.append('"from" field ignored (RFC 5436 section 2.7)')
    elif name == "bcc":
        mailto.notes.append('"bcc" field ignored (a notification names its recipients)')
    else:
        raise BadUri(f'the "{shorten(name)}" field is not allowed (only '
                     + ", ".join(USED_FIELDS) + ")")


def recipient(address):
    if not valid_address(address):
        raise BadUri(f'invalid recipient address "{shorten(address)}"')
    return address


def decode(value):
    """Percent-decoding (RFC 3986 section 2.1) of UTF-8 text."""
    if "%" not in value:
        return value
    out, i = bytearray(), 0
    while i < len(value):
        if value[i] == "%":
            pair = value[i + 1:i + 3]
            if len(pair) != 2 or pair[0] not in HEX or pair[1] not in HEX:
                raise BadUri(f'invalid percent-encoding "{shorten(value[i:i + 3])}"')
            out.append(int(pair, 16))
            i += 3
        else:
            out += value[i].encode()
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise BadUri("a percent-encoded value is not UTF-8") from None


def encode_url(value):
    """RFC 5435 section 7: every octet of the UTF-8 value that is not an
    RFC 3986 unreserved character as %XX."""
    return "".join(c if c in UNRESERVED else
                   "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogateescape"))
                   for c in value)


def shorten(value, limit=60):
    return value if len(value) <= limit else value[:limit] + "..."


# --- compile time ----------------------------------------------------------

def check_notify(validator, node, built):
    if built["importance"] not in ("1", "2", "3"):
        validator.error(node.line, node.col, f'notify: :importance must be "1", "2" or "3", '
                        f'not "{built["importance"]}"')
    if validator.constant(built["method"]):
        try:
            parse_uri(built["method"])
        except BadUri as e:
            validator.error(node.line, node.col, f"notify: {e}")
    if built["from"] is not None and validator.constant(built["from"]) \
            and from_address(built["from"]) is None:
        validator.error(node.line, node.col, f'notify: invalid :from address "{built["from"]}"')
    for option in built["options"]:
        if validator.constant(option) and not valid_option(option):
            validator.error(node.line, node.col,
                            f'notify: option "{option}" is not of the form NAME=VALUE')


def check_notify_method_capability(validator, node, built):
    validator.check_comparator(node, built)


def valid_option(option):
    """RFC 5435 section 3.3: an option is "name=value", a name being a
    letter or digit then letters, digits, ".", "-" or "_"."""
    name, equals, _ = option.partition("=")
    return (bool(equals) and bool(name) and name[0].isascii() and name[0].isalnum()
            and all(c.isascii() and (c.isalnum() or c in ".-_") for c in name))


def from_address(value):
    """The bare address of a :from holding exactly one valid address, else None."""
    found = addresses(" ".join(value.split()))
    return found[0] if len(found) == 1 and valid_address(found[0]) else None


# --- run time --------------------------------------------------------------

def cmd_notify(execution, node):
    method = execution.string(node["method"])
    try:
        mailto = parse_uri(method)
    except BadUri as e:
        execution.fail(f"notify: {e}")
    execution.log.extend(f"notify: {note}" for note in mailto.notes)
    field = execution.fields("auto-submitted")
    if field and text(field[0]).split(";")[0].strip().lower() != "no":
        # RFC 5436 section 2.7: no notification about an automatic message.
        return execution.log.append("notify: no notification for a message with "
                                    f"Auto-Submitted: {one_line(text(field[0]))}")
    sender = notification_from(execution, node)
    subject = notification_subject(execution, node, mailto)
    message = build_message(execution, node, mailto, sender, subject)
    sent = {a.to.lower() for a in execution.actions if isinstance(a, Notify)}
    added = []
    for address, _ in mailto.recipients:
        if address.lower() in sent:
            execution.log.append(f"notify: {address} notified already: sent once")
            continue
        execution.add(Notify(address, message, subject, sender, node["importance"]))
        added.append(address)
    if added:
        execution.log.append("notify: mailto " + ", ".join(added))


def test_valid_notify_method(execution, node):
    for uri in execution.strings(node["uris"]):
        try:
            parse_uri(uri)
        except BadUri as e:
            execution.log.append(f"valid_notify_method: {e}")
            return False
    return True


def test_notify_method_capability(execution, node):
    """RFC 5436 section 2.2: mailto cannot know whether someone is online."""
    try:
        parse_uri(execution.string(node["uri"]))
    except BadUri as e:
        execution.log.append(f"notify_method_capability: {e}")
        return False
    if execution.string(node["capability"]).lower() != "online":
        return False
    return execution.matches(node, ["maybe"], execution.strings(node["keys"]))


# --- the notification message (RFC 5436 sections 2.7 and 2.8) --------------

def notification_from(execution, node):
    """The From: value: :from when valid, else the recipient (RFC 5436 2.7)."""
    if node["from"] is not None:
        value = " ".join(execution.string(node["from"]).split())
        if from_address(value) is not None:
            return value
        execution.log.append(f"notify: ignoring invalid :from {value!r}")
    envelope = execution.envelope
    return envelope.original_recipient or envelope.to


def notification_subject(execution, node, mailto):
    """:message, else the URI's subject, else one made of the message's."""
    if node["message"] is not None:
        subject = execution.string(node["message"])
    elif mailto.subject is not None:
        subject = mailto.subject
    else:
        field = execution.fields("subject")
        original = one_line(text(field[0])) if field else ""
        subject = "Notification: " + (original or "(no subject)")
    subject = one_line(subject)
    return subject if len(subject) <= MAX_SUBJECT else subject[:MAX_SUBJECT] + "\u2026"


def build_message(execution, node, mailto, sender, subject):
    """The notification as bytes: RFC 5436 section 2.7's header fields
    (Auto-Submitted: auto-notified with the owner's address) and the URI's
    body, or a summary of the message that arrived."""
    from ..vacation import encode, encode_mailbox, rfc5322_date

    now = execution.state.now()
    owner = one_line(execution.envelope.to)
    domain = (from_address(sender) or owner).rpartition("@")[2] or "localhost"
    fields = [("From", encode_mailbox(sender))]
    for kind in ("To", "Cc"):
        listed = [address for address, field in mailto.recipients if field == kind]
        if listed:
            fields.append((kind, ", ".join(listed)))
    fields += [("Subject", encode(subject)), ("Date", rfc5322_date(now)),
               ("Message-ID", f"<{os.urandom(8).hex()}.{int(now)}@{domain}>"),
               ("Auto-Submitted", f'auto-notified; owner-email="{quoted(owner)}"'),
               ("Precedence", "bulk")]
    if node["importance"] in IMPORTANCE:
        priority, importance = IMPORTANCE[node["importance"]]
        fields += [("X-Priority", priority), ("Importance", importance)]
    body = summary(execution) if mailto.body is None else mailto.body
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    fields += [("MIME-Version", "1.0"), ("Content-Type", "text/plain; charset=utf-8"),
               ("Content-Transfer-Encoding", "7bit" if body.isascii() else "8bit")]
    head = "".join(f"{name}: {value}\n" for name, value in fields)
    return (head + "\n" + body).encode("utf-8", "surrogateescape")


def summary(execution):
    """The default body: who the message is for and its From, Subject and Date."""
    lines = [f"A new message arrived for {execution.envelope.to}.", ""]
    for name in ("From", "Subject", "Date"):
        field = execution.fields(name)
        if field:
            value = one_line(text(field[0]))
            lines.append(f"{name}: {value[:MAX_SUBJECT]}")
    return "\n".join(lines)


def quoted(value):
    return value.replace("\\", "\\\\").replace('"', '\\"')


def one_line(value):
    return " ".join(value.split())

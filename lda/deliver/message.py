"""Reading a message from the MTA: stream it to disk once, learn its headers.

The bytes pass through unchanged except that CRLF line ends become LF (a
Maildir file uses the local convention) and an mbox "From " envelope line,
which Postfix local(8) puts before the message for a command, is dropped
(its sender kept: from_line_sender).
Only the header block is kept in memory (up to MAX_HEADER_BYTES), so a
100 MB body streams through a fixed buffer.
"""


CHUNK = 1 << 20
MAX_HEADER_BYTES = 8 << 20
# Fields an MTA prepends just before handing a message to a delivery agent
# (Postfix local(8) and pipe(8) flags D, O, R): the leading run of these is
# the MTA's own trace for this delivery, not an earlier hop.
PREPENDED_FIELDS = {b"return-path", b"delivered-to", b"x-original-to"}
DIGEST_FIELDS = (b"from", b"to", b"cc", b"subject", b"date")
MAX_KEY_LENGTH = 900
# Of a From_ line, what is kept: more than "From ", a 320-octet address
# (envelope.MAX_ADDRESS) and an asctime date.
MAX_FROM_LINE = 1024
NULL_SENDER_NAME = "mailer-daemon"
WEEKDAYS = {b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"}


def unfolded(block, other_lines=None, as_written=False):
    """The fields of a header block in order, as (lower-case name, value)
    with continuation lines joined by one space (the values the DeliveredTo
    key is made of); lines that are no field go to other_lines (when
    given).  A field is yielded once the next field begins, so a reader
    that stops early has each field whole.

    as_written: each value as RFC 5322 section 2.2.3 unfolds it, what Sieve
    tests see: the line breaks go and the white space stays, a tab that
    begins a line read as a space, as Dovecot reads it."""
    field = None
    for line in block.split(b"\n"):
        if line[:1] in (b" ", b"\t") and field is not None:
            if as_written:
                line = line.removesuffix(b"\r")
                field = (field[0], field[1] + (b" " + line[1:] if line[:1] == b"\t" else line))
            else:
                field = (field[0], field[1] + b" " + line.strip())
        elif b":" in line:
            if field is not None:
                yield field
            name, _, value = line.partition(b":")
            value = value.lstrip(b" \t").removesuffix(b"\r") if as_written else value.strip()
            field = (name.strip().lower(), value)
        elif line and other_lines is not None:
            other_lines.append(line)
    if field is not None:
        yield field


def leading_prepended(fields):
    """The MTA's own trace fields at the very top of the message, from its
    fields in order (a Headers' list, or unfolded(block), which is then
    read only as far as the first other field)."""
    run = []
    for name, value in fields:
        if name not in PREPENDED_FIELDS:
            break
        run.append((name, value))
    return run


class Headers:
    """The unfolded header fields of a message, in order, as bytes."""

    def __init__(self, block):
        self.block = block
        self.other_lines = []  # lines that are not fields: kept for the digest
        self.fields = list(unfolded(block, self.other_lines))  # (lower-case name, value)
        self._written = None

    def as_written(self):
        """The fields as Sieve reads them, in the same order (unfolded's
        as_written), made when a script first asks."""
        if self._written is None:
            self._written = list(unfolded(self.block, as_written=True))
        return self._written

    def first(self, name):
        for field, value in self.fields:
            if field == name:
                return value
        return None

    def leading_prepended(self):
        """The MTA's own trace fields at the very top of the message."""
        return leading_prepended(self.fields)


def without_stale_return_path(head, lead, sender):
    """head without the Return-Path fields in its leading trace run (lead)
    when one of them names another address than the envelope sender, else
    None: the field lda prepends then is the only one on top.  RFC 5321
    4.4 lets final delivery remove Return-Path fields before adding its
    own; one that names the sender (pipe(8) flag R) stays byte for byte."""
    paths = [bare_address(value) for name, value in lead if name == b"return-path"]
    if all(path == sender.lower() for path in paths):
        return None
    kept, position, dropping = [], 0, False
    for line in head.split(b"\n")[:-1]:
        if line[:1] in (b" ", b"\t"):  # a folded line goes with its field
            pass
        else:
            name = line.partition(b":")[0].strip().lower()
            if name not in PREPENDED_FIELDS:
                break
            dropping = name == b"return-path"
        if not dropping:
            kept.append(line + b"\n")
        position += len(line) + 1
    return b"".join(kept) + head[position:]


def text(value):
    """Header bytes as text that SQLite and a log line can hold."""
    return value.decode("utf-8", "backslashreplace")


def address_of(value):
    """The address a Return-Path or Delivered-To value names, its <> taken
    off, as written."""
    value = text(value).strip()
    if value.startswith("<") and ">" in value:
        value = value[1:value.index(">")]
    return value.strip()


def bare_address(value):
    return address_of(value).lower()


def from_line_sender(line):
    """The sender an mbox From_ line names ("From SENDER DATE"), unchecked,
    or None when it names none; "" for MAILER-DAEMON, the name Postfix
    writes there for the null sender.  Only a line whose address a date
    follows (asctime's "Wed Jan  3", or "Thu, 9 Nov") names one, as
    dovecot-lda's mbox_from_parse wants: "From : x" is RFC 5322's obsolete
    field syntax, not an envelope line."""
    address, _, rest = line[5:].split(b"\n", 1)[0].partition(b" ")
    rest = rest.lstrip(b" ")
    if not address or rest[:3] not in WEEKDAYS or rest[3:4] not in (b" ", b","):
        return None
    sender = address.decode("utf-8", "surrogateescape")
    return "" if sender.lower() == NULL_SENDER_NAME else sender


class MessageInfo:
    """What delivery needs to know about one message."""

    def __init__(self, headers, message_id, body_digest=None):
        """message_id: the Message-ID field's value as _message_id makes it,
        or None (Reader reads it once, to decide on the digest)."""
        self.headers = headers
        self.message_id = message_id
        self.submit_time = submit_time(headers.first(b"date"))
        self.body_digest = body_digest
        lead = headers.leading_prepended()
        self.mta_delivered_to = {bare_address(v) for n, v in lead if n == b"delivered-to"}
        self.has_return_path = any(n == b"return-path" for n, _ in lead)
        self.delivered_to = [bare_address(v) for n, v in headers.fields[len(lead):]
                             if n == b"delivered-to"]

    @staticmethod
    def _message_id(raw):
        value = text(raw).strip()
        if "<" in value and ">" in value.split("<", 1)[1]:
            value = value.split("<", 1)[1].split(">", 1)[0]
        value = value.strip()
        if not value:
            return None
        if len(value) > MAX_KEY_LENGTH:
            from ..startup.hashlib import sha256

            return "sha256:" + sha256(value.encode()).hexdigest()
        return value

    @property
    def key_id(self):
        """Message-ID, or a content digest for a message that has none."""
        return self.message_id or "digest:" + self.body_digest

    @property
    def log_id(self):
        return f"<{self.message_id}>" if self.message_id else self.key_id[:23]

    def is_loop(self, address):
        """A Delivered-To for this address below the MTA's own prepended run."""
        return address.lower() in self.delivered_to


def submit_time(raw):
    """The Date: header normalised to UTC, or "" when absent or unparseable."""
    if raw is None:
        return ""
    from .datefield import parse_date

    return parse_date(text(raw))


class LineEnds:
    """CRLF to LF across chunk boundaries; a bare CR passes through."""

    def __init__(self):
        self.held_cr = False

    def convert(self, data):
        if self.held_cr:
            data = b"\r" + data
        self.held_cr = data.endswith(b"\r")
        if self.held_cr:
            data = data[:-1]
        return data.replace(b"\r\n", b"\n")

    def finish(self):
        tail, self.held_cr = (b"\r" if self.held_cr else b""), False
        return tail


class Reader:
    """Pulls converted message bytes from a stream, watching the header block."""

    def __init__(self, stream, digest_always=False):
        self.stream = stream
        self.digest_always = digest_always
        self.line_ends = LineEnds()
        self.header = bytearray()
        self.in_header = True
        self.headers = None
        self.message_id = None  # MessageInfo.message_id, once the header is read
        self.body_hash = None
        self.size = 0
        self._envelope = bytearray()  # None once past the first line
        self._envelope_decided = None
        self.from_line = bytearray()  # the start of a dropped From_ line

    def chunks(self):
        """Yield the message bytes (converted), header block first."""
        while True:
            data = self.stream.read(CHUNK)
            at_end = not data
            data = self.line_ends.finish() if at_end else self.line_ends.convert(data)
            if self._envelope is not None:
                data = self._drop_envelope_line(data, at_end)
            if data:
                yield self._observe(data)
            if at_end:
                return

    def _drop_envelope_line(self, data, at_end):
        """Drop a leading mbox "From " line (dovecot-lda does too), however
        long; return the bytes after it, or b"" while still inside it."""
        self._envelope += data
        if self._envelope_decided is None:
            if len(self._envelope) < 5 and not at_end and b"\n" not in self._envelope:
                return b""
            self._envelope_decided = self._envelope.startswith(b"From ")
        if not self._envelope_decided:
            data, self._envelope = bytes(self._envelope), None
            return data
        newline = self._envelope.find(b"\n")
        room = MAX_FROM_LINE - len(self.from_line)
        if room > 0:
            self.from_line += self._envelope[:newline if newline != -1 else room][:room]
        if newline == -1:
            self._envelope = bytearray() if not at_end else None
            return b""
        data, self._envelope = bytes(self._envelope[newline + 1:]), None
        return data

    def _observe(self, data):
        self.size += len(data)
        if self.in_header:
            self._watch_header(data)
        elif self.body_hash is not None:
            self.body_hash.update(data)
        return data

    def _watch_header(self, data):
        search_from = max(0, len(self.header) - 1)
        self.header += data
        if self.header[:1] == b"\n":  # an empty header block
            body, self.header = bytes(self.header[1:]), bytearray()
        else:
            end = self.header.find(b"\n\n", search_from)
            if end == -1 and len(self.header) <= MAX_HEADER_BYTES:
                return
            body = b"" if end == -1 else bytes(self.header[end + 2:])
            if end != -1:
                del self.header[end + 1:]
        self.in_header = False
        self._start_body(body)

    def _start_body(self, body):
        self.headers = Headers(bytes(self.header))
        self.header = bytearray()
        raw_id = self.headers.first(b"message-id")
        if raw_id is not None:
            self.message_id = MessageInfo._message_id(raw_id)
        if self.digest_always or self.message_id is None:
            # Only a message without Message-ID (or verify_body) needs the digest.
            from ..startup.hashlib import sha256

            self.body_hash = sha256()
            for name in DIGEST_FIELDS:
                self.body_hash.update(name + b":" + (self.headers.first(name) or b"") + b"\n")
            self.body_hash.update(b"\n".join(self.headers.other_lines) + b"\n\n")
            self.body_hash.update(body)

    def info(self):
        """MessageInfo once the stream is exhausted."""
        if self.in_header:  # no blank line: the whole message is header
            self.in_header = False
            self._start_body(b"")
        digest = self.body_hash.hexdigest() if self.body_hash else None
        return MessageInfo(self.headers, self.message_id, digest)

"""A message's MIME structure for the body and mime extensions (RFC 2045, 2046).

A small parser of our own, not the email package: it never re-serializes,
keeps each part as offsets into the message bytes, and stops at named
bounds so a hostile message costs a fixed amount of work: at most MAX_PARTS
parts, MAX_DEPTH levels of nesting (a multipart in a multipart, or a
message/rfc822), and MAX_DECODED_BYTES of decoded text per part.  Beyond a
bound the rest is not split further (it stays in the enclosing part's
bytes), which is what a reader that gave up would see.

Only imported when a script runs a body or mime test.
"""

from ..deliver.message import Headers
from .fields import text as field_text

MAX_PARTS = 200
MAX_DEPTH = 12
MAX_DECODED_BYTES = 1 << 20
INLINE_TAGS = frozenset({"a", "abbr", "b", "big", "code", "em", "font", "i", "small", "span",
                         "strong", "sub", "sup", "tt", "u"})


class Part:
    """One MIME entity: its header fields (Headers.fields), its content type,
    its body as message[start:end], and its children (parts of a multipart,
    or the one message of a message/rfc822)."""

    def __init__(self, message, fields, start, end, depth, default_type):
        self.message, self.fields = message, fields
        self.start, self.end, self.depth = start, end, depth
        self.children = []
        self.prologue = self.epilogue = b""
        value = self.first(b"content-type")
        self.type, self.subtype, self.params = content_type(value) if value is not None \
            else (*default_type.split("/"), {})
        if not self.type or not self.subtype:  # unparseable: RFC 2045 section 5.2
            self.type, self.subtype, self.params = "text", "plain", {}
        self.header_bytes = b""
        self.has_body = True  # False when no blank line ends the header

    @property
    def content_type(self):
        return f"{self.type}/{self.subtype}"

    def first(self, name):
        for field, value in self.fields:
            if field == name:
                return value
        return None

    def values(self, name):
        return [value for field, value in self.fields if field == name]

    def body(self):
        return self.message[self.start:self.end]

    def walk(self):
        """This part and every part under it, depth first, in message order."""
        stack = [self]
        while stack:
            part = stack.pop()
            yield part
            stack.extend(reversed(part.children))

    def decoded(self):
        """The body without its transfer encoding, in UTF-8 text (charset
        converted; an unknown charset is read as UTF-8), at most
        MAX_DECODED_BYTES of it."""
        data = transfer_decode(self.body(), self.first(b"content-transfer-encoding"))
        return to_text(data[:MAX_DECODED_BYTES], self.params.get("charset"))

    def text(self):
        """What a reader sees of a text part: text/html without its markup."""
        value = self.decoded()
        return html_text(value) if self.subtype == "html" else value


def parse(message):
    """The root Part of `message` (bytes, LF line ends)."""
    count = [0]
    return _entity(message, 0, len(message), 0, "text/plain", count)


def _entity(message, start, end, depth, default_type, count):
    count[0] += 1
    block_end = message.find(b"\n\n", start, end)
    has_body = True
    if message[start:start + 1] == b"\n":
        block_end, body_start = start, start + 1
    elif block_end < 0:  # header fields only: no body at all, not an empty one
        block_end = body_start = end
        has_body = False
    else:
        body_start = block_end + 2
    part = Part(message, Headers(message[start:block_end]).as_written(), body_start, end, depth,
                default_type)
    part.header_bytes = message[start:block_end]
    part.has_body = has_body
    if depth >= MAX_DEPTH or count[0] >= MAX_PARTS:
        return part
    if part.type == "multipart" and part.params.get("boundary"):
        _split(part, part.params["boundary"].encode("utf-8", "surrogateescape"), count)
    elif part.content_type == "message/rfc822" and not _encoded(part):
        part.children.append(_entity(message, body_start, end, depth + 1, "text/plain", count))
    return part


def _encoded(part):
    """RFC 2046 section 5.2.1: a message/rfc822 is 7bit, 8bit or binary;
    one sent encoded anyway is left whole rather than parsed as a message."""
    encoding = (part.first(b"content-transfer-encoding") or b"").strip().lower()
    return encoding in (b"base64", b"quoted-printable")


def _split(part, boundary, count):
    """The parts of a multipart between its boundary lines (RFC 2046
    section 5.1.1): the line break before a delimiter belongs to it."""
    message, delimiter = part.message, b"--" + boundary
    default = "message/rfc822" if part.subtype == "digest" else "text/plain"
    lines, position = [], part.start
    while position <= part.end:
        found = message.find(delimiter, position, part.end)
        if found < 0:
            break
        line_end = message.find(b"\n", found, part.end)
        line_end = part.end if line_end < 0 else line_end
        rest = message[found + len(delimiter):line_end]
        at_line_start = found == part.start or message[found - 1:found] == b"\n"
        if at_line_start and (not rest.strip() or rest.startswith(b"--")):
            lines.append((found, line_end, rest.startswith(b"--")))
            if rest.startswith(b"--") or len(lines) > MAX_PARTS:
                break
        position = line_end + 1
    if not lines:
        return
    part.prologue = message[part.start:max(part.start, lines[0][0] - 1)]
    for (found, line_end, closing), following in zip(lines, lines[1:] + [None]):
        if closing:
            part.epilogue = message[min(line_end + 1, part.end):part.end]
            break
        stop = part.end if following is None else max(line_end + 1, following[0] - 1)
        if count[0] >= MAX_PARTS:
            break
        part.children.append(_entity(message, min(line_end + 1, part.end), stop,
                                     part.depth + 1, default, count))


# --- header values ---------------------------------------------------------

def content_type(raw):
    """(type, subtype, params) of a Content-Type value, lower-case names."""
    value, params = split_parameters(raw)
    kind, _, subtype = value.partition("/")
    return kind.strip().lower(), subtype.strip().lower(), params


def split_parameters(raw):
    """(the value before the first ";", {parameter name: value}) of a
    structured MIME field, with RFC 2231 continuations and charsets joined
    and RFC 2047 encoded words in quoted values decoded (widely sent)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    pieces, current, quoted, i = [], [], False, 0
    while i < len(text):
        c = text[i]
        if c == "\\" and quoted and i + 1 < len(text):
            current.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == ";" and not quoted:
            pieces.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    pieces.append("".join(current))
    params, extended = {}, {}
    for piece in pieces[1:]:
        name, equals, value = piece.partition("=")
        name = name.strip().lower()
        if not equals or not name:
            continue
        value = value.strip()
        if "*" in name:
            base, _, section = name.partition("*")
            extended.setdefault(base, []).append((section, value))
        else:
            params.setdefault(name, field_text(value))
    for name, sections in extended.items():
        params[name] = _rfc2231(sections)
    return pieces[0].strip(), params


def _rfc2231(sections):
    """One parameter value from its name*0*=..., name*1=... sections."""
    def order(item):
        number = item[0].rstrip("*")
        return int(number) if number.isdigit() else 0

    data, charset = bytearray(), "utf-8"
    for index, (section, value) in enumerate(sorted(sections, key=order)):
        if section.endswith("*") or section == "":
            if index == 0 and value.count("'") >= 2:
                charset, _, value = value.split("'", 2)
            data += _percent_decode(value)
        else:
            data += value.encode("utf-8")
    return to_text(bytes(data), charset or "utf-8")


def _percent_decode(value):
    out, i = bytearray(), 0
    while i < len(value):
        if value[i] == "%" and _is_hex(value[i + 1:i + 3]):
            out.append(int(value[i + 1:i + 3], 16))
            i += 3
        else:
            out += value[i].encode("utf-8")
            i += 1
    return out


def _is_hex(pair):
    return len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair)


# --- content ---------------------------------------------------------------

def transfer_decode(data, encoding):
    """data without its Content-Transfer-Encoding (RFC 2045 section 6);
    7bit, 8bit, binary and unknown encodings pass through."""
    encoding = (encoding or b"").strip().lower()
    if encoding not in (b"base64", b"quoted-printable"):
        return data
    import binascii

    if encoding == b"base64":
        try:
            return binascii.a2b_base64(b"".join(data.split()))
        except binascii.Error:
            return binascii.a2b_base64(_base64_prefix(data))
    return binascii.a2b_qp(data)


def _base64_prefix(data):
    """The decodable start of broken base64 (bad characters dropped,
    cut to a multiple of four)."""
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    kept = bytes(c for c in data if c in alphabet)
    return kept[:len(kept) - len(kept) % 4]


def to_text(data, charset):
    import codecs

    try:
        codecs.lookup(charset or "utf-8")
    except LookupError:
        charset = "utf-8"
    return data.decode(charset or "utf-8", "replace")


def html_text(html):
    """The text of an HTML document: tags dropped (a block tag leaves a
    space), style and script contents dropped, entities decoded."""
    out, i, lower = [], 0, html.lower()
    while i < len(html):
        start = html.find("<", i)
        if start < 0:
            out.append(html[i:])
            break
        out.append(html[i:start])
        end = html.find(">", start)
        if end < 0:
            break
        name = (lower[start + 1:end].lstrip("/").split(None, 1) or [""])[0].rstrip("/")
        if name in ("style", "script") and not lower.startswith("</", start):
            close = lower.find(f"</{name}", end)
            end = len(html) if close < 0 else lower.find(">", close)
            end = len(html) if end < 0 else end
        elif name.startswith("!--"):
            close = html.find("-->", start)
            end = len(html) if close < 0 else close + 2
        if name not in INLINE_TAGS:
            out.append(" ")
        i = end + 1
    text = "".join(out)
    if "&" in text:
        from html import unescape

        text = unescape(text)
    return _squeeze(text)


def _squeeze(text):
    """Runs of blanks to one space, blank lines dropped."""
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


# --- the message of one run --------------------------------------------------

MAX_MESSAGE_BYTES = 16 << 20  # a larger message's tests see its start


def message_tree(execution):
    """The root Part of the message a script runs on, read and parsed once
    per run, on the first body or mime test (execution.message.raw)."""
    tree = getattr(execution, "mime_tree", None)
    if tree is None:
        raw = getattr(execution.message, "raw", None)
        if raw is None:
            execution.fail("the message body cannot be read here")
        try:
            data = raw(MAX_MESSAGE_BYTES)
        except OSError as e:
            execution.fail(f"cannot read the message: {e.strerror}")
        tree = execution.mime_tree = parse(data)
    return tree

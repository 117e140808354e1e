"""Header field values as Sieve tests see them, without the email package.

email.header and email.utils would import re, calendar and datetime
parsing on every delivery with a Sieve script.  Header tests compare the
RFC 2047 decoded value (RFC 5228 section 2.7.2; the decoding is in
lda/startup/email_header.py); address tests take the addr-specs out of an
address list (RFC 5322 section 3.4): display names, comments, groups and
source routes are dropped.
"""

from ..deliver.envelope import split_local

# RFC 5322 3.2.3 atext, and the UTF-8 of RFC 6532 3.2.
ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                  "!#$%&'*+-/=?^_`{|}~")


def text(raw):
    """Header bytes as text: UTF-8 (RFC 6532), else with U+FFFD, then
    encoded-words decoded, without the spaces and tabs at its end.

    Pigeonhole trims those after decoding: a continuation line of only
    white space would otherwise leave a space at the end of the unfolded
    value ("Subject: Beep" and a line with a tab reads "Beep")."""
    value = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if "=?" not in value:
        return value.rstrip(" \t")
    # Only a value with an encoded-word loads the decoder.
    from ..startup.email_header import decode_words

    return decode_words(value).rstrip(" \t")


def valid_header_name(name):
    """RFC 5322 section 3.6.8: printable US-ASCII except ":"."""
    return bool(name) and all(33 <= ord(c) <= 126 and c != ":" for c in name)


def addresses(value):
    """The addr-specs of an address-list header value, in order: "" for a
    null address ("<>"), nothing for an empty group."""
    result = []
    for mailbox in _mailboxes(value):
        address = _addr_spec(mailbox)
        if address is not None:
            result.append(address)
    return result


def _mailboxes(value):
    """Split at "," and group punctuation outside quotes, comments and <>;
    comments are dropped here."""
    parts, current, angle, i = [], [], False, 0
    while i < len(value):
        c = value[i]
        if c == '"':
            end = _quoted_end(value, i)
            current.append(value[i:end])
            i = end
            continue
        if c == "(":
            i = _comment_end(value, i)
            current.append(" ")
            continue
        i += 1
        if c == "<":
            angle = True
        elif c == ">":
            angle = False
        elif not angle and c in ",;":
            parts.append("".join(current))
            current = []
            continue
        elif not angle and c == ":":
            current = []  # what came before was a group's display name
            continue
        current.append(c)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _quoted_end(value, i):
    i += 1
    while i < len(value):
        if value[i] == "\\":
            i += 2
        elif value[i] == '"':
            return i + 1
        else:
            i += 1
    return len(value)


def _comment_end(value, i):
    depth = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            i += 2
            continue
        depth += (c == "(") - (c == ")")
        i += 1
        if depth == 0:
            break
    return i


def _addr_spec(mailbox):
    if "<" in mailbox:
        inner = mailbox[mailbox.rfind("<") + 1:]
        inner = _without_white_space(inner.split(">", 1)[0])
        if ":" in inner and inner.startswith("@"):  # obsolete source route
            inner = inner.split(":", 1)[1]
        return inner
    spec = _without_white_space(mailbox)
    return spec or None


def _without_white_space(text):
    """text without the white space between its tokens: the folding white
    space around the parts of an addr-spec is not part of it (RFC 5322
    section 3.4.1), while inside a quoted-string it is content (3.2.4)."""
    kept, i = [], 0
    while i < len(text):
        if text[i] == '"':
            end = _quoted_end(text, i)
            kept.append(text[i:end])
            i = end
            continue
        if not text[i].isspace():
            kept.append(text[i])
        i += 1
    return "".join(kept)


def valid_address(address):
    """A plain addr-spec (local@domain) fit for a redirect or a reply: no
    white space, control characters or list punctuation."""
    local, at, domain = address.rpartition("@")
    return (bool(at) and bool(local) and bool(domain) and len(address) <= 320
            and not any(ord(c) <= 32 or ord(c) == 127 or c in ",;<>()" for c in address))


def redirect_address(text):
    """The addr-spec a redirect names: "bob@example.org", or the one in
    "Bob <bob@example.org>" (RFC 5228 section 2.4.2.3 takes an RFC 5322
    mailbox, as Pigeonhole does); "" when it names none or several."""
    text = text.strip()
    if "<" not in text and "(" not in text and '"' not in text:
        return text
    found = addresses(text)
    return found[0] if len(found) == 1 else ""


def same_address(a, b):
    """RFC 5321 section 2.4: the local part is case-sensitive, the domain not."""
    local_a, domain_a = split(a)
    local_b, domain_b = split(b)
    return local_a == local_b and (domain_a or "").lower() == (domain_b or "").lower()


def split(address):
    """(local part, domain) of an addr-spec; domain None without "@"."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, None
    return local, domain


def address_part(address, part, delimiters="+"):
    """The :all/:localpart/:domain/:user/:detail of an address (RFC 5228
    section 2.7.4, RFC 5233 section 4), or None when it has no such part:
    a null address has none but :all, an address without "@" no :domain,
    one without a delimiter (lda's recipient_delimiter) no :detail.

    As in Pigeonhole, a quoted local part is read as its content
    ("a b"@c.d has the :localpart a b), and :all writes it quoted only
    where a dot-atom cannot hold it ("ab"@c.d is ab@c.d)."""
    local, domain = split(address)
    quoted = len(local) > 1 and local[0] == '"' and _quoted_end(local, 0) == len(local)
    if part == "all":
        if quoted and domain is not None:
            return _as_local_part(_unquoted(local)) + "@" + domain
        return address
    if not address:
        return None
    if quoted:
        local = _unquoted(local)
    if part == "domain":
        return domain
    if part == "localpart":
        return local
    user, detail = split_local(local, delimiters)
    return user if part == "user" else detail


def _unquoted(quoted):
    """The content of a quoted-string: without its quotes and with each
    quoted-pair's backslash dropped (RFC 5322 section 3.2.4)."""
    content, i = [], 1
    while i < len(quoted) - 1:
        if quoted[i] == "\\" and i + 1 < len(quoted) - 1:
            i += 1
        content.append(quoted[i])
        i += 1
    return "".join(content)


def _as_local_part(content):
    """A local part written as a dot-atom where it can be, else quoted."""
    atoms = content.split(".")
    if all(atom and all(c in ATEXT or ord(c) > 127 for c in atom) for atom in atoms):
        return content
    return '"' + content.replace("\\", "\\\\").replace('"', '\\"') + '"'

"""Header field values as Sieve tests see them, without the email package.

email.header and email.utils would import re, calendar and datetime
parsing on every delivery with a Sieve script.  Header tests compare the
RFC 2047 decoded value (RFC 5228 section 2.7.2; the decoding is in
lda/startup/email_header.py); address tests take the addr-specs out of an
address list (RFC 5322 section 3.4): display names, comments, groups and
source routes are dropped; address_values reads malformed ones as
Pigeonhole does (tests/test_sieve_migration.py compares them).
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


class Unparsed(str):
    """An address field with no valid address in it, as written: only
    :all sees it (address_part)."""


def address_values(value):
    """What an address test sees of one address-list field, as Pigeonhole
    reads it (RFC 5228 section 2.7.4: an address that is not syntactically
    valid is matched by no :localpart or :domain).  Each valid address as
    an addr-spec, its local part quoted where a dot-atom cannot hold it;
    an invalid one (no "@", an empty local part, an empty domain label, an
    unterminated "<", quoted string or comment, words without dots between
    them) is skipped, and what follows a valid one that no "," ends (a
    stray ">", a second "@") ends the list; a field with no valid address
    at all is one Unparsed value, its text."""
    found, mailbox, angle = [], [], False
    tokens = _tokens(value) + [(",", ",")]
    for kind, token in tokens:
        if kind == "<":
            angle = True
        elif kind == ">":
            angle = False
        elif kind in ",;" and not (angle and kind == "," and _route(mailbox)):
            spec, stop = _mailbox_spec(mailbox)
            if spec is not None:
                found.append(spec)
            if stop:
                break
            mailbox, angle = [], False
            continue
        elif kind == ":" and not angle:
            mailbox = []  # what came before was a group's display name
            continue
        mailbox.append((kind, token))
    if found or not value.strip():
        return found
    return [Unparsed(value.strip())]


def _tokens(value):
    """RFC 5322 section 3.2 lexical tokens as (kind, text): "atom",
    "quoted" (its content), "literal", "space" (a comment too), "bad" (an
    unterminated quoted string, comment or literal: the rest of the
    value), or a special character as its own kind."""
    tokens, i = [], 0
    while i < len(value):
        c = value[i]
        if c in " \t\r\n" or c == "(":
            end = _comment_end(value, i) if c == "(" else i + 1
            if c == "(" and value[end - 1:end] != ")":
                return tokens + [("bad", value[i:])]
            tokens.append(("space", " "))
            i = end
        elif c == '"':
            end = _quoted_end(value, i)
            if end == len(value) and (end - i < 2 or value[end - 1] != '"' or _escaped(value, end - 1)):
                return tokens + [("bad", value[i:])]
            tokens.append(("quoted", _unquoted(value[i:end])))
            i = end
        elif c == "[":
            end = value.find("]", i)
            if end < 0:
                return tokens + [("bad", value[i:])]
            tokens.append(("literal", value[i:end + 1]))
            i = end + 1
        elif c in '<>@,;:.)]\\':
            tokens.append((c, c))
            i += 1
        else:
            end = i
            while end < len(value) and value[end] not in ' \t\r\n()"[]<>@,;:.\\':
                end += 1
            tokens.append(("atom", value[i:end]))
            i = end
    return tokens


def _escaped(value, i):
    """Whether value[i] follows an odd run of backslashes."""
    run = 0
    while i - run - 1 >= 0 and value[i - run - 1] == "\\":
        run += 1
    return run % 2 == 1


def _route(tokens):
    """Whether an angle address so far is an obsolete source route
    ("<@a,@b:x@y>"), whose "," do not end the mailbox."""
    inner = [kind for kind, _ in tokens[_index(tokens, "<") + 1:] if kind != "space"]
    return inner[:1] == ["@"] and ":" not in inner


def _index(tokens, kind):
    return next((i for i, (k, _) in enumerate(tokens) if k == kind), -1)


def _mailbox_spec(tokens):
    """(the addr-spec of one mailbox or None when it is invalid, whether
    something that is neither "," nor the end followed it)."""
    if any(kind == "bad" for kind, _ in tokens):
        return None, False
    start = _index(tokens, "<")
    if start < 0:
        return _checked_spec(tokens)
    end = _index(tokens[start:], ">")
    if end < 0:
        return None, False
    inner = tokens[start + 1:start + end]
    if [k for k, _ in inner if k != "space"][:1] == ["@"]:  # obsolete source route
        colon = _index(inner, ":")
        inner = inner[colon + 1:] if colon >= 0 else []
    spec, junk = _checked_spec(inner)
    after = [k for k, _ in tokens[start + end + 1:] if k != "space"]
    return (None if junk else spec), bool(after)


def _checked_spec(tokens):
    """(local@domain or None, whether tokens follow it): the local part
    words (atoms of atext, quoted strings) joined by dots, as Dovecot
    takes it, the domain atoms joined by dots or a domain literal."""
    local, i, last = [], 0, None
    while i < len(tokens) and tokens[i][0] != "@":
        kind, token = tokens[i]
        if kind in ("atom", "quoted"):
            if last == "word" or (kind == "atom" and not set(token) <= ATEXT):
                return None, False
            local.append(token)
            last = "word"
        elif kind == ".":
            local.append(".")
            last = "dot"
        elif kind != "space":
            return None, False
        i += 1
    if i == len(tokens) or all(piece == "." for piece in local):
        return None, False  # no "@", or no local part
    labels, expect = [], True
    rest = [t for t in tokens[i + 1:] if t[0] != "space"]
    if rest[:1] and rest[0][0] == "literal":
        return as_local_part("".join(local)) + "@" + rest[0][1], len(rest) > 1
    for kind, token in rest:
        if expect and kind == "atom":
            labels.append(token)
            expect = False
        elif not expect and kind == ".":
            expect = True
        elif expect:
            return None, False
        else:
            return as_local_part("".join(local)) + "@" + ".".join(labels), True
    if expect:
        return None, False
    return as_local_part("".join(local)) + "@" + ".".join(labels), False


def valid_address(address):
    """A plain addr-spec (local@domain) fit for a redirect or a reply: no
    white space, control characters or list punctuation."""
    local, at, domain = address.rpartition("@")
    return (bool(at) and bool(local) and bool(domain) and len(address) <= 320
            and not any(ord(c) <= 32 or ord(c) == 127 or c in ",;<>()" for c in address))


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
    an Unparsed field value none but :all,
    one without a delimiter (lda's recipient_delimiter) no :detail.

    As in Pigeonhole, a quoted local part is read as its content
    ("a b"@c.d has the :localpart a b), and :all writes it quoted only
    where a dot-atom cannot hold it ("ab"@c.d is ab@c.d)."""
    if isinstance(address, Unparsed):
        return address if part == "all" else None
    local, domain = split(address)
    quoted = len(local) > 1 and local[0] == '"' and _quoted_end(local, 0) == len(local)
    if part == "all":
        if quoted and domain is not None:
            return as_local_part(_unquoted(local)) + "@" + domain
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


def as_local_part(content):
    """A local part written as a dot-atom where it can be, else quoted."""
    atoms = content.split(".")
    if all(atom and all(c in ATEXT or ord(c) > 127 for c in atom) for atom in atoms):
        return content
    return '"' + content.replace("\\", "\\\\").replace('"', '\\"') + '"'

"""Envelope addresses: the one check of the sender and the recipients at
every border (`lda deliver`'s argv and environment, LMTP's MAIL and RCPT),
cheap enough for the delivery path.

Full RFC 5322 validation (email-validator) is for alias and forward targets
and the admin commands; a recipient only needs to be an address lda can look
up safely, because it is never turned into a path.
"""

from ..errors import BadAddress, BadSender

# RFC 5321 section 4.5.3.1: a 64-octet local part, "@", a 255-octet domain.
# Octets, not characters: an SMTPUTF8 address counts its UTF-8 bytes.  A
# sender is held to it, and so is a recipient without its extension: the
# user that is looked up and names a mailbox.
MAX_ADDRESS = 320
# A recipient with its extension, which Dovecot's lmtp takes at any length
# its 4 KB command line holds: lda writes it into Delivered-To, and RFC
# 5322 section 2.1.1 holds that line to 998 octets.
MAX_RECIPIENT = 998 - len("Delivered-To: ")
# RFC 5322 section 3.2.3's atext; any non-ASCII character too (RFC 6532).
ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                  "!#$%&'*+-/=?^_`{|}~")
FOLDER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
# Postfix's command_expansion_filter (its default): local(8) makes every
# other byte of $SENDER, $RECIPIENT and the rest "_" for a mailbox_command,
# where the Return-Path and Delivered-To it writes on top are as they are.
EXPANSION_SAFE = frozenset(b"1234567890!@%-_=+:,./"
                           b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def normalize(address, delimiters=""):
    """Strip <>, lower-case; refuse what no mail system would deliver to.

    The one recipient check of every border: `lda deliver` (argv, RECIPIENT),
    LMTP at RCPT, and -a / ORIGINAL_RECIPIENT (see original_recipient).
    delimiters (recipient_delimiter) tell the user from the extension: a
    space is refused in the user, which no mailbox has, and taken in the
    extension ("alice+a b"@example.org, pipe(8)'s alice+a b@example.org),
    as Dovecot's lmtp takes it."""
    value = _unbracket(address)
    if not value or value.startswith("@") or value.endswith("@"):
        raise BadAddress(f"invalid recipient address {address[:80]!r}")
    problem = _problem(value, allow_space=True, limit=MAX_RECIPIENT) or _user_problem(
        value, split_extension(value, delimiters)[0])
    if problem:
        raise BadAddress(f"{problem} in recipient {value[:80]!r}")
    return value.lower()


def check_sender(sender):
    """The envelope sender as Return-Path and sendmail's -f will carry it
    ("" for the null sender), or BadSender: a line break would forge header
    fields, a NUL cannot be passed to sendmail (Postfix never sends either).

    The one sender check of every border: -f and SENDER for `lda deliver`,
    MAIL FROM for LMTP."""
    value = _unbracket(sender.strip(" "))
    problem = _problem(value, allow_space=True)
    if problem:
        raise BadSender(f"{problem} in sender {value[:80]!r}")
    return value


def expansion_filtered(address):
    """address as local(8) hands it to a mailbox_command (EXPANSION_SAFE):
    what the MTA's own field on top says, when lda was given this."""
    raw = address.encode("utf-8", "surrogateescape")
    return bytes(b if b in EXPANSION_SAFE else 0x5F for b in raw).decode("ascii")


def reverse_path(sender):
    """The sender as RFC 5321's reverse-path writes it (Return-Path): a
    local part that is not a dot-atom becomes a quoted string, as Postfix's
    local(8) writes it.  pipe(8)'s ${sender} is Postfix's internal form,
    unquoted ("john smith@example.org"); LMTP's MAIL FROM is quoted already
    and stays as it came."""
    local, at, domain = sender.rpartition("@")
    if not at:
        local, domain = sender, ""
    if len(local) > 1 and local[0] == local[-1] == '"':
        return sender
    return _as_local_part(local) + at + domain


def _as_local_part(local):
    """local as RFC 5321 section 4.1.2 writes it: a dot-atom as it is, else
    a quoted string (alice, "john smith")."""
    if not local or _dot_atom(local):
        return local
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quoted_content(local):
    """The content of a local part that is one quoted string ("a b" gives
    a b; each quoted pair's backslash dropped), or None for any other."""
    if len(local) < 2 or local[0] != '"' or local[-1] != '"':
        return None
    content, escaped = [], False
    for char in local[1:-1]:
        if escaped or char != "\\":
            if char == '"' and not escaped:
                return None  # a quote inside: "a"b"
            content.append(char)
            escaped = False
        else:
            escaped = True
    return None if escaped else "".join(content)


def _dot_atom(local):
    return (not local.startswith(".") and not local.endswith(".") and ".." not in local
            and all(c in ATEXT or c == "." or c > "\x7f" for c in local))


def original_recipient(address, delimiters=""):
    """(-a or ORIGINAL_RECIPIENT without <>, None) when the recipient check
    takes it, else (None, why not).  It only names the recipient in the log
    and to Sieve, so one that is refused is dropped, never the message."""
    if not address:
        return None, None
    try:
        normalize(address, delimiters)
    except BadAddress as e:
        return None, str(e)
    return _unbracket(address), None


def _unbracket(address):
    return address[1:-1] if address.startswith("<") and address.endswith(">") else address


def _user_problem(value, user):
    """What keeps the user part of a recipient (the address without its
    extension) from naming a mailbox, or None."""
    if " " in user:
        return "space"
    if len(user.encode("utf-8")) > MAX_ADDRESS:
        return f"more than {MAX_ADDRESS} octets" + ("" if user == value else
                                                    " without its extension")
    return None


def _problem(value, allow_space, limit=MAX_ADDRESS):
    """What keeps `value` out of an envelope, or None.  Not printable, as
    for an alias name: C0 and C1 controls, DEL, the line and paragraph
    separators str.splitlines() (and a log reader) breaks lines at, and
    format characters that hide in a log (U+200B, U+202E)."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # bytes that were not UTF-8 (argv, LMTP's surrogateescape)
        return "bytes that are not UTF-8"
    if not value.isprintable():
        return "control character"
    if not allow_space and " " in value:
        return "space"
    if size > limit:
        return f"more than {limit} octets"
    return None


def split_extension(address, delimiters):
    """("alice@example.org", "lists") from "alice+lists@example.org".

    A quoted local part is split in its content, as Dovecot's lmtp splits
    it (lib-smtp's smtp_address_detail_parse): ("alice@example.org", "a b")
    from "alice+a b"@example.org; a user that needs the quotes keeps them."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    content = _quoted_content(local)
    base, extension = split_local(local if content is None else content, delimiters)
    if extension is None or not base:
        return address, None
    if content is not None:
        base = _as_local_part(base)
    return (f"{base}@{domain}" if at else base), extension


def split_local(local, delimiters):
    """(user, extension) of a local part, or (local, None) without one.

    As Postfix's recipient_delimiter, every character of `delimiters` is a
    delimiter and the first one in the local part splits it ("+-": both
    alice+lists and alice-lists are alice's)."""
    cut = min((i for i in map(local.find, delimiters) if i >= 0), default=-1)
    if cut < 0:
        return local, None
    return local[:cut], local[cut + 1:]


def folder_for_extension(extension):
    """The Maildir++ folder an extension may select: ".lists", or None.

    Only plain names qualify (no "/", no leading dot, no ".."), so an
    extension can never name a path outside the Maildir."""
    if not extension or len(extension) > 100 or not set(extension) <= FOLDER_CHARS:
        return None
    if extension.startswith(".") or extension.endswith(".") or ".." in extension:
        return None
    return "." + extension


def domain_of(address):
    return address.rpartition("@")[2] if "@" in address else ""

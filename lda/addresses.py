"""Envelope addresses: the cheap checks every recipient passes on the delivery path.

Full RFC 5322 validation (email-validator) is for alias and forward targets
and the admin commands; a recipient only needs to be an address lda can look
up safely, because it is never turned into a path.
"""

from .errors import BadAddress, BadSender

MAX_ADDRESS = 320  # RFC 5321: 64-octet local part, "@", 255-octet domain
FOLDER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def normalize(address):
    """Strip <>, lower-case; refuse what no mail system would deliver to."""
    value = address
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    if not value or value.startswith("@") or value.endswith("@"):
        raise BadAddress(f"invalid recipient address {address[:80]!r}")
    if len(value) > MAX_ADDRESS:
        raise BadAddress(f"recipient address longer than {MAX_ADDRESS} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in value):
        raise BadAddress(f"control character or space in recipient {value[:80]!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8 in argv
        raise BadAddress(f"recipient is not valid UTF-8: {value[:80]!r}") from None
    return value.lower()


def check_sender(sender):
    """The envelope sender goes into Return-Path: a line break in it would
    forge header fields, so it is refused (Postfix never passes one)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in sender):
        raise BadSender(f"control character in sender {sender[:80]!r}")
    try:
        sender.encode("utf-8")
    except UnicodeEncodeError:
        raise BadSender(f"sender is not valid UTF-8: {sender[:80]!r}") from None
    return sender


def split_extension(address, delimiters):
    """("alice@example.org", "lists") from "alice+lists@example.org"."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    base, extension = split_local(local, delimiters)
    if extension is None or not base:
        return address, None
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

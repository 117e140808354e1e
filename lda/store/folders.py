"""Folder names as mail clients, Sieve's fileinto and dovecot-lda's -m give
them, checked and mapped to Maildir++ directory names (".Lists.Python").

A folder name is the one piece of a script's output, or of a command
line, that becomes a path: here it is refused unless it stays a name.
Kept out of lda.sieve so that a delivery with -m and no Sieve script does
not import the Sieve package.
"""

INBOX = "INBOX"
MAX_FOLDER_LENGTH = 255


class UnsafeFolder(ValueError):
    """A fileinto folder name that could leave the Maildir or is not a name."""


def check_folder(name):
    """The folder as the script named it, normalised: "INBOX" for the inbox,
    else the name without a leading "INBOX." (the namespace prefix Courier
    and Dovecot clients show; "INBOX.INBOX" is then the inbox too).  Raises
    UnsafeFolder."""
    if name[:6].upper() == "INBOX.":
        name = name[6:]
    if name.upper() == INBOX:
        return INBOX
    if not name:
        raise UnsafeFolder("empty folder name")
    if "/" in name:
        raise UnsafeFolder(f'"/" in folder name "{name}" (the hierarchy separator is ".")')
    if name.startswith(".") or name.endswith(".") or ".." in name:
        raise UnsafeFolder(f'folder name "{name}" has a leading, trailing or double "."')
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UnsafeFolder(f"control character in folder name {name!r}")
    if name.startswith("~"):
        # Dovecot refuses it ("Begins with '~'"): a folder IMAP never opens.
        raise UnsafeFolder(f'folder name "{name[:80]}" begins with "~"')
    try:
        directory = maildir_folder(name)
    except UnicodeEncodeError:  # a lone surrogate: bytes that were no UTF-8
        raise UnsafeFolder(f"folder name {name[:80]!r} is not UTF-8") from None
    if len(directory) > MAX_FOLDER_LENGTH:
        # One directory entry holds every level: "." and modified UTF-7 (ASCII).
        raise UnsafeFolder(f"folder name too long: its directory would be over "
                           f"{MAX_FOLDER_LENGTH} bytes")
    return name


def maildir_folder(name):
    """The Maildir++ directory for a checked folder name: None for INBOX,
    ".Lists.Python" for "Lists.Python" (non-ASCII in IMAP's modified UTF-7,
    RFC 3501 section 5.1.3, as Dovecot and Courier name them on disk)."""
    if name == INBOX:
        return None
    return "." + modified_utf7(name)


def folder_name(directory):
    """maildir_folder's inverse: the folder name of a Maildir++ directory
    (".Entw&APw-rfe" -> "Entwürfe"), as IMAP clients and Dovecot's mailbox
    names show it.  A run that is not modified UTF-7 is kept as it is."""
    name, out, pos = directory[1:], [], 0
    while (start := name.find("&", pos)) >= 0 and (end := name.find("-", start)) >= 0:
        run = name[start + 1:end]
        out += [name[pos:start], _utf7_run(run) if run else "&"]
        pos = end + 1
    return "".join(out) + name[pos:]


def _utf7_run(run):
    from binascii import Error, a2b_base64

    try:
        return a2b_base64(run.replace(",", "/") + "=" * (-len(run) % 4),
                          strict_mode=True).decode("utf-16-be")
    except (Error, UnicodeDecodeError):
        return f"&{run}-"


def modified_utf7(text):
    out, run = [], []

    def flush():
        if run:
            from binascii import b2a_base64

            raw = "".join(run).encode("utf-16-be")
            out.append("&" + b2a_base64(raw, newline=False).decode().rstrip("=")
                       .replace("/", ",") + "-")
            run.clear()

    for char in text:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            run.append(char)
    flush()
    return "".join(out)

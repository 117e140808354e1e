"""The address a redirect sends to: one RFC 5322 mailbox (RFC 5228 section
2.4.2.3), read as Pigeonhole reads it, and written the way RFC 5321
section 4.1.2 has sendmail take it.

Taken: an addr-spec, or a display name (words and dots, possibly none)
and an addr-spec in angle brackets, with white space and comments around
the parts.  As in Dovecot, a local part may hold dots anywhere ("a..b",
"roadrunner."); such a one, or one with characters no atom holds, goes
out quoted.  A local part is printable ASCII; the domain a dot-atom or a
domain literal.  Anything else, or anything after the one mailbox, is
refused, never read past: "x<y@example.org" names no address, not
y@example.org (tests/test_sieve_redirect_address.py runs each case
through Pigeonhole's sieve-test too).
"""

from .fields import ATEXT, as_local_part

SPACE = " \t\r\n"


class InvalidAddress(ValueError):
    """The text is not one mailbox; the message says where it went wrong."""


def smtp_address(text):
    """The addr-spec that `text` names, as sendmail takes it
    ('"roadrunner."@example.org'); InvalidAddress when it names none."""
    reader = _Reader(text)
    reader.skip_space()
    if reader.at_end():
        raise InvalidAddress("empty address")
    local, domain = reader.mailbox()
    if not reader.at_end():
        raise InvalidAddress("not a single address" if reader.peek() == ","
                             else f"{reader.peek()!r} after the address")
    return as_local_part(local) + "@" + domain


def _atext(c):
    return c in ATEXT or ord(c) > 127  # RFC 6532 section 3.2 widens atext


class _Reader:
    """A cursor over the text with one method per piece of the grammar."""

    def __init__(self, text):
        self.text, self.pos = text, 0

    def peek(self):
        return self.text[self.pos:self.pos + 1]

    def at_end(self):
        return self.pos >= len(self.text)

    def skip_space(self):
        """White space and comments (RFC 5322 section 3.2.2 CFWS)."""
        while not self.at_end():
            if self.peek() in SPACE:
                self.pos += 1
            elif self.peek() == "(":
                self._comment()
            else:
                return

    def _comment(self):
        depth = 0
        while not self.at_end():
            c = self.peek()
            self.pos += 2 if c == "\\" else 1
            depth += {"(": 1, ")": -1}.get(c, 0)
            if depth == 0:
                return
        raise InvalidAddress("unterminated comment")

    def atom(self):
        start = self.pos
        while not self.at_end() and _atext(self.peek()):
            self.pos += 1
        return self.text[start:self.pos]

    def quoted(self):
        """The content of the quoted-string at the cursor, quoted-pairs
        read (RFC 5322 section 3.2.4), line breaks unfolded."""
        content, self.pos = [], self.pos + 1
        while not self.at_end():
            c = self.peek()
            self.pos += 1
            if c == '"':
                return "".join(content)
            if c == "\\" and not self.at_end():
                c = self.peek()
                self.pos += 1
            elif c in "\r\n":
                continue
            content.append(c)
        raise InvalidAddress("unterminated quoted string")

    def mailbox(self):
        """name-addr when a display name (possibly empty) is followed by
        "<", else addr-spec read again from the start."""
        start = self.pos
        try:
            self._phrase()
        except InvalidAddress:
            pass
        if self.peek() != "<":
            self.pos = start
            return self.addr_spec()
        self.pos += 1
        self.skip_space()
        address = self.addr_spec()
        if self.peek() != ">":
            raise InvalidAddress("missing '>'")
        self.pos += 1
        self.skip_space()
        return address

    def _phrase(self):
        while not self.at_end():
            if self.peek() == '"':
                self.quoted()
            elif self.peek() == "." or _atext(self.peek()):
                self.pos += 1
            elif self.peek() in SPACE or self.peek() == "(":
                self.skip_space()
            else:
                return

    def addr_spec(self):
        local = self.local_part()
        if self.peek() != "@":
            raise InvalidAddress(f"no '@' after the local part {local!r}")
        self.pos += 1
        self.skip_space()
        return local, self.domain()

    def local_part(self):
        """A quoted-string, or atoms and dots in any order (Dovecot takes
        "a..b" and "x." for the addresses some sites hand out)."""
        if self.peek() == '"':
            local = self.quoted()
            self.skip_space()
        else:
            pieces = []
            while True:
                while self.peek() == ".":
                    pieces.append(".")
                    self.pos += 1
                if self.peek() == "@" or self.at_end():
                    break
                atom = self.atom()
                if not atom:
                    raise InvalidAddress("invalid local part")
                pieces.append(atom)
                self.skip_space()
                if self.peek() != ".":
                    break
            local = "".join(pieces)
        if not local or not all(" " <= c <= "~" for c in local):
            raise InvalidAddress("invalid local part")
        return local

    def domain(self):
        """A dot-atom, or a domain literal as written ("[192.0.2.1]")."""
        start = self.pos
        if self.peek() == "[":
            self.pos += 1
            while self.peek() not in ("]", "[", ""):
                self.pos += 2 if self.peek() == "\\" else 1
            if self.peek() != "]":
                raise InvalidAddress("unterminated domain literal")
            self.pos += 1
        else:
            while True:
                if not self.atom():
                    raise InvalidAddress("invalid or missing domain")
                if self.peek() != ".":
                    break
                self.pos += 1
        domain = self.text[start:self.pos]
        self.skip_space()
        return domain

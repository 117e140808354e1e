"""A small ManageSieve client (RFC 5804), enough for what webmail does:
AUTHENTICATE "PLAIN", PUTSCRIPT and CHECKSCRIPT with a literal, SETACTIVE,
RENAMESCRIPT, DELETESCRIPT, LISTSCRIPTS.  Each command returns (status,
lines, final line)."""

import base64
import re
import socket

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
_STATUS = re.compile(rb"(OK|NO|BYE)\b")


class ManageSieveError(AssertionError):
    pass


def quoted(text):
    """text as a ManageSieve string (RFC 5804 section 4): quoted, or a
    literal for what a quoted string cannot hold (CR, LF, NUL)."""
    data = text.encode("utf-8", "surrogateescape")
    if any(c in data for c in b"\r\n\0"):
        return b"{%d+}\r\n" % len(data) + data
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class ManageSieve:
    def __init__(self, port, user, password="secret"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        status, self.capabilities, _ = self.response()
        assert status == "OK", self.capabilities
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
        self.check(b'AUTHENTICATE "PLAIN" "' + token + b'"')

    def close(self):
        try:
            self.command(b"LOGOUT")
        finally:
            self.file.close()
            self.sock.close()

    def response(self):
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ManageSieveError(f"connection closed after {lines!r}")
            found = _LITERAL.search(line)
            while found:  # a literal in the response: its bytes, then the rest of the line
                line += self.file.read(int(found.group(1)))
                more = self.file.readline()
                line += more
                found = _LITERAL.search(more)
            match = _STATUS.match(line)
            if match:
                return match.group(1).decode(), lines, line
            lines.append(line)

    def command(self, line, literal=None):
        data = line
        if literal is not None:
            data += b" {%d+}\r\n" % len(literal) + literal
        self.sock.sendall(data + b"\r\n")
        return self.response()

    def check(self, line, literal=None):
        status, lines, final = self.command(line, literal)
        if status != "OK":
            raise ManageSieveError(f"{line[:60]!r}: {final!r}")
        return lines

    def putscript(self, name, data):
        """(status, final line): NO when the server refuses the script."""
        status, _, final = self.command(b"PUTSCRIPT " + quoted(name), data)
        return status, final

    def checkscript(self, data):
        """(status, final line, which holds the errors after a NO)."""
        status, _, final = self.command(b"CHECKSCRIPT", data)
        return status, final

    def renamescript(self, old, new):
        self.check(b"RENAMESCRIPT " + quoted(old) + b" " + quoted(new))

    def setactive(self, name):
        self.check(b"SETACTIVE " + quoted(name))

    def deletescript(self, name):
        self.check(b"DELETESCRIPT " + quoted(name))

    def listscripts(self):
        """{name: active?}"""
        found = {}
        for line in self.check(b"LISTSCRIPTS"):
            match = re.match(rb'(?:"((?:[^"\\]|\\.)*)"|\{(\d+)\}\r\n)', line)
            if not match:
                continue
            if match.group(1) is not None:  # quoted: \" and \\ stand for " and \
                name, rest = re.sub(rb"\\(.)", rb"\1", match.group(1)), line[match.end():]
            else:  # a literal: its length in octets, then the name
                end = match.end() + int(match.group(2))
                name, rest = line[match.end():end], line[end:]
            found[name.decode()] = rest.startswith(b" ACTIVE")
        return found

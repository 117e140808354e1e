"""Sieve text to a syntax tree: the grammar of RFC 5228 section 8.

Lines and columns are 1-based; a column counts characters (a tab is one).
The first syntax error stops the parse: after a missing quote or brace the
rest of the script cannot be read reliably.  What the commands mean, and
whether their extensions were required, is grammar.py's business.

Only compiling a script imports this module; a delivery whose script is
cached never does.
"""

from .errors import SieveError
from .grammar import validate

IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
IDENT_CHARS = IDENT_START | frozenset("0123456789")
DIGITS = frozenset("0123456789")
PUNCTUATION = frozenset("[](){},;")
QUANTIFIERS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MAX_NUMBER = (1 << 63) - 1
MAX_NESTING = 32


class Token:
    __slots__ = ("kind", "value", "line", "col")

    def __init__(self, kind, value, line, col):
        self.kind, self.value, self.line, self.col = kind, value, line, col

    def __repr__(self):
        return f"Token({self.kind}, {self.value!r}, {self.line}:{self.col})"


class Arg:
    """One argument: a tag (":is"), a number, or a string list.  A string
    list written as a single string has `single` set; `positions` holds the
    (line, col) of each string, for errors about one of them."""

    __slots__ = ("kind", "value", "line", "col", "single", "positions")

    def __init__(self, kind, value, line, col, single=False, positions=()):
        self.kind, self.value, self.line, self.col = kind, value, line, col
        self.single, self.positions = single, positions


class Node:
    """A command or a test: its name (lower case), arguments, the tests it
    takes (`test_list` tells "(a, b)" from a single test) and, for a
    command, its block (None when it ended with ";")."""

    __slots__ = ("name", "line", "col", "args", "tests", "test_list", "block")

    def __init__(self, name, line, col, args, tests, test_list, block=None):
        self.name, self.line, self.col = name, line, col
        self.args, self.tests, self.test_list, self.block = args, tests, test_list, block


class Lexer:
    def __init__(self, text):
        self.text = text.replace("\r\n", "\n")
        self.i = 0
        self.line = 1
        self.line_start = 0

    def error(self, message, line=None, col=None):
        raise SieveError(line or self.line, col or self.i - self.line_start + 1, message)

    def _newlines(self, start, end):
        """Account for the line ends in text[start:end]."""
        count = self.text.count("\n", start, end)
        if count:
            self.line += count
            self.line_start = self.text.rindex("\n", start, end) + 1

    def tokens(self):
        text, n = self.text, len(self.text)
        while self.i < n:
            c = text[self.i]
            if c == "\n":
                self.i += 1
                self.line, self.line_start = self.line + 1, self.i
            elif c in " \t\r":
                self.i += 1
            elif c == "#":
                end = text.find("\n", self.i)
                self.i = n if end < 0 else end
            elif c == "/" and text.startswith("/*", self.i):
                self._bracketed_comment()
            else:
                yield self._token(c)

    def _bracketed_comment(self):
        end = self.text.find("*/", self.i + 2)
        if end < 0:
            self.error('unterminated comment: "/*" without "*/"')
        self._newlines(self.i, end)
        self.i = end + 2

    def _token(self, c):
        line, col = self.line, self.i - self.line_start + 1
        if c in PUNCTUATION:
            self.i += 1
            return Token(c, c, line, col)
        if c == '"':
            return Token("string", self._utf8(self._quoted(line, col), line, col), line, col)
        if c == ":":
            self.i += 1
            name = self._identifier()
            if not name:
                self.error('expected a tag name after ":"', line, col)
            return Token("tag", ":" + name.lower(), line, col)
        if c in DIGITS:
            return Token("number", self._number(line, col), line, col)
        if c in IDENT_START:
            name = self._identifier()
            if name.lower() == "text" and self.text.startswith(":", self.i):
                self.i += 1
                return Token("string", self._utf8(self._multiline(line, col), line, col),
                             line, col)
            return Token("identifier", name.lower(), line, col)
        self.error(f"unexpected character {c!r}", line, col)

    def _utf8(self, value, line, col):
        """A string's text, which must be UTF-8: script.py lets bytes that
        are not through as surrogate escapes, for comments only."""
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                self.error("a string that is not valid UTF-8", line, col)
        return value

    def _identifier(self):
        start = self.i
        while self.i < len(self.text) and self.text[self.i] in IDENT_CHARS:
            self.i += 1
        return self.text[start:self.i]

    def _number(self, line, col):
        start = self.i
        while self.i < len(self.text) and self.text[self.i] in DIGITS:
            self.i += 1
        value = int(self.text[start:self.i])
        unit = self.text[self.i:self.i + 1].lower()
        if unit in QUANTIFIERS:
            value *= QUANTIFIERS[unit]
            self.i += 1
        if self.i < len(self.text) and self.text[self.i] in IDENT_CHARS:
            self.error(f"invalid number {self.text[start:self.i + 1]!r} "
                       "(a number may end in K, M or G)", line, col)
        if value > MAX_NUMBER:
            self.error("number too large", line, col)
        return value

    def _quoted(self, line, col):
        """RFC 5228 section 2.4.2: \\\\ and \\" are escapes; any other
        backslash is dropped ("\\a" is "a")."""
        text, parts, i = self.text, [], self.i + 1
        while True:
            quote = text.find('"', i)
            if quote < 0:
                self.error("unterminated string", line, col)
            backslash = text.find("\\", i, quote)
            if backslash < 0:
                parts.append(text[i:quote])
                break
            parts.append(text[i:backslash])
            if backslash + 1 < len(text):
                parts.append(text[backslash + 1])
            i = backslash + 2
        self._newlines(self.i, quote)
        self.i = quote + 1
        return "".join(parts)

    def _multiline(self, line, col):
        """text: up to a line holding only "."; a leading ".." loses one dot."""
        text = self.text
        while self.i < len(text) and text[self.i] in " \t":
            self.i += 1
        if text.startswith("#", self.i):
            self.i = text.find("\n", self.i) if "\n" in text[self.i:] else len(text)
        if not text.startswith("\n", self.i):
            self.error('expected the end of the line after "text:"')
        start, lines = self.i + 1, []
        while True:
            end = text.find("\n", start)
            if end < 0:
                self.error('unterminated multi-line string: no line with only "."',
                           line, col)
            content = text[start:end]
            if content == ".":
                break
            lines.append(content[1:] if content.startswith("..") else content)
            start = end + 1
        self._newlines(self.i, end + 1)
        self.i = end + 1
        return "".join(item + "\n" for item in lines)


class Parser:
    def __init__(self, text):
        self.lexer = Lexer(text)
        self.stream = self.lexer.tokens()
        self.token = next(self.stream, None)

    def error(self, message, token=None):
        token = token or self.token
        if token is None:
            self.lexer.error(message + " at the end of the script")
        raise SieveError(token.line, token.col, message)

    def advance(self):
        token, self.token = self.token, next(self.stream, None)
        return token

    def at(self, kind):
        return self.token is not None and self.token.kind == kind

    def expect(self, kind, what):
        if not self.at(kind):
            found = f"{self.token.value!r}" if self.token else "nothing"
            self.error(f"expected {what}, found {found}")
        return self.advance()

    def script(self):
        commands = self.commands(0)
        if self.token is not None:
            self.error(f"unexpected {self.token.value!r}")
        return commands

    def commands(self, depth):
        commands = []
        while self.token is not None and not self.at("}"):
            commands.append(self.command(depth))
        return commands

    def command(self, depth):
        name = self.expect("identifier", "a command")
        args, tests, test_list = self.arguments(depth)
        node = Node(name.value, name.line, name.col, args, tests, test_list)
        if self.at("{"):
            opening = self.advance()
            if depth + 1 > MAX_NESTING:
                self.error(f"blocks nested more than {MAX_NESTING} deep", opening)
            node.block = self.commands(depth + 1)
            self.expect("}", 'a command or "}"')
        elif not self.at(";"):
            found = f" (found {self.token.value!r})" if self.token else ""
            self.error(f'missing ";" after {name.value}{found}')
        else:
            self.advance()
        return node

    def arguments(self, depth):
        args = []
        while self.token is not None:
            token = self.token
            if token.kind in ("tag", "number"):
                args.append(Arg(token.kind, self.advance().value, token.line, token.col))
            elif token.kind == "string":
                args.append(Arg("strings", [self.advance().value], token.line, token.col,
                                single=True, positions=[(token.line, token.col)]))
            elif token.kind == "[":
                args.append(self.string_list())
            else:
                break
        if self.at("identifier"):
            return args, [self.test(depth + 1)], False
        if self.at("("):
            return args, self.test_list(depth + 1), True
        return args, [], False

    def string_list(self):
        opening = self.advance()
        values, positions = [], []
        while True:
            token = self.expect("string", "a string in the list")
            values.append(token.value)
            positions.append((token.line, token.col))
            if self.at("]"):
                self.advance()
                return Arg("strings", values, opening.line, opening.col, positions=positions)
            self.expect(",", '"," or "]" in the string list')

    def test(self, depth):
        if depth > MAX_NESTING:
            self.error(f"tests nested more than {MAX_NESTING} deep")
        name = self.expect("identifier", "a test")
        args, tests, test_list = self.arguments(depth)
        return Node(name.value, name.line, name.col, args, tests, test_list)

    def test_list(self, depth):
        self.advance()
        tests = [self.test(depth)]
        while self.at(","):
            self.advance()
            tests.append(self.test(depth))
        self.expect(")", '"," or ")" in the test list')
        return tests


def parse(text, disabled=frozenset()):
    """Source text to (commands AST, requires): raises SieveError.
    `disabled` capabilities are refused as unknown ones are."""
    return validate(Parser(text).script(), disabled)

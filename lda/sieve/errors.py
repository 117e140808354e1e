"""SieveError: a script that cannot be compiled or read.

In a module of its own because script.py (which reads and compiles),
parser.py and grammar.py (which find the errors) all raise it: kept in
script.py, it made grammar -> script -> parser -> grammar an import cycle.
"""

from ..errors import LdaError


class SieveError(LdaError):
    """A Sieve script that cannot be compiled (or read).

    line and column (1-based) place the first problem; `errors` lists every
    (line, column, message), the first included.  Like any LdaError left
    uncaught it means a temporary failure, never a bounce: the delivery
    code is expected to catch it and keep the message (lda.sieve.evaluate
    does)."""

    def __init__(self, line, column, message, more=()):
        self.line, self.column, self.message = line, column, message
        self.errors = [(line, column, message), *more]
        extra = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(f"line {line}, column {column}: {message}{extra}")

    def lines(self, name):
        """One "NAME:LINE:COL: message" per error, as compilers print them."""
        return [f"{name}:{line}:{col}: {message}" for line, col, message in self.errors]

"""The admin command line: a thin click skin over the library.

The only package that imports click.  `lda deliver` never comes here on
the per-message path (main.py dispatches it first); it is declared in
delivery.py so that `lda --help` and the manual list it.

root.py holds the `lda` group itself; each module imported here adds one
area's commands to it (output.py holds what they share).  The import order
is the order of `cli.commands`, as it was when all of this was cli.py.
"""

from . import delivery, mailbox, servers, db, configuration  # noqa: F401  (registers)
from . import dedup, quota, partial, aliases, sieve, directory, hosts  # noqa: F401
from .root import cli

__all__ = ["cli"]

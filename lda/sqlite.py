"""SQLite as the delivery path imports it: the C module itself.

`import sqlite3` runs sqlite3/dbapi2.py, which imports datetime and registers
date adapters that lda never uses: ~2 ms on every delivery.  dbapi2 re-exports
`_sqlite3` whole (`from _sqlite3 import *`), so connections, exceptions and
constants are the very same objects either way.
"""

try:
    import _sqlite3 as sqlite3
except ImportError:  # a Python whose sqlite3 is not built on _sqlite3
    import sqlite3

__all__ = ["sqlite3"]

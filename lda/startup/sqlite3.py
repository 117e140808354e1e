"""SQLite as the delivery path imports it: the C module itself.

`import sqlite3` runs sqlite3/dbapi2.py, which imports datetime to register
date adapters that lda never uses.  dbapi2 re-exports `_sqlite3` whole
(`from _sqlite3 import *`), so connections, exceptions and constants are
the very same objects either way.

`_sqlite3` itself (3.11 and later) imports functools at load, for the one
name it keeps: `lru_cache`, which builds each connection's statement cache.
functools brings collections, keyword, operator, reprlib and heapq, a
large share of a delivery's imports (bench/profiles/startup-figures.txt).
When nothing has imported functools yet, the load is handed a stand-in
module whose `lru_cache` builds the same C cache that functools.lru_cache
wraps (`_functools._lru_cache_wrapper`), and the stand-in is removed again
at once, so a later `import functools` gets the real one.
"""

import sys


def _functools_stand_in():
    """A module with functools.lru_cache's C cache alone, or None when
    functools is loaded already or this Python has no such cache."""
    if "functools" in sys.modules:
        return None
    try:
        from _functools import _lru_cache_wrapper
    except ImportError:
        return None
    stand_in = type(sys)("functools")
    # typed=False; cache_info_type only serves cache_info(), never called.
    stand_in.lru_cache = lambda maxsize: lambda function: _lru_cache_wrapper(
        function, maxsize, False, None)
    return stand_in


def _load_sqlite():
    stand_in = _functools_stand_in()
    if stand_in is not None:
        sys.modules["functools"] = stand_in
    try:
        import _sqlite3
    finally:
        if stand_in is not None and sys.modules.get("functools") is stand_in:
            del sys.modules["functools"]
    return _sqlite3


try:
    sqlite3 = _load_sqlite()
except ImportError:  # a Python whose sqlite3 is not built on _sqlite3
    import sqlite3

__all__ = ["sqlite3"]

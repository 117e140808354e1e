"""Stand-ins for standard modules that `lda deliver` would otherwise import.

The start-up budget: a delivery imports nothing it does not use.  Most of
a delivery's time is Python starting and importing, so where a standard
module's import costs more than the part of it lda needs, the delivery
path uses a stand-in from here.  tests/test_deliver.py lists what a
delivery must never import (NOT_ON_THE_DELIVERY_PATH) and fails if one
comes back; the figures behind these choices are in bench/profiles/
(deliver-case1-startup.txt, startup-figures.txt), not in comments.

Each module is named after the standard module it replaces and does the
part of it lda uses:

- sqlite3: `_sqlite3` itself, loaded without functools; leaves out
  dbapi2's date and time adapters, which lda never uses.
- collections: record(), namedtuple's tuple classes without collections;
  leaves out keyword arguments, _make, _replace and _field_defaults.
- getopt: gnu_getopt's single-letter options and --help; leaves out
  clustered flags, other long options and gettext's messages.
- tomllib: lda.toml's plain `key = value` lines; leaves everything else
  (tables, escapes, multi-line values) to the real tomllib.
- zlib: crc32 a bit at a time, for a few lock keys; leaves the rest, and
  many keys, to zlib.
- hashlib: sha256 from the interpreter's built-in module, without
  OpenSSL; leaves out every other algorithm.
- json: reads the Sieve cache that json.dumps writes; leaves out floats,
  white space and what json.dumps never writes there.
- email_header: RFC 2047 decoding for Sieve header tests; leaves out
  encoding and decode_header's (bytes, charset) pairs.

lda/log.py stands in for logging and syslog but stays outside this
package: it is lda's log (its levels, escaping and syslog framing), a
concept of lda's own, not a part of a standard module.

Imported by every `lda deliver`: this file holds no code.
"""

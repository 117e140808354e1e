"""hashlib.sha256 without loading hashlib.

hashlib imports OpenSSL's _hashlib first, which costs a delivery more than
the rest of lda's imports together (bench/profiles/startup-figures.txt);
the interpreter's own SHA-256 (_sha2 from Python 3.12, _sha256 before) is
built in and gives the same digests.  A delivery needs one only for the
DeliveredTo key of a message without Message-ID (or with one too long to
store).  Left out: every other algorithm, and OpenSSL's FIPS mode, which
lda's digests (duplicate keys, not signatures) do not need.
"""

import sys

try:
    if sys.version_info >= (3, 12):
        from _sha2 import sha256
    else:
        from _sha256 import sha256
except ImportError:  # a Python built without its own SHA-2
    from hashlib import sha256

__all__ = ["sha256"]

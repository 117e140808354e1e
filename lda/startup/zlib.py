"""zlib.crc32 for a few short inputs without loading zlib.

zlib is a shared module on most Pythons, and loading it costs a delivery
more than hashing its few lock keys a bit at a time (see
bench/profiles/startup-figures.txt).  crc32_for() gives the bitwise crc32
below to a process that has not loaded zlib and hashes up to FEW inputs;
anything more (a fan-out's many keys) gets zlib.crc32 itself.  Left out:
crc32's running value (its second argument) and the rest of zlib.
"""

import sys

FEW = 8


def crc32(data):
    """zlib.crc32(data), one bit at a time (CRC-32/ISO-HDLC)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def crc32_for(count):
    """The crc32 to hash count inputs with: zlib's once zlib is loaded or
    for more than FEW inputs, else the bitwise one; both give the same
    values."""
    if count > FEW or "zlib" in sys.modules:
        from zlib import crc32 as zlib_crc32

        return zlib_crc32
    return crc32

"""Mailbox lock stripes: the key-to-stripe mapping is shared by every lda
version that may run at the same time, so it must stay crc32 % 256."""

import os
import zlib

from hypothesis import given
from hypothesis import strategies as st

from conftest import without_site
from lda.startup.zlib import crc32
from lda.store.locks import STRIPES, lock_path, stripe_of, stripes_of

KNOWN = {"": 0, "alice@example.org": 0x4F, "\udcff": 0x87, "box15@bench.example.org": 0x84}


def crc_stripe(key):
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % STRIPES


@given(st.binary(max_size=300))
def test_the_python_crc32_is_zlibs(data):
    assert crc32(data) == zlib.crc32(data)


@given(st.lists(st.text(max_size=60), min_size=1, max_size=30))
def test_stripes_are_zlib_crc32_mod_256(keys):
    assert stripes_of(keys) == sorted({crc_stripe(k) for k in keys})
    assert stripe_of(keys[0]) == crc_stripe(keys[0])


def test_a_process_without_zlib_picks_the_same_stripes():
    # `lda deliver` does not load zlib for a few keys; a fan-out does.
    script = ("import sys\n"
              "from lda.store.locks import stripe_of, stripes_of\n"
              f"few = [stripe_of(k) for k in {list(KNOWN)!r}]\n"
              "loaded = 'zlib' in sys.modules\n"
              f"many = stripes_of({list(KNOWN)!r} * 3)\n"
              "print(few, loaded, many, 'zlib' in sys.modules)\n")
    done = without_site(script, os.environ)
    known = list(KNOWN.values())
    assert done.stdout.split("\n")[0] == f"{known} False {sorted(set(known))} True"
    assert known == [crc_stripe(k) for k in KNOWN]


def test_lock_file_names():
    assert lock_path("/locks", 7) == "/locks/007.lock"

"""Mailbox lock stripes: the key-to-stripe mapping is shared by every lda
version that may run at the same time, so it must stay crc32 % 256."""

import zlib

from hypothesis import given
from hypothesis import strategies as st

from lda.locks import FEW_KEYS, STRIPES, lock_path, stripe_of, stripes_of


def crc_stripe(key):
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % STRIPES


@given(st.text(max_size=300))
def test_a_key_keeps_its_zlib_crc32_stripe(key):
    assert stripe_of(key) == crc_stripe(key)


@given(st.lists(st.text(max_size=60), min_size=1, max_size=3 * FEW_KEYS))
def test_few_and_many_keys_map_alike(keys):
    # Up to FEW_KEYS keys are hashed in Python, more by zlib: both must agree.
    assert stripes_of(keys) == sorted({crc_stripe(k) for k in keys})


def test_known_stripes():
    # Fixed points, so that a change to both sides of the tests above fails too.
    assert [stripe_of(k) for k in ("", "alice@example.org", "\udcff")] == [0, 0x4F, 0x87]
    assert lock_path("/locks", 7) == "/locks/007.lock"

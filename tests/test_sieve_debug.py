"""vnd.dovecot.debug: debug_log, which Pigeonhole enables by default, so a
Dovecot user's script that logs while it filters runs unchanged.  The line
goes to the delivery log ("DEBUG: " and the message, as Pigeonhole's
sieve_runtime_log writes it) and to `lda sieve test`'s notes; it changes no
action.  A user's text reaches the site's log: one line, control characters
shown as escapes, its length and the number of lines a run may log
bounded."""

import json

import pytest
from sieve_helpers import KEEP, LIST, PLAIN, outcome_of

from conftest import maildir_files, message
from lda.sieve import SieveError, compile_script

REQUIRE = 'require ["vnd.dovecot.debug", "variables", "fileinto"];\n'


def test_debug_log_logs_with_variables_and_changes_no_action():
    outcome = outcome_of(REQUIRE + 'set "who" "you";\ndebug_log "a present for ${who}";\n'
                         'fileinto "Gifts";\n')
    assert outcome.describe() == ['fileinto "Gifts"'] and outcome.errors == []
    assert outcome.log == ["DEBUG: a present for you"]


def test_debug_log_alone_keeps():
    outcome = outcome_of('require "vnd.dovecot.debug";\ndebug_log "seen";\n')
    assert outcome.describe() == KEEP and outcome.log == ["DEBUG: seen"]


@pytest.mark.parametrize("script, where, text", [
    ('debug_log "x";', (1, 1), 'needs require "vnd.dovecot.debug"'),
    ('require "vnd.dovecot.debug";\ndebug_log;', (2, 1), "debug_log expects 1 argument"),
    ('require "vnd.dovecot.debug";\ndebug_log ["a", "b"];', (2, 11), "expects a string"),
    ('require "vnd.dovecot.debug";\nif debug_log "x" { keep; }', (2, 4), None),
])
def test_compile_errors(script, where, text):
    with pytest.raises(SieveError) as caught:
        compile_script(script)
    line, col, said = caught.value.errors[0]
    assert (line, col) == where, said
    if text:
        assert text in said


def test_a_hostile_message_is_one_bounded_line():
    """CR, LF, NUL and ESC from a header reach debug_log through a variable:
    the log gets one line with them escaped, cut at MAX_MESSAGE."""
    from lda.sieve.extensions.debug import MAX_MESSAGE

    hostile = PLAIN.replace("Subject: I have a present for you",
                            "Subject: a\x1b[31mred\x00\x7f" + "x" * 5000)
    outcome = outcome_of(REQUIRE + 'if header :matches "subject" "*" { set "s" "${1}"; }\n'
                         'debug_log "s=${s}\\r\\nforged: yes";\n', msg=hostile)
    [line] = outcome.log
    assert line.startswith("DEBUG: s=a\\x1b[31mred\\x00\\x7f") and line.isprintable()
    assert len(line) <= len("DEBUG: ") + MAX_MESSAGE


def test_the_lines_one_run_logs_are_bounded():
    from lda.sieve.extensions.debug import MAX_LINES

    parts = "".join(f"--b\nContent-Type: text/plain\n\npart {n}\n" for n in range(MAX_LINES + 5))
    multipart = PLAIN.replace("Beep beep.\n", "") .replace(
        "X-Caffeine: C8H10N4O2\n",
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n') + parts + "--b--\n"
    outcome = outcome_of('require ["vnd.dovecot.debug", "foreverypart"];\n'
                         'foreverypart { debug_log "a part"; }\n', msg=multipart)
    assert outcome.log == ["DEBUG: a part"] * MAX_LINES + [
        f"debug_log: {5 + 1} more lines not logged"]


def test_sieve_test_shows_the_lines(user, tmp_path):
    path = tmp_path / "d.sieve"
    path.write_text(REQUIRE + 'if header :matches "List-Id" "*<*>" { set "l" "${2}"; }\n'
                    'debug_log "list ${l}";\nfileinto "Lists";\n')
    done = user.run("sieve", "test", str(path), input=LIST.encode(), check=0)
    assert done.stdout.decode().splitlines() == ['fileinto "Lists"']
    assert f"{path}: DEBUG: list python-dev.python.example.org" in done.stderr.decode()
    record = json.loads(user.run("sieve", "test", str(path), "--json", input=LIST.encode(),
                                 check=0).stdout)
    assert record["log"] == ["DEBUG: list python-dev.python.example.org"]


@pytest.mark.usefixtures("user_log_on_stderr")
def test_a_delivery_logs_the_line_and_files_as_the_script_says(user):
    (user.home / ".lda.sieve").write_text(
        REQUIRE + 'if header :matches "subject" "*" { set "s" "${1}"; }\n'
        'debug_log "subject ${s}";\nfileinto "Lists";\n')
    for sub in ("cur", "new", "tmp"):
        (user.maildir / ".Lists" / sub).mkdir(parents=True)
    done = user.deliver(message(subject="hello there"), "a@example.org", check=0)
    assert b"DEBUG: subject hello there" in done.stderr, done.stderr
    assert len(maildir_files(user.maildir / ".Lists")) == 1, done.stderr
    assert maildir_files(user.maildir) == []

"""What a site moving from Dovecot would trip on: scripts and messages
where lda and Pigeonhole 0.5.19 (sieve-test, tests/pigeonhole.py) once
decided differently, each table run through both side by side."""

import pytest

import pigeonhole

needs_sieve_test = pytest.mark.skipif(pigeonhole.skip_reason() is not None,
                                      reason=pigeonhole.skip_reason() or "")

MESSAGE = b"From: a@example.org\nTo: b@example.org\nSubject: hi\n\nbody\n"


def side_by_side(user, tmp_path, script, message=MESSAGE, sender="a@example.org",
                 recipient="b@example.org"):
    """(Pigeonhole's Result, lda's Result) for one script and message."""
    script_path, message_path = tmp_path / "case.sieve", tmp_path / "case.eml"
    script_path.write_text(script)
    message_path.write_bytes(message)
    theirs = pigeonhole.pigeonhole(script_path, message_path, sender, recipient)
    ours = pigeonhole.lda(user.run, script_path, message_path, sender, recipient)
    return theirs, ours


# --- Code that never runs: what Pigeonhole leaves unvalidated ------------------
#
# Pigeonhole's validator works out which tests are constant (true, false,
# not, allof and anyof of constants, an ihave of an unknown extension) and
# does not validate a block whose test is constantly false, the elsif and
# else after a branch that is constantly true, nor the members of an allof
# after a constant false (of an anyof after a constant true).  Anything
# there, an unknown command or test, a missing require, a wrong argument,
# compiles and never runs; the same in a live branch is an error.

DEAD = {
    "if-false": 'if false { unknowncmd; }',
    "if-not-true": 'if not true { unknowncmd; }',
    "if-not-not-false": 'if not not false { unknowncmd; }',
    "anyof-false": 'if anyof(false) { unknowncmd; }',
    "anyof-false-false": 'if anyof(false, false) { unknowncmd; }',
    "allof-false-true": 'if allof(false, true) { unknowncmd; }',
    "allof-live-false": 'if allof(header :is "subject" "hi", false) { unknowncmd; }',
    "allof-false-unknown-test": 'if allof(false, unknowntest) { keep; }',
    "anyof-true-unknown-test": 'if anyof(true, unknowntest) { keep; }',
    "not-allof-false-unknown": 'if not allof(false, unknowntest) { keep; }',
    "elsif-false": 'if header :is "subject" "x" { keep; } elsif false { unknowncmd; }',
    "elsif-after-true": 'if true { keep; } elsif unknowntest { unknowncmd; }',
    "else-after-true": 'if true { keep; } else { unknowncmd; }',
    "else-after-allof-true": 'if allof(true, true) { keep; } else { unknowncmd; }',
    "else-after-elsif-true": 'if false { keep; } elsif true { discard; } else { unknowncmd; }',
    "elsif-after-elsif-true": 'if false { } elsif true { discard; } elsif unknowntest { }',
    "missing-require": 'if false { fileinto "Junk"; }',
    "wrong-argument": 'if false { keep :flags "x"; }',
    "require-inside": 'if false { require "fileinto"; }',
    "nested-live": 'if header :is "subject" "hi" { if false { unknowncmd; } discard; }',
    "nested-dead": 'if false { if true { unknowncmd; } }',
    "ihave-unknown-else": ('require "ihave";\n'
                           'if not ihave "x-unknown" { discard; } else { unknowncmd; }'),
}
LIVE = {
    "if-true": 'if true { unknowncmd; }',
    "if-not-false": 'if not false { unknowncmd; }',
    "else-after-false": 'if false { } else { unknowncmd; }',
    "elsif-test-after-false": 'if false { keep; } elsif unknowntest { keep; }',
    "anyof-false-unknown-test": 'if anyof(false, unknowntest) { keep; }',
    "allof-unknown-test-first": 'if allof(unknowntest, false) { keep; }',
    "not-unknown-test": 'if not unknowntest { keep; }',
    "header-test": 'if header :is "subject" "x" { unknowncmd; }',
    "missing-require": 'if true { fileinto "Junk"; }',
    "top-level": 'unknowncmd;',
}


@needs_sieve_test
@pytest.mark.parametrize("script", list(DEAD.values()) + list(LIVE.values()),
                         ids=[f"dead-{k}" for k in DEAD] + [f"live-{k}" for k in LIVE])
def test_code_that_never_runs_is_validated_as_pigeonhole_does(user, tmp_path, script):
    theirs, ours = side_by_side(user, tmp_path, script)
    assert (theirs.error == "compile") == (script in LIVE.values())  # the table is right
    assert ours.show() == theirs.show()

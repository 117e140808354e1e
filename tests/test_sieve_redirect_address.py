"""The address a redirect names, checked as Pigeonhole 0.5.19 checks it.

RFC 5228 section 2.4.2.3: a redirect takes one RFC 5322 mailbox, an
addr-spec or a display name and an angle address.  Anything else is an
error: a compile error when the script writes it, a runtime error (the
script's actions dropped, the message kept in INBOX) when variables
build it.  A differential fuzzer found lda reading past the damage
instead ("x<y@example.org" went to y@example.org, "a(b)c@example.org" to
ac@example.org), so that mail went to an address the script never named
and no copy stayed.  And an address whose local part is no dot-atom
("roadrunner.") goes to sendmail quoted, in RFC 5321 section 4.1.2's form.

Each case runs through Pigeonhole's sieve-test and through `lda sieve
test` (tests/pigeonhole.py), and through a real `lda deliver` whose
sendmail stand-in records what it is handed (conftest's Site).
"""

import pytest

import pigeonhole
from conftest import Site, maildir_files
from lda.sieve import SieveError, compile_script
from sieve_helpers import KEEP, actions, outcome_of

needs_sieve_test = pytest.mark.skipif(pigeonhole.skip_reason() is not None,
                                      reason=pigeonhole.skip_reason() or "")

USER = "roadrunner@acme.example.com"
SENDER = "coyote@example.com"
MESSAGE = b"From: coyote@example.com\nTo: roadrunner@acme.example.com\nSubject: hi\n\nbody\n"

# The fuzzer's values for v in redirect "${v}@example.org", as the script
# holds them once Sieve's escapes are read; every one is refused.
INVALID = {
    "angle-unclosed": "x<y@example.org",
    "phrase-angle-unclosed": "x <y@example.org",
    "comment-in-local-part": "a(b)c@example.org",
    "bracket-in-local-part": "Coyote[@example.org",
    "backslash-ends-local-part": "his\\@example.org",
    "backslash-starts-local-part": "\\Deleted@example.org",
    # and some neighbours of theirs
    "trailing-comma": "Bob <bob@example.org>,",
    "two-opening-angles": "Bob <<bob@example.org>",
    "closing-angle-only": "bob@example.org>",
    "two-at-signs": "a@b@example.org",
    "domain-ends-in-dot": "bob@example.org.",
    "domain-literal-unclosed": "bob@[192.0.2.1",
    "non-ascii-local-part": "caf\u00e9@example.org",
}
# Valid, and what goes to sendmail.
VALID = {
    "dot-ends-local-part": ("roadrunner.@example.org", '"roadrunner."@example.org'),
    "double-dot": ("a..b@example.org", '"a..b"@example.org'),
    "quoted-dot-atom": ('"ab"@example.org', "ab@example.org"),
    "quoted-space": ('"a b"@example.org', '"a b"@example.org'),
    "display-name": ("Bob Smith <bob@example.org>", "bob@example.org"),
    "quoted-display-name": ('"Smith, Bob" <bob@example.org>', "bob@example.org"),
    "angle-only": ("<bob@example.org>", "bob@example.org"),
    "comment-after-local-part": ("bob (Bob) @example.org", "bob@example.org"),
    "domain-literal": ("bob@[192.0.2.1]", "bob@[192.0.2.1]"),
}
FORMS = ("literal", "variable")


def sieve_string(value):
    """value as a Sieve quoted string (RFC 5228 section 2.4.2)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def script_for(address, form):
    if form == "literal":
        return f"redirect {sieve_string(address)};\n"
    local, at, domain = address.rpartition("@")
    return (f'require "variables";\nset "v" {sieve_string(local)};\n'
            f'redirect "${{v}}{at}{domain}";\n')


CASES = [pytest.param(address, form, None, id=f"invalid-{name}-{form}")
         for name, address in INVALID.items() for form in FORMS] + [
    pytest.param(address, form, sent, id=f"{name}-{form}")
    for name, (address, sent) in VALID.items() for form in FORMS]


# --- lda alone ------------------------------------------------------------------

@pytest.mark.parametrize("address", INVALID.values(), ids=INVALID.keys())
def test_an_invalid_literal_address_does_not_compile(address):
    with pytest.raises(SieveError) as caught:
        compile_script(script_for(address, "literal"))
    assert caught.value.errors == [(1, 1, f'redirect: invalid address "{address}"')]


@pytest.mark.parametrize("address", INVALID.values(), ids=INVALID.keys())
def test_an_invalid_address_from_variables_keeps_the_message(address):
    """The fileinto before it is dropped with the rest: implicit keep only."""
    script = script_for(address, "variable").replace(
        'require "variables";\n', 'require ["fileinto", "variables"];\nfileinto "Earlier";\n')
    outcome = outcome_of(script)
    assert outcome.errors == [f'line 4: redirect: invalid address "{address}"']
    assert outcome.describe() == KEEP


@pytest.mark.parametrize("address, sent", VALID.values(), ids=VALID.keys())
def test_a_valid_address_is_sent_in_smtp_form(address, sent):
    for form in FORMS:
        assert actions(script_for(address, form)) == [f'redirect "{sent}"']


# --- side by side with Pigeonhole ---------------------------------------------------

@needs_sieve_test
@pytest.mark.parametrize("address, form, sent", CASES)
def test_redirect_address_as_pigeonhole(user, tmp_path, address, form, sent):
    script_path, message_path = tmp_path / "case.sieve", tmp_path / "case.eml"
    script_path.write_text(script_for(address, form))
    message_path.write_bytes(MESSAGE)
    theirs = pigeonhole.pigeonhole(script_path, message_path, SENDER, USER)
    ours = pigeonhole.lda(user.run, script_path, message_path, SENDER, USER)
    if sent is None:  # the table is right
        assert theirs.error == ("compile" if form == "literal" else "runtime")
    else:
        assert theirs.redirects == (sent,)
    assert ours.show() == theirs.show()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = Site(tmp_path_factory.mktemp("redirect"))
    site.create(USER)
    return site


@needs_sieve_test
@pytest.mark.parametrize("address, form, sent", CASES)
def test_delivery_hands_sendmail_only_the_address_named(site, tmp_path, address, form,
                                                        sent):
    """lda deliver next to sieve-test: what sendmail is handed is what
    Pigeonhole redirects to; an invalid address sends nothing and keeps
    the message in INBOX, where Pigeonhole keeps it."""
    script = script_for(address, form)
    box = site.maildir(USER)
    (box / "lda.sieve").write_text(script)
    for old in site.outbox.iterdir():
        old.unlink()
    before = len(maildir_files(box))
    # A Message-ID of its own: lda redirects one message to one address once.
    msg = MESSAGE.replace(b"\n\n", f"\nMessage-ID: <{tmp_path.name}@example.com>\n\n"
                          .encode(), 1)
    done = site.deliver(msg, USER, sender=SENDER)
    assert done.returncode == 0, done.stderr.decode()
    argv = [p.with_suffix(".args").read_text().rstrip("\n") for p in site.outbox.glob("*.eml")]
    recipients = tuple(a.split(" -- ", 1)[1] for a in argv)
    kept = len(maildir_files(box)) - before

    script_path, message_path = tmp_path / "case.sieve", tmp_path / "case.eml"
    script_path.write_text(script)
    message_path.write_bytes(msg)
    theirs = pigeonhole.pigeonhole(script_path, message_path, SENDER, USER)
    assert recipients == theirs.redirects
    # A script that does not compile keeps the message, in both.
    assert kept == (1 if theirs.implicit_keep or theirs.error else 0)
    if sent is None:
        assert "invalid address" in done.stderr.decode()

"""environment (RFC 5183) and mailboxexists (RFC 5490 section 3.1): what a
script may ask of where it runs, in unit runs and in real deliveries."""

import smtplib
import socket

import pytest
from sieve_helpers import DISCARD, KEEP, PLAIN, RECIPIENT, parse

from conftest import maildir_files, message
from lda import __version__
from lda.sieve import Envelope, MemoryState, SieveError, compile_script, run


def run_with(script, environment=None, state=None):
    outcome = run(compile_script(script), parse(PLAIN),
                  Envelope("coyote@desert.example.org", RECIPIENT,
                           environment=environment), state)
    assert outcome.errors == []
    return outcome.describe()


def environment_is(name, value, environment=None):
    return run_with(f'require "environment";\nif environment :is "{name}" "{value}" '
                    "{ discard; }", environment) == DISCARD


@pytest.mark.parametrize("name, value", [
    ("location", "MDA"), ("name", "lda"), ("phase", "during"), ("version", __version__)])
def test_fixed_items(name, value):
    assert environment_is(name, value)


def test_items_the_caller_gives_win():
    given = {"host": "mx1.example.org", "domain": "example.org", "remote-ip": "192.0.2.7"}
    for name, value in given.items():
        assert environment_is(name, value, given)


def test_unknown_or_unavailable_item_is_false():
    assert not environment_is("x-unknown", "")
    assert not environment_is("remote-ip", "")  # not over LMTP: not known
    assert not environment_is("NAME", "lda")  # names are case-sensitive (Pigeonhole)
    script = 'require "environment";\nif not environment :matches "remote-host" "*" { discard; }'
    assert run_with(script) == DISCARD


def test_match_types_and_comparator():
    given = {"host": "MX1.Example.org"}
    assert run_with('require "environment";\n'
                    'if environment :matches "host" "mx?.*" { discard; }', given) == DISCARD
    assert run_with('require ["environment", "comparator-i;octet"];\n'
                    'if environment :comparator "i;octet" :contains "host" "example" '
                    "{ discard; }", given) == KEEP


@pytest.mark.parametrize("script, text", [
    ('if environment "name" "lda" { keep; }', 'test "environment" needs require'),
    ('require "environment";\nif environment "name" { keep; }', "expects 2 arguments"),
    ('require "environment";\nif environment :comparator "i;x" "name" "a" { keep; }',
     'comparator "i;x" is not supported'),
])
def test_environment_compile_errors(script, text):
    with pytest.raises(SieveError) as caught:
        compile_script(script)
    assert text in caught.value.errors[0][2]


def test_mailboxexists_asks_the_state():
    script = 'require "mailbox";\nif mailboxexists ["INBOX", "Lists.Python"] { discard; }'
    assert run_with(script) == KEEP
    assert run_with(script, state=MemoryState(folders=["Lists.Python"])) == DISCARD
    assert run_with('require "mailbox";\nif mailboxexists "inbox" { discard; }') == DISCARD
    # no folder name: false, not an error
    assert run_with('require "mailbox";\nif mailboxexists "a/../b" { discard; }') == KEEP


def test_mailboxexists_needs_mailbox():
    with pytest.raises(SieveError) as caught:
        compile_script('if mailboxexists "X" { keep; }')
    assert caught.value.errors[0][:2] == (1, 4)


def test_mailboxexists_in_a_delivery_looks_at_the_maildir(user):
    (user.home / ".lda.sieve").write_text(
        'require ["mailbox", "fileinto"];\n'
        'if mailboxexists "Lists" { fileinto "Lists"; } else { fileinto :create "New"; }\n')
    user.deliver(message(message_id="<a@x>"), "a@example.org", check=0)
    assert len(maildir_files(user.maildir / ".New")) == 1
    (user.maildir / ".Lists" / "new").mkdir(parents=True)
    for sub in ("cur", "tmp"):
        (user.maildir / ".Lists" / sub).mkdir()
    user.deliver(message(message_id="<b@x>"), "a@example.org", check=0)
    assert len(maildir_files(user.maildir / ".Lists")) == 1


def test_environment_over_lmtp_knows_the_client(lmtp):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = lmtp(listen=f"127.0.0.1:{port}")
    box = server.site.maildir("a@example.org")
    (box / "lda.sieve").write_text(
        'require ["environment", "fileinto", "mailbox"];\n'
        'if allof(environment :is "remote-ip" "127.0.0.1",\n'
        '         environment :is "remote-host" "client.example.org",\n'
        '         environment :is "location" "MDA") { fileinto :create "Seen"; }\n')
    with smtplib.LMTP("127.0.0.1", port, local_hostname="client.example.org",
                      timeout=60) as client:
        client.ehlo_or_helo_if_needed()
        assert client.mail("s@example.org")[0] == 250
        assert client.rcpt("a@example.org")[0] == 250
        assert client.data(message())[0] == 250
    assert len(maildir_files(box / ".Seen")) == 1


def test_environment_in_lda_deliver_knows_postfix_client(user):
    (user.home / ".lda.sieve").write_text(
        'require ["environment", "fileinto", "mailbox"];\n'
        'if allof(environment :is "remote-ip" "192.0.2.1",\n'
        '         environment :is "remote-host" "mx.example.net") '
        '{ fileinto :create "Seen"; }\n'
        'elsif not environment :matches "remote-host" "*" { fileinto :create "NoName"; }\n')
    user.deliver(message(message_id="<a@x>"), "a@example.org", check=0,
                 env={"CLIENT_ADDRESS": "192.0.2.1", "CLIENT_HOSTNAME": "mx.example.net"})
    user.deliver(message(message_id="<b@x>"), "a@example.org", check=0,
                 env={"CLIENT_ADDRESS": "192.0.2.1", "CLIENT_HOSTNAME": "unknown"})
    assert len(maildir_files(user.maildir / ".Seen")) == 1
    assert len(maildir_files(user.maildir / ".NoName")) == 1

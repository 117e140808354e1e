"""The envelope at the borders: one check (lda.addresses) refuses a hostile
sender or recipient for `lda deliver` (argv and Postfix's environment) as
for LMTP."""

import io

import pytest

from conftest import maildir_files, message

# What each border must refuse, sender and recipient alike: header and log
# injection (CR, LF), what no argv can carry (NUL), other control and
# format characters, 8-bit that is not UTF-8 (argv and aiosmtpd decode
# bytes with surrogateescape), and what RFC 5321 section 4.5.3.1 makes
# too long.
HOSTILE = {
    "cr": "a\rX-Injected: yes@example.net",
    "lf": "a\nX-Injected: yes@example.net",
    "crlf-blank-line": "a>\r\n\r\nX-Injected: yes@example.net",
    "nul": "a\x00b@example.net",
    "soh-0x01": "a\x01b@example.net",
    "del-0x7f": "a\x7fb@example.net",
    "c1-next-line": "a\x85b@example.net",
    "tab": "a\tb@example.net",
    "line-separator": "a\u2028b@example.net",
    "right-to-left-override": "a\u202eb@example.net",  # hides in a log
    "8bit-not-utf8": "a\udcffb@example.net",  # the byte 0xff
    "1000-bytes": "a" * 988 + "@example.net",
    "over-320-octets-in-utf8": "\u00e9" * 160 + "@example.net",  # 172 characters
}
NO_ARGV = ("nul",)  # execve takes no NUL: only in-process, as LMTP hands it over


def first_line(done):
    return done.stderr.decode(errors="replace").splitlines()[0]


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_one_check_refuses_hostile_senders_and_recipients(value):
    """The functions both entry points call (LMTP: at MAIL and RCPT)."""
    from lda.addresses import check_sender, normalize
    from lda.errors import BadAddress, BadSender

    with pytest.raises(BadSender) as sender:
        check_sender(value)
    assert (sender.value.exit_code, sender.value.status) == (65, "5.1.7")
    with pytest.raises(BadAddress) as recipient:
        normalize(value)
    assert (recipient.value.exit_code, recipient.value.status) == (67, "5.1.3")


def test_what_mtas_send_passes_the_check():
    from lda.addresses import check_sender, normalize

    for sender, expected in [("", ""), ("<>", ""), (" <b@example.org> ", "b@example.org"),
                             ("MAILER-DAEMON", "MAILER-DAEMON"),
                             ("\u00fcser@b\u00fccher.example", "\u00fcser@b\u00fccher.example"),
                             ("a" * 308 + "@example.org", "a" * 308 + "@example.org")]:
        assert check_sender(sender) == expected
    assert normalize("<Alice+Lists@Example.ORG>") == "alice+lists@example.org"
    assert normalize("\u00e9" * 150 + "@example.org") == "\u00e9" * 150 + "@example.org"


@pytest.mark.parametrize("source", ["argv", "environment"])
@pytest.mark.parametrize("value", [v for k, v in HOSTILE.items() if k not in NO_ARGV],
                         ids=[k for k in HOSTILE if k not in NO_ARGV])
def test_deliver_refuses_a_hostile_sender_with_65(user, source, value):
    if source == "argv":
        done = user.deliver(message(), "alice@example.org", sender=value)
    else:
        done = user.deliver(message(), "alice@example.org", sender=None,
                            env={"SENDER": value})
    assert done.returncode == 65, done.stderr.decode(errors="replace")
    assert first_line(done).startswith("5.1.7 ")
    assert maildir_files(user.maildir) == []


@pytest.mark.parametrize("source", ["argv", "environment"])
@pytest.mark.parametrize("value", [v for k, v in HOSTILE.items() if k not in NO_ARGV],
                         ids=[k for k in HOSTILE if k not in NO_ARGV])
def test_deliver_refuses_a_hostile_recipient_with_67(site, source, value):
    alice = site.create("alice@example.org")
    if source == "argv":
        done = site.deliver(message(), value)
    else:
        done = site.deliver(message(), env={"RECIPIENT": value})
    assert done.returncode == 67, done.stderr.decode(errors="replace")
    assert first_line(done).startswith("5.1.3 ")
    assert maildir_files(alice) == []


@pytest.mark.parametrize("option", ["-f", "recipient"])
def test_deliver_refuses_a_nul_in_process(tmp_path, option):
    """No execve passes a NUL; the same function refuses it for a caller
    that hands one over in-process."""
    from lda.deliver_cmd import deliver

    argv = (["-f", HOSTILE["nul"], "alice@example.org"] if option == "-f"
            else ["-f", "s@example.org", HOSTILE["nul"]])
    assert deliver(argv, stdin=io.BytesIO(message()),
                   environ={"HOME": str(tmp_path)}) == (65 if option == "-f" else 67)
    assert maildir_files(tmp_path / "Maildir") == []


FORGED = "lda[1]: forged: to=<root@example.org>, status=sent"


@pytest.mark.parametrize("source", ["-a", "environment"])
@pytest.mark.parametrize("original", [
    "alice@example.org\n" + FORGED, "alice@example.org\r" + FORGED,
    "a\udcffb@example.org", "a" * 1000 + "@example.org"],
    ids=["lf", "cr", "8bit-not-utf8", "1000-bytes"])
def test_a_hostile_original_recipient_is_ignored_not_logged(user, source, original):
    """-a (ORIGINAL_RECIPIENT) only informs the log and Sieve: one the
    recipient check refuses is dropped with a warning, and the message,
    whose recipient is fine, is delivered."""
    if source == "-a":
        done = user.run("deliver", "-f", "s@example.org", "-a", original,
                        "alice@example.org", input=message())
    else:
        done = user.deliver(message(), "alice@example.org",
                            env={"ORIGINAL_RECIPIENT": original})
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert len(maildir_files(user.maildir)) == 1
    log = done.stderr.decode(errors="replace")
    assert "original recipient ignored" in log
    assert "orig_to=" not in log
    assert not any(line.startswith("lda[1]:") for line in log.splitlines()), log


def test_a_fine_original_recipient_is_logged(user):
    done = user.run("deliver", "-f", "s@example.org", "-a", "<info@example.org>",
                    "alice@example.org", input=message(), check=0)
    assert b"orig_to=<info@example.org>" in done.stderr
    assert b"ignored" not in done.stderr

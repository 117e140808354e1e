"""The envelope at the borders: one check (lda.deliver.envelope) refuses a hostile
sender or recipient for `lda deliver` (argv and Postfix's environment) as
for LMTP, and a forward that cannot be handed to sendmail fails that
target alone, never the other recipients of the message."""

import io
import json

import pytest

from conftest import maildir_files, message
from lmtp_session import Server

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
    from lda.deliver.envelope import check_sender, normalize
    from lda.errors import BadAddress, BadSender

    with pytest.raises(BadSender) as sender:
        check_sender(value)
    assert (sender.value.exit_code, sender.value.status) == (65, "5.1.7")
    with pytest.raises(BadAddress) as recipient:
        normalize(value)
    assert (recipient.value.exit_code, recipient.value.status) == (67, "5.1.3")


def test_what_mtas_send_passes_the_check():
    from lda.deliver.envelope import check_sender, normalize

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
    from lda.deliver.command import deliver

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
def test_a_hostile_original_recipient_is_ignored_not_logged(user_log_on_stderr, source,
                                                           original):
    """-a (ORIGINAL_RECIPIENT) only informs the log and Sieve: one the
    recipient check refuses is dropped with a warning, and the message,
    whose recipient is fine, is delivered."""
    user = user_log_on_stderr
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


def test_a_fine_original_recipient_is_logged(user_log_on_stderr):
    user = user_log_on_stderr
    done = user.run("deliver", "-f", "s@example.org", "-a", "<info@example.org>",
                    "alice@example.org", input=message(), check=0)
    assert b"orig_to=<info@example.org>" in done.stderr
    assert b"ignored" not in done.stderr


# --- a forward that cannot be sent -----------------------------------------------

VACATION = ('require "vacation";\n'
            'vacation :addresses ["alice@example.org"] "I am away.";\n')
REDIRECT = 'require "copy";\nredirect :copy "redirected@elsewhere.example.net";\n'


def forwarding_site(site):
    """A plain mailbox and three that hand a copy to sendmail: a forward
    (keeping a copy), a Sieve redirect :copy and a Sieve vacation."""
    boxes = {"plain@example.org": site.create("plain@example.org"),
             "fwd@example.org": site.create("fwd@example.org", "--forward",
                                            "forwarded@elsewhere.example.net"),
             "redirect@example.org": site.create("redirect@example.org"),
             "vacation@example.org": site.create("vacation@example.org")}
    (boxes["redirect@example.org"] / "lda.sieve").write_text(REDIRECT)
    (boxes["vacation@example.org"] / "lda.sieve").write_text(VACATION)
    return boxes


def lmtp_transaction(server, sender, recipients):
    """(MAIL reply, [DATA reply per recipient]); none after a refused MAIL."""
    client = server.client()
    try:
        assert client.cmd("LHLO test")[-1].startswith("250")
        mail = client.cmd(f"MAIL FROM:<{sender}>")
        if not mail.startswith("250"):
            return mail, []
        for rcpt in recipients:
            assert client.cmd(f"RCPT TO:<{rcpt}>").startswith("250")
        assert client.cmd("DATA").startswith("354")
        client.sock.sendall(message().replace(b"\n", b"\r\n") + b".\r\n")
        return mail, [client.reply() for _ in recipients]
    finally:
        client.close()


def partial_targets(site):
    done = site.run("partial", "list", "--json", check=0)
    return sorted(row["target"] for row in json.loads(done.stdout))


def assert_only_the_sending_targets_failed(site, boxes, replies, log):
    """Every recipient 250 and its copy; the forward and the redirect
    kept as partial deliveries; the vacation reply only logged."""
    assert [r.split()[:2] for r in replies] == [["250", "2.0.0"]] * len(boxes), replies
    for address, box in boxes.items():
        assert len(maildir_files(box)) == 1, address
    assert partial_targets(site) == ["forwarded@elsewhere.example.net",
                                     "redirected@elsewhere.example.net"]
    assert "Traceback" not in log


def test_nul_sender_over_lmtp_is_refused_at_mail(site):
    """On 1957307 the NUL reached sendmail's argv: ValueError, and every
    recipient, the plain mailbox too, got 451 on every retry.  Now the one
    envelope check refuses it at MAIL, before any recipient; a forward that
    sendmail cannot take is tested below with a sender every border accepts."""
    boxes = forwarding_site(site)
    server = Server(site, "--processes", "1")
    try:
        mail, _ = lmtp_transaction(server, "a\x00b@example.net", list(boxes))
    finally:
        code, log = server.stop()
    assert code == 0, log
    assert mail.startswith("501 5.1.7"), mail
    assert all(maildir_files(box) == [] for box in boxes.values())
    assert site.sent() == [] and "Traceback" not in log


@pytest.mark.parametrize("sendmail", ["not-executable", "missing-command", "exits-75"])
def test_sendmail_that_cannot_take_a_copy_fails_only_that_target(make_site, tmp_path,
                                                                   sendmail):
    """A sender every border accepts, and a sendmail that cannot be run
    (OSError: a file without execute permission, a missing file) or
    refuses: each forward fails alone, over LMTP.  (A NUL in the command,
    which made subprocess raise ValueError, is now refused in lda.toml.)"""
    failing = tmp_path / "failing-sendmail"
    failing.write_text("#!/bin/sh\necho 'queue file write error'\nexit 75\n")
    failing.chmod(0o755)
    unrunnable = tmp_path / "unrunnable-sendmail"
    unrunnable.write_text("#!/bin/sh\nexit 0\n")
    unrunnable.chmod(0o644)
    command = {"not-executable": [str(unrunnable), "-i"],
               "missing-command": [str(tmp_path / "no-such-sendmail"), "-i"],
               "exits-75": [str(failing), "-i"]}[sendmail]
    site = make_site(sendmail=command)
    boxes = forwarding_site(site)
    server = Server(site, "--processes", "1")
    try:
        _, replies = lmtp_transaction(server, "sender@example.org", list(boxes))
    finally:
        code, log = server.stop()
    assert code == 0, log
    assert_only_the_sending_targets_failed(site, boxes, replies, log)
    [vacation] = [line for line in log.splitlines() if " to=<sender@example.org>" in line]
    assert "status=sent" not in vacation  # not sent, logged; the message is delivered


def test_deliver_with_an_unrunnable_sendmail_is_a_partial_delivery(make_site, tmp_path):
    """`lda deliver` with several recipients: the same isolation, exit 0
    (sendmail names a directory: OSError)."""
    site = make_site(sendmail=[str(tmp_path), "-i"])
    boxes = forwarding_site(site)
    done = site.deliver(message(), *boxes)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    for box in boxes.values():
        assert len(maildir_files(box)) == 1
    assert partial_targets(site) == ["forwarded@elsewhere.example.net",
                                     "redirected@elsewhere.example.net"]


@pytest.mark.parametrize("where", ["recipient", "-a"])
def test_bytes_that_are_not_utf8_are_refused_under_syslog_too(make_site, where):
    """syslog(3) takes UTF-8 only: logging the refused recipient raised
    UnicodeEncodeError, and a bad address became 75 (retried for days)."""
    site = make_site(log="syslog")
    alice = site.create("alice@example.org")
    if where == "recipient":
        done = site.deliver(message(), HOSTILE["8bit-not-utf8"])
        assert done.returncode == 67, done.stderr.decode(errors="replace")
        assert first_line(done).startswith("5.1.3 ")
    else:
        done = site.run("deliver", "-a", HOSTILE["8bit-not-utf8"], "alice@example.org",
                        input=message())
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        assert len(maildir_files(alice)) == 1


def test_a_forward_that_cannot_be_kept_for_retry_defers_its_recipient_alone(make_site,
                                                                              tmp_path):
    """Neither forwarded nor spooled (the spool directory cannot be made):
    that recipient is retried (its own copy is then a duplicate), the
    others keep their 250."""
    failing = tmp_path / "failing-sendmail"
    failing.write_text("#!/bin/sh\nexit 75\n")
    failing.chmod(0o755)
    site = make_site(sendmail=[str(failing)])
    plain = site.create("plain@example.org")
    fwd = site.create("fwd@example.org", "--forward", "forwarded@elsewhere.example.net")
    (site.state / "databases" / "default" / "partial").write_text("not a directory\n")
    server = Server(site, "--processes", "1")
    try:
        _, replies = lmtp_transaction(server, "sender@example.org",
                                      ["plain@example.org", "fwd@example.org"])
    finally:
        code, log = server.stop()
    assert code == 0, log
    assert replies[0].startswith("250 2.0.0 <plain@example.org>"), replies
    assert replies[1].startswith("451 4.3.0 <fwd@example.org>"), replies
    # lda's own failure, not an unexpected one ("try again later"): its
    # reason is in the log, as every failure of the server's own files.
    assert replies[1].endswith("details in the server log"), replies
    # Once, in the failed target's status line: what a log reader counts.
    reason = [line for line in log.splitlines() if "cannot keep a copy for retry" in line]
    assert len(reason) == 1, log
    assert "to=<forwarded@elsewhere.example.net>" in reason[0], reason
    assert "status=deferred" in reason[0] and "exited 75" in reason[0], reason
    assert len(maildir_files(plain)) == 1 and len(maildir_files(fwd)) == 1


# --- Return-Path in RFC 5321's external form ---------------------------------------

@pytest.mark.parametrize("sender, return_path", [
    ("john smith@example.org", b'"john smith"@example.org'),     # pipe(8)'s ${sender}
    ('"john smith"@example.org', b'"john smith"@example.org'),   # quoted already
    ('a"b\\c@example.org', b'"a\\"b\\\\c"@example.org'),
    (".dot@example.org", b'".dot"@example.org'),
    ("a..b@example.org", b'"a..b"@example.org'),
    ("dot.@example.org", b'"dot."@example.org'),
    ("a,b@example.org", b'"a,b"@example.org'),
    ("first.last+tag@example.org", b"first.last+tag@example.org"),
    ("o'b$home`true`~{}|@example.org", b"o'b$home`true`~{}|@example.org"),
    ("\u00e9l\u00e8ve@example.org", "\u00e9l\u00e8ve@example.org".encode()),  # RFC 6532
    ("", b""),
], ids=["space", "quoted", "quote-backslash", "leading-dot", "two-dots", "trailing-dot",
        "comma", "plain", "atext", "utf8", "null"])
def test_return_path_quotes_a_local_part_that_needs_it(user, sender, return_path):
    """Postfix's pipe(8) hands ${sender} in its internal form, unquoted, so
    "john smith@example.org" arrives as one argument.  Return-Path is RFC
    5321's reverse-path: a local part that is no dot-atom is written as a
    quoted string, as Postfix's local(8) writes it (quote_822_local), or
    Dovecot reads another address out of the field."""
    user.deliver(message(), "alice", sender=sender, check=0)
    [path] = maildir_files(user.maildir)
    assert path.read_bytes().split(b"\n", 1)[0] == b"Return-Path: <" + return_path + b">"


def test_return_path_over_lmtp_is_the_quoted_form_it_came_in(site):
    box = site.create("alice@example.org")
    server = Server(site, "--processes", "1")
    try:
        mail, replies = lmtp_transaction(server, '"john smith"@example.org',
                                         ["alice@example.org"])
    finally:
        code, log = server.stop()
    assert code == 0, log
    assert mail.startswith("250") and replies[0].startswith("250"), replies
    [path] = maildir_files(box)
    assert path.read_bytes().split(b"\n", 1)[0] == b'Return-Path: <"john smith"@example.org>'


def test_sendmail_gets_the_sender_in_the_form_it_parses(site):
    """Postfix's sendmail parses -f as an RFC 822 address (tok822_parse, then
    its internal form): "john smith@example.org" unquoted is two words to
    it, the quoted local part is the one address."""
    site.create("fwd@example.org", "--forward", "forwarded@elsewhere.example.net")
    site.deliver(message(), "fwd@example.org", sender="john smith@example.org", check=0)
    [(args, _)] = site.sent()
    assert " ".join(args).split(" -- ")[0].endswith('-f "john smith"@example.org'), args

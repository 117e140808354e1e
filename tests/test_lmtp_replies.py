"""`lda lmtp` at its border: after the final dot exactly one reply per
accepted recipient, in RCPT order, whatever becomes of the DATA (RFC 2033
section 4.2); enhanced status codes on every reply (RFC 2034, RFC 3463);
MAIL and RCPT checked as `lda deliver` checks -f and its recipients; and the
limits a server needs (sessions, idle time, recipients per transaction).

Each test talks to the installed `lda lmtp` over a real unix socket, as a
client that pipelines (RFC 2920) sends the next command right after the dot,
in the same write: a server that answers one recipient too few makes it read
that command's reply as the last recipient's.
"""

import os
import re
import resource
import signal
import socket
import time

import pytest

from conftest import maildir_files, message, open_files_of, raise_open_files, wait_until
from lmtp_session import Client
from statuscodes import (
    S221_BYE, S250_DELIVERED, S250_OK, S250_RCPT, S250_SENDER, S421_IDLE, S421_SHUTDOWN,
    S421_TOO_MANY_SESSIONS, S451_INTERNAL, S452_TOO_MANY_RCPTS, S500_SYNTAX, S500_UNKNOWN,
    S501_BAD_RCPT, S501_BAD_SENDER, S501_SYNTAX, S503_SEQUENCE, S552_TOO_BIG)

SENDER = "s@example.org"
BOX = "a@example.org"


def recipients(count):
    """`count` distinct recipients of mailbox a: a+1@, a+2@, ..."""
    return [f"a+{n}@example.org" for n in range(1, count + 1)]


def status(reply):
    return " ".join(reply.split()[:2])


def assert_one_reply_each(replies, rcpts, expected):
    """One reply per recipient, in RCPT order, each naming its recipient."""
    assert [status(r) for r in replies[:len(rcpts)]] == [expected] * len(rcpts), replies
    assert [r.split()[2].rstrip(":") for r in replies[:len(rcpts)]] == [f"<{r}>" for r in rcpts]


def start_data(server, rcpts, data, then=b".\r\nRSET\r\n"):
    client = server.client()
    before = client.pipeline(SENDER, rcpts, data, then=then)
    assert [status(r) for r in before[1:-1]] == [S250_SENDER] + [S250_RCPT] * len(rcpts)
    assert before[-1].startswith("354"), before
    return client


COUNTS = pytest.mark.parametrize("count", [1, 2, 50], ids=["1-rcpt", "2-rcpts", "50-rcpts"])


@COUNTS
@pytest.mark.parametrize("line", [0, 5000, 200_000], ids=["short-lines", "5000-byte-line",
                                                          "200000-byte-line"])
def test_a_delivered_message_gets_a_250_each_then_rset_its_own(lmtp, count, line):
    """Lines of any length are stored as they came (as `lda deliver` and
    Dovecot's LMTP store them): only the message size is limited."""
    server = lmtp("--processes", "1")
    body = b"x" * line + b"\n" if line else b"Hello.\n"
    msg = message(message_id=f"<long{line}@example.org>", body=body)
    rcpts = recipients(count)
    client = start_data(server, rcpts, msg)
    replies = client.replies(count + 1)
    client.close()
    assert_one_reply_each(replies, rcpts, S250_DELIVERED)
    assert status(replies[-1]) == S250_OK, replies
    [stored] = maildir_files(server.site.maildir(BOX))
    assert stored.read_bytes().endswith(msg)


@COUNTS
def test_a_message_over_the_size_limit_gets_552_each(lmtp, count):
    server = lmtp("--processes", "1", lmtp_max_message_size="10K")
    rcpts = recipients(count)
    client = start_data(server, rcpts, message(body=(b"y" * 99 + b"\n") * 200))
    replies = client.replies(count + 1)
    client.close()
    assert_one_reply_each(replies, rcpts, S552_TOO_BIG)
    assert status(replies[-1]) == S250_OK, replies
    assert maildir_files(server.site.maildir(BOX)) == []


@COUNTS
def test_an_unexpected_error_gets_451_each(lmtp, count):
    """No file descriptor left once the message has come: staging it
    fails (EMFILE) for every recipient.  (A host name longer than a file
    name may be did it until host names were cut to fit; a NUL there,
    which made a ValueError, is refused in lda.toml.)"""
    server = lmtp("--processes", "1")
    rcpts = recipients(count)
    client = start_data(server, rcpts, message(), then=b"")
    time.sleep(0.3)  # the message is read; the dot is not sent yet
    soft, hard = resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE)
    used = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
    resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE, (used, hard))
    client.sock.sendall(b".\r\nRSET\r\n")
    replies = client.replies(count + 1)
    client.close()
    resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert_one_reply_each(replies, rcpts, S451_INTERNAL)
    assert status(replies[-1]) == S250_OK, replies
    assert not any("Traceback" in r or "ValueError" in r for r in replies)


@COUNTS
def test_a_stop_while_data_arrives_gets_421_each_and_delivers_nothing(lmtp, count):
    server = lmtp("--processes", "1")
    rcpts = recipients(count)
    client = start_data(server, rcpts, message(), then=b"")  # the dot never comes
    time.sleep(0.5)
    server.proc.send_signal(signal.SIGTERM)
    replies = client.replies(count + 1)
    client.drop()
    assert len(replies) == count, replies  # then the connection is closed
    assert_one_reply_each(replies, rcpts, S421_SHUTDOWN)
    assert maildir_files(server.site.maildir(BOX)) == []

@COUNTS
def test_a_stop_during_the_delivery_answers_it_then_421(lmtp, tmp_path, count):
    slow = tmp_path / "slow-sendmail"
    slow.write_text("#!/bin/sh\nsleep 2\ncat > /dev/null\n")
    slow.chmod(0o755)
    server = lmtp("--processes", "1", sendmail=[str(slow)])
    server.site.run("mailbox", "create", "fwd@example.org", "--forward",
                    "far@elsewhere.example.net", "--keep-copy", check=0)
    rcpts = [f"fwd+{n}@example.org" for n in range(1, count + 1)]
    client = start_data(server, rcpts, message())
    time.sleep(1.0)  # the forward's sendmail sleeps
    server.proc.send_signal(signal.SIGTERM)
    replies = client.replies(count + 2)
    client.drop()
    assert_one_reply_each(replies, rcpts, S250_DELIVERED)
    # Then RSET's reply, if the server read it before the stop, and 421.
    assert [status(r) for r in replies[count:]] in ([S421_SHUTDOWN], [S250_OK, S421_SHUTDOWN])
    assert len(maildir_files(server.site.maildir("fwd@example.org"))) == 1

@COUNTS
def test_a_client_silent_in_data_gets_421_each_and_nothing_is_delivered(lmtp, count):
    server = lmtp("--processes", "1", lmtp_idle_timeout=1)
    rcpts = recipients(count)
    client = start_data(server, rcpts, message(), then=b"")
    started = time.monotonic()
    replies = client.replies(count + 1)
    client.drop()
    assert time.monotonic() - started < 30
    assert len(replies) == count, replies
    assert_one_reply_each(replies, rcpts, S421_IDLE)
    assert maildir_files(server.site.maildir(BOX)) == []

@COUNTS
def test_a_connection_lost_in_data_delivers_nothing(lmtp, count):
    server = lmtp("--processes", "1")
    rcpts = recipients(count)
    client = start_data(server, rcpts, message(), then=b"")
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    client.drop()  # RST on TCP; on a unix socket the server reads EOF
    # The server goes on serving, and what it had read was not delivered.
    other = server.client()
    _, [reply] = other.send(SENDER, ["b@example.org"], message(message_id="<after@x>"))
    other.close()
    assert status(reply) == S250_DELIVERED
    assert maildir_files(server.site.maildir(BOX)) == []
    code, err = server.stop()
    assert code == 0 and "Traceback" not in err, err

# -- every reply carries an enhanced status code -----------------------------

def test_lhlo_advertises_pipelining_and_enhanced_status_codes(lmtp):
    client = lmtp().client()
    lines = client.cmd("LHLO client.example.org")
    client.close()
    keywords = {line[4:].split()[0] for line in lines[1:]}
    assert {"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SIZE"} <= keywords, lines

COMMANDS = [
    # (commands sent after LHLO, the status of the last one's reply)
    (["MAIL FROM:<s@example.org>"], S250_SENDER),
    (["MAIL FROM:<>"], S250_SENDER),
    (["MAIL FROM:<s@example.org>", "RCPT TO:<a@example.org>"], S250_RCPT),
    (["RSET"], S250_OK),
    (["NOOP"], S250_OK),
    (["HELO x"], S500_UNKNOWN),
    (["EHLO x"], S500_UNKNOWN),
    (["XYZZY"], S500_UNKNOWN),
    ([""], S500_SYNTAX),
    (["NOOP " + "x" * 600], S500_SYNTAX),
    (["MAIL TO:<s@example.org>"], S501_SYNTAX),
    # A BODY lda does not take: 555 (RFC 5321 section 4.1.1.11), as Dovecot.
    (["MAIL FROM:<s@example.org> BODY=9BIT"], "555 5.5.4"),
    (["MAIL FROM:<s@example.org> FOO=1"], "555 5.5.4"),
    (["RSET x"], S501_SYNTAX),
    (["DATA"], S503_SEQUENCE),
    (["RCPT TO:<a@example.org>"], S503_SEQUENCE),
    (["MAIL FROM:<s@example.org>", "MAIL FROM:<s@example.org>"], S503_SEQUENCE),
    (["MAIL FROM:<s@example.org>", "DATA"], S503_SEQUENCE),
    (["MAIL FROM:<s@example.org> SIZE=999999999999"], S552_TOO_BIG),
    (["VRFY a@example.org"], "252 2.5.0"),
    (["HELP"], "250 2.0.0"),
    (["QUIT"], S221_BYE),
]

@pytest.mark.parametrize(("commands", "expected"), COMMANDS,
                         ids=[c[-1].split(":")[0][:12] or "empty" for c, _ in COMMANDS])
def test_every_reply_carries_an_enhanced_code(lmtp, commands, expected):
    client = lmtp().client()
    assert client.cmd("LHLO test")[-1].startswith("250")
    for command in commands:
        reply = client.cmd(command)
    client.drop()
    assert status(reply) == expected, reply

def test_a_command_before_lhlo_is_out_of_sequence(lmtp):
    client = lmtp().client()
    reply = client.cmd("MAIL FROM:<s@example.org>")
    client.drop()
    assert status(reply) == S503_SEQUENCE, reply

# -- limits --------------------------------------------------------------------

def test_an_idle_session_is_closed_with_421(lmtp):
    server = lmtp("--processes", "1", lmtp_idle_timeout=1)
    client = server.client()
    assert client.cmd("LHLO test")[-1].startswith("250")
    started = time.monotonic()
    replies = client.replies(2)
    client.drop()
    assert [status(r) for r in replies] == [S421_IDLE]
    assert 0.5 < time.monotonic() - started < 30

def test_recipients_over_the_limit_get_452_and_the_rest_a_second_transaction(lmtp):
    server = lmtp("--processes", "1", lmtp_max_recipients=3)
    rcpts = recipients(5)
    client = server.client()
    rcpt_replies, replies = client.send(SENDER, rcpts, message())
    assert [status(rcpt_replies[r]) for r in rcpts] == [S250_RCPT] * 3 + [S452_TOO_MANY_RCPTS] * 2
    assert len(replies) == 3
    assert client.cmd("RSET").startswith(S250_OK)
    rcpt_replies, replies = client.send(SENDER, rcpts[3:], message())
    client.close()
    assert [status(r) for r in replies] == [S250_DELIVERED] * 2

def open_idle(path, count):
    """`count` connections that say nothing; each gets its first reply."""
    socks, greetings = [], []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_UNIX)
            socks.append(sock)
            sock.connect(str(path))  # blocking: waits while the backlog is full
            sock.settimeout(30)
        for sock in socks:
            greetings.append(sock.makefile("rb").readline().decode())
    except BaseException:
        close_all(socks)
        raise
    return socks, greetings

def close_all(socks):
    for sock in socks:
        sock.close()

IDLE = 3000

@pytest.mark.parametrize(("settings", "held"), [({"lmtp_max_sessions": 50}, 50), ({}, 1000)],
                         ids=["at-most-50", "default"])
def test_thousands_of_idle_connections_then_a_delivery(lmtp, settings, held):
    """Each of 3,000 idle connections is answered at once: a greeting up to
    lmtp_max_sessions, beyond it 421 4.3.2 and a close, never silence; once
    the idle ones go, the next session delivers."""
    raise_open_files(IDLE + 200)
    server = lmtp(**settings)
    started = time.monotonic()
    socks, greetings = open_idle(server.path, IDLE)
    try:
        elapsed = time.monotonic() - started
        welcomed = sum(g.startswith("220 ") for g in greetings)
        refused = sum(status(g) == S421_TOO_MANY_SESSIONS for g in greetings)
        assert (welcomed, refused) == (held, IDLE - held), (elapsed, greetings[-1])
        assert elapsed < 60
        one_more = Client(server.path)
        try:
            assert status(one_more.greeting) == S421_TOO_MANY_SESSIONS
            with pytest.raises((ConnectionError, OSError)):
                one_more.cmd("NOOP")  # closed
        finally:
            one_more.drop()
    finally:
        close_all(socks)

    def delivered():
        client = server.client()
        try:
            return client.send(SENDER, ["b@example.org"], message())[1]
        except (ConnectionError, OSError, AssertionError):
            return None  # a 421 still: the idle ones are not all gone yet
        finally:
            client.drop()

    assert status(wait_until(delivered, 30, "a session to be served")[0]) == S250_DELIVERED

def test_sessions_are_held_to_what_the_open_files_limit_allows(lmtp):
    """With 300 descriptors a process cannot hold lmtp_max_sessions (1000):
    it holds what it can (less a reserve for its own files) and answers the
    rest 421; once it ran out, accepted nobody, and clients waited."""
    raise_open_files(1000)
    server = lmtp("--processes", "1", open_files=300)
    socks, greetings = open_idle(server.path, 600)
    close_all(socks)
    welcomed = sum(g.startswith("220 ") for g in greetings)
    assert welcomed == 300 - 64
    assert [status(g) for g in greetings[welcomed:]] == [S421_TOO_MANY_SESSIONS] * (600 - welcomed)
    code, err = server.stop()
    assert code == 0 and "236 sessions at once, not lmtp_max_sessions = 1000" in err, err
    # Each refusal is counted in the log, in a line or two (not one each).
    counted = re.findall(r"lmtp: (\d+) connections? refused: 236 sessions open", err)
    assert 1 <= len(counted) <= 3 and sum(map(int, counted)) == 600 - welcomed, err

def test_the_open_files_limit_is_raised_as_far_as_the_sessions_need(lmtp):
    """Started under a soft limit of 256 open files, lda lmtp raised it to
    the hard limit, however high (a million on some systems), in every
    process.  It is raised for lmtp_max_sessions and the files a process
    keeps besides, and no further, as lda policy and lda socketmap do."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4 * 1000:
        pytest.skip(f"the hard limit of open files is {hard}")
    server = lmtp("--processes", "1", open_files=(256, hard))
    soft, kept_hard = open_files_of(server.proc.pid)
    assert 1000 < soft <= 2 * 1000, soft
    assert kept_hard == (hard if hard != resource.RLIM_INFINITY else kept_hard)
    code, err = server.stop()
    assert code == 0 and "open files" not in err, err

def test_accept_failures_out_of_descriptors_are_counted_not_logged_each_second(lmtp):
    """With its descriptors gone before lmtp_max_sessions (here 100
    inherited ones; in the field the system's own limit, ENFILE), accept()
    fails with EMFILE: lda lmtp logged "cannot accept: ...; pausing 1s"
    once a second for as long as it lasted.  The pauses are counted in the
    log as lda policy counts its own; lda lmtp serves again after."""
    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(100)]
    try:
        server = lmtp("--processes", "1", open_files=256, pass_fds=spare)
    finally:
        for fd in spare:
            os.close(fd)
    held = []
    try:
        for _ in range(160):
            held.append(socket.socket(socket.AF_UNIX))
            held[-1].connect(str(server.path))
        time.sleep(5)
    finally:
        close_all(held)

    def greeted():
        try:
            client = server.client()
        except (ConnectionError, OSError):
            return False
        client.drop()
        return client.greeting.startswith("220 ")

    assert wait_until(greeted, 30, "a greeting")
    code, err = server.stop()
    assert code == 0 and "Traceback" not in err, err
    failures = [int(n) for n in re.findall(r"lmtp: (\d+) accept\(\) failures?", err)]
    assert len(failures) <= 2 and sum(failures) >= 3, err
    assert "Too many open files" in err and "pausing" not in err, err

# -- MAIL and RCPT are checked as lda deliver checks them -------------------

HOSTILE = {
    "CR": "a\rX-Injected: yes@example.net",
    "NUL": "a\0b@example.net",
    "0x01": "a\x01b@example.net",
    "DEL": "a\x7fb@example.net",
    "invalid-UTF-8": "a\udcffb@example.net",  # the byte 0xff, as argv decodes it
    "UTF-8": "\u00e9l\u00e8ve@example.net",
    "1000-bytes": "x" * 988 + "@example.net",
    "LF": "a\nX-Injected: yes@example.net",
}

def deliver_status(site, *, sender=SENDER, recipient=BOX):
    """The enhanced code lda deliver gives (2.0.0 when it delivers); None
    when argv cannot carry the address (a NUL)."""
    if "\0" in sender + recipient:
        return None
    done = site.deliver(message(message_id=f"<{abs(hash(sender + recipient))}@x>"),
                        recipient, sender=sender)
    if done.returncode == 0:
        return "2.0.0"
    return re.search(r"^([245]\.\d{1,3}\.\d{1,3}) ", done.stderr.decode(), re.M)[1]

def lmtp_status(server, command):
    """The status of the reply to `command` (a line that may hold CR, NUL and
    8-bit bytes) after LHLO and, for RCPT, a good MAIL."""
    client = server.client()
    assert client.cmd("LHLO test")[-1].startswith("250")
    if command.startswith("RCPT"):
        assert client.cmd(f"MAIL FROM:<{SENDER}>").startswith(S250_SENDER)
    client.sock.sendall(command.encode("utf-8", "surrogateescape") + b"\r\n")
    reply = client.reply()
    client.drop()
    return reply

@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_sender_is_refused_at_mail_as_lda_deliver_refuses_it(lmtp, name):
    server = lmtp("--processes", "1")
    address = HOSTILE[name]
    reply = lmtp_status(server, f"MAIL FROM:<{address}>")
    expected = deliver_status(server.site, sender=address)
    if expected == "2.0.0":
        assert status(reply) == S250_SENDER, reply
    else:  # RFC 3463 5.1.7: bad sender's mailbox address syntax
        assert status(reply) == S501_BAD_SENDER, reply
        assert expected in (None, "5.1.7")

@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_recipient_is_refused_at_rcpt_as_lda_deliver_refuses_it(lmtp, name):
    server = lmtp("--processes", "1")
    address = HOSTILE[name]
    reply = lmtp_status(server, f"RCPT TO:<{address}>")
    expected = deliver_status(server.site, recipient=address)
    if expected in ("5.1.1", "2.0.0"):  # an address, but nobody's
        assert status(reply) == "550 5.1.1", reply
    else:  # RFC 3463 5.1.3: bad destination mailbox address syntax
        assert status(reply) == S501_BAD_RCPT, reply
        assert expected in (None, "5.1.3")

def test_a_sender_with_a_line_break_never_reaches_return_path(lmtp):
    server = lmtp("--processes", "1")
    client = server.client()
    assert client.cmd("LHLO test")[-1].startswith("250")
    client.sock.sendall(b"MAIL FROM:<a\rX-Injected: yes@example.net>\r\n"
                        b"RCPT TO:<a@example.org>\r\nDATA\r\n")
    replies = client.replies(3)
    client.drop()
    assert [status(r) for r in replies] == [S501_BAD_SENDER, "503 5.5.1", "503 5.5.1"]
    assert maildir_files(server.site.maildir(BOX)) == []

def test_the_idle_timeout_cuts_neither_a_slow_message_nor_a_long_delivery(lmtp, tmp_path):
    """The idle time counts from the last byte read (aiosmtpd counts from
    the last command, and would cut a message that takes longer to arrive)
    and stops while a delivery runs: here in a thread, so the timer fires."""
    slow = tmp_path / "slow-sendmail"
    slow.write_text("#!/bin/sh\nsleep 3\ncat > /dev/null\n")
    slow.chmod(0o755)
    server = lmtp("--processes", "1", "--workers", "1", lmtp_idle_timeout=1,
                  sendmail=[str(slow)])
    server.site.run("mailbox", "create", "fwd@example.org", "--forward",
                    "far@elsewhere.example.net", check=0)
    client = start_data(server, ["fwd@example.org"], b"", then=b"Subject: slow\r\n\r\n")
    for _ in range(6):  # 3 s for the message to arrive
        time.sleep(0.5)
        client.sock.sendall(b"more\r\n")
    client.sock.sendall(b".\r\nNOOP\r\n")
    replies = client.replies(2)
    client.close()
    assert [status(r) for r in replies] == [S250_DELIVERED, S250_OK], replies


@pytest.mark.parametrize("damage", ["new-is-a-symlink", "maildir-is-a-file"])
def test_a_failure_of_the_server_s_own_files_names_no_path_to_the_client(lmtp, damage):
    """The reply reaches the sender (an MTA copies it into its bounce):
    it says "internal error", as Dovecot's lmtp says, and the path and the
    reason go to lda's log alone, where the administrator reads them."""
    server = lmtp("--processes", "1")
    maildir = server.site.maildir(BOX)
    if damage == "new-is-a-symlink":
        (maildir / "new").rmdir()
        (maildir / "new").symlink_to(maildir / "cur")
    else:
        for sub in ("new", "cur", "tmp"):
            (maildir / sub).rmdir()
        maildir.rmdir()
        maildir.write_text("not a directory\n")
    client = server.client()
    rcpt_replies, replies = client.send(SENDER, [BOX, "b@example.org"], message())
    client.close()
    failed, delivered = replies if len(replies) == 2 else (rcpt_replies[BOX], replies[0])
    assert failed.startswith("451 4.3.") and f"<{BOX}>" in failed, replies
    assert "internal error" in failed, failed
    assert str(server.site.root) not in failed and "/" not in failed.split(">", 1)[1], failed
    assert status(delivered) == S250_DELIVERED, replies
    code, log = server.stop()
    assert code == 0, log
    assert str(maildir) in log and BOX in log, log



@pytest.mark.parametrize("damage", ["one-maildir", "every-tmp"])
def test_an_internal_failure_is_logged_once_per_recipient(lmtp, damage):
    """One log line per recipient and outcome, as Postfix logs one status
    per recipient: a log reader that counts them counts each failure
    once.  "one-maildir": a's copy fails at its link (a target's outcome);
    "every-tmp": no tmp/ to write the message in at all, so every
    recipient fails before any target is tried."""
    server = lmtp("--processes", "1")
    site = server.site
    maildir = site.maildir(BOX)
    (maildir / "new").rmdir()
    (maildir / "new").symlink_to(maildir / "cur")
    rcpts = [BOX, "b@example.org"]
    if damage == "every-tmp":
        for path in (maildir / "tmp", maildir.parent.parent / "tmp"):
            if path.is_dir():
                path.rmdir()
            path.write_text("not a directory\n")
    client = server.client()
    _, replies = client.send(SENDER, rcpts, message())
    client.close()
    failed = rcpts if damage == "every-tmp" else [BOX]
    assert [status(r)[:5] for r in replies] == [
        "451 4" if r in failed else "250 2" for r in rcpts], replies
    code, log = server.stop()
    assert code == 0, log
    for rcpt in rcpts:
        lines = [line for line in log.splitlines() if f"<{rcpt}>" in line]
        assert len(lines) == 1, lines
        assert ("status=deferred" if rcpt in failed else "status=sent") in lines[0], lines

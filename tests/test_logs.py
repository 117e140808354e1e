"""What lands in the log and in an MTA's bounces: escaped fields, one
reason line on stderr under an MTA with the log in syslog, and Postfix's
status words."""

import os
import re
import socket
import subprocess
import threading

import pytest

from conftest import LDA, maildir_files, message, without_site

PID = re.compile(r"^lda\[\d+\]: ")
FORGED = "lda[1]: <forged@example.org>: to=<victim@example.org>, status=sent (ok)"


def stderr_lines(done):
    return done.stderr.decode("utf-8", "replace").splitlines()


def log_lines(done):
    """stderr's log lines, without "lda[PID]: "."""
    return [PID.sub("", line) for line in stderr_lines(done) if PID.match(line)]


def user_config(tmp_path, text):
    config = tmp_path / "lda.toml"
    config.write_text('mode = "user"\n' + text)
    return str(config)


def over_quota(user):
    for sub in ("tmp", "new", "cur"):
        (user.maildir / sub).mkdir(parents=True, exist_ok=True)
    # Full, not too big for the limit: a message larger than the whole
    # limit is refused for good (5.2.3), not deferred.
    (user.maildir / "maildirsize").write_text("1000S\n1000 0\n")


# What an MTA copies into its bounce: no figures (tests/test_quota_replies.py);
# the log line has them.
QUOTA_REASON = "4.2.2 Quota exceeded (mailbox for user is full)"


# --- control characters never reach the log raw ---

@pytest.mark.parametrize("argv, msg, escaped", [
    (["bob\n" + FORGED], message(), "to=<bob\\x0alda[1]: <forged@"),
    (["bob\r" + FORGED], message(), "to=<bob\\x0dlda[1]: <forged@"),
    ([b"bob\xff@example.org"], message(), "to=<bob\\xff@example.org>"),
    (["bob\u202e@example.org"], message(), "to=<bob\\u202e@example.org>"),
    (["-a", "team\n" + FORGED, "bob@example.org"], message(), None),
    (["bob@example.org"], message(message_id="<a\x1b[2Jb\x7f@example.org>"),
     "<a\\x1b[2Jb\\x7f@example.org>: to=<bob@example.org>"),
], ids=["recipient-LF", "recipient-CR", "recipient-8bit", "recipient-bidi",
        "original-recipient-LF", "message-id-ESC"])
def test_a_field_with_control_characters_cannot_forge_a_log_line(user_log_on_stderr, argv,
                                                                 msg, escaped):
    done = user_log_on_stderr.run("deliver", "-f", "s@example.org", *argv, input=msg)
    lines = stderr_lines(done)
    # The reason first (Postfix reads its status code there), then lda's own
    # lines: nothing a caller wrote starts a line.
    assert all(PID.match(line) for line in lines[1:]), lines
    assert not any(line.startswith("lda[1]") for line in lines), lines
    assert all(line.isprintable() for line in lines), lines
    if escaped:
        assert any(escaped in line for line in log_lines(done)), lines


def test_the_reason_an_mta_copies_into_its_bounce_is_escaped(site):
    """A bidi override in the address would reorder the bounce text a
    sender reads."""
    site.create("alice@example.org")
    done = site.deliver(message(), "nobody\u202e@example.org", check=67)
    reason = stderr_lines(done)[0]
    assert reason.startswith("5.1.3 ") and "nobody\\u202e@example.org" in reason, reason
    assert "\u202e" not in reason


def test_the_lmtp_server_escapes_its_lines_too(site):
    """Its lines go through the same Log: a Message-ID that would clear an
    admin's terminal (ESC [2J) is logged escaped."""
    from lmtp_session import Server

    site.create("alice@example.org")
    server = Server(site, "--processes", "1")
    try:
        client = server.client()
        _, replies = client.send("s@example.org", ["alice@example.org"],
                                 message(message_id="<a\x1b[2Jb@example.org>"))
        client.close()
    finally:
        code, err = server.stop()
    assert code == 0 and replies[0].startswith("250"), (replies, err)
    assert "\x1b" not in err
    assert "<a\\x1b[2Jb@example.org>: to=<alice@example.org>, relay=lda, dsn=2.0.0, " \
           "status=sent" in err, err


# --- under an MTA: the reason alone on stderr, the log in syslog ---

def test_under_an_mta_stderr_carries_only_the_reason(user, tmp_path, syslog):
    """Postfix put lda's log line into the defer reason of a per-user
    mailbox_command: 'mailbox full: ... lda[30067]: <...>: to=<...>'."""
    over_quota(user)
    config = user_config(tmp_path, f'syslog_socket = "{syslog.path}"\n')  # log: default
    done = user.run("deliver", "-c", config, "alice@example.org", input=message(), check=75)
    assert stderr_lines(done) == [QUOTA_REASON]
    [(priority, line)] = syslog.records()
    assert priority == 2 << 3 | 6  # mail.info
    assert PID.sub("", line) == (
        "<m1@example.org>: to=<alice@example.org>, relay=lda, dsn=4.2.2, status=deferred "
        "(mailbox full: alice@example.org uses 1000 of 1000 bytes, 0 of unlimited messages)")


def test_without_any_configuration_no_log_line_reaches_the_reason(user):
    """The default itself (no lda.toml): whether this host has a /dev/log
    or not, stderr holds the reason and at most the note that syslog is
    missing."""
    over_quota(user)
    done = user.deliver(message(), "alice@example.org", check=75)
    first, *rest = stderr_lines(done)
    assert first == QUOTA_REASON
    assert [line for line in rest if not line.startswith("lda: cannot log to syslog")] == []
    assert len(rest) <= 1 and b"status=" not in done.stderr


def test_a_missing_syslog_socket_is_reported_once_after_the_reason(user, tmp_path):
    over_quota(user)
    missing = tmp_path / "no-syslog-here"
    config = user_config(tmp_path, f'log = "syslog"\nsyslog_socket = "{missing}"\n')
    # Two recipients: two log lines lost, one note.
    done = user.run("deliver", "-c", config, "alice@example.org", "alice+x@example.org",
                    input=message(), check=75)
    assert stderr_lines(done) == [
        QUOTA_REASON,
        f"lda: cannot log to syslog at {missing}: No such file or directory; log lines "
        'are dropped (set log = "stderr" in lda.toml to keep them on stderr)']


def test_a_missing_syslog_socket_is_found_before_any_socket_is_made(user, tmp_path):
    """No syslog daemon (no /dev/log): a stat finds it before _socket is
    imported, and the note is the one a failed connect() gave."""
    missing = tmp_path / "no-syslog-here"
    config = user_config(tmp_path, f'log = "syslog"\nsyslog_socket = "{missing}"\n')
    script = ("import io, sys\n"
              "from lda.deliver.command import deliver\n"
              f"rc = deliver(['-c', {config!r}, 'alice@example.org'],\n"
              f"             stdin=io.BytesIO({message()!r}))\n"
              "print(rc, '_socket' in sys.modules)\n")
    done = without_site(script, user.env)
    assert done.stdout.split() == ["0", "False"]
    assert done.stderr.splitlines() == [
        f"lda: cannot log to syslog at {missing}: No such file or directory; log lines "
        'are dropped (set log = "stderr" in lda.toml to keep them on stderr)']
    assert len(maildir_files(user.maildir)) == 1


def test_a_syslog_path_that_is_no_socket_is_still_tried_and_reported(user, tmp_path):
    """The stat only stands in for a connect() that could not find the
    path: a path that is there but is no socket is connected to, and what
    connect() says is reported."""
    plain = tmp_path / "plain-file"
    plain.write_text("")
    config = user_config(tmp_path, f'log = "syslog"\nsyslog_socket = "{plain}"\n')
    done = user.run("deliver", "-c", config, "alice@example.org", input=message(), check=0)
    assert stderr_lines(done) == [
        f"lda: cannot log to syslog at {plain}: Connection refused; log lines "
        'are dropped (set log = "stderr" in lda.toml to keep them on stderr)']


def test_at_a_terminal_the_log_stays_on_stderr(user, tmp_path, syslog):
    """Run by hand, log = "auto" shows the lines where the user looks."""
    config = user_config(tmp_path, f'syslog_socket = "{syslog.path}"\n')
    primary, secondary = os.openpty()
    try:
        done = subprocess.run([LDA, "deliver", "-c", config, "alice@example.org"],
                              input=message(), stdout=subprocess.PIPE, stderr=secondary,
                              env=user.env, timeout=60)
        os.close(secondary)
        secondary = None
        output = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(primary)
        if secondary is not None:
            os.close(secondary)
    assert done.returncode == 0
    assert re.fullmatch(rb"lda\[\d+\]: <m1@example.org>: to=<alice@example.org>, relay=lda, "
                        rb"dsn=2.0.0, status=sent \(delivered to maildir [^\r\n]*\)\r\n",
                        output), output
    assert syslog.records() == []


def test_a_stream_syslog_socket_gets_nul_separated_records(user, tmp_path):
    """As glibc: a /dev/log that refuses datagrams (EPROTOTYPE) is tried as
    a stream, each record ended by a NUL."""
    path = tmp_path / "stream-log"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    received = []

    def read():
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                received.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        config = user_config(tmp_path, f'log = "syslog"\nsyslog_socket = "{path}"\n')
        done = user.run("deliver", "-c", config, "alice@example.org", input=message(),
                        check=0)
        reader.join(timeout=30)
    finally:
        server.close()
    assert done.stderr == b""
    [record, tail] = b"".join(received).split(b"\0")
    assert tail == b"" and re.fullmatch(rb"<22>lda\[\d+\]: <m1@example.org>: to=<alice@"
                                        rb"example.org>, .*status=sent \(.*\)", record)


# --- Postfix's status words ---

def test_over_quota_is_deferred_and_rejected_over_quota_is_bounced(user_log_on_stderr):
    user = user_log_on_stderr
    over_quota(user)
    detail = "(mailbox full: alice@example.org uses 1000 of 1000 bytes, 0 of unlimited messages)"
    deferred = user.deliver(message(), "alice@example.org", check=75)
    assert log_lines(deferred) == [
        f"<m1@example.org>: to=<alice@example.org>, relay=lda, dsn=4.2.2, "
        f"status=deferred {detail}"]
    rejected = user.run("deliver", "-e", "alice@example.org", input=message(), check=77)
    assert log_lines(rejected) == [
        f"<m1@example.org>: to=<alice@example.org>, relay=lda, dsn=5.2.2, "
        f"status=bounced {detail}"]


def test_refused_recipients_are_bounced(site):
    site.create("alice@example.org")
    done = site.deliver(message(), "nobody@example.org", check=67)
    assert log_lines(done) == ["to=<nobody@example.org>, relay=lda, dsn=5.1.1, "
                               "status=bounced (unknown recipient nobody@example.org)"]


def test_a_mail_loop_is_bounced(user_log_on_stderr):
    looped = message(extra=b"Delivered-To: alice@example.org\n")  # not the MTA's own
    done = user_log_on_stderr.deliver(looped, "alice@example.org", check=65)
    assert log_lines(done) == ["<m1@example.org>: to=<alice@example.org>, relay=lda, "
                               "dsn=5.4.6, status=bounced (mail forwarding loop for "
                               "alice@example.org)"]


def test_fileinto_names_the_folder_and_a_vacation_reply_is_not_a_forward(site):
    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text('require ["fileinto", "mailbox", "vacation"];\n'
                                   'fileinto :create "Lists";\n'
                                   'vacation :days 7 "I am away.";\n')
    done = site.deliver(message(), "alice@example.org", check=0)
    sendmail = site.root / "sendmail"
    statuses = [line for line in log_lines(done) if "status=" in line]
    assert sorted(statuses) == sorted([
        "<m1@example.org>: to=<alice@example.org>, relay=lda, dsn=2.0.0, "
        f"status=sent (delivered to maildir {box}/.Lists)",
        "<m1@example.org>: to=<sender@example.org>, orig_to=<alice@example.org>, "
        f"relay=lda, dsn=2.0.0, status=sent (vacation reply sent with {sendmail})"])
    assert len(maildir_files(box / ".Lists")) == 1

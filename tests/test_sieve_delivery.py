"""Sieve scripts in real deliveries: folders, flags, redirect, discard,
vacation and duplicate, with DeliveredTo still deciding what is a resend."""

import email
import subprocess

import pytest

from conftest import LDA, maildir_files, message


def sieve(user, text):
    (user.home / ".lda.sieve").write_text(text)


def test_fileinto_create_with_flags_goes_to_cur(user):
    sieve(user, 'require ["fileinto", "mailbox", "imap4flags"];\n'
                'if header :contains "subject" "test" {\n'
                '  fileinto :create :flags "\\\\Seen" "Lists.Python";\n}\n')
    user.deliver(message(), "a@example.org", check=0)
    user.deliver(message(), "a@example.org", check=0)  # a resend
    folder = user.maildir / ".Lists.Python"
    assert (folder / "maildirfolder").exists()
    [stored] = maildir_files(folder, "cur")
    assert stored.name.endswith(":2,S")
    assert maildir_files(user.maildir) == [] and maildir_files(folder) == []


@pytest.mark.usefixtures("user_log_on_stderr")
def test_fileinto_missing_folder_without_create_keeps_in_inbox(user):
    sieve(user, 'require "fileinto";\nfileinto "Nowhere";\n')
    done = user.deliver(message(), "a@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 1
    assert b"does not exist" in done.stderr


@pytest.mark.usefixtures("user_log_on_stderr")
def test_discard_stores_nothing(user):
    sieve(user, 'if header :is "subject" "test" { discard; }\n')
    done = user.deliver(message(), "a@example.org", check=0)
    assert maildir_files(user.maildir) == [] and b"discarded" in done.stderr


@pytest.mark.usefixtures("user_log_on_stderr")
def test_syntax_error_keeps_the_message_and_logs_the_line(user):
    sieve(user, 'if header :contains "subject" {\n  discard\n')
    done = user.deliver(message(), "a@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 1
    assert b".lda.sieve:3:" in done.stderr  # FILE:LINE:COLUMN


def test_redirect_goes_through_sendmail_once(site):
    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text('require "copy";\n'
                                   'redirect :copy "bob@elsewhere.example.net";\n')
    site.deliver(message(), "alice@example.org", check=0)
    site.deliver(message(), "alice@example.org", check=0)
    assert [args[-1] for args, _ in site.sent()] == ["bob@elsewhere.example.net"]
    assert len(maildir_files(box)) == 1


def test_vacation_answers_once_from_the_null_sender(site):
    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text('require "vacation";\n'
                                   'vacation :days 7 "I am away.";\n')
    for i in range(2):
        site.deliver(message(message_id=f"<v{i}@x>"), "alice@example.org",
                     sender="sender@example.org", check=0)
    [(args, reply)] = site.sent()
    assert args[args.index("-f") + 1] == "<>" and args[-1] == "sender@example.org"
    parsed = email.message_from_bytes(reply)
    assert parsed["Auto-Submitted"].startswith("auto-replied")  # RFC 5230 5.1
    assert len(maildir_files(box)) == 2


def test_duplicate_extension_is_backed_by_the_database(user):
    sieve(user, 'require "duplicate";\n'
                'if duplicate :header "subject" { discard; stop; }\n')
    user.deliver(message(message_id="<d1@x>", subject="same"), "a@example.org", check=0)
    user.deliver(message(message_id="<d2@x>", subject="same"), "a@example.org", check=0)
    user.deliver(message(message_id="<d3@x>", subject="other"), "a@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 2


@pytest.mark.usefixtures("user_log_on_stderr")
def test_script_writable_by_others_is_ignored(user):
    sieve(user, 'discard;\n')
    (user.home / ".lda.sieve").chmod(0o666)
    done = user.deliver(message(), "a@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 1
    assert b"writable by group or others" in done.stderr


@pytest.mark.parametrize("test, folder", [(":over {n_minus_1}", ".Big"), (":over {n}", None),
                                          (":under {n_plus_1}", ".Big"), (":under {n}", None)],
                         ids=["over-n-1", "not-over-n", "under-n+1", "not-under-n"])
def test_size_is_the_message_as_the_mta_handed_it(user, test, folder):
    """RFC 5228 section 5.9: the size of the message, not of the copy lda
    stores with its own Return-Path and Delivered-To on top (what
    `lda sieve test` and the header tests see too)."""
    msg = message()
    n = len(msg)
    sieve(user, 'require "fileinto";\nif size '
          + test.format(n=n, n_minus_1=n - 1, n_plus_1=n + 1)
          + ' { fileinto "Big"; }\n')
    (user.maildir / ".Big" / "new").mkdir(parents=True, exist_ok=True)
    (user.maildir / ".Big" / "cur").mkdir(exist_ok=True)
    (user.maildir / ".Big" / "tmp").mkdir(exist_ok=True)
    user.deliver(msg, "a@example.org", check=0)
    stored = maildir_files(user.maildir / folder) if folder else maildir_files(user.maildir)
    assert len(stored) == 1
    assert stored[0].read_bytes().endswith(msg.split(b"\n\n", 1)[1])


def test_redirected_copy_carries_delivered_to_but_no_return_path(site):
    """The copy keeps this hop's Delivered-To (the loop check reads it) but
    not the Return-Path lda stores with the message: RFC 5321 section 4.4,
    a message sent on SHOULD NOT contain one (the next final delivery adds
    its own), and neither Pigeonhole's redirect nor Postfix local(8)'s
    forward sends one."""
    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text('require "copy";\n'
                                   'redirect :copy "bob@elsewhere.example.net";\n')
    site.deliver(message(), "alice@example.org", check=0)
    [(args, copy)] = site.sent()
    assert args[args.index("-f") + 1] == "sender@example.org"
    assert copy == b"Delivered-To: alice@example.org\n" + message()
    assert maildir_files(box)[0].read_bytes().startswith(b"Return-Path: <sender@example.org>\n")


@pytest.mark.usefixtures("user_log_on_stderr")
def test_a_fallback_to_the_inbox_that_then_fails_is_not_logged_delivered(user):
    """`fileinto` of a missing folder logged "delivered to INBOX instead"
    when the INBOX was opened, before the link: a link that then failed
    (here strace makes linkat fail with EIO) deferred the message under a
    log line that said it was delivered.  The line now comes once the copy
    is stored."""
    sieve(user, 'require "fileinto";\nfileinto "Nowhere";\n')
    failing = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=linkat",
               "-e", "inject=linkat:error=EIO", LDA, "deliver", "-f", "sender@example.org"]
    done = subprocess.run(failing, input=message(), capture_output=True, env=user.env,
                          timeout=60)
    assert done.returncode == 75, done.stderr.decode(errors="replace")
    assert b"Input/output error" in done.stderr and b"INBOX instead" not in done.stderr
    assert maildir_files(user.maildir) == []
    done = user.deliver(message(), "a@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 1
    assert b"does not exist; delivered to INBOX instead" in done.stderr

"""What the sender's side reads when a mailbox is full, or a message too big
for it, and what lda's log keeps.

The reply is read by others: `lda deliver`'s one line goes into Postfix's
bounce, an LMTP reply into the client's (a remote Postfix, fetchmail), a
partial delivery given up into lda's own DSN.  It says the mailbox is full
or the message too big, as Dovecot's quota_exceeded_message does, and names
no usage or limit; the address and the figures go to the log, for the
administrator."""

import re
import time

from conftest import fill_mailbox, message
from test_logs import log_lines, stderr_lines
from test_partial import dsn_parts, team_partial

# What only the log may hold: a mailbox's usage and limits.
FIGURES = re.compile(r"\d")


def public(text):
    """text without the reply code, enhanced status code and <address> that
    lead it: what must hold no figures."""
    return re.sub(r"^(\d{3} )?\d\.\d{1,3}\.\d{1,3} (<[^>]*>:? )?", "", text)


def full_alice(site, quota="1K"):
    maildir = site.create("alice@example.org", "--quota-storage", quota)
    fill_mailbox(maildir, 1024)
    return maildir


def test_deliver_to_a_full_mailbox_says_so_without_figures(site):
    full_alice(site)
    done = site.deliver(message(), "alice@example.org", check=75)
    reason = stderr_lines(done)[0]
    assert reason.startswith("4.2.2 ") and not FIGURES.search(public(reason)), reason
    assert "alice@example.org" not in reason
    [line] = log_lines(done)
    assert "dsn=4.2.2, status=deferred" in line and "alice@example.org uses 1024 of 1024 " \
           "bytes" in line, line


def test_rejected_when_full_says_so_without_figures(site):
    full_alice(site)
    done = site.run("deliver", "-e", "alice@example.org", input=message(), check=77)
    reason = stderr_lines(done)[0]
    assert reason.startswith("5.2.2 ") and not FIGURES.search(public(reason)), reason
    assert "uses 1024 of 1024 bytes" in log_lines(done)[0]


def test_a_message_too_big_for_the_quota_says_so_without_figures(site):
    site.create("alice@example.org", "--quota-storage", "1K")
    big = message(body=b"x" * 2000 + b"\n")
    done = site.deliver(big, "alice@example.org", check=77)
    reason = stderr_lines(done)[0]
    assert reason.startswith("5.2.3 ") and not FIGURES.search(public(reason)), reason
    assert "alice@example.org" not in reason
    [line] = log_lines(done)
    assert "dsn=5.2.3, status=bounced" in line and f"{len(big)} bytes" in line \
        and "1024 bytes" in line, line


def test_lmtp_after_data_says_so_without_figures(lmtp):
    server = lmtp(lmtp_rcpt_check_quota=False)
    client = server.client()
    _, replies = client.send("s@example.org", ["a@example.org", "full@example.org"],
                             message())
    client.close()
    code, err = server.stop()
    assert code == 0, err
    assert replies[1].startswith("452 4.2.2 <full@example.org> ") and not FIGURES.search(
        public(replies[1])), replies
    assert "to=<full@example.org>, relay=lda, dsn=4.2.2, status=deferred (" in err, err
    assert "uses 1048576 of 1048576 bytes" in err, err


def test_lmtp_at_rcpt_says_so_without_figures_and_logs_them(lmtp):
    server = lmtp(lmtp_rcpt_check_quota=True)
    client = server.client()
    assert client.cmd("LHLO test")[-1].startswith("250")
    assert client.cmd("MAIL FROM:<s@example.org> SIZE=5000").startswith("250")
    reply = client.cmd("RCPT TO:<full@example.org>")
    client.close()
    code, err = server.stop()
    assert code == 0, err
    assert reply.startswith("452 4.2.2 <full@example.org>") and not FIGURES.search(
        public(reply)), reply
    assert "to=<full@example.org>, relay=lda, dsn=4.2.2, status=deferred (" in err, err
    assert "uses 1048576 of 1048576 bytes" in err, err


def test_a_partial_delivery_given_up_bounces_without_figures(make_site):
    """bob, an alias member over quota: the record and the DSN that returns
    it say only that the mailbox is full."""
    site = make_site(partial_expiration=1)
    _, _, record = team_partial(site)
    assert record["reason"].startswith("4.2.2 ") and not FIGURES.search(
        public(record["reason"])), record
    time.sleep(1.1)
    site.run("partial", "retry", check=0)
    [(_, raw)] = site.sent()
    _, (text, status, _) = dsn_parts(raw)
    [_, per_recipient] = status.get_payload()
    diagnostic = per_recipient["Diagnostic-Code"].removeprefix("smtp; ")
    assert diagnostic.startswith("552 5.2.2 ") and not FIGURES.search(public(diagnostic))
    assert "1024" not in text.get_content() and "uses" not in text.get_content()

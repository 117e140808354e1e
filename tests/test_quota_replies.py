"""What the sender's side reads when a mailbox is full, or a message too big
for it, and what lda's log keeps.

The reply is read by others: `lda deliver`'s one line goes into Postfix's
bounce, an LMTP reply into the client's (a remote Postfix, fetchmail), a
partial delivery given up into lda's own DSN.  It says the mailbox is full
or the message too big, as Dovecot's quota_exceeded_message does, and names
no usage or limit; the address and the figures go to the log, for the
administrator."""

import json
import re

import pytest

from conftest import fill_mailbox, maildir_files, message
from test_logs import log_lines, stderr_lines
from test_partial import dsn_parts, team_partial

# What only the log may hold: a mailbox's usage and limits.
FIGURES = re.compile(r"\d")
# Dovecot's default quota_exceeded_message, and lda policy's words for a
# message larger than the whole quota (quota_status_toolarge).
FULL = "Quota exceeded (mailbox for user is full)"
TOO_BIG = "Message is larger than the mailbox quota"


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
    assert reason == f"4.2.2 {FULL}"
    [line] = log_lines(done)
    assert "dsn=4.2.2, status=deferred" in line and "alice@example.org uses 1024 of 1024 " \
           "bytes" in line, line


def test_rejected_when_full_says_so_without_figures(site):
    full_alice(site)
    done = site.run("deliver", "-e", "alice@example.org", input=message(), check=77)
    reason = stderr_lines(done)[0]
    assert reason.startswith("5.2.2 ") and not FIGURES.search(public(reason)), reason
    assert reason == f"5.2.2 {FULL}"
    assert "uses 1024 of 1024 bytes" in log_lines(done)[0]


def test_a_message_too_big_for_the_quota_says_so_without_figures(site):
    site.create("alice@example.org", "--quota-storage", "1K")
    big = message(body=b"x" * 2000 + b"\n")
    done = site.deliver(big, "alice@example.org", check=77)
    reason = stderr_lines(done)[0]
    assert reason.startswith("5.2.3 ") and not FIGURES.search(public(reason)), reason
    assert "alice@example.org" not in reason
    assert reason == f"5.2.3 {TOO_BIG}"
    [line] = log_lines(done)
    assert "dsn=5.2.3, status=bounced" in line and re.search(
        r"\d{4} bytes, and alice@example.org may hold 1024 bytes", line), line


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
    assert replies[1] == f"452 4.2.2 <full@example.org> {FULL}"
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
    assert reply == f"452 4.2.2 <full@example.org>: {FULL}"
    assert "to=<full@example.org>, relay=lda, dsn=4.2.2, status=deferred (" in err, err
    assert "uses 1048576 of 1048576 bytes" in err, err


def test_a_partial_delivery_given_up_bounces_without_figures(site):
    """bob, an alias member over quota: the record and the DSN that returns
    it say only that the mailbox is full."""
    _, _, record = team_partial(site)
    assert record["reason"].startswith("4.2.2 ") and not FIGURES.search(
        public(record["reason"])), record
    site.run("partial", "bounce", "--all", check=0)
    [(_, raw)] = site.sent()
    _, (text, status, _) = dsn_parts(raw)
    [_, per_recipient] = status.get_payload()
    diagnostic = per_recipient["Diagnostic-Code"].removeprefix("smtp; ")
    assert diagnostic.startswith("552 5.2.2 ") and not FIGURES.search(public(diagnostic))
    assert diagnostic == f"552 5.2.2 {FULL}"
    assert "1024" not in text.get_content() and "uses" not in text.get_content()


def test_quota_exceeded_message_sets_the_text_and_not_the_log(make_site):
    """As Dovecot's setting of that name; the log keeps its figures, and a
    message too big for the whole quota keeps its own words."""
    site = make_site(quota_exceeded_message="Mailbox full, see https://example.org/quota")
    full_alice(site)
    done = site.deliver(message(), "alice@example.org", check=75)
    assert stderr_lines(done)[0] == "4.2.2 Mailbox full, see https://example.org/quota"
    assert "uses 1024 of 1024 bytes" in log_lines(done)[0]
    site.create("bob@example.org", "--quota-storage", "1K")
    big = site.deliver(message(body=b"x" * 2000 + b"\n"), "bob@example.org", check=77)
    assert stderr_lines(big)[0] == f"5.2.3 {TOO_BIG}"


@pytest.mark.parametrize("text", [
    "", "   ", "full\r\nX-Injected: yes", "full\n", "full\x1b[2J", "Postfach voll \u00fc",
    "\u202efull", "</etc/dovecot/quota-message.txt", "x" * 201,
], ids=["empty", "blank", "crlf", "lf", "escape", "non-ascii", "bidi", "dovecot-file",
        "too-long"])
def test_a_quota_exceeded_message_no_reply_can_carry_is_a_configuration_error(site, text):
    """Refused when lda.toml is read (78, 4.3.5: Postfix defers), with the
    key named: never sent as it is, and no delivery made meanwhile, not
    even to a mailbox with room."""
    maildir = site.create("alice@example.org")
    site.config.write_text(site.config.read_text()
                           + f"quota_exceeded_message = {json.dumps(text)}\n")
    done = site.deliver(message(), "alice@example.org", check=78)
    reason = stderr_lines(done)[0]
    assert reason.startswith("4.3.5 ") and "quota_exceeded_message" in reason, reason
    assert reason.isprintable() and len(stderr_lines(done)) == 1, done.stderr
    assert maildir_files(maildir) == []


def test_an_alias_whose_every_member_is_full_says_so_without_figures(site):
    """The recipient's own failure names each member's, in their public
    words: the members' lines in the log keep the figures."""
    for name in ("bob", "carol"):
        fill_mailbox(site.create(f"{name}@example.org", "--quota-storage", "1K"), 1024)
    site.aliases.write_text("team: bob, carol\n")
    done = site.deliver(message(), "team@example.org", check=75)
    reason = stderr_lines(done)[0]
    assert reason.startswith("4.") and f"bob@example.org: {FULL}; carol@example.org: " \
        f"{FULL}" in reason and not FIGURES.search(public(reason)), reason
    logged = " ".join(log_lines(done))
    assert "bob@example.org uses 1024 of 1024" in logged and "carol@example.org uses 1024 " \
        "of 1024" in logged, logged


def test_a_full_member_that_cannot_be_kept_for_retry_says_so_without_figures(site):
    """bob full, and no partial/ to keep his copy in: the recipient is
    retried, and its reason names bob's failure in its public words."""
    site.create("alice@example.org")
    fill_mailbox(site.create("bob@example.org", "--quota-storage", "1K"), 1024)
    site.aliases.write_text("team: alice, bob\n")
    (site.db().parent / "partial").write_text("not a directory\n")
    done = site.deliver(message(), "team@example.org", check=75)
    reason = stderr_lines(done)[0]
    assert f"bob@example.org: {FULL}; " in reason and "uses" not in reason, reason
    assert "bob@example.org uses 1024 of 1024" in " ".join(log_lines(done))

"""reject and ereject (RFC 5429): the refusal, its limits, and what the
delivery makes of it over `lda deliver` and LMTP."""

import email

import pytest
from sieve_helpers import KEEP, actions, outcome_of

from conftest import maildir_files, message
from lda.sieve import SieveError, compile_script

NULL_SENDER = ""


def refusal(script, **kwargs):
    outcome = outcome_of(script, **kwargs)
    assert outcome.errors == [] and not outcome.implicit_keep
    [action] = outcome.actions
    return action


def test_reject_builds_an_mdn_to_the_sender():
    action = refusal('require "reject";\nreject "Not from you.\nNever.";')
    assert action.to == "coyote@desert.example.org"
    report = email.message_from_bytes(action.reply_bytes)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "disposition-notification"  # RFC 3798
    assert report["To"] == "<coyote@desert.example.org>"
    assert report["In-Reply-To"] == "<present@desert.example.org>"
    assert report["Auto-Submitted"] == "auto-replied"  # RFC 3834
    human, notification, original = report.get_payload()
    assert "Not from you.\nNever." in human.get_payload()
    fields = notification.get_payload()[0]
    assert fields["Final-Recipient"] == "rfc822; roadrunner@acme.example.com"
    assert fields["Original-Message-ID"] == "<present@desert.example.org>"
    assert fields["Disposition"] == "automatic-action/MDN-sent-automatically; deleted"
    assert fields["Reporting-UA"].endswith("; lda " + __import__("lda").__version__)
    assert original.get_content_type() == "text/rfc822-headers"
    assert b"Subject: I have a present for you\n" in action.reply_bytes


def test_reject_of_a_bounce_sends_nothing():
    outcome = outcome_of('require "reject"; reject "no";', sender=NULL_SENDER)
    [action] = outcome.actions
    assert action.reply_bytes is None and not outcome.implicit_keep
    assert outcome.log == ["reject: the sender is null: no refusal sent"]


def test_ereject_reason_becomes_one_printable_line():
    action = refusal('require "ereject";\nereject "go\n\taway\u00e9 \\\\ \\"now\\"";')
    assert action.reason == 'go away? \\ "now"'
    long = refusal(f'require "ereject"; ereject "{"x" * 5000}";')
    assert len(long.reason) == 200


@pytest.mark.parametrize("script", [
    'keep; reject "no";',
    'reject "no"; keep;',
    'require "fileinto"; reject "no"; fileinto "X";',
    'require ["fileinto", "copy"]; fileinto :copy "X"; reject "no";',
    'reject "no"; redirect "x@example.org";',
    'require "copy"; reject "no"; redirect :copy "x@example.org";',
    'require "vacation"; reject "no"; vacation "away";',
    'require "vacation"; vacation "away"; reject "no";',
    'reject "no"; reject "again";',
    'require "ereject"; ereject "no"; reject "again";',
    'require "ereject"; ereject "no"; keep;',
], ids=["keep-reject", "reject-keep", "fileinto", "fileinto-copy", "redirect",
        "redirect-copy", "vacation-after", "vacation-before", "twice", "ereject-reject",
        "ereject-keep"])
def test_reject_with_a_delivering_or_answering_action_is_a_runtime_error(script):
    # As Pigeonhole 0.5.19 (sieve-test -e): the run fails, implicit keep.
    outcome = outcome_of('require "reject";\n' + script)
    assert outcome.describe() == KEEP
    assert len(outcome.errors) == 1 and "RFC 5429" in outcome.errors[0]


def test_reject_stands_with_discard_and_flags():
    assert actions('require ["reject", "imap4flags"];\naddflag "\\\\Seen";\n'
                   'reject "no";\ndiscard;')[1] == "discard"


@pytest.mark.parametrize("script, where", [
    ('reject "no";', (1, 1)),
    ('require "reject";\nereject "no";', (2, 1)),
    ('require "reject";\nreject;', (2, 1)),
    ('require "reject";\nreject ["a", "b"];', (2, 8)),
])
def test_compile_errors(script, where):
    with pytest.raises(SieveError) as caught:
        compile_script(script)
    assert caught.value.errors[0][:2] == where


# --- in deliveries ----------------------------------------------------------

def test_ereject_in_lda_deliver_exits_77_with_the_reason(site):
    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text('require "ereject";\n'
                                   'if header :is "subject" "spam" { ereject "No spam,\r\nthanks."; }\n')
    done = site.deliver(message(subject="spam"), "alice@example.org", check=77)
    assert done.stderr.decode().splitlines()[0] == "5.7.1 No spam, thanks."
    assert maildir_files(box) == [] and site.sent() == []
    site.deliver(message(message_id="<ok@x>"), "alice@example.org", check=0)
    assert len(maildir_files(box)) == 1


def test_reject_in_lda_deliver_sends_the_mdn_once_from_the_null_sender(site):
    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text('require "reject";\nreject "Not here.";\n')
    for _ in range(2):  # the second is a resend: nothing is sent again
        site.deliver(message(), "alice@example.org", sender="bob@example.net", check=0)
    [(args, mdn)] = site.sent()
    assert args[args.index("-f") + 1] == "<>" and args[-1] == "bob@example.net"
    assert b"report-type=disposition-notification" in mdn and b"Not here." in mdn
    assert b"From: MAILER-DAEMON@" in mdn  # lda.toml's postmaster
    assert maildir_files(box) == []


def test_reject_of_a_bounce_in_lda_deliver_stores_and_sends_nothing(site):
    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text('require "reject";\nreject "Not here.";\n')
    done = site.deliver(message(), "alice@example.org", sender="", check=0)
    assert site.sent() == [] and maildir_files(box) == []
    assert b"no refusal sent" in done.stderr


def test_ereject_of_one_mailbox_of_an_alias_sends_the_mdn_instead(site):
    alice, bob = site.create("alice@example.org"), site.create("bob@example.org")
    site.aliases.write_text("team: alice, bob\n")
    (alice / "lda.sieve").write_text('require "ereject";\nereject "Not me.";\n')
    site.deliver(message(), "team@example.org", sender="carol@example.net", check=0)
    assert maildir_files(alice) == [] and len(maildir_files(bob)) == 1
    [(args, mdn)] = site.sent()
    assert args[-1] == "carol@example.net" and b"Not me." in mdn


def test_ereject_over_lmtp_answers_only_that_recipient(lmtp):
    server = lmtp()
    site = server.site
    (site.maildir("b@example.org") / "lda.sieve").write_text(
        'require "ereject";\nereject "b does not want it";\n')
    client = server.client()
    try:
        _, replies = client.send("sender@example.org",
                                 ["a@example.org", "b@example.org", "c@example.org"],
                                 message())
    finally:
        client.close()
    assert replies[0].startswith("250 ")
    assert replies[1] == "550 5.7.1 <b@example.org> b does not want it"
    assert replies[2].startswith("250 ")
    assert maildir_files(site.maildir("b@example.org")) == []
    assert len(maildir_files(site.maildir("c@example.org"))) == 1


def test_reject_mdn_says_precedence_bulk():
    """As Pigeonhole's MDN and lda's own vacation reply: an automatic
    message that a responder knowing Precedence but not Auto-Submitted
    (RFC 3834 section 2) leaves unanswered."""
    action = refusal('require "reject";\nreject "No.";')
    assert email.message_from_bytes(action.reply_bytes)["Precedence"] == "bulk"


def test_reject_mdn_returns_the_original_header_as_it_came():
    """The third part is the refused message's header byte for byte (RFC
    3798 section 3), as Pigeonhole returns it: field names in their own
    case ("Message-ID", not "Message-Id"), folded lines folded."""
    original = (b"From: Coyote <coyote@desert.example.org>\r\nTo: roadrunner@acme.example.com\r\n"
                b"Message-ID: <present@desert.example.org>\r\nX-Long: one\r\n\ttwo\r\n"
                b"Subject: hi\r\n\r\nBody.\r\n")
    action = refusal('require "reject";\nreject "No.";', msg=original)
    third = action.reply_bytes.rsplit(b"Content-Type: text/rfc822-headers\n\n", 1)[1]
    header = original.split(b"\r\n\r\n")[0].replace(b"\r\n", b"\n") + b"\n"
    assert third.split(b"\n--")[0] == header

"""lda.sieve: the vacation extension (RFC 5230): the reply, when none is
sent, and how often."""

import re

import pytest

from lda.sieve import Keep, MemoryState, SieveError, Vacation, compile_script
from sieve_helpers import KEEP, RECIPIENT, outcome_of, with_headers

VACATION = 'require "vacation"; vacation "I am away.";'


def vacation_of(script=VACATION, msg="plain", **kwargs):
    outcome = outcome_of(script, msg=msg, **kwargs)
    assert outcome.errors == []
    found = [a for a in outcome.actions if isinstance(a, Vacation)]
    return (found[0] if found else None), outcome


def reply_fields(reply):
    head, body = reply.reply_bytes.decode().split("\n\n", 1)
    return dict(line.split(": ", 1) for line in head.split("\n")), body


def test_vacation_reply_headers_and_body():
    reply, outcome = vacation_of(state=MemoryState(now=lambda: 1795600000))
    assert outcome.all_actions()[-1] == Keep(implicit=True)
    assert (reply.to, reply.seconds, reply.handle.startswith("auto-")) == (
        "coyote@desert.example.org", 7 * 86400, True)
    fields, body = reply_fields(reply)
    assert fields["From"] == RECIPIENT
    assert fields["To"] == "Coyote <coyote@desert.example.org>"
    assert fields["Subject"] == "Auto: I have a present for you"
    assert fields["Date"] == "Wed, 25 Nov 2026 09:46:40 +0000"
    assert fields["In-Reply-To"] == "<present@desert.example.org>"
    assert fields["References"] == "<present@desert.example.org>"
    assert fields["Auto-Submitted"] == "auto-replied (vacation)"
    assert fields["Content-Type"] == "text/plain; charset=utf-8"
    assert re.fullmatch(r"<[0-9a-f]{16}\.1795600000@acme\.example\.com>", fields["Message-ID"])
    assert body == "I am away.\n"
    assert outcome.records == [("vacation", "coyote@desert.example.org", reply.handle,
                                7 * 86400)]


@pytest.mark.parametrize("msg, kwargs, reason", [
    ("plain", {"sender": ""}, "the sender is null"),
    ("list", {}, "Precedence: list"),
    (with_headers("List-Id: <x.example.org>"), {}, "a mailing list message (list-id field)"),
    (with_headers("List-Unsubscribe: <mailto:u@x>"), {}, "list-unsubscribe field"),
    (with_headers("Precedence: bulk"), {}, "Precedence: bulk"),
    (with_headers("Precedence: junk"), {}, "Precedence: junk"),
    (with_headers("Auto-Submitted: auto-generated"), {}, "Auto-Submitted: auto-generated"),
    (with_headers("Auto-Submitted: auto-replied (vacation)"), {}, "Auto-Submitted: auto-replied"),
    ("plain", {"sender": "MAILER-DAEMON@example.org"}, "is an automated sender"),
    ("plain", {"sender": "owner-list@example.org"}, "is an automated sender"),
    ("plain", {"sender": "list-request@example.org"}, "is an automated sender"),
    ("plain", {"sender": "roadrunner@acme.example.com"}, "the sender is the recipient"),
    ("plain", {"to": "other@acme.example.com"}, "none of the user's addresses"),
], ids=["null-sender", "precedence-list", "list-id", "list-unsubscribe", "precedence-bulk",
        "precedence-junk", "auto-generated", "auto-replied", "mailer-daemon", "owner-",
        "-request", "from-myself", "not-addressed-to-me"])
def test_vacation_does_not_reply(msg, kwargs, reason):
    reply, outcome = vacation_of(msg=msg, **kwargs)
    assert reply is None
    assert outcome.describe() == KEEP
    assert outcome.records == []
    assert reason in outcome.log[0]


@pytest.mark.parametrize("script, msg, kwargs", [
    (VACATION, with_headers("Auto-Submitted: no"), {}),
    (VACATION, "plain", {"to": "roadrunner+birds@acme.example.com"}),
    (VACATION, "plain", {"to": "rr@acme.example.com", "original": RECIPIENT}),
    ('require "vacation"; vacation :addresses ["rr@example.net", "roadrunner@acme.example.com"]'
     ' "away";', "plain", {"to": "rr@example.net"}),
    ('require "vacation"; vacation :from "Road Runner <roadrunner@acme.example.com>" "away";',
     "plain", {"to": "rr@example.net"}),
    (VACATION, with_headers("To: x@example.org", "Bcc: roadrunner@acme.example.com"), {}),
], ids=["auto-submitted-no", "detail-ignored", "original-recipient", "addresses",
        "from-address", "bcc"])
def test_vacation_replies(script, msg, kwargs):
    reply, _ = vacation_of(script, msg=msg, **kwargs)
    assert reply is not None


def test_vacation_once_within_days():
    now = [0.0]
    state = MemoryState(now=lambda: now[0])
    script = 'require "vacation"; vacation :days 2 "away";'
    first, outcome = vacation_of(script, state=state)
    outcome.commit(state)
    now[0] = 86400
    again, outcome = vacation_of(script, state=state)
    assert (first is not None, again) == (True, None)
    assert outcome.log == ["vacation: no reply: coyote@desert.example.org was answered within 2"
                           " days"]
    now[0] = 2 * 86400 + 1
    assert vacation_of(script, state=state)[0] is not None


@pytest.mark.parametrize("days, expected", [(0, 1), (1, 1), (23, 23)])
def test_vacation_days_at_least_one(days, expected):
    reply, _ = vacation_of(f'require "vacation"; vacation :days {days} "away";')
    assert reply.seconds == expected * 86400


def test_vacation_handles():
    """RFC 5230 section 4.2: the same :handle is one vacation whatever the
    text; without it, the arguments make the handle."""
    lunch = ('require "vacation"; if header :contains "subject" "lunch" {'
             ' vacation :handle "ran-away" "I\'m out and can\'t meet for lunch"; } else {'
             ' vacation :handle "ran-away" "I\'m out"; }')
    assert vacation_of(lunch)[0].handle == "ran-away"
    one, two = (vacation_of(f'require "vacation"; vacation "{text}";')[0].handle
                for text in ("one", "two"))
    assert one != two
    assert one == vacation_of('require "vacation"; vacation "one";')[0].handle


def test_vacation_subject_from_and_encoding():
    reply, _ = vacation_of('require "vacation"; vacation :subject "Abwesenheit: Grüße"'
                           ' :from "Rénée <roadrunner@acme.example.com>" "Bin weg. Grüße\n";')
    fields, body = reply_fields(reply)
    assert fields["Subject"] == "=?utf-8?b?QWJ3ZXNlbmhlaXQ6IEdyw7zDn2U=?="
    assert fields["From"] == "=?utf-8?b?UsOpbsOpZQ==?= <roadrunner@acme.example.com>"
    assert fields["Content-Transfer-Encoding"] == "8bit"
    assert body == "Bin weg. Grüße\n"
    assert reply.describe() == 'vacation to coyote@desert.example.org (subject "Abwesenheit: ' \
                               'Grüße")'


def test_vacation_default_subject_decoded_and_references_kept():
    reply, _ = vacation_of(msg=with_headers("Subject: =?utf-8?q?Caf=C3=A9?=",
                                            "References: <a@x>\n <b@x>"))
    fields, _ = reply_fields(reply)
    assert fields["Subject"] == "=?utf-8?b?QXV0bzogQ2Fmw6k=?="
    assert fields["References"] == "<a@x> <b@x> <present@desert.example.org>"


def test_vacation_mime_reason_is_the_entity():
    reply, _ = vacation_of('require "vacation"; vacation :mime text:\n'
                           "Content-Type: text/plain; charset=us-ascii\n\nAway.\n.\n;")
    text = reply.reply_bytes.decode()
    assert "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\nAway.\n" in text
    assert text.count("Content-Type") == 1


def test_vacation_reply_to_sender_field_and_bare_address():
    reply, _ = vacation_of(msg=with_headers("Sender: Helper <h@example.org>"),
                           sender="h@example.org")
    assert reply_fields(reply)[0]["To"] == "Helper <h@example.org>"
    reply, _ = vacation_of(sender="someone@example.net")
    assert reply_fields(reply)[0]["To"] == "<someone@example.net>"


def test_vacation_header_injection_is_flattened():
    reply, _ = vacation_of('require "vacation"; vacation :subject "a\nBcc: x@y" "away";')
    assert reply_fields(reply)[0]["Subject"] == "a Bcc: x@y"


# --- vacation-seconds (RFC 6131) --------------------------------------------------

SECONDS = 'require "vacation-seconds"; vacation :seconds {} "away";'


@pytest.mark.parametrize("script, expected", [
    (SECONDS.format(3 * 86400 + 1), 3 * 86400 + 1),
    (SECONDS.format(60), 86400),
    (SECONDS.format(0), 86400),
    ('require "vacation"; vacation "away";', 7 * 86400),
    ('require "vacation"; vacation :days 400 "away";', 400 * 86400),
], ids=["seconds", "raised-to-the-minimum", "zero-is-the-minimum", "default-period", "days"])
def test_vacation_period_in_seconds(script, expected):
    """Pigeonhole's sieve_vacation_min_period (1 day), max_period (none) and
    default_period (7 days); sieve-test reports "seconds : 86400" for
    :seconds 60."""
    reply, _ = vacation_of(script)
    assert reply.seconds == expected


def test_vacation_seconds_once_within_the_period():
    now = [0.0]
    state = MemoryState(now=lambda: now[0])
    script = SECONDS.format(90000)
    first, outcome = vacation_of(script, state=state)
    assert outcome.records == [("vacation", first.to, first.handle, 90000)]
    outcome.commit(state)
    now[0] = 89999
    again, outcome = vacation_of(script, state=state)
    assert again is None
    assert outcome.log == ["vacation: no reply: coyote@desert.example.org was answered within "
                           "90000 seconds"]
    now[0] = 90000
    assert vacation_of(script, state=state)[0] is not None


@pytest.mark.parametrize("script, expected", [
    ('require "vacation-seconds"; vacation :days 1 :seconds 60 "away";',
     (1, 29, "vacation: :days and :seconds exclude each other")),
    ('require "vacation"; vacation :seconds 60 "away";',
     (1, 30, 'tag :seconds needs require "vacation-seconds"')),
    ('require "vacation-seconds"; vacation :seconds "60" "away";',
     (1, 47, ":seconds expects a number")),
], ids=["days-and-seconds", "needs-require", "not-a-number"])
def test_vacation_seconds_compile_errors(script, expected):
    from lda.sieve import SieveError, compile_script

    with pytest.raises(SieveError) as caught:
        compile_script(script)
    assert caught.value.errors[0] == expected


def test_vacation_seconds_implies_vacation():
    """RFC 6131 section 2, and Pigeonhole accepts it so too."""
    from lda.sieve import compile_script

    assert "vacation" in compile_script(SECONDS.format(60)).requires


def test_vacation_seconds_in_a_delivery_measures_from_sent_at(site):
    """The SQLite state keeps sent_at; the period is compared in seconds."""
    import sqlite3

    from conftest import message

    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text('require "vacation-seconds";\n'
                                   'vacation :seconds 90000 "I am away.";\n')

    def deliver(n):
        site.deliver(message(message_id=f"<s{n}@x>"), "alice@example.org",
                     sender="sender@example.org", check=0)

    deliver(1)
    deliver(2)
    assert len(site.sent()) == 1
    conn = sqlite3.connect(site.db())
    with conn:
        conn.execute("UPDATE sieve_vacations SET sent_at = sent_at - 89000")
    conn.close()
    deliver(3)
    assert len(site.sent()) == 1
    conn = sqlite3.connect(site.db())
    with conn:
        conn.execute("UPDATE sieve_vacations SET sent_at = sent_at - 1100")
    conn.close()
    deliver(4)
    assert len(site.sent()) == 2


@pytest.mark.parametrize("sender", ["not an address", "a@example.org, b@example.org", ""],
                         ids=["words", "two", "empty"])
def test_a_constant_from_that_is_no_address_does_not_compile(sender):
    """RFC 5230 section 4.4, as Pigeonhole refuses it: one valid address."""
    with pytest.raises(SieveError) as caught:
        compile_script(f'require "vacation"; vacation :from "{sender}" "away";')
    assert caught.value.errors == [(1, 21, f'vacation: :from "{sender}" is not an address')]


def test_a_vacation_row_goes_when_its_period_is_over(site):
    """Each reply's row keeps when its period ends (sent_at + :seconds),
    and `lda dedup cleanup` drops the rows past it; it used to keep every
    vacation row for ever, one per sender a user was away for.  A row from
    before the period was kept (no expires) stays."""
    import sqlite3
    import time

    from conftest import message

    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text('require "vacation-seconds";\n'
                                   'vacation :seconds 90000 "I am away.";\n')
    for n, sender in enumerate(["one@example.org", "two@example.org"]):
        site.deliver(message(message_id=f"<e{n}@x>"), "alice@example.org", sender=sender,
                     check=0)
    assert len(site.sent()) == 2
    with sqlite3.connect(site.db()) as conn:
        rows = conn.execute("SELECT sender, expires - sent_at FROM sieve_vacations "
                            "ORDER BY sender").fetchall()
        assert rows == [("one@example.org", 90000.0), ("two@example.org", 90000.0)]
        conn.execute("UPDATE sieve_vacations SET expires = ? WHERE sender = 'one@example.org'",
                     (time.time() - 1,))
        conn.execute("INSERT INTO sieve_vacations (mailbox, sender, handle, sent_at) "
                     "VALUES ('alice@example.org', 'old@example.org', 'h', 0)")
    conn.close()
    site.run("dedup", "cleanup", check=0)
    with sqlite3.connect(site.db()) as conn:
        left = [r[0] for r in conn.execute("SELECT sender FROM sieve_vacations ORDER BY sender")]
    conn.close()
    assert left == ["old@example.org", "two@example.org"]


def test_vacation_reply_asks_exchange_not_to_answer_it():
    """X-Auto-Response-Suppress: All (MS-OXCMAIL 2.2.3.2.14), as Pigeonhole
    writes it: an Exchange or Outlook out-of-office that ignores
    Auto-Submitted would otherwise answer the reply, and two absent users
    trade replies once per period each."""
    reply, _ = vacation_of()
    fields, _ = reply_fields(reply)
    assert fields["X-Auto-Response-Suppress"] == "All"

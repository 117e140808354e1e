"""lda.sieve: notifications (RFC 5435 enotify) by mail (RFC 5436 mailto):
the URI, the message sent, when none is, and a real delivery."""

import email
import io

import pytest

from conftest import maildir_files, message
from lda.sieve import Discard, Keep, SieveError, compile_script
from lda.sieve.dryrun import dry_run
from lda.sieve.extensions.enotify import (
    MAX_RECIPIENTS,
    MAX_URI_LENGTH,
    BadUri,
    Notify,
    encode_url,
    parse_uri,
)
from sieve_helpers import KEEP, PLAIN, RECIPIENT, outcome_of, with_headers

NOTIFY = 'require "enotify";\n'
VARIABLES = 'require ["enotify", "variables"];\n'


def notifications(script, **kwargs):
    outcome = outcome_of(script, **kwargs)
    assert outcome.errors == []
    return [a for a in outcome.actions if isinstance(a, Notify)], outcome


def fields_of(action):
    parsed = email.message_from_bytes(action.reply_bytes)
    return parsed, parsed.get_payload(decode=True).decode()


# --- compile errors ---------------------------------------------------------------

ERRORS = [
    ("needs-require", 'notify "mailto:a@example.org";',
     [(1, 1, 'command "notify" needs require "enotify"')]),
    ("test-needs-require", 'if valid_notify_method "mailto:a@example.org" {}',
     [(1, 4, 'test "valid_notify_method" needs require "enotify"')]),
    ("encodeurl-needs-require", 'require "variables"; set :encodeurl "a" "b";',
     [(1, 26, 'tag :encodeurl needs require "enotify"')]),
    ("unsupported-method", NOTIFY + 'notify "xmpp:a@example.org";',
     [(2, 1, 'notify: unsupported notification method "xmpp" (lda supports mailto)')]),
    ("not-a-uri", NOTIFY + 'notify "a@example.org";',
     [(2, 1, 'notify: "a@example.org" is not a URI')]),
    ("lonely-local-part", NOTIFY + 'notify "mailto:alice";',
     [(2, 1, 'notify: invalid recipient address "alice"')]),
    ("no-recipient", NOTIFY + 'notify "mailto:?subject=x";',
     [(2, 1, "notify: the URI names no recipient")]),
    ("empty-to-field", NOTIFY + 'notify "mailto:a@example.org?to=";',
     [(2, 1, 'notify: invalid recipient address ""')]),
    ("crlf-in-subject", NOTIFY + 'notify "mailto:a@example.org?subject=a%0D%0AX-Evil:%20yes";',
     [(2, 1, "notify: a control character or line break in the subject field")]),
    ("lf-in-address", NOTIFY + 'notify "mailto:a@example.org?to=b@example.org%0ABcc:c@x";',
     [(2, 1, 'notify: invalid recipient address "b@example.org\nBcc:c@x"')]),
    ("nul-in-body", NOTIFY + 'notify "mailto:a@example.org?body=a%00b";',
     [(2, 1, "notify: a control character or line break in the body field")]),
    ("forged-field", NOTIFY + 'notify "mailto:a@example.org?Received=x";',
     [(2, 1, 'notify: the "received" field is not allowed (only to, cc, subject, body)')]),
    ("auto-submitted-field", NOTIFY + 'notify "mailto:a@example.org?auto-submitted=no";',
     [(2, 1, 'notify: the "auto-submitted" field is not allowed (only to, cc, subject, '
      'body)')]),
    ("field-without-value", NOTIFY + 'notify "mailto:a@example.org?subject";',
     [(2, 1, 'notify: "subject" is no NAME=VALUE field')]),
    ("bad-percent", NOTIFY + 'notify "mailto:a@example.org?subject=%zz";',
     [(2, 1, 'notify: invalid percent-encoding "%zz"')]),
    ("not-utf8", NOTIFY + 'notify "mailto:a@example.org?subject=caf%E9";',
     [(2, 1, "notify: a percent-encoded value is not UTF-8")]),
    ("raw-space", NOTIFY + 'notify "mailto:a b@example.org";',
     [(2, 1, "notify: ' ' must be percent-encoded in a mailto URI (set :encodeurl does it)")]),
    ("fragment", NOTIFY + 'notify "mailto:a@example.org#x";',
     [(2, 1, "notify: '#' must be percent-encoded in a mailto URI (set :encodeurl does it)")]),
    ("importance", NOTIFY + 'notify :importance "4" "mailto:a@example.org";',
     [(2, 1, 'notify: :importance must be "1", "2" or "3", not "4"')]),
    ("importance-is-a-constant", VARIABLES + 'notify :importance "${i}" "mailto:a@example.org";',
     [(2, 1, 'notify: :importance must be "1", "2" or "3", not "${i}"')]),
    ("invalid-from", NOTIFY + 'notify :from "not an address" "mailto:a@example.org";',
     [(2, 1, 'notify: invalid :from address "not an address"')]),
    ("invalid-option", NOTIFY + 'notify :options "foo" "mailto:a@example.org";',
     [(2, 1, 'notify: option "foo" is not of the form NAME=VALUE')]),
    ("capability-comparator", NOTIFY + 'if notify_method_capability :comparator "i;x"'
     ' "mailto:a@example.org" "online" "maybe" {}',
     [(2, 4, 'comparator "i;x" is not supported (i;ascii-casemap, i;octet)')]),
    ("message-is-a-string", NOTIFY + 'notify :message ["a", "b"] "mailto:a@example.org";',
     [(2, 17, ":message expects a string")]),
]


@pytest.mark.parametrize("script, expected", [pytest.param(s, e, id=i) for i, s, e in ERRORS])
def test_compile_errors(script, expected):
    with pytest.raises(SieveError) as caught:
        compile_script(script)
    assert caught.value.errors == expected


def test_compile_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "n.sieve"
    path.write_text('require "enotify";\nkeep;\n  notify "mailto:a@example.org?x-spam=no";\n')
    with pytest.raises(SieveError) as caught:
        compile_script(path)
    assert caught.value.lines(str(path)) == [
        f'{path}:3:3: notify: the "x-spam" field is not allowed (only to, cc, subject, body)']


def test_variable_uri_and_options_compile():
    compile_script(VARIABLES + 'notify :from "${f}" "${uri}";')
    compile_script(NOTIFY + 'notify :options ["a=b", "c.d-e_f=1"] "mailto:a@example.org";')
    compile_script(NOTIFY + 'if valid_notify_method "xmpp:a@example.org" {}')


# --- URIs (RFC 6068) -------------------------------------------------------------

def recipients(uri):
    return parse_uri(uri).recipients


@pytest.mark.parametrize("uri, expected", [
    ("mailto:a@example.org", [("a@example.org", "To")]),
    ("MAILTO:a@example.org", [("a@example.org", "To")]),
    ("mailto:a@example.org,b@example.org", [("a@example.org", "To"), ("b@example.org", "To")]),
    ("mailto:?to=a@example.org", [("a@example.org", "To")]),
    ("mailto:a@example.org?to=b@example.org&cc=c@example.org,%20d@example.org",
     [("a@example.org", "To"), ("b@example.org", "To"), ("c@example.org", "Cc"),
      ("d@example.org", "Cc")]),
    ("mailto:a%2Bb@example.org", [("a+b@example.org", "To")]),
    ("mailto:a@example.org?TO=A@Example.org&cc=a@EXAMPLE.org", [("a@example.org", "To")]),
    ("mailto:a@example.org?&&", [("a@example.org", "To")]),
], ids=["plain", "scheme-case", "comma", "to-field", "to-and-cc", "percent", "duplicates",
        "empty-fields"])
def test_uri_recipients(uri, expected):
    assert recipients(uri) == expected


def test_uri_subject_body_and_ignored_fields():
    mailto = parse_uri("mailto:a@example.org?subject=Caf%C3%A9%20cr%C3%A8me&body=one%0D%0Atwo"
                       "&from=evil@example.net&bcc=hidden@example.net&subject=second")
    assert (mailto.subject, mailto.body) == ("Caf\u00e9 cr\u00e8me", "one\r\ntwo")
    assert mailto.recipients == [("a@example.org", "To")]
    assert mailto.notes == ['"from" field ignored (RFC 5436 section 2.7)',
                            '"bcc" field ignored (a notification names its recipients)',
                            "second subject field ignored"]


def test_uri_recipients_are_capped():
    uri = "mailto:a@example.org?" + "&".join(f"to=u{i}@example.org" for i in range(100))
    mailto = parse_uri(uri)
    assert len(mailto.recipients) == MAX_RECIPIENTS
    assert mailto.notes[0] == (f"more than {MAX_RECIPIENTS} recipients: "
                               f"u{MAX_RECIPIENTS - 1}@example.org dropped")


@pytest.mark.parametrize("uri, reason", [
    ("mailto:a@example.org?to=b@example.org%0D%0AX-Evil:%201", "invalid recipient address"),
    ("mailto:a@example.org\r\nX-Evil: 1", "must be percent-encoded"),
    ("mailto:a@example.org?cc=b@example.org%0D%0A", "invalid recipient address"),
    ("mailto:a@example.org?subject=%0Ahello", "line break in the subject"),
    ("mailto:a@example.org?subject=a%7Fb", "control character"),
    ("mailto:caf\u00e9@example.org", "must be percent-encoded"),
    ("mailto:%22a,b%22@example.org", "invalid recipient address"),
    ("mailto:Alice%20%3Ca@example.org%3E", "invalid recipient address"),
    ("mailto:a@example.org?=x", "is no NAME=VALUE field"),
    ("mailto:a@example.org?subject=%4", "invalid percent-encoding"),
    ("mailto:a@example.org?message-id=%3Cx@y%3E", 'the "message-id" field is not allowed'),
    ("mailto:a@example.org?body=" + "x" * MAX_URI_LENGTH, "longer than"),
    ("tel:+123", 'unsupported notification method "tel"'),
    (":a@example.org", "is not a URI"),
], ids=["crlf-in-to", "raw-crlf", "trailing-crlf-in-cc", "lf-in-subject", "del-in-subject", "raw-utf8",
        "quoted-comma", "name-addr", "empty-name", "short-percent", "message-id", "too-long",
        "other-scheme", "no-scheme"])
def test_uri_refused(uri, reason):
    with pytest.raises(BadUri, match=reason.replace("(", r"\(")):
        parse_uri(uri)


def test_encode_url():
    assert encode_url("a b&c=d/\u00e9?~-._*+") == "a%20b%26c%3Dd%2F%C3%A9%3F~-._%2A%2B"
    assert parse_uri("mailto:a@example.org?subject=" + encode_url("x&y=\u00e9\n"[:-1])
                     ).subject == "x&y=\u00e9"


# --- the notification ------------------------------------------------------------

def test_notification_message():
    [action], outcome = notifications(NOTIFY + 'notify "mailto:alice@example.org";')
    assert outcome.all_actions()[-1] == Keep(implicit=True)  # notify keeps (RFC 5435)
    assert action.to == "alice@example.org"
    parsed, body = fields_of(action)
    assert parsed["From"] == RECIPIENT
    assert parsed["To"] == "alice@example.org"
    assert parsed["Subject"] == "Notification: I have a present for you"
    assert parsed["Auto-Submitted"] == f'auto-notified; owner-email="{RECIPIENT}"'
    assert parsed["Precedence"] == "bulk" and parsed["X-Priority"] is None
    assert parsed["Message-ID"].endswith("@acme.example.com>")
    assert body == (f"A new message arrived for {RECIPIENT}.\n\n"
                    "From: Coyote <coyote@desert.example.org>\n"
                    "Subject: I have a present for you\n"
                    "Date: Tue, 24 Nov 2026 10:00:00 +0000\n")
    assert outcome.describe() == [
        'notify mailto:alice@example.org (subject "Notification: I have a present for you")',
        "keep (implicit)"]


def test_notification_tags_and_uri_fields():
    script = (VARIABLES + 'if header :matches "subject" "I have *" {\n'
              '  notify :from "Road Runner <rr@acme.example.com>" :importance "1"\n'
              '    :message "Caf\u00e9: ${1}" :options "x=y"\n'
              '    "mailto:alice@example.org?cc=bob@example.org&subject=unused'
              '&body=Look%0D%0Anow";\n'
              '}\n')
    actions, outcome = notifications(script)
    assert [a.to for a in actions] == ["alice@example.org", "bob@example.org"]
    assert actions[0].reply_bytes == actions[1].reply_bytes
    parsed, body = fields_of(actions[0])
    assert parsed["From"] == "Road Runner <rr@acme.example.com>"
    assert (parsed["To"], parsed["Cc"]) == ("alice@example.org", "bob@example.org")
    assert parsed["Subject"] == "=?utf-8?b?Q2Fmw6k6IGEgcHJlc2VudCBmb3IgeW91?="
    assert (parsed["X-Priority"], parsed["Importance"]) == ("1 (Highest)", "high")
    assert body == "Look\nnow\n"
    assert outcome.log == ["notify: mailto alice@example.org, bob@example.org"]


def test_uri_subject_when_no_message_and_invalid_runtime_from():
    [action], outcome = notifications(
        VARIABLES + 'set "f" "nobody";\n'
        'notify :from "${f}" "mailto:a@example.org?subject=From%20the%20URI";')
    parsed, _ = fields_of(action)
    assert parsed["Subject"] == "From the URI" and parsed["From"] == RECIPIENT
    assert outcome.log[0] == "notify: ignoring invalid :from 'nobody'"


@pytest.mark.parametrize("field", [
    "Auto-Submitted: auto-replied", "Auto-Submitted: auto-generated",
    'Auto-Submitted: auto-notified; owner-email="x@y.org"'])
def test_no_notification_for_an_automatic_message(field):
    actions, outcome = notifications(NOTIFY + 'notify "mailto:a@example.org";',
                                     msg=with_headers(field))
    assert actions == [] and outcome.describe() == KEEP
    assert outcome.log == ["notify: no notification for a message with " + field]


def test_auto_submitted_no_is_notified():
    actions, _ = notifications(NOTIFY + 'notify "mailto:a@example.org";',
                               msg=with_headers("Auto-Submitted: No"))
    assert len(actions) == 1


def test_one_notification_per_address_and_discard_stays():
    actions, outcome = notifications(
        NOTIFY + 'notify :message "first" "mailto:a@example.org";\n'
        'notify :message "second" "mailto:A@Example.org?to=b@example.org";\ndiscard;\n')
    assert [(a.to, a.subject) for a in actions] == [("a@example.org", "first"),
                                                    ("b@example.org", "second")]
    assert outcome.actions[-1] == Discard() and not outcome.implicit_keep
    assert "notify: A@Example.org notified already: sent once" in outcome.log


def test_notifications_count_towards_the_action_limit():
    script = NOTIFY + "keep;\n" + "".join(
        f'notify "mailto:a{i}@example.org?' + "&".join(
            f"to=b{i}.{j}@example.org" for j in range(7)) + '";\n' for i in range(5))
    outcome = outcome_of(script)
    assert outcome.errors == ["line 6: more than 32 actions"]
    assert outcome.describe() == KEEP


@pytest.mark.parametrize("script, error", [
    ('set "u" "mailto:${x}bob"; notify "${u}";',
     'line 2: notify: invalid recipient address "bob"'),
    ('set "u" "xmpp:bob@example.org"; notify "${u}";',
     'line 2: notify: unsupported notification method "xmpp" (lda supports mailto)'),
    ('set "s" "a\r\nb"; set :encodeurl "e" "${s}"; notify "mailto:a@example.org?subject=${e}";',
     "line 3: notify: a control character or line break in the subject field"),
], ids=["invalid-address", "unsupported-method", "crlf-in-subject"])
def test_runtime_invalid_uri_keeps_only(script, error):
    outcome = outcome_of('require ["enotify", "variables", "fileinto"];\n'
                         + script + ' fileinto "x";')
    assert outcome.errors == [error] and outcome.describe() == KEEP


# --- the tests -------------------------------------------------------------------

@pytest.mark.parametrize("test, expected", [
    ('valid_notify_method ["mailto:a@example.org", "mailto:?to=b@example.org"]', True),
    ('valid_notify_method ["mailto:a@example.org", "xmpp:b@example.org"]', False),
    ('valid_notify_method "mailto:a"', False),
    ('valid_notify_method "mailto:a@example.org?subject=a%0Ab"', False),
    ('notify_method_capability "mailto:a@example.org" "Online" "maybe"', True),
    ('notify_method_capability "mailto:a@example.org" "online" "yes"', False),
    ('notify_method_capability :matches "mailto:a@example.org" "online" "m*"', True),
    ('notify_method_capability :comparator "i;octet" "mailto:a@example.org" "online" "MAYBE"',
     False),
    ('notify_method_capability "mailto:a@example.org" "other" "maybe"', False),
    ('notify_method_capability "xmpp:a@example.org" "online" "maybe"', False),
    ('notify_method_capability "mailto:a" "online" "maybe"', False),
], ids=["valid", "one-unsupported", "invalid", "crlf", "online-maybe", "online-yes",
        "matches", "octet", "unknown-capability", "unsupported-uri", "invalid-uri"])
def test_method_tests(test, expected):
    outcome = outcome_of(NOTIFY + f"if {test} {{ discard; }}")
    assert outcome.errors == []
    assert (outcome.describe() == ["discard"]) is expected


# --- set :encodeurl (RFC 5435 section 7) -----------------------------------------

@pytest.mark.parametrize("modifiers, value, expected", [
    (":encodeurl", "a b&c=d/\u00e9", "a%20b%26c%3Dd%2F%C3%A9"),
    (":encodeurl :upper", "x y", "X%20Y"),
    (":length :encodeurl", "a b", "5"),
    (":encodeurl :quotewildcard", "a*b", "a%5C%2Ab"),
], ids=["plain", "upper-first", "length-last", "quotewildcard-first"])
def test_encodeurl_modifier(modifiers, value, expected):
    outcome = outcome_of(VARIABLES + f'set {modifiers} "v" "{value}";\n'
                         'notify :message "${v}" "mailto:a@example.org";')
    assert outcome.actions[0].subject == expected


# --- lda sieve test (the dry run) -------------------------------------------------

def test_dry_run_shows_the_notification(tmp_path):
    path = tmp_path / "n.sieve"
    path.write_text(NOTIFY + 'notify :message "New mail" "mailto:a@example.org";\n')
    lines, notes, status = dry_run(path, io.BytesIO(PLAIN.encode()))
    assert status == 0
    assert lines == ['notify mailto:a@example.org (subject "New mail")', "keep (implicit)"]
    assert notes[-1] == f"{path}: notify: mailto a@example.org"


# --- a real delivery ---------------------------------------------------------------

def test_delivery_sends_each_notification_once_from_the_null_sender(site):
    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text(
        NOTIFY + 'notify :importance "3" "mailto:phone@sms.example.net?cc=desk@example.net";\n')
    done = site.deliver(message(message_id="<n1@x>"), "alice@example.org", check=0)
    site.deliver(message(message_id="<n1@x>"), "alice@example.org", check=0)  # a resend
    sent = site.sent()
    assert sorted(args[-1] for args, _ in sent) == ["desk@example.net", "phone@sms.example.net"]
    for args, body in sent:
        assert args[args.index("-f") + 1] == "<>"  # RFC 5436 section 2.7
        parsed = email.message_from_bytes(body)
        assert parsed["Auto-Submitted"] == 'auto-notified; owner-email="alice@example.org"'
        assert (parsed["From"], parsed["To"], parsed["Cc"]) == (
            "alice@example.org", "phone@sms.example.net", "desk@example.net")
        assert parsed["Subject"] == "Notification: test"
    assert len(maildir_files(box)) == 1  # the notification kept the message
    assert b"notification sent with" in done.stderr
    site.deliver(message(message_id="<n2@x>"), "alice@example.org", check=0)
    assert len(site.sent()) == 4


def test_delivery_does_not_notify_about_a_notification(site):
    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text(NOTIFY + 'notify "mailto:phone@sms.example.net";\n')
    site.deliver(message(extra=b'Auto-Submitted: auto-notified; owner-email="b@x"\n'),
                 "alice@example.org", check=0)
    assert site.sent() == [] and len(maildir_files(box)) == 1


def test_a_notification_that_cannot_be_sent_is_logged_and_the_message_kept(make_site):
    site = make_site(sendmail=["/bin/false"])
    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text(NOTIFY + 'notify "mailto:phone@sms.example.net";\n')
    done = site.deliver(message(), "alice@example.org", check=0)
    assert len(maildir_files(box)) == 1
    assert b"status=bounced (notification not sent: /bin/false exited 1" in done.stderr


def test_scripts_in_sequence_notify_each_address_once():
    from lda.deliver.filtering import sequence_outcome
    from lda.sieve import Outcome

    first = Outcome([Notify("a@example.org", b"one")])
    second = Outcome([Notify("A@example.org", b"two"), Notify("b@example.org", b"three")])
    merged = sequence_outcome([first, second])
    assert merged.all_actions() == [Notify("a@example.org", b"one"),
                                    Notify("b@example.org", b"three"), Keep(implicit=True)]

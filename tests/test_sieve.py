"""lda.sieve: scripts x messages -> actions, compile and runtime errors, the
compiled-script cache, and `lda sieve check` / `lda sieve test`."""

import io
import re
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lda.message import Reader
from lda.sieve import (Envelope, FileInto, Keep, MemoryState, SieveError, Vacation,
                       compile_script, evaluate, load_script, run)
from lda.sieve.actions import UnsafeFolder, check_folder, maildir_folder
from lda.sieve.astjson import dumps, loads
from lda.sieve.interpreter import Execution
from lda.sieve.match import glob

PLAIN = """\
From: Coyote <coyote@desert.example.org>
To: Road Runner <roadrunner@acme.example.com>
Cc: wile+lists@example.org
Subject: I have a present for you
Message-ID: <present@desert.example.org>
Date: Tue, 24 Nov 2026 10:00:00 +0000
X-Caffeine: C8H10N4O2

Beep beep.
"""
LIST = """\
From: Guido <guido@python.example.org>
To: python-dev@python.example.org
Subject: [python-dev] PEP 999 accepted
List-Id: Python development <python-dev.python.example.org>
Precedence: list
Message-ID: <pep999@python.example.org>

Yay.
"""
SPAM = """\
From: money@spam.example.net
To: roadrunner@acme.example.com
Subject: MAKE MONEY FAST
X-Spam-Score: ******
Message-ID: <spam1@spam.example.net>

Buy.
"""
ENCODED = """\
From: =?utf-8?q?Andr=C3=A9?= <andre@example.fr>
To: roadrunner@acme.example.com
Subject: =?utf-8?b?Q2Fmw6kgY3LDqG1l?=
Subject-Folded: a long
 folded value
Reply-To: <>
Resent-To: undisclosed-recipients:;
Message-ID: <enc@example.fr>

Bonjour.
"""
MESSAGES = {"plain": PLAIN, "list": LIST, "spam": SPAM, "encoded": ENCODED}
SENDERS = {"plain": "coyote@desert.example.org", "list": "python-dev-bounces@python.example.org",
           "spam": "money@spam.example.net", "encoded": "andre@example.fr"}
RECIPIENT = "roadrunner@acme.example.com"


def parse(text, size=None):
    """The message as the delivery path reads it (lda.message.Reader)."""
    reader = Reader(io.BytesIO(text.encode("utf-8")))
    for _ in reader.chunks():
        pass
    reader.info()
    if size is not None:
        reader.size = size
    return reader


def with_headers(*lines, base=PLAIN):
    """PLAIN with `lines` replacing (or adding) header fields."""
    names = {line.split(":", 1)[0].lower() for line in lines}
    head, body = base.split("\n\n", 1)
    kept = [f for f in head.split("\n") if f.split(":", 1)[0].lower() not in names]
    return "\n".join(kept + list(lines)) + "\n\n" + body


def outcome_of(script, msg="plain", sender=None, to=RECIPIENT, state=None, size=None,
               original=None):
    text = MESSAGES.get(msg, msg)
    sender = SENDERS.get(msg, "coyote@desert.example.org") if sender is None else sender
    return run(compile_script(script), parse(text, size), Envelope(sender, to, original),
               state)


def actions(script, **kwargs):
    outcome = outcome_of(script, **kwargs)
    assert outcome.errors == []
    return outcome.describe()


def variables(script, msg="plain"):
    """The variables after running `script` (white-box: Execution)."""
    execution = Execution(compile_script(script), parse(MESSAGES.get(msg, msg)),
                          Envelope(SENDERS["plain"], RECIPIENT), MemoryState())
    execution.block(execution.script.commands)
    return dict(execution.variables, **{str(i): v for i, v in
                                         enumerate(execution.match_values)})


def case(case_id, script, expected, **kwargs):
    return pytest.param(script, kwargs, expected, id=case_id)


KEEP = ["keep (implicit)"]
DISCARD = ["discard"]

# --- commands, tests, comparators and match types (RFC 5228) ---------------

BASE = [
    case("empty-script-is-implicit-keep", "", KEEP),
    case("comments-only-is-implicit-keep", "# nothing\n/* at all */\n", KEEP),
    case("keep", "keep;", ["keep"]),
    case("comparator-capabilities-may-be-required",
         'require ["comparator-i;octet", "comparator-i;ascii-casemap"]; keep;', ["keep"]),
    case("keep-twice-stores-once", "keep; keep;", ["keep"]),
    case("discard-cancels-implicit-keep", "discard;", DISCARD),
    case("discard-leaves-explicit-keep", "keep; discard;", ["keep", "discard"]),
    case("stop-ends-the-script", "stop; discard;", KEEP),
    case("stop-keeps-earlier-actions", 'redirect "a@example.org"; stop; keep;',
         ['redirect "a@example.org"']),
    case("redirect-cancels-implicit-keep", 'redirect "bart@example.com";',
         ['redirect "bart@example.com"']),
    case("redirect-same-address-once", 'redirect "a@example.org"; redirect "A@example.org";',
         ['redirect "a@example.org"']),
    case("identifiers-and-tags-any-case", 'IF HEADER :CONTAINS "subject" "present" {DISCARD;}',
         DISCARD),
    case("if-true", "if true { discard; }", DISCARD),
    case("if-false-else", "if false { discard; } else { keep; }", ["keep"]),
    case("elsif-chain-first-true-wins",
         'if false {discard;} elsif true {keep;} elsif true {redirect "x@example.org";}',
         ["keep"]),
    case("nested-if", "if true { if false { discard; } else { keep; } }", ["keep"]),
    case("not", "if not false { discard; }", DISCARD),
    case("allof-needs-all", "if allof (true, false) { discard; }", KEEP),
    case("allof-all-true", "if allof (true, true, not false) { discard; }", DISCARD),
    case("anyof-needs-one", "if anyof (false, true) { discard; }", DISCARD),
    case("anyof-none", "if anyof (false, false) { discard; }", KEEP),
    case("header-is", 'if header :is "subject" "I have a present for you" {discard;}', DISCARD),
    case("header-is-whole-value", 'if header :is "subject" "present" {discard;}', KEEP),
    case("header-contains-folds-ascii-case",
         'if header :contains "SUBJECT" "PRESENT" {discard;}', DISCARD),
    case("header-octet-is-case-sensitive",
         'if header :contains :comparator "i;octet" "subject" "PRESENT" {discard;}', KEEP),
    case("header-octet-exact", 'if header :is :comparator "i;octet" "x-caffeine" "C8H10N4O2"'
         " {discard;}", DISCARD),
    case("header-explicit-ascii-casemap",
         'if header :is :comparator "i;ascii-casemap" "x-caffeine" "c8h10n4o2" {discard;}',
         DISCARD),
    case("header-matches-star-and-question",
         'if header :matches "subject" "I have a ?resent*" {discard;}', DISCARD),
    case("header-matches-whole-value-only", 'if header :matches "subject" "present*" {discard;}',
         KEEP),
    case("header-matches-escaped-star", r'if header :matches "x-spam-score" "\\*\\*\\*\\*\\*\\*"'
         " {discard;}", DISCARD, msg="spam"),
    case("header-matches-escaped-star-counts",
         r'if header :matches "x-spam-score" "\\*\\*\\*\\*\\*" {discard;}', KEEP, msg="spam"),
    case("header-matches-escaped-star-then-wildcard",
         r'if header :matches "x-spam-score" "\\*\\**" {discard;}', DISCARD, msg="spam"),
    case("header-name-and-key-lists",
         'if header :contains ["to", "cc"] ["nobody", "wile"] {discard;}', DISCARD),
    case("header-absent-never-matches", 'if header :contains "x-absent" "" {discard;}', KEEP),
    case("header-rfc2047-decoded", 'if header :is "subject" "Café crème" {discard;}', DISCARD,
         msg="encoded"),
    case("header-casemap-folds-only-ascii", 'if header :is "subject" "CAFÉ CRÈME" {discard;}',
         KEEP, msg="encoded"),
    case("header-casemap-ascii-part", 'if header :is "subject" "CAFé CRèME" {discard;}',
         DISCARD, msg="encoded"),
    case("header-unfolded", 'if header :is "subject-folded" "a long folded value" {discard;}',
         DISCARD, msg="encoded"),
    case("address-all", 'if address :all :is "from" "coyote@desert.example.org" {discard;}',
         DISCARD),
    case("address-default-part-is-all", 'if address :is "from" "coyote@desert.example.org"'
         " {discard;}", DISCARD),
    case("address-localpart", 'if address :localpart :is "from" "coyote" {discard;}', DISCARD),
    case("address-domain", 'if address :domain :is "to" "ACME.example.com" {discard;}',
         DISCARD),
    case("address-skips-display-name", 'if address :contains "to" " " {discard;}', KEEP),
    case("address-rfc2047-display-name", 'if address :is "from" "andre@example.fr" {discard;}',
         DISCARD, msg="encoded"),
    case("address-null-is-empty", 'if address :is "reply-to" "" {discard;}', DISCARD,
         msg="encoded"),
    case("address-null-has-no-localpart",
         'if address :localpart :matches "reply-to" "*" {discard;}', KEEP, msg="encoded"),
    case("address-empty-group-has-none", 'if address :matches "resent-to" "*" {discard;}',
         KEEP, msg="encoded"),
    case("exists-one", 'if exists "x-caffeine" {discard;}', DISCARD),
    case("exists-all-must-exist", 'if exists ["From", "X-Absent"] {discard;}', KEEP),
    case("size-over", "if size :over 100 {discard;}", DISCARD),
    case("size-under", "if size :under 100 {discard;}", KEEP),
    case("size-k-suffix", "if size :over 1K {discard;}", KEEP),
    case("size-equal-is-neither-over", "if size :over 1K {discard;}", KEEP, size=1024),
    case("size-equal-is-neither-under", "if size :under 1k {discard;}", KEEP, size=1024),
    case("size-m-suffix", "if size :over 1M {discard;}", DISCARD, size=2 << 20),
    case("size-g-suffix", "if size :under 1G {discard;}", DISCARD, size=2 << 20),
]

EXTENSIONS = [
    case("fileinto", 'require "fileinto"; fileinto "Lists";', ['fileinto "Lists"']),
    case("fileinto-hierarchy", 'require "fileinto"; fileinto "Lists.Python";',
         ['fileinto "Lists.Python"']),
    case("fileinto-inbox-prefix-dropped", 'require "fileinto"; fileinto "INBOX.Lists";',
         ['fileinto "Lists"']),
    case("fileinto-same-folder-once", 'require "fileinto"; fileinto "A"; fileinto "A";',
         ['fileinto "A"']),
    case("fileinto-inbox-is-keep", 'require "fileinto"; keep; fileinto "inbox";', ["keep"]),
    case("fileinto-create", 'require ["fileinto", "mailbox"]; fileinto :create "New.Sub";',
         ['fileinto "New.Sub" :create']),
    case("fileinto-copy-keeps-implicit-keep",
         'require ["fileinto", "copy"]; fileinto :copy "Archive";',
         ['fileinto "Archive" :copy', "keep (implicit)"]),
    case("redirect-copy-keeps-implicit-keep",
         'require "copy"; redirect :copy "bart@example.com";',
         ['redirect "bart@example.com" :copy', "keep (implicit)"]),
    case("envelope-from", 'require "envelope"; if envelope :is "from" "tim@example.com"'
         " {discard;}", DISCARD, sender="tim@example.com"),
    case("envelope-to-domain", 'require "envelope"; if envelope :domain :is "to"'
         ' "acme.example.com" {discard;}', DISCARD),
    case("envelope-to-localpart", 'require "envelope"; if envelope :localpart :is "to"'
         ' "roadrunner" {discard;}', DISCARD),
    case("envelope-null-sender-all-is-empty", 'require "envelope"; if envelope :is "from" ""'
         " {discard;}", DISCARD, sender=""),
    case("envelope-null-sender-no-domain", 'require "envelope"; if envelope :domain :matches'
         ' "from" "*" {discard;}', KEEP, sender=""),
    case("envelope-part-any-case", 'require "envelope"; if envelope :is "FROM" "tim@example.com"'
         " {discard;}", DISCARD, sender="<tim@example.com>"),
    case("envelope-detail", 'require ["envelope", "subaddress"]; if envelope :detail "to"'
         ' "birds" {discard;}', DISCARD, to="roadrunner+birds@acme.example.com"),
    case("envelope-user", 'require ["envelope", "subaddress"]; if envelope :user "to"'
         ' "roadrunner" {discard;}', DISCARD, to="roadrunner+birds@acme.example.com"),
    case("envelope-no-separator-no-detail", 'require ["envelope", "subaddress"];'
         ' if envelope :detail :matches "to" "*" {discard;}', KEEP),
    case("envelope-empty-detail", 'require ["envelope", "subaddress"];'
         ' if envelope :detail :is "to" "" {discard;}', DISCARD,
         to="roadrunner+@acme.example.com"),
    case("address-detail", 'require "subaddress"; if address :detail "cc" "lists" {discard;}',
         DISCARD),
    case("address-user", 'require "subaddress"; if address :user :is "cc" "wile" {discard;}',
         DISCARD),
    case("address-user-without-detail-is-localpart",
         'require "subaddress"; if address :user "to" "roadrunner" {discard;}', DISCARD),
    case("setflag-then-keep", r'require "imap4flags"; setflag "\\Seen"; keep;',
         ['keep :flags "\\Seen"']),
    case("implicit-keep-carries-flags", r'require "imap4flags"; addflag "\\Flagged";',
         ['keep (implicit) :flags "\\Flagged"']),
    case("flags-add-remove-dedupe",
         r'require "imap4flags"; setflag ["\\Seen", "$Work"]; addflag "\\flagged \\seen";'
         ' removeflag "$work";', ['keep (implicit) :flags "\\Seen \\flagged"']),
    case("flags-argument-wins",
         r'require ["imap4flags", "fileinto"]; setflag "\\Seen"; fileinto :flags "\\Deleted"'
         ' "Trash";', ['fileinto "Trash" :flags "\\Deleted"']),
    case("fileinto-takes-current-flags",
         r'require ["imap4flags", "fileinto"]; setflag "\\Seen"; fileinto "A"; setflag "";'
         ' fileinto "B";', ['fileinto "A" :flags "\\Seen"', 'fileinto "B"']),
    case("hasflag-list", 'require "imap4flags"; setflag "A B"; if hasflag ["b", "A"] {discard;}',
         DISCARD),
    case("hasflag-is-string", 'require "imap4flags"; setflag "A B"; if hasflag :is "b A"'
         " {discard;}", DISCARD),
    case("hasflag-absent", 'require "imap4flags"; setflag "A"; if hasflag "B" {discard;}',
         ['keep (implicit) :flags "A"']),
    case("hasflag-empty-ignored", 'require "imap4flags"; setflag ""; if hasflag "" {discard;}',
         KEEP),
    case("flags-in-a-variable",
         r'require ["imap4flags", "variables", "fileinto"]; setflag "fv" "\\Flagged";'
         ' fileinto :flags "${fv}" "Boss";', ['fileinto "Boss" :flags "\\Flagged"']),
    case("hasflag-variables", 'require ["imap4flags", "variables"]; setflag "A" "Aflag";'
         ' setflag "B" "Bflag"; if hasflag ["a", "b"] "Bflag" {discard;}', DISCARD),
    case("variables-folder", 'require ["variables", "fileinto"]; set "Folder" "Lists";'
         ' fileinto "${folder}.${FOLDER}";', ['fileinto "Lists.Lists"']),
    case("variables-string-test", 'require "variables"; set "state" "${state} pending";'
         ' if string :matches " ${state} " "* pending *" {discard;}', DISCARD),
    case("variables-match-groups-to-folder",
         'require ["variables", "fileinto"];'
         ' if header :matches "List-Id" "*<*.python.example.org>" {fileinto "Lists.${2}";}',
         ['fileinto "Lists.python-dev"'], msg="list"),
    case("variables-need-require-to-expand", 'require "fileinto"; fileinto "${x}";',
         ['fileinto "${x}"']),
]


@pytest.mark.parametrize("script, kwargs, expected", BASE + EXTENSIONS)
def test_actions(script, kwargs, expected):
    assert actions(script, **kwargs) == expected


# --- examples from the RFCs -------------------------------------------------

RFC5228_3_1 = """\
if header :contains ["From"] ["coyote"] {
    redirect "acm@example.com";
} elsif header :contains "Subject" "$$$" {
    redirect "postmaster@example.com";
} else {
    redirect "field@example.com";
}
"""
RFC5228_9 = """\
#
# Example Sieve Filter
# Declare any optional features or extension used by the script
#
require ["fileinto"];

#
# Handle messages from known mailing lists
# Move messages from IETF filter discussion list to filter mailbox
#
if header :is "Sender" "owner-ietf-mta-filters@imc.org"
        {
        fileinto "filter";  # move to "filter" mailbox
        }
#
# Keep all messages to or from people in my company
#
elsif address :DOMAIN :is ["From", "To"] "example.com"
        {
        keep;               # keep in "In" mailbox
        }

#
# Try and catch unsolicited email.  If a message is not to me,
# or it contains a subject known to be spam, file it away.
#
elsif anyof (NOT address :all :contains
               ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject"
               ["*make*money*fast*", "*university*dipl*mas*"])
        {
        fileinto "spam";   # move to "spam" mailbox
        }
else
        {
        # Move all other (non-company) mail to "personal"
        # mailbox.
        fileinto "personal";
        }
"""
RFC5229_LISTS = """\
require ["fileinto", "variables"];
if header :matches "List-ID" "*<*.*.example.org>" {
    fileinto "INBOX.lists.${2}"; stop;
}
# Imagine the header
# Subject: [acme-users] [fwd] version 1.0 is out
if header :matches "Subject" "[*] *" {
    # ${1} will hold "acme-users",
    # ${2} will hold "[fwd] version 1.0 is out"
    fileinto "INBOX.lists.${1}"; stop;
}
# Imagine the header
# To: coyote@ACME.Example.COM
if address :matches ["To", "Cc"] ["coyote@**.com",
        "wile@**.com"] {
    # ${0} is the matching address
    # ${1} is always the empty string
    # ${2} is part of the domain name ("ACME.Example")
    fileinto "INBOX.business.${2}"; stop;
} else {
    # Control wouldn't reach this block if any match was
    # successful, so no match variables are set at this
    # point.
}
if anyof (true, address :domain :matches "To" "*.com") {
    # The second test is never evaluated, so there are
    # still no match variables set.
    stop;
}
"""
RFC5232_STYLE = r"""
require ["imap4flags", "fileinto", "variables"];
if header :contains "from" "boss@frobnitzm.example.edu" {
    setflag "flagvar" "\\Flagged";
    fileinto :flags "${flagvar}" "INBOX.From Boss";
}
if header :contains "subject" "Make money" {
    addflag "\\Deleted";
}
"""
RFC7352_ALERT = r"""
require ["duplicate", "variables", "imap4flags", "fileinto"];
if header :matches "subject" "ALERT: *" {
    if duplicate :seconds 60 :uniqueid "${1}" {
        setflag "\\seen";
    }
    fileinto "Alerts";
}
"""
DOLLARS = with_headers("From: someone@example.net", "Subject: $$$ for you")
COMPANY = with_headers("From: alice@example.com")
PERSONAL = with_headers("From: friend@example.net", "To: x@example.net",
                        "Bcc: me@example.com")
DIPLOMAS = with_headers("From: u@example.net", "To: x@example.net", "Bcc: me@example.com",
                        "Subject: Cheap university diplomas")
FILTER_LIST = with_headers("Sender: owner-ietf-mta-filters@imc.org")
ACME_LIST = with_headers("List-ID: ACME users <acme-users.lists.example.org>")
ACME_SUBJECT = with_headers("Subject: [acme-users] [fwd] version 1.0 is out")
ACME_TO = with_headers("To: coyote@ACME.Example.COM", "Subject: hi")
BOSS = with_headers("From: The Boss <boss@frobnitzm.example.edu>", "Subject: Make money")
ALERT = with_headers("Subject: ALERT: disk full")

RFC_EXAMPLES = [
    case("rfc5228-2.3-hash-comment", "if size :over 100k { # this is a comment\n"
         "    discard;\n}\n", DISCARD, size=200 << 10),
    case("rfc5228-2.3-bracketed-comment", "if size :over 100K { /* this is a comment\n"
         "    this is still a comment */ discard /* this is a comment\n    */ ;\n}\n",
         DISCARD, size=200 << 10),
    case("rfc5228-2.7.3-octet-matches", 'if header :contains :comparator "i;octet" "Subject"'
         ' "MAKE MONEY FAST" {\n discard;\n}', DISCARD, msg="spam"),
    case("rfc5228-2.7.3-octet-not-other-case", 'if header :contains :comparator "i;octet"'
         ' "Subject" "MAKE MONEY FAST" {\n discard;\n}', KEEP,
         msg=with_headers("Subject: Make money fast")),
    case("rfc5228-3.1-if", RFC5228_3_1, ['redirect "acm@example.com"']),
    case("rfc5228-3.1-elsif", RFC5228_3_1, ['redirect "postmaster@example.com"'], msg=DOLLARS),
    case("rfc5228-3.1-else", RFC5228_3_1, ['redirect "field@example.com"'], msg="spam"),
    case("rfc5228-3.2-two-requires", 'require "fileinto";\nrequire "envelope";\n'
         'if envelope :is "to" "roadrunner@acme.example.com" { fileinto "birds"; }',
         ['fileinto "birds"']),
    case("rfc5228-4.1-fileinto", 'require "fileinto";\nif header :contains ["from"] "coyote"'
         ' {\n   fileinto "INBOX.harassment";\n}', ['fileinto "harassment"']),
    case("rfc5228-4.2-redirect", 'redirect "bart@example.com";', ['redirect "bart@example.com"']),
    case("rfc5228-4.3-keep-small", "if size :under 1M { keep; } else { discard; }", ["keep"]),
    case("rfc5228-4.3-discard-big", "if size :under 1M { keep; } else { discard; }", DISCARD,
         size=2 << 20),
    case("rfc5228-4.4-discard", 'if header :contains ["from"] ["idiot@example.com"] {\n'
         "   discard;\n}", DISCARD, msg=with_headers("From: The Idiot <idiot@example.com>")),
    case("rfc5228-5.1-address", 'if address :is :all "from" "tim@example.com" {\n discard;\n}',
         DISCARD, msg=with_headers("From: Tim <tim@example.com>")),
    case("rfc5228-5.4-envelope", 'require "envelope";\nif envelope :all :is "from"'
         ' "tim@example.com" {\n discard;\n}', DISCARD, sender="tim@example.com"),
    case("rfc5228-5.5-exists", 'if not exists ["From","Date"] {\n discard;\n}', KEEP),
    case("rfc5228-5.5-exists-missing", 'if not exists ["From","Date"] {\n discard;\n}', DISCARD,
         msg="spam"),
    case("rfc5228-5.9-size", "if size :over 500K { discard; }", DISCARD, size=600 << 10),
    case("rfc5228-9-filter-list", RFC5228_9, ['fileinto "filter"'], msg=FILTER_LIST),
    case("rfc5228-9-company", RFC5228_9, ["keep"], msg=COMPANY),
    case("rfc5228-9-not-to-me", RFC5228_9, ['fileinto "spam"']),
    case("rfc5228-9-spam-subject", RFC5228_9, ['fileinto "spam"'], msg=DIPLOMAS),
    case("rfc5228-9-personal", RFC5228_9, ['fileinto "personal"'], msg=PERSONAL),
    case("rfc5229-3.2-list-id", RFC5229_LISTS, ['fileinto "lists.acme-users"'], msg=ACME_LIST),
    case("rfc5229-3.2-subject", RFC5229_LISTS, ['fileinto "lists.acme-users"'],
         msg=ACME_SUBJECT),
    case("rfc5229-3.2-address", RFC5229_LISTS, ['fileinto "business.ACME.Example"'],
         msg=ACME_TO),
    case("rfc5229-3.2-no-match", RFC5229_LISTS, KEEP, msg="spam"),
    case("rfc5232-style-boss", RFC5232_STYLE,
         ['fileinto "From Boss" :flags "\\Flagged"'], msg=BOSS),
    case("rfc5232-style-make-money", RFC5232_STYLE, ['keep (implicit) :flags "\\Deleted"'],
         msg=with_headers("Subject: Make money fast")),
    case("rfc5230-4-cyrus", 'require "vacation";\nif header :contains "subject" "cyrus" {\n'
         '    vacation "I\'m out -- send mail to cyrus-bugs";\n} else {\n'
         '    vacation "I\'m out -- call me at +1 304 555 0123";\n}',
         ['vacation to coyote@desert.example.org (subject "Auto: I have a present for you")',
          "keep (implicit)"]),
    case("rfc5230-4.3-subject-variable", 'require ["vacation", "variables"];\n'
         'if header :matches "subject" "*" {\n'
         '    vacation :subject "Automatic response to: ${1}" "I\'m away";\n}',
         ['vacation to coyote@desert.example.org (subject "Automatic response to: I have a '
          'present for you")', "keep (implicit)"]),
    case("rfc7352-3.1-first-alert", RFC7352_ALERT, ['fileinto "Alerts"'], msg=ALERT),
]


@pytest.mark.parametrize("script, kwargs, expected", RFC_EXAMPLES)
def test_rfc_examples(script, kwargs, expected):
    assert actions(script, **kwargs) == expected


def test_rfc7352_duplicate_into_trash_slash_is_a_runtime_error_so_it_is_kept():
    """RFC 7352's first example files into "Trash/Duplicate": "/" is not our
    hierarchy separator, so a duplicate is kept instead of lost."""
    script = ('require ["duplicate", "fileinto", "mailbox"];\n'
              'if duplicate {\n  fileinto :create "${x}Trash/Duplicate";\n}')
    with pytest.raises(SieveError):  # constant folder names are checked at compile time
        compile_script(script.replace("${x}", ""))
    state = MemoryState()
    state.duplicates['"" <present@desert.example.org>'] = state.now() + 60
    outcome = outcome_of(script.replace('"duplicate",', '"duplicate", "variables",'),
                         state=state)
    assert outcome.describe() == KEEP
    assert outcome.errors == ['line 3: fileinto: "/" in folder name "Trash/Duplicate" '
                              '(the hierarchy separator is ".")']


def test_rfc7352_alert_seen_within_the_minute_gets_the_seen_flag():
    now = [1000.0]
    state = MemoryState(now=lambda: now[0])
    first = outcome_of(RFC7352_ALERT, msg=ALERT, state=state)
    first.commit(state)
    now[0] += 30
    assert actions(RFC7352_ALERT, msg=ALERT, state=state) == ['fileinto "Alerts" :flags "\\seen"']
    now[0] += 61
    assert actions(RFC7352_ALERT, msg=ALERT, state=state) == ['fileinto "Alerts"']


# --- variables (RFC 5229) ---------------------------------------------------

@pytest.mark.parametrize("modifiers, value, expected", [
    ("", "juMBlEd lETteRS", "juMBlEd lETteRS"),
    (":length", "juMBlEd lETteRS", "15"),
    (":lower", "juMBlEd lETteRS", "jumbled letters"),
    (":upper", "juMBlEd lETteRS", "JUMBLED LETTERS"),
    (":upperfirst", "juMBlEd lETteRS", "JuMBlEd lETteRS"),
    (":upperfirst :lower", "juMBlEd lETteRS", "Jumbled letters"),
    (":lower :upperfirst", "juMBlEd lETteRS", "Jumbled letters"),
    (":upper :lowerfirst", "VaLuE", "vALUE"),
    (":quotewildcard", "Rock*", "Rock\\*"),
    (":quotewildcard", "^^***??**^^", "^^\\*\\*\\*\\?\\?\\*\\*^^"),
    (":length :quotewildcard", "^^***??**^^", "18"),
    (":length", "Das ist überhaupt nicht möglich.", "32"),
], ids=lambda v: v if v else "none")
def test_set_modifiers(modifiers, value, expected):
    """RFC 5229 section 4 examples and precedence."""
    quoted = value.replace("\\", "\\\\")
    assert variables(f'require "variables"; set {modifiers} "v" "{quoted}";')["v"] == expected


@pytest.mark.parametrize("value, pattern, groups", [
    ("frop.......frop.........frop....", "?*frop*", ["f", "rop.......", ".........frop...."]),
    ("frop:frup:frop", "*:*:*", ["frop", "frup", "frop"]),
    ("klopfropstroptop", "*fr??*top", ["klop", "o", "p", "strop"]),
    ("klopfropstroptop", "*?op", ["klopfropstrop", "t"]),
    ("klopfropstroptop", "*?op*", ["k", "l", "fropstroptop"]),
    ("toptoptop", "*top", ["toptop"]),
    ("beter van niet?", "*\\\\?", ["beter van niet"]),
    ("coyote@ACME.Example.COM", "coyote@**.com", ["", "ACME.Example"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_match_variables_are_shortest_first(value, pattern, groups):
    """RFC 5229 section 3.2: ${0} is the value, ${1}... each wildcard, the
    earlier "*" as short as possible."""
    found = variables(f'require "variables"; if string :matches "{value}" "{pattern}"'
                      " { set \"ok\" \"yes\"; }")
    assert found["ok"] == "yes"
    assert [found[str(i)] for i in range(len(groups) + 1)] == [value, *groups]


def test_variable_references():
    found = variables(r'''require "variables";
        set "company" "ACME";
        set "a" "${full}|${company}|${BAD${Company}|${President, ${Company} Inc.}";
        set "b" "$|${|${a|${0.s}|&%${}!|${doh!}";
        set "c" "${20}|${company";
        set "s" "$"; set "one_pass" "${s}{company}";
        if string :matches "frop" "?rop" {}
        set "d" "${0000000}|${1}|${2}";''')
    assert found["a"] == "|ACME|${BADACME|${President, ACME Inc.}"
    assert found["b"] == "$|${|${a|${0.s}|&%${}!|${doh!}"
    assert found["c"] == "|${company"
    assert found["one_pass"] == "${company}"
    assert found["d"] == "frop|f|"


def test_match_values_survive_a_failed_match_and_are_replaced_by_the_next():
    found = variables('''require "variables";
        set "s1" "the cat jumps off the table";
        set "s2" "the dog barks at the cat in the alley";
        if string :matches "${s1}" "the * jumps off the *" { set "first" "${1}:${2}"; }
        if string :matches "${s2}" "the * barks at the * in the store" { set "x" "y"; }
        set "kept" "${1}:${2}";
        if string :matches "${s2}" "the * barks at the * in the alley" {}
        set "new" "${1}:${2}";''')
    assert (found["first"], found["kept"], found["new"]) == ("cat:table", "cat:table",
                                                              "dog:cat")
    assert "x" not in found


def test_multiline_string_with_dot_stuffing_and_variables():
    found = variables('require "variables";\nset "honorific" "Mr";\nset "last_name" "Coyote";\n'
                      'set "vacation" text: # a comment\n'
                      "Dear ${HONORIFIC} ${last_name},\n..signed\n.\n;\n")
    assert found["vacation"] == "Dear Mr Coyote,\n.signed\n"


def test_variable_values_are_cut_at_4096_characters():
    found = variables('require "variables"; set "a" "0123456789abcdef";'
                      + ' set "a" "${a}${a}";' * 9)
    assert len(found["a"]) == 4096


# --- imap4flags in Maildir terms ----------------------------------------------

def test_flags_map_to_maildir_info_letters_in_ascii_order():
    keep = Keep(["\\Seen", "\\flagged", "\\Answered", "\\Draft", "\\Deleted", "$Junk"])
    assert keep.maildir_info == "DFRST"
    assert FileInto("A", ["\\Seen", "\\Flagged"]).maildir_info == "FS"
    assert Keep().maildir_info == ""


def test_keywords_are_logged_as_not_stored():
    outcome = outcome_of('require "imap4flags"; setflag "$Junk \\\\Seen";')
    assert outcome.implicit_flags == ("$Junk", "\\Seen")
    assert outcome.all_actions()[-1].maildir_info == "S"
    assert outcome.log == ["flag $Junk not stored: Maildir has no keywords"]


# --- folders ------------------------------------------------------------------

@pytest.mark.parametrize("name, folder, directory", [
    ("INBOX", "INBOX", None), ("inbox", "INBOX", None), ("Lists", "Lists", ".Lists"),
    ("Lists.Python", "Lists.Python", ".Lists.Python"), ("INBOX.Lists", "Lists", ".Lists"),
    ("From Boss", "From Boss", ".From Boss"), ("Café", "Café", ".Caf&AOk-"),
    ("R&D", "R&D", ".R&-D"), ("日本語", "日本語", ".&ZeVnLIqe-"),
], ids=lambda v: str(v))
def test_folder_names_map_to_maildir_plus_plus(name, folder, directory):
    assert check_folder(name) == folder
    assert maildir_folder(folder) == directory


@pytest.mark.parametrize("name", ["a/b", "../x", ".hidden", "x.", "a..b", "", "INBOX.",
                                  "tab\there", "x" * 256])
def test_unsafe_folder_names_are_refused(name):
    with pytest.raises(UnsafeFolder):
        check_folder(name)


# --- duplicate (RFC 7352) -------------------------------------------------------

DEDUP = 'require "duplicate"; if duplicate { discard; stop; }'


def deliver_twice(script, first="plain", second="plain", commit=True, state=None):
    state = state or MemoryState()
    one = outcome_of(script, msg=first, state=state)
    if commit:
        one.commit(state)
    return one.describe(), outcome_of(script, msg=second, state=state).describe()


def test_duplicate_is_false_then_true_after_commit():
    assert deliver_twice(DEDUP) == (KEEP, DISCARD)


def test_duplicate_without_commit_records_nothing():
    """A delivery that failed after the script ran must not make its retry
    look like a duplicate (RFC 7352 section 3)."""
    assert deliver_twice(DEDUP, commit=False) == (KEEP, KEEP)


def test_duplicate_record_key_and_default_period():
    outcome = outcome_of(DEDUP)
    assert outcome.records == [("duplicate", '"" <present@desert.example.org>', 7 * 86400,
                                False)]


def test_duplicate_handles_are_separate():
    script = 'require "duplicate"; if duplicate :handle "h1" { discard; }'
    other = 'require "duplicate"; if duplicate :handle "h2" { discard; }'
    state = MemoryState()
    outcome_of(script, state=state).commit(state)
    assert actions(other, state=state) == KEEP
    assert actions(script, state=state) == DISCARD


def test_duplicate_header_and_uniqueid():
    script = 'require "duplicate"; if duplicate :header "X-Event-ID" { discard; }'
    first = with_headers("X-Event-ID: 42", "Message-ID: <a@x>")
    second = with_headers("X-Event-ID: 42", "Message-ID: <b@x>")
    assert deliver_twice(script, first, second) == (KEEP, DISCARD)
    unique = 'require "duplicate"; if duplicate :uniqueid "same" { discard; }'
    assert deliver_twice(unique, "plain", "spam") == (KEEP, DISCARD)


def test_duplicate_same_id_twice_in_one_run_answers_as_the_first():
    outcome = outcome_of('require "duplicate"; if duplicate {discard;} if duplicate {discard;}')
    assert outcome.describe() == KEEP
    assert len(outcome.records) == 1


def test_duplicate_without_message_id_is_never_a_duplicate():
    outcome = outcome_of(DEDUP, msg="From: a@example.org\nSubject: no id\n\nx\n")
    assert outcome.describe() == KEEP
    assert outcome.records == []
    assert outcome.log == ["duplicate: no message-id field, so not a duplicate"]


def test_duplicate_seconds_expire_and_last_refreshes():
    now = [0.0]
    state = MemoryState(now=lambda: now[0])
    first_only = 'require "duplicate"; if duplicate :seconds 100 { discard; }'
    last = 'require "duplicate"; if duplicate :seconds 100 :last { discard; }'
    for script, expected in ((first_only, [KEEP, DISCARD, KEEP]),
                             (last, [KEEP, DISCARD, DISCARD])):
        state.duplicates.clear()
        seen = []
        for when in (0, 60, 120):  # the third is 120 s after the first, 60 after the second
            now[0] = when
            outcome = outcome_of(script, state=state)
            outcome.commit(state)
            seen.append(outcome.describe())
        assert seen == expected


# --- vacation (RFC 5230) ----------------------------------------------------------

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
    assert (reply.to, reply.days, reply.handle.startswith("auto-")) == (
        "coyote@desert.example.org", 7, True)
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
    assert outcome.records == [("vacation", "coyote@desert.example.org", reply.handle, 7)]


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
    assert reply.days == expected


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


# --- compile errors ---------------------------------------------------------------

ERRORS = [
    ("missing-semicolon-at-end", "keep",
     [(1, 5, 'missing ";" after keep at the end of the script')]),
    ("missing-semicolon", "if true { keep }", [(1, 16, "missing \";\" after keep (found '}')")]),
    ("unclosed-block", "if true {\n  keep;\n",
     [(3, 1, "expected a command or \"}\", found nothing at the end of the script")]),
    ("unterminated-string", 'keep;\nredirect "abc', [(2, 10, "unterminated string")]),
    ("unterminated-comment", "keep; /* abc", [(1, 7, 'unterminated comment: "/*" without "*/"')]),
    ("unexpected-character", "keep; @", [(1, 7, "unexpected character '@'")]),
    ("bad-number", "if size :over 10X { keep; }",
     [(1, 15, "invalid number '10X' (a number may end in K, M or G)")]),
    ("text-colon-needs-line-end", "vacation text: x\n.\n;",
     [(1, 16, 'expected the end of the line after "text:"')]),
    ("unterminated-text", 'require "vacation";\nvacation text:\nabc\n',
     [(2, 10, 'unterminated multi-line string: no line with only "."')]),
    ("unclosed-string-list", 'if header :is ["a", "b" "c" { keep; }',
     [(1, 25, "expected \",\" or \"]\" in the string list, found 'c'")]),
    ("test-where-a-command-belongs", 'if header :is "a" "b" keep;',
     [(1, 1, "if needs a block { ... }"), (1, 23, "header takes no test")]),
    ("missing-require-fileinto", 'fileinto "x";',
     [(1, 1, 'command "fileinto" needs require "fileinto"')]),
    ("missing-require-envelope", 'if envelope :is "from" "a" { keep; }',
     [(1, 4, 'test "envelope" needs require "envelope"')]),
    ("missing-require-copy", 'redirect :copy "a@example.org";',
     [(1, 10, 'tag :copy needs require "copy"')]),
    ("missing-require-imap4flags", r'keep :flags "\\Seen";',
     [(1, 6, 'tag :flags needs require "imap4flags"')]),
    ("missing-require-mailbox", 'require "fileinto"; fileinto :create "x";',
     [(1, 30, 'tag :create needs require "mailbox"')]),
    ("missing-require-subaddress", 'if address :user "to" "x" { keep; }',
     [(1, 12, 'tag :user needs require "subaddress"')]),
    ("missing-require-variables", 'set "a" "b";',
     [(1, 1, 'command "set" needs require "variables"')]),
    ("missing-require-duplicate", "if duplicate { discard; }",
     [(1, 4, 'test "duplicate" needs require "duplicate"')]),
    ("missing-require-vacation", 'vacation "away";',
     [(1, 1, 'command "vacation" needs require "vacation"')]),
    ("flag-variable-needs-variables", 'require "imap4flags"; setflag "v" "x";',
     [(1, 23, 'a variable name in setflag needs require "variables"')]),
    ("unknown-extension-rfc5228-3.2", 'require ["fileinto", "reject"];',
     [(1, 22, 'unsupported extension "reject"')]),
    ("unknown-command", "frobnicate;", [(1, 1, 'unknown command "frobnicate"')]),
    ("unknown-test", "if frob { keep; }", [(1, 4, 'unknown test "frob"')]),
    ("unknown-tag", "if header :frob \"a\" \"b\" { keep; }",
     [(1, 11, "unknown tag :frob for header")]),
    ("require-after-command", 'keep;\nrequire "fileinto";',
     [(2, 1, "require must come before every other command")]),
    ("elsif-without-if", "elsif true { keep; }", [(1, 1, "elsif without a preceding if")]),
    ("else-after-else", "if true {} else {} else {}", [(1, 20, "else without a preceding if")]),
    ("unsupported-comparator", 'if header :comparator "i;ascii-numeric" :is "a" "1" {}',
     [(1, 4, 'comparator "i;ascii-numeric" is not supported (i;ascii-casemap, i;octet)')]),
    ("conflicting-match-types", 'if header :is :contains "a" "b" {}',
     [(1, 15, 'tag :contains conflicts with an earlier tag ("is")')]),
    ("tag-given-twice", 'if header :is :is "a" "b" {}', [(1, 15, "tag :is given twice")]),
    ("tag-with-value-given-twice", 'if header :comparator "i;octet" :comparator "i;octet"'
     ' "a" "b" {}', [(1, 33, "tag :comparator given twice")]),
    ("tag-after-positional", 'require ["fileinto", "copy"]; fileinto "x" :copy;',
     [(1, 44, "tag :copy must come before the other arguments")]),
    ("wrong-argument-count", 'if header :is "a" {}',
     [(1, 4, "header expects 2 arguments: headers (string list), keys (string list); found 1")]),
    ("string-where-number", 'if size :over "1" {}', [(1, 15, "size expects a number")]),
    ("list-where-string", 'redirect ["a@example.org"];', [(1, 10, "redirect expects a string")]),
    ("size-needs-over-or-under", "if size 10 {}", [(1, 4, "size needs :over or :under")]),
    ("not-takes-one-test", "if not (true, false) {}", [(1, 4, "not takes one test")]),
    ("allof-takes-a-list", "if allof true {}", [(1, 4, "allof takes a list of tests (...)")]),
    ("invalid-header-name", 'if header :is "a b" "x" {}', [(1, 4, 'invalid header name "a b"')]),
    ("unsupported-envelope-part", 'require "envelope"; if envelope "auth" "x" {}',
     [(1, 24, 'envelope part "auth" is not supported (from, to)')]),
    ("invalid-redirect-address", 'redirect "bob";', [(1, 1, 'redirect: invalid address "bob"')]),
    ("unsafe-constant-folder", 'require "fileinto"; fileinto "../etc";',
     [(1, 21, 'fileinto: "/" in folder name "../etc" (the hierarchy separator is ".")')]),
    ("leading-dot-folder", 'require "fileinto"; fileinto ".x";',
     [(1, 21, 'fileinto: folder name ".x" has a leading, trailing or double "."')]),
    ("invalid-variable-name", 'require "variables"; set "1x" "y";',
     [(1, 22, 'invalid variable name "1x"')]),
    ("conflicting-modifiers", 'require "variables"; set :lower :upper "a" "b";',
     [(1, 22, ":upper conflicts with :lower")]),
    ("duplicate-header-and-uniqueid", 'require "duplicate"; if duplicate :header "a" :uniqueid'
     ' "b" {}', [(1, 25, "duplicate: :header and :uniqueid exclude each other")]),
    ("stop-takes-nothing", 'stop "now";', [(1, 1, "stop expects 0 arguments; found 1")]),
    ("command-with-block", "keep { }", [(1, 1, 'keep takes no block; missing ";"?')]),
    ("several-errors-collected", 'frob;\nkeep :bad;\nif foo {}\n',
     [(1, 1, 'unknown command "frob"'), (2, 6, "unknown tag :bad for keep"),
      (3, 4, 'unknown test "foo"')]),
]


@pytest.mark.parametrize("script, expected", [pytest.param(s, e, id=i) for i, s, e in ERRORS])
def test_compile_errors_have_line_and_column(script, expected):
    with pytest.raises(SieveError) as caught:
        compile_script(script)
    assert caught.value.errors == expected
    assert (caught.value.line, caught.value.column) == expected[0][:2]


def test_nesting_is_limited():
    with pytest.raises(SieveError, match="nested more than 32 deep"):
        compile_script("if true {" * 40 + "}" * 40)
    with pytest.raises(SieveError, match="nested more than 32 deep"):
        compile_script("if " + "not " * 40 + "true {}")


def test_script_must_be_utf8():
    with pytest.raises(SieveError) as caught:
        compile_script(b"keep;\n# caf\xe9\n")
    assert caught.value.errors == [(2, 6, "the script is not valid UTF-8")]


def test_error_lines_name_the_file():
    with pytest.raises(SieveError) as caught:
        compile_script("keep;\nfrob;")
    assert caught.value.lines("x.sieve") == ['x.sieve:2:1: unknown command "frob"']
    assert str(caught.value) == 'line 2, column 1: unknown command "frob"'


# --- runtime errors: implicit keep, nothing else -----------------------------------

RUNTIME = [
    ("unsafe-folder-from-variable", 'require ["fileinto", "variables"];\nset "f" "../etc";\n'
     'discard;\nfileinto "${f}";', 'line 4: fileinto: "/" in folder name "../etc" '
     '(the hierarchy separator is ".")'),
    ("empty-folder-from-variable", 'require ["fileinto", "variables"];\nfileinto "${nothing}";',
     "line 2: fileinto: empty folder name"),
    ("invalid-redirect-from-variable", 'require "variables";\nredirect "${x}bob";',
     'line 2: redirect: invalid address "bob"'),
    ("too-many-redirects", "\n".join(f'redirect "r{i}@example.org";' for i in range(5)),
     "line 5: more than 4 redirects"),
    ("vacation-twice", 'require "vacation";\nvacation "a";\nvacation "b";',
     "line 3: vacation used more than once (RFC 5230 section 4.7)"),
]


@pytest.mark.parametrize("script, error", [pytest.param(s, e, id=i) for i, s, e in RUNTIME])
def test_runtime_errors_keep_the_message(script, error):
    outcome = outcome_of(script)
    assert outcome.errors == [error]
    assert outcome.actions == []
    assert outcome.describe() == KEEP
    assert outcome.records == []


def test_an_internal_error_still_keeps_the_message():
    class Broken:
        size = 10

        @property
        def headers(self):
            raise RuntimeError("no headers")

    outcome = run(compile_script('discard; if exists "x" { discard; }'), Broken(),
                  Envelope("a@example.org", RECIPIENT))
    assert outcome.describe() == KEEP
    assert outcome.errors == ["line 1: internal error (RuntimeError: no headers)"]


# --- the compiled-script cache --------------------------------------------------------

SCRIPT = 'require ["fileinto"];\nif header :contains "subject" "present" { fileinto "Gifts"; }\n'


@pytest.fixture
def fresh_memo():
    from lda.sieve import script

    script._memo.clear()
    yield
    script._memo.clear()


def test_load_script_missing_is_none(tmp_path):
    assert load_script(tmp_path / "none.sieve", tmp_path / "cache") is None


def test_load_script_writes_then_reads_the_cache(tmp_path, fresh_memo):
    path = tmp_path / "s.sieve"
    path.write_text(SCRIPT)
    cache = tmp_path / "cache"
    first = load_script(path, cache)
    assert first.cache_status == "cache written"
    [cache_file] = cache.iterdir()
    assert cache_file.name.startswith("s.sieve-") and cache_file.suffix == ".json"
    assert oct(cache_file.stat().st_mode & 0o777) == "0o600"
    assert load_script(path, cache).cache_status == "memory"
    from lda.sieve import script

    script._memo.clear()
    second = load_script(path, cache)
    assert second.cache_status == "cache"
    assert second.commands == first.commands and second.requires == first.requires


def test_changed_script_is_compiled_again(tmp_path, fresh_memo):
    path, cache = tmp_path / "s.sieve", tmp_path / "cache"
    path.write_text(SCRIPT)
    load_script(path, cache)
    path.write_text(SCRIPT.replace("Gifts", "Presents"))
    script = load_script(path, cache)
    assert script.cache_status == "cache written"
    assert actions_of(script) == ['fileinto "Presents"']


def actions_of(script):
    return run(script, parse(PLAIN), Envelope(SENDERS["plain"], RECIPIENT)).describe()


@pytest.mark.parametrize("damage", ["", "{", '{"format": 1}', "not json", '{"format": 99}'])
def test_damaged_cache_is_ignored(tmp_path, fresh_memo, damage):
    path, cache = tmp_path / "s.sieve", tmp_path / "cache"
    path.write_text(SCRIPT)
    load_script(path, cache)
    [cache_file] = cache.iterdir()
    cache_file.write_text(damage)
    from lda.sieve import script as module

    module._memo.clear()
    script = load_script(path, cache)
    assert script.cache_status == "cache written"
    assert actions_of(script) == ['fileinto "Gifts"']


def test_unwritable_cache_is_not_an_error(tmp_path, fresh_memo):
    path = tmp_path / "s.sieve"
    path.write_text(SCRIPT)
    blocker = tmp_path / "file"
    blocker.write_text("")
    script = load_script(path, blocker / "cache")
    assert script.cache_status.startswith("cache not written: ")
    assert actions_of(script) == ['fileinto "Gifts"']


def test_broken_script_raises_and_evaluate_keeps(tmp_path, fresh_memo):
    path = tmp_path / "s.sieve"
    path.write_text("keep;\nfileinto \"x\";\n")
    with pytest.raises(SieveError):
        load_script(path, tmp_path / "cache")
    outcome = evaluate(path, tmp_path / "cache", parse(PLAIN), Envelope("", RECIPIENT),
                       MemoryState())
    assert outcome.describe() == KEEP
    assert outcome.errors == [f'{path}:2:1: command "fileinto" needs require "fileinto"']


def test_evaluate_without_a_script_is_none(tmp_path):
    assert evaluate(tmp_path / "none", None, parse(PLAIN), Envelope(), MemoryState()) is None


def test_unreadable_script_is_a_sieve_error(tmp_path, fresh_memo):
    with pytest.raises(SieveError, match="cannot read"):
        load_script(tmp_path, None)  # a directory


def test_compile_script_from_path_and_bytes(tmp_path):
    path = tmp_path / "s.sieve"
    path.write_text(SCRIPT)
    from_path = compile_script(path)
    assert from_path.name == str(path)
    assert from_path.commands == compile_script(SCRIPT.encode()).commands


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
                    max_leaves=20))
def test_cache_reader_reads_what_json_dumps_writes(value):
    assert loads(dumps(value)) == value


def test_cache_reader_refuses_what_it_does_not_know():
    for text in ("1.5", "[1,]", '{"a" 1}', '"abc', "[1] x", "nul"):
        with pytest.raises(ValueError):
            loads(text)


def test_a_cached_delivery_imports_neither_parser_nor_json(tmp_path, user):
    """The per-message path: load_script from the cache, run, nothing heavy."""
    path, cache = tmp_path / "s.sieve", tmp_path / "cache"
    path.write_text('require ["fileinto", "variables", "envelope", "imap4flags", "duplicate",'
                    ' "subaddress"];\nif header :matches "subject" "* present *" {'
                    ' setflag "\\\\Seen"; fileinto "${1}"; }\nif duplicate { discard; }\n'
                    'if envelope :detail "to" "x" { keep; }\n')
    load_script(path, cache)
    probe = f"""
import io, sys
from lda.message import Reader
from lda.sieve import Envelope, MemoryState, load_script, run
reader = Reader(io.BytesIO({PLAIN.encode()!r}))
for _ in reader.chunks():
    pass
reader.info()
script = load_script({str(path)!r}, {str(cache)!r})
outcome = run(script, reader, Envelope("a@example.org", "b@example.org"), MemoryState())
print(script.cache_status, outcome.describe(), file=sys.stderr)
print(" ".join(sorted(sys.modules)))
"""
    done = subprocess.run([sys.executable, "-c", probe], env=user.env, capture_output=True,
                          check=True)
    assert done.stderr.decode().startswith("cache ['fileinto \"I have a\" :flags \"\\\\Seen\"']")
    loaded = set(done.stdout.decode().split())
    for heavy in ("lda.sieve.parser", "lda.sieve.grammar", "lda.sieve.vacation", "json",
                  "email", "hashlib", "click"):
        assert heavy not in loaded, heavy


# --- the matcher against a regular expression -----------------------------------

def reference_regex(pattern):
    out, escaped = [], False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append({"*": "(.*?)", "?": "(.)"}.get(char, re.escape(char)))
    if escaped:
        out.append(re.escape("\\"))
    return "".join(out)


@given(st.text("ab*?\\", max_size=8), st.text("abAB*?\\", max_size=12))
def test_glob_agrees_with_a_lazy_regular_expression(pattern, value):
    found = re.fullmatch(reference_regex(pattern), value, re.DOTALL | re.IGNORECASE)
    result = glob(pattern, value, casemap=True)
    if found is None:
        assert result is None
    else:
        assert result == list(found.groups())


def test_glob_is_linear_enough_for_hostile_input():
    import time

    start = time.perf_counter()
    assert glob("*a*a*a*a*a*a*a*a*b", "a" * 3000, casemap=False) is None
    assert time.perf_counter() - start < 2


# --- the command line -----------------------------------------------------------------

def write(directory, name, text):
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_cli_check_ok_is_silent(user, tmp_path):
    path = write(tmp_path, "ok.sieve", SCRIPT)
    done = user.run("sieve", "check", path, check=0)
    assert (done.stdout, done.stderr) == (b"", b"")


def test_cli_check_lists_errors_and_exits_65(user, tmp_path):
    path = write(tmp_path, "bad.sieve", 'require "fileinto";\nif header :is "x" "y" {\n'
                 '  fileinto "a/b";\n}\nfrob;\nif envelope "to" "z" {}\n')
    done = user.run("sieve", "check", path, check=65)
    assert done.stdout == b""
    assert done.stderr.decode().splitlines() == [
        f'{path}:3:3: fileinto: "/" in folder name "a/b" (the hierarchy separator is ".")',
        f'{path}:5:1: unknown command "frob"',
        f'{path}:6:4: test "envelope" needs require "envelope"']


def test_cli_check_syntax_error(user, tmp_path):
    path = write(tmp_path, "bad.sieve", 'keep;\nredirect "x@example.org"\n')
    done = user.run("sieve", "check", path, check=65)
    assert done.stderr.decode() == f'{path}:3:1: missing ";" after redirect at the end of the ' \
                                   "script\n"


def test_cli_check_missing_file_is_a_usage_error(user, tmp_path):
    done = user.run("sieve", "check", str(tmp_path / "nope.sieve"), check=64)
    assert b"does not exist" in done.stderr


def test_cli_test_prints_the_actions(user, tmp_path):
    path = write(tmp_path, "s.sieve", r'''require ["fileinto", "imap4flags", "variables", "copy"];
if header :matches "List-Id" "*<*.python.example.org>" {
    setflag "\\Seen";
    fileinto "Lists.Python";
    redirect :copy "bob@example.org";
    stop;
}
''')
    done = user.run("sieve", "test", path, input=LIST.encode(), check=0)
    assert done.stdout.decode().splitlines() == ['fileinto "Lists.Python" :flags "\\Seen"',
                                                 'redirect "bob@example.org" :copy']
    assert done.stderr.decode().splitlines()[0] == (
        "envelope: from <guido@python.example.org> to <python-dev@python.example.org>, "
        f"message size {len(LIST)}")


def test_cli_test_implicit_keep_vacation_and_envelope_options(user, tmp_path):
    path = write(tmp_path, "v.sieve", 'require ["vacation", "envelope"];\n'
                 'if envelope :is "from" "boss@example.org" { vacation "Away."; }\n')
    done = user.run("sieve", "test", path, "-f", "boss@example.org", "-r", RECIPIENT,
                    input=PLAIN.encode(), check=0)
    assert done.stdout.decode().splitlines() == [
        'vacation to boss@example.org (subject "Auto: I have a present for you")',
        "keep (implicit)"]
    assert f"{path}: vacation: reply to boss@example.org" in done.stderr.decode()


def test_cli_test_runtime_error_shows_and_keeps(user, tmp_path):
    path = write(tmp_path, "r.sieve", 'require ["fileinto", "variables"];\n'
                 'if header :matches "subject" "*" { fileinto "${1}/x"; }\n')
    done = user.run("sieve", "test", path, input=PLAIN.encode(), check=0)
    assert done.stdout == b"keep (implicit)\n"
    assert (f'{path}: runtime error: line 2: fileinto: "/" in folder name "I have a present '
            'for you/x" (the hierarchy separator is ".") (implicit keep)') \
        in done.stderr.decode()


def test_cli_test_broken_script_exits_65(user, tmp_path):
    path = write(tmp_path, "b.sieve", "frob;\n")
    done = user.run("sieve", "test", path, input=PLAIN.encode(), check=65)
    assert done.stdout == b""
    assert done.stderr.decode() == f'{path}:1:1: unknown command "frob"\n'


def test_cli_test_delivers_and_records_nothing(user, tmp_path):
    path = write(tmp_path, "d.sieve", 'require "duplicate"; if duplicate { discard; }\n')
    for _ in range(2):
        done = user.run("sieve", "test", path, input=PLAIN.encode(), check=0)
        assert done.stdout == b"keep (implicit)\n"
    assert not user.maildir.exists()
    assert not user.state.exists()

"""lda.sieve: scripts x messages -> actions.  RFC 5228's commands, tests,
comparators and match types with the extensions lda supports, the RFCs' own
examples, and imap4flags and folder names in Maildir terms."""

import pytest

from lda.sieve import FileInto, Keep, MemoryState, SieveError, compile_script
from lda.sieve.actions import UnsafeFolder, check_folder, maildir_folder
from sieve_helpers import DISCARD, KEEP, actions, outcome_of, with_headers


def case(case_id, script, expected, **kwargs):
    return pytest.param(script, kwargs, expected, id=case_id)


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
    case("redirect-same-address-once", 'redirect "a@example.org"; redirect "a@EXAMPLE.org";',
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
    # A field with no valid address is its text, for :all only (Pigeonhole).
    case("address-null-is-its-text", 'if address :is "reply-to" "<>" {discard;}', DISCARD,
         msg="encoded"),
    case("address-null-has-no-localpart",
         'if address :localpart :matches "reply-to" "*" {discard;}', KEEP, msg="encoded"),
    case("address-empty-group-is-its-text",
         'if address :is "resent-to" "undisclosed-recipients:;" {discard;}', DISCARD,
         msg="encoded"),
    case("address-empty-group-has-no-domain",
         'if address :domain :matches "resent-to" "*" {discard;}', KEEP, msg="encoded"),
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
    # A second store into one folder: the later store's flags, as Pigeonhole.
    case("second-keep-takes-its-flags",
         r'require "imap4flags"; keep :flags "\\Seen"; keep :flags "ok";', ['keep :flags "ok"']),
    case("second-keep-takes-the-empty-internal-variable",
         r'require "imap4flags"; keep :flags "\\Seen"; keep;', ["keep"]),
    case("second-fileinto-takes-the-internal-variable",
         r'require ["imap4flags", "fileinto"]; addflag "\\Seen"; fileinto "A";'
         ' removeflag "\\\\Seen"; addflag "ok"; fileinto "A";', ['fileinto "A" :flags "ok"']),
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
    # RFC 5232 section 3 and RFC 3501 section 9, as Pigeonhole's
    # sieve_ext_imap4flags_flag_is_valid: setflag/addflag drop a system flag
    # other than the five and a keyword that is no atom (spaces alone
    # separate flags: a tab is a control character in one); :flags drops
    # only such system flags.
    case("addflag-drops-invalid-flags",
         'require "imap4flags"; addflag ["\\\\Recent", "\\\\Foo", "\\\\", "a(b", "ok",'
         ' "\\\\seen", "a]b", "a\tb", "caf\u00e9"];', ['keep (implicit) :flags "ok \\seen"']),
    case("flags-tag-drops-invalid-system-flags",
         r'require "imap4flags"; keep :flags ["\\Recent", "\\", "a(b", "ok"];',
         ['keep :flags "a(b ok"']),
    case("hasflag-does-not-see-dropped-flags",
         r'require "imap4flags"; setflag "\\Recent"; if not hasflag :matches "*" {discard;}',
         DISCARD),
    case("hasflag-drops-invalid-flags-of-a-variable",
         r'require ["imap4flags", "variables"]; set "w" "\\Recent a)b";'
         ' if not hasflag :matches "w" "*" {discard;}', DISCARD),
    case("hasflag-matches-takes-a-key-whole", 'require "imap4flags"; setflag "ax by";'
         ' if hasflag :matches "a* b*" {discard;}', ['keep (implicit) :flags "ax by"']),
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
    state = MemoryState()
    state.duplicates['"" <present@desert.example.org>'] = state.now() + 60
    # A constant name fails when the script runs, as one built from variables
    # does (RFC 5228 section 4.1; Pigeonhole too): the script still compiles.
    for variant in (script.replace("${x}", ""),
                    script.replace('"duplicate",', '"duplicate", "variables",')):
        outcome = outcome_of(variant, state=state)
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


# --- imap4flags in Maildir terms ----------------------------------------------

def test_flags_map_to_maildir_info_letters_in_ascii_order():
    keep = Keep(["\\Seen", "\\flagged", "\\Answered", "\\Draft", "\\Deleted", "$Junk"])
    assert keep.maildir_info == "DFRST"
    assert FileInto("A", ["\\Seen", "\\Flagged"]).maildir_info == "FS"
    assert Keep().maildir_info == ""


def test_keywords_travel_apart_from_the_system_flags():
    outcome = outcome_of('require "imap4flags"; keep :flags "$Junk \\\\Seen bad(name";')
    keep = outcome.actions[0]
    # :flags keeps a keyword that is no atom, as Pigeonhole: the store
    # refuses it (and logs it).
    assert (keep.maildir_info, keep.keywords) == ("S", ("$Junk", "bad(name"))
    assert outcome.log == []


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


def test_redirect_takes_a_mailbox_with_a_display_name():
    """RFC 5228 section 2.4.2.3: an address argument is an RFC 5322 mailbox."""
    assert actions('redirect "Bob Smith <bob@example.org>";') == ['redirect "bob@example.org"']
    assert actions('redirect "bob@example.org (Bob)";') == ['redirect "bob@example.org"']
    with pytest.raises(SieveError):
        compile_script('redirect "a@example.org, b@example.org";')


def test_redirects_that_differ_in_the_local_part_case_are_two():
    """RFC 5321 section 2.4: local parts are case-sensitive, domains are not."""
    assert actions('redirect "Bob@example.org"; redirect "bob@example.org";') == [
        'redirect "Bob@example.org"', 'redirect "bob@example.org"']
    assert actions('redirect "bob@Example.ORG"; redirect "bob@example.org";') == [
        'redirect "bob@Example.ORG"']

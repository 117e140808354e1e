"""The body extension (RFC 5173) and the MIME parser under it
(lda/sieve/mimeparts.py): which parts each transform sees, the bounds on
hostile structure, compile errors, and a delivery filed by its body.

The expected matches were checked against Pigeonhole 0.5.19's sieve-test
with the same messages."""

import io

import pytest

from conftest import maildir_files
from lda.sieve import Envelope, SieveError, compile_script, dryrun, mimeparts, run
from sieve_helpers import KEEP, RECIPIENT, actions, outcome_of, parse

MIXED = b"""\
From: Coyote <coyote@desert.example.org>
To: roadrunner@acme.example.com
Subject: plans
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

Prologue for old readers.
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Caf=E9 at noon, bring the rocket=
 skates.
--inner
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

PHA+Q2Fmw6kgYXQgPGI+bm9vbjwvYj4sIGJyaW5nIHRoZSA8aT5yb2NrZXQ8L2k+IHNrYXRlcy48L3A+Cg==
--inner--
--outer
Content-Type: application/pdf; name="blueprint.pdf"
Content-Disposition: attachment; filename="blueprint.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQKdG9wIHNlY3JldCBhbnZpbAo=
--outer
Content-Type: message/rfc822

From: acme@acme.example.com
Subject: order confirmed

Your anvil ships today.
--outer--
Epilogue nobody reads.
"""
PLAIN_BODY = b"From: a@example.org\nSubject: hi\n\nPlease pay the invoice.\n"


def body(test, msg=MIXED):
    script = f'require ["body", "fileinto"];\nif {test} {{ fileinto "hit"; }}\n'
    return actions(script, msg=msg) == ['fileinto "hit"']


# --- the parser --------------------------------------------------------------------

def test_parts_come_depth_first_with_their_types():
    tree = mimeparts.parse(MIXED)
    assert [(p.depth, p.content_type) for p in tree.walk()] == [
        (0, "multipart/mixed"), (1, "multipart/alternative"), (2, "text/plain"),
        (2, "text/html"), (1, "application/pdf"), (1, "message/rfc822"), (2, "text/plain")]
    assert tree.prologue == b"Prologue for old readers."
    assert tree.epilogue == b"Epilogue nobody reads.\n"


def test_parts_are_decoded_to_text():
    plain, html = list(mimeparts.parse(MIXED).walk())[2:4]
    assert plain.decoded() == "Café at noon, bring the rocket skates."
    assert html.text() == "Café at noon, bring the rocket skates."


@pytest.mark.parametrize("field, expected", [
    ('attachment; filename="a b.pdf"', "a b.pdf"),
    ("attachment; filename*=iso-8859-1''caf%E9.txt", "café.txt"),
    ("attachment; filename*0*=utf-8''caf%C3%A9; filename*1=-menu.txt", "café-menu.txt"),
    ('attachment; filename="=?utf-8?q?r=C3=A9sum=C3=A9.pdf?="', "résumé.pdf"),
    ('attachment; filename="semi;colon.pdf"', "semi;colon.pdf"),
], ids=["quoted", "rfc2231-charset", "rfc2231-continued", "encoded-word", "quoted-semicolon"])
def test_parameters(field, expected):
    assert mimeparts.split_parameters(field)[1]["filename"] == expected


def nested(depth):
    head = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i)
                    for i in range(depth))
    return b"Subject: deep\n" + head + b"Content-Type: text/plain\n\ndeep down\n"


def test_nesting_stops_at_max_depth():
    tree = mimeparts.parse(nested(mimeparts.MAX_DEPTH + 50))
    assert max(p.depth for p in tree.walk()) == mimeparts.MAX_DEPTH


def test_parts_stop_at_max_parts():
    many = b"".join(b"--x\nContent-Type: text/plain\n\npart %d\n" % i for i in range(5000))
    tree = mimeparts.parse(b"Content-Type: multipart/mixed; boundary=x\n\n" + many + b"--x--\n")
    assert len(list(tree.walk())) == mimeparts.MAX_PARTS


def test_a_flood_of_delimiters_is_cut_at_max_parts():
    flood = b"Content-Type: multipart/mixed; boundary=x\n\n" + b"--x\n" * 1_000_000
    assert len(list(mimeparts.parse(flood).walk())) == mimeparts.MAX_PARTS


@pytest.mark.parametrize("html, text", [
    ("<p>Hello <b>bold</b> world</p><p>next</p>", "Hello bold world next"),
    ("a</>b< >c<!-- <p>hidden</p> -->d", "a b c d"),
    ("<style>p { x }</style><script>if (a < b) {}</script>shown", "shown"),
    ("x &amp; y &lt;tag&gt; caf&eacute;", "x & y <tag> café"),
    ("broken <b unclosed", "broken"),
], ids=["inline-and-block", "odd-tags", "style-script", "entities", "unclosed"])
def test_html_text(html, text):
    assert mimeparts.html_text(html) == text


def test_decoded_text_stops_at_max_decoded_bytes():
    big = b"Subject: big\n\n" + b"a" * (mimeparts.MAX_DECODED_BYTES + 100)
    assert len(mimeparts.parse(big).decoded()) == mimeparts.MAX_DECODED_BYTES


def test_broken_base64_and_unknown_charset_do_not_fail():
    msg = (b"Content-Type: text/plain; charset=x-unknown\nContent-Transfer-Encoding: base64\n\n"
           b"aGVsbG8g!!d29y\nbGQ=\n")
    assert mimeparts.parse(msg).decoded().startswith("hello wor")


# --- the body test -----------------------------------------------------------------

@pytest.mark.parametrize("test, hit", [
    (':raw :contains "JVBERi0x"', True),  # undecoded
    (':raw :contains "top secret"', False),
    (':text :contains "Café at noon"', True),  # quoted-printable, iso-8859-1
    (':text :contains "rocket skates"', True),  # the soft line break joined
    (':text :contains "at noon, bring"', True),  # text/html without its markup
    (':text :contains "<b>"', False),
    (':text :contains "anvil ships"', True),  # inside the message/rfc822
    (':text :contains "top secret"', False),  # not a text part
    (':text :contains "Prologue"', False),
    (':content "text" :contains "<b>noon"', True),  # the HTML as sent
    (':content "multipart" :contains "Prologue"', True),
    (':content "multipart" :contains "Epilogue"', True),
    (':content "multipart" :contains "Café"', False),  # not the children
    (':content "message/rfc822" :contains "order confirmed"', True),  # its header
    (':content "message/rfc822" :contains "anvil ships"', False),  # not its body
    (':content "application/pdf" :contains "top secret anvil"', True),
    (':content "" :contains "top secret"', True),
    (':content ["image", "text/plain"] :contains "anvil ships"', True),
    (':content "TEXT/PLAIN" :contains "Café"', True),
    (':contains "rocket"', True),  # :text is the default
    (':text :matches "*noon*"', True),
    (':text :comparator "i;octet" :contains "CAFÉ"', False),
], ids=lambda v: v if isinstance(v, str) else "")
def test_body_transforms(test, hit):
    assert body(f"body {test}") == hit


@pytest.mark.parametrize("transform, count", [
    (":text", 3),  # text/plain, text/html and the text/plain in the message/rfc822
    (":raw", 1),
    (':content ""', 8),  # the seven parts and multipart/mixed's epilogue
    (':content "multipart"', 3),  # two prologues (one empty) and the epilogue
    (':content "message/rfc822"', 1),
])
def test_body_count_counts_the_parts_a_transform_selects(transform, count):
    assert relational(f'body :count "eq" {transform} "{count}"')
    assert not relational(f'body :count "eq" {transform} "{count + 1}"')


def test_body_value_compares_each_part():
    assert relational('body :value "lt" :content "application/pdf" "%Q"')  # "%PDF-1.4..."
    assert not relational('body :value "lt" :content "application/pdf" "%P"')


def test_an_empty_body_is_no_raw_value():
    empty = b"From: a@example.org\nSubject: hi\n\n"
    assert relational('body :count "eq" :raw "0"', empty)
    assert not body('body :raw :is ""', empty)
    assert body('body :text :is ""', empty)  # one text/plain part, empty


def relational(test, msg=MIXED):
    script = f'require ["body", "relational", "fileinto"];\nif {test} {{ fileinto "hit"; }}\n'
    return actions(script, msg=msg) == ['fileinto "hit"']


def test_a_message_without_mime_headers_is_one_text_part():
    assert body('body :content "text/plain" :contains "invoice"', PLAIN_BODY)
    assert body('body :raw :is "Please pay the invoice.\n"', PLAIN_BODY)


DIGEST = b"""\
Subject: digest
Content-Type: multipart/digest; boundary="d"

--d

Subject: first item

First item body.
--d--
"""


def test_a_digest_part_without_content_type_is_a_message():
    # RFC 2046 section 5.1.5 (Pigeonhole 0.5.19 does not match :content here)
    assert body('body :content "message/rfc822" :contains "first item"', DIGEST)
    assert body('body :text :contains "First item body"', DIGEST)


def test_body_sets_no_match_variables():
    script = ('require ["body", "variables", "fileinto"];\n'
              'if header :matches "subject" "*" {}\n'
              'if body :text :matches "*invoice*" { fileinto "${1}"; }\n')
    assert actions(script, msg=PLAIN_BODY.decode()) == ['fileinto "hi"']


class HeadersOnly:
    """A message whose body must not be read."""

    def __init__(self, reader):
        self.headers, self.size = reader.headers, reader.size

    def raw(self, limit):
        raise AssertionError("the body was read")


def test_a_script_without_body_tests_never_reads_the_body():
    script = compile_script('if header :contains "subject" "plans" { discard; }')
    outcome = run(script, HeadersOnly(parse(MIXED)), Envelope("a@example.org", RECIPIENT))
    assert outcome.describe() == ["discard"]


def test_a_message_that_cannot_be_read_keeps_it():
    class Unreadable(HeadersOnly):
        def raw(self, limit):
            raise OSError(5, "Input/output error")

    script = compile_script('require "body"; if body :contains "x" { discard; }')
    outcome = run(script, Unreadable(parse(MIXED)), Envelope("a@example.org", RECIPIENT))
    assert outcome.describe() == KEEP
    assert outcome.errors == ["line 1: cannot read the message: Input/output error"]


def test_dry_run_reads_the_body(tmp_path):
    path = tmp_path / "s.sieve"
    path.write_text('require ["body", "fileinto"];\nif body :contains "anvil" '
                    '{ fileinto "Orders"; }\n')
    lines, notes, status = dryrun.dry_run(path, io.BytesIO(MIXED))
    assert (lines, status) == (['fileinto "Orders"'], 0)


@pytest.mark.parametrize("script, error", [
    ('if body "x" { keep; }', (1, 4, 'test "body" needs require "body"')),
    ('require "body";\nif body :raw :content "text" "x" { keep; }',
     (2, 4, ":content conflicts with :raw")),
    ('require "body";\nif body :content "text/" "x" { keep; }',
     (2, 4, 'body :content "text/" is not a content type ("", "type" or "type/subtype")')),
    ('require "body";\nif body :comparator "i;unicode" "x" { keep; }',
     (2, 4, 'comparator "i;unicode" is not supported (i;ascii-casemap, i;octet, i;ascii-numeric)')),
    ('require "body";\nif body :text "x" "y" { keep; }',
     (2, 4, "body expects 1 argument: keys (string list); found 2")),
], ids=["require", "two-transforms", "bad-type", "comparator", "arguments"])
def test_compile_errors(script, error):
    with pytest.raises(SieveError) as caught:
        compile_script(script)
    assert caught.value.errors[0] == error


# --- through `lda deliver` -----------------------------------------------------------

def test_delivery_files_by_a_keyword_in_a_base64_body(user):
    (user.home / ".lda.sieve").write_text(
        'require ["body", "fileinto", "mailbox"];\n'
        'if body :content "text" :contains "rocket skates" {\n'
        '  fileinto :create "Gear"; stop;\n}\n')
    user.deliver(MIXED, "a@example.org", check=0)
    user.deliver(PLAIN_BODY, "a@example.org", check=0)
    [filed] = maildir_files(user.maildir / ".Gear")
    assert filed.read_bytes().endswith(MIXED)  # stored as received
    assert len(maildir_files(user.maildir)) == 1


def test_outcome_of_helper_reads_the_body():
    assert outcome_of('require "body"; if body :contains "Beep" { discard; }').describe() \
        == ["discard"]

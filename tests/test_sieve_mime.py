"""The mime, foreverypart and extracttext extensions (RFC 5703): the loop
and its breaks, header/address/exists :mime on the current part, the MIME
options, extracttext, the bounds, compile errors, and a delivery filed by
an attachment's filename.

The part order, the MIME options' values and extracttext's text were
checked against Pigeonhole 0.5.19's sieve-test with the same message."""

import os

import pytest

from conftest import maildir_files, without_site
from lda.sieve import Envelope, SieveError, compile_script, load_script, run
from lda.sieve.extensions import mime
from sieve_helpers import KEEP, RECIPIENT, actions, parse
from test_sieve_body import MIXED

REQUIRE = 'require ["mime", "foreverypart", "extracttext", "variables", "imap4flags", ' \
          '"fileinto"];\n'


def flags(script, msg=MIXED):
    """The flags a script collects with addflag, in order (keep shows them)."""
    [kept] = actions(REQUIRE + script + "\nkeep;\n", msg=msg.decode())
    return kept.removeprefix("keep :flags ").strip('"').split()


def test_foreverypart_visits_the_message_then_every_part_depth_first():
    script = (REQUIRE + 'set "all" "";\nforeverypart {\n'
              '  if header :mime :contenttype :matches "content-type" "*" '
              '{ set "all" "${all} ${0}"; } }\n'
              'if string :is "${all}" " multipart/mixed multipart/alternative text/plain '
              'text/html application/pdf message/rfc822" { discard; }')
    # the nested message has no Content-Type field: nothing to match, as in Pigeonhole
    assert actions(script, msg=MIXED.decode()) == ["discard"]


def test_a_nested_loop_visits_the_parts_under_the_current_one():
    script = ('foreverypart { if header :mime :subtype "content-type" "alternative" {\n'
              '  foreverypart { if header :mime :subtype :matches "content-type" "*" '
              '{ addflag "${0}"; } } } }')
    assert flags(script) == ["plain", "html"]


def test_the_outer_loop_goes_on_after_an_inner_one():
    # 7 outer passes; the parts under each: 6, 2, 0, 0, 0, 1 and 0
    script = (REQUIRE + 'set "n" "";\nforeverypart { set "n" "${n}o"; '
              'foreverypart { set "n" "${n}i"; } }\nfileinto "${n}";')
    assert actions(script, msg=MIXED.decode()) == ['fileinto "oiiiiiioiiooooio"']


def test_break_ends_the_innermost_loop_and_break_name_the_named_one():
    count = (REQUIRE + 'set "n" "";\nforeverypart :name "outer" {{ set "n" "${{n}}o";\n'
             '  foreverypart {{ set "n" "${{n}}i"; {inner} }} }}\n'
             'fileinto "${{n}}";')
    assert actions(count.format(inner="break;"), msg=MIXED) == ['fileinto "oioiooooio"']
    assert actions(count.format(inner='break :name "outer";'), msg=MIXED) == ['fileinto "oi"']


def test_header_without_mime_in_a_loop_reads_the_message_header():
    script = ('foreverypart { if header :contains "subject" "order" { addflag "inner"; }\n'
              'if header :mime :contains "subject" "order" { addflag "part"; } }')
    assert flags(script) == ["part"]


@pytest.mark.parametrize("test, hit", [
    (':mime :type "content-type" "multipart"', True),  # outside a loop: the message
    (':mime :type "content-type" "text"', False),
    (':mime :anychild :contenttype "content-type" "application/pdf"', True),
    (':mime :anychild :param "filename" "content-disposition" "blueprint.pdf"', True),
    (':mime :anychild :param "charset" "content-type" "ISO-8859-1"', True),
    (':mime :param "boundary" "content-type" "outer"', True),
    (':mime :anychild :type "content-disposition" "attachment"', True),
    (':mime :anychild :subtype :matches "content-disposition" "?*"', False),  # no subtype
    (':mime :anychild :param "charset" :matches "content-type" "*"', True),
    (':mime :anychild "subject" "order confirmed"', True),  # the nested message's header
    (':mime "subject" "order confirmed"', False),
    (':mime :anychild :param "nothing" :matches "content-type" "*"', True),  # "", below
    (':mime :param "nothing" :is "content-type" ""', True),
], ids=lambda v: v if isinstance(v, str) else "")
def test_header_mime(test, hit):
    script = REQUIRE + f'if header {test} {{ discard; }}'
    assert actions(script, msg=MIXED.decode()) == (["discard"] if hit else KEEP)


@pytest.mark.parametrize("value, params, found", [
    ("text/plain", ["charset"], [""]),
    ("text/plain; format=flowed", ["charset"], [""]),
    ("text/plain; format=flowed", ["charset", "format"], ["flowed"]),
    ("text/plain; charset=utf-8; format=flowed", ["charset", "format"], ["utf-8", "flowed"]),
    ('text/plain; charset=""', ["charset"], [""]),
], ids=["no-parameters", "another-parameter", "one-of-two", "both", "empty"])
def test_a_parameter_the_field_lacks_is_the_empty_string(value, params, found):
    # As Pigeonhole: a field that has none of the parameters asked for
    # gives one value, "" (so :is "" and :matches "*" match and :count is 1).
    assert mime.mime_values(value, None, params) == found


def test_address_and_exists_mime():
    script = REQUIRE + ('if address :mime :anychild :domain "from" "acme.example.com" '
                        '{ addflag "address"; }\n'
                        'if exists :mime :anychild "content-disposition" { addflag "exists"; }\n'
                        'if exists :mime "content-disposition" { addflag "top"; }\n'
                        'if exists :mime :anychild ["content-disposition", "subject"] '
                        '{ addflag "split"; }\nkeep;')
    assert actions(script, msg=MIXED.decode()) == ['keep :flags "address exists split"']


def test_extracttext_gives_the_current_parts_text():
    script = (REQUIRE + 'set "all" "";\nforeverypart { extracttext :first 12 :upper "t";\n'
              'set "all" "${all}[${t}]"; }\nif string :is "${all}" '
              '"[][][CAFÉ AT NOON][CAFÉ AT NOON][%PDF-1.4\nTOP][][YOUR ANVIL S]" { discard; }')
    assert actions(script, msg=MIXED.decode()) == ["discard"]


def test_a_plain_message_is_one_part():
    script = ('foreverypart { extracttext "t"; if string :contains "${t}" "Beep" '
              '{ addflag "beep"; } }')
    assert flags(script, msg=b"Subject: x\n\nBeep beep.\n") == ["beep"]


def test_loops_are_bounded():
    # nested loops visit every chain of parts under one another: a deep
    # message has many
    msg = b"Subject: deep\n"
    for level in range(10):
        msg += (b"Content-Type: multipart/mixed; boundary=b%d\n\n" % level
                + b"".join(b"--b%d\n\nleaf\n" % level for _ in range(5))
                + b"--b%d\n" % level)
    script = compile_script(REQUIRE + 'foreverypart { foreverypart { foreverypart {\n'
                            '  foreverypart { keep; } } } }')
    outcome = run(script, parse(msg), Envelope("a@example.org", RECIPIENT))
    assert outcome.describe() == KEEP
    assert outcome.errors == [f"line 3: foreverypart: more than {mime.MAX_LOOP_STEPS} "
                              "iterations"]


@pytest.mark.parametrize("script, error", [
    ("break;", (2, 1, "break outside foreverypart")),
    ('foreverypart :name "a" { break :name "b"; }',
     (2, 26, 'break: no enclosing foreverypart is named "b"')),
    ('extracttext "t";', (2, 1, "extracttext outside foreverypart")),
    ("foreverypart;", (2, 1, "foreverypart needs a block { ... }")),
    ('if header :anychild "subject" "x" { keep; }', (2, 4, ":anychild needs :mime")),
    ('if header :type "content-type" "x" { keep; }', (2, 4, ":type needs :mime")),
    ('if header :mime :type :param "a" "content-type" "x" { keep; }',
     (2, 4, ":type conflicts with :param")),
    ('if exists :mime :type "content-type" { keep; }', (2, 17, "unknown tag :type for exists")),
    ('foreverypart { extracttext :lower :upper "t"; }', (2, 16, ":upper conflicts with :lower")),
], ids=["break-outside", "break-name", "extracttext-outside", "no-block", "anychild",
        "type-without-mime", "type-and-param", "exists-type", "modifiers"])
def test_compile_errors(script, error):
    with pytest.raises(SieveError) as caught:
        compile_script(REQUIRE + script)
    assert caught.value.errors[0] == error


@pytest.mark.parametrize("script, error", [
    ('require "foreverypart"; foreverypart { extracttext "t"; }',
     (1, 40, 'command "extracttext" needs require "extracttext"')),
    ('require ["extracttext", "foreverypart"]; foreverypart { extracttext "t"; }',
     (1, 57, 'extracttext needs require "variables"')),
    ('if header :mime "a" "b" { keep; }', (1, 11, 'tag :mime needs require "mime"')),
    ('foreverypart { keep; }', (1, 1, 'command "foreverypart" needs require "foreverypart"')),
], ids=["extracttext", "variables", "mime", "foreverypart"])
def test_requires(script, error):
    with pytest.raises(SieveError) as caught:
        compile_script(script)
    assert caught.value.errors[0] == error


# --- through `lda deliver` -----------------------------------------------------------

def test_delivery_files_by_an_attachments_filename(user):
    (user.home / ".lda.sieve").write_text(
        'require ["mime", "foreverypart", "fileinto", "mailbox"];\n'
        'if exists :mime "return-path" { fileinto :create "Wrong"; stop; }\n'
        'foreverypart {\n'
        '  if header :mime :param "filename" :matches "content-disposition" "*.pdf" {\n'
        '    fileinto :create "Documents"; break;\n  }\n}\n')
    user.deliver(MIXED, "a@example.org", check=0)
    user.deliver(b"Message-ID: <p@x>\nSubject: no attachment\n\nHi.\n", "a@example.org",
                 check=0)
    [filed] = maildir_files(user.maildir / ".Documents")
    assert filed.read_bytes().endswith(MIXED)
    assert len(maildir_files(user.maildir)) == 1
    assert not (user.maildir / ".Wrong").exists()  # lda's own Return-Path is not the message's


CACHED_RUN = """
import sys
from lda.sieve import Envelope, load_script, run
from lda.sieve.dryrun import Message
from lda.deliver.message import Headers
head, _, body = {msg!r}.partition(b"\\n\\n")
message = Message(Headers(head), {size}, {msg!r})
script = load_script({path!r}, {cache!r})
outcome = run(script, message, Envelope("a@example.org", "b@x.org"))
print(outcome.describe(), outcome.errors, script.cache_status, file=sys.stderr)
print(" ".join(sorted(sys.modules)))
"""


@pytest.mark.parametrize("script, loaded", [
    ('require ["foreverypart", "mime", "fileinto"];\nforeverypart {\n'
     '  if header :mime :param "filename" "content-disposition" "blueprint.pdf" {\n'
     '    fileinto "Documents"; break; } }\n',
     {"lda.sieve.mimeparts", "lda.sieve.extensions.mime"}),
    ('require "fileinto";\nif header :contains "subject" "plans" { fileinto "Documents"; }\n',
     set()),
], ids=["mime", "no-mime"])
def test_a_cached_script_loads_the_mime_code_only_when_it_uses_it(tmp_path, script, loaded):
    path, cache = tmp_path / "s.sieve", tmp_path / "cache"
    path.write_text(script)
    load_script(path, cache)  # compiles and writes the cache
    probe = CACHED_RUN.format(msg=MIXED, size=len(MIXED), path=str(path), cache=str(cache))
    done = without_site(probe, os.environ)
    assert done.stderr.startswith("['fileinto \"Documents\"'] [] cache")
    mime_code = {m for m in done.stdout.split() if "mimeparts" in m or "extensions." in m}
    assert mime_code == loaded
    assert "email" not in done.stdout.split()


def test_lda_sieve_test_runs_a_loop_on_the_message_read(user, tmp_path):
    path = tmp_path / "s.sieve"
    path.write_text(REQUIRE + 'foreverypart {\n'
                    '  if header :mime :type "content-type" "message" { break; }\n'
                    '  extracttext :first 4 "start";\n'
                    '  if string :is "${start}" "%PDF" { fileinto "Scans"; }\n}\n')
    done = user.run("sieve", "test", str(path), input=MIXED, check=0)
    assert done.stdout.decode().splitlines() == ['fileinto "Scans"']

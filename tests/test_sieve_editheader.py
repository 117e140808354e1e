"""Sieve editheader (RFC 5293): addheader and deleteheader, enabled by
lda.toml's sieve_extensions_extra, seen by later tests, protected fields,
hostile values, and the edited copy a delivery stores and redirects."""

import pytest

from conftest import maildir_files
from sieve_helpers import PLAIN, RECIPIENT, parse, with_headers

from lda.sieve import Envelope, SieveError, compile_script, load_script, run
from lda.sieve.extensions.editheader import LINE, MAX_EDITS

ON = ["editheader"]
REQUIRE = 'require ["editheader", "variables"];\n'
TRACED = with_headers("X-Hello: one", "X-Hello: two", "X-Hello: three",
                      base="Received: from a by b\nAuto-Submitted: no\n" + PLAIN)


def edited(script, msg=PLAIN, options=None):
    """The Outcome of script (editheader enabled) on msg."""
    envelope = Envelope("coyote@desert.example.org", RECIPIENT,
                        options={"sieve_extensions_extra": ON, **(options or {})})
    return run(compile_script(REQUIRE + script, extensions=ON), parse(msg), envelope)


def fields(outcome, msg=PLAIN):
    """The header as the script left it: ["Name: value"], names as written."""
    original = [line for line in msg.split("\n\n")[0].split("\n")]
    result = []
    for _, _, source in outcome.header:
        result.append(original[source] if isinstance(source, int)
                      else source.decode().rstrip("\n"))
    return result


def errors(text, extensions=ON):
    with pytest.raises(SieveError) as caught:
        compile_script(text, extensions=extensions)
    return caught.value.lines("s.sieve")


# --- compiling ---------------------------------------------------------------

@pytest.mark.parametrize("script, expected", [
    ('addheader "X Bad" "v";', 's.sieve:2:1: addheader: invalid field name "X Bad"'),
    ('addheader "X-Bad:" "v";', 's.sieve:2:1: addheader: invalid field name "X-Bad:"'),
    ('deleteheader "";', 's.sieve:2:1: deleteheader: invalid field name ""'),
    ('deleteheader :last "X-A";', "s.sieve:2:1: deleteheader: :last needs :index"),
    ('deleteheader :index 0 "X-A";', "s.sieve:2:1: deleteheader: :index counts from 1"),
    ('addheader "X-A";', "s.sieve:2:1: addheader expects 2 arguments: name (string), "
                         "value (string); found 1"),
    ('deleteheader "X-A" "a" "b";', "s.sieve:2:1: deleteheader expects 2 arguments: name "
                                    "(string), patterns (string list); found 3"),
    ('deleteheader :comparator "i;nope" "X-A" "a";',
     's.sieve:2:1: comparator "i;nope" is not supported (i;ascii-casemap, i;octet, i;ascii-numeric)'),
    ('addheader :index 1 "X-A" "v";', "s.sieve:2:11: unknown tag :index for addheader"),
    ('addheader "X-A" "a\0b";', "s.sieve:2:1: addheader: the value contains a NUL character"),
], ids=["space", "colon", "empty", "last-alone", "index-0", "one-arg", "three-args",
        "comparator", "addheader-index", "nul"])
def test_compile_errors_name_file_line_column(script, expected):
    assert expected in errors(REQUIRE + script)


def test_disabled_it_is_an_unknown_extension():
    assert errors('require "editheader";\n', extensions=())[0] == \
        's.sieve:1:9: unsupported extension "editheader"'
    assert errors('require "nonesuch";\n', extensions=())[0] == \
        's.sieve:1:9: unsupported extension "nonesuch"'


def test_enabling_takes_effect_for_a_cached_script(tmp_path):
    from lda.sieve import script

    script._memo.clear()
    path, cache = tmp_path / "s.sieve", tmp_path / "cache"
    path.write_text('require "editheader";\naddheader "X-A" "1";\n')
    assert load_script(path, cache, ON).cache_status == "cache written"
    with pytest.raises(SieveError) as caught:
        load_script(path, cache)  # from memory, now disabled
    assert caught.value.lines(str(path))[0] == f'{path}:1:9: unsupported extension "editheader"'
    script._memo.clear()
    with pytest.raises(SieveError):
        load_script(path, cache)  # from the cache file, disabled
    assert load_script(path, cache, ON).cache_status == "memory"
    script._memo.clear()


# --- adding and deleting -----------------------------------------------------

def test_addheader_goes_on_top_and_last_at_the_end():
    outcome = edited('addheader "X-First" "1";\naddheader :last "X-End" "2";\n')
    assert outcome.errors == []
    assert fields(outcome)[0] == "X-First: 1" and fields(outcome)[-1] == "X-End: 2"
    assert fields(outcome)[1:-1] == PLAIN.split("\n\n")[0].split("\n")


def test_addheader_goes_below_the_mtas_trace_on_top():
    msg = "Return-Path: <a@b.example>\nDelivered-To: roadrunner@acme.example.com\n" + PLAIN
    outcome = edited('addheader "X-New" "1";\n', msg)
    assert fields(outcome, msg)[:3] == ["Return-Path: <a@b.example>",
                                        "Delivered-To: roadrunner@acme.example.com",
                                        "X-New: 1"]


@pytest.mark.parametrize("script, left", [
    ('deleteheader "x-hello";', []),
    ('deleteheader :index 1 "X-Hello";', ["two", "three"]),
    ('deleteheader :index 1 :last "X-Hello";', ["one", "two"]),
    ('deleteheader :index 2 :last "X-Hello";', ["one", "three"]),
    ('deleteheader :index 4 "X-Hello";', ["one", "two", "three"]),
    ('deleteheader :contains "X-Hello" ["tw", "thr"];', ["one"]),
    ('deleteheader :matches "X-Hello" "*e";', ["two"]),
    ('deleteheader :comparator "i;octet" "X-Hello" "ONE";', ["one", "two", "three"]),
    ('deleteheader "X-Hello" "ONE";', ["two", "three"]),
    ('deleteheader :index 2 :contains "X-Hello" "one";', ["one", "two", "three"]),
    # RFC 5293 section 7's two examples
    ('deleteheader :index 1 "X-Hello";\ndeleteheader :index 2 "X-Hello";', ["two"]),
    ('addheader "X-Hello" "World";\ndeleteheader :index 1 "X-Hello";',
     ["one", "two", "three"]),
], ids=["all", "index", "index-last", "index-2-last", "index-beyond", "contains", "matches",
        "octet", "casemap", "index-then-pattern", "rfc-first-and-third", "rfc-unchanged"])
def test_deleteheader(script, left):
    outcome = edited(script + "\n", TRACED)
    assert outcome.errors == []
    assert [f.split(": ", 1)[1] for f in fields(outcome, TRACED) if f.startswith("X-Hello")] \
        == left


def test_later_tests_see_the_edits():
    outcome = edited('addheader "X-Sorted" "yes";\n'
                     'addheader "Reply-To" "Help <help@example.org>";\n'
                     'deleteheader "X-Caffeine";\n'
                     'if allof (header :is "x-sorted" "yes", exists "X-Sorted",\n'
                     '          address :domain "reply-to" "example.org",\n'
                     '          not exists "X-Caffeine") { discard; }\n')
    assert outcome.describe() == ["discard"]


def test_a_runtime_error_keeps_the_original_header():
    outcome = edited('addheader "X-A" "1";\nset "n" "bad name";\naddheader "${n}" "v";\n')
    assert outcome.errors == ['line 4: addheader: invalid field name "bad name"']
    assert outcome.header is None and outcome.implicit_keep


# --- protected fields --------------------------------------------------------

@pytest.mark.parametrize("name", ["Received", "auto-submitted", "Return-Path", "Delivered-To"])
def test_protected_fields_are_neither_added_nor_deleted(name):
    msg = f"{name}: kept\n" + PLAIN
    outcome = edited(f'deleteheader "{name}";\naddheader "{name}" "forged";\n', msg)
    assert outcome.errors == []
    assert [f for f in fields(outcome, msg) if f.lower().startswith(name.lower() + ":")] == \
        [f"{name}: kept"]
    assert outcome.log[0] == f"line 2: {name} is a protected header field: left as it is"


def test_the_site_protects_more_but_never_subject():
    options = {"sieve_editheader_protected": ["X-Caffeine", "Subject"]}
    outcome = edited('deleteheader "x-caffeine";\ndeleteheader "Subject";\n', options=options)
    names = [f.split(":")[0] for f in fields(outcome)]
    assert "X-Caffeine" in names and "Subject" not in names


# --- hostile values ----------------------------------------------------------

def test_line_breaks_in_a_value_cannot_make_a_second_field():
    outcome = edited('set "v" "a\r\nBcc: victim@example.org\n\nbody";\n'
                     'addheader "X-Note" "${v}";\n'
                     'if exists "Bcc" { discard; }\n')
    assert outcome.describe() == ["keep (implicit)"]
    assert outcome.header[0] == (b"x-note", b"a Bcc: victim@example.org body",
                                 b"X-Note: a Bcc: victim@example.org body\n")


def test_non_ascii_is_encoded_and_long_values_fold():
    words = " ".join(f"word{i:02}" for i in range(30))
    outcome = edited(f'addheader "X-Utf" "héllo wörld {words}";\n'
                     f'if header :is "X-Utf" "héllo wörld {words}" {{ discard; }}\n')
    raw = outcome.header[0][2]
    assert raw.startswith(b"X-Utf: =?utf-8?b?aMOpbGxvIHfDtnJsZA==?= word00 ")
    assert raw.isascii() and all(len(line) <= LINE for line in raw.split(b"\n"))
    assert outcome.describe() == ["discard"]  # the test decodes it


def test_a_nul_from_a_variable_is_refused():
    outcome = edited('set "v" "a\0b";\naddheader "X-A" "${v}";\n')
    assert outcome.errors == ["line 3: addheader: the value contains a NUL character"]


@pytest.mark.parametrize("size, options, ok", [
    (2048, {}, True), (2049, {}, False),
    (4000, {"sieve_editheader_max_header_size": 4096}, True)])
def test_value_size_cap(size, options, ok):
    outcome = edited(f'addheader "X-Big" "{"x" * size}";\n', options=options)
    assert (outcome.errors == []) == ok
    if not ok:
        assert "sieve_editheader_max_header_size (2048)" in outcome.errors[0]
    else:
        assert all(len(line) <= LINE for line in outcome.header[0][2].split(b"\n"))


def test_edit_count_cap():
    script = "".join(f'addheader "X-{i}" "v";\n' for i in range(MAX_EDITS + 1))
    outcome = edited(script)
    assert outcome.errors == [f"line {MAX_EDITS + 2}: addheader: more than {MAX_EDITS} "
                              "header edits"]
    assert outcome.header is None


# --- delivery ----------------------------------------------------------------

MESSAGE = (b"Received: from relay.example.net by mx.example.org\n"
           b"From: Sender <sender@example.org>\n"
           b"To: alice@example.org\n"
           b"X-Spam: yes\n"
           b"Subject: test\n"
           b"Message-ID: <e1@example.org>\n"
           b"\n"
           b"Body line.\n\n  X-Not-A-Header: in the body\r\nlast")


def edit_site(make_site, **settings):
    site = make_site(sieve_extensions_extra=ON, **settings)
    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text(
        'require ["editheader", "copy", "fileinto", "mailbox"];\n'
        'deleteheader "X-Spam";\n'
        'addheader "X-Filtered" "by lda";\n'
        'redirect :copy "bob@elsewhere.example.net";\n'
        'fileinto :create "Sorted";\n'
        'addheader :last "X-Last" "yes";\n'
        'if header :is "X-Last" "yes" { keep; }\n')
    return site, box


def test_delivery_stores_and_redirects_the_edited_message(make_site):
    site, box = edit_site(make_site)
    site.deliver(MESSAGE, "alice@example.org", check=0)
    expected = (b"Return-Path: <sender@example.org>\n"
                b"Delivered-To: alice@example.org\n"
                b"X-Filtered: by lda\n"
                b"Received: from relay.example.net by mx.example.org\n"
                b"From: Sender <sender@example.org>\n"
                b"To: alice@example.org\n"
                b"Subject: test\n"
                b"Message-ID: <e1@example.org>\n"
                b"X-Last: yes\n"
                b"\n"
                b"Body line.\n\n  X-Not-A-Header: in the body\nlast")  # CRLF became LF
    [inbox] = maildir_files(box)
    [sorted_] = maildir_files(box / ".Sorted")
    assert inbox.read_bytes() == expected and sorted_.read_bytes() == expected
    vsize = len(expected) + expected.count(b"\n")  # W=: the size with CRLF line ends
    assert inbox.name.endswith(f",S={len(expected)},W={vsize}")
    [(args, sent)] = site.sent()
    # the redirected copy without the stored Return-Path (RFC 5321 section 4.4)
    assert args[-1] == "bob@elsewhere.example.net"
    assert sent == expected.removeprefix(b"Return-Path: <sender@example.org>\n")
    assert list((box / "tmp").iterdir()) == []  # the edited copy is gone


def test_delivery_with_editheader_disabled_keeps_the_message_as_it_came(make_site):
    site = make_site()
    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text('require "editheader";\ndeleteheader "X-Spam";\n')
    done = site.deliver(MESSAGE, "alice@example.org", check=0)
    [stored] = maildir_files(box)
    assert stored.read_bytes().endswith(MESSAGE.replace(b"\r\n", b"\n"))
    assert b'lda.sieve:1:9: unsupported extension "editheader"' in done.stderr


def test_sieve_commands_follow_the_switch(make_site, tmp_path):
    script = tmp_path / "edit.sieve"
    script.write_text('require "editheader";\naddheader "X-A" "1";\ndeleteheader "Subject";\n')
    off, on = make_site(), make_site(sieve_extensions_extra=ON)
    done = off.run("sieve", "check", str(script), check=65)
    assert done.stderr.decode().startswith(f'{script}:1:9: unsupported extension "editheader"')
    on.run("sieve", "check", str(script), check=0)
    done = on.run("sieve", "test", str(script), input=MESSAGE, check=0)
    assert done.stdout == b"keep (implicit)\n"
    assert f"{script}: header: deleted subject\n{script}: header: added X-A: 1\n" \
        in done.stderr.decode()
    on.create("alice@example.org")
    on.run("sieve", "install", "alice@example.org", str(script), check=0)
    off.create("alice@example.org")
    off.run("sieve", "install", "alice@example.org", str(script), check=65)


def test_the_next_script_of_a_sequence_sees_the_edits(make_site, tmp_path):
    before = tmp_path / "before.sieve"
    before.write_text('require "editheader";\naddheader "X-Checked" "spam";\n'
                      'deleteheader "X-Spam";\n')
    site = make_site(sieve_extensions_extra=ON, sieve_before=[str(before)])
    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text(
        'require ["fileinto", "mailbox"];\n'
        'if allof (header :is "X-Checked" "spam", not exists "X-Spam") {\n'
        '  fileinto :create "Junk";\n}\n')
    site.deliver(MESSAGE, "alice@example.org", check=0)
    [stored] = maildir_files(box / ".Junk")
    head = stored.read_bytes().split(b"\n\n")[0]
    assert b"\nX-Checked: spam\nReceived: " in head and b"X-Spam" not in head
    assert maildir_files(box) == []


def test_a_body_test_after_an_edit_still_reads_the_body(make_site, tmp_path):
    """The next script of a sequence sees the edited header and can still
    read the body (body/mime read the staged copy)."""
    before = tmp_path / "before.sieve"
    before.write_text('require "editheader";\naddheader "X-Checked" "yes";\n')
    site = make_site(sieve_extensions_extra=ON, sieve_before=[str(before)])
    box = site.create("alice@example.org")
    body_word = MESSAGE.split(b"\n\n", 1)[1].split()[0].decode()
    (box / "lda.sieve").write_text(
        'require ["fileinto", "mailbox", "body"];\n'
        f'if allof (header :is "X-Checked" "yes", body :contains "{body_word}") {{\n'
        '  fileinto :create "Seen";\n}\n')
    done = site.deliver(MESSAGE, "alice@example.org", check=0)
    assert len(maildir_files(box / ".Seen")) == 1, done.stderr
    assert maildir_files(box) == []


def test_a_stale_return_path_lda_drops_does_not_stop_the_edits(make_site):
    site = make_site(sieve_extensions_extra=ON)
    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text('require "editheader";\naddheader :last "X-A" "1";\n')
    done = site.deliver(b"Return-Path: <someone@else.example>\n" + MESSAGE,
                        "alice@example.org", check=0)
    [stored] = maildir_files(box)
    head = stored.read_bytes().split(b"\n\n")[0]
    assert head.startswith(b"Return-Path: <sender@example.org>\nDelivered-To: alice@")
    assert head.count(b"Return-Path") == 1 and head.endswith(b"\nX-A: 1")
    assert b"not applied" not in done.stderr


def test_a_redirect_kept_for_retry_keeps_the_edits(make_site, tmp_path):
    failing = tmp_path / "failing-sendmail"
    failing.write_text("#!/bin/sh\nexit 75\n")
    failing.chmod(0o755)
    site, box = edit_site(make_site, sendmail=[str(failing)])
    site.deliver(MESSAGE, "alice@example.org", check=0)
    [spooled] = (site.state / "databases" / "default" / "partial").iterdir()
    [inbox] = maildir_files(box)
    assert spooled.read_bytes() == inbox.read_bytes()
    assert b"X-Filtered: by lda\n" in spooled.read_bytes()


def test_deleting_message_id_does_not_change_what_is_a_resend(make_site):
    site = make_site(sieve_extensions_extra=ON)
    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text('require "editheader";\ndeleteheader "Message-ID";\n')
    site.deliver(MESSAGE, "alice@example.org", check=0)
    site.deliver(MESSAGE, "alice@example.org", check=0)  # DeliveredTo: a duplicate
    [stored] = maildir_files(box)
    assert b"Message-ID" not in stored.read_bytes()

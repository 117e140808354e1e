"""lda.sieve.procmail and `lda procmail-convert`: procmail recipes as Sieve."""

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from conftest import write_lda_toml
from lda.sieve import compile_script
from lda.sieve.procmail import TO_FIELDS, convert

HOME = "/home/u"


def translate(rc, maildir=True):
    """(Sieve lines after the heading, requires line or None, problems),
    with MAILDIR set to the Maildir first (as an exact conversion needs)
    unless maildir is false."""
    if maildir:
        rc = f"MAILDIR={HOME}/Maildir\n" + rc
    script, problems = convert(rc, "rc", home=HOME)
    compile_script(script)  # whatever is produced must compile
    lines = script.splitlines()
    assert lines[0] == "# Sieve script converted from rc by lda procmail-convert."
    requires = lines[2] if lines[2:3] and lines[2].startswith("require") else None
    body = [line for line in lines[3 if requires else 2:]
            if line and not line.strip().startswith("# rc line")]
    return body, requires, problems


def stored(test, folder, stop=True):
    inner = [f'    fileinto :create "{folder}";'] + (["    stop;"] if stop else [])
    return [f"if {test} {{", *inner, "}"]


FILEINTO = 'require ["fileinto", "mailbox"];'

TRANSLATED = [
    ("subject-contains", ":0:\n* ^Subject:.*foo\n.Lists/\n",
     stored('header :contains "subject" "foo"', "Lists"), FILEINTO),
    ("from-escaped-dot", ":0\n* ^From:.*bar@example\\.com\n.Bar/\n",
     stored('header :contains "from" "bar@example.com"', "Bar"), FILEINTO),
    ("list-id", ":0:\n* ^List-Id:.*python-dev\n$MAILDIR/.Lists.python-dev/\n",
     stored('header :contains "list-id" "python-dev"', "Lists.python-dev"), FILEINTO),
    ("anchored-prefix", ":0\n* ^Subject: \\[ADV\\]\n.Ads/\n",
     stored('header :matches "subject" "[ADV]*"', "Ads"), FILEINTO),
    ("anchored-exact", ":0\n* ^X-Spam-Flag: YES$\n.Junk/\n",
     stored('header :is "x-spam-flag" "YES"', "Junk"), FILEINTO),
    ("anchored-suffix", ":0\n* ^Subject:.*urgent$\n.Urgent/\n",
     stored('header :matches "subject" "*urgent"', "Urgent"), FILEINTO),
    ("dot-is-one-character", ":0\n* ^Subject:.*a.c\n.X/\n",
     stored('header :matches "subject" "*a?c*"', "X"), FILEINTO),
    ("wildcard-characters-escaped", ":0\n* ^Subject: why\\?\n.Why/\n",
     stored('header :matches "subject" "why\\\\?*"', "Why"), FILEINTO),
    ("header-present", ":0\n* ^X-Loop:\n.Loops/\n", stored('exists "x-loop"', "Loops"),
     FILEINTO),
    ("negation", ":0\n* !^From:.*friend\n.Strangers/\n",
     stored('not header :contains "from" "friend"', "Strangers"), FILEINTO),
    ("two-conditions", ":0\n* ^From:.*boss\n* ^Subject:.*urgent\n.Boss/\n",
     stored('allof(header :contains "from" "boss", header :contains "subject" "urgent")',
            "Boss"), FILEINTO),
    ("unconditional", ":0:\n.Archive/\n", ['fileinto :create "Archive";', "stop;"], FILEINTO),
    ("absolute-path-in-maildir", ":0\n* ^Subject:.*spam\n/home/u/Maildir/.Spam/\n",
     stored('header :contains "subject" "spam"', "Spam"), FILEINTO),
    ("maildir-assignment-trailing-slash",
     "MAILDIR=$HOME/Maildir/\n:0\n* ^Subject:.*x\n${MAILDIR}.Lists.sub/\n",
     stored('header :contains "subject" "x"', "Lists.sub"), FILEINTO),
    ("default-is-keep", "DEFAULT=$HOME/Maildir/\n:0\n* ^Subject:.*x\n$DEFAULT\n",
     ["if header :contains \"subject\" \"x\" {", "    keep;", "    stop;", "}"], None),
    ("dev-null-is-discard", ":0\n* ^Subject:.*\\[spam\\]\n/dev/null\n",
     ['if header :contains "subject" "[spam]" {', "    discard;", "    stop;", "}"], None),
    ("forward-is-redirect", ":0\n* ^From:.*mom\n! me@elsewhere.example\n",
     ['if header :contains "from" "mom" {', '    redirect "me@elsewhere.example";',
      "    stop;", "}"], None),
    ("forward-several-with-continuation",
     ":0\n! a@example.org \\\n   b@example.org\n",
     ['redirect "a@example.org";', 'redirect "b@example.org";', "stop;"], None),
    ("copy-forward", ":0c\n* ^From:.*boss\n! me@elsewhere.example\n",
     ['if header :contains "from" "boss" {', '    redirect :copy "me@elsewhere.example";',
      "}"], 'require ["copy"];'),
    ("copy-folder", ":0c:\n.Backup/\n", ['fileinto :copy :create "Backup";'],
     'require ["copy", "fileinto", "mailbox"];'),
    ("formail-dedup", ":0 Wh: msgid.lock\n| formail -D 8192 msgid.cache\n",
     ["if duplicate {", "    discard;", "    stop;", "}"], 'require ["duplicate"];'),
    ("formail-dedup-header-and-body", ":0 Whb: msgid.lock\n| formail -D 8192 msgid.cache\n",
     ["if duplicate {", "    discard;", "    stop;", "}"], 'require ["duplicate"];'),
    ("forward-header-and-body", ":0 hb\n! me@elsewhere.example\n",
     ['redirect "me@elsewhere.example";', "stop;"], None),
    ("copy-forward-then-another-address", ":0c\n! a@example.org\n:0\n! b@example.org\n",
     ['redirect :copy "a@example.org";', 'redirect "b@example.org";', "stop;"],
     'require ["copy"];'),
    ("nested-block", ":0\n* ^From:.*friends\n{\n  :0c\n  ! archive@example.org\n\n"
     "  :0\n  .Friends/\n}\n",
     ['if header :contains "from" "friends" {', '    redirect :copy "archive@example.org";',
      '    fileinto :create "Friends";', "    stop;", "}"],
     'require ["copy", "fileinto", "mailbox"];'),
    ("block-on-one-line", ":0\n* ^From:.*x\n{ :0\n  /dev/null\n}\n",
     ['if header :contains "from" "x" {', "    discard;", "    stop;", "}"], None),
    # Exact since a delivery's Sieve size leaves out lda's own Return-Path and
    # Delivered-To, as procmail's leaves out its From_ line (SIDE_BY_SIDE below
    # checks a byte either side with the real procmail).
    ("size-over", ":0\n* > 1000000\n.Big/\n", stored("size :over 1000000", "Big"), FILEINTO),
    ("size-under-negated", ":0\n* ! < 100\n.Big/\n", stored("not size :under 100", "Big"),
     FILEINTO),
    # procmail reads the field as sent, where a space follows the colon: a
    # "." or ".*" first takes it, as it took nothing in the value Sieve sees.
    ("dot-star-reaches-the-space", ":0\n* ^Subject:.* foo\n.Foo/\n",
     stored('header :matches "subject" ["* foo*", "foo*"]', "Foo"), FILEINTO),
    ("dot-is-the-space", ":0\n* ^Subject:.foo\n.Foo/\n",
     stored('header :matches "subject" "foo*"', "Foo"), FILEINTO),
    ("comments-and-assignments-ignored", "# hello\nLOGFILE=$HOME/log\nVERBOSE=off\n\n"
     ":0\n# a comment between\n* ^Subject:.*x\n.X/\n",
     stored('header :contains "subject" "x"', "X"), FILEINTO),
]


@pytest.mark.parametrize("rc, expected, requires", [pytest.param(rc, e, r, id=i)
                                                    for i, rc, e, r in TRANSLATED])
def test_translated_recipes(rc, expected, requires):
    body, found_requires, problems = translate(rc)
    assert problems == []
    assert body == expected
    assert found_requires == requires


def test_to_fields_are_procmails():
    """procmailrc(5)'s ^TO_ regex, written out: Delivered-To, Envelope-To and
    X-Original-To are not in it."""
    assert sorted(TO_FIELDS) == sorted([
        "to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc",
        "original-to", "original-cc", "original-bcc", "original-resent-to",
        "original-resent-cc", "original-resent-bcc",
        "x-envelope-to", "apparently-to", "apparently-resent-to"])


@pytest.mark.parametrize("macro, kept, left_out", [
    ("^TO_", ["* alice@example.org*", "*<alice@example.org*", "*+alice@example.org*"],
     ["*-alice@example.org*", "*.alice@example.org*", "*_alice@example.org*",
      "*5alice@example.org*", "*alice@example.org*"]),
    ("^TO", ["*-alice@example.org*", "*5alice@example.org*", "*.alice@example.org*"],
     ["*xalice@example.org*", "*alice@example.org*"]),
], ids=["address-boundary", "word-boundary"])
def test_to_macros_keep_procmails_boundary(macro, kept, left_out):
    """The text after ^TO_ is first in the value or follows a character no
    address has; after ^TO, one no word has."""
    script, problems = convert(f"MAILDIR={HOME}/Maildir\n:0\n* {macro}alice@example\\.org"
                               "\n.A/\n", "rc", home=HOME)
    compile_script(script)
    assert problems == []
    assert '"alice@example.org*"' in script
    assert all(f'"{key}"' in script for key in kept)
    assert not any(f'"{key}"' in script for key in left_out)


UNTRANSLATED = [
    ("pipe", ":0\n| /usr/bin/vacation me\n", 1, "a pipe to a program"),
    ("body-condition", ":0 B\n* viagra\n/dev/null\n", 1, "flag B"),
    ("chaining", ":0 A\n* ^Subject:.*x\nX/\n", 1, "flag A"),
    ("alternation", ":0\n* ^Subject: (urgent|important)\nU/\n", 1, "more than literals"),
    ("character-class", ":0\n* ^Subject:.*[0-9]+\nU/\n", 1, "more than literals"),
    ("word-boundary", ":0\n* ^Subject:.*\\<x\\>\nU/\n", 1, "word boundary"),
    ("variable-condition", ":0\n* $ ^From:.*${ME}\nU/\n", 1, "variables, programs"),
    ("program-condition", ":0\n* ? test -f /tmp/x\nU/\n", 1, "variables, programs"),
    ("scoring", ":0\n* 100^0 ^Subject:.*x\nU/\n", 1, "scoring"),
    ("envelope-from-line", ":0\n* ^From .*daemon\nU/\n", 1, "not ^Header:... or ^TO_"),
    ("outside-the-maildir", ":0:\n* ^Subject:.*x\n/var/mail/u\n", 1, "/var/mail/u is outside"),
    ("unknown-variable", ":0\n$LISTS/x/\n", 1, "$LISTS is not known"),
    ("backquoted-variable", "DIR=`pwd`\n:0\n$DIR/x/\n", 2, "$DIR is not known"),
    ("local-user-forward", ":0\n! bob\n", 1, "not a full address"),
    ("header-only", ":0 h\nHeaders/\n", 1, "only the header"),
    ("cloned-block", ":0 c\n{\n  :0\n  /dev/null\n}\n", 1, "a cloned block"),
    ("includerc", "INCLUDERC=$HOME/.procmail/lists.rc\n", 1, "INCLUDERC reads another"),
    ("no-action", ":0\n* ^Subject:.*x\n", 1, "recipe without an action"),
    ("not-a-recipe", "garbage here\n", 1, "neither a recipe nor an assignment"),
    ("stray-brace", "}\n", 1, 'a "}" without its "{"'),
    ("two-folders", ":0\nA/ B/\n", 1, "more than one folder"),
    ("unsafe-folder", ":0\nA..B/\n", 1, "leading, trailing or double"),
    # Found side by side with procmail: each converted silently and filed
    # the message elsewhere.  \/ marks where $MATCH starts and matches
    # nothing; b alone stores the body without its header; f on a forward
    # feeds the message through a filter and goes on.
    ("match-marker", ":0\n* ^Subject:.*foo\\/bar\nHit/\n", 1, "\\/"),
    ("body-only", ":0 b\nHit/\n", 1, "only the body would be stored (flag b)"),
    ("filtered-forward", ":0 f\n! fwd@example.net\n", 1, "flag f"),
    # Found side by side with procmail: formail -D fed only the body finds no
    # Message-ID there, and one on a copy or as a filter does not end the
    # delivery, so procmail discards nothing where the conversion discarded
    # the message the second time round.
    ("formail-dedup-body-only", ":0 Wb: msgid.lock\n| formail -D 8192 msgid.cache\n", 1,
     "only the body would be fed to formail -D (flag b)"),
    ("formail-dedup-copy", ":0 Whc: msgid.lock\n| formail -D 8192 msgid.cache\n", 1,
     "formail -D on a copy (flag c)"),
    ("formail-dedup-filter", ":0 Whf: msgid.lock\n| formail -D 8192 msgid.cache\n", 1,
     "formail -D as a filter (flag f)"),
]


@pytest.mark.parametrize("rc, line, reason", [pytest.param(rc, n, r, id=i)
                                               for i, rc, n, r in UNTRANSLATED])
def test_untranslated_recipes_are_listed_with_their_line(rc, line, reason):
    body, _, problems = translate(rc, maildir=False)
    assert len(problems) == 1
    assert problems[0].line == line
    assert problems[0].kind == "not translated"
    assert reason in problems[0].reason
    assert body[0].startswith(f"# NOT TRANSLATED (rc line {line}): ")
    assert all(text.startswith("#") for text in body)


def test_translated_and_untranslated_keep_their_order():
    rc = ":0\n* ^Subject:.*a\n.A/\n\n:0\n| prog\n\n:0\n* ^Subject:.*b\n.B/\n"
    script, problems = convert(f"MAILDIR={HOME}/Maildir/\n" + rc, "rc", home=HOME)
    assert problems == [(6, "not translated", "a pipe to a program")]
    assert script.index('"a"') < script.index("# NOT TRANSLATED (rc line 6)") \
        < script.index('"b"')
    assert "#   | prog" in script


RC = """\
# Ann's procmailrc
MAILDIR=$HOME/Maildir/
DEFAULT=$MAILDIR
LOGFILE=$HOME/.procmail.log

:0 Wh: msgid.lock
| formail -D 8192 msgid.cache

:0:
* ^List-Id:.*python-dev
.Lists.Python/

:0c
* ^From:.*boss@example\\.com
! ann@phone.example

:0
* ^Subject:.*\\[SPAM\\]
/dev/null

:0 B
* viagra
/dev/null
"""
MESSAGE = b"""\
From: Guido <guido@python.example.org>
To: python-dev@python.example.org
Subject: PEP 999
List-Id: Python development <python-dev.python.example.org>
Message-ID: <pep999@python.example.org>

Yay.
"""


def test_cli_converts_and_lists_what_it_could_not(user, tmp_path):
    rc = tmp_path / "procmailrc"
    rc.write_text(RC)
    done = user.run("procmail-convert", str(rc), check=65)
    script = done.stdout.decode()
    assert done.stderr.decode() == f"{rc}:21: not translated: flag B (chaining, body or " \
                                   "scoring) not translatable\n"
    assert script.splitlines()[2] == 'require ["copy", "duplicate", "fileinto", "mailbox"];'
    assert f"# NOT TRANSLATED ({rc} line 21): flag B" in script
    assert 'fileinto :create "Lists.Python";' in script
    sieve = tmp_path / "converted.sieve"
    sieve.write_text(script)
    user.run("sieve", "check", str(sieve), check=0)
    tried = user.run("sieve", "test", str(sieve), input=MESSAGE, check=0)
    assert tried.stdout.decode().splitlines() == ['fileinto "Lists.Python" :create']


def test_cli_missing_file_is_a_usage_error(user, tmp_path):
    done = user.run("procmail-convert", str(tmp_path / "none"), check=64)
    assert b"does not exist" in done.stderr


# What procmail itself does: the real procmail with a private rcfile, next to
# what `lda sieve test` does with the converted script.

PROCMAIL = shutil.which("procmail")
needs_procmail = pytest.mark.skipif(PROCMAIL is None,
                                    reason="procmail is not installed (Debian: procmail)")


def procmail_matches(tmp_path, condition, header, flags=""):
    """Whether the real procmail's recipe `:0 flags` with `condition`
    matches a message with `header`: it logs MATCH, delivers nothing."""
    rc = tmp_path / "probe.rc"
    rc.write_text(f"DEFAULT=/dev/null\nLOGFILE=/dev/stderr\n:0 {flags}\n{condition}\n"
                  '{ LOG="MATCH\n" }\n')
    msg = f"From: b@example.org\n{header}\nSubject: s\n\nbody\n".encode()
    done = subprocess.run([PROCMAIL, "-m", str(rc)], input=msg, capture_output=True,
                          check=True)
    return b"MATCH" in done.stderr


def converted_matches(user, tmp_path, condition, header, flags=""):
    """Whether the script converted from the same recipe files the message."""
    script, _ = convert(f":0 {flags}\n{condition}\n.Hit/\n", "rc", home=str(user.home))
    path = tmp_path / "converted.sieve"
    path.write_text(script)
    msg = f"From: b@example.org\n{header}\nSubject: s\n\nbody\n".encode()
    done = user.run("sieve", "test", str(path), input=msg, check=0)
    return b'"Hit"' in done.stdout


DESTINATIONS = [
    ("to", "To: alice@example.org"),
    ("word-before", "To: malice@example.org"),
    ("hyphen-before", "To: x-alice@example.org"),
    ("dot-before", "To: x.alice@example.org"),
    ("underscore-before", "To: x_alice@example.org"),
    ("plus-before", "To: x+alice@example.org"),
    ("angle-brackets", 'To: "Alice" <alice@example.org>'),
    ("no-space", "To:alice@example.org"),
    ("second-address", "To: malice@example.org, alice@example.org"),
    ("continuation-line", "To: bob@example.org,\n alice@example.org"),
    ("upper-case", "TO: ALICE@EXAMPLE.ORG"),
    ("longer-domain", "To: alice@example.orgy"),
    ("dot-is-any-character", "Cc: alice@exampleXorg"),
    ("original-cc", "Original-Cc: alice@example.org"),
    ("original-resent-bcc", "Original-Resent-Bcc: alice@example.org"),
    ("apparently-resent-to", "Apparently-Resent-To: alice@example.org"),
    ("x-envelope-to", "X-Envelope-To: alice@example.org"),
    ("delivered-to-is-not", "Delivered-To: alice@example.org"),
    ("envelope-to-is-not", "Envelope-To: alice@example.org"),
    ("x-original-to-is-not", "X-Original-To: alice@example.org"),
]


@needs_procmail
@pytest.mark.parametrize("macro", ["^TO_", "^TO"])
@pytest.mark.parametrize("header", [pytest.param(h, id=i) for i, h in DESTINATIONS])
def test_to_macros_match_where_procmail_matches(user, tmp_path, macro, header):
    condition = f"* {macro}alice@example.org"
    expected = procmail_matches(tmp_path, condition, header)
    assert converted_matches(user, tmp_path, condition, header) == expected


CHANGED = [
    ("mbox-file", ":0:\n* ^Subject:.*x\nlists\n", 2, "/home/u/Maildir/lists is an mbox "
     "file (no trailing /): it becomes the Maildir++ folder lists", '"lists"'),
    ("mh-folder", ":0\nlists/.\n", 2, "is an MH folder (/.)", '"lists"'),
    ("maildir-not-maildir-plus-plus", ":0\nLists/\n", 2,
     "procmail writes the Maildir /home/u/Maildir/Lists/, which is not a Maildir++ "
     "folder: it becomes the Maildir++ folder Lists (/home/u/Maildir/.Lists/)", '"Lists"'),
    ("maildir-below-a-folder", ":0\n.Lists/.sub/\n", 2, "not a Maildir++ folder",
     '"Lists.sub"'),
    ("case-sensitive-field-names", ":0 D\n* ^Subject:.*FOO\n.Foo/\n", 2,
     "flag D: procmail compares the field names case-sensitively too",
     'header :contains :comparator "i;octet" "subject" "FOO"'),
    ("no-space-after-colon", ":0\n* ^Subject:foo\n.Foo/\n", 2,
     "^Subject:f...: procmail wants no space after the colon", '"foo*"'),
    ("assignment-inside-a-block", ":0\n* ^From:.*x\n{\n  MAILDIR=/home/u/Maildir/.X\n}\n",
     5, "MAILDIR is set inside a block", 'header :contains "from" "x"'),
    # Found side by side with procmail: it writes a folder named INBOX
    # (.INBOX/), which the conversion filed into the inbox without a word.
    ("folder-named-inbox", ":0\n.INBOX/\n", 2, "procmail writes the Maildir "
     "/home/u/Maildir/.INBOX/, a folder an IMAP client cannot tell from the INBOX", None),
    ("mbox-default", "DEFAULT=/var/mail/u\n", 2, "DEFAULT: /var/mail/u is outside the "
     "Maildir; what no recipe delivers is kept in the INBOX of /home/u/Maildir", None),
    # Found side by side with procmail: Sieve compares RFC 2047 decoded text,
    # procmail the field as sent, so a condition on an encoded word's own
    # marks, or on non-ASCII text (which mail sends encoded), silently
    # matched other mail.
    ("encoded-word-marks", ":0\n* ^Subject:.*=\\?gb2312\\?\n.Gb/\n", 2,
     "^Subject:.*=\\?gb2312\\?: procmail matches the field as sent, RFC 2047 encoded "
     "words undecoded", '"=?gb2312?"'),
    ("non-ascii-text", ":0\n* ^Subject:.*café\n.Cafe/\n", 2, "^Subject:.*café: procmail "
     "matches the field as sent, RFC 2047 encoded words undecoded", '"café"'),
    # Found side by side with procmail: white space Sieve's value never has,
    # which the conversion dropped (before $) or kept in a key that could
    # not match (after the colon's one space) without a word.
    ("two-spaces-after-colon", ":0\n* ^Subject:  foo\n.Foo/\n", 2, "^Subject: with '  ' "
     "after the colon: procmail wants that white space, not the one space", '"foo*"'),
    ("tab-after-colon", ":0\n* ^Subject:\tfoo\n.Foo/\n", 2, "^Subject: with '\\t' after "
     "the colon: procmail wants that white space, not the one space", '"foo*"'),
    ("white-space-before-dollar", ":0\n* ^Subject: foo $\n.Foo/\n", 2, "^Subject: foo $: "
     "procmail wants white space at the end of the field", '"foo"'),
    # Found side by side with procmail: it stores a copy each time, Sieve
    # into a folder once (RFC 5228 section 2.10.3), so a :0c copy and a later
    # delivery to the same folder left one message where procmail left two.
    ("copy-then-the-same-folder", ":0c\n.Backup/\n\n:0\n* ^Subject:.*x\n.Backup/\n", 5,
     "procmail stores another copy in the Maildir++ folder Backup, where the :0c recipe "
     "on line 2 stored one", 'fileinto :create "Backup";'),
    ("copy-to-the-inbox-then-default", ":0c\n$MAILDIR/\nDEFAULT=$MAILDIR/\n", 4,
     "DEFAULT: procmail stores another copy in the INBOX, where the :0c recipe on line 2 "
     "stored one", "keep;"),
    # Found side by side with procmail: flag b or h alone forwards that part
    # of the message, and a :0c forward then another to the same address
    # sends two; redirect sends the whole message, and a redirect given twice
    # once (lda/sieve/interpreter.py), and the conversion said nothing.
    ("forward-body-only", ":0b\n! fwd@example.net\n", 2, "flag b: procmail forwards "
     "only the body, without the header; Sieve's redirect sends the whole message",
     'redirect "fwd@example.net";'),
    ("forward-header-only", ":0h\n! fwd@example.net\n", 2, "flag h: procmail forwards "
     "only the header, without the body; Sieve's redirect sends the whole message",
     'redirect "fwd@example.net";'),
    ("copy-forward-then-the-same-address", ":0c\n! fwd@example.net\n\n:0\n* ^Subject:.*x"
     "\n! fwd@example.net\n", 5, "procmail forwards another copy to fwd@example.net, "
     "where the :0c recipe on line 2 forwarded one; Sieve redirects a message to an "
     "address once", 'redirect "fwd@example.net";'),
    ("copy-forward-then-among-others", ":0c\n! fwd@example.net\n:0\n! other@example.com "
     "fwd@example.net\n", 4, "procmail forwards another copy to fwd@example.net, where "
     "the :0c recipe on line 2 forwarded one", 'redirect "other@example.com";'),
]


@pytest.mark.parametrize("rc, line, reason, kept", [pytest.param(rc, n, r, k, id=i)
                                                     for i, rc, n, r, k in CHANGED])
def test_changed_meaning_is_said_in_the_script_and_listed(rc, line, reason, kept):
    """What Sieve does differently is translated, with a comment above it
    and a problem naming its line (MAILDIR=/home/u/Maildir is line 1)."""
    body, _, problems = translate(rc)
    assert [(p.line, p.kind) for p in problems] == [(line, "changed meaning")]
    assert reason in problems[0].reason
    assert f"# CHANGED MEANING (rc line {line}): {problems[0].reason}" in [
        text.strip() for text in body]
    assert kept is None or any(kept in text for text in body)


@pytest.mark.parametrize("rc, reason", [
    (":0\n.Tagged/\n", "MAILDIR is /home/u, outside the Maildir /home/u/Maildir: "
     "procmail writes /home/u/.Tagged, the script a folder of /home/u/Maildir"),
    ("MAILDIR=$HOME/mail\n:0\n.Tagged/\n", "MAILDIR is /home/u/mail, outside"),
], ids=["procmails-own-maildir-is-home", "maildir-set-outside"])
def test_a_maildir_outside_is_said(rc, reason):
    body, _, problems = translate(rc, maildir=False)
    assert [p.kind for p in problems] == ["changed meaning"]
    assert problems[0].reason.startswith(reason)
    assert 'fileinto :create "Tagged";' in body


@pytest.mark.parametrize("rc, tail", [
    ("DEFAULT=$MAILDIR/.Rest/\n", ['fileinto :create "Rest";']),
    ("DEFAULT=/dev/null\n", ["discard;"]),
    ("DEFAULT=$HOME/Maildir/\n", []),
], ids=["maildir-plus-plus-folder", "dev-null", "the-maildir"])
def test_default_in_the_maildir_ends_the_script(rc, tail):
    """procmail stores in $DEFAULT what no recipe delivered: Sieve's
    implicit keep is the INBOX, so another folder is filed explicitly."""
    body, _, problems = translate(":0\n* ^Subject:.*x\n.X/\n" + rc)
    assert problems == []
    assert body[-len(tail) - 1:] == ["}", *tail]


def test_a_relative_maildir_is_taken_from_the_last():
    """procmail keeps MAILDIR=Maildir as written and chdirs there from the
    directory it is in ($HOME to start with)."""
    body, _, problems = translate(":0\n.Tagged/\n", maildir=False)
    assert problems[0].reason.startswith("MAILDIR is /home/u, outside")
    body, _, problems = translate("MAILDIR=Maildir\n:0\n.Tagged/\n", maildir=False)
    assert problems == []
    assert 'fileinto :create "Tagged";' in body


def test_a_folder_relative_to_an_unknown_maildir_is_not_guessed():
    body, _, problems = translate("MAILDIR=`pwd`\n:0\n.Tagged/\n", maildir=False)
    assert problems == [(2, "not translated", ".Tagged/ is relative to MAILDIR, which is "
                         "not known here")]


def test_a_block_left_out_shows_its_recipes_commented_out():
    script, problems = convert(":0 B\n* x\n{\n  :0\n  /dev/null\n}\n", "rc", home=HOME)
    assert [p[:2] for p in problems] == [(1, "not translated")]
    assert script.splitlines()[-5:] == ["#   {", "#       # rc line 4: :0",
                                        "#       discard;", "#       stop;", "#   }"]


def test_unknown_dollar_forms_are_not_kept_in_a_folder_name():
    body, _, problems = translate(":0\n${LISTS:-lists}/\n")
    assert problems[0][:2] == (2, "not translated")
    assert "has a $ form other than" in problems[0].reason


def test_cli_exact_conversion_exits_0_and_says_nothing(user, tmp_path):
    rc = tmp_path / "procmailrc"
    rc.write_text("MAILDIR=$HOME/Maildir/\nDEFAULT=$MAILDIR\n:0:\n* ^List-Id:.*python-dev\n"
                  ".Lists.Python/\n")
    done = user.run("procmail-convert", str(rc), check=0)
    assert done.stderr == b""
    assert b'fileinto :create "Lists.Python";' in done.stdout


def test_cli_names_each_changed_line_on_stderr(user, tmp_path):
    rc = tmp_path / "procmailrc"
    rc.write_text("MAILDIR=$HOME/mail\n:0:\n* ^Subject:.*x\nlists\n")
    done = user.run("procmail-convert", str(rc), check=65)
    home = user.home
    assert done.stderr.decode().splitlines() == [
        f"{rc}:2: changed meaning: MAILDIR is {home}/mail, outside the Maildir "
        f"{home}/Maildir: procmail writes {home}/mail/lists, the script a folder of "
        f"{home}/Maildir",
        f"{rc}:2: changed meaning: {home}/mail/lists is an mbox file (no trailing /): it "
        f"becomes the Maildir++ folder lists of {home}/Maildir"]
    assert done.stdout.decode().count("# CHANGED MEANING") == 2


def procmail_delivers(tmp_path, rc_text, msg):
    """Where the real procmail puts msg under rc_text, which must set
    MAILDIR and DEFAULT to absolute paths (procmail takes HOME from the
    password file, not the environment)."""
    home = tmp_path / "procmail-home"
    for directory in ("Maildir", "mail"):  # procmail stays put if it cannot chdir
        (home / directory).mkdir(parents=True, exist_ok=True)
    rc = tmp_path / "procmail.rc"
    rc.write_text(f"MAILDIR={home}\n" + rc_text.format(home=home))
    subprocess.run([PROCMAIL, "-m", str(rc)], input=msg, capture_output=True, check=True,
                   cwd=home)
    return landed(home)


def lda_delivers(user, rc_text, msg):
    """(Where `lda deliver` puts msg with the converted script as
    ~/.lda.sieve, the conversion's problems)."""
    script, problems = convert(rc_text.format(home=user.home), "rc", home=str(user.home))
    (user.home / ".lda.sieve").write_text(script)
    user.deliver(msg, "u@example.org", check=0)
    return landed(user.home, skip=(".lda.sieve", ".local")), problems


def landed(home, skip=()):
    """How many messages each Maildir holds in new/, and each other file
    (an mbox) once, relative to home; not the Maildir's own files (its
    quota, a folder's marker, the subscriptions lda adds a folder it makes
    to)."""
    found = Counter()
    for path in home.rglob("*"):
        rel = path.relative_to(home)
        if path.is_file() and rel.parts[0] not in skip:
            if path.parent.name == "new":
                found[str(path.parent.parent.relative_to(home))] += 1
            elif path.parent.name not in ("cur", "tmp") and path.name not in (
                    "maildirsize", "maildirfolder", "subscriptions"):
                found[str(rel)] = 1
    return found


SIDE_BY_SIDE = [
    ("maildir-plus-plus-folder", "MAILDIR={home}/Maildir/\nDEFAULT=$MAILDIR\n"
     ":0\n* ^Subject:.*tag\n.Tagged/\n", "Subject: tagged"),
    ("absolute-folder", "MAILDIR={home}/Maildir\nDEFAULT={home}/Maildir/\n"
     ":0\n* ^Subject:.*tag\n{home}/Maildir/.Tagged/\n", "Subject: tagged"),
    ("default-folder", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/.Rest/\n"
     ":0\n* ^Subject:.*tag\n.Tagged/\n", "Subject: other"),
    ("copy-then-default", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n:0c\n.Copy/\n",
     "Subject: x"),
    ("nested-block", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n:0\n* ^From:.*b@\n{{\n"
     "  :0\n  * ^TO_u@example\\.org\n  .Mine/\n}}\n", "Subject: x"),
    ("negation", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n:0\n* !^Subject:.*tag\n"
     ".Untagged/\n", "Subject: x"),
    ("size-just-under", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n:0\n* < 84\n.Small/\n",
     "Subject: x"),
    ("size-just-over", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n:0\n* > 83\n.Big/\n",
     "Subject: x"),
    ("maildir-outside", "MAILDIR={home}/mail\nDEFAULT={home}/Maildir/\n"
     ":0\n* ^Subject:.*tag\n.Tagged/\n", "Subject: tagged"),
    ("mbox-target", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n:0:\n* ^Subject:.*tag\n"
     "lists\n", "Subject: tagged"),
    ("not-maildir-plus-plus", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n"
     ":0\n* ^Subject:.*tag\nLists/\n", "Subject: tagged"),
    ("mbox-default", "MAILDIR={home}/Maildir\nDEFAULT={home}/mbox\n", "Subject: x"),
    ("variable-in-the-folder", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\nF=.Var\n"
     ":0\n${{F}}.Sub/\n", "Subject: x"),
    ("flag-D-field-name", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n"
     ":0 D\n* ^Subject:.*FOO\n.Foo/\n", "SUBJECT: FOO"),
    ("no-space-after-colon", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n"
     ":0\n* ^Subject:foo\n.Foo/\n", "Subject: foo"),
    ("assignment-in-a-block-not-run", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n"
     ":0\n* ^Subject:.*never\n{{\n  DEFAULT=$MAILDIR/.Never/\n}}\n", "Subject: x"),
    ("encoded-word-marks", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n"
     ":0\n* ^Subject:.*=\\?utf-8\\?\n.Encoded/\n", "Subject: =?utf-8?q?caf=C3=A9?="),
    ("non-ascii-text", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n"
     ":0\n* ^Subject:.*café\n.Cafe/\n", "Subject: =?utf-8?q?caf=C3=A9?="),
    ("dot-star-reaches-the-space", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n"
     ":0\n* ^Subject:.* foo\n.Foo/\n", "Subject: foo"),
    ("dot-is-the-space", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n"
     ":0\n* ^Subject:.foo\n.Foo/\n", "Subject: foo"),
    ("two-spaces-after-colon", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n"
     ":0\n* ^Subject:  foo\n.Foo/\n", "Subject: foo"),
    ("white-space-before-dollar", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n"
     ":0\n* ^Subject: foo $\n.Foo/\n", "Subject: foo"),
    ("copy-then-the-same-folder", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n"
     ":0c\n.Tagged/\n:0\n* ^Subject:.*tag\n.Tagged/\n", "Subject: tagged"),
    ("copy-to-the-inbox-then-default", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n"
     ":0c\n$MAILDIR/\n", "Subject: x"),
    ("copy-then-the-default-folder", "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/.Rest/\n"
     ":0c\n.Rest/\n", "Subject: x"),
]


@needs_procmail
@pytest.mark.parametrize("rc, header", [pytest.param(rc, h, id=i)
                                        for i, rc, h in SIDE_BY_SIDE])
def test_converted_script_delivers_where_procmail_does_unless_it_says(user, tmp_path, rc,
                                                                         header):
    """The real procmail and lda with the converted script, one message each:
    the same places when the conversion reports nothing; each case it
    reports has a message that shows the difference."""
    by_procmail, by_lda, problems = side_by_side(user, tmp_path, rc, header)
    assert (by_lda == by_procmail) == (problems == []), (by_procmail, by_lda, problems)


def side_by_side(user, tmp_path, rc, header):
    """(Where procmail puts a message with header, where lda puts it, the
    conversion's problems)."""
    msg = (f"From: b@example.org\nTo: u@example.org\n{header}\n"
           "Message-ID: <m@example.org>\n\nbody\n").encode()
    assert header != "Subject: x" or len(msg) == 83  # the size cases: a byte either side
    by_lda, problems = lda_delivers(user, rc, msg)
    return procmail_delivers(tmp_path, rc, msg), by_lda, problems


def sendmail_stand_in(directory):
    """A sendmail that keeps each message it is given in directory, with its
    arguments; the path."""
    directory.mkdir()
    script = directory / "sendmail"
    script.write_text(f'#!/bin/sh\nf="{directory}/$$.$(date +%s%N)"\n'
                      'echo "$@" > "$f.args" && cat > "$f.msg"\n')
    script.chmod(0o755)
    return script


def forwarded(directory):
    """How many copies of which part of the message each address was sent:
    procmail's sendmail gets the addresses after its flags, lda's after "--"."""
    found = Counter()
    for args in directory.glob("*.args"):
        words = args.read_text().split()
        addresses = words[words.index("--") + 1:] if "--" in words else \
            [w for w in words if not w.startswith("-")]
        header, _, body = args.with_suffix(".msg").read_bytes().partition(b"\n\n")
        part = "header" * (b"Message-ID: <m@example.org>" in header) + \
            "body" * (b"body" in body or header == b"body\n")
        found.update(f"{address} {part}" for address in addresses)
    return found


FORWARDS = [
    ("forward", ":0\n! fwd@example.net\n"),
    ("forward-body-only", ":0b\n! fwd@example.net\n"),
    ("forward-header-only", ":0h\n! fwd@example.net\n"),
    ("forward-header-and-body", ":0hb\n! fwd@example.net\n"),
    ("copy-forward-then-the-same-address", ":0c\n! fwd@example.net\n:0\n! fwd@example.net\n"),
    ("copy-forward-then-among-others", ":0c\n! fwd@example.net\n"
     ":0\n! other@example.com fwd@example.net\n"),
    ("copy-forward-then-another-address", ":0c\n! fwd@example.net\n:0\n! other@example.com\n"),
]


@needs_procmail
@pytest.mark.parametrize("rc", [pytest.param(rc, id=i) for i, rc in FORWARDS])
def test_converted_script_forwards_what_procmail_does_unless_it_says(user, tmp_path, rc):
    """procmail's SENDMAIL and lda's sendmail, stand-ins that keep what they
    are given: the same copies of the same parts to the same addresses when
    the conversion reports nothing."""
    msg = (b"From: b@example.org\nTo: u@example.org\nSubject: x\n"
           b"Message-ID: <m@example.org>\n\nbody\n")
    rc = "MAILDIR={home}/Maildir/\nDEFAULT=$MAILDIR\n" + rc
    by_procmail = procmail_delivers(
        tmp_path, f"SENDMAIL={sendmail_stand_in(tmp_path / 'procmail-sent')}\n" + rc, msg)
    config = write_lda_toml(tmp_path / "lda.toml", {
        "mode": "user", "sendmail": [str(sendmail_stand_in(tmp_path / "lda-sent")), "-i"]})
    user.env = dict(user.env, LDA_CONFIG=str(config))
    by_lda, problems = lda_delivers(user, rc, msg)
    by_procmail += forwarded(tmp_path / "procmail-sent")
    by_lda += forwarded(tmp_path / "lda-sent")
    assert by_procmail  # each case forwards something
    assert (by_lda == by_procmail) == (problems == []), (by_procmail, by_lda, problems)


@needs_procmail
@pytest.mark.parametrize("flags, translated", [
    ("Wh", True), ("W", True), ("Whb", True),
    ("Wb", False), ("Whc", False), ("Whf", False),
], ids=["header", "header-by-default", "header-and-body", "body-only", "copy", "filter"])
def test_formail_dedup_discards_where_procmail_does(user, tmp_path, flags, translated):
    """Two messages with one Message-ID: procmail with formail -D keeps the
    second out only when formail reads the header and its answer ends the
    delivery; where it does not, the conversion leaves the recipe out, as
    not translated.  (Their Date fields differ, so that lda's DeliveredTo
    takes the second for a message of its own, not a resend.)"""
    first, second = ((f"From: b@example.org\nTo: u@example.org\nSubject: x\nDate: {date}\n"
                      "Message-ID: <m@example.org>\n\nbody\n").encode()
                     for date in ("Mon, 1 Jan 2024 10:00:00 +0000",
                                  "Mon, 1 Jan 2024 11:00:00 +0000"))
    rc = (f"MAILDIR={{home}}/Maildir/\nDEFAULT=$MAILDIR\n:0 {flags}: {{home}}/../msgid.lock\n"
          "| formail -D 8192 {home}/../msgid.cache\n")
    procmail_delivers(tmp_path, rc, first)
    by_procmail = procmail_delivers(tmp_path, rc, second)
    lda_delivers(user, rc, first)
    by_lda, problems = lda_delivers(user, rc, second)
    assert by_lda == by_procmail == Counter({"Maildir": 1 if translated else 2})
    assert [p.kind for p in problems] == ([] if translated else ["not translated"])


# What lda(1) says the conversion does not report: only some messages show
# it, and there the script does what the condition was written for.
NOT_REPORTED = [
    ("ascii-text-encoded", ":0\n* ^Subject:.*cafe\n.Cafe/\n", "Subject: =?utf-8?q?caf=65?="),
    ("no-space-after-colon", ":0\n* ^Subject: foo\n.Foo/\n", "Subject:foo"),
    ("tab-after-colon", ":0\n* ^Subject: foo\n.Foo/\n", "Subject:\tfoo"),
    ("white-space-at-the-end", ":0\n* ^Subject:.*foo$\n.Foo/\n", "Subject: foo  "),
]


@needs_procmail
@pytest.mark.parametrize("rc, header", [pytest.param(rc, h, id=i)
                                        for i, rc, h in NOT_REPORTED])
def test_what_only_some_messages_show_is_not_reported(user, tmp_path, rc, header):
    rc = "MAILDIR={home}/Maildir\nDEFAULT=$MAILDIR/\n" + rc
    by_procmail, by_lda, problems = side_by_side(user, tmp_path, rc, header)
    assert problems == []
    assert by_lda != by_procmail


def test_man_page_says_what_the_exit_status_means():
    """lda(1)'s procmail-convert section: a script or a user's shell can
    tell an exact conversion from one to read."""
    page = (Path(__file__).parent.parent / "man" / "lda.1").read_text()
    section = page[page.index('.SS "lda procmail\\-convert"'):page.index(".SH EXIT STATUS")]
    assert "Exit status: 0 when the script does what the rcfile does" in section
    assert "65 when a line was changed or left out" in section
    assert "# CHANGED MEANING" in section and "# NOT TRANSLATED" in section


def test_cli_judges_folders_against_the_configured_maildir(user, tmp_path):
    """With maildir = "~/Mail" in lda.toml, MAILDIR=$HOME/Mail is the
    Maildir and $HOME/Maildir is outside it."""
    config = write_lda_toml(tmp_path / "lda.toml", {"mode": "user", "maildir": "~/Mail"})
    rc = tmp_path / "procmailrc"
    rc.write_text("MAILDIR=$HOME/Mail\n:0\n.Tagged/\n")
    env = {"LDA_CONFIG": str(config)}
    assert user.run("procmail-convert", str(rc), env=env, check=0).stderr == b""
    rc.write_text("MAILDIR=$HOME/Maildir\n:0\n.Tagged/\n")
    done = user.run("procmail-convert", str(rc), env=env, check=65)
    assert f"MAILDIR is {user.home}/Maildir, outside the Maildir {user.home}/Mail" \
        in done.stderr.decode()

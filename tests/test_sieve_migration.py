"""What a site moving from Dovecot would trip on: scripts and messages
where lda and Pigeonhole 0.5.19 (sieve-test, tests/pigeonhole.py) once
decided differently, each table run through both side by side."""

import tempfile

import pytest

import pigeonhole

needs_sieve_test = pytest.mark.skipif(pigeonhole.skip_reason() is not None,
                                      reason=pigeonhole.skip_reason() or "")

MESSAGE = b"From: a@example.org\nTo: b@example.org\nSubject: hi\n\nbody\n"


def side_by_side(user, tmp_path, script, message=MESSAGE, sender="a@example.org",
                 recipient="b@example.org"):
    """(Pigeonhole's Result, lda's Result) for one script and message."""
    script_path, message_path = tmp_path / "case.sieve", tmp_path / "case.eml"
    script_path.write_text(script)
    message_path.write_bytes(message)
    theirs = pigeonhole.pigeonhole(script_path, message_path, sender, recipient)
    ours = pigeonhole.lda(user.run, script_path, message_path, sender, recipient)
    return theirs, ours


# --- Code that never runs: what Pigeonhole leaves unvalidated ------------------
#
# Pigeonhole's validator works out which tests are constant (true, false,
# not, allof and anyof of constants, an ihave of an unknown extension) and
# does not validate a block whose test is constantly false, the elsif and
# else after a branch that is constantly true, nor the members of an allof
# after a constant false (of an anyof after a constant true).  Anything
# there, an unknown command or test, a missing require, a wrong argument,
# compiles and never runs; the same in a live branch is an error.

DEAD = {
    "if-false": 'if false { unknowncmd; }',
    "if-not-true": 'if not true { unknowncmd; }',
    "if-not-not-false": 'if not not false { unknowncmd; }',
    "anyof-false": 'if anyof(false) { unknowncmd; }',
    "anyof-false-false": 'if anyof(false, false) { unknowncmd; }',
    "allof-false-true": 'if allof(false, true) { unknowncmd; }',
    "allof-live-false": 'if allof(header :is "subject" "hi", false) { unknowncmd; }',
    "allof-false-unknown-test": 'if allof(false, unknowntest) { keep; }',
    "anyof-true-unknown-test": 'if anyof(true, unknowntest) { keep; }',
    "not-allof-false-unknown": 'if not allof(false, unknowntest) { keep; }',
    "elsif-false": 'if header :is "subject" "x" { keep; } elsif false { unknowncmd; }',
    "elsif-after-true": 'if true { keep; } elsif unknowntest { unknowncmd; }',
    "else-after-true": 'if true { keep; } else { unknowncmd; }',
    "else-after-allof-true": 'if allof(true, true) { keep; } else { unknowncmd; }',
    "else-after-elsif-true": 'if false { keep; } elsif true { discard; } else { unknowncmd; }',
    "elsif-after-elsif-true": 'if false { } elsif true { discard; } elsif unknowntest { }',
    "missing-require": 'if false { fileinto "Junk"; }',
    "wrong-argument": 'if false { keep :flags "x"; }',
    "require-inside": 'if false { require "fileinto"; }',
    "nested-live": 'if header :is "subject" "hi" { if false { unknowncmd; } discard; }',
    "nested-dead": 'if false { if true { unknowncmd; } }',
    "ihave-unknown-else": ('require "ihave";\n'
                           'if not ihave "x-unknown" { discard; } else { unknowncmd; }'),
}
LIVE = {
    "if-true": 'if true { unknowncmd; }',
    "if-not-false": 'if not false { unknowncmd; }',
    "else-after-false": 'if false { } else { unknowncmd; }',
    "elsif-test-after-false": 'if false { keep; } elsif unknowntest { keep; }',
    "anyof-false-unknown-test": 'if anyof(false, unknowntest) { keep; }',
    "allof-unknown-test-first": 'if allof(unknowntest, false) { keep; }',
    "not-unknown-test": 'if not unknowntest { keep; }',
    "header-test": 'if header :is "subject" "x" { unknowncmd; }',
    "missing-require": 'if true { fileinto "Junk"; }',
    "top-level": 'unknowncmd;',
}


@needs_sieve_test
@pytest.mark.parametrize("script", list(DEAD.values()) + list(LIVE.values()),
                         ids=[f"dead-{k}" for k in DEAD] + [f"live-{k}" for k in LIVE])
def test_code_that_never_runs_is_validated_as_pigeonhole_does(user, tmp_path, script):
    theirs, ours = side_by_side(user, tmp_path, script)
    assert (theirs.error == "compile") == (script in LIVE.values())  # the table is right
    assert ours.show() == theirs.show()


# --- Flags across sieve_before, the user's script and sieve_after --------------
#
# dovecot-lda (Pigeonhole's sieve plugin) and lda deliver one message to
# users whose scripts run in sequence; the stored message's flags (doveadm
# fetch flags: the Maildir file name's letters and dovecot-keywords) must
# be the same.

SIEVE_WITH_LDA = "protocol lda {\n  mail_plugins = $mail_plugins sieve\n}\n"
FLAGS = 'require ["imap4flags", "fileinto", "copy", "mailbox"];\n'
PLAIN = 'require ["fileinto"];\n'  # a script without imap4flags
SEQUENCES = {  # id: (sieve_before script, the user's script, sieve_after script)
    "addflag-then-addflag": ('addflag "\\\\Seen";', 'addflag "\\\\Flagged";', None),
    "keep-flags-then-keep-flags": ('keep :flags "\\\\Seen";', 'keep :flags "\\\\Flagged";',
                                   None),
    "keep-flags-then-addflag": ('keep :flags "\\\\Seen";', 'addflag "\\\\Flagged";', None),
    "addflag-then-keep": ('addflag "\\\\Seen";', 'keep;', None),
    "addflag-then-fileinto": ('addflag "\\\\Seen";', 'fileinto :create "X";', None),
    "fileinto-copy-then-fileinto": ('fileinto :copy :create :flags "\\\\Seen" "X";',
                                    'fileinto :create :flags "\\\\Flagged" "X";', None),
    "fileinto-copy-then-plain-fileinto": ('fileinto :copy :create :flags "a" "X";',
                                          PLAIN + 'fileinto "X";', None),
    "keep-flags-then-keep": ('keep :flags "a";', 'keep;', None),
    "keep-flags-then-plain-keep": ('keep :flags "a";', PLAIN + 'keep;', None),
    "addflag-keep-flags-then-implicit": ('addflag "a"; keep :flags "b";', 'addflag "c";',
                                         None),
    "addflag-then-plain-implicit": ('addflag "a";', PLAIN + 'if false { }', None),
    "keyword-then-removeflag": ('addflag "$Junk";', 'removeflag "$Junk"; keep;', None),
    "keyword-then-keyword": ('addflag "$Junk";', 'addflag "Work";', None),
    "user-then-after": (None, 'addflag "\\\\Seen";', 'addflag "\\\\Flagged";'),
    "before-user-after": ('addflag "a";', 'keep :flags "b";', 'addflag "c";'),
}


@pytest.fixture(scope="module")
def sequenced(tmp_path_factory):
    """{case id: {"dovecot": {folder: [flags]}, "lda": ...}} for SEQUENCES,
    one message each through dovecot-lda and through `lda deliver`."""
    import time

    from conftest import write_lda_toml
    from dovecot import private_dovecot

    keep = tmp_path_factory.mktemp("sequenced")
    with private_dovecot(keep, extra=SIEVE_WITH_LDA) as server:
        scripts = server.root / "scripts"
        scripts.mkdir()
        users = {}
        for case, texts in SEQUENCES.items():
            paths = {}
            for where, text in zip(("before", "user", "after"), texts):
                if text is not None:
                    paths[where] = scripts / f"{case}.{where}.sieve"
                    paths[where].write_text(("" if text.startswith("require") else FLAGS)
                                            + text + "\n")
            places = [f"userdb_sieve_{w}={paths[w]}" for w in ("before", "after") if w in paths]
            users[case] = {"dovecot": f"d-{case}", "lda": f"l-{case}"}
            for agent, name in users[case].items():
                server.add_user(name, fields=places if agent == "dovecot" else ())
                (server.home(name) / ".dovecot.sieve").write_text(paths["user"].read_text())
            config = {"mode": "user", "log": "stderr"}
            config.update({f"sieve_{w}": [str(paths[w])] for w in ("before", "after")
                           if w in paths})
            write_lda_toml(server.home(users[case]["lda"]) / "lda.toml", config)
            for name in users[case].values():
                server.owner.chown_tree(server.home(name))
        server.owner.chown_tree(scripts)
        time.sleep(1.2)  # Dovecot's passwd-file userdb rereads a changed file a second on
        table = {}
        for case, names in users.items():
            message = MESSAGE.replace(b"Subject: hi", f"Message-ID: <{case}@x>".encode())
            done = server.deliver(names["dovecot"], message)
            assert done.returncode == 0, done.stderr
            home = server.home(names["lda"])
            done = server.lda("deliver", f"{names['lda']}@example.org", home=home,
                              input=message, env={"LDA_CONFIG": str(home / "lda.toml")})
            assert done.returncode == 0, done.stderr
            table[case] = {agent: {folder: [sorted(f for f in flags if f != "\\Recent")
                                            for flags in server.flags(name, folder)]
                                   for folder in ("INBOX", "X")
                                   if folder == "INBOX" or server.doveadm(
                                       "mailbox", "status", "-u", name, "messages", folder,
                                       check=False).returncode == 0}
                           for agent, name in names.items()}
        return table


# Where lda differs on purpose: {case: the folder whose messages differ}.
# Pigeonhole stores into INBOX as well: it drops the user's fileinto "X" as
# a duplicate of the store into X its sieve_before script did already, and
# with it that fileinto's cancelling of the implicit keep.  The user's
# script asked for X alone; lda stores it there alone.
SEQUENCE_DIFFERENCES = {"fileinto-copy-then-fileinto": "INBOX",
                        "fileinto-copy-then-plain-fileinto": "INBOX"}


@pytest.mark.parametrize("case", list(SEQUENCES))
def test_flags_across_a_sequence_of_scripts_are_pigeonhole_s(sequenced, case):
    theirs, ours = dict(sequenced[case]["dovecot"]), dict(sequenced[case]["lda"])
    if case in SEQUENCE_DIFFERENCES:
        folder = SEQUENCE_DIFFERENCES[case]
        assert (theirs.pop(folder), ours.pop(folder)) == ([[]], [])
    assert ours == theirs


# --- Keywords with "[" and "}": IMAP atom characters ------------------------------
#
# RFC 3501 section 9: atom-specials are "(", ")", "{", SP, CTL, "%", "*",
# '"', "\\" and "]"; "[" and "}" are atom characters.  The same script
# through dovecot-lda and through lda deliver; doveadm fetch flags reads
# what each stored (the letters in the file name, dovecot-keywords).

KEYWORDS = ["a[b", "a}b", "[x", "}", "$Label[1]", "a]b", "a{b", "a(b", "ok"]


def test_keywords_with_brackets_are_stored_as_dovecot_stores_them(tmp_path):
    import time

    from conftest import write_lda_toml
    from dovecot import private_dovecot

    script = ('require "imap4flags";\n'
              + "".join(f'addflag "{k}";\n' for k in KEYWORDS))
    with private_dovecot(tmp_path, extra=SIEVE_WITH_LDA) as server:
        for name in ("dove", "ours"):
            server.add_user(name)
            (server.home(name) / ".dovecot.sieve").write_text(script)
        write_lda_toml(server.home("ours") / "lda.toml", {"mode": "user", "log": "stderr"})
        for name in ("dove", "ours"):
            server.owner.chown_tree(server.home(name))
        time.sleep(1.2)  # Dovecot's passwd-file userdb rereads a changed file a second on
        done = server.deliver("dove", MESSAGE)
        assert done.returncode == 0, done.stderr
        home = server.home("ours")
        done = server.lda("deliver", "ours@example.org", home=home, input=MESSAGE,
                          env={"LDA_CONFIG": str(home / "lda.toml")})
        assert done.returncode == 0, done.stderr
        theirs, ours = server.flags("dove"), server.flags("ours")
    assert {"a[b", "a}b", "ok"} <= theirs[0]  # the probe works: Dovecot stores them
    assert ours == theirs


# --- A part whose header has no blank line after it: no body ---------------------
#
# Pigeonhole's body test gives such a part no value (:text, :content), at
# any depth; a blank line with nothing after it is an empty body, which is
# one.  The script files the message by how many values the test saw.

HEADER_ONLY = {
    "header-only": b"From: a@example.org\nSubject: hi\n",
    "header-only-no-newline": b"From: a@example.org\nSubject: hi",
    "html-header-only": b"From: a@example.org\nContent-Type: text/html\n",
    "multipart-header-only": b"From: a@example.org\nContent-Type: multipart/mixed; boundary=XX\n",
    "empty-body": b"From: a@example.org\nSubject: hi\n\n",
    "part-header-only": (b"From: a@example.org\nContent-Type: multipart/mixed; boundary=XX\n\n"
                         b"--XX\nContent-Type: text/plain\n--XX\nContent-Type: text/plain\n\n"
                         b"hello\n--XX--\n"),
    "rfc822-header-only": (b"From: a@example.org\nContent-Type: message/rfc822\n\n"
                           b"From: b@example.org\nSubject: inner\n"),
}
TRANSFORMS = {"text": ":text", "content-text": ':content "text"', "content-any": ':content ""',
              "raw": ":raw"}
COUNTING = """require ["body", "fileinto", "relational", "comparator-i;ascii-numeric"];
if body {t} :count "eq" :comparator "i;ascii-numeric" "0" {{ fileinto "none"; }}
elsif body {t} :count "eq" :comparator "i;ascii-numeric" "1" {{ fileinto "one"; }}
elsif body {t} :count "eq" :comparator "i;ascii-numeric" "2" {{ fileinto "two"; }}
else {{ fileinto "more"; }}
"""
PARTS = """require ["foreverypart", "extracttext", "fileinto", "variables"];
set "seen" "";
foreverypart { extracttext "text"; set "seen" "${seen}[${text}]"; }
fileinto "parts ${seen}";
"""
BODY_CASES = [(f"{m}-{t}", COUNTING.format(t=TRANSFORMS[t]), HEADER_ONLY[m])
              for m in HEADER_ONLY for t in TRANSFORMS]
BODY_CASES += [(f"{m}-foreverypart", PARTS, HEADER_ONLY[m]) for m in HEADER_ONLY]


@needs_sieve_test
@pytest.mark.parametrize("script, message", [case[1:] for case in BODY_CASES],
                         ids=[case[0] for case in BODY_CASES])
def test_a_part_without_a_body_is_no_body_value(user, tmp_path, script, message):
    theirs, ours = side_by_side(user, tmp_path, script, message)
    assert theirs.error is None
    assert ours.show() == theirs.show()


# --- Malformed addresses in the address test ------------------------------------
#
# RFC 5228 section 2.7.4: an address that is not syntactically valid is
# matched by no :localpart or :domain.  Pigeonhole skips such an address
# in a field that holds a valid one, and takes a field that holds none
# as one value, its text as written, which only :all sees.  The script
# logs (vnd.dovecot.debug) what each address part matched first and how
# many values :all saw; the two logs must be the same.

MALFORMED = [
    "<a@b.c", "a", "a@", "@b", "a@b@c", "a b@c", "a@b.c>", "<a@b.c> junk", "a..b@c",
    ".a@c", "a.@b.c", "a@b..c", "a@.b", "a@b.", "a@b.c.", "Name <a@b.c", "Name a@b.c",
    "a@b.c, <d@e", "<d@e, a@b.c", "a@, x@y.z", "a@b@c, d@e.f", "undisclosed-recipients:;",
    "group: <a@b.c;", "<>", "a@b.c (unterminated", '"unterminated a@b.c', "<<a@b.c>>",
    "<a@b.c>>", "a@b.c)", 'a"b"@c.d', "a\\b@c.d", "\u00e4@b.c", "   <a@b.c   ",
    "x@y.z, a@",
    # valid ones, which must stay as they were
    "a@b .c", '"a b"@c', "a@[1.2.3.4]", "a@\u00e4.c", "a(b)@c.d",
    "<@r.s:a@b.c>", "group: a@b.c;", '"a"@b.c', "Name <a@b.c>, c@d.e",
]
ADDRESS_LOG = """require ["vnd.dovecot.debug", "variables", "relational",
         "comparator-i;ascii-numeric"];
if address :all :matches "to" "*" { debug_log "all=[${1}]"; } else { debug_log "all=none"; }
if address :localpart :matches "to" "*" { debug_log "local=[${1}]"; }
else { debug_log "local=none"; }
if address :domain :matches "to" "*" { debug_log "domain=[${1}]"; }
else { debug_log "domain=none"; }
if address :all :count "eq" :comparator "i;ascii-numeric" "to" "1" { debug_log "one"; }
if address :all :count "eq" :comparator "i;ascii-numeric" "to" "2" { debug_log "two"; }
"""


def debug_logs(user, tmp_path, script, message):
    """(Pigeonhole's debug_log lines, lda's) for one script and message."""
    import json

    script_path, message_path = tmp_path / "log.sieve", tmp_path / "log.eml"
    script_path.write_text(script)
    message_path.write_bytes(message)
    # A directory nobody can enter, as pigeonhole.SieveTest needs (not tmp_path).
    with tempfile.TemporaryDirectory(prefix="pigeonhole-") as root:
        tester = pigeonhole.SieveTest(root)
        done = tester.run(tester.copy_in(script_path), tester.copy_in(message_path),
                          "a@example.org", "b@example.org")
    assert done.returncode == 0, done.stderr
    theirs = [line.split("DEBUG: ", 1)[1].removesuffix(".")
              for line in done.stderr.decode().splitlines() if "DEBUG: " in line]
    done = user.run("sieve", "test", str(script_path), "--json", input=message)
    ours = [line.split("DEBUG: ", 1)[1] for line in json.loads(done.stdout)["log"]
            if "DEBUG: " in line]
    return theirs, ours


@needs_sieve_test
@pytest.mark.parametrize("to", MALFORMED)
def test_a_malformed_address_is_read_as_pigeonhole_reads_it(user, tmp_path, to):
    message = f"From: x@y.z\nTo: {to}\nSubject: hi\n\nbody\n".encode()
    theirs, ours = debug_logs(user, tmp_path, ADDRESS_LOG, message)
    assert len(theirs) >= 3  # the probe works
    assert ours == theirs

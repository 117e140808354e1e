"""lda deliver in per-user mode: Maildir writing, exit statuses, Postfix's
conventions for mailbox_command.  Every case runs the installed command."""

import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import time

import pytest

from conftest import (LDA, maildir_files, message, wait_until, without_site,
                      write_lda_toml, write_maildirsize)

NAME = re.compile(r"^\d+\.M\d+P\d+Q\d+R[0-9a-f]{16}\.[^/:]+,S=(\d+),W=(\d+)$")


@pytest.mark.usefixtures("user_log_on_stderr")
def test_delivers_bytes_unchanged_after_the_prepended_fields(user):
    body = b"caf\xc3\xa9 \xff\xfe 8-bit\x00nul\rbare-cr\n" + b"x" * 5000 + b"\n"
    msg = message(body=body)
    done = user.deliver(msg, "alice@example.org", check=0)
    [path] = maildir_files(user.maildir)
    assert path.read_bytes() == (b"Return-Path: <sender@example.org>\n"
                                 b"Delivered-To: alice@example.org\n" + msg)
    assert b"status=sent" in done.stderr


def test_crlf_becomes_lf_and_nothing_else_changes(user):
    msg = message(body=b"line one\r\nline\rtwo\r\n")
    user.deliver(msg.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n"), "a@example.org",
                 check=0)
    [path] = maildir_files(user.maildir)
    assert path.read_bytes().endswith(b"\n\nline one\nline\rtwo\n")
    assert b"\r\n" not in path.read_bytes()


@pytest.mark.parametrize("data", [b"a\r\r\nb\r\n\nc\r", b"\r\n\r\n", b"\n\r\r\n\n", b""],
                         ids=["mixed", "crlf", "lf-cr", "empty"])
def test_w_counts_the_same_however_the_bytes_are_split(data):
    """W= (maildir.VirtualSize) of bytes in pieces, a CR at the end of one
    and its LF at the start of the next included (copy_file's and a retry's
    reads split anywhere), is what Dovecot counts for the whole."""
    from lda.store.maildir import VirtualSize

    whole = len(data) + data.count(b"\n") - data.count(b"\r\n")
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            counted = VirtualSize()
            for piece in (data[:i], data[i:j], data[j:]):
                counted.add(piece)
            assert counted.size == whole, (i, j)


def test_file_name_mode_and_size_follow_the_maildir_spec(user):
    user.deliver(message(), "alice@example.org", check=0)
    [path] = maildir_files(user.maildir)
    match = NAME.match(path.name)
    assert match, path.name
    assert int(match.group(1)) == path.stat().st_size
    # W=, as Dovecot writes it: the size with CRLF line ends (RFC822.SIZE).
    data = path.read_bytes()
    assert int(match.group(2)) == len(data) + data.count(b"\n") - data.count(b"\r\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for sub in ("tmp", "new", "cur"):
        assert stat.S_IMODE((user.maildir / sub).stat().st_mode) == 0o700
    assert list((user.maildir / "tmp").iterdir()) == []


def test_a_maildir_open_to_its_group_gets_folders_and_files_its_group_reads(user):
    """In a ~/Maildir of mode 0750, whatever lda's umask (077, Postfix's for
    delivery: lda/main.py): a folder lda makes (its directory, cur/, new/,
    tmp/) is 0750 and every message and maildirfolder 0640, as Dovecot makes
    them (tests/test_store_dovecot.py compares the two, groups too)."""
    for sub in ("", "tmp", "new", "cur"):
        (user.maildir / sub).mkdir(mode=0o750)
        (user.maildir / sub).chmod(0o750)
    user.deliver(message(), check=0)
    user.run("deliver", "-f", "sender@example.org", "-m", "Lists", "-o",
             "lda_mailbox_autocreate=yes", input=message("<m2@example.org>"), check=0)
    folder = user.maildir / ".Lists"
    [inbox_message], [folder_message] = maildir_files(user.maildir), maildir_files(folder)
    made = [folder, *(folder / sub for sub in ("cur", "new", "tmp")),
            folder / "maildirfolder", inbox_message, folder_message]
    assert [oct(stat.S_IMODE(path.stat().st_mode)) for path in made] == \
        ["0o750"] * 4 + ["0o640"] * 3


def test_a_folder_takes_the_permissions_of_its_own_directory_or_of_the_one_above(user):
    """As Dovecot: a message takes its folder's permissions (a folder made
    0700 in a 0750 Maildir holds 0600 files, the inbox 0640 ones: a Sieve
    fileinto and keep store two files, not links of one), and a folder made
    below another takes that one's (.A.B those of .A, not the root's)."""
    for sub in ("", "tmp", "new", "cur"):
        (user.maildir / sub).mkdir(mode=0o750)
        (user.maildir / sub).chmod(0o750)
    for sub in ("", "tmp", "new", "cur"):
        (user.maildir / ".A" / sub).mkdir(mode=0o700)
    (user.home / ".dovecot.sieve").write_text('require "fileinto";\nfileinto "A";\nkeep;\n')
    (user.home / ".dovecot.sieve").chmod(0o600)
    user.deliver(message(), check=0)
    (user.home / ".dovecot.sieve").unlink()
    user.run("deliver", "-f", "sender@example.org", "-m", "A.B", "-o",
             "lda_mailbox_autocreate=yes", input=message("<m2@example.org>"), check=0)
    [inbox], [in_a] = maildir_files(user.maildir), maildir_files(user.maildir / ".A")
    [in_b] = maildir_files(user.maildir / ".A.B")
    made = [inbox, in_a, user.maildir / ".A.B", *(user.maildir / ".A.B" / sub
                                                   for sub in ("cur", "new", "tmp")), in_b]
    assert [oct(stat.S_IMODE(path.stat().st_mode)) for path in made] == \
        ["0o640", "0o600", "0o700", "0o700", "0o700", "0o700", "0o600"]
    assert inbox.stat().st_ino != in_a.stat().st_ino


# fchmod's number, which /proc/PID/syscall shows while strace holds it there.
FCHMOD = {"x86_64": 91, "aarch64": 52}.get(os.uname().machine)


@pytest.mark.skipif(shutil.which("strace") is None or FCHMOD is None,
                    reason="needs strace on x86_64 or aarch64")
def test_two_deliveries_making_one_folder_at_once_give_it_the_maildir_s_mode(user, tmp_path):
    """Two first deliveries into a folder of a 0750 Maildir at once (here
    two lda with state directories, so mailbox locks, of their own, as
    lda and dovecot-lda or Dovecot's IMAP CREATE take none in common):
    the one that finds the folder made must not take the mode it has for
    an instant.  The first is held by strace in each fchmod once the
    folder is there; the second makes the folder's cur/, new/, tmp/ then.
    They were 0700: the first made the folder 0700 and gave it 0750 with
    fchmod after, and the second read 0700."""
    from test_dovecot_live import held_in

    for sub in ("", "tmp", "new", "cur"):
        (user.maildir / sub).mkdir(mode=0o750)
        (user.maildir / sub).chmod(0o750)
    folder = user.maildir / ".Lists"
    args = ["deliver", "-f", "sender@example.org", "-m", "Lists", "-o",
            "lda_mailbox_autocreate=yes"]
    held = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=fchmod",
            "-e", "inject=fchmod:delay_enter=1500000"]
    (tmp_path / "msg").write_bytes(message())
    with (tmp_path / "msg").open("rb") as stdin:
        first = subprocess.Popen(held + [LDA, *args], stdin=stdin, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=user.env)
    try:
        wait_until(lambda: (folder.exists() and held_in(first, FCHMOD))
                   or first.poll() is not None, 60, "the first lda to make the folder")
        second = user.run(*args, input=message("<m2@example.org>"),
                          env={"XDG_STATE_HOME": str(tmp_path / "other-state")})
    finally:
        stderr = first.communicate(timeout=120)[1].decode()
    assert (first.returncode, second.returncode) == (0, 0), (stderr, second.stderr)
    assert len(maildir_files(folder)) == 2
    made = (".", "cur", "new", "tmp")
    assert {sub: oct(stat.S_IMODE((folder / sub).stat().st_mode)) for sub in made} == \
        dict.fromkeys(made, "0o750")


def test_one_copy_is_linked_only_into_mailboxes_whose_files_take_its_mode(site):
    """An alias's copy is one file hard-linked into each mailbox, and a
    hard link shares its mode: a mailbox whose files take another mode
    (its root opened to a group) gets a copy of its own, as Dovecot copies
    rather than links between mailboxes whose permissions differ."""
    alice, bob = site.create_many(("alice@example.org",), ("bob@example.org",))
    bob.chmod(0o750)
    site.aliases.write_text("team: alice@example.org, bob@example.org\n")
    site.deliver(message(), "team@example.org", check=0)
    [to_alice], [to_bob] = maildir_files(alice), maildir_files(bob)
    assert (oct(stat.S_IMODE(to_alice.stat().st_mode)),
            oct(stat.S_IMODE(to_bob.stat().st_mode))) == ("0o600", "0o640")
    assert to_alice.read_bytes() == to_bob.read_bytes()
    assert to_alice.stat().st_ino != to_bob.stat().st_ino


@pytest.mark.usefixtures("user_log_on_stderr")
def test_same_message_twice_gives_one_file(user):
    user.deliver(message(), "alice@example.org", check=0)
    second = user.deliver(message(), "alice@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 1
    assert b"status=duplicate" in second.stderr


def mark_pending_again(user):
    """Turn every "delivered" row back into the synced pending row it was
    (what a power cut or a kill before the second commit leaves); the count."""
    conn = sqlite3.connect(user.state / "lda.sqlite")
    with conn:
        undone = conn.execute("UPDATE delivered_to SET state = 'pending'").rowcount
    conn.close()
    return undone


@pytest.mark.usefixtures("user_log_on_stderr")
@pytest.mark.parametrize("reader", ["left in new", "moved to cur"])
def test_a_resend_finds_a_delivery_whose_delivered_mark_was_lost(user, reader):
    """The commit that marks a local delivery "delivered" is not synced: a
    power cut may take it back and leave the synced pending row.  That row
    names the file, so a resend finds the file (also once a reader moved it
    to cur/ with flags) and is a duplicate, not a second copy."""
    user.deliver(message(), "alice@example.org", check=0)
    [path] = maildir_files(user.maildir)
    if reader == "moved to cur":
        path.rename(user.maildir / "cur" / f"{path.name}:2,S")
    assert mark_pending_again(user) == 1
    second = user.deliver(message(), "alice@example.org", check=0)
    assert b"status=duplicate" in second.stderr
    assert len(maildir_files(user.maildir) + maildir_files(user.maildir, "cur")) == 1


@pytest.mark.usefixtures("user_log_on_stderr")
@pytest.mark.parametrize("left", [["tmp"], ["tmp", "cur"], [], ["tmp", "new"]],
                         ids=["tmp-only", "tmp-and-cur", "empty", "new-without-cur"])
def test_a_delivery_killed_while_creating_the_maildir_is_retried(user, left):
    """The first delivery to a new Maildir stages in the database's tmp/,
    writes its pending row, then creates the Maildir under the locks.  A
    kill in the middle leaves the row and a Maildir without new/ (the crash
    test found it: every retry exited 75, so the MTA would in the end have
    bounced the message).  The retry sees that the file cannot be there,
    and finishes the Maildir.  An older lda made new/ before cur/, so a
    Maildir may have new/ and no cur/: a plain delivery, which opens only
    new/, completes it too, for its readers."""
    user.deliver(message(), "alice@example.org", check=0)
    shutil.rmtree(user.maildir)
    user.maildir.mkdir()
    for sub in left:
        (user.maildir / sub).mkdir()
    assert mark_pending_again(user) == 1
    done = user.deliver(message(), "alice@example.org", check=0)
    assert b"status=sent" in done.stderr
    assert len(maildir_files(user.maildir)) == 1
    assert sorted(p.name for p in user.maildir.iterdir()) == ["cur", "new", "tmp"]


@pytest.mark.usefixtures("user_log_on_stderr")
def test_a_date_with_digits_int_refuses_is_delivered_once(user):
    """A superscript digit in Date: (str.isdigit() says yes, int() no) made
    every attempt exit 75; such a Date is no date, and the resend is still
    a duplicate."""
    msg = message(date="Tue, 24 Nov 2026 1\u00b2:00:00 +0000")
    for _ in range(2):
        done = user.deliver(msg, "alice@example.org", check=0)
    assert b"status=duplicate" in done.stderr
    assert len(maildir_files(user.maildir)) == 1


def test_same_instant_in_another_zone_is_the_same_submission(user):
    user.deliver(message(date="Tue, 24 Nov 2026 10:00:00 +0000"), "a@example.org", check=0)
    user.deliver(message(date="Tue, 24 Nov 2026 11:00:00 +0100"), "a@example.org", check=0)
    user.deliver(message(date="Tue, 24 Nov 2026 10:00:01 +0000"), "a@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 2  # the third is a new submission


def test_twenty_concurrent_processes_same_message_one_file(user):
    msg = message(body=b"race\n" * 2000)
    procs = [subprocess.Popen([LDA, "deliver", "-f", "s@example.org", "alice@example.org"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=user.env) for _ in range(20)]
    outputs = [proc.communicate(msg, timeout=120) for proc in procs]
    assert [p.returncode for p in procs] == [0] * 20, outputs
    assert len(maildir_files(user.maildir)) == 1


def test_unique_names_under_1000_rapid_deliveries(user):
    # One process, 1000 different messages through the library's delivery
    # path (the subprocess start would make this minutes long), then 20
    # processes at once: every name must differ.
    script = f"""
import io, sys
sys.argv = ["lda"]
from lda.deliver.command import deliver
for i in range(1000):
    msg = b"Message-ID: <rapid%d@x>\\nSubject: n\\n\\nbody\\n" % i
    assert deliver(["-f", "s@x.org", "alice@example.org"], stdin=io.BytesIO(msg)) == 0
"""
    subprocess.run([sys.executable, "-c", script], env=user.env, check=True,
                   capture_output=True)
    names = [p.name for p in maildir_files(user.maildir)]
    assert len(names) == len(set(names)) == 1000
    assert all(NAME.match(n) for n in names)


def test_missing_message_id_is_deduplicated_by_content(user):
    user.deliver(message(message_id=None), "alice@example.org", check=0)
    user.deliver(message(message_id=None), "alice@example.org", check=0)
    user.deliver(message(message_id=None, body=b"other\n"), "alice@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 2


@pytest.mark.usefixtures("user_log_on_stderr")
def test_postfix_mailbox_command_environment_and_prepended_fields(user):
    # What Postfix local(8) pipes to mailbox_command: a "From " envelope
    # line, then its own Return-Path and Delivered-To.
    msg = (b"From sender@example.org  Tue Nov 24 10:00:00 2026\n"
           b"Return-Path: <sender@example.org>\n"
           b"X-Original-To: alice@example.org\n"
           b"Delivered-To: alice@example.org\n") + message()
    env = {"SENDER": "sender@example.org", "RECIPIENT": "alice@example.org",
           "ORIGINAL_RECIPIENT": "alice@example.org", "USER": "alice",
           "HOME": str(user.home)}
    done = user.run("deliver", input=msg, env=env, check=0)
    [path] = maildir_files(user.maildir)
    content = path.read_bytes()
    assert content == msg.split(b"\n", 1)[1]  # only the "From " line is gone
    assert content.count(b"Delivered-To:") == 1 and content.count(b"Return-Path:") == 1
    assert b"status=sent" in done.stderr


@pytest.mark.parametrize("stale", [
    b"Return-Path: <old@example.org>\n",
    b"Return-Path:\n <old@example.org>\n",               # folded
    b"Return-Path: <old@example.org>\nReturn-Path: <>\n",  # two
    b"return-path: <OLD@example.org>\n"])
def test_a_return_path_at_the_top_is_replaced_by_the_envelope_sender(user, stale):
    # RFC 5321 4.4: final delivery may remove Return-Path fields before it
    # adds its own; an old one on top would be read as this message's sender.
    msg = stale + message()
    user.deliver(msg, "alice@example.org", sender="new@example.org", check=0)
    [path] = maildir_files(user.maildir)
    assert path.read_bytes() == (b"Return-Path: <new@example.org>\n"
                                 b"Delivered-To: alice@example.org\n" + message())


def test_a_return_path_further_down_is_left_where_it_is(user):
    msg = message(extra=b"Return-Path: <old@example.org>\n")
    user.deliver(msg, "alice@example.org", sender="new@example.org", check=0)
    [path] = maildir_files(user.maildir)
    assert path.read_bytes() == (b"Return-Path: <new@example.org>\n"
                                 b"Delivered-To: alice@example.org\n" + msg)


def test_a_return_path_that_names_the_envelope_sender_stays_byte_for_byte(user):
    msg = b"Return-Path: <New@Example.org>\nDelivered-To: alice@example.org\n" + message()
    user.deliver(msg, "alice@example.org", sender="new@example.org", check=0)
    [path] = maildir_files(user.maildir)
    assert path.read_bytes() == msg


def test_without_an_envelope_sender_the_return_path_is_kept(user):
    msg = b"Return-Path: <old@example.org>\n" + message()
    user.run("deliver", "alice@example.org", input=msg, check=0)
    [path] = maildir_files(user.maildir)
    assert path.read_bytes() == b"Delivered-To: alice@example.org\n" + msg


def test_extension_selects_an_existing_folder_only(user):
    user.deliver(message(message_id="<f1@x>"), "alice+lists@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 1  # no folder yet: INBOX
    for sub in ("tmp", "new", "cur"):
        (user.maildir / ".lists" / sub).mkdir(parents=True)
    (user.maildir / ".lists" / "maildirfolder").touch()
    user.deliver(message(message_id="<f2@x>"), "alice+lists@example.org", check=0)
    user.run("deliver", input=message(message_id="<f3@x>"),
             env={"RECIPIENT": "alice+lists@example.org", "EXTENSION": "lists"}, check=0)
    assert len(maildir_files(user.maildir / ".lists")) == 2
    user.deliver(message(message_id="<f4@x>"), "alice+..@example.org", check=0)
    user.deliver(message(message_id="<f5@x>"), "alice+../../etc@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 3


def test_extension_folders_false_keeps_the_address_extension_in_the_inbox(user, tmp_path,
                                                                          make_site):
    """extension_folders = false, as Dovecot's lmtp by default: neither the
    address nor Postfix's $EXTENSION files into .lists, procmail's -a
    EXTENSION still does, and Sieve's :detail still sees the extension."""
    for sub in ("tmp", "new", "cur"):
        (user.maildir / ".lists" / sub).mkdir(parents=True)
    config = write_lda_toml(tmp_path / "lda.toml", {"mode": "user",
                                                    "extension_folders": False})
    user.run("deliver", "-c", str(config), "alice+lists@example.org",
             input=message(message_id="<e1@x>"), check=0)
    user.run("deliver", "-c", str(config), input=message(message_id="<e2@x>"),
             env={"RECIPIENT": "alice+lists@example.org", "EXTENSION": "lists"}, check=0)
    assert len(maildir_files(user.maildir)) == 2
    assert maildir_files(user.maildir / ".lists") == []
    user.run("deliver", "-c", str(config), "-a", "lists", "alice+lists@example.org",
             input=message(message_id="<e3@x>"), check=0)
    assert len(maildir_files(user.maildir / ".lists")) == 1

    site = make_site(extension_folders=False)
    alice = site.create("alice@example.org")
    for sub in ("tmp", "new", "cur"):
        (alice / ".lists" / sub).mkdir(parents=True)
        (alice / ".sieve-lists" / sub).mkdir(parents=True)
    (alice / "lda.sieve").write_text(
        'require ["envelope", "subaddress", "fileinto"];\n'
        'if envelope :detail "to" "sieve-lists" { fileinto "sieve-lists"; }\n')
    site.deliver(message(message_id="<e4@x>"), "alice+lists@example.org", check=0)
    site.deliver(message(message_id="<e5@x>"), "alice+sieve-lists@example.org", check=0)
    assert len(maildir_files(alice)) == 1
    assert maildir_files(alice / ".lists") == []
    assert len(maildir_files(alice / ".sieve-lists")) == 1


def test_every_recipient_delimiter_character_splits_as_in_postfix(make_site):
    """recipient_delimiter = "+-" (Postfix 2.11): the first of either splits
    the local part, for the mailbox and folder as for Sieve's :detail."""
    site = make_site(recipient_delimiter="+-")
    alice = site.create("alice@example.org")
    for sub in ("tmp", "new", "cur"):
        (alice / ".lists" / sub).mkdir(parents=True)
    (alice / ".lists" / "maildirfolder").touch()
    (alice / "lda.sieve").write_text(
        'require ["envelope", "subaddress", "fileinto"];\n'
        'if envelope :detail "to" "lists" { fileinto "lists"; }\n'
        'elsif envelope :user "to" "alice" { fileinto "INBOX"; }\n')
    site.deliver(message(message_id="<d1@x>"), "alice-lists@example.org", check=0)
    site.deliver(message(message_id="<d2@x>"), "alice+lists@example.org", check=0)
    # split at the first delimiter: extension "x+lists", not a folder name
    site.deliver(message(message_id="<d3@x>"), "alice-x+lists@example.org", check=0)
    assert len(maildir_files(alice / ".lists")) == 2
    assert len(maildir_files(alice)) == 1
    site.deliver(message(message_id="<d4@x>"), "bob-lists@example.org", check=67)

    dry = site.run("sieve", "test", str(alice / "lda.sieve"), "-r", "alice-lists@example.org",
                   input=message(message_id="<d5@x>"), check=0)
    assert dry.stdout.decode().split("\n")[0] == 'fileinto "lists"'


@pytest.mark.parametrize("delimiter, said", [
    ("@", b"must not contain"), ("+ ", b"must not contain"), ("\t", b"must not contain"),
    ("-\x00", b"contains a NUL")])
def test_a_recipient_delimiter_that_could_split_an_address_is_refused(make_site, delimiter,
                                                                      said):
    site = make_site(recipient_delimiter=delimiter)
    done = site.deliver(message(), "alice@example.org", check=78)
    assert b"recipient_delimiter " + said in done.stderr


def test_delivered_to_further_down_is_a_loop(user):
    looped = message(extra=b"Delivered-To: alice@example.org\n")
    done = user.deliver(b"Received: from a by b; Tue, 24 Nov 2026\n" + looped,
                        "alice@example.org", check=65)
    assert b"5.4.6" in done.stderr and b"loop" in done.stderr
    assert maildir_files(user.maildir) == []


def test_symlinked_new_directory_is_not_followed(user, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    for sub in ("tmp", "cur"):
        (user.maildir / sub).mkdir(parents=True)
    (user.maildir / "new").symlink_to(outside)
    done = user.deliver(message(), "alice@example.org")
    assert done.returncode in (75, 78), done.stderr
    assert list(outside.iterdir()) == []
    assert len(done.stderr.decode().strip().splitlines()[0]) < 300


@pytest.mark.parametrize("argv, code", [
    # The MTA's command line is the administrator's: Postfix defers on 4.3.5.
    (["deliver", "-x"], 78),
    (["deliver", "-c", "/nonexistent/lda.toml", "a@example.org"], 78),
], ids=["unknown-option", "missing-config"])
def test_usage_and_config_errors(user, argv, code):
    done = user.run(*argv, input=message(), check=code)
    assert len(done.stderr.decode().strip().splitlines()) == 1


@pytest.mark.parametrize("text, fragment", [
    ("expiration_hours = 0\n", "expiration_hours"),
    ("expiration_hours = 1000000\n", "expiration_hours"),
    ("quota_full = \"bounce\"\n", "quota_full"),
    ("nonsense_key = 1\n", "nonsense_key"),
    ("state_dir = [\n", "invalid TOML"),
], ids=["expiry-zero", "expiry-over-100-years", "bad-choice", "unknown-key", "bad-toml"])
def test_bad_configuration_exits_78_with_the_reason(user, tmp_path, text, fragment):
    config = tmp_path / "lda.toml"
    config.write_text(text)
    done = user.run("deliver", "-c", str(config), "a@example.org", input=message(),
                    check=78)
    assert fragment in done.stderr.decode()
    assert done.stderr.decode().startswith("4.3.5 ")


@pytest.mark.parametrize("key, value", [
    ("sieve_before", '["/etc/lda/before\\u0000.sieve"]'),
    ("sieve_after", '"/etc/lda/after\\u0000"'),
    ("sendmail", '["/usr/sbin/sendmail\\u0000", "-i"]'),
    ("move_command", '["ssh", "{host}\\u0000", "lda", "mailbox", "receive"]'),
    ("maildir", '"~/Mail\\u0000dir"'),
    ("sieve_script", '"~/.lda\\u0000.sieve"'),
    ("aliases", '"/etc/lda/aliases\\u0000"'),
    ("recipient_delimiter", '"\\u0000"'),
])
def test_a_nul_in_a_configured_value_is_a_configuration_error(user, tmp_path, key, value):
    """TOML can spell a NUL (\\u0000); no path, command or name can hold
    one (execve and every file call refuse it).  The file is refused at load,
    as any bad value: 78, 4.3.5 naming the key, Postfix defers, no traceback;
    `lda config check` says the same."""
    config = tmp_path / "lda.toml"
    config.write_text(f'mode = "user"\n{key} = {value}\n')
    done = user.run("deliver", "-c", str(config), "a@example.org", input=message(),
                    check=78)
    [line] = done.stderr.decode().splitlines()
    assert line.startswith("4.3.5 ") and key in line and "NUL" in line, line
    assert maildir_files(user.maildir) == []
    checked = user.run("-c", str(config), "config", "check", check=78)
    assert key in checked.stdout.decode() + checked.stderr.decode()


def test_unexpected_error_exits_75_with_a_one_line_reason(user, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = write_lda_toml(tmp_path / "lda.toml",
                            {"mode": "user", "state_dir": f"{blocker}/state"})
    done = user.run("deliver", "-c", str(config), "a@example.org", input=message(),
                    check=75)
    last = done.stderr.decode().strip().splitlines()[0]
    assert last.startswith("4.") and "Traceback" not in last


def test_help_is_available_without_a_message(user):
    done = user.run("deliver", "--help", check=0)
    assert b"usage: lda deliver" in done.stdout


def modules_after_delivery(env, recipient, raw=b"Message-ID: <i@x>\n\nbody\n"):
    """(exit status, names in sys.modules, stderr) after one delivery of raw
    to recipient, lda's own imports alone (conftest.without_site)."""
    script = ("import io, sys\n"
              "from lda.deliver.command import deliver\n"
              f"rc = deliver(['-f', 's@x.org', {recipient!r}],\n"
              f"             stdin=io.BytesIO({raw!r}))\n"
              "print(rc, ' '.join(sorted(sys.modules)))\n")
    done = without_site(script, env)
    rc, *loaded = done.stdout.split()
    return int(rc), set(loaded), done.stderr


# What a delivery must not import: the admin side's dependencies, and what
# costs milliseconds of every delivery's start (functools and collections
# come with _sqlite3 unless lda.sqlite keeps them out; re, typing, datetime).
NOT_ON_THE_DELIVERY_PATH = (
    "click", "sqlite_utils", "email_validator", "filelock", "logging", "aiosmtpd",
    "asyncio", "subprocess", "json", "email.message", "functools", "collections",
    "re", "typing", "datetime", "tomllib", "zlib")


def test_deliver_path_imports_only_what_a_delivery_uses(user):
    rc, loaded, stderr = modules_after_delivery(user.env, "alice@example.org")
    assert rc == 0, stderr
    # No maildirsize in this Maildir, so no quota to read; no ~/.lda.sieve,
    # so no Sieve code, and no keyword to store.
    # No script anywhere: not even the code that orders scripts is loaded.
    not_here = NOT_ON_THE_DELIVERY_PATH + ("lda.store.maildirsize", "lda.deliver.filtering",
                                           "lda.sieve", "lda.store.keywords",
                                           "lda.deliver.sievescripts")
    assert sorted(loaded.intersection(not_here)) == []
    assert "lda.deliver.quotawarn" not in loaded  # no limit: no quota warning to look for


def test_a_message_without_message_id_is_digested_without_hashlib(user):
    # Its DeliveredTo key is a SHA-256 of the content: the interpreter's
    # built-in _sha256 computes it; hashlib would load OpenSSL first.
    rc, loaded, stderr = modules_after_delivery(user.env, "alice@example.org",
                                                raw=b"Subject: no id\n\nbody\n")
    assert rc == 0, stderr
    assert sorted(loaded.intersection({"hashlib", "_hashlib"})) == []


@pytest.mark.parametrize("chunks", [[b""], [b"abc"], [b"x" * 63, b"y" * 65], [bytes(range(256)) * 300]])
def test_the_built_in_sha256_gives_hashlibs_digests(chunks):
    # A message without Message-ID keeps its DeliveredTo key whichever
    # process (lda deliver, lda lmtp, an admin command) computes it.
    import hashlib

    from lda.startup.hashlib import sha256

    ours, theirs = sha256(), hashlib.sha256()
    for chunk in chunks:
        ours.update(chunk)
        theirs.update(chunk)
    assert ours.hexdigest() == theirs.hexdigest()


def test_a_quota_that_dovecot_set_is_honoured(user):
    write_maildirsize(user.maildir, b"10000S\n9000 3\n")
    full = user.deliver(message(body=b"x" * 2000 + b"\n"), "alice@example.org", check=75)
    assert full.stderr.startswith(b"4.2.2 Quota exceeded")
    assert maildir_files(user.maildir) == []
    user.deliver(message("<small@example.org>"), "alice@example.org", check=0)
    [path] = maildir_files(user.maildir)
    lines = (user.maildir / "maildirsize").read_text().splitlines()
    assert lines == ["10000S", "9000 3", f"{path.stat().st_size} 1"]


def test_a_maildirsize_without_a_limit_adds_no_quota(user):
    write_maildirsize(user.maildir, b"")
    user.deliver(message(body=b"x" * 20000 + b"\n"), "alice@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 1


def test_managed_deliver_path_imports_only_what_a_delivery_uses(site):
    alice = site.create("alice@example.org")
    site.aliases.write_text("team: alice@example.org\n")
    # Compiled, as newaliases(1) would be: a delivery reads the table rather
    # than parsing the file (and importing email-validator to check it).
    site.run("aliases", "compile", check=0)
    rc, loaded, stderr = modules_after_delivery(site.env, "team@example.org")
    assert rc == 0, stderr
    assert len(maildir_files(alice)) == 1
    assert sorted(loaded.intersection(NOT_ON_THE_DELIVERY_PATH + (
        "lda.deliver.filtering", "lda.deliver.quotawarn", "lda.deliver.sievescripts"))) == []


@pytest.mark.parametrize("warnings, limit", [(["storage 80%"], None), ([], "1M")],
                         ids=["thresholds, no limit", "limit, no thresholds"])
def test_quota_warnings_are_imported_only_for_a_limit_with_thresholds(make_site, warnings,
                                                                      limit):
    site = make_site(quota_warnings=warnings)
    site.create("alice@example.org", *(["--quota-storage", limit] if limit else []))
    rc, loaded, stderr = modules_after_delivery(site.env, "alice@example.org")
    assert rc == 0, stderr
    assert "lda.deliver.quotawarn" not in loaded


def test_quota_warnings_are_imported_for_a_limit_with_thresholds(make_site):
    # The other side of the test above: the module name is the one loaded.
    site = make_site(quota_warnings=["storage 80%"])
    site.create("alice@example.org", "--quota-storage", "1M")
    rc, loaded, stderr = modules_after_delivery(site.env, "alice@example.org")
    assert rc == 0, stderr
    assert "lda.deliver.quotawarn" in loaded
    assert sorted(loaded.intersection(NOT_ON_THE_DELIVERY_PATH)) == []


def _missing(path):
    return path


def _a_directory(path):
    path.mkdir()
    return path


def _under_a_file(path):
    path.write_text("")
    return path / "lda.toml"


def _a_symlink_loop(path):
    path.symlink_to(path)
    return path


@pytest.mark.parametrize("make", [_missing, _a_directory, _under_a_file, _a_symlink_loop],
                         ids=["missing", "a-directory", "under-a-file", "a-symlink-loop"])
def test_a_configuration_file_that_is_not_there_to_read_is_a_configuration_error(
        user, tmp_path, make):
    """The file's own problem: 78, as for the aliases file (errors.is_file_problem);
    test_faults has the I/O error that is 75.  Nothing is delivered."""
    config = make(tmp_path / "lda.toml")
    done = user.run("deliver", "-c", str(config), "a@example.org", input=message())
    assert done.returncode == 78, done.stderr
    assert maildir_files(user.maildir) == []


def test_syslog_logging_keeps_stderr_quiet(user, tmp_path, syslog):
    config = write_lda_toml(tmp_path / "lda.toml",
                            {"mode": "user", "log": "syslog", "syslog_facility": "mail",
                             "syslog_socket": str(syslog.path)})
    done = user.run("deliver", "-c", str(config), "a@example.org", input=message(), check=0)
    assert done.stderr == b""
    assert len(maildir_files(user.maildir)) == 1
    [(priority, line)] = syslog.records()
    assert priority == 2 << 3 | 6 and "status=sent" in line  # mail.info


@pytest.mark.usefixtures("user_log_on_stderr")
def test_stale_tmp_files_are_swept_after_36_hours(user):
    """What a killed delivery leaves in tmp/ goes when the hourly cleanup
    runs; younger files (a delivery under way) stay."""
    user.deliver(message(message_id="<first@x>"), "a@example.org", check=0)
    tmp = user.maildir / "tmp"
    old, young = tmp / "1.killed", tmp / "2.writing"
    old.write_bytes(b"partial")
    young.write_bytes(b"partial")
    long_ago = time.time() - 37 * 3600
    os.utime(old, (long_ago, long_ago))
    conn = sqlite3.connect(user.state / "lda.sqlite")
    conn.execute("UPDATE meta SET value = '0' WHERE key = 'last_cleanup'")
    conn.commit()
    conn.close()
    done = user.deliver(message(message_id="<second@x>"), "a@example.org", check=0)
    assert sorted(p.name for p in tmp.iterdir()) == ["2.writing"]
    assert b"removed stale" in done.stderr


def test_verify_body_delivers_a_reused_message_id_with_another_body(user, tmp_path):
    config = write_lda_toml(tmp_path / "lda.toml", {"mode": "user", "verify_body": True})
    for body in (b"first\n", b"second\n", b"first\n", b"second\n"):
        user.run("deliver", "-c", str(config), "a@example.org",
                 input=message(body=body), check=0)
    bodies = sorted(p.read_bytes().split(b"\n\n", 1)[1] for p in maildir_files(user.maildir))
    assert bodies == [b"first\n", b"second\n"]


def test_without_verify_body_a_reused_message_id_is_a_duplicate(user):
    user.deliver(message(body=b"first\n"), "a@example.org", check=0)
    user.deliver(message(body=b"second\n"), "a@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 1


def test_a_version_1_database_is_upgraded_in_place(user):
    import sqlite3 as sql

    user.state.mkdir(parents=True)
    conn = sql.connect(user.state / "lda.sqlite")
    conn.executescript("""
        CREATE TABLE delivered_to (mailbox TEXT NOT NULL, message_id TEXT NOT NULL,
          submit_time TEXT NOT NULL, delivered_at REAL NOT NULL, state TEXT NOT NULL,
          location TEXT, PRIMARY KEY (mailbox, message_id, submit_time)) WITHOUT ROWID;
        PRAGMA user_version = 1;""")
    conn.close()
    user.deliver(message(), "a@example.org", check=0)
    user.deliver(message(), "a@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 1


def test_a_version_3_database_gets_vacation_expiry_and_keeps_its_rows(user):
    """Version 4 added sieve_vacations.expires; a row from before has none
    (cleanup keeps it) and the delivery that upgrades the file goes on."""
    import sqlite3 as sql

    from lda.store.deliveredto import SCHEMA

    version_3 = SCHEMA.replace("sent_at REAL NOT NULL, expires REAL,", "sent_at REAL NOT NULL,")
    assert version_3 != SCHEMA
    user.state.mkdir(parents=True)
    conn = sql.connect(user.state / "lda.sqlite")
    conn.executescript(version_3 + "PRAGMA user_version = 3;")
    conn.execute("INSERT INTO sieve_vacations VALUES ('u', 's@x', 'h', 1.0)")
    conn.commit()
    conn.close()
    user.deliver(message(), "a@example.org", check=0)
    conn = sql.connect(user.state / "lda.sqlite")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    assert conn.execute("SELECT * FROM sieve_vacations").fetchall() == [
        ("u", "s@x", "h", 1.0, None)]
    conn.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as another user")
def test_root_does_not_write_into_another_users_maildir(user, tmp_path):
    for sub in ("tmp", "new", "cur"):
        (user.maildir / sub).mkdir(parents=True)
    for path in [user.maildir, *user.maildir.iterdir()]:
        os.chown(path, 65534, 65534)
    done = user.deliver(message(), "a@example.org", check=78)
    assert b"refusing to deliver as root" in done.stderr
    assert maildir_files(user.maildir) == []
    config = write_lda_toml(tmp_path / "lda.toml",
                            {"mode": "user", "allow_root_delivery": True})
    user.run("deliver", "-c", str(config), "a@example.org", input=message(), check=0)
    assert len(maildir_files(user.maildir)) == 1


@pytest.mark.parametrize("block", [
    b"Return-Path: <a@x>\nDelivered-To: b@x\nFrom: c@x\nDelivered-To: d@x",
    b"Delivered-To: b@x\n\tfolded@x\nX-Original-To: e@x\nReceived: from y\n\tby z",
    b" Return-Path: <a@x>\nDelivered-To: b@x",  # a continuation with nothing before it
    b"Return-Path: <a@x>\nnot a field\nDelivered-To: b@x\nSubject: s",
    b"", b"\nDelivered-To: b@x", b"From: c@x\nDelivered-To: b@x",
    b"RETURN-PATH : <a@x>\nDelivered-To:\nSubject: s\n folded",
], ids=["plain", "folded", "leading-continuation", "other-line", "empty", "blank-first",
        "not-at-top", "case-and-empty-value"])
def test_the_prefix_reads_the_leading_fields_as_the_whole_header_does(block):
    """read_lead reads only the MTA's leading run (message.leading_prepended
    of message.unfolded, which stops at the first other field); it must
    find what parsing the whole header finds."""
    from lda.deliver.message import Headers, leading_prepended, unfolded

    assert leading_prepended(unfolded(block)) == Headers(block).leading_prepended()


@pytest.mark.parametrize("hostname", ["mx,S=5", "mx,W=1", "h" * 300, "a/b:c"],
                         ids=["size-field", "vsize-field", "long", "slash-colon"])
def test_a_host_name_cannot_make_a_maildir_file_name_misread(user, tmp_path, hostname):
    """The host name goes into every Maildir file name.  Dovecot reads the
    size from the first ",S=" of the name, so a host name "mx,S=5" made it
    read 5 bytes ("Cached message size smaller than expected"), and one of
    300 characters made every delivery defer on "File name too long"."""
    config = write_lda_toml(tmp_path / "lda.toml", {"mode": "user", "hostname": hostname})
    user.run("-f", "sender@example.org", input=message(),
             env={"LDA_CONFIG": str(config)}, check=0)
    [path] = maildir_files(user.maildir)
    fields = {}
    for kind, value in re.findall(r",([SW])=(\d+)", path.name):
        fields.setdefault(kind, value)  # the first, as Dovecot reads it
    assert fields["S"] == str(path.stat().st_size), path.name
    assert fields["W"] == re.search(r",W=(\d+)$", path.name).group(1), path.name
    assert "/" not in path.name
    assert path.name.count(":") == 0 and len(path.name) <= 255


@pytest.mark.parametrize("recipients, status", [
    (("alice@example.org", "bob@example.org"), 78),  # UnsafePath: Postfix defers
    (("team@example.org",), 0)], ids=["two", "alias"])  # a partial delivery, kept
def test_one_mailbox_s_damaged_maildir_holds_back_no_other_recipient(site, recipients,
                                                                    status):
    """The first recipient's Maildir is where the message is written first;
    when that Maildir is damaged (a file where its directory should be),
    the message is written in the database's tmp/ instead, and only that
    recipient waits: the others have their copy now, not after the
    administrator's repair (DeliveredTo drops theirs on the retry)."""
    alice, bob = site.create("alice@example.org"), site.create("bob@example.org")
    site.aliases.write_text("team: alice@example.org, bob@example.org\n")
    shutil.rmtree(alice)
    alice.write_text("not a directory\n")
    for _ in range(2):
        done = site.deliver(message(), *recipients)
        assert done.returncode == status, done.stderr
        assert len(maildir_files(bob)) == 1, done.stderr
        assert b"alice: symlink or non-directory in path" in done.stderr

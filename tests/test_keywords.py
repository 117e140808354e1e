"""Sieve imap4flags keywords stored as Dovecot stores them (issue 18): a
lower-case letter in the Maildir file name's info, named by the folder's
dovecot-keywords file, read back by the real Dovecot where it is installed."""

import email
import os
import subprocess
import time

import pytest

from conftest import LDA, maildir_files, message
from dovecot import DOVEADM, dovecot  # noqa: F401 - a fixture
from postfix import SBIN_PATH
from lda.errors import KeywordsUnusable
from lda.store import keywords
from lda.store.dotlock import DotLock

JUNK_SCRIPT = 'require "imap4flags";\naddflag "$Junk";\nkeep;\n'
# Each message's Subject becomes its keyword.
SUBJECT_SCRIPT = ('require ["imap4flags", "variables"];\n'
                  'if header :matches "subject" "*" { addflag "${1}"; }\n')


def owned_script(server, name, text):
    """~/.lda.sieve for Dovecot user name, owned (and only writable) by the
    mail owner, as lda's per-user mode wants it."""
    path = server.home(name) / ".lda.sieve"
    path.write_text(text)
    os.chown(path, server.owner.uid, server.owner.gid)
    path.chmod(0o600)


def seen_by_dovecot(server, name, mailbox="INBOX"):
    """`doveadm fetch flags` per message, without the \\Recent of a new one."""
    return [flags - {"\\Recent"} for flags in server.flags(name, mailbox)]


def info_of(path):
    """The letters after ":2," in a Maildir file name."""
    return path.name.split(":2,", 1)[1]


def named(folder):
    """{index: name} of the dovecot-keywords in folder, read line by line."""
    lines = (folder / "dovecot-keywords").read_text().splitlines()
    return {int(index): name for index, name in (line.split(" ", 1) for line in lines)}


def make_maildir(maildir, keywords_data=None):
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    if keywords_data is not None:
        (maildir / "dovecot-keywords").write_bytes(keywords_data)


# --- with the real Dovecot ------------------------------------------------------

def test_addflag_keyword_is_a_letter_dovecot_names(dovecot):  # noqa: F811
    maildir = dovecot.add_user("alice")
    owned_script(dovecot, "alice", JUNK_SCRIPT)
    done = dovecot.lda("deliver", "-f", "sender@example.org", "alice@example.org",
                       home=dovecot.home("alice"), input=message())
    assert done.returncode == 0, done.stderr.decode()
    [stored] = maildir_files(maildir, "cur")
    assert info_of(stored) == "a"
    assert (maildir / "dovecot-keywords").read_text() == "0 $Junk\n"
    assert seen_by_dovecot(dovecot, "alice") == [{"$Junk"}]


def test_dovecots_keywords_are_reused_and_a_folder_has_its_own(dovecot):  # noqa: F811
    maildir = dovecot.add_user("alice")
    assert dovecot.deliver("alice", message(message_id="<d1@x>")).returncode == 0
    dovecot.doveadm("flags", "add", "-u", "alice", "$Label1", "mailbox", "INBOX", "all")
    assert named(maildir) == {0: "$Label1"}  # as Dovecot wrote it
    owned_script(dovecot, "alice",
                 'require ["imap4flags", "fileinto", "mailbox"];\n'
                 'addflag ["$label1", "Work"];\nkeep;\n'
                 'fileinto :create :flags ["Project", "$Label1"] "Work";\n')
    done = dovecot.lda("deliver", "-f", "sender@example.org", "alice@example.org",
                       home=dovecot.home("alice"), input=message(message_id="<l1@x>"))
    assert done.returncode == 0, done.stderr.decode()
    # $label1 is Dovecot's $Label1 (names compare case-insensitively).
    assert named(maildir) == {0: "$Label1", 1: "Work"}
    assert named(maildir / ".Work") == {0: "Project", 1: "$Label1"}
    [kept] = [p for p in maildir_files(maildir, "cur") if "<l1@x>" in p.read_text()]
    [filed] = maildir_files(maildir / ".Work", "cur")
    assert (info_of(kept), info_of(filed)) == ("ab", "ab")
    assert seen_by_dovecot(dovecot, "alice") == [{"$Label1"}, {"$Label1", "Work"}]
    assert seen_by_dovecot(dovecot, "alice", "Work") == [{"Project", "$Label1"}]


def test_dovecot_waits_for_the_lock_lda_takes(dovecot):  # noqa: F811
    # lda adds a name under Dovecot's own dotlock, dovecot-uidlist.lock,
    # written as Dovecot writes it ("pid:host"), so Dovecot waits for it
    # rather than writing dovecot-keywords at the same time.
    maildir = dovecot.add_user("alice")
    assert dovecot.deliver("alice", message(message_id="<d1@x>")).returncode == 0
    fd = folder_fd(maildir)
    try:
        with DotLock(fd, str(maildir), keywords.UIDLIST_LOCK, 1, KeywordsUnusable,
                     keywords.STALE_LOCK_SECONDS):
            adding = subprocess.Popen([DOVEADM, "-c", str(dovecot.conf), "flags", "add", "-u",
                                       "alice", "Dove", "mailbox", "INBOX", "all"],
                                      stderr=subprocess.PIPE, env={"PATH": SBIN_PATH})
            with pytest.raises(subprocess.TimeoutExpired):
                adding.wait(timeout=3)
            assert not (maildir / "dovecot-keywords").exists()
            # What assign does once it holds the lock: Dovecot must read it
            # (as lda would, running as the mail owner, leave it).
            keywords.write_lines(fd, str(maildir), [b"0 $Junk"], b"", None)
            os.chown(maildir / "dovecot-keywords", dovecot.owner.uid, dovecot.owner.gid)
    finally:
        os.close(fd)
    assert adding.wait(timeout=60) == 0, adding.stderr.read().decode()
    adding.stderr.close()
    assert named(maildir) == {0: "$Junk", 1: "Dove"}


# --- lda alone: the file's limits and its hostile forms ---------------------------

@pytest.mark.usefixtures("user_log_on_stderr")
def test_the_27th_keyword_and_an_invalid_one_are_logged_and_left_out(user):
    full = "".join(f"{i} k{i}\n" for i in range(26))
    make_maildir(user.maildir, full.encode())
    (user.home / ".lda.sieve").write_text(
        'require "imap4flags";\nkeep :flags ["\\\\Seen", "k3", "$New", "bad(name", "K25"];\n')
    done = user.deliver(message(), "a@example.org", check=0)
    [stored] = maildir_files(user.maildir, "cur")
    assert info_of(stored) == "Sdz"  # \Seen, k3, k25
    assert (user.maildir / "dovecot-keywords").read_text() == full
    log = done.stderr.decode()
    assert "keyword $New not stored" in log and "no keyword letter left" in log
    assert "keyword bad(name not stored" in log and "not a valid IMAP keyword" in log


def test_bad_lines_are_read_as_dovecot_reads_them_and_kept(user):
    old = (b"garbage\nx $Bad\n30 $TooFar\n1 \n0 $Junk\n2 $junk\n-1 $Neg\n\xff\xfe 3\n"
           b"4 $Old\n4 $Other\r\n5 $Nul\0x\n3 Partial")  # the last line has no LF
    make_maildir(user.maildir, old)
    (user.home / ".lda.sieve").write_text('require "imap4flags";\n'
                                          'addflag ["$Junk", "Work", "$other", "$Nul"];\n')
    user.deliver(message(), "a@example.org", check=0)
    [stored] = maildir_files(user.maildir, "cur")
    # Dovecot's reading: "2 $junk" repeats a name, index 1 is free (its
    # line has no name), 3 too (a line without LF is never read); $Other
    # is 4 (the later line for an index wins, the CR is no part of it);
    # a NUL ends the name $Nul.  Every old line is kept, the new one added.
    assert info_of(stored) == "abef"
    body, tail = old.rsplit(b"\n", 1)
    assert (user.maildir / "dovecot-keywords").read_bytes() == body + b"\n1 Work\n" + tail


def plant_symlink(maildir, tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"0 $Junk\n")
    (maildir / "dovecot-keywords").symlink_to(outside)
    return outside


def plant_huge(maildir, _):
    (maildir / "dovecot-keywords").write_bytes(b"0 $Junk\n" + b"#" * keywords.MAX_FILE_BYTES)


def plant_directory(maildir, _):
    (maildir / "dovecot-keywords").mkdir()


def plant_fifo(maildir, _):  # an open for reading would wait for a writer
    os.mkfifo(maildir / "dovecot-keywords")


@pytest.mark.parametrize("plant", [plant_symlink, plant_huge, plant_directory, plant_fifo],
                         ids=["symlink", "huge", "directory", "fifo"])
@pytest.mark.usefixtures("user_log_on_stderr")
def test_an_unusable_keywords_file_stores_the_message_without_keywords(user, tmp_path, plant):
    make_maildir(user.maildir)
    planted = plant(user.maildir, tmp_path)
    before = os.lstat(user.maildir / "dovecot-keywords")
    (user.home / ".lda.sieve").write_text(JUNK_SCRIPT)
    done = user.deliver(message(), "a@example.org", check=0)
    assert len(maildir_files(user.maildir, "new")) == 1  # no flag fits: new/
    assert maildir_files(user.maildir, "cur") == []
    assert "keywords $Junk not stored" in done.stderr.decode()
    after = os.lstat(user.maildir / "dovecot-keywords")
    assert (after.st_ino, after.st_mode, after.st_size) == (
        before.st_ino, before.st_mode, before.st_size)
    if planted is not None:  # the symlink's target: neither read nor written
        assert planted.read_bytes() == b"0 $Junk\n"


def test_concurrent_deliveries_give_each_keyword_one_letter(user, tmp_path):
    # Each process has its own state directory, so lda's own mailbox lock
    # does not serialise them: only the dotlock on dovecot-uidlist does.
    (user.home / ".lda.sieve").write_text(SUBJECT_SCRIPT)
    make_maildir(user.maildir)
    runs = [subprocess.Popen([LDA, "deliver", "-f", "s@example.org",
                              "a@example.org"], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(user.env, XDG_STATE_HOME=str(tmp_path / f"state{i}")))
            for i in range(10)]
    for i, run in enumerate(runs):
        run.stdin.write(message(message_id=f"<c{i}@x>", subject=f"kw{i}"))
        run.stdin.close()
    for run in runs:
        assert run.wait(timeout=120) == 0, run.stderr.read().decode()
        run.stderr.close()
    names = named(user.maildir)
    assert sorted(names.values()) == sorted(f"kw{i}" for i in range(10))
    stored = maildir_files(user.maildir, "cur")
    assert len(stored) == 10
    for path in stored:
        subject = email.message_from_bytes(path.read_bytes())["Subject"]
        assert names[ord(info_of(path)) - ord("a")] == subject
    assert sorted(p.name for p in user.maildir.iterdir()) == [
        "cur", "dovecot-keywords", "new", "tmp"]  # no lock left behind


# --- the dotlock and the file's mtime, in this process ---------------------------

def folder_fd(path):
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def test_a_held_lock_is_waited_for_then_the_keywords_are_given_up(tmp_path):
    lock = tmp_path / keywords.UIDLIST_LOCK
    lock.write_text(f"{os.getpid()}:{os.uname().nodename}")  # a live holder
    fd = folder_fd(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(KeywordsUnusable, match="still held after 0.3 s"):
            keywords.assign(fd, str(tmp_path), ["$Junk"], timeout=0.3)
        assert time.monotonic() - started >= 0.3
        assert lock.exists() and not (tmp_path / "dovecot-keywords").exists()
    finally:
        os.close(fd)


@pytest.mark.parametrize("holder, age", [
    ("{dead}:{host}", 0),                # its process is gone
    ("1:elsewhere.example", 121),        # another host's, untouched for 2 minutes
    ("", 121),                           # never written, as old
], ids=["dead-pid", "old-other-host", "old-empty"])
def test_a_stale_lock_is_replaced(tmp_path, holder, age):
    child = subprocess.Popen(["true"])
    child.wait()  # its pid is free now (reuse within the test is improbable)
    lock = tmp_path / keywords.UIDLIST_LOCK
    lock.write_text(holder.format(dead=child.pid, host=os.uname().nodename))
    os.utime(lock, (time.time() - age, time.time() - age))
    fd = folder_fd(tmp_path)
    try:
        assert keywords.assign(fd, str(tmp_path), ["$Junk"], timeout=0.3) == ("a", [])
    finally:
        os.close(fd)
    assert not lock.exists()
    assert (tmp_path / "dovecot-keywords").read_text() == "0 $Junk\n"


def test_the_rewritten_file_has_a_later_mtime_and_its_folder_s_permissions(tmp_path):
    # Dovecot rereads dovecot-keywords only when its mtime changed; it
    # gives the file its folder's permissions whatever the old file had
    # (a folder it shares with a group has its files group-readable).
    tmp_path.chmod(0o750)
    path = tmp_path / "dovecot-keywords"
    path.write_text("0 $Junk\n")
    path.chmod(0o600)
    future = int(time.time()) + 100
    os.utime(path, (future, future))
    fd = folder_fd(tmp_path)
    try:
        assert keywords.assign(fd, str(tmp_path), ["$junk", "Work"]) == ("ab", [])
    finally:
        os.close(fd)
    assert path.read_text() == "0 $Junk\n1 Work\n"
    assert (path.stat().st_mtime, path.stat().st_mode & 0o777) == (future + 1, 0o640)

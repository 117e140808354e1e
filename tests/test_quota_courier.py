"""lda and Courier's deliverquota (maildrop 2.9) on one Maildir: the same
Maildir++ quota.

Courier wrote the Maildir++ quota specification (README.maildirquota; `man
maildirquota`), and its deliverquota delivers into a Maildir keeping
maildirsize by it.  lda promises Maildirs "readable by Dovecot and
Courier": here lda (per-user mode, `quota_rules = "courier"` unless a case
says otherwise) and deliverquota share one Maildir, and must agree on what
it holds, on the lines each appends, on which message fits, and on when a
user is warned.  Where lda differs from Courier on purpose, the case is
named in EXPECTED_DIFFERENCES with its reason.  Run with -s to see the
figures.  `.ci/run` installs maildrop; without deliverquota this skips.
"""

import itertools
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import message, write_lda_toml

DELIVERQUOTA = "/usr/sbin/deliverquota"
MAILDIRMAKE = shutil.which("maildirmake") or "/usr/bin/maildirmake"
pytestmark = pytest.mark.skipif(
    not (os.access(DELIVERQUOTA, os.X_OK) and os.access(MAILDIRMAKE, os.X_OK)),
    reason="Courier's deliverquota and maildirmake (Debian: maildrop) are not installed")

SENDER = "sender@example.org"
RECIPIENT = "alice"
# What lda prepends to every message it stores (per-user mode, RECIPIENT).
LDA_PREFIX = len(f"Return-Path: <{SENDER}>\nDelivered-To: {RECIPIENT}\n")
# The spec: a maildirsize of 5120 bytes or more is recounted by any reader.
OVERSIZED = 5120
# deliverquota's exit status for "over quota" (EX_NOPERM), lda's deferral.
EX_NOPERM, EX_TEMPFAIL = 77, 75

# Where lda's figures differ from Courier's on purpose: name -> reason.
EXPECTED_DIFFERENCES = {
    "two-period directory": (
        "the spec: 'You can't have subdirectories that start with two periods'; "
        "Dovecot keeps a folder it is deleting as ..DOVECOT-TRASHED, whose mail is "
        "on its way out. Courier's recount counts any '.X' directory but '..'."),
    "size field without digits": (
        "the spec takes the size from names 'of the form xxxxx,S=nnnnn' and stat()s "
        "any other; lda stat()s ',S=' and ',S=12x' (their true size), where Courier's "
        "parser reads the digits there are (0 and 12)."),
    "dovecot rules": (
        "quota_rules = \"dovecot\", the default, counts .Trash, T-flagged messages and "
        "dot files as doveadm quota recalc does; a Maildir shared with Courier's tools "
        "wants quota_rules = \"courier\" (README, lda.toml(5))."),
    "a warning per crossing": (
        "lda warns when a delivery crosses one of its thresholds (Dovecot's "
        "quota_warning; lda.toml(5)), again after the usage fell below and rose, and "
        "for each higher threshold; deliverquota -w warns on any delivery, refused "
        "ones too, while at or above its one level, once a day. Courier's quotawarn "
        "holds no level, so lda writes it but does not let it silence a crossing."),
}


class Shared:
    """One Maildir, per-user mode's ~/Maildir, made by Courier's maildirmake,
    into which the installed lda and deliverquota both deliver."""

    def __init__(self, user, tmp_path):
        self.user, self.tmp = user, tmp_path
        self.maildir = user.maildir
        subprocess.run([MAILDIRMAKE, str(self.maildir)], check=True)
        self.numbers = itertools.count(1)
        self.configs = {}

    # --- the two delivery agents ---------------------------------------------

    def lda(self, total, check=None, folder=None, **settings):
        """lda delivers a message it stores as `total` bytes (into a folder
        with -m)."""
        n = next(self.numbers)
        head = message(f"<lda{n}@example.org>", subject=f"lda {n}", body=b"")
        body = b"l" * (total - LDA_PREFIX - len(head) - 1) + b"\n"
        msg = message(f"<lda{n}@example.org>", subject=f"lda {n}", body=body)
        env = {"LDA_CONFIG": str(self.config(**settings))}
        into = ["-m", folder] if folder else []
        return self.user.run("deliver", *into, "-f", SENDER, RECIPIENT, input=msg, env=env,
                             check=check)

    def courier(self, total, *options, check=None, folder=None):
        """deliverquota delivers a message of `total` bytes into the Maildir
        or one of its folders, read from a file, so that it judges the quota
        before writing the message (from a pipe it judges after)."""
        n = next(self.numbers)
        head = f"Message-ID: <courier{n}@example.org>\nSubject: courier {n}\n\n".encode()
        path = self.tmp / f"courier{n}.eml"
        path.write_bytes(head + b"c" * (total - len(head) - 1) + b"\n")
        where = self.maildir / f".{folder}" if folder else self.maildir
        with open(path, "rb") as stdin:
            done = subprocess.run([DELIVERQUOTA, *options, str(where)], stdin=stdin,
                                  capture_output=True, timeout=30)
        if check is not None:
            assert done.returncode == check, (done.returncode, done.stdout, done.stderr)
        return done

    def config(self, **settings):
        values = {"mode": "user", "log": "stderr", "quota_rules": "courier", **settings}
        key = repr(sorted(values.items()))
        if key not in self.configs:
            path = self.tmp / f"lda{len(self.configs)}.toml"
            self.configs[key] = write_lda_toml(path, values)
        return self.configs[key]

    def show(self, **settings):
        done = self.user.run("quota", "show", "--json", check=0,
                             env={"LDA_CONFIG": str(self.config(**settings))})
        return json.loads(done.stdout)

    # --- maildirsize ------------------------------------------------------------

    def set_quota(self, text):
        """Courier's way to set a limit: maildirmake -q."""
        subprocess.run([MAILDIRMAKE, "-q", text, str(self.maildir)], check=True)

    def lines(self):
        return (self.maildir / "maildirsize").read_text().splitlines()

    def summed(self):
        """(bytes, messages) over maildirsize's usage lines."""
        usage = [line.split() for line in self.lines()[1:]]
        return sum(int(u[0]) for u in usage), sum(int(u[1]) for u in usage)

    def write_maildirsize(self, text, age=None):
        path = self.maildir / "maildirsize"
        path.write_text(text)
        if age is not None:
            os.utime(path, (time.time() - age,) * 2)

    def inbox(self):
        return {p for sub in ("new", "cur") for p in (self.maildir / sub).iterdir()}

    def on_disk(self):
        """(bytes, messages) of the INBOX's files: every one counts under both
        tools' rules (no dot file, no T flag)."""
        files = self.inbox()
        return sum(p.stat().st_size for p in files), len(files)

    # --- recounts ---------------------------------------------------------------

    def recount_by(self, agent, quota="1000000S,1000C", **settings):
        """(exit status, (bytes, messages) the agent recounted) with
        maildirsize oversized, so that the agent's delivery recounts first:
        the recount is the file's first usage line afterwards (the second is
        the delivered message's, which is then removed again)."""
        self.write_maildirsize(f"{quota}\n" + "0 0\n" * (OVERSIZED // 4))
        done, recounted = self.deliver_once(agent, **settings)
        return done.returncode, recounted

    def deliver_once(self, agent, **settings):
        """(the run, maildirsize's first usage line as numbers) for a
        500-byte delivery by agent, then the message removed as a Maildir++
        client removes one: the file, and a negative line appended."""
        before = self.inbox()
        done = self.lda(500, **settings) if agent == "lda" else self.courier(500)
        first = tuple(int(n) for n in self.lines()[1].split())
        for path in self.inbox() - before:
            size = path.stat().st_size
            path.unlink()
            with open(self.maildir / "maildirsize", "a") as f:
                f.write(f"-{size} -1\n")
        return done, first


@pytest.fixture
def shared(user, tmp_path):
    return Shared(user, tmp_path)


def put(directory, name, size):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(b"x" * size)


def folder(box, name):
    """A Maildir++ folder made as the spec says, by maildirmake -f."""
    subprocess.run([MAILDIRMAKE, "-f", name, str(box.maildir)], check=True)
    return box.maildir / f".{name}"


def fill_mixed(box):
    """A Maildir with what a recount must tell apart; (bytes, messages)
    that the spec counts."""
    root = box.maildir
    put(root / "new", "1.M1P1.host,S=1000", 1000)
    put(root / "new", "2.M2P2.host", 700)                      # no S=: stat()
    put(root / "new", ".hidden", 5000)                         # a dot file: not a message
    put(root / "cur", "3.M3P3.host,S=300,W=310:2,S", 300)      # Dovecot's S= then W=
    put(root / "cur", "4.M4P4.host,S=640:2,ST", 640)           # flagged deleted (T)
    put(root / "cur", "5.M5P5.host:2,FT", 90)                  # T, and no S=
    put(root / "cur", "6.M6P6.host:2,Sab", 33)                 # keywords after the flags
    put(folder(box, "Work") / "cur", "7.M7P7.host,S=20:2,S", 20)
    put(folder(box, "Work.Sub") / "new", "8.M8P8.host", 55)    # a subfolder, no S=
    put(folder(box, "Trash") / "new", "9.M9P9.host,S=320", 320)
    put(folder(box, "Trash.Old") / "new", "10.M10P10.host,S=11", 11)  # not Trash itself
    put(root / "Other" / "new", "11.M11P11.host", 80)          # no period: not a folder
    (root / ".file").write_bytes(b"x" * 4000)                  # a file, not a folder
    return 1000 + 700 + 300 + 33 + 20 + 55 + 11, 7


# --- 1. the recount ---------------------------------------------------------------

def test_both_recount_a_maildir_with_folders_trash_and_flags_alike(shared):
    expected = fill_mixed(shared)
    by_courier = shared.recount_by("courier")
    by_lda = shared.recount_by("lda")
    print(f"\nrecount: deliverquota {by_courier}, lda {by_lda}, the spec {expected}")
    assert by_courier == by_lda == (0, expected)
    shown = shared.show()
    assert (shown["storage_used"], shown["messages_used"]) == expected


def test_a_folder_without_maildirfolder_counts_as_courier_counts_it(shared):
    """The spec's folders are the '.Name' directories; maildirfolder tells a
    delivery agent handed a folder to find the parent's maildirsize, and
    Courier's recount (and Dovecot's) counts a folder a client made without
    it."""
    put(shared.maildir / ".NoMarker" / "new", "1.M1P1.host,S=40", 40)
    (shared.maildir / ".NoMarker" / "cur").mkdir()
    assert shared.recount_by("courier") == shared.recount_by("lda") == (0, (40, 1))


@pytest.mark.parametrize("name", ["two-period directory", "size field without digits"])
def test_expected_differences_in_the_recount(shared, name):
    expected = fill_mixed(shared)
    if name == "two-period directory":
        put(shared.maildir / "..Bad" / "new", "1.M1P1.host,S=160", 160)
        courier_extra, lda_extra = (160, 1), (0, 0)
    else:
        put(shared.maildir / "cur", "12.M12P12.host,S=:2,S", 3)
        put(shared.maildir / "new", "13.M13P13.host,S=12x", 7)
        courier_extra, lda_extra = (0 + 12, 2), (3 + 7, 2)
    by_courier, by_lda = shared.recount_by("courier")[1], shared.recount_by("lda")[1]
    print(f"\n{name}: deliverquota {by_courier}, lda {by_lda}: {EXPECTED_DIFFERENCES[name]}")
    assert by_courier == (expected[0] + courier_extra[0], expected[1] + courier_extra[1])
    assert by_lda == (expected[0] + lda_extra[0], expected[1] + lda_extra[1])


def test_expected_difference_the_default_dovecot_rules_count_more(shared):
    expected = fill_mixed(shared)
    by_courier = shared.recount_by("courier")[1]
    by_dovecot_rules = shared.recount_by("lda", quota_rules="dovecot")[1]
    print(f"\ndovecot rules: deliverquota {by_courier}, lda {by_dovecot_rules}: "
          f"{EXPECTED_DIFFERENCES['dovecot rules']}")
    assert by_courier == expected
    # .hidden, the two T-flagged messages, and the Trash folder's message.
    assert by_dovecot_rules == (expected[0] + 5000 + 640 + 90 + 320, expected[1] + 4)


# Each state of maildirsize the spec names, with a 100000-byte limit and 3,000
# bytes in the Maildir: (the file, its age in seconds, whether the agents
# recount before judging the next message).
STATES = {
    "oversized": ("100000S\n" + "0 0\n" * 1300, None, True),
    "negative total": ("100000S\n5000 3\n-9000 -5\n", None, True),
    "over quota, several lines": ("100000S\n60000 1\n50000 1\n", None, True),
    "over quota, one line 15 minutes old": ("100000S\n200000 5\n", 15 * 60 + 5, True),
    "over quota, one fresh line": ("100000S\n200000 5\n", None, False),
    "under quota, wrong but trusted": ("100000S\n50000 7\n", 3600, False),
}


@pytest.mark.parametrize("state", STATES)
def test_both_trust_or_recount_a_stale_maildirsize_alike(shared, state):
    text, age, recounts = STATES[state]
    put(shared.maildir / "cur", "1.M1P1.host,S=3000:2,S", 3000)
    results = {}
    for agent in ("courier", "lda"):
        shared.write_maildirsize(text, age)
        done, first = shared.deliver_once(agent)
        results[agent] = (done.returncode, shared.lines()[0], first)
    print(f"\n{state}: {results}")
    fits = state != "over quota, one fresh line"
    if recounts:
        expected = ("100000S", (3000, 1))
    else:
        quota, first = text.splitlines()[:2]
        expected = (quota, tuple(int(n) for n in first.split()))
    assert results["courier"] == (0 if fits else EX_NOPERM, *expected)
    assert results["lda"] == (0 if fits else EX_TEMPFAIL, *expected)


# --- 2. alternating deliveries ------------------------------------------------------

def test_alternating_deliveries_read_each_others_lines(shared, tmp_path):
    shared.set_quota("10000S")
    steps = [("courier", 2000), ("lda", 2000), ("courier", 2000), ("lda", 3000)]
    for agent, size in steps:
        if agent == "courier":
            shared.courier(size, check=0)
        else:
            shared.lda(size, check=0)
        before = shared.lines()
        shown = shared.show()
        print(f"\n{agent} {size}: maildirsize {shared.summed()}, disk {shared.on_disk()}, "
              f"lda show {shown['storage_used']}, lines {before[1:]}")
        # lda read every line, Courier's space-padded ones too, and trusted
        # them (the file is unchanged: no recount hid a misreading).
        assert shared.summed() == shared.on_disk()
        assert (shown["storage_used"], shown["messages_used"]) == shared.on_disk()
        assert shared.lines() == before
    assert len(shared.lines()) == 1 + 1 + len(steps)   # maildirmake's "0 0", then one each
    # Courier reads lda's lines: 9,000 of 10,000 bytes is 90 % only with
    # lda's 5,000 counted, and deliverquota -w 90 warns by the lines alone.
    warning = tmp_path / "quotawarnmsg"
    warning.write_text("From: postmaster\nSubject: Mail quota warning\n\nNearly full.\n")
    shared.courier(100, "-w", "90", "-W", str(warning), check=0)
    assert sum(b"Subject: Mail quota warning" in p.read_bytes() for p in shared.inbox()) == 1
    assert shared.summed() == shared.on_disk()         # the warning counted, by Courier


def test_deliveries_into_folders_and_trash_count_alike(shared):
    """Into a folder, each appends to the Maildir's own maildirsize (Courier
    finds it by the folder's maildirfolder); into Trash neither counts."""
    shared.set_quota("100000S")
    for name in ("Work", "Trash"):
        folder(shared, name)
    shared.courier(1000, folder="Work", check=0)
    shared.lda(2000, folder="Work", check=0)
    shared.courier(4000, folder="Trash", check=0)
    shared.lda(8000, folder="Trash", check=0)
    assert not (shared.maildir / ".Work" / "maildirsize").exists()
    assert shared.summed() == (3000, 2)
    assert shared.recount_by("courier") == shared.recount_by("lda") == (0, (3000, 2))


# --- 3. the decision at the limit ---------------------------------------------------

def test_the_storage_limit_maildirmake_set_is_enforced_alike(shared):
    shared.set_quota("4000S")
    # Larger than the whole limit: refused for good by both.
    shared.courier(4001, check=EX_NOPERM)
    assert b"5.2.3" in shared.lda(4001, check=77).stderr
    assert b"5.2.3" in shared.lda(4001, check=77, quota_full="reject").stderr
    shared.courier(1500, check=0)
    # 1,500 + 2,501 does not fit, by one byte.
    shared.courier(2501, check=EX_NOPERM)
    assert b"4.2.2" in shared.lda(2501, check=EX_TEMPFAIL).stderr
    assert b"5.2.2" in shared.lda(2501, check=77, quota_full="reject").stderr
    # Ending exactly at the limit fits, for both.
    shared.lda(2500, check=0)
    assert shared.summed() == shared.on_disk() == (4000, 2)
    shared.courier(100, check=EX_NOPERM)
    shared.lda(300, check=EX_TEMPFAIL)
    # Room made as a Maildir++ client makes it: the file removed, its line
    # appended negative (the spec, "Reading from a Maildir++").
    [lda_copy] = [p for p in shared.inbox() if b"Subject: lda " in p.read_bytes()]
    lda_copy.unlink()
    with open(shared.maildir / "maildirsize", "a") as f:
        f.write("-2500 -1\n")
    shared.courier(2500, check=0)
    assert shared.summed() == shared.on_disk() == (4000, 2)


def test_the_message_count_limit_is_enforced_alike(shared):
    shared.set_quota("100000S,3C")
    shared.courier(300, check=0)
    shared.lda(300, check=0)
    shared.courier(300, check=0)                        # the third: exactly the limit
    shared.courier(300, check=EX_NOPERM)
    shared.lda(300, check=EX_TEMPFAIL)
    shared.lda(300, check=77, quota_full="reject")
    assert shared.summed() == shared.on_disk() == (900, 3)
    assert shared.show()["messages_limit"] == 3


def test_the_quota_line_lda_writes_is_enforced_by_deliverquota(make_site, tmp_path):
    site = make_site(quota_rules="courier")
    maildir = site.create("a@example.org", "--quota-storage", "3000", "--quota-messages", "2")
    msg = message("<first@example.org>", body=b"f" * 900 + b"\n")
    site.deliver(msg, "a@example.org", check=0)
    assert (maildir / "maildirsize").read_text().splitlines()[0] == "3000S,2C"
    stored = sum(p.stat().st_size for p in (maildir / "new").iterdir())

    def courier(total, check):
        path = tmp_path / f"c{total}.eml"
        path.write_bytes(b"Subject: c\n\n" + b"c" * (total - 13) + b"\n")
        with open(path, "rb") as stdin:
            done = subprocess.run([DELIVERQUOTA, str(maildir)], stdin=stdin,
                                  capture_output=True)
        assert done.returncode == check, done

    courier(3000 - stored + 1, EX_NOPERM)              # past lda's storage limit by one
    courier(1000, 0)                                    # the second message
    courier(20, EX_NOPERM)                              # a third: past lda's count limit
    site.deliver(message("<third@example.org>"), "a@example.org", check=EX_TEMPFAIL)
    lines = (maildir / "maildirsize").read_text().splitlines()
    assert [sum(int(line.split()[i]) for line in lines[1:]) for i in (0, 1)] == [
        stored + 1000, 2]


# --- 4. quota warnings --------------------------------------------------------------

def warnings(box):
    """(lda's, Courier's) warnings in the INBOX."""
    texts = [p.read_bytes() for p in box.inbox()]
    return (sum(b"Message-ID: <quota-warning." in t for t in texts),
            sum(b".overquota@" in t for t in texts))


@pytest.fixture
def warned(shared, tmp_path):
    """20,000 bytes of quota (room for lda's warning, some 900 bytes); lda
    warns at 90 %, and deliverquota -w 90 with a warning text of its own."""
    shared.set_quota("20000S")
    shared.warning = tmp_path / "quotawarnmsg"
    shared.warning.write_text("From: postmaster\nSubject: Mail quota warning\n\nNearly full.\n")
    shared.options = ("-w", "90", "-W", str(shared.warning))
    shared.settings = {"quota_warnings": ["storage 90%"]}
    return shared


def test_a_warning_lda_sent_is_not_sent_again_by_deliverquota(warned):
    """deliverquota -w sends one warning a day, marked by the mtime of
    quotawarn in the Maildir's root (maildirquota.c, do_deliver_warning);
    lda's warning touches it too, so the pair warns once."""
    warned.lda(18000, check=0, **warned.settings)      # across 90 %: lda warns
    assert warnings(warned) == (1, 0)
    warned.courier(100, *warned.options, check=0)      # above 90 %, warned today
    assert warnings(warned) == (1, 0)
    stamp = warned.maildir / "quotawarn"
    assert stamp.is_file() and time.time() - stamp.stat().st_mtime < 60
    assert warned.summed() == warned.on_disk()


def test_a_warning_deliverquota_sent_is_not_sent_again_by_lda(warned):
    # Handed a file, deliverquota judges -w before it appends the message's
    # own line: its warning comes with the delivery after the crossing.
    warned.courier(18000, *warned.options, check=0)
    assert warnings(warned) == (0, 0)
    warned.courier(100, *warned.options, check=0)
    assert warnings(warned) == (0, 1)
    warned.lda(100, check=0, **warned.settings)         # above already: no crossing
    assert warnings(warned) == (0, 1)
    assert warned.summed() == warned.on_disk()


def test_expected_difference_a_warning_per_crossing_not_per_day(warned):
    warned.lda(18000, check=0, **warned.settings)
    day_ago = time.time() - 86400 - 60
    os.utime(warned.maildir / "quotawarn", (day_ago, day_ago))
    warned.lda(100, check=0, **warned.settings)         # a day on, still above: lda is quiet
    assert warnings(warned) == (1, 0)
    warned.courier(100, *warned.options, check=0)      # deliverquota repeats its warning
    print(f"\na warning per crossing: {EXPECTED_DIFFERENCES['a warning per crossing']}")
    assert warnings(warned) == (1, 1)
    assert warned.summed() == warned.on_disk()

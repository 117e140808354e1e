"""Maildir++ quota accounting against real files (Courier README.maildirquota)."""

import json
import multiprocessing
import os
import stat

import pytest

from conftest import maildir_files, message, write_maildirsize
from statuscodes import S250_DELIVERED, S250_RCPT, S452_FULL, S552_TOO_BIG_FOR_QUOTA
from lda.config import Config
from lda.deliver.resolve import Target
from lda.errors import CannotCreate, ConfigError, QuotaExceeded, QuotaTooBig
from lda.store.maildirsize import (
    COURIER,
    MAX_SIZE,
    STALE_SECONDS,
    Quota,
    Rules,
    Usage,
    add_usage,
    counts_towards_quota,
    existing_quota,
    format_quota,
    grace_bytes,
    parse_quota,
    quota_failure,
    quota_for,
    read_usage,
    recalculate,
    would_exceed,
)

MTIME = 1_700_000_000


def make_maildir(path, folder_marker=False):
    for sub in ("tmp", "new", "cur"):
        os.makedirs(path / sub, exist_ok=True)
    if folder_marker:
        (path / "maildirfolder").write_bytes(b"")
    return path


def put(path, sub, name, size):
    (path / sub / name).write_bytes(b"x" * size)


def at(seconds_after_mtime):
    return lambda: MTIME + seconds_after_mtime


@pytest.fixture
def maildir(tmp_path):
    return make_maildir(tmp_path / "Maildir")


# --- quota definitions ------------------------------------------------------

@pytest.mark.parametrize("quota, text", [
    (Quota(1000000, 100), "1000000S,100C"),
    (Quota(1000000, 0), "1000000S"),
    (Quota(0, 100), "100C"),
    (Quota(), ""),
], ids=["both", "storage-only", "messages-only", "unlimited"])
def test_format_and_parse_round_trip(quota, text):
    assert format_quota(quota) == text
    assert parse_quota(text) == quota


@pytest.mark.parametrize("text, quota", [
    ("100C,5000S", Quota(5000, 100)),
    (" 5000S , 100C \n", Quota(5000, 100)),
    ("0S", Quota()),
    ("abc,5X,10S", Quota(10, 0)),
    ("-5S", Quota()),
    ("\u00b2S", Quota()),
    ("1_000S", Quota()),
], ids=["reordered", "spaces", "zero", "unknown-parts", "negative", "non-ascii-digit",
        "underscore"])
def test_parse_quota_skips_what_it_cannot_read(text, quota):
    assert parse_quota(text) == quota


def test_format_quota_refuses_negative_limits():
    with pytest.raises(ValueError):
        format_quota(Quota(-1, 0))


def test_unlimited():
    assert Quota().unlimited()
    assert not Quota(1, 0).unlimited()
    assert not Quota(0, 1).unlimited()


@pytest.mark.parametrize("usage, quota, size, count, exceeds", [
    (Usage(900, 5), Quota(1000, 0), 100, 1, False),
    (Usage(900, 5), Quota(1000, 0), 101, 1, True),
    (Usage(0, 9), Quota(0, 10), 10**9, 1, False),
    (Usage(0, 10), Quota(0, 10), 1, 1, True),
    (Usage(10**12, 10**6), Quota(), 10**9, 1, False),
    (Usage(1000, 0), Quota(1000, 0), 0, 0, False),
    (Usage(500, 9), Quota(1000, 10), 100, 2, True),
], ids=["exactly-at-limit", "one-byte-over", "messages-unlimited", "message-limit",
        "unlimited", "nothing-added", "count-over-storage-fine"])
def test_would_exceed(usage, quota, size, count, exceeds):
    assert would_exceed(usage, quota, size, count) is exceeds


def test_trash_and_deleted_count_unless_the_courier_rules_say_not():
    assert counts_towards_quota(None)
    assert counts_towards_quota(".Trash", "ST")
    assert counts_towards_quota(".Work", rules=Rules(COURIER))
    assert not counts_towards_quota(".Trash", rules=Rules(COURIER))
    assert not counts_towards_quota(None, "ST", rules=Rules(COURIER))


IGNORED = ["Trash", "Archive/20??", "Lists.*", "Entwürfe", "*Junk*"]


@pytest.mark.parametrize("folder, counts", [
    (None, True), (".Trash", False), (".trash", True), (".Trash.Old", True),
    (".Archive.2023", False), (".Archive.202", True), (".Archive.2023.Q1", True),
    (".Lists", True), (".Lists.a.b", False), (".Entw&APw-rfe", False),
    (".My Junk Mail", False), (".Work", True),
], ids=str)
def test_quota_ignore_folders_matches_as_dovecot_matches_quota_rule_names(folder, counts):
    """Dovecot's quota_rule NAME:ignore: the whole mailbox name, case and all,
    "*" and "?" wildcards, "/" its namespace separator, non-ASCII names as
    IMAP shows them (modified UTF-7 on disk)."""
    rules = Rules.of(Config({"quota_ignore_folders": IGNORED}))
    assert rules.counts_folder(folder) is counts
    assert counts_towards_quota(folder, rules=rules) is counts


def test_only_the_name_inbox_leaves_the_inbox_out(maildir):
    put(maildir, "new", "a", 10)
    put(make_maildir(maildir / ".Work"), "new", "b", 20)
    everything = Rules.of(Config({"quota_ignore_folders": ["*?*", "INBOX.*"]}))
    assert everything.counts_folder(None) and not everything.counts_folder(".Work")
    assert recalculate(maildir, Quota(), rules=everything) == Usage(10, 1)
    inbox = Rules.of(Config({"quota_ignore_folders": ["inbox"]}))
    assert recalculate(maildir, Quota(), rules=inbox) == Usage(20, 1)


def test_ignored_folders_are_left_out_under_the_courier_rules_too(maildir):
    put(make_maildir(maildir / ".Trash"), "new", "a", 10)
    put(make_maildir(maildir / ".Spam"), "new", "b", 20)
    put(make_maildir(maildir / ".Work"), "new", "c", 40)
    rules = Rules.of(Config({"quota_rules": "courier", "quota_ignore_folders": ["Spam"]}))
    assert recalculate(maildir, Quota(), rules=rules) == Usage(40, 1)
    assert recalculate(maildir, Quota(), rules=Rules(COURIER)) == Usage(60, 2)


@pytest.mark.parametrize("entries, masks", [
    (["Trash", "INBOX.Junk", "inbox/Spam", "Inbox", "A/B/*"],
     ("Trash", "Junk", "Spam", "INBOX", "A.B.*")),
    ([], ()),
], ids=["normalised", "none"])
def test_quota_ignore_folders_are_read_as_lda_reads_folder_names(entries, masks):
    assert Config({"quota_ignore_folders": entries}).quota_ignore_folders == masks


@pytest.mark.parametrize("entry", ["*", "?", "", ".Trash", "INBOX.", 3],
                         ids=["star", "question", "empty", "directory", "prefix-only",
                              "number"])
def test_quota_ignore_folders_refuses_what_names_no_folder(entry):
    with pytest.raises(ConfigError, match="quota_ignore_folders"):
        Config({"quota_ignore_folders": [entry]})


def test_a_delivery_recount_leaves_ignored_folders_out(maildir):
    """The check a delivery, LMTP and the policy service make (quota_failure)
    recounts an untrusted maildirsize with the same rules."""
    put(maildir, "cur", "1.M1P1.host,S=500:2,S", 1)
    put(make_maildir(maildir / ".Trash"), "cur", "2.M2P2.host,S=400:2,S", 1)
    target = _target(maildir, Quota(1000))
    write_maildirsize(maildir, b"1000S\n500 1\n400 1\n", MTIME)
    assert quota_failure(Config({"quota_ignore_folders": ["Trash"]}), target, 200) is None
    assert (maildir / "maildirsize").read_bytes() == b"1000S\n500 1\n"
    write_maildirsize(maildir, b"1000S\n500 1\n400 1\n", MTIME)
    assert isinstance(quota_failure(Config(), target, 200), QuotaExceeded)
    assert (maildir / "maildirsize").read_bytes() == b"1000S\n900 2\n"


@pytest.mark.parametrize("usage, size, grace, exceeds", [
    (Usage(900, 0), 150, 50, False),
    (Usage(900, 0), 151, 50, True),
    (Usage(999, 0), 51, 50, False),
    (Usage(1000, 0), 1, 50, True),
    (Usage(1000, 0), 0, 50, False),
    (Usage(1001, 0), 0, 50, True),
    (Usage(0, 0), 1050, 50, False),
], ids=["into-grace", "past-grace", "just-under-limit", "at-limit-no-grace",
        "at-limit-nothing-added", "over-limit", "bigger-than-limit-within-grace"])
def test_grace_is_dovecots(usage, size, grace, exceeds):
    # quota.c: a mailbox under its limit may end up to grace bytes past it;
    # one at or over its limit takes nothing more.
    assert would_exceed(usage, Quota(1000, 0), size, grace=grace) is exceeds


def test_grace_never_applies_to_the_message_count():
    assert would_exceed(Usage(0, 10), Quota(1000, 10), 1, grace=10**6)


@pytest.mark.parametrize("grace, limit, allowed", [
    ((10, 0), 1000, 100), ((10, 0), 1005, 100), ((0, 4096), 1000, 4096), ((0, 0), 1000, 0),
], ids=["percent", "percent-rounds-down", "size", "none"])
def test_grace_bytes(grace, limit, allowed):
    assert grace_bytes(Quota(limit), grace) == allowed


# --- reading maildirsize ----------------------------------------------------

def test_sums_all_lines_including_negative_ones(maildir):
    write_maildirsize(maildir, b"1000000S,100C\n5000 5\n-1200 -2\n300 1\n", MTIME)
    assert read_usage(maildir, Quota(1000000, 100), clock=at(0)) == Usage(4100, 4)


def test_reads_courier_padded_lines(maildir):
    padded = b"%12d %12d\n"
    write_maildirsize(maildir, b"1000S\n" + padded % (300, 2) + padded % (-100, -1), MTIME)
    assert read_usage(maildir, Quota(1000), clock=at(0)) == Usage(200, 1)


@pytest.mark.parametrize("root, mode", [(0o700, 0o600), (0o755, 0o644), (0o750, 0o640)],
                         ids=["root-0700", "root-0755", "root-0750"])
def test_missing_file_is_recalculated_and_created(maildir, root, mode):
    """With the root's read and write bits, as Dovecot writes it."""
    maildir.chmod(root)
    put(maildir, "new", "1.M1P1.host,S=300", 1)
    put(maildir, "cur", "2.M2P2.host:2,S", 20)
    assert read_usage(maildir, Quota(5000, 10)) == Usage(320, 2)
    path = maildir / "maildirsize"
    assert path.read_bytes() == b"5000S,10C\n320 2\n"
    assert oct(stat.S_IMODE(path.stat().st_mode)) == oct(mode)
    assert os.listdir(maildir / "tmp") == []


def test_unlimited_quota_is_written_as_0S(maildir):
    assert read_usage(maildir, Quota()) == Usage(0, 0)
    assert (maildir / "maildirsize").read_bytes() == b"0S\n0 0\n"
    assert existing_quota(maildir) == Quota()


def sized_file(total):
    # Claims 7 bytes in 1 message; padded with zero lines to exactly total bytes.
    data = b"1000000S\n7 1\n"
    while total - len(data) > 8:
        data += b"0 0\n"
    return data + b"0" + b" " * (total - len(data) - 3) + b"0\n"


@pytest.mark.parametrize("size, usage", [
    (MAX_SIZE - 1, Usage(7, 1)),
    (MAX_SIZE, Usage(100, 1)),
    (MAX_SIZE + 1000, Usage(100, 1)),
], ids=["5119-trusted", "5120-recalculated", "larger-recalculated"])
def test_file_of_5120_bytes_or_more_is_recalculated(maildir, size, usage):
    put(maildir, "new", "1.M1P1.host,S=100", 1)
    data = sized_file(size)
    assert len(data) == size
    write_maildirsize(maildir, data, MTIME)
    assert read_usage(maildir, Quota(1000000), clock=at(0)) == usage


def test_changed_quota_line_is_recalculated_and_rewritten(maildir):
    put(maildir, "new", "1.M1P1.host,S=100", 1)
    write_maildirsize(maildir, b"500S\n7 1\n", MTIME)
    assert read_usage(maildir, Quota(2000, 5), clock=at(0)) == Usage(100, 1)
    assert (maildir / "maildirsize").read_bytes() == b"2000S,5C\n100 1\n"


@pytest.mark.parametrize("data, clock, usage", [
    (b"100S\n150 1\n", at(STALE_SECONDS - 1), Usage(150, 1)),
    (b"100S\n150 1\n", at(STALE_SECONDS), Usage(0, 0)),
    (b"100S\n100 1\n50 1\n", at(0), Usage(0, 0)),
    (b"0S,1C\n0 2\n", at(STALE_SECONDS - 1), Usage(0, 2)),
    (b"0S,1C\n0 2\n", at(STALE_SECONDS + 3600), Usage(0, 0)),
], ids=["over-fresh-one-line-trusted", "over-15-minutes-old", "over-several-lines",
        "over-count-fresh", "over-count-old"])
def test_over_quota_figures_are_rechecked(maildir, data, clock, usage):
    write_maildirsize(maildir, data, MTIME)
    assert read_usage(maildir, parse_quota(data.split(b"\n")[0].decode()), clock=clock) == usage


def test_old_file_under_quota_is_trusted(maildir):
    write_maildirsize(maildir, b"1000S\n900 1\n50 1\n", MTIME)
    assert read_usage(maildir, Quota(1000), clock=at(10 * STALE_SECONDS)) == Usage(950, 2)


def test_incoming_message_counts_when_judging_over_quota(maildir):
    # As Courier's maildir_checkquota: a mailbox the message would push over
    # its limit is recounted, so deletions the file missed are noticed.
    write_maildirsize(maildir, b"1000S\n900 1\n50 1\n", MTIME)
    assert read_usage(maildir, Quota(1000), clock=at(0)) == Usage(950, 2)
    assert read_usage(maildir, Quota(1000), clock=at(0), size=100, count=1) == Usage(0, 0)


def test_stale_mtime_set_with_utime(maildir):
    path = write_maildirsize(maildir, b"100S\n150 1\n")
    assert read_usage(maildir, Quota(100)) == Usage(150, 1)
    old = path.stat().st_mtime - STALE_SECONDS - 1
    os.utime(path, (old, old))
    assert read_usage(maildir, Quota(100)) == Usage(0, 0)


@pytest.mark.parametrize("data", [
    b"",
    b"1000S\n",
    b"1000S\nhello world\n",
    b"1000S\n1 2 3\n",
    b"1000S\n1_000 1\n",
    b"1000S\n10 1\n5 1",
    b"1000S\n10 1\n\n",
    b"1000S\n10\x00 1\n",
    b"1000S\n\xff\xfe 1\n",
    b"1000S\n5 1\n-10 -2\n",
    b"\x00\x01\x02",
], ids=["empty", "header-only", "words", "three-fields", "underscore", "torn-last-line",
        "blank-line", "nul", "binary", "negative-total", "binary-header"])
def test_garbage_is_recalculated_not_a_crash(maildir, data):
    put(maildir, "cur", "1.M1P1.host,S=42:2,S", 1)
    write_maildirsize(maildir, data, MTIME)
    assert read_usage(maildir, Quota(1000), clock=at(0)) == Usage(42, 1)
    assert (maildir / "maildirsize").read_bytes() == b"1000S\n42 1\n"


# --- recalculation ----------------------------------------------------------

def test_size_from_name_when_present_else_stat(maildir):
    put(maildir, "new", "1.M1P1.host,S=5000", 10)            # name wins
    put(maildir, "new", "2.M2P2.host", 10)                   # no field: stat
    put(maildir, "new", "3.M3P3.host,S=12x", 7)              # malformed: stat
    put(maildir, "cur", "4.M4P4.host,S=300,W=310:2,S", 1)    # Dovecot's S= then W=
    put(maildir, "cur", "5.M5P5.host,S=:2,S", 3)             # no digits: stat (the spec)
    put(maildir, "cur", "6.M6P6.host,S=20:2,RS", 9)
    assert recalculate(maildir, Quota(), rules=Rules(COURIER)) == Usage(
        5000 + 10 + 7 + 300 + 3 + 20, 6)
    # Dovecot reads "S=" without digits as 0 bytes (quota-maildir.c).
    assert recalculate(maildir, Quota()) == Usage(5000 + 10 + 7 + 300 + 0 + 20, 6)


def test_folders_count_and_non_folders_do_not(maildir):
    put(maildir, "new", "a", 10)
    put(maildir, "new", ".hidden", 10000)                    # a dot file: Dovecot counts it
    put(maildir, "cur", "g:2,ST", 640)                       # flagged deleted (T)
    put(make_maildir(maildir / ".Work", folder_marker=True), "cur", "b:2,S", 20)
    put(make_maildir(maildir / ".NoMarker"), "new", "c", 40)  # a folder all the same
    put(make_maildir(maildir / "Other", folder_marker=True), "new", "d", 80)
    put(make_maildir(maildir / "..Bad", folder_marker=True), "new", "e", 160)
    put(make_maildir(maildir / ".Trash", folder_marker=True), "new", "f", 320)
    (maildir / ".file").write_bytes(b"x" * 5000)
    assert recalculate(maildir, Quota(), rules=Rules(COURIER)) == Usage(70, 3)
    assert recalculate(maildir, Quota()) == Usage(10 + 10000 + 640 + 20 + 40 + 320, 6)


def test_symlinks_inside_the_maildir_are_not_followed(maildir, tmp_path):
    outside = make_maildir(tmp_path / "outside", folder_marker=True)
    put(outside, "new", "big", 1000)
    os.symlink(outside, maildir / ".Link")
    work = make_maildir(maildir / ".Work", folder_marker=True)
    os.rmdir(work / "new")
    os.symlink(outside / "new", work / "new")
    os.symlink(outside / "new" / "big", maildir / "cur" / "linked:2,S")
    put(maildir, "new", "real", 5)
    assert recalculate(maildir, Quota()) == Usage(5, 1)


def test_symlinked_maildirsize_is_replaced_not_followed(maildir, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"1000S\n999 9\n")
    os.symlink(target, maildir / "maildirsize")
    put(maildir, "new", "1,S=10", 1)
    assert existing_quota(maildir) is None
    add_usage(maildir, 5000)
    assert target.read_bytes() == b"1000S\n999 9\n"
    assert read_usage(maildir, Quota(1000), clock=at(0)) == Usage(10, 1)
    assert target.read_bytes() == b"1000S\n999 9\n"
    assert not os.path.islink(maildir / "maildirsize")
    assert (maildir / "maildirsize").read_bytes() == b"1000S\n10 1\n"


def test_fifo_as_maildirsize_does_not_hang(maildir):
    os.mkfifo(maildir / "maildirsize")
    assert existing_quota(maildir) is None
    add_usage(maildir, 10)
    assert read_usage(maildir, Quota(1000)) == Usage(0, 0)


def test_missing_tmp_is_cannot_create(maildir):
    os.rmdir(maildir / "tmp")
    with pytest.raises(CannotCreate, match="cannot recalculate the quota of"):
        read_usage(maildir, Quota(1000))


def test_missing_maildir_is_cannot_create(tmp_path):
    with pytest.raises(CannotCreate):
        recalculate(tmp_path / "nowhere", Quota())


# --- appending ---------------------------------------------------------------

def test_add_usage_appends_a_line(maildir):
    write_maildirsize(maildir, b"1000S\n10 1\n")
    add_usage(maildir, 250)
    add_usage(maildir, -10, -1)
    assert (maildir / "maildirsize").read_bytes() == b"1000S\n10 1\n250 1\n-10 -1\n"
    assert read_usage(maildir, Quota(1000), clock=at(0)) == Usage(250, 1)


def test_add_usage_without_maildirsize_does_nothing(maildir):
    add_usage(maildir, 250)
    assert not (maildir / "maildirsize").exists()


def _append_many(maildir, worker, times):
    for i in range(times):
        add_usage(maildir, worker * 1000 + i)


def test_concurrent_appends_from_several_processes_sum_correctly(maildir):
    recalculate(maildir, Quota(10**9))
    workers, times = 4, 150
    spawn = multiprocessing.get_context("spawn")
    processes = [spawn.Process(target=_append_many, args=(str(maildir), w, times))
                 for w in range(1, workers + 1)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    lines = (maildir / "maildirsize").read_bytes().split(b"\n")
    assert len(lines) == 2 + workers * times + 1 and lines[-1] == b""
    assert all(len(line.split()) == 2 for line in lines[1:-1])
    expected = sum(w * 1000 + i for w in range(1, workers + 1) for i in range(times))
    assert read_usage(maildir, Quota(10**9)) == Usage(expected, workers * times)


# --- existing quota -----------------------------------------------------------

def test_existing_quota(maildir):
    assert existing_quota(maildir) is None
    write_maildirsize(maildir, b"")
    assert existing_quota(maildir) is None
    write_maildirsize(maildir, b"5000S,10C\n12 1\n")
    assert existing_quota(maildir) == Quota(5000, 10)
    write_maildirsize(maildir, sized_file(MAX_SIZE + 100))
    assert existing_quota(maildir) == Quota(1000000, 0)
    write_maildirsize(maildir, b"\n12 1\n")      # Courier's line when unlimited
    assert existing_quota(maildir) == Quota()


# --- whose limit: lda's own, else the one found in maildirsize -----------------

def test_a_limit_lda_did_not_set_is_kept_when_lda_has_none(maildir):
    write_maildirsize(maildir, b"204800S\n10 1\n")
    assert quota_for(Quota(), maildir) == Quota(204800, 0)
    assert quota_for(Quota(0, 0), maildir / "nowhere") == Quota()
    # lda's own limit wins: the admin set it through lda.
    assert quota_for(Quota(1000, 5), maildir) == Quota(1000, 5)
    read_usage(maildir, quota_for(Quota(), maildir), clock=at(0))
    assert (maildir / "maildirsize").read_bytes().startswith(b"204800S\n")


# --- the answer for a full mailbox, and for a message too big for any --------

def _target(maildir, quota, primary=True):
    return Target("alice@example.org", str(maildir.parent), mailbox="alice@example.org",
                  maildir_root=str(maildir), quota=quota, primary=primary)


@pytest.mark.parametrize("settings, used, size, failure", [
    ({}, 0, 1001, QuotaTooBig),
    ({}, 500, 501, QuotaExceeded),
    ({}, 500, 500, None),
    ({"quota_grace": "10%"}, 500, 600, None),
    ({"quota_grace": "10%"}, 0, 1100, None),
    ({"quota_grace": "10%"}, 1, 1100, QuotaTooBig),
    ({"quota_grace": "1K"}, 1000, 1, QuotaExceeded),
], ids=["too-big", "full", "fits-exactly", "within-grace", "bigger-than-limit-into-empty",
        "bigger-than-limit-does-not-fit", "at-limit-no-grace"])
def test_quota_failure(maildir, settings, used, size, failure):
    put(maildir, "cur", f"1.M1P1.host,S={used}:2,S", 1)
    found = quota_failure(Config(settings), _target(maildir, Quota(1000)), size)
    assert (found is None) if failure is None else (type(found) is failure)
    if failure is QuotaTooBig:
        assert (found.exit_code, found.smtp_reply) == (77, "552 5.2.3")
        assert found.permanent and found.reason().startswith("5.2.3 ")


def test_too_big_is_permanent_for_a_target_that_is_not_primary(maildir):
    found = quota_failure(Config(), _target(maildir, Quota(1000), primary=False), 5000)
    assert isinstance(found, QuotaTooBig) and found.permanent


@pytest.mark.parametrize("settings", [
    {"quota_rules": "both"}, {"quota_grace": "ten%"}, {"quota_grace": "-1"},
    {"quota_grace": 1.5},
], ids=["unknown-rules", "bad-percent", "negative", "float"])
def test_quota_settings_are_checked(settings):
    with pytest.raises(ConfigError):
        Config(settings)


# --- deliveries and admin commands: the installed lda, managed mode -----------

def _lines(box):
    return (box / "maildirsize").read_text().splitlines()


def _usage_lines_sum(box):
    return [sum(int(line.split()[i]) for line in _lines(box)[1:]) for i in (0, 1)]


def _on_disk(box):
    files = [p for sub in ("new", "cur") for p in (box / sub).iterdir()]
    return [sum(p.stat().st_size for p in files), len(files)]


def test_a_mailbox_without_limits_of_its_own_keeps_the_limit_dovecot_set(site):
    box = site.create("alice@example.org")                  # unlimited in lda
    write_maildirsize(box, b"2000S\n0 0\n")                 # as Dovecot writes it
    site.deliver(message("<one@x>"), "alice@example.org", check=0)
    assert _lines(box)[0] == "2000S" and _usage_lines_sum(box) == _on_disk(box)
    shown = json.loads(site.run("quota", "show", "alice@example.org", "--json",
                                check=0).stdout)
    assert (shown["storage_limit"], shown["storage_limit_from"]) == (2000, "maildirsize")
    assert shown["storage_used"] == _on_disk(box)[0]
    assert _lines(box)[0] == "2000S"
    # Enforced: full (fits in 2000 alone) is deferred; larger than 2000 is refused.
    full = site.deliver(message("<two@x>", body=b"y" * 1700 + b"\n"), "alice@example.org",
                        check=75)
    assert full.stderr.decode().startswith("4.2.2 Quota exceeded")
    assert " of 2000 bytes" in full.stderr.decode()  # the log line's figures
    big = site.deliver(message("<three@x>", body=b"z" * 2000 + b"\n"), "alice@example.org",
                       check=77)
    assert big.stderr.decode().startswith("5.2.3 ")
    for command in (["quota", "recalc", "alice@example.org"],
                    ["mailbox", "set-quota", "alice@example.org", "--storage", "0"],
                    ["mailbox", "set-quota", "alice@example.org", "--storage", "default"]):
        site.run(*command, check=0)
        assert _lines(box) == ["2000S", f"{_on_disk(box)[0]} 1"], command
    # lda's own limit wins and is written; lifting it drops the line lda
    # wrote, not Dovecot's earlier one (gone once lda's replaced it).
    site.run("mailbox", "set-quota", "alice@example.org", "--storage", "5000", check=0)
    assert _lines(box)[0] == "5000S"
    site.run("mailbox", "set-quota", "alice@example.org", "--storage", "default", check=0)
    assert _lines(box)[0] == "0S"


def test_every_delivery_keeps_an_unlimited_maildirsize_right_across_a_move(site):
    box = site.create("alice@example.org")
    write_maildirsize(box, b"0S\n0 0\n")
    site.run("db", "create", "db2", check=0)
    site.deliver(message("<before@x>"), "alice@example.org", check=0)
    site.run("mailbox", "move", "alice@example.org", "--to", "db2", check=0)
    moved = site.maildir("alice@example.org")
    assert moved != box and not box.exists()
    site.deliver(message("<after@x>", body=b"longer\n" * 20), "alice@example.org", check=0)
    assert len(_lines(moved)) == 4 and _usage_lines_sum(moved) == _on_disk(moved)
    assert json.loads(site.run("quota", "show", "alice@example.org", "--json",
                               check=0).stdout)["storage_used"] == _on_disk(moved)[0]


def test_managed_delivery_without_maildirsize_does_not_import_it(site):
    from test_deliver import modules_after_delivery

    site.create("alice@example.org")
    rc, loaded, stderr = modules_after_delivery(site.env, "alice@example.org")
    assert rc == 0, stderr
    assert "lda.store.maildirsize" not in loaded


def test_courier_rules_leave_trash_out_of_delivered_usage(make_site):
    site = make_site(quota_rules="courier")
    box = site.create("alice@example.org")
    write_maildirsize(box, b"0S\n0 0\n")
    script = box / "lda.sieve"
    script.write_text('require ["fileinto", "mailbox"];\nfileinto :create "Trash";\n')
    script.chmod(0o600)
    site.deliver(message("<trash@x>"), "alice@example.org", check=0)
    assert len(maildir_files(box / ".Trash")) == 1 and _lines(box) == ["0S", "0 0"]
    assert json.loads(site.run("quota", "recalc", "alice@example.org", "--json",
                               check=0).stdout)["storage_used"] == 0


# --- too big for the quota: permanent everywhere --------------------------------

def test_lmtp_refuses_a_message_too_big_for_the_quota_with_552_5_2_3(lmtp):
    server = lmtp(lmtp_rcpt_check_quota=True)
    server.site.create("tiny@example.org", "--quota-storage", "100")
    client = server.client()
    # No SIZE= at RCPT: the DATA reply says it, for that recipient alone.
    rcpt, data = client.send("s@example.org", ["tiny@example.org", "a@example.org"],
                             message(body=b"x" * 500 + b"\n"))
    assert rcpt["tiny@example.org"].startswith(S250_RCPT)
    assert [r[:9] for r in data] == [S552_TOO_BIG_FOR_QUOTA, S250_DELIVERED]
    client.close()
    client = server.client()
    assert client.cmd("LHLO test")[-1].startswith("250")
    assert client.cmd("MAIL FROM:<s@example.org> SIZE=5000").startswith("250")
    assert client.cmd("RCPT TO:<tiny@example.org>").startswith(S552_TOO_BIG_FOR_QUOTA)
    assert client.cmd("RCPT TO:<full@example.org>").startswith(S452_FULL)
    client.close()


def test_an_alias_member_too_big_for_its_quota_is_bounced_not_retried(site):
    alice = site.create("alice@example.org")
    site.create("tiny@example.org", "--quota-storage", "100")
    site.aliases.write_text("team: alice, tiny\n")
    site.deliver(message(body=b"x" * 500 + b"\n"), "team@example.org", check=0)
    assert len(maildir_files(alice)) == 1
    [listed] = json.loads(site.run("partial", "list", "--json", check=0).stdout)
    assert listed["reason"].startswith("5.2.3 ")
    # The first retry returns it to the sender: nothing waits for days.
    [report] = json.loads(site.run("partial", "retry", "--json", check=0).stdout)
    assert report["outcome"] == "bounced" and report["reason"].startswith("5.2.3 ")
    [(_, dsn)] = site.sent()
    assert b"Status: 5.2.3" in dsn
    assert json.loads(site.run("partial", "list", "--json", check=0).stdout) == []

"""The admin commands: `lda db`, `lda mailbox set-quota`, `lda dedup`,
`lda quota` and `lda aliases compile`, through the installed command: their
table and --json output, their one-line errors and sysexits codes, and
their effect on deliveries, maildirsize and the DeliveredTo tables."""

import json
import os
import re
import sqlite3
import time
from contextlib import closing

import pytest

from conftest import maildir_files, message
from lda.store.deliveredto import ROW_COLUMNS

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
HOUR = 3600


def as_json(site, *args, check=0):
    return json.loads(site.run(*args, "--json", check=check).stdout)


def table(site, *args, check=0):
    """The lines of the human output, split into columns."""
    return [line.split() for line in site.run(*args, check=check).stdout.decode()
            .splitlines()]


def record(site, *args, check=0):
    """A key/value "show" output as a dict of strings."""
    return dict(line.split(None, 1) for line in site.run(*args, check=check).stdout
                .decode().splitlines())


def one_line_error(done, code):
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == code, (done.returncode, lines)
    assert len(lines) == 1 and lines[0].startswith("lda: "), lines
    return lines[0]


def db_file(site, name):
    return os.path.join(as_json(site, "db", "show", name)["path"], "lda.sqlite")


def rows_of(site, name="default"):
    conn = sqlite3.connect(db_file(site, name))
    try:
        return conn.execute("SELECT mailbox, message_id, state FROM delivered_to "
                            "ORDER BY message_id").fetchall()
    finally:
        conn.close()


def insert_rows(site, rows, name="default"):
    """(mailbox, message_id, delivered_at, state) rows written directly, as
    if delivered long ago; the database must exist (deliver once first)."""
    conn = sqlite3.connect(db_file(site, name))
    with conn:
        conn.executemany(f"INSERT INTO delivered_to {ROW_COLUMNS} "
                         "VALUES (?, ?, '', ?, ?, NULL)", rows)
    conn.close()


def usage_on_disk(box):
    files = [p for sub in ("new", "cur") for p in (box / sub).iterdir()]
    return sum(p.stat().st_size for p in files), len(files)


def walk_bytes(path):
    total = 0
    for top, dirs, files in os.walk(path):
        total += sum(os.lstat(os.path.join(top, f)).st_size for f in files
                     if not os.path.islink(os.path.join(top, f)))
    return total


# lda db

def test_db_list_and_show_with_two_databases(two_dbs, tmp_path):
    site = two_dbs
    listed = {d["name"]: d for d in as_json(site, "db", "list")}
    assert sorted(listed) == ["db2", "default"]
    assert listed["db2"]["path"] == str(tmp_path / "disk2")
    assert [(d["mailboxes"], d["deliveredto_rows"], d["pending_partial"])
            for d in (listed["default"], listed["db2"])] == [(1, 2, 0), (1, 1, 0)]
    for name, d in listed.items():
        assert d["disk_bytes"] == walk_bytes(d["path"]) > 0, name
    lines = table(site, "db", "list")
    assert lines[0] == ["name", "path", "host", "mailboxes", "deliveredto_rows",
                        "pending_partial", "disk_bytes"]
    assert [line[0] for line in lines[1:]] == ["db2", "default"]
    shown = as_json(site, "db", "show", "db2")
    assert shown == {**listed["db2"], "created": shown["created"]}
    assert ISO_UTC.match(shown["created"])
    assert record(site, "db", "show", "default")["deliveredto_rows"] == "2"


def test_db_without_deliveries_has_no_rows_and_no_file(site, tmp_path):
    site.run("db", "create", "empty", "--path", str(tmp_path / "empty"), check=0)
    [empty] = [d for d in as_json(site, "db", "list") if d["name"] == "empty"]
    assert (empty["mailboxes"], empty["deliveredto_rows"], empty["disk_bytes"]) == (0, 0, 0)
    assert as_json(site, "dedup", "stats", "--db", "empty")["rows"] == 0
    assert not (tmp_path / "empty" / "lda.sqlite").exists()


def test_db_disk_use_does_not_follow_symlinks(two_dbs, tmp_path):
    before = as_json(two_dbs, "db", "show", "db2")["disk_bytes"]
    big = tmp_path / "outside"
    big.write_bytes(b"x" * 100_000)
    os.symlink(big, tmp_path / "disk2" / "link-to-file")
    os.symlink(tmp_path, tmp_path / "disk2" / "link-to-dir")
    assert as_json(two_dbs, "db", "show", "db2")["disk_bytes"] == before


@pytest.mark.parametrize("args, code, text", [
    (["db", "show", "nope"], 67, "no mailbox database named 'nope'"),
    (["db", "create", "default"], 73, "exists already"),
    (["db", "create", "../x"], 64, "invalid database name"),
    (["dedup", "stats", "--db", "nope"], 67, "nope"),
    (["dedup", "cleanup", "--db", "nope"], 67, "nope"),
], ids=["show-unknown", "create-twice", "create-bad-name", "stats-unknown",
        "cleanup-unknown"])
def test_db_errors(site, args, code, text):
    site.create("alice@example.org")
    assert text in one_line_error(site.run(*args), code)


# lda mailbox set-quota and lda quota

def test_set_quota_lets_a_waiting_message_in(site):
    box = site.create("alice@example.org", "--quota-storage", "1K")
    site.deliver(message(message_id="<small@x>"), "alice@example.org", check=0)
    # Fits in 1K, not beside the small one: full, deferred (not too big).
    big = message(message_id="<big@x>", body=b"z" * 700 + b"\n")
    site.deliver(big, "alice@example.org", check=75)
    shown = as_json(site, "mailbox", "set-quota", "alice@example.org", "--storage", "1M")
    assert (shown["storage_limit"], shown["storage_limit_from"]) == (1024**2, "mailbox")
    assert (box / "maildirsize").read_text().splitlines()[0] == "1048576S"
    site.deliver(big, "alice@example.org", check=0)
    assert len(maildir_files(box)) == 2
    site.run("mailbox", "set-quota", "alice@example.org", "--messages", "2", check=0)
    assert (box / "maildirsize").read_text().splitlines()[0] == "1048576S,2C"
    site.deliver(message(message_id="<third@x>"), "alice@example.org", check=75)


def test_set_quota_zero_and_default(make_site):
    site = make_site(quota_storage="5M", quota_messages=50)
    box = site.create("alice@example.org", "--quota-storage", "1K",
                      "--quota-messages", "3")
    shown = record(site, "mailbox", "set-quota", "alice@example.org", "--storage", "0",
                   "--messages", "default")
    assert (shown["storage_limit"], shown["messages_limit"]) == ("0", "50")
    assert shown["messages_limit_from"] == "lda.toml"
    assert (box / "maildirsize").read_text().splitlines()[0] == "50C"
    [row] = as_json(site, "mailbox", "list")
    assert (row["quota_storage"], row["quota_messages"]) == (0, None)
    site.run("mailbox", "set-quota", "alice@example.org", "--storage", "DEFAULT", check=0)
    assert (box / "maildirsize").read_text().splitlines()[0] == "5242880S,50C"


@pytest.mark.parametrize("args, code", [
    (["nobody@example.org", "--storage", "1M"], 67),
    (["alice@example.org", "--storage", "lots"], 64),
    (["alice@example.org", "--storage", "-5"], 64),
    (["alice@example.org", "--messages", "1.5"], 64),
    (["alice@example.org"], 64),
], ids=["unknown-mailbox", "bad-size", "negative-size", "bad-count", "nothing-to-set"])
def test_set_quota_errors(site, args, code):
    site.create("alice@example.org", "--quota-storage", "1K")
    one_line_error(site.run("mailbox", "set-quota", *args), code)
    [row] = as_json(site, "mailbox", "list")
    assert (row["quota_storage"], row["quota_messages"]) == (1024, None)


def test_quota_show(make_site):
    site = make_site(quota_messages=10)
    box = site.create("alice@example.org", "--quota-storage", "1M")
    for i in range(2):
        site.deliver(message(message_id=f"<q{i}@x>"), "alice@example.org", check=0)
    storage, count = usage_on_disk(box)
    shown = as_json(site, "quota", "show", "alice@example.org")
    assert shown == {
        "address": "alice@example.org",
        "storage_limit": 1024**2, "storage_limit_from": "mailbox",
        "storage_used": storage, "storage_percent": round(100 * storage / 1024**2, 1),
        "messages_limit": 10, "messages_limit_from": "lda.toml",
        "messages_used": count, "messages_percent": 20.0}
    shown = record(site, "quota", "show", "alice@example.org")
    assert (shown["messages_used"], shown["messages_percent"]) == ("2", "20.0")
    one_line_error(site.run("quota", "show", "nobody@example.org"), 67)


def test_mailbox_show_prints_one_record(site):
    """One mailbox is one JSON object, as db show and quota show print."""
    site.create("alice@example.org", "--quota-storage", "1M")
    shown = as_json(site, "mailbox", "show", "Alice@Example.org")
    assert (shown["address"], shown["database"], shown["quota_storage"]) == (
        "alice@example.org", "default", 1024**2)
    listed = [m for m in as_json(site, "mailbox", "list") if m["address"] == shown["address"]]
    assert listed == [shown]
    lines = record(site, "mailbox", "show", "alice@example.org")
    assert (lines["address"], lines["quota_storage"]) == ("alice@example.org", "1.0M")
    one_line_error(site.run("mailbox", "show", "nobody@example.org"), 67)


def test_quota_recalc_after_a_message_is_removed(site):
    box = site.create("alice@example.org", "--quota-storage", "1M")
    for i in range(3):
        site.deliver(message(message_id=f"<r{i}@x>"), "alice@example.org", check=0)
    maildir_files(box)[0].unlink()
    storage, count = usage_on_disk(box)
    assert count == 2
    shown = as_json(site, "quota", "recalc", "alice@example.org")
    assert (shown["storage_used"], shown["messages_used"]) == (storage, count)
    assert (box / "maildirsize").read_text().splitlines() == ["1048576S",
                                                              f"{storage} {count}"]


def test_quota_recalc_all(site):
    boxes = [site.create(f"{n}@example.org", "--quota-messages", "9") for n in "abc"]
    site.deliver(message(), "a@example.org", check=0)
    (boxes[1] / "maildirsize").write_text("9C\n999999 999\n")
    done = site.run("quota", "recalc", "--all", check=0)
    [line] = done.stdout.decode().splitlines()  # no progress bar off a terminal
    assert line.startswith("recounted 3 mailboxes: ")
    assert (boxes[1] / "maildirsize").read_text() == "9C\n0 0\n"
    summary = as_json(site, "quota", "recalc", "--all")
    assert (summary["mailboxes"], summary["messages"], summary["failed"]) == (3, 1, [])


def test_quota_recalc_all_goes_on_past_a_missing_maildir(site):
    import shutil

    site.create("a@example.org")
    shutil.rmtree(site.create("b@example.org"))
    done = site.run("quota", "recalc", "--all", "--json")
    assert done.returncode == 75
    summary = json.loads(done.stdout)
    assert summary["mailboxes"] == 1
    assert [f["address"] for f in summary["failed"]] == ["b@example.org"]
    assert done.stderr.decode().startswith("lda: b@example.org: ")


@pytest.mark.parametrize("args", [[], ["a@example.org", "--all"]], ids=["none", "both"])
def test_quota_recalc_needs_one_of_address_or_all(site, args):
    site.create("a@example.org")
    one_line_error(site.run("quota", "recalc", *args), 64)


# lda dedup

def test_dedup_lookup(two_dbs):
    site = two_dbs
    found = as_json(site, "dedup", "lookup", "--message-id", "<m1@example.org>")
    assert sorted((r["mailbox"], r["database"]) for r in found) == [
        ("alice@example.org", "default"), ("bob@example.org", "db2")]
    for row in found:
        assert row["message_id"] == "m1@example.org" and row["state"] == "delivered"
        assert ISO_UTC.match(row["delivered_at"]) and row["expired"] is False
        assert row["submit_time"] == "2026-11-24T10:00:00Z"
        assert row["location"] in {p.name for p in maildir_files(
            site.maildir(row["mailbox"]))}
    only_bob = as_json(site, "dedup", "lookup", "--message-id", "m1@example.org",
                       "--mailbox", "Bob@example.org")
    assert [(r["mailbox"], r["database"]) for r in only_bob] == [
        ("bob@example.org", "db2")]
    lines = table(site, "dedup", "lookup", "--message-id", "m2@example.org")
    assert lines[0][:4] == ["mailbox", "message_id", "submit_time", "delivered_at"]
    assert [line[0] for line in lines[1:]] == ["alice@example.org"]
    assert table(site, "dedup", "lookup", "--message-id", "<nope@x>") == [["(none)"]]
    assert as_json(site, "dedup", "lookup", "--message-id", "<nope@x>") == []


def test_dedup_lookup_unknown_mailbox_is_67(two_dbs):
    done = two_dbs.run("dedup", "lookup", "--message-id", "m1@example.org",
                       "--mailbox", "nobody@example.org")
    assert "no mailbox nobody@example.org" in one_line_error(done, 67)


def test_dedup_lookup_shows_iso_utc_and_expiry(site):
    site.create("alice@example.org")
    site.deliver(message(message_id="<live@x>"), "alice@example.org", check=0)
    insert_rows(site, [("alice@example.org", "old@x", 1_700_000_000.0, "delivered")])
    [row] = as_json(site, "dedup", "lookup", "--message-id", "<old@x>")
    assert (row["delivered_at"], row["expired"]) == ("2023-11-14T22:13:20Z", True)


def test_dedup_cleanup_removes_exactly_the_expired_rows(site):
    site.create("alice@example.org")
    for i in range(3):
        site.deliver(message(message_id=f"<new{i}@x>"), "alice@example.org", check=0)
    now = time.time()
    insert_rows(site, [("alice@example.org", f"old{i}@x", now - (169 + i) * HOUR,
                        "delivered") for i in range(5)]
                + [("alice@example.org", "recent@x", now - 100 * HOUR, "delivered")])
    summary = as_json(site, "dedup", "cleanup")
    assert (summary["deleted"], summary["databases"]) == (5, 1)
    assert summary["batches"] >= 1 and summary["longest_batch_ms"] >= 0
    assert [r[1] for r in rows_of(site)] == ["new0@x", "new1@x", "new2@x", "recent@x"]
    [line] = site.run("dedup", "cleanup", "--older-than", "3d", check=0).stdout \
        .decode().splitlines()
    assert line.startswith("deleted 1 rows from 1 database(s) in ")
    assert [r[1] for r in rows_of(site)] == ["new0@x", "new1@x", "new2@x"]
    # The rows went, the messages stay: a resend is still a duplicate.
    site.deliver(message(message_id="<new0@x>"), "alice@example.org", check=0)
    assert len(maildir_files(site.maildir("alice@example.org"))) == 3


def test_dedup_cleanup_of_one_database(two_dbs):
    site = two_dbs
    old = time.time() - 200 * HOUR
    for name, who in (("default", "alice"), ("db2", "bob")):
        insert_rows(site, [(f"{who}@example.org", "old@x", old, "delivered")], name)
    assert as_json(site, "dedup", "cleanup", "--db", "db2")["deleted"] == 1
    assert len(rows_of(site, "db2")) == 1 and len(rows_of(site)) == 3


def test_dedup_cleanup_with_an_injected_clock(make_site):
    """Deliveries at a known time, through the library with its clock, and
    a cleanup 200 hours later, also with the clock."""
    import io

    from lda.config import load_config
    from lda.admin.dedup import cleanup
    from lda.deliver.command import deliver
    from lda.admin.mailboxes import open_directory

    site = make_site(cleanup_interval_seconds=10**6)
    site.create("alice@example.org")
    start = 1_800_000_000.0
    for i in range(5):
        assert deliver(["alice@example.org"], stdin=io.BytesIO(message(message_id=f"<c{i}@x>")),
                       environ=site.env, clock=lambda: start) == 0
    deliver(["alice@example.org"], stdin=io.BytesIO(message(message_id="<late@x>")),
            environ=site.env, clock=lambda: start + 100 * HOUR)
    config = load_config(str(site.config))
    seen = []
    summary = cleanup(open_directory(config), config, batch=2,
                      progress=lambda done, total: seen.append((done, total)),
                      clock=lambda: start + 200 * HOUR)
    assert (summary["deleted"], summary["batches"]) == (5, 3)
    assert seen == [(2, 5), (4, 5), (5, 5)]
    assert [r[1] for r in rows_of(site)] == ["late@x"]


def test_deliveredto_cleanup_reports_each_batch(tmp_path):
    from lda.store.deliveredto import DeliveredTo

    store = DeliveredTo(str(tmp_path), expiration_hours=1, clock=lambda: 10_000.0)
    with store.transaction() as conn:
        conn.executemany(f"INSERT INTO delivered_to {ROW_COLUMNS} "
                             "VALUES (?, ?, '', ?, 'delivered', NULL)",
                         [("a@x", f"m{i}", float(i)) for i in range(7)])
    batches = []
    assert store.cleanup(batch=3, on_batch=lambda n, held: batches.append(
        (n, held >= 0))) == (7, True)
    assert batches == [(3, True), (6, True), (7, True)]
    assert store.cleanup(batch=3) == (0, True)  # the old call, no callback


def test_dedup_stats(make_site, tmp_path):
    site = make_site(expiration_hours=24, cleanup_interval_seconds=600)
    site.create("alice@example.org")
    site.run("db", "create", "db2", "--path", str(tmp_path / "disk2"), check=0)
    site.deliver(message(message_id="<s1@x>"), "alice@example.org", check=0)
    insert_rows(site, [("alice@example.org", "old@x", 1_700_000_000.0, "delivered"),
                       ("alice@example.org", "half@x", time.time(), "pending")])
    stats = as_json(site, "dedup", "stats", "--db", "default")
    assert {k: stats[k] for k in ("database", "rows", "pending", "expired", "oldest",
                                  "expiration_hours", "cleanup_interval_seconds")} == {
        "database": "default", "rows": 3, "pending": 1, "expired": 1,
        "oldest": "2023-11-14T22:13:20Z", "expiration_hours": 24,
        "cleanup_interval_seconds": 600}
    assert ISO_UTC.match(stats["newest"])
    before = stats["last_cleanup"]  # the first delivery claimed one
    site.run("dedup", "cleanup", check=0)
    after = record(site, "dedup", "stats", "--db", "default")
    assert (after["rows"], after["expired"]) == ("2", "0")
    assert ISO_UTC.match(after["last_cleanup"]) and after["last_cleanup"] >= (before or "")
    every = {s["database"]: s for s in as_json(site, "dedup", "stats")}
    assert (every["db2"]["rows"], every["db2"]["last_cleanup"]) == (0, None)
    assert not (tmp_path / "disk2" / "lda.sqlite").exists()
    lines = table(site, "dedup", "stats")
    assert lines[0] == ["database", "rows", "pending", "expired", "oldest", "newest",
                        "last_cleanup"]
    assert [line[:2] for line in lines[1:]] == [["db2", "0"], ["default", "2"]]


def test_dedup_cleanup_bad_duration_is_a_usage_error(site):
    site.create("alice@example.org")
    line = one_line_error(site.run("dedup", "cleanup", "--older-than", "soon"), 64)
    assert "--older-than" in line


# lda aliases compile

def test_aliases_compile(site):
    """The table is written atomically (no temporary file left), 0644 less
    lda's umask, with each key's members and every file read, the relative
    :include: as an absolute path."""
    site.create("alice@example.org")
    members = site.root / "members"
    members.write_text("carol@example.org\n")
    site.aliases.write_text("team: alice, Bob@Example.org,\n  :include:members\n"
                            "postmaster: alice\n")
    done = site.run("aliases", "compile", check=0)
    table_path = site.state / "aliases.sqlite"
    assert done.stdout.decode() == (f"compiled 2 aliases from {site.aliases} "
                                    f"into {table_path}\n")
    assert sorted(p.name for p in site.state.iterdir() if "aliases" in p.name) == \
        ["aliases.sqlite"]  # no temporary file left, no aliases.index.json
    assert table_path.stat().st_mode & 0o777 == 0o600  # 0644 less lda's umask, 077
    with closing(sqlite3.connect(table_path)) as table:
        entries = dict(table.execute("SELECT key, members FROM aliases"))
        sources = [row[0] for row in table.execute("SELECT path FROM sources "
                                                    "ORDER BY position")]
    assert entries == {"team": "alice\nbob@example.org\ncarol@example.org",
                       "postmaster": "alice"}
    assert sources == [str(site.aliases), str(members)]
    summary = as_json(site, "aliases", "compile", str(site.aliases))
    assert summary == {"source": str(site.aliases), "index": str(table_path),
                       "entries": 2, "problems": [], "deferred": 0}


def test_aliases_compile_refuses_a_bad_file(site):
    site.aliases.write_text("ok: alice\n")
    site.run("aliases", "compile", check=0)
    table_path = site.state / "aliases.sqlite"
    good = table_path.read_bytes()
    site.aliases.write_text("ok: alice\nbad: |/bin/true\nloop1: loop2\nloop2: loop1\n")
    done = site.run("aliases", "compile")
    assert done.returncode == 78
    lines = done.stderr.decode().splitlines()
    assert lines[0].startswith(f"lda: {site.aliases}:2: ")
    assert lines[-1] == f"lda: {site.aliases}: {len(lines) - 1} problem(s); table not written"
    assert table_path.read_bytes() == good
    problems = as_json(site, "aliases", "compile", check=78)["problems"]
    assert [p["line"] for p in problems][0] == 2


def test_aliases_compile_of_a_missing_file(site, tmp_path):
    one_line_error(site.run("aliases", "compile", str(tmp_path / "nope")), 78)


# One way to print a date and a size (issue 19, section 5)

def test_mailbox_dates_are_iso_8601_in_text_and_json(site):
    site.create("alice@example.org")
    [listed] = as_json(site, "mailbox", "list")
    shown = as_json(site, "mailbox", "show", "alice@example.org")
    assert ISO_UTC.match(listed["created"]) and shown["created"] == listed["created"]
    assert ISO_UTC.match(record(site, "mailbox", "show", "alice@example.org")["created"])


def test_sizes_are_human_in_text_exact_with_bytes_and_in_json(site):
    site.create("alice@example.org", "--quota-storage", "1536")
    site.run("mailbox", "set-quota", "alice@example.org", "--storage", "1G", check=0)
    assert record(site, "mailbox", "show", "alice@example.org")["quota_storage"] == "1.0G"
    exact = record(site, "mailbox", "show", "alice@example.org", "--bytes")
    assert exact["quota_storage"] == str(1024**3)
    assert as_json(site, "mailbox", "show", "alice@example.org")["quota_storage"] == 1024**3
    assert table(site, "mailbox", "list")[1][2] == "1.0G"
    assert table(site, "mailbox", "list", "--bytes")[1][2] == str(1024**3)
    shown = record(site, "quota", "show", "alice@example.org")
    assert (shown["storage_limit"], shown["storage_used"]) == ("1.0G", "0")
    site.deliver(message(body=b"x" * 3000 + b"\n"), "alice@example.org", check=0)
    disk = as_json(site, "db", "show", "default")["disk_bytes"]
    assert isinstance(disk, int) and disk > 3000
    assert re.fullmatch(r"\d+\.\dK", record(site, "db", "show", "default")["disk_bytes"])
    assert record(site, "db", "show", "default", "--bytes")["disk_bytes"] == str(disk)
    [line] = site.run("quota", "recalc", "--all", check=0).stdout.decode().splitlines()
    assert re.match(r"recounted 1 mailboxes: \d\.\dK, 1 messages in ", line), line


def test_partial_list_dates_are_iso_8601(site):
    from test_partial import team_partial

    team_partial(site)
    [listed] = as_json(site, "partial", "list")
    assert ISO_UTC.match(listed["created"]) and ISO_UTC.match(listed["last_attempt"])


def test_bounce_counts_and_states_one_status_code(site):
    """The bounced count leads the summary; the reason carries the final
    status once (5.2.2), not beside the record's temporary 4.2.2."""
    from test_partial import dsn_parts, team_partial

    team_partial(site)
    done = site.run("partial", "bounce", "--all", check=0)
    lines = done.stdout.decode().splitlines()
    assert lines[-1] == "1 bounced, 0 deferred", lines
    assert " 5.2.2 Quota exceeded (mailbox for user is full); " in lines[1] \
        and "4.2.2" not in lines[1], lines
    [(_, raw)] = site.sent()
    _, (text, _, _) = dsn_parts(raw)
    explained = " ".join(text.get_content().split())
    assert "<bob@example.org>: 5.2.2 Quota exceeded (mailbox for user is full)" in \
        explained, explained
    assert "4.2.2" not in explained


def test_a_resumed_move_reports_what_it_moved(alice_and_empty_db2):
    """Killed after the directory switched: the run that finishes the move
    counts the messages and rows the first one carried, not 0."""
    import subprocess
    import sys

    from test_move import KILLER, populate

    site = alice_and_empty_db2
    populate(site, "alice@example.org", 30, 2971)
    killed = subprocess.run([sys.executable, "-c", KILLER, "alice@example.org", "cleanup",
                             "db2"], env=site.env, capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()
    report = as_json(site, "mailbox", "move", "alice@example.org", "--to", "db2")
    assert (report["result"], report["messages"], report["rows"]) == ("moved", 30, 3001)
    assert report["maildir"] == str(site.maildir("alice@example.org"))


def test_a_rollback_says_where_the_mailbox_is(alice_and_empty_db2):
    import subprocess
    import sys

    from test_move import KILLER

    site = alice_and_empty_db2
    subprocess.run([sys.executable, "-c", KILLER, "alice@example.org", "rows", "db2"],
                   env=site.env, capture_output=True)
    done = site.run("mailbox", "move", "alice@example.org", "--rollback", check=0)
    box = site.maildir("alice@example.org")
    assert "/databases/default/" in str(box)
    assert done.stdout.decode() == ("alice@example.org: move to db2 rolled back; the "
                                    f"mailbox is in default: {box}\n")


@pytest.mark.parametrize("value, text", [
    ("expiration_hours = \"a week\"", "expiration_hours must be an integer, not 'a week'"),
    ("verify_body = 1", "verify_body must be true or false, not 1"),
    ("quota_storage = 1.5", "quota_storage must be a size like 1048576 or 500M, not 1.5"),
    ("quota_storage = \"lots\"", "quota_storage: 'lots' is not a size"),
    ("lmtp_max_message_size = \"1.5G\"", "lmtp_max_message_size: '1.5G' is not a size"),
    ("partial_expiration = \"soon\"", "partial_expiration: 'soon' is not a duration"),
], ids=["wrong-type-int", "wrong-type-bool", "wrong-type-size", "size", "lmtp-size",
        "duration"])
def test_configuration_errors_name_the_file_and_what_is_expected(site, value, text):
    with open(site.config, "a") as f:
        f.write(value + "\n")
    line = one_line_error(site.run("mailbox", "list"), 78)
    assert line.startswith(f"lda: {site.config}: {text}"), line


# Documentation of the commands themselves

@pytest.mark.parametrize("path", [
    "db list", "db create", "db show", "mailbox set-quota", "mailbox delete",
    "dedup lookup", "dedup forget", "dedup cleanup", "dedup stats", "quota show",
    "quota recalc", "partial bounce", "aliases compile"])
def test_commands_carry_an_example(site, path):
    text = site.run(*path.split(), "--help", check=0).stdout.decode()
    assert re.search(r"Example:\n +lda " + path, text), text

"""A mailbox's lifecycle through the installed command: `lda mailbox delete`
takes the mailbox's data with it (kept aside or purged), `lda mailbox
create` does not hand an earlier mailbox's data to a new one unless told to
(--adopt); `lda dedup forget` lets a wanted resend through; the dedup and
quota commands in per-user mode; --dry-run and --now for the commands that
work on age."""

import json
import os
import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from conftest import maildir_files, message, remove_directory_entry
from test_admin import as_json, insert_rows, one_line_error
from test_partial import records, team_partial

ALICE, BOB = "alice@example.org", "bob@example.org"
M1 = message(message_id="<m1@example.org>")
DAY = 86400


def all_messages(maildir):
    return maildir_files(maildir, "new") + maildir_files(maildir, "cur")


def row_count(site, address, table="delivered_to", name="default"):
    with closing(sqlite3.connect(site.db(name))) as conn:
        return conn.execute(f"SELECT count(*) FROM {table} WHERE mailbox = ?",
                            (address,)).fetchone()[0]


# lda mailbox delete, then create

def test_a_new_mailbox_does_not_inherit_the_old_ones_maildir_or_rows(site):
    old = site.create(ALICE)
    site.deliver(M1, ALICE, check=0)
    site.run("mailbox", "delete", ALICE, "--keep-maildir", check=0)
    new = site.create(ALICE)
    assert all_messages(new) == []
    site.deliver(M1, ALICE, check=0)  # a resend of the old Message-ID
    assert len(all_messages(new)) == 1, "the new owner's copy was discarded"
    [kept] = old.parent.glob("alice.deleted-*")
    assert len(all_messages(kept)) == 1


def test_delete_keeps_the_maildir_aside_by_default(site):
    maildir = site.create(ALICE)
    site.deliver(M1, ALICE, check=0)
    (maildir / "lda.sieve").write_text("keep;\n")
    report = as_json(site, "mailbox", "delete", ALICE)
    kept = report["kept_as"]
    assert kept.startswith(f"{maildir}.deleted-") and kept.endswith("Z")
    assert not maildir.exists() and (maildir.parent / os.path.basename(kept)).is_dir()
    assert len(all_messages(kept)) == 1 and os.path.isfile(kept + "/lda.sieve")
    assert (report["result"], report["messages"], report["rows"]) == ("kept", 1, 1)
    assert row_count(site, ALICE) == 0
    site.deliver(M1, ALICE, check=67)  # gone: unknown, not a duplicate


def test_delete_of_an_empty_mailbox_leaves_nothing(site):
    maildir = site.create(ALICE)
    report = as_json(site, "mailbox", "delete", ALICE)
    assert report["kept_as"] is None and not maildir.exists()
    assert list(maildir.parent.iterdir()) == []


def test_purge_removes_maildir_rows_sieve_state_and_partials(site):
    _, bob, record = team_partial(site)
    insert_rows(site, [(BOB, "old@x", time.time(), "delivered"),
                       (BOB + "#Archive", "old@x", time.time(), "delivered")])
    with closing(sqlite3.connect(site.db())) as conn, conn:
        conn.execute("INSERT INTO sieve_vacations (mailbox, sender, handle, sent_at) "
                     "VALUES (?, 's@x', 'h', 0)", (BOB,))
    alice_rows = row_count(site, ALICE)
    report = as_json(site, "mailbox", "delete", BOB, "--purge")
    assert (report["result"], report["partials"], report["sieve_rows"]) == ("purged", 1, 1)
    assert report["rows"] == 2 and report["kept_as"] is None
    assert not bob.exists() and list(bob.parent.glob("bob*")) == []
    assert records(site) == [] and not os.path.exists(record["spool_file"])
    assert row_count(site, BOB) == row_count(site, BOB + "#Archive") == 0
    assert row_count(site, BOB, "sieve_vacations") == 0
    assert row_count(site, ALICE) == alice_rows  # another mailbox's rows stay


def test_keep_maildir_keeps_the_pending_partial_copies_in_it(site):
    _, bob, record = team_partial(site)
    spooled = Path(record["spool_file"]).read_bytes()
    report = as_json(site, "mailbox", "delete", BOB, "--keep-maildir")
    assert report["partials"] == 1
    [copy] = maildir_files(report["kept_as"], "new")
    assert copy.read_bytes() == spooled and copy.name == os.path.basename(
        record["spool_file"])
    assert records(site) == [] and not os.path.exists(record["spool_file"])
    site.create(BOB)
    assert site.run("partial", "retry", "--json", check=0).stdout.strip() == b"[]"


def test_delete_purge_and_keep_maildir_exclude_each_other(site):
    maildir = site.create(ALICE)
    one_line_error(site.run("mailbox", "delete", ALICE, "--purge", "--keep-maildir"), 64)
    assert maildir.is_dir() and as_json(site, "mailbox", "show", ALICE)


def test_delete_of_an_unknown_mailbox_is_67(site):
    one_line_error(site.run("mailbox", "delete", ALICE), 67)


def test_a_rerun_finishes_an_interrupted_delete(site):
    """A delete killed after its Maildir step: the entry is still there,
    and so are the rows; the same command again finishes the job."""
    maildir = site.create(ALICE)
    site.deliver(M1, ALICE, check=0)
    os.rename(maildir, str(maildir) + ".DELETING")  # purge's step 2, half done
    site.run("mailbox", "delete", ALICE, "--purge", check=0)
    assert list(maildir.parent.iterdir()) == [] and row_count(site, ALICE) == 0
    one_line_error(site.run("mailbox", "show", ALICE), 67)


# lda mailbox create over an earlier mailbox's data

def test_create_over_a_maildir_with_mail_needs_adopt(site):
    maildir = site.create(ALICE)
    site.deliver(M1, ALICE, check=0)
    remove_directory_entry(site, ALICE)
    line = one_line_error(site.run("mailbox", "create", ALICE), 73)
    assert str(maildir) in line and "--adopt" in line
    one_line_error(site.run("mailbox", "show", ALICE), 67)  # nothing created
    [row] = as_json(site, "mailbox", "create", ALICE, "--adopt")
    assert row["adopted"] == {"messages": 1, "rows": 1, "partials": 0}
    site.deliver(M1, ALICE, check=0)
    assert len(all_messages(maildir)) == 1, "adopted rows must still stop a resend"


def test_create_clears_an_earlier_mailboxs_rows_without_mail(site):
    maildir = site.create(ALICE)
    site.deliver(M1, ALICE, check=0)
    remove_directory_entry(site, ALICE)
    for sub in ("new", "cur", "tmp"):
        for f in (maildir / sub).iterdir():
            f.unlink()
    [row] = as_json(site, "mailbox", "create", ALICE)
    assert (row["cleared_rows"], row["adopted"]) == (1, None)
    site.deliver(M1, ALICE, check=0)
    assert len(all_messages(maildir)) == 1


def test_create_refuses_an_earlier_mailboxs_partial_deliveries(site):
    _, bob, record = team_partial(site)
    remove_directory_entry(site, BOB)
    shutil.rmtree(bob)  # no Maildir left: the partial record remains
    line = one_line_error(site.run("mailbox", "create", BOB), 73)
    assert "1 partial deliveries" in line and "--adopt" in line
    [row] = as_json(site, "mailbox", "create", BOB, "--adopt")
    assert row["adopted"]["partials"] == 1 and records(site) == [record]


# lda dedup forget

def test_forget_lets_a_resend_through_for_one_mailbox(two_dbs):
    site = two_dbs
    alice, bob = site.maildir(ALICE), site.maildir(BOB)
    before = len(all_messages(alice)), len(all_messages(bob))
    report = as_json(site, "dedup", "forget", "--message-id", "m1@example.org",
                     "--mailbox", ALICE)
    assert report["deleted"] == 1 and [r["mailbox"] for r in report["rows"]] == [ALICE]
    site.deliver(M1, "team@example.org", check=0)  # two_dbs: alice and bob
    assert (len(all_messages(alice)), len(all_messages(bob))) == (before[0] + 1, before[1])


def test_forget_without_a_mailbox_forgets_every_row(two_dbs):
    site = two_dbs
    done = site.run("dedup", "forget", "--message-id", "<m1@example.org>", check=0)
    assert done.stdout.decode().splitlines()[-1].startswith("forgot 2 DeliveredTo rows")
    assert as_json(site, "dedup", "lookup", "--message-id", "m1@example.org") == []
    again = as_json(site, "dedup", "forget", "--message-id", "m1@example.org")
    assert again == {"deleted": 0, "rows": []}


def test_forget_for_an_unknown_mailbox_is_67(two_dbs):
    one_line_error(two_dbs.run("dedup", "forget", "--message-id", "m1@example.org",
                               "--mailbox", "nobody@example.org"), 67)


# Per-user mode

def test_per_user_dedup_lookup_stats_and_forget(user):
    user.deliver(M1, check=0)
    [row] = as_json(user, "dedup", "lookup", "--message-id", "<m1@example.org>")
    assert (row["message_id"], row["database"]) == ("m1@example.org", "user")
    [mine] = as_json(user, "dedup", "lookup", "--message-id", "m1@example.org",
                     "--mailbox", "me@example.org")
    assert mine == row
    [stats] = as_json(user, "dedup", "stats")
    assert (stats["database"], stats["rows"]) == ("user", 1)
    assert as_json(user, "dedup", "forget", "--message-id", "m1@example.org")["deleted"] == 1
    user.deliver(M1, check=0)
    assert len(all_messages(user.maildir)) == 2
    assert not (user.state / "directory.sqlite").exists()


def test_per_user_quota_show_writes_nothing(user):
    user.deliver(M1, check=0)
    shown = as_json(user, "quota", "show")
    assert (shown["storage_limit"], shown["storage_limit_from"]) == (0, "none")
    assert shown["messages_used"] == 1 and shown["storage_used"] > 0
    assert shown["maildir"] == str(user.maildir)
    assert not (user.maildir / "maildirsize").exists()
    (user.maildir / "maildirsize").write_bytes(b"1000000S\n")
    shown = as_json(user, "quota", "show")
    assert (shown["storage_limit"], shown["storage_limit_from"]) == (
        1000000, "maildirsize")


def test_per_user_mailbox_commands_say_they_are_managed_only(user):
    for args in (["mailbox", "list"], ["mailbox", "create", ALICE], ["db", "list"]):
        line = one_line_error(user.run(*args), 78)
        assert "managed-mode command" in line and "per-user mode" in line
    assert not user.state.exists() or not any(user.state.iterdir())


def test_read_only_commands_create_no_state(site):
    for args in (["mailbox", "list"], ["dedup", "stats"],
                 ["dedup", "lookup", "--message-id", "x@y"]):
        assert as_json(site, *args) == []
    one_line_error(site.run("mailbox", "show", ALICE), 67)
    one_line_error(site.run("quota", "show", ALICE), 67)
    assert not site.state.exists()


# --dry-run and --now

def test_dedup_cleanup_dry_run_at_another_time(site):
    site.create(ALICE)
    site.deliver(M1, ALICE, check=0)
    now = time.time()
    insert_rows(site, [(ALICE, "old@x", now - 10 * DAY, "delivered")])
    assert as_json(site, "dedup", "cleanup", "--dry-run")["would_delete"] == 1
    later = as_json(site, "dedup", "cleanup", "--dry-run", "--now", str(int(now + 8 * DAY)))
    assert later["would_delete"] == 2 and later["databases"] == [
        {"database": "default", "would_delete": 2}]
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 8 * DAY))
    assert as_json(site, "dedup", "cleanup", "--dry-run", "--now", iso)["now"] == iso
    assert row_count(site, ALICE) == 2  # nothing deleted
    one_line_error(site.run("dedup", "cleanup", "--now", iso), 64)
    one_line_error(site.run("dedup", "cleanup", "--dry-run", "--now", "soon"), 64)


def test_partial_bounce_dry_run_at_another_time(site):
    _, _, record = team_partial(site)
    assert as_json(site, "partial", "bounce", "--older-than", "5d", "--dry-run") == []
    later = str(record["created"] + 6 * DAY)
    [report] = as_json(site, "partial", "bounce", "--older-than", "5d", "--dry-run",
                       "--now", later)
    assert report["outcome"] == "would-bounce" and report["age_seconds"] >= 6 * DAY
    assert "DSN to <sender@example.org>" in report["reason"]
    assert site.sent() == [] and records(site) == [record]
    one_line_error(site.run("partial", "bounce", "--all", "--now", later), 64)
    done = site.run("partial", "bounce", "--all", "--dry-run", check=0)
    assert done.stdout.decode().splitlines()[-1] == "would bounce 1"
    assert json.loads(site.run("partial", "list", "--json", check=0).stdout)


def test_purge_of_a_big_maildir_shows_progress_on_a_terminal(site):
    """stdout a terminal (a pty), as for an admin: a bar for the removal;
    --json on the same terminal: the report alone."""
    import pty
    import subprocess

    from conftest import LDA

    def on_a_terminal(*args):
        leader, follower = pty.openpty()
        with os.fdopen(leader, "rb", buffering=0) as out:
            done = subprocess.run([LDA, *args], stdout=follower, stderr=subprocess.PIPE,
                                  env=site.env, timeout=120)
            os.close(follower)
            text = b""
            try:
                while chunk := out.read(65536):
                    text += chunk
            except OSError:  # EIO: the terminal's other end is closed
                pass
        assert done.returncode == 0, done.stderr
        return text.decode()

    for address in (ALICE, BOB):
        cur = site.create(address) / "cur"
        for n in range(500):
            (cur / f"{n}.big:2,S").write_bytes(b"x")
    assert "removing" in on_a_terminal("mailbox", "delete", ALICE, "--purge")
    quiet = on_a_terminal("mailbox", "delete", BOB, "--purge", "--json")
    assert "removing" not in quiet and '"messages": 500' in quiet

"""`lda db check`: each kind of damage found, reported with its repair (a
command that exists), exit 0 on a clean site and 78 with problems; --json."""

import json
import re
import shutil
import sqlite3
from contextlib import closing

import click
import pytest

from conftest import damage_pages, message, remove_directory_entry
from lda.cli import cli

ALICE, BOB = "alice@example.org", "bob@example.org"


def commands(command=cli, path=("lda",)):
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from commands(sub, path + (name,))
    else:
        yield " ".join(path)


LDA_COMMANDS = set(commands())


@pytest.fixture
def busy_site(site):
    """Mailboxes in two databases, a forward outside the store, a partial
    delivery: rows of each kind a delivery writes."""
    site.create(ALICE)
    site.run("db", "create", "db2", check=0)
    site.create(BOB, "--db", "db2", "--quota-messages", "1")
    site.run("mailbox", "create", "carol@example.org", "--forward", "carol@elsewhere.example",
             "--forward", BOB, check=0)
    site.deliver(message("<fill@example.org>"), BOB, check=0)
    site.deliver(message(), ALICE, "carol@example.org", check=0)  # bob full: partial
    return site


def check(site, *args, code):
    done = site.run("db", "check", *args)
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    return done.stdout.decode().splitlines()


def report(site, *args, code):
    done = site.run("db", "check", *args, "--json")
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    return json.loads(done.stdout)


def problems(site, *args, code=78):
    found = report(site, *args, code=code)["problems"]
    for problem in found:
        for command in re.findall(r"`(lda [^`]*)`", problem["repair"]):
            assert " ".join(command.split()[:3]) in LDA_COMMANDS or \
                " ".join(command.split()[:2]) in LDA_COMMANDS, command
    return found


def one(found, text):
    matching = [p for p in found if text in p["problem"]]
    assert len(matching) == 1, found
    return matching[0]


def test_a_clean_site_is_clean(busy_site):
    lines = check(busy_site, code=0)
    assert lines == ["checked 2 database(s), 3 mailbox(es): no problem(s)"]
    assert report(busy_site, code=0) == {"databases": 2, "mailboxes": 3, "problems": [],
                                         "elsewhere": [], "exit_code": 0}


def test_a_new_site_has_nothing_to_check(site):
    assert check(site, code=0) == ["checked 0 database(s), 0 mailbox(es): no problem(s)"]


def test_a_corrupt_lda_sqlite_is_found_with_how_to_salvage_it(busy_site):
    db = busy_site.db()
    for stale in ("-wal", "-shm"):
        db.with_name(db.name + stale).unlink(missing_ok=True)
    db.write_bytes(b"garbage" * 1000)
    found = one(problems(busy_site), "not an SQLite database")
    assert found["file"] == str(db)
    assert f"sqlite3 {db} .recover" in found["repair"]
    lines = check(busy_site, code=78)
    assert lines[0].startswith(f"{db}: not an SQLite database") and len(lines) == 2


def test_damaged_pages_fail_the_integrity_check(busy_site):
    db = busy_site.db()
    damage_pages(db, ALICE)
    found = one(problems(busy_site), "integrity check failed")
    assert found["file"] == str(db) and ".recover" in found["repair"]


def test_a_corrupt_directory_is_found_and_nothing_else_is_checked(busy_site):
    directory = busy_site.state / "directory.sqlite"
    for stale in ("-wal", "-shm"):
        directory.with_name(directory.name + stale).unlink(missing_ok=True)
    directory.write_bytes(b"garbage" * 1000)
    assert [p["file"] for p in problems(busy_site)] == [str(directory)]


def test_a_missing_maildir_names_the_mailbox_to_delete_or_recreate(busy_site):
    maildir = busy_site.maildir(ALICE)
    shutil.rmtree(maildir)
    found = one(problems(busy_site), "Maildir of alice@example.org is missing")
    assert found["file"] == str(maildir)
    assert f"`lda mailbox delete {ALICE}`" in found["repair"]
    assert f"mkdir -p {maildir}/cur" in found["repair"]


def test_a_maildir_without_new_is_found(busy_site):
    (busy_site.maildir(ALICE) / "new").rename(busy_site.maildir(ALICE) / "new.away")
    one(problems(busy_site), "Maildir of alice@example.org has no new/")


def test_rows_and_partials_of_a_deleted_mailbox_are_found(busy_site):
    # `lda mailbox delete` takes them along now (test_admin_lifecycle); a
    # directory restored from an older backup still leaves them.
    remove_directory_entry(busy_site, BOB)
    found = problems(busy_site)
    rows = one(found, f"DeliveredTo rows of {BOB}, which is no mailbox")
    assert rows["file"] == str(busy_site.db("db2"))
    assert "`lda dedup cleanup --db db2`" in rows["repair"]
    assert f"`lda mailbox create {BOB} --db db2`" in rows["repair"]
    partial = one(found, f"is for {BOB}, which is no mailbox")
    assert re.search(r"`lda partial bounce --id \w+:\d+`", partial["repair"])


def test_a_missing_spooled_copy_is_found(busy_site):
    spooled = list((busy_site.state / "databases").glob("*/partial/*"))
    assert len(spooled) == 1
    spooled[0].unlink()
    found = one(problems(busy_site), "spooled copy of partial delivery")
    assert found["file"] == str(spooled[0]) and "lda partial bounce --id" in found["repair"]


def test_rows_left_in_the_old_database_by_a_move_are_found(busy_site):
    with closing(sqlite3.connect(busy_site.db())) as conn:
        conn.execute("INSERT INTO delivered_to VALUES (?, '<old@x>', '', 0, 'delivered', "
                     "NULL, NULL)", (BOB,))
        conn.commit()
    found = one(problems(busy_site), f"DeliveredTo rows of {BOB}, whose mailbox is in "
                                     "database db2")
    assert found["file"] == str(busy_site.db())


def test_an_unfinished_move_says_how_to_finish_or_undo_it(busy_site):
    with closing(sqlite3.connect(busy_site.state / "directory.sqlite")) as conn:
        conn.execute("INSERT INTO moves VALUES (?, 'default', 'db2', 'a', 'a', 'rows', 0)",
                     (ALICE,))
        conn.commit()
    found = one(problems(busy_site), f"unfinished move of {ALICE} from default to db2")
    assert f"`lda mailbox move {ALICE} --to db2`" in found["repair"]
    assert f"`lda mailbox move {ALICE} --rollback`" in found["repair"]


def test_a_missing_database_directory_is_found(busy_site):
    root = busy_site.db("db2").parent
    shutil.rmtree(root)
    found = one(problems(busy_site), "directory of mailbox database db2 is missing")
    assert found["file"] == str(root)


def test_a_lost_directory_with_databases_left_is_found(busy_site):
    for path in busy_site.state.glob("directory.sqlite*"):
        path.unlink()
    found = one(problems(busy_site), "no mailbox directory")
    assert "`lda db create NAME --path DIR`" in found["repair"]


def test_a_state_dir_that_is_a_file_is_found(site):
    shutil.rmtree(site.state, ignore_errors=True)
    site.state.write_text("x")
    assert one(problems(site), "state_dir is not a directory")["file"] == str(site.state)


def test_one_database_by_name(busy_site):
    shutil.rmtree(busy_site.maildir(ALICE))
    assert report(busy_site, "db2", code=0)["databases"] == 1
    assert problems(busy_site, "default")[0]["file"] == str(busy_site.maildir(ALICE))
    done = busy_site.run("db", "check", "nope")
    assert (done.returncode, done.stderr.decode()) == (
        67, "lda: no mailbox database named 'nope'\n")

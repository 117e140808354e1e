"""`lda mailbox move`: the Maildir, its DeliveredTo rows, its Sieve state
and its partial deliveries move together; a kill -9 at any step leaves a
state that the same command resumes (or --rollback undoes) with nothing
lost or doubled."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import LDA, maildir_files, message

# A group every Debian system has, not root's: the group a Maildir is open to.
MAIL_GID = 8

POPULATE_NAME = "{i}.M0P1Q{i}R{i:016x}.test,S={size}"


def populate(site, address, messages, extra_rows):
    """A mailbox with `messages` files and matching DeliveredTo rows, plus
    `extra_rows` rows of messages no longer in it (built directly: 10,000
    deliveries through the command would take minutes)."""
    from lda.store.deliveredto import ROW_COLUMNS, DeliveredTo

    box = site.maildir(address)
    now = time.time()
    rows = []
    for i in range(messages):
        body = b"Message-ID: <pop%d@x>\nSubject: %d\n\n" % (i, i) + b"x" * 200 + b"\n"
        name = POPULATE_NAME.format(i=i, size=len(body))
        (box / "new" / name).write_bytes(body)
        rows.append((address, f"pop{i}@x", "", now, "delivered", name))
    rows += [(address, f"gone{i}@x", "", now, "delivered", None) for i in range(extra_rows)]
    db = DeliveredTo(str(site.db().parent))
    with db.transaction():
        db.conn.executemany(f"INSERT INTO delivered_to {ROW_COLUMNS} "
                             "VALUES (?, ?, ?, ?, ?, ?)", rows)
    db.close()
    return box


def count_rows(path, mailbox):
    if not os.path.exists(path):
        return 0
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM delivered_to WHERE mailbox = ?",
                            (mailbox,)).fetchone()[0]
    finally:
        conn.close()


def all_messages(root):
    return sorted(p.name.split(":")[0] for p in root.rglob("*")
                  if p.parent.name in ("new", "cur") and p.is_file())


def test_move_10000_messages_100000_rows_then_resend_is_a_duplicate(alice_and_empty_db2):
    site = alice_and_empty_db2
    populate(site, "alice@example.org", 10_000, 90_000)
    before = all_messages(site.maildir("alice@example.org"))
    done = site.run("mailbox", "move", "alice@example.org", "--to", "db2", "--json", check=0)
    assert b'"rows": 100000' in done.stdout and b'"messages": 10000' in done.stdout
    box = site.maildir("alice@example.org")
    assert "db2" in str(box)
    assert all_messages(box) == before
    assert count_rows(site.db("db2"), "alice@example.org") == 100_000
    assert count_rows(site.db("default"), "alice@example.org") == 0
    site.deliver(b"Message-ID: <pop1234@x>\nSubject: 1234\n\nresent\n",
                 "alice@example.org", check=0)
    assert len(maildir_files(box)) == 10_000


def test_move_across_filesystems_copies_and_verifies(site, tmp_path):
    shm = "/dev/shm"
    if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm) to move across")
    site.create("alice@example.org")
    other = os.path.join(shm, f"lda-test-{os.getpid()}-{time.time_ns()}")
    try:
        site.run("db", "create", "shm", "--path", other, check=0)
        populate(site, "alice@example.org", 300, 700)
        source = site.maildir("alice@example.org")
        mtimes = {p.name: p.stat().st_mtime_ns for p in maildir_files(source)}
        done = site.run("mailbox", "move", "alice@example.org", "--to", "shm", "--json",
                        check=0)
        assert b'"method": "copy"' in done.stdout
        box = site.maildir("alice@example.org")
        assert str(box).startswith(other) and not source.exists()
        assert {p.name: p.stat().st_mtime_ns for p in maildir_files(box)} == mtimes
        assert count_rows(os.path.join(other, "lda.sqlite"), "alice@example.org") == 1000
    finally:
        subprocess.run(["rm", "-rf", other], check=True)


def managesieve_scripts(box):
    """Scripts as Dovecot's ManageSieve keeps them in a managed mailbox
    (`sieve = file:~/sieve;active=~/lda.sieve`, README): sieve/NAME.sieve,
    and lda.sieve a symlink to the active one; plus a planted link out of
    the mailbox, which no move may carry."""
    (box / "sieve").mkdir()
    (box / "sieve" / "work.sieve").write_text('require "fileinto";\nfileinto "Work";\n')
    (box / "lda.sieve").symlink_to("sieve/work.sieve")
    (box / "sieve" / "planted.sieve").symlink_to("/etc/hostname")
    for sub in ("cur", "new", "tmp"):
        (box / ".Work" / sub).mkdir(parents=True)


@pytest.mark.parametrize("across", [False, True], ids=["rename", "copy"])
def test_managesieves_active_link_moves_with_the_mailbox(site, tmp_path, across):
    """The active script stays active after a move, rename or copy: its
    symlink is carried as a symlink (ManageSieve reads it), where a copy
    used to drop it and her filter stopped without a word.  A delivery
    follows no other link (lda/deliver/sievescripts.py)."""
    shm = "/dev/shm"
    if across and (not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev):
        pytest.skip("no second filesystem (/dev/shm) to move across")
    site.create("alice@example.org")
    managesieve_scripts(site.maildir("alice@example.org"))
    other = (os.path.join(shm, f"lda-test-{os.getpid()}-{time.time_ns()}") if across
             else str(tmp_path / "db2"))
    try:
        site.run("db", "create", "db2", "--path", other, check=0)
        done = site.run("mailbox", "move", "alice@example.org", "--to", "db2", "--json",
                        check=0)
        assert f'"method": "{"copy" if across else "rename"}"'.encode() in done.stdout
        box = site.maildir("alice@example.org")
        assert os.readlink(box / "lda.sieve") == "sieve/work.sieve"
        if across:  # a rename moves the directory as it is; a copy carries no other link
            assert not os.path.lexists(box / "sieve" / "planted.sieve")
        site.deliver(message(), "alice@example.org", check=0)
        assert len(maildir_files(box / ".Work")) == 1 and maildir_files(box) == []
    finally:
        subprocess.run(["rm", "-rf", other], check=True)


def modes_and_groups(root):
    """{relative path: (st_mode, st_gid)} of the directories and files
    under root, root itself as "."."""
    found = {}
    for parent, dirs, files in os.walk(root):
        for name in [".", *dirs, *files] if parent == str(root) else [*dirs, *files]:
            path = os.path.join(parent, name)
            st = os.lstat(path)
            found[os.path.normpath(os.path.relpath(path, root))] = (st.st_mode, st.st_gid)
    return found


def open_to_a_group(box, gid):
    """box as a site gives a Maildir to a group (a webmail's, a backup's):
    2750 and that group, so that what deliveries make is the group's and
    0640 (a folder 2750), as Dovecot makes it too."""
    for path in (box, *(box / sub for sub in ("cur", "new", "tmp"))):
        os.chown(path, -1, gid)
        path.chmod(0o2750)


@pytest.mark.parametrize("across", [False, True], ids=["rename", "copy"])
def test_a_maildir_open_to_a_group_moves_with_its_modes_and_group(site, tmp_path, across):
    """A Maildir whose root lets a group in keeps, moved, every directory's
    and file's mode and group.  A copy across filesystems made them lda's
    own, 0700 and 0600 of root's group: the group lost the mailbox, and
    Dovecot then refused to rename a folder it made under one copied."""
    shm = "/dev/shm"
    if across and (not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev):
        pytest.skip("no second filesystem (/dev/shm) to move across")
    site.create("alice@example.org", "--quota-storage", "1M")
    box = site.maildir("alice@example.org")
    open_to_a_group(box, MAIL_GID)
    site.deliver(message(), "alice@example.org", check=0)
    site.run("deliver", "-f", "sender@example.org", "-m", "Lists", "-o",
             "lda_mailbox_autocreate=yes", "alice@example.org",
             input=message("<m2@example.org>"), check=0)
    before = modes_and_groups(box)
    assert {before[p] for p in ("maildirsize", ".Lists/maildirfolder")} == {
        (0o100640, MAIL_GID)} and before[".Lists/new"] == (0o42750, MAIL_GID), before
    other = (os.path.join(shm, f"lda-test-{os.getpid()}-{time.time_ns()}") if across
             else str(tmp_path / "db2"))
    try:
        site.run("db", "create", "db2", "--path", other, check=0)
        done = site.run("mailbox", "move", "alice@example.org", "--to", "db2", "--json",
                        check=0)
        assert f'"method": "{"copy" if across else "rename"}"'.encode() in done.stdout
        moved = site.maildir("alice@example.org")
        assert str(moved).startswith(other)
        assert modes_and_groups(moved) == before
    finally:
        subprocess.run(["rm", "-rf", other], check=True)


KILLER = """
import os, signal, sys
from lda.config import load_config
from lda.admin.mailboxes import open_directory
from lda.admin.move import Move
address, point, target = sys.argv[1:4]
def after_step(step):
    if step == point:
        os.kill(os.getpid(), signal.SIGKILL)
def progress(phase, done, total):
    if point == "mid-" + phase and done * 2 >= total:
        os.kill(os.getpid(), signal.SIGKILL)
config = load_config(None)
Move(config, open_directory(config), address, progress=progress,
     after_step=after_step).run(target)
"""
POINTS = ["begin", "rows", "mid-rows", "cleanup"]


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("finish", ["resume", "rollback"])
def test_kill_9_at_each_step_then_resume_or_roll_back(alice_and_empty_db2, point, finish):
    site = alice_and_empty_db2
    address = "alice@example.org"
    populate(site, address, 200, 11_800)  # three row batches: a kill mid-rows
    before = all_messages(site.maildir(address))
    killed = subprocess.run([sys.executable, "-c", KILLER, address, point, "db2"],
                            env=site.env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    # While the journal says "moving", a delivery is deferred, not split.
    deferred = site.deliver(message(message_id="<during@x>"), address, check=75)
    assert b"4.2.1" in deferred.stderr
    args = ["--to", "db2"] if finish == "resume" else ["--rollback"]
    done = site.run("mailbox", "move", address, *args, "--json")
    switched = point == "cleanup"
    expect_db = "db2" if finish == "resume" or switched else "default"
    assert done.returncode == 0, done.stderr.decode()
    box = site.maildir(address)
    assert f"/databases/{expect_db}/" in str(box)
    assert all_messages(box) == before
    other = "default" if expect_db == "db2" else "db2"
    assert count_rows(site.db(expect_db), address) == 12_000
    assert count_rows(site.db(other), address) == 0
    assert not (site.state / "databases" / other / "example.org" / "alice").exists()
    conn = sqlite3.connect(site.db(expect_db))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    site.deliver(message(message_id="<during@x>"), address, check=0)  # the MTA retries
    site.deliver(message(message_id="<pop7@x>", date=None), address, check=0)
    assert len(all_messages(box)) == len(before) + 1


def test_partial_records_move_with_the_mailbox(alice_and_empty_db2):
    site = alice_and_empty_db2
    site.run("mailbox", "delete", "alice@example.org", check=0)
    site.create("carol@example.org")
    site.create("alice@example.org", "--quota-storage", "100")
    site.aliases.write_text("team: alice, carol\n")
    site.deliver(message(body=b"q" * 400 + b"\n"), "team@example.org", check=0)
    site.run("mailbox", "move", "alice@example.org", "--to", "db2", check=0)
    conn = sqlite3.connect(site.db("db2"))
    [(target, spool)] = conn.execute("SELECT target, spool_file FROM partial_deliveries")
    conn.close()
    assert target == "alice@example.org" and "/db2/partial/" in spool
    assert os.path.exists(spool)
    conn = sqlite3.connect(site.db("default"))
    assert conn.execute("SELECT count(*) FROM partial_deliveries").fetchone()[0] == 0
    conn.close()


DELIVERER = """
import subprocess, sys, time
lda, address, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for i in range(first, first + count):
    msg = b"Message-ID: <c%d@x>\\nSubject: %d\\n\\nbody\\n" % (i, i)
    for attempt in range(600):  # an MTA retries a deferred message
        rc = subprocess.run([lda, "deliver", address], input=msg,
                            stderr=subprocess.DEVNULL).returncode
        if rc == 0:
            break
        assert rc == 75, rc
        time.sleep(0.05)
    else:
        sys.exit("gave up")
"""


def test_concurrent_deliveries_during_moves_lose_and_double_nothing(alice_and_empty_db2):
    site = alice_and_empty_db2
    address = "alice@example.org"
    populate(site, address, 2000, 20_000)
    workers = [subprocess.Popen([sys.executable, "-c", DELIVERER, LDA, address,
                                 str(n * 40), "40"], env=site.env) for n in range(3)]
    moves = 0
    for target in ("db2", "default", "db2", "default"):
        site.run("mailbox", "move", address, "--to", target, check=0)
        moves += 1
    # and once more, resending everything already sent while the move runs
    resend = subprocess.Popen([sys.executable, "-c", DELIVERER, LDA, address, "0", "120"],
                              env=site.env)
    site.run("mailbox", "move", address, "--to", "db2", check=0)
    assert [w.wait(timeout=600) for w in workers + [resend]] == [0, 0, 0, 0]
    names = all_messages(site.maildir(address))
    assert len(names) == len(set(names)) == 2000 + 120
    assert not (site.state / "databases" / "default" / "example.org" / "alice").exists()


def test_sieve_vacation_memory_moves_with_the_mailbox(alice_and_empty_db2):
    """A sender answered before the move is not answered again after it,
    within vacation's :days, and the old database keeps no Sieve rows."""
    site = alice_and_empty_db2
    box = site.maildir("alice@example.org")
    (box / "lda.sieve").write_text('require "vacation";\nvacation :days 7 "I am away.";\n')
    site.deliver(message(message_id="<before@x>"), "alice@example.org",
                 sender="sender@example.org", check=0)
    assert len(site.sent()) == 1
    done = site.run("mailbox", "move", "alice@example.org", "--to", "db2", "--json", check=0)
    assert json.loads(done.stdout)["sieve_rows"] == 1
    site.deliver(message(message_id="<after@x>"), "alice@example.org",
                 sender="sender@example.org", check=0)
    assert len(site.sent()) == 1
    for name, expected in (("default", 0), ("db2", 1)):
        conn = sqlite3.connect(site.db(name))
        try:
            assert conn.execute("SELECT count(*) FROM sieve_vacations").fetchone()[0] == expected
        finally:
            conn.close()


def test_a_moved_mailbox_defers_only_its_own_recipient_of_a_batch(alice_and_empty_db2):
    """Recipients are delivered together under one set of locks: alice's
    mailbox moved after both were resolved, so she gets 4.2.1 and bob, in
    the same batch, still gets the message."""
    import io

    from lda.config import load_config
    from lda.deliver.resolve import make_resolver
    from lda.deliver.delivery import Delivery
    from lda.log import Log

    site = alice_and_empty_db2
    site.create("bob@example.org")
    config = load_config(str(site.config), environ=site.env)
    resolver = make_resolver(config, site.env)
    plans = [resolver.resolve(a) for a in ("alice@example.org", "bob@example.org")]
    site.run("mailbox", "move", "alice@example.org", "--to", "db2", check=0)
    log = io.StringIO()
    delivery = Delivery(config, resolver, Log(stream=log))
    alice, bob = delivery._deliver_plans(plans, io.BytesIO(message()))
    assert alice.error is not None and alice.error.reason().startswith("4.2.1"), log.getvalue()
    assert bob.ok and len(maildir_files(site.maildir("bob@example.org"))) == 1, log.getvalue()
    assert maildir_files(site.maildir("alice@example.org")) == []


@pytest.mark.parametrize("same_resolver", [False, True],
                         ids=["another-resolver", "the-resolving-one"])
def test_a_delivery_resolved_before_a_move_leaves_no_maildir_behind(
        alice_and_empty_db2, same_resolver):
    """The race CI once hit with 50 deliveries against 6 moves, made
    deterministic: a delivery resolves alice to default, the move takes her
    Maildir to db2, then the delivery goes on.  It must be deferred (4.2.1)
    without re-creating an empty Maildir at the old path, which made the
    next move back fail with "exists already".  The resolver that made the
    plan (as in lda deliver and lda lmtp) skips the directory queries under
    the locks only while nothing was committed to the directory since."""
    import io

    from lda.config import load_config
    from lda.deliver.resolve import make_resolver
    from lda.deliver.delivery import Delivery
    from lda.log import Log

    site = alice_and_empty_db2
    config = load_config(str(site.config), environ=site.env)
    resolver = make_resolver(config, site.env)
    plan = resolver.resolve("alice@example.org")
    old = site.maildir("alice@example.org")
    site.run("mailbox", "move", "alice@example.org", "--to", "db2", check=0)
    assert not old.exists()
    log = io.StringIO()
    delivery = Delivery(config, resolver if same_resolver else make_resolver(config, site.env),
                        Log(stream=log))
    [result] = delivery._deliver_plans([plan], io.BytesIO(message()))
    assert result.error is not None and result.error.reason().startswith("4.2.1"), log.getvalue()
    assert not old.exists()
    site.run("mailbox", "move", "alice@example.org", "--to", "default", check=0)
    site.deliver(message(), "alice@example.org", check=0)
    assert len(maildir_files(site.maildir("alice@example.org"))) == 1

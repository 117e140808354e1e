"""Moving a mailbox to a database on another host (lda/admin/hostmove.py,
lda/admin/transfer.py): a real private PostgreSQL (tests/postgres.py), two
"hosts" on this machine (two lda.toml files with their own host_name,
state_dir and mirror), the installed `lda` command, and as move_command the
target's own `lda mailbox receive` run locally."""

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import LDA, maildir_files, message
from postgres import own_postgres, postgres, postgres_cluster  # noqa: F401 (fixtures)

ALICE = "alice@example.org"
# Delivered to alice before each move (two filed by her script): enough
# for every kind of file and row; each costs a process in every test.
MESSAGES = 6
FORWARD = "carol@elsewhere.example"
S421_MOVING, S430_ELSEWHERE = b"4.2.1", b"4.3.0"
SCRIPT = b'require "fileinto";\nif header :contains "subject" "list" { fileinto "Lists"; }\n'


def tree(root):
    """{relative path: sha256} of every file under root."""
    found = {}
    for parent, _, files in os.walk(root):
        for name in files:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return found


def rows(db_file, table="delivered_to", address=ALICE):
    if not os.path.exists(db_file):
        return []
    with closing(sqlite3.connect(db_file)) as conn:
        return sorted(conn.execute(f"SELECT * FROM {table} WHERE mailbox = ?", (address,)))


def receive_locally(b):
    """a's move_command: b's own `lda mailbox receive`, run here."""
    return [LDA, "-c", str(b.config), "mailbox", "receive"]


def make_hosts(make_site, dsn, move_command=receive_locally):
    """Host b first (a's move_command(b) reaches it), then host a, which
    holds alice in dba; dbb is b's, at a path under b's state_dir."""
    b = make_site(directory=dsn, host_name="b")
    a = make_site(directory=dsn, host_name="a", move_command=move_command(b))
    a.run("host", "add", "a", "--transport", "lmtp:inet:10.0.0.1:24", check=0)
    a.run("host", "add", "b", "--transport", "lmtp:inet:10.0.0.2:24", check=0)
    a.run("db", "create", "dba", "--host", "a", check=0)
    a.run("db", "create", "dbb", "--host", "b", "--path", str(b.state / "databases" / "dbb"),
          check=0)
    a.create(ALICE, "--db", "dba", "--quota-storage", "10M", "--forward", FORWARD)
    b.run("directory", "sync", check=0)
    a.dba = a.state / "databases" / "dba" / "lda.sqlite"
    b.dbb = b.state / "databases" / "dbb" / "lda.sqlite"
    b.alice = b.state / "databases" / "dbb" / "example.org" / "alice"
    return a, b


@pytest.fixture
def hosts(make_site, postgres):
    _, dsn = postgres
    a, b = make_hosts(make_site, dsn)
    populate(a, MESSAGES)
    return a, b


def populate(a, count):
    """count messages to alice (two into a folder by her Sieve script), a
    keywords file, a hand-made folder and her Sieve script."""
    # As `lda sieve install` leaves them (which cannot on PostgreSQL yet):
    # the stored script and its active copy.
    maildir = a.maildir(ALICE)
    (maildir / "sieve").mkdir()
    (maildir / "sieve" / "alice.sieve").write_bytes(SCRIPT)
    (maildir / "lda.sieve").write_bytes(SCRIPT)
    for sub in ("cur", "new", "tmp"):
        (maildir / ".Lists" / sub).mkdir(parents=True)
    for n in range(count):
        subject = "list" if n < 2 else f"m{n}"
        a.deliver(message(message_id=f"<m{n}@example.org>", subject=subject), ALICE, check=0)
    (maildir / "dovecot-keywords").write_text("0 $Junk\n")
    archive = maildir / ".Archive" / "cur"
    archive.mkdir(parents=True)
    (archive / "1.M1P1.host:2,S").write_bytes(message(message_id="<old@x>"))


def test_managesieves_active_link_moves_to_the_other_host(make_site, postgres):
    """ManageSieve's lda.sieve symlink to sieve/NAME.sieve arrives as that
    symlink (the stream used to drop it: her filter stopped on the new
    host); a link anywhere else is not carried."""
    a, b = make_hosts(make_site, postgres[1])
    maildir = a.maildir(ALICE)
    (maildir / "sieve").mkdir()
    (maildir / "sieve" / "alice.sieve").write_bytes(SCRIPT)
    (maildir / "lda.sieve").symlink_to("sieve/alice.sieve")
    (maildir / "sieve" / "planted.sieve").symlink_to("/etc/hostname")
    for sub in ("cur", "new", "tmp"):
        (maildir / ".Lists" / sub).mkdir(parents=True)
    a.deliver(message(message_id="<l1@x>", subject="list"), ALICE, check=0)
    assert len(maildir_files(maildir / ".Lists")) == 1
    a.run("mailbox", "move", ALICE, "--to", "dbb", check=0)
    assert os.readlink(b.alice / "lda.sieve") == "sieve/alice.sieve"
    assert not os.path.lexists(b.alice / "sieve" / "planted.sieve")
    b.deliver(message(message_id="<l2@x>", subject="list"), ALICE, check=0)
    assert len(maildir_files(b.alice / ".Lists")) == 2


def test_an_active_script_named_with_a_leading_dot_moves_too(make_site, postgres):
    """ManageSieve stores and activates ".hidden" (sieve/.hidden.sieve), and
    a delivery runs it: the move carries it as it carries any other, rather
    than refusing the whole mailbox for its name."""
    a, b = make_hosts(make_site, postgres[1])
    maildir = a.maildir(ALICE)
    (maildir / "sieve").mkdir()
    (maildir / "sieve" / ".hidden.sieve").write_bytes(SCRIPT)
    (maildir / "lda.sieve").symlink_to("sieve/.hidden.sieve")
    for sub in ("cur", "new", "tmp"):
        (maildir / ".Lists" / sub).mkdir(parents=True)
    a.run("mailbox", "move", ALICE, "--to", "dbb", check=0)
    assert os.readlink(b.alice / "lda.sieve") == "sieve/.hidden.sieve"
    b.deliver(message(message_id="<h1@x>", subject="list"), ALICE, check=0)
    assert len(maildir_files(b.alice / ".Lists")) == 1


def pg_moves(a):
    return json.loads(a.run("directory", "status", "--json", check=None).stdout or "{}")


def moves_rows(a):
    with closing(sqlite3.connect(a.state / "directory.sqlite")) as conn:
        return conn.execute("SELECT step FROM moves").fetchall()


def test_a_mailbox_moves_whole_to_the_other_host(hosts):
    a, b = hosts
    spool = a.dba.parent / "partial" / "1.spool"
    spool.parent.mkdir()
    spool.write_bytes(message(message_id="<p@x>"))
    with closing(sqlite3.connect(a.dba)) as conn, conn:  # her vacation's memory, a partial
        conn.execute("INSERT INTO sieve_vacations (mailbox, sender, handle, sent_at) "
                     "VALUES (?, 'bob@x', 'h1', 1.0)", (ALICE,))
        conn.execute("INSERT INTO partial_deliveries (created, sender, recipient, target, "
                     "mailbox, message_id, submit_time, reason, spool_file, last_attempt) "
                     "VALUES (1.0, 's@x', ?, ?, ?, 'p@x', '', 'failed', ?, 1.0)",
                     (ALICE, FORWARD, ALICE, str(spool)))
    before, rows_before = tree(a.maildir(ALICE)), rows(a.dba)
    forwarded = rows(a.dba, address=f"forward:{FORWARD}")
    vacation = rows(a.dba, "sieve_vacations")
    assert len(forwarded) == MESSAGES and len(vacation) == 1
    assert len(rows_before) == MESSAGES and "maildirsize" in before and "lda.sieve" in before
    assert len([p for p in before if p.startswith(".Lists/")]) == 2, sorted(before)
    done = a.run("mailbox", "move", ALICE, "--to", "dbb", "--json", check=0)
    report = json.loads(done.stdout)
    assert (report["result"], report["messages"], report["rows"], report["partials"]) \
        == ("moved", MESSAGES + 1, 2 * MESSAGES, 1)
    assert tree(b.alice) == before                  # byte-identical, every file
    assert (b.alice / "tmp").is_dir() and (b.alice / ".Lists" / "tmp").is_dir()
    assert rows(b.dbb) == rows_before
    assert rows(b.dbb, address=f"forward:{FORWARD}") == forwarded
    assert rows(b.dbb, "sieve_vacations") == vacation
    partial = rows(b.dbb, "partial_deliveries")
    moved_spool = b.dbb.parent / "partial" / "1.spool"
    assert [(r[6], r[9]) for r in partial] == [("p@x", str(moved_spool))]
    assert moved_spool.read_bytes() == message(message_id="<p@x>") and not spool.exists()
    assert not os.path.exists(a.state / "databases" / "dba" / "example.org" / "alice")
    assert rows(a.dba) == [] and rows(a.dba, "sieve_vacations") == [] and moves_rows(a) == []
    # The resend of a message delivered on a before the move: discarded on b.
    b.deliver(message(message_id="<m5@example.org>", subject="m5"), ALICE, check=0)
    assert tree(b.alice) == before
    # a now says the mailbox is elsewhere; b delivers.
    refused = a.deliver(message(message_id="<after@x>"), ALICE, check=75)
    assert S430_ELSEWHERE in refused.stderr
    b.deliver(message(message_id="<after@x>"), ALICE, check=0)
    assert len(maildir_files(b.alice)) == MESSAGES - 2 + 1  # all but the 2 filed, and <after@x>
    # The forward copies: each message once, from either host (m5 not again).
    assert len(a.sent()) == MESSAGES and len(b.sent()) == 1


def test_a_maildir_open_to_a_group_arrives_with_its_modes_and_group(hosts):
    """Every directory and file of a Maildir open to a group (2750 and
    0640 of that group, as deliveries make them there; one file kept
    0600 of root's group) arrives on the other host with its mode and
    group.  The receiver made them all 0700 and 0600 of its own group."""
    from test_move import MAIL_GID, modes_and_groups

    a, b = hosts
    maildir = a.maildir(ALICE)
    for parent, dirs, files in os.walk(maildir):
        for name in [*dirs, *files] + ([""] if parent == str(maildir) else []):
            path = os.path.join(parent, name)
            if os.path.islink(path):
                continue
            os.chown(path, -1, MAIL_GID)
            os.chmod(path, 0o2750 if os.path.isdir(path) else 0o640)
    os.chown(maildir / "lda.sieve", -1, 0)
    os.chmod(maildir / "lda.sieve", 0o600)
    before = modes_and_groups(maildir)
    a.run("mailbox", "move", ALICE, "--to", "dbb", check=0)
    assert modes_and_groups(b.alice) == before


def test_a_client_every_50_ms_during_the_move_gets_each_message_delivered_once(hosts):
    """Each message goes to a, and to b when a defers it (as Postfix would
    retry it via the transport map): while the move runs, the two never
    both accept, and every message ends up in b's copy exactly once."""
    a, b = hosts
    stop, answers = threading.Event(), []

    def client():
        n = 0
        while not stop.is_set():
            n += 1
            msg = message(message_id=f"<c{n}@x>", subject=f"c{n}")
            on_a = a.deliver(msg, ALICE).returncode
            on_b = b.deliver(msg, ALICE).returncode if on_a else None
            answers.append((n, on_a, on_b))
            time.sleep(0.05)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        while len(answers) < 2 and thread.is_alive():  # a took some before the move
            time.sleep(0.05)
        moved = a.run("mailbox", "move", ALICE, "--to", "dbb")
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    assert moved.returncode == 0, moved.stderr
    assert all(on_a in (0, 75) and on_b in (None, 0, 75) for _, on_a, on_b in answers), answers
    deferred = [n for n, on_a, on_b in answers if on_a and on_b]
    for n in deferred:                                   # Postfix's retry, later
        b.deliver(message(message_id=f"<c{n}@x>", subject=f"c{n}"), ALICE, check=0)
    subjects = [line for path in maildir_files(b.alice)
                for line in Path(path).read_bytes().splitlines() if line.startswith(b"Subject: c")]
    assert sorted(subjects) == sorted(f"Subject: c{n}".encode() for n, _, _ in answers), answers
    assert answers[0][1] == 0 and answers[-1][1:] == (75, 0), answers


KILLER = """
import os, signal, sys
from lda.config import load_config
from lda.admin.mailboxes import open_directory
from lda.admin.hostmove import HostMove
point = sys.argv[1]
def after_step(step):
    if step == point:
        os.kill(os.getpid(), signal.SIGKILL)
def progress(phase, done, total):
    if point == "mid-" + phase and done * 2 >= total:
        os.kill(os.getpid(), signal.SIGKILL)
config = load_config(None)
HostMove(config, open_directory(config), "alice@example.org", progress=progress,
         after_step=after_step).run("dbb")
"""
# Before "confirmed", b's mirror still has alice on a: b defers too.
POINTS = ["begin", "mid-send", "sent", "flipped", "confirmed", "cleaned"]


def kill_at(a, point):
    killed = subprocess.run([sys.executable, "-c", KILLER, point], env=a.env,
                            capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()


@pytest.mark.parametrize("point", POINTS)
def test_kill_9_at_each_step_then_resume(hosts, point):
    a, b = hosts
    before, rows_before = tree(a.maildir(ALICE)), rows(a.dba)
    kill_at(a, point)
    # a never accepts again; b only once the flip reached its mirror.
    during = message(message_id="<during@x>")
    refused = a.deliver(during, ALICE, check=75)
    assert (S421_MOVING if point in POINTS[:3] else S430_ELSEWHERE) in refused.stderr
    accepted_on_b = POINTS.index(point) >= POINTS.index("confirmed")
    answer = b.deliver(during, ALICE, check=0 if accepted_on_b else 75)
    if not accepted_on_b:
        assert S430_ELSEWHERE in answer.stderr
    done = a.run("mailbox", "move", ALICE, "--resume", "--json", check=0)
    assert json.loads(done.stdout)["result"] == "moved"
    after, expected = tree(b.alice), len(before) + accepted_on_b
    if accepted_on_b:  # that delivery counted itself in maildirsize
        del before["maildirsize"]
    assert {p: h for p, h in after.items() if p in before} == before
    assert len(after) == expected                      # nothing lost, nothing twice
    assert [r for r in rows(b.dbb) if r[1] != "during@x"] == rows_before
    assert rows(a.dba) == [] and moves_rows(a) == []
    b.deliver(during, ALICE, check=0)                  # delivered once, whichever way
    assert len(tree(b.alice)) == len(after) + (not accepted_on_b)
    if not accepted_on_b:
        b.deliver(during, ALICE, check=0)
        assert len(tree(b.alice)) == len(after) + 1


@pytest.mark.parametrize("point", ["begin", "mid-send", "sent"])
def test_rollback_before_the_flip_leaves_the_mailbox_on_a(hosts, point):
    a, b = hosts
    before, rows_before = tree(a.maildir(ALICE)), rows(a.dba)
    kill_at(a, point)
    done = a.run("mailbox", "move", ALICE, "--rollback", check=0)
    assert b"rolled back" in done.stdout
    assert tree(a.maildir(ALICE)) == before and rows(a.dba) == rows_before
    assert not b.alice.exists() and rows(b.dbb) == [] and moves_rows(a) == []
    assert not list((b.state / "databases" / "dbb").glob(".lda-receive/*"))
    a.deliver(message(message_id="<back@x>"), ALICE, check=0)
    b.run("directory", "sync", check=0)
    assert S430_ELSEWHERE in b.deliver(message(message_id="<x@x>"), ALICE, check=75).stderr


def test_rollback_after_the_flip_is_refused(hosts):
    a, b = hosts
    kill_at(a, "flipped")
    refused = a.run("mailbox", "move", ALICE, "--rollback", check=64)
    assert b"move it back" in refused.stderr and len(refused.stderr.splitlines()) == 1
    a.run("mailbox", "move", ALICE, "--resume", check=0)
    b.deliver(message(message_id="<new@x>"), ALICE, check=0)


def test_postgresql_unreachable_refuses_to_start(make_site, own_postgres):
    a, b = make_hosts(make_site, own_postgres.dsn(own_postgres.create_database()))
    a.deliver(message(message_id="<m@x>"), ALICE, check=0)
    own_postgres.stop()
    refused = a.run("mailbox", "move", ALICE, "--to", "dbb", check=75)
    assert b"cannot reach PostgreSQL" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    assert len(maildir_files(a.maildir(ALICE))) == 1 and moves_rows(a) == []
    a.deliver(message(message_id="<m2@x>"), ALICE, check=0)  # the mirror still serves it


# --- what `lda mailbox receive` refuses ---------------------------------------

def stream(manifest, payload, trailer=None):
    """The bytes of a stream (transfer.py's format) as a sender may forge it."""
    head = json.dumps(manifest).encode()
    body = b"lda-mailbox-stream 1\n" + b"%d\n" % len(head) + head + payload
    return body + (trailer if trailer is not None
                   else b"end " + hashlib.sha256(body).hexdigest().encode() + b"\n")


def entry(path, data):
    return {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "mtime_ns": None}


def forged(files, dirs=("maildir",)):
    manifest = {"address": ALICE, "target_db": "dbb", "target_maildir": "example.org/alice",
                "dirs": list(dirs), "files": [entry(p, d) for p, d in files]}
    return manifest, b"".join(d for _, d in files)


ROW_COLUMNS = ["mailbox", "message_id", "submit_time", "delivered_at", "state"]
ROW = [ALICE, "<r@x>", "2026-11-24T10:00:00Z", 1.0, "delivered"]
ROWS_JSON = json.dumps({"delivered_to": {"columns": ROW_COLUMNS, "rows": [ROW]}}).encode()
GOOD = [("maildir/cur/1.M1.h:2,S", b"Subject: x\r\n\r\nhi\r\n"), ("rows.json", ROWS_JSON)]


def hostile_cases():
    manifest, payload = forged(GOOD)
    good = stream(manifest, payload)
    flipped = bytearray(good)
    flipped[len(good) - 80] ^= 0x01             # one bit of the payload
    in_manifest = bytearray(good)
    at = good.index(b"1.M1.h")
    in_manifest[at] ^= 0x02                      # the name: each hash still matches
    huge = json.loads(json.dumps(manifest))
    huge["files"][0]["size"] = 1 << 60
    wrong_hash = json.loads(json.dumps(manifest))
    wrong_hash["files"][0]["sha256"] = "0" * 64
    other = json.dumps({"delivered_to": {"columns": ROW_COLUMNS,
                                         "rows": [["bob@example.org", *ROW[1:]]]}}).encode()
    no_submit = json.dumps({"delivered_to": {"columns": ROW_COLUMNS[:2],
                                             "rows": [ROW[:2]]}}).encode()
    unknown_column = json.dumps({"sieve_vacations": {"columns": ["mailbox", "nope"],
                                                     "rows": [[ALICE, 1]]}}).encode()
    cases = {
        "flipped-byte": bytes(flipped),
        "flipped-name": bytes(in_manifest),
        "cut": good[:-60],
        "no-trailer": good[:good.rindex(b"end ")],
        "dotdot": stream(*forged([("maildir/../../../etc/x", b"x"), GOOD[1]])),
        "absolute": stream(*forged([("/etc/x", b"x"), GOOD[1]])),
        "dotdot-dir": stream(*forged(GOOD, dirs=("maildir", "maildir/../../x"))),
        "partial-subdir": stream(*forged([("partial/a/b", b"x"), GOOD[1]])),
        "huge": stream(huge, payload),
        "hash-mismatch": stream(wrong_hash, payload),
        "twice": stream(*forged([GOOD[0], GOOD[0], GOOD[1]])),
        "another-mailbox-rows": stream(*forged([GOOD[0], ("rows.json", other)])),
        "rows-missing-a-column": stream(*forged([GOOD[0], ("rows.json", no_submit)])),
        "rows-unknown-column": stream(*forged([GOOD[0], ("rows.json", unknown_column)])),
        "not-a-stream": b"GET / HTTP/1.0\r\n\r\n",
        "mode-not-a-number": stream({**manifest, "files": [
            {**manifest["files"][0], "mode": "0777", "group": None}, manifest["files"][1]]},
            payload),
        "dir-mode-of-no-dir": stream({**manifest, "dir_modes": {"maildir/x": [0o750, None]}},
                                     payload),
    }
    # ManageSieve's active link: only sieve/NAME.sieve, to a file the stream has.
    script = ("maildir/sieve/a.sieve", b"keep;\n")
    for name, link in [("link-out", "/etc/passwd"), ("link-dotdot", "sieve/../../x.sieve"),
                       ("link-to-message", "cur/1.M1.h:2,S"), ("link-missing", "sieve/b.sieve"),
                       ("link-not-sieve", "sieve/a"), ("link-not-text", ["sieve/a.sieve"])]:
        linked = forged([GOOD[0], script, GOOD[1]], dirs=("maildir", "maildir/sieve"))
        cases[name] = stream({**linked[0], "active_link": link}, linked[1])
    # A name no script may have (lda sieve's and include's rule), though
    # the stream brings the file: a control character.
    odd = ("maildir/sieve/a\x7fb.sieve", b"keep;\n")
    linked = forged([GOOD[0], odd, GOOD[1]], dirs=("maildir", "maildir/sieve"))
    cases["link-control-character"] = stream({**linked[0], "active_link": "sieve/a\x7fb.sieve"},
                                             linked[1])
    return cases


HOSTILE = hostile_cases()


@pytest.fixture
def receiving(make_site, postgres):
    """Host a has begun moving alice to b (killed after "begin")."""
    _, dsn = postgres
    a, b = make_hosts(make_site, dsn)
    a.deliver(message(message_id="<m@x>"), ALICE, check=0)
    kill_at(a, "begin")
    return a, b


def test_hostile_streams_are_refused_and_leave_nothing(receiving):
    a, b = receiving
    for name, data in HOSTILE.items():
        refused = b.run("mailbox", "receive", input=data)
        assert refused.returncode in (65, 64), (name, refused.returncode, refused.stderr)
        assert len(refused.stderr.strip().splitlines()) == 1, (name, refused.stderr)
        assert not b.alice.exists(), name
        assert not list((b.state / "databases" / "dbb").glob(".lda-receive/*")), name
        assert rows(b.dbb) == [], name
        assert not (b.root.parent / "etc").exists(), name
    # The well-formed stream is taken; the move then finishes from a.
    manifest, payload = forged(GOOD)
    b.run("mailbox", "receive", input=stream(manifest, payload), check=0)
    assert rows(b.dbb) == [(*ROW, None, None)]
    assert tree(b.alice) == {"cur/1.M1.h:2,S": hashlib.sha256(GOOD[0][1]).hexdigest()}
    a.run("mailbox", "move", ALICE, "--rollback", check=0)
    assert not b.alice.exists() and rows(b.dbb) == []


def test_carried_modes_are_kept_to_what_a_maildir_needs(receiving):
    """A stream's modes and groups are given as far as a Maildir needs
    them: a file no setuid or execute bit and no write for others, a
    directory no sticky bit nor others' write, the owner's bits always;
    a group this host does not know has its bits closed."""
    from test_move import MAIL_GID

    a, b = receiving
    other = ("maildir/cur/2.M2.h:2,S", b"Subject: y\r\n\r\nho\r\n")
    manifest, payload = forged([GOOD[0], other, GOOD[1]])
    manifest["files"][0].update(mode=0o4777, group="mail")
    manifest["files"][1].update(mode=0o040, group="no-such-group-here")
    manifest["dirs"] = ["maildir", "maildir/cur"]
    manifest["dir_modes"] = {"maildir": [0o7777, "mail"], "maildir/cur": [0o2750, "mail"]}
    b.run("mailbox", "receive", input=stream(manifest, payload), check=0)
    got = {p: (os.stat(b.alice / p).st_mode, os.stat(b.alice / p).st_gid)
           for p in (".", "cur", "cur/1.M1.h:2,S", "cur/2.M2.h:2,S")}
    assert got == {".": (0o42775, MAIL_GID), "cur": (0o42750, MAIL_GID),
                   "cur/1.M1.h:2,S": (0o100664, MAIL_GID), "cur/2.M2.h:2,S": (0o100600, 0)}
    a.run("mailbox", "move", ALICE, "--rollback", check=0)


def test_a_symlink_in_the_maildir_is_not_carried(receiving):
    a, b = receiving
    os.symlink("/etc/passwd", a.maildir(ALICE) / "cur" / "evil:2,S")
    a.run("mailbox", "move", ALICE, "--resume", check=0)
    assert not (b.alice / "cur" / "evil:2,S").exists()
    assert len(maildir_files(b.alice)) == 1


def test_receive_without_a_move_under_way_is_refused(hosts):
    _, b = hosts
    manifest, payload = forged(GOOD)
    refused = b.run("mailbox", "receive", input=stream(manifest, payload), check=67)
    assert b"no move" in refused.stderr and not b.alice.exists()
    b.run("mailbox", "receive", "--abort", ALICE, check=67)


@pytest.mark.parametrize("address", ["a\nb@example.org", "x" * 400 + "@example.org",
                                     "../../etc@example.org"], ids=["newline", "long", "dots"])
def test_hostile_addresses_change_nothing(hosts, address):
    a, b = hosts
    before = tree(a.maildir(ALICE))
    for args in (["--confirm", address], ["--abort", address]):
        refused = b.run("mailbox", "receive", *args)
        assert refused.returncode in (64, 67, 75), refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    assert a.run("mailbox", "move", address, "--to", "dbb").returncode in (64, 67)
    assert tree(a.maildir(ALICE)) == before and moves_rows(a) == []


def test_a_second_move_of_the_same_mailbox_waits_its_turn(hosts):
    a, b = hosts
    kill_at(a, "begin")
    from filelock import FileLock
    name = "move-" + hashlib.sha256(ALICE.encode()).hexdigest()[:16] + ".lock"
    with FileLock(str(a.state / "locks" / name)):
        busy = a.run("mailbox", "move", ALICE, "--resume", check=75)
    assert b"another move" in busy.stderr
    a.run("mailbox", "move", ALICE, "--resume", check=0)


def test_receive_needs_a_shared_directory(site):
    for args in ([], ["--confirm", ALICE], ["--abort", ALICE]):
        refused = site.run("mailbox", "receive", *args, input=b"x", check=64)
        assert b"shared directory" in refused.stderr

"""A plain Maildir delivery holds its mailbox lock for no sync: its pending
row is written and synced before it takes the lock (Delivery._claim_early)
and new/ is synced after it lets go (Delivery._may_sync_unlocked).

A delivery of the same message that comes in after the lock went must not
wait for the first one's sync, and must not answer "duplicate" before the
link it found is durable: it syncs new/ itself (Delivery._already_there).
One that takes the lock before the first one claims the row for itself;
the first then finds that row and answers as for any duplicate.

The first delivery is held in its sync of new/ by strace's fault injection
(a real `lda deliver`, its fsync delayed in the kernel's entry path); the
second runs under strace too, to see which directories it syncs."""

import shutil
import sqlite3
import subprocess
import time

import pytest

from conftest import LDA, maildir_files, message

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")

HELD = 2.0  # seconds the first delivery's fsync of new/ is held


def strace(site, new_dir, trace_out, delay=None):
    """strace arguments: the fsyncs of new_dir, each delayed when asked."""
    args = ["strace", "-f", "-qq", "-y", "-P", str(new_dir), "-e", "trace=fsync", "-o", str(trace_out)]
    if delay is not None:
        args += ["-e", f"inject=fsync:delay_enter={int(delay * 1e6)}"]
    return args


def test_a_duplicate_in_the_window_syncs_new_itself_and_does_not_wait(site, tmp_path):
    maildir = site.create("a@example.org")
    new_dir = maildir / "new"
    msg = message(message_id="<window@example.org>")
    env = site.env
    (tmp_path / "msg").write_bytes(msg)
    with (tmp_path / "msg").open("rb") as stdin:
        first = subprocess.Popen(
            strace(site, new_dir, tmp_path / "first.trace", delay=HELD)
            + [LDA, "deliver", "-f", "s@example.org", "a@example.org"],
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 30
    while not maildir_files(maildir) and time.monotonic() < deadline:
        assert first.poll() is None, first.communicate()[1].decode()
        time.sleep(0.005)
    assert maildir_files(maildir), "the first delivery never linked its file"
    linked_at = time.monotonic()
    conn = sqlite3.connect(site.db())
    [(state,)] = conn.execute("SELECT state FROM delivered_to").fetchall()
    conn.close()
    assert state == "pending"  # linked, new/ not yet synced

    second = subprocess.run(
        strace(site, new_dir, tmp_path / "second.trace")
        + [LDA, "deliver", "-f", "s@example.org", "a@example.org"],
        input=msg, capture_output=True, env=env, timeout=60)
    answered_after = time.monotonic() - linked_at
    assert second.returncode == 0, second.stderr.decode()
    assert b"duplicate" in second.stderr
    # It did not wait for the first one's locks, held through its sync...
    assert answered_after < HELD - 0.5, answered_after
    assert first.poll() is None
    # ...and it answered only once it had synced new/ itself.
    assert f"<{new_dir}>) = 0" in (tmp_path / "second.trace").read_text()

    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr.decode()
    assert len(maildir_files(maildir)) == 1
    conn = sqlite3.connect(site.db())
    assert conn.execute("SELECT state FROM delivered_to").fetchall() == [("delivered",)]
    conn.close()



def rows(site):
    if not site.db().exists():
        return []
    conn = sqlite3.connect(site.db())
    try:
        return conn.execute("SELECT state, location FROM delivered_to").fetchall()
    except sqlite3.OperationalError:  # no table yet
        return []
    finally:
        conn.close()


def wait_for(condition, what, proc=None):
    deadline = time.monotonic() + 30
    while not condition():
        assert proc is None or proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def start(site, tmp_path, msg, prefix=()):
    (tmp_path / "msg").write_bytes(msg)
    with (tmp_path / "msg").open("rb") as stdin:
        return subprocess.Popen([*prefix, LDA, "deliver", "-f", "s@example.org", "a@example.org"],
                                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=site.env)


def test_the_pending_row_is_claimed_before_the_lock(site, tmp_path):
    """While an admin holds the mailbox lock, a delivery has its pending
    row written already; a second delivery of the message queues behind
    it, and the two end with one copy, neither answering 75."""
    from lda.store.locks import MailboxLocks

    maildir = site.create("a@example.org")
    msg = message(message_id="<claimed@example.org>")
    with MailboxLocks(str(site.state / "locks"), ["a@example.org"]):
        first = start(site, tmp_path, msg)
        wait_for(lambda: rows(site), "the row to be claimed before the lock", first)
        [(state, claimed)] = rows(site)
        assert state == "pending" and not maildir_files(maildir)
        other = start(site, tmp_path, msg)
        time.sleep(0.5)
        assert first.poll() is None and other.poll() is None  # both wait for the lock
    outcomes = []
    for proc in (first, other):
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        outcomes.append(b"duplicate" in err)
    assert sorted(outcomes) == [False, True]
    assert [f.name for f in maildir_files(maildir)] == [claimed]
    assert rows(site) == [("delivered", claimed)]


def test_a_row_claimed_by_a_delivery_still_to_take_the_lock_is_claimed_anew(site, tmp_path):
    """The first delivery claims its row and is held in the WAL sync that
    follows; a second one takes the lock meanwhile, finds the row without
    its file, claims it for itself and delivers; the first then finds that
    row under the lock and answers "duplicate": one copy, no 75."""
    maildir = site.create("a@example.org")
    site.deliver(message(message_id="<warm@example.org>"), "a@example.org", check=0)
    msg = message(message_id="<taken@example.org>")
    held = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=fdatasync",
            "-e", f"inject=fdatasync:delay_enter={int(HELD * 1e6)}"]
    first = start(site, tmp_path, msg, held)
    wait_for(lambda: len(rows(site)) == 2, "the first delivery to claim its row", first)
    [claimed] = [name for state, name in rows(site) if state == "pending"]

    second = subprocess.run([LDA, "deliver", "-f", "s@example.org", "a@example.org"],
                            input=msg, capture_output=True, env=site.env, timeout=60)
    assert second.returncode == 0, second.stderr.decode()
    assert b"duplicate" not in second.stderr
    assert first.poll() is None  # still held in its sync
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err.decode()
    assert b"duplicate" in err
    files = {f.name for f in maildir_files(maildir)}
    assert len(files) == 2 and claimed not in files  # the warm-up's and the second's
    assert sorted(rows(site)) == sorted(("delivered", name) for name in files)

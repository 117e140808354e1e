"""The mailbox locks go before new/ is synced (Delivery._may_sync_unlocked):
a delivery of the same message that comes in that window must not wait for
the first one's sync, and must not answer "duplicate" before the link it
found is durable: it syncs new/ itself (Delivery._already_there).

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

HELD = 3.0  # seconds the first delivery's fsync of new/ is held


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

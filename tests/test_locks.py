"""Mailbox lock stripes: the key-to-stripe mapping is shared by every lda
version that may run at the same time, so it must stay crc32 % 256."""

import os
import zlib

from hypothesis import given
from hypothesis import strategies as st

from conftest import without_site
from lda.startup.zlib import crc32
from lda.store.locks import STRIPES, lock_path, stripe_of, stripes_of

KNOWN = {"": 0, "alice@example.org": 0x4F, "\udcff": 0x87, "box15@bench.example.org": 0x84}


def crc_stripe(key):
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % STRIPES


@given(st.binary(max_size=300))
def test_the_python_crc32_is_zlibs(data):
    assert crc32(data) == zlib.crc32(data)


@given(st.lists(st.text(max_size=60), min_size=1, max_size=30))
def test_stripes_are_zlib_crc32_mod_256(keys):
    assert stripes_of(keys) == sorted({crc_stripe(k) for k in keys})
    assert stripe_of(keys[0]) == crc_stripe(keys[0])


def test_a_process_without_zlib_picks_the_same_stripes():
    # `lda deliver` does not load zlib for a few keys; a fan-out does.
    script = ("import sys\n"
              "from lda.store.locks import stripe_of, stripes_of\n"
              f"few = [stripe_of(k) for k in {list(KNOWN)!r}]\n"
              "loaded = 'zlib' in sys.modules\n"
              f"many = stripes_of({list(KNOWN)!r} * 3)\n"
              "print(few, loaded, many, 'zlib' in sys.modules)\n")
    done = without_site(script, os.environ)
    known = list(KNOWN.values())
    assert done.stdout.split("\n")[0] == f"{known} False {sorted(set(known))} True"
    assert known == [crc_stripe(k) for k in KNOWN]


def test_lock_file_names():
    assert lock_path("/locks", 7) == "/locks/007.lock"


# --- waiting for a held lock -----------------------------------------------------

def hold(lock_dir, key):
    """A descriptor holding key's stripe lock as another holder would (its
    own open file description, so it excludes MailboxLocks in this process)."""
    import fcntl

    os.makedirs(lock_dir, exist_ok=True)
    fd = os.open(lock_path(lock_dir, stripe_of(key)), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def free_within(path, seconds):
    """Whether a LOCK_NB flock on path succeeds within seconds."""
    import fcntl
    import time

    fd = os.open(path, os.O_RDWR)
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.005)
    finally:
        os.close(fd)


def test_a_lock_held_past_the_timeout_is_mailbox_busy_and_the_waiter_lets_go(tmp_path):
    """The timeout still tempfails ("mailbox busy"), and the waiter given up
    on does not keep the lock once its holder lets go: the next delivery gets it."""
    import time

    import pytest

    from lda.errors import TemporaryFailure
    from lda.store.locks import MailboxLocks

    lock_dir = str(tmp_path / "locks")
    fd = hold(lock_dir, "a@example.org")
    start = time.monotonic()
    with pytest.raises(TemporaryFailure, match="mailbox busy"):
        with MailboxLocks(lock_dir, ["a@example.org"], timeout=0.3):
            pass
    waited = time.monotonic() - start
    assert 0.3 <= waited < 3, waited
    os.close(fd)  # the holder lets go: the waiter given up on takes it and drops it
    assert free_within(lock_path(lock_dir, stripe_of("a@example.org")), 5)
    with MailboxLocks(lock_dir, ["a@example.org"], timeout=1):
        pass


def test_a_waiter_gets_the_lock_as_soon_as_it_is_let_go(tmp_path):
    """Not after a sleep: polling with growing sleeps (2 ms doubling to 50)
    left a hot mailbox's lock free for half the time deliveries waited."""
    import statistics
    import threading
    import time

    from lda.store.locks import MailboxLocks

    lock_dir = str(tmp_path / "locks")
    delays = []
    for _ in range(7):
        fd = hold(lock_dir, "a@example.org")
        let_go = []

        def release(fd=fd, let_go=let_go):
            # 0.32 s: polling woke at 0.312 and then 0.362 s, 42 ms late
            time.sleep(0.32)
            let_go.append(time.monotonic())
            os.close(fd)

        holder = threading.Thread(target=release)
        holder.start()
        with MailboxLocks(lock_dir, ["a@example.org"], timeout=10):
            delays.append(time.monotonic() - let_go[0])
        holder.join()
    assert statistics.median(delays) < 0.02, delays


def test_lda_deliver_tempfails_while_an_admin_holds_the_mailbox_lock(make_site):
    import time

    from conftest import maildir_files, message
    from lda.store.locks import MailboxLocks

    site = make_site(lock_timeout_seconds=1)
    maildir = site.create("a@example.org")
    with MailboxLocks(str(site.state / "locks"), ["a@example.org"]):
        start = time.monotonic()
        done = site.deliver(message(message_id="<busy@example.org>"), "a@example.org")
        assert time.monotonic() - start >= 1
    assert done.returncode == 75, done.stderr
    assert b"mailbox busy" in done.stderr
    assert maildir_files(maildir) == []
    site.deliver(message(message_id="<busy@example.org>"), "a@example.org", check=0)
    assert len(maildir_files(maildir)) == 1

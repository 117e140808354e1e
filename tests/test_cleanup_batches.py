"""DeliveredTo.cleanup's transactions: bounded in rows and in time, keys
read outside the write lock and checked again under it, the WAL kept
short, and the connection's settings given back."""

import os

from lda.store.deliveredto import CLEANUP_CHUNK, DB_FILE, ROW_COLUMNS, DeliveredTo, connect

NOW = 1_800_000_000.0


def store_with(tmp_path, expired, live=0, scatter=False):
    """A store (expiry 1 hour, clock at NOW) with expired rows m0, m1, ...
    (oldest first) and live rows l0, l1, ...; scattered, the expired rows'
    key order is not their age order, as with real Message-IDs."""
    store = DeliveredTo(str(tmp_path), expiration_hours=1, clock=lambda: NOW)
    with store.transaction() as conn:
        conn.executemany(f"INSERT INTO delivered_to {ROW_COLUMNS} "
                         "VALUES (?, ?, '', ?, 'delivered', 'x')",
                         [("a@x", f"m{i * 7919 % 10007 if scatter else i}", NOW - 7200 + i)
                          for i in range(expired)]
                         + [("a@x", f"l{i}", NOW - 60) for i in range(live)])
    return store


def message_ids(store):
    return {row[0] for row in store.conn.execute("SELECT message_id FROM delivered_to")}


def test_each_transaction_commits_when_its_time_is_up(tmp_path):
    """With no time to spend, every transaction deletes one chunk and no
    more, however big the batch."""
    store = store_with(tmp_path, expired=2 * CLEANUP_CHUNK + 5, live=3)
    batches = []
    assert store.cleanup(batch=1000, hold_seconds=0,
                         on_batch=lambda n, held: batches.append(n)) == (
        2 * CLEANUP_CHUNK + 5, True)
    assert batches == [CLEANUP_CHUNK, 2 * CLEANUP_CHUNK, 2 * CLEANUP_CHUNK + 5]
    assert message_ids(store) == {"l0", "l1", "l2"}


def test_a_key_written_again_after_it_was_read_stays(tmp_path):
    """The keys are read before the write lock is taken: a delivery that
    writes one of them again in between (INSERT OR REPLACE of an expired
    row) must keep its fresh row."""
    store = store_with(tmp_path, expired=2)
    delivery = DeliveredTo(str(tmp_path), expiration_hours=1, clock=lambda: NOW)

    def deliver_m1_again(deleted, held):
        if deleted == 1:    # m0 went; m1 was read with it, not yet deleted
            with delivery.transaction():
                delivery.mark_pending([(("a@x", "m1", ""), "new")])

    assert store.cleanup(batch=1, on_batch=deliver_m1_again) == (1, True)
    assert message_ids(store) == {"m1"}
    delivery.close()


def test_a_bounded_run_stops_after_a_transaction_and_says_so(tmp_path):
    store = store_with(tmp_path, expired=7)
    assert store.cleanup(batch=2, max_seconds=0) == (2, False)
    assert message_ids(store) == {f"m{i}" for i in range(2, 7)}   # the oldest went
    assert store.cleanup(batch=5, max_seconds=0) == (5, True)


def test_the_wal_stays_short_and_the_settings_come_back(tmp_path):
    """Checkpoints between transactions let each one restart the WAL, so it
    holds one transaction's pages, not the whole run's; the connection gets
    its automatic checkpoints and synced commits back."""
    store = store_with(tmp_path, expired=3000, scatter=True)
    before = [store.conn.execute(f"PRAGMA {name}").fetchone()[0]
              for name in ("wal_autocheckpoint", "synchronous")]
    assert store.cleanup(batch=100) == (3000, True)
    assert [store.conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("wal_autocheckpoint", "synchronous")] == before
    page = store.conn.execute("PRAGMA page_size").fetchone()[0]
    # Without the checkpoints the WAL would hold ~900 pages.
    assert os.path.getsize(os.path.join(str(tmp_path), DB_FILE + "-wal")) < 200 * page
    store.close()
    check = connect(os.path.join(str(tmp_path), DB_FILE))
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()


def test_expired_sieve_duplicate_ids_go_with_the_cleanup(tmp_path):
    """RFC 7352 IDs are kept for their :seconds; past that they only take
    room, and no delivery would read them as seen any more."""
    store = store_with(tmp_path, expired=1)
    with store.transaction() as conn:
        conn.executemany("INSERT INTO sieve_duplicates VALUES ('a@x', ?, ?)",
                         [("old", NOW - 1), ("fresh", NOW + 3600)])
    store.cleanup()
    assert [row[0] for row in store.conn.execute("SELECT key FROM sieve_duplicates")] == [
        "fresh"]

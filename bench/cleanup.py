"""How long `lda dedup cleanup` takes on a big DeliveredTo table, and how
long it makes a concurrent delivery wait for the write lock.

    python bench/cleanup.py [--expired 1000000] [--live 100000]
                            [--batch 600 [2000 ...]] [--inserts 200] [--dir DIR]

For each batch size: a fresh copy of a database holding --expired expired
and --live live rows; the cleanup alone, through the library
(dedup_admin.cleanup, as the command runs it), printing seconds, rows/s,
batches and the longest batch transaction (the longest write-lock hold:
from BEGIN IMMEDIATE to the end of COMMIT, which runs no checkpoint);
then the same cleanup in a child process while this one runs --inserts
`BEGIN IMMEDIATE; INSERT; COMMIT` transactions spread over its run, as
deliveries would, printing the wait for the lock and the whole transaction
(median, p99, max), next to the same inserts with no cleanup running.
Figures only, no asserts.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from lda.config import Config
from lda.admin.dedup import cleanup
from lda.store.deliveredto import CLEANUP_BATCH, DB_FILE, ROW_COLUMNS, DeliveredTo, connect
from lda.admin.mailboxes import create_database, open_directory

ROWS_PER_TRANSACTION = 100_000
EXPIRATION_HOURS = 168


def rows(start, count, delivered_at):
    for i in range(start, start + count):
        yield (f"user{i % 1000}@example.org", f"bench{i}@example.org",
               "2026-11-24T10:00:00Z", delivered_at(i), "delivered",
               f"{i}.M1P1Q1.bench,S=3000")


def populate(db_root, expired, live, now):
    """Expired rows (spread over a day past the window) and live ones, in big
    transactions.  No journal and no fsync while loading: a crash here costs
    only the benchmark; the file is put back in WAL mode, as deliveries use it."""
    DeliveredTo(db_root, EXPIRATION_HOURS).close()
    conn = connect(os.path.join(db_root, DB_FILE))
    conn.execute("PRAGMA synchronous = OFF")
    # Keys scattered as real Message-IDs are: a cache that holds the table
    # keeps the random B-tree inserts in memory.
    conn.execute("PRAGMA cache_size = -1048576")
    conn.execute("PRAGMA journal_mode = OFF")
    old = now - EXPIRATION_HOURS * 3600 - 3600
    for start, count, when in ((0, expired, lambda i: old - i % 86400),
                               (expired, live, lambda i: now - i % 3600)):
        for offset in range(0, count, ROWS_PER_TRANSACTION):
            conn.execute("BEGIN")
            conn.executemany(f"INSERT INTO delivered_to {ROW_COLUMNS} "
                             "VALUES (?, ?, ?, ?, ?, ?)",
                             rows(start + offset, min(ROWS_PER_TRANSACTION, count - offset),
                                  when))
            conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


def site(workdir, template):
    """A config, a directory with one database, and a copy of the template."""
    shutil.rmtree(workdir, ignore_errors=True)
    config = Config({"state_dir": workdir, "expiration_hours": EXPIRATION_HOURS})
    directory = open_directory(config)
    root = create_database(directory, config, "default")["path"]
    shutil.copyfile(template, os.path.join(root, DB_FILE))
    return config, directory, root


def run_child(workdir, batch):
    """In the child: the cleanup alone, its summary as JSON on stdout."""
    config = Config({"state_dir": workdir, "expiration_hours": EXPIRATION_HOURS})
    directory = open_directory(config)
    print("ready", flush=True)
    print(json.dumps(cleanup(directory, config, batch=batch)), flush=True)


def timed_inserts(db_root, count, spacing, child=None):
    """(lock waits, transaction times, inserts made while child ran), seconds."""
    conn = connect(os.path.join(db_root, DB_FILE))
    waits, totals, overlapped = [], [], 0
    for i in range(count):
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        locked = time.perf_counter()
        conn.execute(f"INSERT INTO delivered_to {ROW_COLUMNS} "
                             "VALUES (?, ?, ?, ?, 'delivered', ?)",
                     ("probe@example.org", f"probe{i}.{time.time_ns()}@x", "",
                      time.time(), "probe"))
        conn.execute("COMMIT")
        end = time.perf_counter()
        waits.append(locked - start)
        totals.append(end - start)
        overlapped += child is not None and child.poll() is None
        time.sleep(spacing)
    conn.close()
    return waits, totals, overlapped


def figures(name, seconds):
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"{name} median {statistics.median(ms):.2f} p99 {p99:.2f} max {ms[-1]:.2f} ms"


def bench(template, workdir, batch, inserts):
    config, directory, root = site(workdir, template)
    summary = cleanup(directory, config, batch=batch)
    seconds = summary["seconds"]
    print(f"batch {batch}: deleted {summary['deleted']} rows in {seconds:.2f} s "
          f"({summary['deleted'] / seconds:,.0f} rows/s), {summary['batches']} batches, "
          f"longest batch (write-lock hold) {summary['longest_batch_ms']:.2f} ms")
    waits, totals, _ = timed_inserts(root, inserts, 0)
    print(f"  {inserts} inserts, no cleanup running:  {figures('lock wait', waits)}; "
          f"{figures('transaction', totals)}")
    config, directory, root = site(workdir, template)
    child = subprocess.Popen([sys.executable, __file__, "--child", workdir,
                              "--batch", str(batch)], stdout=subprocess.PIPE, text=True)
    child.stdout.readline()     # "ready": imports done, cleanup starting
    # Spread over the run the cleanup took alone, as deliveries arrive.
    waits, totals, overlapped = timed_inserts(root, inserts, seconds / inserts, child)
    result = json.loads(child.stdout.readline())
    child.wait()
    print(f"  {inserts} inserts during cleanup ({overlapped} overlapped its "
          f"{result['seconds']:.2f} s): {figures('lock wait', waits)}; "
          f"{figures('transaction', totals)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--expired", type=int, default=1_000_000)
    parser.add_argument("--live", type=int, default=100_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[CLEANUP_BATCH],
                        help="Most rows per transaction (default: the command's).")
    parser.add_argument("--inserts", type=int, default=200)
    parser.add_argument("--dir", help="Where to build the databases (default: a tmp dir).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args.child, args.batch[0])
    base = tempfile.mkdtemp(prefix="lda-bench-cleanup-", dir=args.dir)
    try:
        template = os.path.join(base, "template")
        start = time.monotonic()
        populate(template, args.expired, args.live, time.time())
        size = os.path.getsize(os.path.join(template, DB_FILE))
        print(f"populated {args.expired:,} expired + {args.live:,} live rows in "
              f"{time.monotonic() - start:.1f} s ({size / 2**20:.0f} MiB)")
        for batch in args.batch:
            bench(os.path.join(template, DB_FILE), os.path.join(base, "state"), batch,
                  args.inserts)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

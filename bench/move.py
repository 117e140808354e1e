"""Time `lda mailbox move` of a 10,000-message mailbox with 100,000
DeliveredTo rows: once within one filesystem (rename) and once to another
filesystem (/dev/shm: copy, fsync, read-back verification).

    python bench/move.py [--messages 10000] [--rows 100000]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def lda(env, *args):
    done = subprocess.run(["lda", *args], env=env, capture_output=True, check=True)
    return done.stdout


def populate(env, maildir, db_root, messages, rows):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from lda.store.deliveredto import ROW_COLUMNS, DeliveredTo

    now, entries = time.time(), []
    for i in range(messages):
        body = b"Message-ID: <b%d@x>\nSubject: %d\n\n" % (i, i) + b"x" * 3000 + b"\n"
        name = f"{i}.M0P1Q{i}R{i:016x}.bench,S={len(body)}"
        with open(os.path.join(maildir, "new", name), "wb") as f:
            f.write(body)
        entries.append(("alice@example.org", f"b{i}@x", "", now, "delivered", name))
    entries += [("alice@example.org", f"old{i}@x", "", now, "delivered", None)
                for i in range(rows - messages)]
    db = DeliveredTo(db_root)
    with db.transaction():
        db.conn.executemany(f"INSERT INTO delivered_to {ROW_COLUMNS} "
                             "VALUES (?, ?, ?, ?, ?, ?)", entries)
    db.close()


def run_case(label, other_root, args):
    with tempfile.TemporaryDirectory() as root:
        state = os.path.join(root, "state")
        config = os.path.join(root, "lda.toml")
        with open(config, "w") as f:
            f.write(f'state_dir = "{state}"\n')
        env = dict(os.environ, LDA_CONFIG=config, HOME=root)
        lda(env, "mailbox", "create", "alice@example.org")
        lda(env, "db", "create", "db2", *(["--path", other_root] if other_root else []))
        default = os.path.join(state, "databases", "default")
        populate(env, os.path.join(default, "example.org", "alice"), default,
                 args.messages, args.rows)
        os.sync()
        start = time.perf_counter()
        report = json.loads(lda(env, "mailbox", "move", "alice@example.org", "--to",
                                "db2", "--json"))
        wall = time.perf_counter() - start
        print(f"{label:34} {wall:7.2f} s  method={report['method']} "
              f"messages={report['messages']} rows={report['rows']}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    run_case("same filesystem (rename)", None, args)
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.stat(shm).st_dev != os.stat(tempfile.gettempdir()).st_dev:
        target = tempfile.mkdtemp(dir=shm)
        try:
            run_case("other filesystem (copy + verify)", os.path.join(target, "db2"), args)
        finally:
            shutil.rmtree(target)


if __name__ == "__main__":
    main()

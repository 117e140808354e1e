"""The PostgreSQL directory's mirror: how long a full copy of N mailboxes
takes, the lag from a commit in PostgreSQL to the change being readable in
another host's directory.sqlite (its `lda directory sync --follow`), and an
admin command's time on that directory against the SQLite one.

    python bench/mirror.py [--mailboxes 10000] [--changes 50]

A private PostgreSQL cluster (tests/postgres.py: initdb in a temporary
directory, a unix socket) and two state_dirs: "A", where the changes are
made, and "B", whose follower copies them.
"""

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


def lda(env, *args):
    start = time.monotonic()
    done = subprocess.run(["lda", *args], env=env, capture_output=True, check=True)
    return done.stdout, time.monotonic() - start


def host(root, name, directory):
    state = os.path.join(root, name)
    config = os.path.join(root, f"{name}.toml")
    with open(config, "w") as f:
        f.write(f'state_dir = "{state}"\nlog = "stderr"\n')
        if directory:
            f.write(f'directory = "{directory}"\n')
    return dict(os.environ, LDA_CONFIG=config, HOME=root), state


def populate_pg(dsn, count):
    import psycopg

    with psycopg.connect(dsn) as conn:
        with conn.cursor().copy("COPY mailboxes (address, database, maildir, keep_copy, "
                                "created) FROM STDIN") as copy:
            for i in range(count):
                copy.write_row((f"user{i}@example.org", "default", f"example.org/user{i}",
                                1, time.time()))


def populate_sqlite(state, count):
    conn = sqlite3.connect(os.path.join(state, "directory.sqlite"))
    with conn:
        conn.executemany("INSERT INTO mailboxes (address, database, maildir, keep_copy, "
                         "created) VALUES (?, 'default', ?, 1, ?)",
                         [(f"user{i}@example.org", f"example.org/user{i}", time.time())
                          for i in range(count)])
    conn.close()


def visible(path, address):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT 1 FROM mailboxes WHERE address = ?",
                            (address,)).fetchone() is not None
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def lags(dsn, mirror, changes):
    """Seconds from each commit to the row readable in the mirror."""
    import psycopg

    found = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for n in range(changes):
            address = f"lag{n}@example.org"
            conn.execute("INSERT INTO mailboxes (address, database, maildir) VALUES "
                         "(%s, 'default', %s)", (address, f"example.org/lag{n}"))
            committed = time.monotonic()
            while not visible(mirror, address):
                time.sleep(0.0005)
            found.append(time.monotonic() - committed)
            time.sleep(0.05)
    return found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mailboxes", type=int, default=10000)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from postgres import PrivatePostgreSQL

    cluster = PrivatePostgreSQL().start()
    results = {"mailboxes": args.mailboxes}
    try:
        with tempfile.TemporaryDirectory() as root:
            dsn = cluster.dsn(cluster.create_database())
            env_a, _ = host(root, "A", dsn)
            env_b, state_b = host(root, "B", dsn)
            env_s, state_s = host(root, "S", "")
            lda(env_a, "mailbox", "create", "alice@example.org")
            populate_pg(dsn, args.mailboxes)
            out, wall = lda(env_b, "directory", "sync", "--json")
            results["full_copy"] = {"seconds_in_sync": json.loads(out)["seconds"],
                                    "command_wall": round(wall, 3)}
            lda(env_s, "mailbox", "create", "alice@example.org")
            populate_sqlite(state_s, args.mailboxes)
            admin = {"postgresql": [], "sqlite": []}
            for i in range(args.rounds):  # alternated, same machine load
                for kind, env in (("postgresql", env_a), ("sqlite", env_s)):
                    _, wall = lda(env, "mailbox", "set-quota", "alice@example.org",
                                  "--messages", str(100 + i))
                    admin[kind].append(wall)
            results["admin_set_quota_median_s"] = {
                k: round(statistics.median(v), 3) for k, v in admin.items()}
            follower = subprocess.Popen(["lda", "directory", "sync", "--follow"],
                                        env=env_b, stderr=subprocess.DEVNULL)
            try:
                time.sleep(1)
                found = lags(dsn, os.path.join(state_b, "directory.sqlite"), args.changes)
            finally:
                follower.terminate()
                follower.wait(10)
            results["lag_ms"] = {"changes": len(found),
                                 "median": round(statistics.median(found) * 1000, 1),
                                 "p90": round(sorted(found)[int(len(found) * 0.9)] * 1000, 1),
                                 "max": round(max(found) * 1000, 1)}
    finally:
        cluster.remove()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

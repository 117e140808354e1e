"""Time `lda mailbox move` of a 10,000-message mailbox with 100,000
DeliveredTo rows from host a to host b (two lda.toml files on this machine,
a private PostgreSQL directory from tests/postgres.py, move_command the
target's `lda mailbox receive` run locally), and how long deliveries to the
mailbox were deferred: a prober delivers a new message every 50 ms, to a
while a accepts it and to b once a defers; the window is from a's last
acceptance to b's first.

    python bench/hostmove.py [--messages 10000] [--rows 100000]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
ADDRESS = "alice@example.org"
LDA = shutil.which("lda")


def lda(config, *args, stdin=b""):
    return subprocess.run([LDA, "-c", config, *args], input=stdin, capture_output=True)


def write_config(path, values):
    with open(path, "w") as f:
        f.writelines(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def prober(configs, stop, log):
    """Deliver a new message every 50 ms: to a until it defers, then to b."""
    n, host = 0, "a"
    while not stop.is_set():
        n += 1
        msg = b"Message-ID: <probe%d@x>\nSubject: probe\n\nhi\n" % n
        done = lda(configs[host], "deliver", "-f", "s@x", ADDRESS, stdin=msg)
        log.append((time.monotonic(), host, done.returncode))
        if host == "a" and done.returncode != 0:
            host = "b"
        elif host == "b" and done.returncode == 0:
            return
        time.sleep(0.05)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    from move import populate  # bench/move.py: the same mailbox, made the same way
    from postgres import PrivatePostgreSQL

    cluster = PrivatePostgreSQL().start()
    root = tempfile.mkdtemp(prefix="lda-hostmove-")
    try:
        dsn = cluster.dsn(cluster.create_database())
        configs = {h: os.path.join(root, h, "lda.toml") for h in "ab"}
        for h in "ab":
            os.makedirs(os.path.join(root, h))
            write_config(configs[h], {
                "state_dir": os.path.join(root, h, "state"), "directory": dsn,
                "host_name": h, "log": "stderr",
                "move_command": [LDA, "-c", configs["b"], "mailbox", "receive"]})
        a = configs["a"]
        for command in (["host", "add", "a", "--transport", "lmtp:inet:10.0.0.1:24"],
                        ["host", "add", "b", "--transport", "lmtp:inet:10.0.0.2:24"],
                        ["db", "create", "dba", "--host", "a"],
                        ["db", "create", "dbb", "--host", "b", "--path",
                         os.path.join(root, "b", "state", "databases", "dbb")],
                        ["mailbox", "create", ADDRESS, "--db", "dba"]):
            done = lda(a, *command)
            assert done.returncode == 0, done.stderr
        lda(configs["b"], "directory", "sync")
        dba = os.path.join(root, "a", "state", "databases", "dba")
        populate(None, os.path.join(dba, "example.org", "alice"), dba, args.messages,
                 args.rows)
        os.sync()
        stop, log = threading.Event(), []
        thread = threading.Thread(target=prober, args=(configs, stop, log))
        thread.start()
        time.sleep(0.5)
        start = time.monotonic()
        done = lda(a, "mailbox", "move", ADDRESS, "--to", "dbb", "--json")
        moved = time.monotonic() - start
        thread.join(timeout=30)
        stop.set()
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        last_a = max((t for t, h, rc in log if h == "a" and rc == 0), default=start)
        first_b = min((t for t, h, rc in log if h == "b" and rc == 0), default=None)
        deferred = sum(1 for _, _, rc in log if rc != 0)
        print(f"move of {report['messages']} messages, {report['rows']} DeliveredTo rows "
              f"a -> b: {moved:.2f} s wall (lda's own figure {report['seconds']} s)")
        if first_b is not None:
            print(f"deliveries deferred for {first_b - last_a:.2f} s "
                  f"(a's last acceptance to b's first; {deferred} probes deferred)")
    finally:
        cluster.remove()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Lookups per second of `lda policy` and `lda socketmap`.

    python bench/services.py [--seconds 5] [--mailboxes 1000] [--connections 1,16]

Builds a managed site in a temporary directory (MAILBOXES mailboxes, one in
ten at its quota, an aliases file with 100 aliases of 3 members), starts
the installed `lda policy` and `lda socketmap` on loopback ports, and runs
client processes (one per connection, so the client is not the limit) that
send requests back to back for SECONDS: RCPT-stage policy requests for
random recipients, and `mailbox` lookups for random addresses.  Prints
requests per second and the median and p99 latency per service and
connection count.
"""

import argparse
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_site(root, mailboxes):
    lda = shutil.which("lda") or sys.exit("no lda on PATH")
    state = os.path.join(root, "state")
    config = os.path.join(root, "lda.toml")
    aliases = os.path.join(root, "aliases")
    with open(aliases, "w") as f:
        for i in range(100):
            f.write(f"list{i}@example.org: u{i}@example.org, u{i + 1}@example.org, "
                    f"u{i + 2}@example.org\n")
    with open(config, "w") as f:
        f.write(f'state_dir = "{state}"\naliases = "{aliases}"\nlog = "stderr"\n'
                'quota_full = "reject"\n')
    env = dict(os.environ, LDA_CONFIG=config)
    subprocess.run([lda, "mailbox", "create", "u0@example.org"], env=env, check=True,
                   capture_output=True)
    import sqlite3  # many mailboxes: the directory's rows, as `mailbox create` writes them

    conn = sqlite3.connect(os.path.join(state, "directory.sqlite"))
    db_root = conn.execute("SELECT path FROM databases WHERE name = 'default'").fetchone()[0]
    row = conn.execute("SELECT * FROM mailboxes WHERE address = 'u0@example.org'").fetchone()
    names = [d[0] for d in conn.execute("SELECT * FROM mailboxes").description]
    with conn:
        for i in range(1, mailboxes):
            values = dict(zip(names, row), address=f"u{i}@example.org",
                          maildir=row[names.index("maildir")].replace("u0", f"u{i}"))
            maildir = os.path.join(db_root, values["maildir"])
            for sub in ("new", "cur", "tmp"):
                os.makedirs(os.path.join(maildir, sub))
            if i % 10 == 0:  # full: 1 MiB of 1 MiB, as its maildirsize says
                values["quota_storage"] = 1 << 20
                with open(os.path.join(maildir, "maildirsize"), "w") as f:
                    f.write(f"{1 << 20}S\n{1 << 20} 1\n")
            conn.execute(f"INSERT INTO mailboxes ({', '.join(names)}) VALUES "
                         f"({', '.join('?' * len(names))})", list(values.values()))
    conn.close()
    return lda, env


def policy_request(recipient):
    return (f"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
            f"client_address=127.0.0.1\nsender=s@example.net\nrecipient={recipient}\n"
            f"size=3000\n\n").encode()


def client(kind, port, seconds, mailboxes, queue):
    rng = random.Random(os.getpid())
    conn = socket.create_connection(("127.0.0.1", port))
    reader = conn.makefile("rb")
    latencies, answers = [], {}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        n = rng.randrange(mailboxes + 200)
        address = (f"u{n}@example.org" if n < mailboxes else
                   f"list{n - mailboxes}@example.org" if n < mailboxes + 100 else
                   f"nobody{n}@example.org")
        start = time.perf_counter()
        if kind == "policy":
            conn.sendall(policy_request(address))
            answer = reader.readline().split()[0].decode()
            reader.readline()
        else:
            data = f"mailbox {address}".encode()
            conn.sendall(b"%d:%s," % (len(data), data))
            length = b""
            while (c := reader.read(1)) != b":":
                length += c
            answer = reader.read(int(length) + 1).split()[0].rstrip(b",").decode()
        latencies.append(time.perf_counter() - start)
        answers[answer] = answers.get(answer, 0) + 1
    conn.close()
    queue.put((latencies, answers))


def measure(kind, port, connections, seconds, mailboxes):
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=client,
                                     args=(kind, port, seconds, mailboxes, queue))
             for _ in range(connections)]
    for p in procs:
        p.start()
    latencies, answers = [], {}
    for _ in procs:
        some, counts = queue.get()
        latencies += some
        for answer, count in counts.items():
            answers[answer] = answers.get(answer, 0) + count
    for p in procs:
        p.join()
    latencies.sort()
    return (len(latencies) / seconds, statistics.median(latencies) * 1000,
            latencies[int(len(latencies) * 0.99)] * 1000, answers)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--connections", default="1,16")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="lda-bench-services-")
    servers = []
    try:
        lda, env = make_site(root, args.mailboxes)
        ports = {}
        for kind in ("policy", "socketmap"):
            ports[kind] = free_port()
            servers.append(subprocess.Popen(
                [lda, kind, "--listen", f"127.0.0.1:{ports[kind]}"], env=env,
                stderr=subprocess.DEVNULL))
        time.sleep(1.5)
        print(f"{'service':<10} {'conns':>5} {'req/s':>8} {'median ms':>10} {'p99 ms':>8}  "
              "answers")
        for kind in ("policy", "socketmap"):
            for connections in map(int, args.connections.split(",")):
                rate, median, p99, answers = measure(kind, ports[kind], connections,
                                                     args.seconds, args.mailboxes)
                shares = ", ".join(f"{a} {n}" for a, n in sorted(answers.items()))
                print(f"{kind:<10} {connections:>5} {rate:>8.0f} {median:>10.2f} {p99:>8.2f}  "
                      f"{shares}")
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

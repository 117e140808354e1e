"""One `lda deliver` on a host whose directory is PostgreSQL (it reads its
mirror, state_dir/directory.sqlite) against the same delivery on a single
host's SQLite directory: wall time and CPU time (user + sys, rusage of the
child) per message, one message per process, rounds alternated.

    python bench/mirror_latency.py [--mailboxes 10000] [--rounds 10] [--per-round 20]

A private PostgreSQL cluster (tests/postgres.py).  Site S: directory.sqlite
of its own.  Site M: host_name "m", directory = the cluster, its mirror
filled by `lda directory sync`.  On both, alice lives in database dbm (on
M held by host m, so the host check runs) next to N other mailboxes; each
delivery is a new Message-ID, so both DeliveredTo tables grow alike.  The
mirror has the SQLite directory's schema and deliveries read it with the
same query, so the two should match.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

from deliver_latency import installed_lda, message  # noqa: E402
from mirror import host, populate_pg, populate_sqlite  # noqa: E402

ALICE = "alice@example.org"


def lda(env, *args):
    return subprocess.run([installed_lda(), *args], env=env, capture_output=True,
                          check=True).stdout


def deliver(env, data):
    """(wall seconds, CPU seconds) of one `lda deliver` process."""
    start = time.perf_counter()
    process = subprocess.Popen([installed_lda(), "deliver", "-f", "a@example.org", ALICE],
                               env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    process.stdin.write(data)
    process.stdin.close()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"lda deliver exited {process.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def sites(root, dsn, mailboxes):
    """(env of S, env of M), each with alice in dbm and `mailboxes` others."""
    env_s, state_s = host(root, "S", "")
    lda(env_s, "db", "create", "default")
    lda(env_s, "db", "create", "dbm")
    lda(env_s, "mailbox", "create", ALICE, "--db", "dbm")
    populate_sqlite(state_s, mailboxes)
    env_m, _ = host(root, "M", dsn)
    with open(env_m["LDA_CONFIG"], "a") as f:
        f.write('host_name = "m"\n')
    lda(env_m, "host", "add", "m", "--transport", "lmtp:inet:127.0.0.1:24")
    lda(env_m, "db", "create", "default")
    lda(env_m, "db", "create", "dbm", "--host", "m")
    lda(env_m, "mailbox", "create", ALICE, "--db", "dbm")
    populate_pg(dsn, mailboxes)
    synced = json.loads(lda(env_m, "directory", "sync", "--json"))
    assert synced["mailboxes"] == mailboxes + 1, synced
    return env_s, env_m


def ms(values):
    return round(statistics.median(values) * 1000, 2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mailboxes", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=20)
    args = parser.parse_args()
    from postgres import PrivatePostgreSQL

    cluster = PrivatePostgreSQL().start()
    samples = {"sqlite": ([], []), "mirror": ([], [])}
    try:
        with tempfile.TemporaryDirectory() as root:
            envs = dict(zip(("sqlite", "mirror"),
                            sites(root, cluster.dsn(cluster.create_database()),
                                  args.mailboxes)))
            for kind, env in envs.items():  # warm the page cache, create lda.sqlite
                deliver(env, message(f"warm-{kind}"))
            n = 0
            for round_ in range(args.rounds):
                order = ("sqlite", "mirror") if round_ % 2 == 0 else ("mirror", "sqlite")
                for kind in order:
                    for _ in range(args.per_round):
                        n += 1
                        wall, cpu = deliver(envs[kind], message(n))
                        samples[kind][0].append(wall)
                        samples[kind][1].append(cpu)
    finally:
        cluster.remove()
    results = {"mailboxes": args.mailboxes, "deliveries_each": args.rounds * args.per_round}
    for kind, (walls, cpus) in samples.items():
        results[kind] = {"wall_median_ms": ms(walls), "cpu_median_ms": ms(cpus),
                         "wall_p90_ms": round(sorted(walls)[int(len(walls) * 0.9)] * 1000, 2)}
    results["mirror_over_sqlite"] = {
        "wall": round(results["mirror"]["wall_median_ms"] / results["sqlite"]["wall_median_ms"],
                      3),
        "cpu": round(results["mirror"]["cpu_median_ms"] / results["sqlite"]["cpu_median_ms"],
                     3)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

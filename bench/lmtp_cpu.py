"""CPU per message of `lda lmtp` against Dovecot's LMTP under the same load:
the figure that says how far a CPU-bound server is from the other, which
msg/s on a machine shared with the client does not.

    python bench/lmtp_cpu.py [--rounds 8] [--per-session 80] [--json OUT]
    python bench/lmtp_cpu.py --summary OUT [OUT ...]      (pool earlier runs)

Run as root (the private Dovecot master, bench/peers.py).  Loads from
bench/lmtp_load.py, Postfix's `smtp-source -L -d`, 3 KB messages, fresh
mailboxes for every sample:
  c1   16 sessions one after the other, each to its own mailbox
  c16  the same 16 sessions at once
  hot  16 sessions at once into one mailbox
Each sample counts the CPU (user + sys, /proc/PID/stat) of the server's
whole process tree, reaped children included (lda's supervisor and its
children; Dovecot's master, lmtp, auth, log, config, stats), the lmtp
processes alone (for Dovecot, those named lmtp; for lda, every process),
and the client's (this process's reaped smtp-source children).  lda and
Dovecot alternate in each round, the order reversed every round; the
summary gives medians and the lda/Dovecot ratio of same-round pairs.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import compare  # noqa: E402
import lmtp_load  # noqa: E402
import peers  # noqa: E402
from deliver_latency import installed_lda  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
SHAPES = ("c1", "c16", "hot")
SERVERS = ("lda", "dovecot")


def process_stat(pid):
    """(name, parent pid, own ticks, reaped children's ticks), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    name = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return name, int(fields[1]), int(fields[11]) + int(fields[12]), \
        int(fields[13]) + int(fields[14])


def process_tree(root):
    """{pid: (name, own ticks, reaped ticks)} of root and its descendants."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = process_stat(int(entry))
            if stat:
                found[int(entry)] = stat
    children = {}
    for pid, (_, parent, _, _) in found.items():
        children.setdefault(parent, []).append(pid)
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in found:
            name, _, own, reaped = found[pid]
            tree[pid] = (name, own, reaped)
            todo += children.get(pid, [])
    return tree


def ticks(tree):
    return sum(own + reaped for _, own, reaped in tree.values())


class Watcher(threading.Thread):
    """The last ticks seen of every process of the tree during a load, so
    that an lmtp process that exits mid-load keeps what it had spent."""

    def __init__(self, root):
        super().__init__(daemon=True)
        self.root, self.seen, self.done = root, {}, threading.Event()

    def run(self):
        while not self.done.is_set():
            self.look()
            self.done.wait(0.2)

    def look(self):
        self.seen.update(process_tree(self.root))


def sample(label, root, port, lanes, is_lmtp):
    """One load: msg/s and ms of CPU per message (server, lmtp, client)."""
    expected = lmtp_load.expected_counts(lanes)
    before = process_tree(root)
    watcher = Watcher(root)
    watcher.look()
    client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    watcher.start()
    start = time.perf_counter()
    lmtp_load.run_lanes(lanes, lambda stream: lmtp_load.smtp_source(port, stream, label))
    seconds = time.perf_counter() - start
    client_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    time.sleep(0.3)  # what the server does after the last reply
    watcher.done.set()
    watcher.join()
    watcher.look()
    after = process_tree(root)
    lmtp_load.check(label, expected)
    n = lmtp_load.total(lanes)
    lmtp = sum(own - (before[pid][1] if pid in before else 0)
               for pid, (name, own, _) in watcher.seen.items() if is_lmtp(name))
    client = (client_after.ru_utime + client_after.ru_stime
              - client_before.ru_utime - client_before.ru_stime)
    return {"msgs": n, "rate": n / seconds,
            "server_ms": 1000 * (ticks(after) - ticks(before)) / TICK / n,
            "lmtp_ms": 1000 * lmtp / TICK / n, "client_ms": 1000 * client / n,
            "load": os.getloadavg()[0]}


def run(rounds, per_session, lda):
    root = tempfile.mkdtemp(prefix="lda-lmtp-cpu-")
    os.chmod(root, 0o755)
    runner = compare.Runner(root)
    dovecot = peers.Dovecot(root)
    dovecot.start()
    site = compare.ManagedSite(os.path.join(root, "lda-site"), lda, runner, print)
    servers = {
        "lda": (lmtp_load.Server("lda lmtp", site.port, site.new_mailbox),
                site.server.pid, lambda name: True),
        "dovecot": (lmtp_load.Server("dovecot lmtp", dovecot.port, dovecot.new_mailbox),
                    dovecot.master.pid, lambda name: name == "lmtp"),
    }
    shapes = {
        "c1": lambda server: lmtp_load.pooled(server, 16, per_session, 1),
        "c16": lambda server: lmtp_load.pooled(server, 16, per_session, 16),
        "hot": lambda server: lmtp_load.hot(server, 16, 16 * per_session),
    }
    results = []
    try:
        for server, _, _ in servers.values():  # warm both up
            lmtp_load.measure("smtp-source", server.port, lmtp_load.pooled(server, 16, 8, 4),
                              "warm-up")
        for number in range(rounds):
            order = SERVERS if number % 2 == 0 else SERVERS[::-1]
            for shape, make in shapes.items():
                for name in order:
                    server, pid, is_lmtp = servers[name]
                    result = sample(f"{name} {shape}", pid, server.port, make(server), is_lmtp)
                    result.update(server=name, shape=shape, round=number)
                    results.append(result)
                    print(json.dumps(result), flush=True)
    finally:
        site.stop()
        dovecot.stop()
        runner.close()
    return results


def spread(values, form="{:.2f}"):
    return (f"{form} ({form}-{form})").format(statistics.median(values), min(values),
                                             max(values))


def summarize(results):
    """Per shape and server: medians (min-max); then lda/Dovecot of each
    same-round pair, the steadier figure on a machine whose speed moves."""
    for shape in SHAPES:
        for server in SERVERS:
            rows = [r for r in results if (r["shape"], r["server"]) == (shape, server)]
            if rows:
                print(f"{shape:4} {server:8} n={len(rows):<3} "
                      f"msg/s {spread([r['rate'] for r in rows], '{:.0f}')}  "
                      f"server {spread([r['server_ms'] for r in rows])} ms  "
                      f"lmtp {spread([r['lmtp_ms'] for r in rows])} ms  "
                      f"client {spread([r['client_ms'] for r in rows])} ms")
        pairs = {}
        for r in results:
            if r["shape"] == shape:
                pairs.setdefault((r.get("run", 0), r["round"]), {})[r["server"]] = r
        pairs = [p for p in pairs.values() if len(p) == 2]
        if pairs:
            ratio = {key: [p["lda"][key] / p["dovecot"][key] for p in pairs]
                     for key in ("server_ms", "lmtp_ms", "rate")}
            print(f"     lda/dovecot, {len(pairs)} pairs: CPU/msg {spread(ratio['server_ms'])} "
                  f"(vs its lmtp processes {spread(ratio['lmtp_ms'])}), "
                  f"msg/s {spread(ratio['rate'])}")
    loads = [r["load"] for r in results]
    print(f"load (1 min) at the samples: {spread(loads, '{:.1f}')}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-session", type=int, default=80,
                        help="messages a session (16 sessions a sample)")
    parser.add_argument("--lda", default=installed_lda(), help="the lda command to measure")
    parser.add_argument("--json", metavar="OUT", help="write every sample to this file")
    parser.add_argument("--summary", nargs="+", metavar="OUT",
                        help="pool the samples of earlier runs; run nothing")
    args = parser.parse_args(argv)
    if args.summary:
        results = []
        for number, path in enumerate(args.summary):
            with open(path) as f:
                results += [dict(r, run=number) for r in json.load(f)]
    else:
        results = run(args.rounds, args.per_session, args.lda)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    summarize(results)


if __name__ == "__main__":
    main()

"""lda side by side with dovecot-lda, Dovecot LMTP, procmail and maildrop.

    python bench/compare.py [--quick] [--json OUT] [--profile DIR]
                            [--cases 1,2,...] [--dir DIR] [--keep] [--hyperfine]
                            [--client smtp-source|own|both] [--per-session N]

Installs the peers from Debian when they are missing (bench/peers.py), gives
every agent its own Maildirs under one temporary directory, runs the agents
of each case alternately (A B C A B C ...), and prints per case a table
(median, p90, peak RSS, lda/peer ratio), then the issue's targets with
PASS/MISS and the margin.  bench/README.md says what each case measures and
how to read it.  Needs root (Dovecot's own master, apt-get).

    1  one 3 KB message, a process per message (per-user mode)
    2  1,000 such messages in a row (--quick: 200)
    3  one 100 KB message to 1,000 mailboxes: one `lda deliver` to an alias vs
       an agent process per recipient; one LMTP transaction of 1,000 RCPTs
    4  a 10 MB and a 100 MB message: wall time and peak RSS
    5  `lda deliver` with 0, 1 M, 10 M DeliveredTo rows (--quick: 0, 1 M);
       cleanup of 1 M expired rows: total and longest write-lock hold
    6  LMTP messages/s at 1, 4 and 16 concurrent sessions, each to its own mailbox
    7  hot mailbox: LMTP messages/s of 16 sessions to one mailbox against 16
       sessions over 4 mailboxes (4x4)

Cases 6 and 7 drive LMTP with Postfix's `smtp-source -L` and with our own
client (--client), into fresh mailboxes for every sample (bench/lmtp_load.py).
"""

import argparse
import inspect
import json
import math
import os
import platform
import shlex
import shutil
import signal
import smtplib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cleanup as cleanup_bench  # noqa: E402  (bench/cleanup.py)
import lmtp_load  # noqa: E402  (bench/lmtp_load.py: cases 6 and 7's clients)
import lmtp_throughput  # noqa: E402  (bench/lmtp_throughput.py)
import peers  # noqa: E402
from peers import DOMAIN, Agent, make_maildir  # noqa: E402

SENDER = "sender@example.org"
KB, MB = 1024, 1024 * 1024
FANOUT = 1000
EXPIRATION_HOURS = 168

# (quick, full)
PLAN = {
    "runs": (10, 40),              # case 1 runs per agent
    "warmup": (2, 3),              # untimed runs per agent before a timed case
    "in_a_row": (200, 1000),       # case 2 messages per round
    "rounds": (1, 3),              # rounds of the long cases (2, 3, 4, 6)
    "large": ((10 * MB, 100 * MB), (10 * MB, 100 * MB)),
    "rows": ((0, 1_000_000), (0, 1_000_000, 10_000_000)),
    "row_runs": (10, 30),          # case 5 deliveries per table size
    "cleanup_live": (10_000, 100_000),
    # case 6: 16 sessions x this many messages, rounds; at 20 messages and 3
    # rounds a sample lasted 0.4 s, and on a shared VM the 16-session ratio
    # of one build ranged from 0.88x to 1.21x between runs.
    "per_session": (8, 60),
    "lmtp_rounds": (1, 7),
}
SESSIONS = 16
CONCURRENCY = (1, 4, 16)
HOT_SPREAD = 4          # case 7: the 16 sessions spread over 4 mailboxes, 4 each
LMTP_OVER_DOVECOT = 1.2  # cases 6 and 7: lda lmtp's msg/s at least this x Dovecot's
HOT_OVER_SPREAD = 0.95   # case 7: one mailbox at least this x the same load over four


def message(tag, size, eol=b"\n"):
    """A message of `size` bytes: headers, then 76-character lines."""
    head = eol.join([b"From: " + SENDER.encode(), b"To: user@" + DOMAIN.encode(),
                     f"Message-ID: <{tag}@{DOMAIN}>".encode(),
                     b"Date: Tue, 24 Nov 2026 10:00:00 +0000",
                     f"Subject: bench {tag}".encode(), b"", b""])
    line = b"x" * 76 + eol
    body = line * max(0, (size - len(head)) // len(line))
    return head + body + b"y" * max(0, size - len(head) - len(body) - len(eol)) + eol


def tag():
    return uuid.uuid4().hex


# --- running an agent ------------------------------------------------------------

class AgentFailed(Exception):
    pass


class Runner:
    """Spawns agents with the message on a pipe (as Postfix's pipe(8) and
    local(8) give it), timing each from spawn to exit.

    Peak RSS comes from GNU time (`/usr/bin/time -f %M`), not from wait4 in
    this process: a child's ru_maxrss counts the memory it had between fork
    and exec, which is a copy of this (large) Python process, while GNU
    time's children start from a 2 MB process."""

    def __init__(self, root):
        self.logs = os.path.join(root, "logs")
        self.scratch = os.path.join(root, "rss")
        os.makedirs(self.logs, exist_ok=True)
        os.makedirs(self.scratch, exist_ok=True)
        os.chmod(self.scratch, 0o1777)   # GNU time runs as the agent's user
        self.files = {}

    def log_path(self, name):
        return os.path.join(self.logs, name.replace(" ", "_").replace("/", "_") + ".log")

    def _log(self, name):
        if name not in self.files:
            self.files[name] = open(self.log_path(name), "ab")
        return self.files[name]

    def run(self, agent, data, body_path=None, rss=False):
        """Seconds of one delivery, or (seconds, peak RSS in KiB) with rss;
        data is the message, or its head when body_path holds the rest."""
        log = self._log(agent.name)
        argv = agent.argv
        if rss:
            rss_file = os.path.join(self.scratch, f"{uuid.uuid4().hex}.rss")
            argv = [peers.BINARIES["time"], "-f", "%M", "-o", rss_file, *argv]
        unprivileged = agent.user is not None
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=log, env=agent.env, user=agent.user, group=agent.group,
                                extra_groups=[] if unprivileged else None)
        feeder = None
        if body_path is None and len(data) <= 60 * KB:
            _feed(proc.stdin, data, None)
        else:
            feeder = threading.Thread(target=_feed, args=(proc.stdin, data, body_path))
            feeder.start()
        proc.wait()
        seconds = time.perf_counter() - start
        if feeder is not None:
            feeder.join()
        if proc.returncode != 0:
            log.flush()
            raise AgentFailed(f"{agent.name} exited {proc.returncode}: {shlex.join(argv)}"
                              f"\n{tail(self.log_path(agent.name))}")
        if not rss:
            return seconds
        with open(rss_file) as f:
            kib = int(f.read().split()[-1])
        os.unlink(rss_file)
        return seconds, kib

    def peak_rss(self, agent, data, runs=3):
        """Median peak RSS (KiB) of `runs` extra deliveries."""
        return statistics.median(self.run(agent, data, rss=True)[1] for _ in range(runs))

    def close(self):
        for f in self.files.values():
            f.close()


def _feed(pipe, data, body_path):
    try:
        pipe.write(data)
        if body_path is not None:
            with open(body_path, "rb") as body:
                shutil.copyfileobj(body, pipe, MB)
        pipe.close()
    except BrokenPipeError:
        pass  # the agent exited early; its status says why


def tail(path, lines=8):
    try:
        with open(path, "rb") as f:
            return b"".join(f.readlines()[-lines:]).decode(errors="replace")
    except OSError:
        return ""


def count_new(maildirs):
    return sum(len(os.listdir(os.path.join(m, "new"))) for m in maildirs)


def expect(agent_or_name, maildirs, before, expected):
    got = count_new(maildirs) - before
    if got != expected:
        name = getattr(agent_or_name, "name", agent_or_name)
        raise AgentFailed(f"{name}: {got} new messages in its Maildirs, expected {expected}")


# --- statistics and tables --------------------------------------------------------

def p90(values):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def row(agent, samples, rss_kib=None, lda=None, **extra):
    """A table row: samples in seconds (or messages/s for throughput)."""
    out = {"agent": agent, "median": statistics.median(samples), "p90": p90(samples),
           "n": len(samples), "samples": samples,
           "rss_mib": None if rss_kib is None else rss_kib / 1024, "lda": lda}
    out.update(extra)
    return out


def fmt(value, unit):
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:,.1f} {unit}"


def print_table(case):
    unit, higher = case["unit"], case.get("higher_is_better", False)
    print(f"\n== case {case['id']}: {case['title']}")
    if case.get("note"):
        print(f"   {case['note']}")
    slowdown = case.get("ratio") == "row/base"   # case 5: this size against empty
    label = "this/base (1.00x: no slowdown)" if slowdown else "lda/peer (" + (
        "higher" if higher else "lower") + " is better for lda: " + (
        "> 1" if higher else "< 1") + ")"
    width = max(34, *(len(r["agent"]) for r in case["rows"]))
    print(f"   {'agent':{width}} {'median':>11} {'p90':>11} {'peak RSS':>10} {'n':>4}  {label}")
    rows = {r["agent"]: r for r in case["rows"]}
    for r in case["rows"]:
        ratio = "-"
        base = rows.get(r["lda"]) if r["lda"] else None
        if base is not None and r["median"]:
            r["ratio"] = (r["median"] / base["median"] if slowdown
                          else base["median"] / r["median"])
            ratio = f"{r['ratio']:.2f}x vs {base['agent']}"
        rss = "-" if r["rss_mib"] is None else f"{r['rss_mib']:.1f} MiB"
        p = fmt(r["p90"], unit) if r["n"] > 2 else "-"
        extra = f"  [{r['info']}]" if r.get("info") else ""
        print(f"   {r['agent']:{width}} {fmt(r['median'], unit):>11} {p:>11} {rss:>10} "
              f"{r['n']:>4}  {ratio}{extra}")


def alternate(rounds, jobs):
    """Run jobs {name: fn() -> sample} in turn, `rounds` times: A B C A B C."""
    samples = {name: [] for name in jobs}
    for _ in range(rounds):
        for name, job in jobs.items():
            samples[name].append(job())
    return samples


# --- the bench: environments built on first use ----------------------------------

class Bench:
    def __init__(self, root, quick, say=print, clients=lmtp_load.CLIENTS):
        self.root, self.quick, self.say, self.clients = root, quick, say, clients
        self.runner = Runner(root)
        self.lda = lmtp_throughput.installed_lda()
        if self.lda is None:
            raise SystemExit("the lda command is not installed (pip install .)")
        self._dovecot = self._site = self._procmail = self._maildrop = None
        self._lmtp = None
        self.overrides = {}
        self.cases, self.targets, self.profiles = [], [], []

    def plan(self, key):
        if key in self.overrides:
            return self.overrides[key]
        return PLAN[key][0 if self.quick else 1]

    # environments
    @property
    def dovecot(self):
        if self._dovecot is None:
            self._dovecot = peers.Dovecot(self.root)
            self._dovecot.start()
        return self._dovecot

    @property
    def procmail(self):
        if self._procmail is None:
            self._procmail = peers.Procmail(self.root)
        return self._procmail

    @property
    def maildrop(self):
        if self._maildrop is None:
            self._maildrop = peers.Maildrop(self.root)
        return self._maildrop

    @property
    def site(self):
        if self._site is None:
            self._site = ManagedSite(os.path.join(self.root, "lda-site"), self.lda,
                                     self.runner, self.say)
        return self._site

    @property
    def lmtp_servers(self):
        """lda lmtp and Dovecot's LMTP, each a source of fresh mailboxes."""
        if self._lmtp is None:
            self._lmtp = [lmtp_load.Server("lda lmtp", self.site.port, self.site.new_mailbox),
                          lmtp_load.Server("dovecot lmtp", self.dovecot.port,
                                           self.dovecot.new_mailbox)]
        return self._lmtp

    def lda_user(self, name="lda deliver", home=None):
        """`lda deliver` in per-user mode: HOME in the temporary tree."""
        home = home or os.path.join(self.root, "lda-user", name.replace(" ", "-"))
        make_maildir(os.path.join(home, "Maildir"))
        env = {"HOME": home, "PATH": "/usr/bin:/bin"}
        return Agent(name, [self.lda, "deliver", "-f", SENDER, f"user@{DOMAIN}"], env,
                     [os.path.join(home, "Maildir")])

    def single_agents(self):
        """lda and every peer, one recipient each (cases 1 and 2)."""
        self.dovecot.prepare_user("user")
        return [self.lda_user(), self.dovecot.lda_as_owner(SENDER),
                self.dovecot.lda_with_d("user", SENDER), self.procmail.agent("user", SENDER),
                self.maildrop.agent("user", SENDER)]

    def lmtp_sample(self, server, client, shape, name):
        """msg/s of one load of this shape (shape(server) -> lanes)."""
        try:
            return lmtp_load.measure(client, server.port, shape(server), name)
        except lmtp_load.LoadFailed as e:
            raise AgentFailed(f"{e}\n{tail(self.runner.log_path('lda-lmtp'))}") from e

    def lmtp_warm(self, shape):
        """One untimed load per server and client: index files, processes."""
        for server in self.lmtp_servers:
            for client in self.clients:
                self.lmtp_sample(server, client, shape, f"{server.name} warm-up, {client}")

    def lmtp_rows(self, shapes, **extra):
        """Rows "SERVER, LABEL, CLIENT" for shapes {label: shape}, every
        server and client alternated within each round; Dovecot's rows are
        compared with lda's row of the same label and client."""
        jobs, meta = {}, {}
        for label, shape in shapes.items():
            for client in self.clients:
                for server in self.lmtp_servers:
                    name = f"{server.name}, {label}, {client}"
                    meta[name] = {"server": server.name, "shape": label, "client": client}
                    jobs[name] = (lambda s=server, c=client, sh=shape, n=name:
                                  self.lmtp_sample(s, c, sh, n))
        samples = alternate(self.plan("lmtp_rounds"), jobs)
        return [row(name, runs, lda=None if meta[name]["server"] == "lda lmtp" else
                    f"lda lmtp, {meta[name]['shape']}, {meta[name]['client']}",
                    **meta[name], **extra)
                for name, runs in samples.items()]

    def warm(self, agents, size=3 * KB):
        for agent in agents:
            for _ in range(self.plan("warmup")):
                self.runner.run(agent, message(tag(), size))

    def close(self):
        for part in (self._site, self._dovecot):
            if part is not None:
                part.stop()
        self.runner.close()


class ManagedSite:
    """A managed lda site: FANOUT mailboxes u0..u999 made with the library,
    an aliases file `all: u0, u1, ...` compiled as an admin would after an
    edit (`lda aliases compile`, as newaliases(1) for Postfix's local(8)),
    and its `lda lmtp` on loopback."""

    def __init__(self, root, lda, runner, say):
        from lda.config import Config
        from lda.admin.mailboxes import compile_aliases, create_mailbox, open_directory

        self.root, self.lda, self.runner = root, lda, runner
        os.makedirs(root, exist_ok=True)
        self.aliases = os.path.join(root, "aliases")
        self.config_path = os.path.join(root, "lda.toml")
        with open(self.config_path, "w") as f:
            f.write(f'state_dir = "{root}/state"\naliases = "{self.aliases}"\n')
        with open(self.aliases, "w") as f:
            f.write("all: " + ",\n\t".join(f"u{i}" for i in range(FANOUT)) + "\n")
        start = time.perf_counter()
        config = Config({"state_dir": f"{root}/state", "aliases": self.aliases})
        directory = open_directory(config)
        self.maildirs = {}
        for i in range(FANOUT):
            box = create_mailbox(directory, config, f"u{i}@{DOMAIN}")
            db_root = directory["databases"].get(box["database"])["path"]
            self.maildirs[f"u{i}"] = os.path.join(db_root, box["maildir"])
        directory.close()
        # Uncompiled, every managed delivery would parse the 1,000-member
        # alias again (~4 ms of case 1's managed row); see lda-aliases(5).
        compile_aliases(config, self.aliases)
        say(f"   made {FANOUT} lda mailboxes in {time.perf_counter() - start:.1f} s")
        self.config = config
        self.env = {"LDA_CONFIG": self.config_path, "HOME": root, "PATH": "/usr/bin:/bin"}
        self.port = peers.free_port()
        self.log = open(os.path.join(runner.logs, "lda-lmtp.log"), "ab")
        self.server = subprocess.Popen(
            [lda, "lmtp", "--listen", f"127.0.0.1:{self.port}"], env=self.env,
            stdout=subprocess.DEVNULL, stderr=self.log)
        peers.wait_for_port(self.port, self.server, "lda lmtp")

    def deliver_agent(self, user="u0"):
        """`lda deliver` to one of the site's mailboxes: managed mode, as
        Postfix's virtual or pipe(8) transport runs it (lda.toml read)."""
        return Agent("lda deliver, managed", [self.lda, "deliver", "-f", SENDER,
                                              f"{user}@{DOMAIN}"], self.env, [self.maildirs[user]])

    def new_mailbox(self, user):
        """Create user@DOMAIN as `lda mailbox create` does, while the
        server runs (it resolves recipients per message); its Maildir."""
        from lda.admin.mailboxes import create_mailbox, open_directory

        directory = open_directory(self.config)
        try:
            box = create_mailbox(directory, self.config, f"{user}@{DOMAIN}")
            db_root = directory["databases"].get(box["database"])["path"]
        finally:
            directory.close()
        return os.path.join(db_root, box["maildir"])

    def fanout_agent(self):
        return Agent("lda deliver (alias)", [self.lda, "deliver", "-f", SENDER, f"all@{DOMAIN}"],
                     self.env, list(self.maildirs.values()))

    def server_hwm_mib(self):
        """Peak RSS of the running `lda lmtp` (VmHWM), MiB."""
        try:
            with open(f"/proc/{self.server.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    def stop(self):
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.log.close()


# --- cases ---------------------------------------------------------------------------

def case_single(bench):
    """Case 1: one 3 KB message, one recipient, a process per message; lda
    in per-user mode (the target's row) and in managed mode."""
    agents = bench.single_agents() + [bench.site.deliver_agent()]
    # The interpreter alone: with its exit, and without it, as `lda deliver`
    # ends (os._exit, no module teardown: 1.5-2 ms of `python -c pass`).
    floors = [Agent("(python -c pass)", [sys.executable, "-c", "pass"],
                    {"PATH": "/usr/bin:/bin"}, []),
              Agent("(python, os._exit)", [sys.executable, "-c", "import os; os._exit(0)"],
                    {"PATH": "/usr/bin:/bin"}, [])]
    bench.warm(agents)
    counts = {a.name: count_new(a.maildirs) for a in agents}
    jobs = {a.name: (lambda a=a: bench.runner.run(a, message(tag(), 3 * KB)))
            for a in agents + floors}
    samples = alternate(bench.plan("runs"), jobs)
    for a in agents:
        expect(a, a.maildirs, counts[a.name], bench.plan("runs"))
    syncs = count_syncs(bench, agents)
    rows = []
    for a in agents + floors:
        info = f"{syncs[a.name]} fsync/fdatasync" if a.name in syncs else ""
        rows.append(row(a.name, samples[a.name], bench.runner.peak_rss(a, message(tag(), 3 * KB)),
                        lda=None if a.name.startswith(("lda", "(")) else "lda deliver",
                        info=info))
    bench.cases.append({"id": 1, "title": "one 3 KB message, a process per message",
                        "unit": "s", "rows": rows,
                        "note": "wall time from spawn to exit, message on a pipe; peak RSS: "
                                "median of 3 more runs under GNU time"})
    target_single(bench, rows)


def count_syncs(bench, agents):
    """fsync-family calls in one delivery (strace -f), when strace exists."""
    if shutil.which("strace") is None:
        return {}
    out_dir = os.path.join(bench.root, "strace")
    os.makedirs(out_dir, exist_ok=True)
    os.chmod(out_dir, 0o1777)
    counts = {}
    for agent in agents:
        out = os.path.join(out_dir, agent.name.replace(" ", "_") + ".txt")
        traced = Agent(agent.name + " (strace)", ["strace", "-f", "-qq", "-o", out, "-e",
                       "trace=fsync,fdatasync,sync_file_range,syncfs,msync"] + agent.argv,
                       agent.env, agent.maildirs, agent.user, agent.group)
        try:
            bench.runner.run(traced, message(tag(), 3 * KB))
            with open(out) as f:
                counts[agent.name] = sum(1 for line in f if "sync" in line)
        except (AgentFailed, OSError):
            pass
    return counts


def case_in_a_row(bench):
    """Case 2: N messages in a row, a process each; total wall time."""
    agents = bench.single_agents()
    count = bench.plan("in_a_row")
    bench.warm(agents)

    def burst(agent):
        before = count_new(agent.maildirs)
        start = time.perf_counter()
        for _ in range(count):
            bench.runner.run(agent, message(tag(), 3 * KB))
        seconds = time.perf_counter() - start
        expect(agent, agent.maildirs, before, count)
        return seconds

    samples = alternate(bench.plan("rounds"), {a.name: (lambda a=a: burst(a)) for a in agents})
    rows = [row(name, runs, lda=None if name.startswith("lda") else "lda deliver",
                info=f"{count / statistics.median(runs):,.0f} msg/s")
            for name, runs in samples.items()]
    bench.cases.append({"id": 2, "title": f"{count:,} messages of 3 KB in a row, a process each",
                        "unit": "s", "rows": rows,
                        "note": "median and p90 over rounds of the total wall time"})


def case_fanout(bench):
    """Case 3: one 100 KB message to FANOUT mailboxes."""
    site, dovecot = bench.site, bench.dovecot
    users = [f"u{i}" for i in range(FANOUT)]
    for user in users:
        dovecot.prepare_user(user)
    lda_agent = site.fanout_agent()
    per_rcpt = {
        "dovecot-lda -d, per recipient": [dovecot.lda_with_d(u, SENDER) for u in users],
        "procmail, per recipient": [bench.procmail.agent(u, SENDER) for u in users],
        "maildrop, per recipient": [bench.maildrop.agent(u, SENDER) for u in users],
    }

    def one_process():
        data = message(tag(), 100 * KB)
        before = count_new(lda_agent.maildirs)
        seconds = bench.runner.run(lda_agent, data)
        expect(lda_agent, lda_agent.maildirs, before, FANOUT)
        return seconds

    def each(agents):
        data = message(tag(), 100 * KB)   # one message, one Message-ID, all recipients
        maildirs = [m for a in agents for m in a.maildirs]
        before, start = count_new(maildirs), time.perf_counter()
        for agent in agents:
            bench.runner.run(agent, data)
        seconds = time.perf_counter() - start
        expect(agents[0].name, maildirs, before, len(agents))
        return seconds

    lda_lmtp_dirs = list(site.maildirs.values())
    dovecot_dirs = [dovecot.maildir(u) for u in users]
    jobs = {"lda deliver, alias of 1,000": one_process}
    jobs.update({name: (lambda a=a: each(a)) for name, a in per_rcpt.items()})
    jobs["lda lmtp, 1,000 RCPT"] = lambda: lmtp_fanout(site.port, users, lda_lmtp_dirs,
                                                       "lda lmtp")
    jobs["dovecot lmtp, 1,000 RCPT"] = lambda: lmtp_fanout(dovecot.port, users, dovecot_dirs,
                                                           "dovecot lmtp")
    bench.say("   warm-up round (creates the peers' index files) ...")
    for job in jobs.values():
        job()
    samples = alternate(bench.plan("rounds"), jobs)
    # Peak RSS: one more delivery under GNU time (one recipient for the peers).
    data = message(tag(), 100 * KB)
    rss = {"lda deliver, alias of 1,000": bench.runner.peak_rss(lda_agent, data, runs=1)}
    rss.update({name: bench.runner.peak_rss(agents[0], data, runs=1)
                for name, agents in per_rcpt.items()})
    rows = []
    for name, runs in samples.items():
        lda = None if name.startswith("lda") else (
            "lda lmtp, 1,000 RCPT" if "lmtp" in name else "lda deliver, alias of 1,000")
        info = f"server VmHWM {site.server_hwm_mib():.0f} MiB" if name.startswith(
            "lda lmtp") else ""
        rows.append(row(name, runs, rss.get(name), lda=lda, info=info))
    bench.cases.append({"id": 3, "title": f"fan-out: one 100 KB message to {FANOUT:,} "
                        "local mailboxes", "unit": "s", "rows": rows,
                        "note": "per-recipient peers: one process per recipient, in turn; "
                                "peak RSS is the largest single process"})
    target_fanout(bench, rows)


def lmtp_fanout(port, users, maildirs, name):
    """One LMTP transaction: MAIL, a RCPT per user, DATA, a reply each."""
    data = message(tag(), 100 * KB, eol=b"\r\n")
    before = count_new(maildirs)
    start = time.perf_counter()
    with smtplib.LMTP("127.0.0.1", port, timeout=600) as lmtp:
        lmtp.ehlo_or_helo_if_needed()
        code, reply = lmtp.mail(SENDER)
        assert code == 250, reply
        for user in users:
            code, reply = lmtp.rcpt(f"{user}@{DOMAIN}")
            if code != 250:
                raise AgentFailed(f"{name}: RCPT {user}: {code} {reply!r}")
        replies = [lmtp.data(data)] + [lmtp.getreply() for _ in users[1:]]
    seconds = time.perf_counter() - start
    bad = [r for r in replies if r[0] != 250]
    if bad:
        raise AgentFailed(f"{name}: {len(bad)} recipients refused after DATA: {bad[0]!r}")
    expect(name, maildirs, before, len(users))
    return seconds


def case_large(bench):
    """Case 4: one large message, each agent; wall time and peak RSS."""
    agents = [bench.lda_user(), bench.dovecot.lda_as_owner(SENDER),
              bench.procmail.agent("user", SENDER), bench.maildrop.agent("user", SENDER)]
    bench.warm(agents)
    rows = []
    for size in bench.plan("large"):
        body = os.path.join(bench.root, f"body-{size // MB}M")
        write_body(body, size)

        def deliver(agent, body=body):
            before = count_new(agent.maildirs)
            result = bench.runner.run(agent, message(tag(), 0), body, rss=True)
            expect(agent, agent.maildirs, before, 1)
            return result

        samples = alternate(bench.plan("rounds"), {a.name: (lambda a=a: deliver(a))
                                                   for a in agents})
        label = f"{size // MB} MB"
        for name, runs in samples.items():
            rows.append(row(f"{name}, {label}", [s for s, _ in runs],
                            max(r for _, r in runs),
                            lda=None if name.startswith("lda") else f"lda deliver, {label}",
                            size=size, agent_name=name))
    bench.cases.append({"id": 4, "title": "large messages: wall time and peak RSS",
                        "unit": "s", "rows": rows,
                        "note": "message streamed on a pipe; peak RSS is the largest run"})
    target_large(bench, rows)


def write_body(path, size):
    line = b"z" * 76 + b"\n"
    block = line * (MB // len(line))
    with open(path, "wb") as f:
        written = 0
        while written + len(block) <= size:
            f.write(block)
            written += len(block)
        f.write(line[: max(0, size - written - 1)] + b"\n")


def case_rows(bench):
    """Case 5: `lda deliver` latency against DeliveredTo size; cleanup."""
    from lda.deliver.resolve import current_user

    sizes = bench.plan("rows")
    agents = {}
    for size in sizes:
        agent = bench.lda_user(f"lda deliver, {size:,} rows",
                               os.path.join(bench.root, "lda-rows", str(size)))
        bench.runner.run(agent, message(tag(), 3 * KB))   # creates lda.sqlite
        if size:
            start = time.perf_counter()
            fill_deliveredto(os.path.join(agent.env["HOME"], ".local", "state", "lda",
                                          "lda.sqlite"), size, current_user())
            bench.say(f"   {size:,} DeliveredTo rows in {time.perf_counter() - start:.1f} s")
        agents[size] = agent
    bench.warm(agents.values())
    runs = bench.plan("row_runs")
    jobs = {a.name: (lambda a=a: bench.runner.run(a, message(tag(), 3 * KB)))
            for a in agents.values()}
    samples = alternate(runs, jobs)
    empty = agents[sizes[0]].name
    rows = [row(agents[size].name, samples[agents[size].name],
                lda=None if size == sizes[0] else empty, size=size) for size in sizes]
    bench.cases.append({"id": 5, "title": "lda deliver latency against DeliveredTo size",
                        "unit": "s", "rows": rows, "ratio": "row/base",
                        "note": "ratio: this size's median over the empty table's"})
    cleanup = cleanup_case(bench)
    bench.cases[-1]["cleanup"] = cleanup
    print_cleanup(cleanup)
    target_rows(bench, rows, sizes, cleanup)


def fill_deliveredto(path, count, mailbox, now=None):
    """count live rows for mailbox, straight into the sqlite file in big
    transactions.  Keys are spread evenly over the hexadecimal key space
    and written in key order (fast B-tree appends), so a new random
    Message-ID lands at a random place in the table, as in real life."""
    now = now or time.time()
    window = (EXPIRATION_HOURS - 2) * 3600   # every row stays live
    step = 2**64 // count
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA cache_size = -524288")
    from lda.store.deliveredto import ROW_COLUMNS

    def rows(first, last):
        for i in range(first, last):
            at = now - window + window * i / count
            yield (mailbox, f"{i * step:016x}.{i}@fill.{DOMAIN}", "2026-11-24T10:00:00Z",
                   at, "delivered", f"{int(at)}.M{i}P1Q1.bench,S=3072")

    chunk = 250_000
    for first in range(0, count, chunk):
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO delivered_to {ROW_COLUMNS} VALUES (?, ?, ?, ?, ?, ?)",
                         rows(first, min(count, first + chunk)))
        conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode = WAL")   # as deliveries use it
    conn.close()
    # Written with synchronous = OFF: flush it now, or the first timed
    # delivery's fsync pays for writing the whole table out.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cleanup_case(bench):
    """1 M expired rows: `lda dedup cleanup`'s library call in a child
    (bench/cleanup.py --child, the command's default batch) while this
    process makes a delivery-like insert every 50 ms, as deliveries would."""
    from lda.admin.dedup import cleanup

    batch = inspect.signature(cleanup).parameters["batch"].default
    expired, live = 1_000_000, bench.plan("cleanup_live")
    base = os.path.join(bench.root, "cleanup")
    template = os.path.join(base, "template")
    start = time.perf_counter()
    cleanup_bench.populate(template, expired, live, time.time())
    bench.say(f"   {expired:,} expired + {live:,} live rows in "
              f"{time.perf_counter() - start:.1f} s")
    state = os.path.join(base, "state")
    config, directory, root = cleanup_bench.site(state, os.path.join(template, "lda.sqlite"))
    directory.close()
    child = subprocess.Popen([sys.executable, cleanup_bench.__file__, "--child", state,
                              "--batch", str(batch)], stdout=subprocess.PIPE, text=True)
    child.stdout.readline()   # "ready": imports done, the cleanup starts
    waits, totals = inserts_while(root, child)
    summary = json.loads(child.stdout.readline())
    child.wait()
    shutil.rmtree(base, ignore_errors=True)
    return {"expired": expired, "live": live, "batch": batch, "deleted": summary["deleted"],
            "seconds": summary["seconds"], "batches": summary["batches"],
            "longest_batch_ms": summary["longest_batch_ms"], "inserts": len(waits),
            "insert_lock_wait_max_ms": max(waits) * 1000,
            "insert_lock_wait_median_ms": statistics.median(waits) * 1000,
            "insert_lock_wait_p99_ms": sorted(waits)[int(len(waits) * 0.99)] * 1000,
            "insert_transaction_max_ms": max(totals) * 1000}


def inserts_while(db_root, child, spacing=0.05, limit=100_000):
    """BEGIN IMMEDIATE; INSERT; COMMIT every `spacing` s while child runs:
    (lock waits, whole transactions), seconds."""
    from lda.store.deliveredto import DB_FILE, ROW_COLUMNS, connect

    conn = connect(os.path.join(db_root, DB_FILE))
    waits, totals = [], []
    while child.poll() is None and len(waits) < limit:
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        locked = time.perf_counter()
        conn.execute(f"INSERT INTO delivered_to {ROW_COLUMNS} VALUES (?, ?, ?, ?, 'delivered', ?)",
                     ("probe@example.org", f"probe.{time.time_ns()}@x", "", time.time(), "probe"))
        conn.execute("COMMIT")
        waits.append(locked - start)
        totals.append(time.perf_counter() - start)
        time.sleep(spacing)
    conn.close()
    return waits or [0.0], totals or [0.0]


def print_cleanup(c):
    print(f"   cleanup of {c['expired']:,} expired rows ({c['live']:,} live kept), batch "
          f"{c['batch']}: {c['deleted']:,} deleted in {c['seconds']:.2f} s "
          f"({c['deleted'] / max(c['seconds'], 1e-9):,.0f} rows/s), {c['batches']:,} batches, "
          f"longest write-lock hold {c['longest_batch_ms']:.2f} ms")
    print(f"   meanwhile {c['inserts']} delivery-like inserts, one per 50 ms, waited for the "
          f"lock: median {c['insert_lock_wait_median_ms']:.2f} ms, p99 "
          f"{c['insert_lock_wait_p99_ms']:.2f} ms, max "
          f"{c['insert_lock_wait_max_ms']:.2f} ms (whole transaction max "
          f"{c['insert_transaction_max_ms']:.2f} ms)")


def case_lmtp(bench):
    """Case 6: LMTP messages/s, SESSIONS one-session streams, each to its
    own mailbox, run 1, 4, 16 at a time, from each client (lmtp_load.py).

    Each sample delivers to SESSIONS mailboxes no sample had before: reusing
    16 mailboxes, the samples taken last (16 sessions) met the fullest ones,
    and Dovecot's rate, not lda's, fell as they filled (940 to 780-845 msg/s
    over ten samples of 960 messages)."""
    per_session = bench.plan("per_session")

    def shape(concurrency):
        return lambda server: lmtp_load.pooled(server, SESSIONS, per_session, concurrency)

    rows = []
    bench.lmtp_warm(shape(4))
    for concurrency in CONCURRENCY:
        sessions = f"{concurrency} session{'s' if concurrency > 1 else ''}"
        rows += bench.lmtp_rows({sessions: shape(concurrency)}, concurrency=concurrency)
    bench.cases.append({"id": 6, "title": f"LMTP throughput: {SESSIONS * per_session} messages "
                        f"of 3 KB, one recipient each, in {SESSIONS} sessions", "unit": "msg/s",
                        "higher_is_better": True, "rows": rows,
                        "note": f"{SESSIONS} sessions of {per_session} messages, each to its "
                                "own fresh mailbox, 1, 4 or 16 at a time; clients: "
                                f"{', '.join(bench.clients)}; lda lmtp with its default "
                                "processes"})
    target_lmtp(bench, rows)


def case_hot(bench):
    """Case 7: the hot mailbox. SESSIONS sessions at once into ONE mailbox
    against the same sessions spread over HOT_SPREAD mailboxes (4 x 4);
    lda lmtp and Dovecot's LMTP, from each client."""
    messages = SESSIONS * bench.plan("per_session")
    each = SESSIONS // HOT_SPREAD
    shapes = {f"hot, {SESSIONS} -> 1": lambda server: lmtp_load.hot(server, SESSIONS, messages),
              f"spread, {HOT_SPREAD}x{each}": lambda server: lmtp_load.spread(
                  server, HOT_SPREAD, each, messages // HOT_SPREAD)}
    bench.lmtp_warm(shapes[f"hot, {SESSIONS} -> 1"])
    rows = bench.lmtp_rows(shapes)
    bench.cases.append({"id": 7, "title": f"hot mailbox: {messages} messages of 3 KB in "
                        f"{SESSIONS} sessions at once, to one mailbox or over {HOT_SPREAD}",
                        "unit": "msg/s", "higher_is_better": True, "rows": rows,
                        "note": f"hot: all {SESSIONS} sessions to one fresh mailbox; spread: "
                                f"{each} sessions to each of {HOT_SPREAD} fresh mailboxes; "
                                f"clients: {', '.join(bench.clients)}"})
    target_hot(bench, rows)


# --- targets ----------------------------------------------------------------------

def target(bench, case, text, passed, detail, profile=None, measured=None, limit=None):
    bench.targets.append({"case": case, "target": text, "passed": passed, "detail": detail,
                          "measured": measured, "limit": limit})
    if not passed and profile is not None:
        bench.profiles.append((case, profile))


def by_name(rows):
    return {r["agent"]: r for r in rows}


def under(measured, limit):
    """'12% under' / '30% over' a limit."""
    share = (limit - measured) / limit
    return f"{abs(share) * 100:.0f}% {'under' if share >= 0 else 'over'}"


# Case 1's target (issue 22): `lda deliver` within this many times dovecot-lda.
SINGLE_LIMIT = 1.2


def target_single(bench, rows):
    r = by_name(rows)
    lda, dovecot = r["lda deliver"]["median"], r["dovecot-lda"]["median"]
    ratio = lda / dovecot
    # What the limit leaves lda over the interpreter's own start (ended as
    # lda ends, with os._exit): its imports and the delivery must fit there.
    floor = r["(python, os._exit)"]["median"]
    budget = SINGLE_LIMIT * dovecot - floor
    target(bench, 1, f"lda deliver median within {SINGLE_LIMIT}x of dovecot-lda",
           ratio <= SINGLE_LIMIT,
           f"{ratio:.2f}x ({fmt(lda, 's')} vs {fmt(dovecot, 's')}; limit {SINGLE_LIMIT}x, "
           f"{under(ratio, SINGLE_LIMIT)}; over the os._exit floor lda takes "
           f"{fmt(lda - floor, 's')}, the limit leaves {fmt(budget, 's')})",
           "single", ratio, SINGLE_LIMIT)
    for peer in ("procmail", "maildrop"):
        other = r[peer]["median"]
        target(bench, 1, f"(aim) lda deliver median below {peer}", lda < other,
               f"{lda / other:.2f}x ({fmt(lda, 's')} vs {fmt(other, 's')}; "
               f"{under(lda / other, 1.0)})", "single", lda / other, 1.0)


def target_fanout(bench, rows):
    r = by_name(rows)
    lda = r["lda deliver, alias of 1,000"]["median"]
    dovecot = r["dovecot-lda -d, per recipient"]["median"]
    target(bench, 3, "fan-out under 1 s (lda deliver, alias of 1,000)", lda < 1.0,
           f"{fmt(lda, 's')} ({under(lda, 1.0)} the 1 s limit)", "fanout", lda, 1.0)
    target(bench, 3, "fan-out faster than dovecot-lda per recipient", lda < dovecot,
           f"{lda / dovecot:.3f}x ({fmt(lda, 's')} vs {fmt(dovecot, 's')})", "fanout",
           lda / dovecot, 1.0)
    lmtp, dlmtp = r["lda lmtp, 1,000 RCPT"]["median"], r["dovecot lmtp, 1,000 RCPT"]["median"]
    target(bench, 3, "(info) lda lmtp fan-out faster than dovecot lmtp", lmtp < dlmtp,
           f"{lmtp / dlmtp:.2f}x ({fmt(lmtp, 's')} vs {fmt(dlmtp, 's')})", "lmtp-fanout",
           lmtp / dlmtp, 1.0)


def target_large(bench, rows):
    lda_rows = sorted((r for r in rows if r["agent_name"] == "lda deliver"),
                      key=lambda r: r["size"])
    small, big = lda_rows[0], lda_rows[-1]
    growth = big["rss_mib"] - small["rss_mib"]
    allowed = max(4.0, 0.1 * small["rss_mib"])
    target(bench, 4, "lda peak RSS not growing with message size", growth <= allowed,
           f"{small['rss_mib']:.1f} MiB at {small['size'] // MB} MB, {big['rss_mib']:.1f} MiB "
           f"at {big['size'] // MB} MB ({growth:+.1f} MiB; allowed +{allowed:.1f} MiB)",
           "large", growth, allowed)


def target_rows(bench, rows, sizes, cleanup):
    by = {x["size"]: x for x in rows}
    empty, biggest = by[sizes[0]], by[sizes[-1]]
    ratio = biggest["median"] / empty["median"]
    label = f"{sizes[-1] // 1_000_000} M rows"
    if sizes[-1] < 10_000_000:
        label += " (--quick: 10 M not run)"
    target(bench, 5, f"latency at {label} within 1.1x of empty", ratio <= 1.1,
           f"{ratio:.2f}x ({fmt(biggest['median'], 's')} vs {fmt(empty['median'], 's')}; "
           f"limit 1.1x, {under(ratio, 1.1)})", "rows", ratio, 1.1)
    longest = cleanup["longest_batch_ms"]
    target(bench, 5, "no cleanup batch holds the write lock over 50 ms", longest <= 50,
           f"longest batch {longest:.2f} ms ({under(longest, 50)}); a concurrent insert "
           f"waited at most {cleanup['insert_lock_wait_max_ms']:.2f} ms", None, longest, 50)


def target_lmtp(bench, rows):
    """Issue 22: lda lmtp at least 1.2x Dovecot's LMTP at 1, 4 and 16
    sessions, each session to its own mailbox; judged for every client."""
    r = by_name(rows)
    for client in bench.clients:
        for concurrency in CONCURRENCY:
            sessions = f"{concurrency} session{'s' if concurrency > 1 else ''}"
            lda = r[f"lda lmtp, {sessions}, {client}"]["median"]
            dovecot = r[f"dovecot lmtp, {sessions}, {client}"]["median"]
            ratio_target(bench, 6, f"lda lmtp >= {LMTP_OVER_DOVECOT}x dovecot lmtp at {sessions} "
                         f"({client})", lda, dovecot, LMTP_OVER_DOVECOT, "lda", "dovecot", "lmtp")


def target_hot(bench, rows):
    """Issue 22: 16 sessions into one mailbox at least 0.95x of the same
    over four mailboxes, and at least 1.2x Dovecot's LMTP into one."""
    r = by_name(rows)
    hot, spread = f"hot, {SESSIONS} -> 1", f"spread, {HOT_SPREAD}x{SESSIONS // HOT_SPREAD}"
    for client in bench.clients:
        lda_hot = r[f"lda lmtp, {hot}, {client}"]["median"]
        lda_spread = r[f"lda lmtp, {spread}, {client}"]["median"]
        dovecot_hot = r[f"dovecot lmtp, {hot}, {client}"]["median"]
        dovecot_spread = r[f"dovecot lmtp, {spread}, {client}"]["median"]
        ratio_target(bench, 7, f"lda lmtp hot >= {HOT_OVER_SPREAD}x lda lmtp spread ({client})",
                     lda_hot, lda_spread, HOT_OVER_SPREAD, "hot", "spread", "lmtp-hot")
        ratio_target(bench, 7, f"lda lmtp hot >= {LMTP_OVER_DOVECOT}x dovecot lmtp hot "
                     f"({client})", lda_hot, dovecot_hot, LMTP_OVER_DOVECOT, "lda", "dovecot",
                     "lmtp-hot")
        ratio_target(bench, 7, f"(info) dovecot lmtp hot >= {HOT_OVER_SPREAD}x its spread "
                     f"({client})", dovecot_hot, dovecot_spread, HOT_OVER_SPREAD, "hot", "spread")


def ratio_target(bench, case, text, mine, theirs, limit, my_name, their_name, profile=None):
    """A target on a ratio of two msg/s figures: mine / theirs >= limit."""
    ratio = mine / theirs
    share = (ratio - limit) / limit
    target(bench, case, text, ratio >= limit,
           f"{ratio:.2f}x ({my_name} {mine:,.1f} vs {their_name} {theirs:,.1f} msg/s; limit "
           f"{limit}x, {abs(share) * 100:.0f}% {'over' if share >= 0 else 'under'})",
           profile, ratio, limit)


def print_targets(targets):
    print("\n== targets (from the issue)")
    for t in targets:
        verdict = "PASS" if t["passed"] else ("miss" if t["target"].startswith("(") else "MISS")
        print(f"   {verdict:4}  case {t['case']}: {t['target']}: {t['detail']}")


# --- profiles of misses -------------------------------------------------------------

def record_profiles(bench, directory):
    """A pyinstrument profile of `lda deliver` in the shape of each missed
    case (py-spy of the server for the LMTP ones)."""
    os.makedirs(directory, exist_ok=True)
    done = set()
    for case, kind in bench.profiles:
        if kind in done:
            continue
        done.add(kind)
        try:
            if kind in ("lmtp", "lmtp-hot", "lmtp-fanout"):
                path = profile_lmtp(bench, directory, kind)
            else:
                path = profile_deliver(bench, directory, kind)
            bench.say(f"   profile for case {case} ({kind}): {path}")
        except (AgentFailed, OSError, subprocess.CalledProcessError) as e:
            bench.say(f"   profile for case {case} ({kind}) failed: {e}")


def ensure_module(module, package):
    try:
        __import__(module)
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


PROFILED_DELIVER = """\
# What lda.main does for `lda deliver`, but returning instead of os._exit.
import gc, os, sys
from lda.store.deliveredto import leave_open_until_exit
from lda.deliver.command import deliver
os.umask(0o077)
gc.disable()
leave_open_until_exit()
sys.exit(deliver(sys.argv[1:]))
"""


def profile_deliver(bench, directory, kind):
    ensure_module("pyinstrument", "pyinstrument")
    if kind == "fanout":
        agent, data, body = bench.site.fanout_agent(), message(tag(), 100 * KB), None
    elif kind == "large":
        agent, data = bench.lda_user(), message(tag(), 0)
        body = os.path.join(bench.root, f"body-{bench.plan('large')[-1] // MB}M")
    elif kind == "rows":
        size = bench.plan("rows")[-1]
        agent = bench.lda_user(f"lda deliver, {size:,} rows",
                               os.path.join(bench.root, "lda-rows", str(size)))
        data, body = message(tag(), 3 * KB), None
    else:
        agent, data, body = bench.lda_user(), message(tag(), 3 * KB), None
    # `lda deliver` ends with os._exit, which would leave pyinstrument no
    # moment to write its report: this script runs the same path and returns.
    wrapper = os.path.join(directory, "lda-deliver-profiled.py")
    with open(wrapper, "w") as f:
        f.write(PROFILED_DELIVER)
    paths = []
    for renderer, ext in (("html", "html"), ("text", "txt")):
        out = os.path.join(directory, f"lda-deliver-{kind}.{ext}")
        # Sampled every 0.1 ms: one delivery lasts ~10 ms past start-up.
        profiled = Agent(f"pyinstrument {kind}", [sys.executable, "-m", "pyinstrument",
                         "-i", "0.0001", "--show-all", "-r", renderer, "-o", out,
                         wrapper, *agent.argv[2:]],
                         agent.env, agent.maildirs)
        bench.runner.run(profiled, data if body is None else message(tag(), 0), body)
        paths.append(out)
    return " ".join(paths)


def profile_lmtp(bench, directory, kind):
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(spy):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Collapsed stacks (flamegraph.pl or speedscope draw them; grep reads
    # them), of the supervisor and every server process it forked.
    out = os.path.join(directory, f"lda-lmtp-{kind}.collapsed.txt")
    recorder = subprocess.Popen([spy, "record", "--threads", "--subprocesses",
                                 "--rate", "500", "--format", "raw",
                                 "--pid", str(bench.site.server.pid),
                                 "--output", out], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    time.sleep(1)
    users = [f"u{i}" for i in range(FANOUT if kind == "lmtp-fanout" else SESSIONS)]
    if kind == "lmtp-hot":
        users = ["u0"] * SESSIONS   # case 7: every session into the same mailbox
    if kind == "lmtp-fanout":
        lmtp_fanout(bench.site.port, users, [bench.site.maildirs[u] for u in users], "lda lmtp")
    else:
        jobs = [([f"{tag()}-{m}" for m in range(bench.plan("per_session"))], [f"{u}@{DOMAIN}"])
                for u in users]
        with ThreadPoolExecutor(SESSIONS) as pool:
            list(pool.map(lambda job: lmtp_throughput.lmtp_session(bench.site.port, *job),
                          jobs))
    recorder.send_signal(signal.SIGINT)
    recorder.wait(timeout=60)
    return out


# --- hyperfine cross-check -----------------------------------------------------------

def hyperfine_case(bench):
    """Case 1 again through hyperfine (one agent after another, not
    alternated; stdin a file, not a pipe): a cross-check, not the figure."""
    if shutil.which("hyperfine") is None:
        bench.say("\n   (hyperfine not installed: no cross-check)")
        return None
    agents = bench.single_agents()
    work = os.path.join(bench.root, "hyperfine")
    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o755)
    body = os.path.join(work, "body")
    with open(body, "wb") as f:
        f.write(message("x", 3 * KB).split(b"\n", 3)[3])
    msg, out = os.path.join(work, "msg"), os.path.join(work, "hyperfine.json")
    prepare = (f"printf 'From: {SENDER}\\nMessage-ID: <%s@hf>\\n' $(date +%s%N) > {msg} && "
               f"cat {body} >> {msg} && chmod 644 {msg}")
    commands = []
    for a in agents:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in a.env.items())
        who = (f"setpriv --reuid={a.user} --regid={a.group} --clear-groups "
               if a.user is not None else "")
        commands += ["-n", a.name, f"{who}env -i {env} {shlex.join(a.argv)} < {msg}"]
    subprocess.run(["hyperfine", "--style=basic", "--warmup", "3", "--runs",
                    str(bench.plan("runs")), "--prepare", prepare, "--export-json", out,
                    *commands], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    with open(out) as f:
        results = json.load(f)["results"]
    print("\n== case 1 cross-check (hyperfine: mean +- stddev, median; stdin a file)")
    for r in results:
        print(f"   {r['command']:34} {r['mean'] * 1000:7.1f} +- {r['stddev'] * 1000:5.1f} ms  "
              f"median {r['median'] * 1000:7.1f} ms")
    return [{k: r[k] for k in ("command", "mean", "stddev", "median", "min", "max")}
            for r in results]


# --- main --------------------------------------------------------------------------

CASES = {1: case_single, 2: case_in_a_row, 3: case_fanout, 4: case_large, 5: case_rows,
         6: case_lmtp, 7: case_hot}


def machine(root):
    imports = start_imports()
    df = subprocess.run(["df", "-T", root], capture_output=True, text=True).stdout.splitlines()
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "loadavg_start": os.getloadavg(),
            "filesystem": df[-1].split()[1] if len(df) > 1 else "?",
            "site_import_ms": site_import_ms(imports), "lda_editable": lda_editable(),
            "start_hooks_ms": start_hooks_ms(imports),
            "peers": peers.versions()}


def start_imports():
    """[(module, cumulative ms)] of what every start of this Python imports
    (`python -X importtime -c pass`), in its order."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"],
                          capture_output=True, text=True)
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((parts[2].strip(), int(parts[1]) / 1000))
    return rows


def site_import_ms(imports):
    """What `import site` (its .pth files) costs every Python start, lda's too."""
    return next((ms for name, ms in imports if name == "site"), None)


def start_hooks_ms(imports):
    """{module: ms} for the site-packages modules among `imports`: what a
    `.pth` file's `import` line costs each delivery.  setuptools' own
    distutils-precedence.pth, which a Python 3.11 venv comes with, loads
    _distutils_hack."""
    import importlib.util
    import sysconfig

    purelib = sysconfig.get_path("purelib")
    hooks = {}
    for name, ms in imports:
        if "." in name or name in hooks:
            continue
        spec = importlib.util.find_spec(name)
        if spec is not None and (spec.origin or "").startswith(purelib):
            hooks[name] = ms
    return hooks


def lda_editable():
    """True when lda is a `pip install -e` install, whose import hook runs
    (pathlib and more) at every interpreter start, so in every delivery."""
    import sysconfig

    purelib = sysconfig.get_path("purelib")
    return any(name.startswith("__editable__") and "lda" in name
               for name in os.listdir(purelib))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer runs and rounds, 200 in a row, no 10 M-row table")
    parser.add_argument("--json", metavar="OUT", help="write every figure to this file")
    parser.add_argument("--profile", metavar="DIR",
                        help="profile lda (pyinstrument / py-spy) for each missed target")
    parser.add_argument("--cases", default=",".join(map(str, CASES)),
                        help="which cases (default: all)")
    parser.add_argument("--client", choices=("both", *lmtp_load.CLIENTS), default="both",
                        help="LMTP client of cases 6 and 7: Postfix's smtp-source -L, our own, "
                             "or both (default)")
    parser.add_argument("--per-session", type=int, metavar="N",
                        help="messages per LMTP session in cases 6 and 7 (default: 8 with "
                             "--quick, else 60); a few make a smoke test")
    parser.add_argument("--dir", help="where the temporary tree goes (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary tree")
    parser.add_argument("--no-install", action="store_true", help="never run apt-get")
    parser.add_argument("--hyperfine", action="store_true",
                        help="also run case 1 through hyperfine, as a cross-check")
    args = parser.parse_args(argv)
    try:
        args.cases = sorted({int(c) for c in args.cases.split(",")})
    except ValueError:
        parser.error("--cases takes numbers, e.g. 1,3,6")
    if not set(args.cases) <= set(CASES):
        parser.error(f"--cases: 1 to {len(CASES)}")
    args.clients = lmtp_load.CLIENTS if args.client == "both" else (args.client,)
    return args


def main(argv=None):
    args = parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root: the peers need a private Dovecot master and apt-get")
    if os.path.exists("/etc/lda/lda.toml"):
        raise SystemExit("/etc/lda/lda.toml exists: lda deliver would not run in per-user mode")
    smtp_source = "smtp-source" in args.clients and bool({6, 7} & set(args.cases))
    if not args.no_install:
        peers.install(smtp_source=smtp_source)
    elif peers.missing_packages(smtp_source):
        raise SystemExit(f"missing: {' '.join(peers.missing_packages(smtp_source))}")
    root = tempfile.mkdtemp(prefix="lda-compare-", dir=args.dir)
    os.chmod(root, 0o755)   # Dovecot's mail user must reach its homes below
    info = machine(root)
    started = time.perf_counter()
    print(f"lda vs peers: {'quick' if args.quick else 'full'} run, cases "
          f"{','.join(map(str, args.cases))}; {info['cpus']} CPUs, load "
          f"{' '.join(f'{x:.2f}' for x in info['loadavg_start'])}; {root} ({info['filesystem']})")
    print("   " + "; ".join(f"{k} {v}" for k, v in info["peers"].items()))
    print(f"   python {info['python']}: `import site` takes {info['site_import_ms']} ms "
          "of every start (python -X importtime)")
    if info["lda_editable"]:
        print("   WARNING: lda is an editable install (pip install -e); its import hook "
              "slows every delivery: use `pip install .` for figures to publish")
    if info["start_hooks_ms"]:
        print("   WARNING: site-packages code runs at every Python start, every delivery's: "
              + ", ".join(f"{name} {ms:.2f} ms" for name, ms in info["start_hooks_ms"].items())
              + (" (_distutils_hack: setuptools' .pth; lda needs no setuptools to run)"
                 if "_distutils_hack" in info["start_hooks_ms"] else ""))
    if info["loadavg_start"][0] > 0.25 * info["cpus"]:
        print("   WARNING: the machine is busy; figures will be noisy")
    bench = Bench(root, args.quick, clients=args.clients)
    if args.per_session:
        bench.overrides["per_session"] = args.per_session
    results = {"machine": info, "quick": args.quick, "cases": bench.cases,
               "targets": bench.targets}
    try:
        for number in args.cases:
            case_started = time.perf_counter()
            print(f"\n-- case {number} ...", flush=True)
            CASES[number](bench)
            print_table(bench.cases[-1])
            bench.cases[-1]["seconds"] = time.perf_counter() - case_started
            print(f"   (case {number} took {bench.cases[-1]['seconds']:.0f} s)", flush=True)
        if args.hyperfine and 1 in args.cases:
            results["hyperfine"] = hyperfine_case(bench)
        print_targets(bench.targets)
        if args.profile and bench.profiles:
            print(f"\n== profiles of missed targets -> {args.profile}")
            record_profiles(bench, args.profile)
    finally:
        bench.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"\nkept {root}")
    info["loadavg_end"] = os.getloadavg()
    info["seconds"] = time.perf_counter() - started
    print(f"\ntotal {info['seconds']:.0f} s; load at the end "
          f"{' '.join(f'{x:.2f}' for x in info['loadavg_end'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()

"""Crash consistency: `lda deliver` killed with SIGKILL at random instants,
then run again as an MTA runs a deferred delivery, until it exits 0.  The
same for `lda lmtp`: the whole server (supervisor and workers) is killed
during a transaction of three RCPTs, and the transaction is sent again to
a restarted server until every RCPT has its 250, as Postfix's lmtp(8)
does after a lost connection.  A kill after the commit, before the client
read its replies, is the resend that must be answered 250 and not stored
again.

Half the kill delays are drawn uniformly from [0, 1.2 x] a normal
delivery's measured duration, so they land anywhere from interpreter
start-up to after the exit; the other half count from the moment the
staging file appears, up to 6 ms, so that they land among the writes,
rows and links; 1-5 MB messages stretch the write so that kills land
mid-write.
After every message: each target mailbox holds it exactly once, byte for
byte (a re-run after a kill must find the pending row and the file, never
write a second copy); no file in new/ or cur/ is partial; every SQLite file
passes integrity_check and foreign_key_check.  Files left in tmp/ are
allowed (the 36-hour sweep removes them, see test_deliver.py) and counted.

Each kill is classified by what it left behind, to show that the windows
that matter were hit: before anything was written, while staging in tmp/,
with pending rows and no file in new/, with the file linked but the rows
still pending, after the commit, or after the process had exited already.

bench/soak.py runs the same driver with thousands of kills.  The seed is
random and printed; LDA_CRASH_SEED=N replays a run.
"""

import base64
import hashlib
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import LDA, Lda, Site, clean_env, message, wait_until
from lmtp_session import Server

SENDER = "sender@example.org"
MB = 1 << 20
BASELINE_RUNS = 5
DELAY_SPREAD = 1.2
# Half the kills wait for the staging file, then come within STAGED_SPREAD
# seconds: the writes take a few ms of a delivery that, spawned from here,
# measures 50-100 ms, and delays drawn over all of it landed 9 in 10 before
# anything was written.
AFTER_STAGING = 0.5
STAGED_SPREAD = 0.006
MAX_KILLS_PER_MESSAGE = 2
MAX_RERUNS = 5

# What a kill left behind, in the order a delivery goes through them.
WINDOWS = ("nothing-yet", "staging-in-tmp", "pending-before-link", "linking",
           "linked-rows-pending", "committed", "exited-before-kill")
AFTER_NEW = {"linking", "linked-rows-pending", "committed", "exited-before-kill"}


# -- the environments ------------------------------------------------------

class Setup:
    """Where one crash case delivers: the command, the target Maildirs, the
    staging tmp/, the SQLite files, and the prefix lda writes into each
    target (its recipient's Delivered-To)."""

    def __init__(self, runner, recipients, targets, dbs, delivered_to):
        self.runner = runner
        self.argv = [LDA, "deliver", "-f", SENDER, *recipients]
        self.targets = [Path(t) for t in targets]
        self.staging = self.targets[0] / "tmp"
        self.dbs = [Path(d) for d in dbs]
        self.prefixes = [f"Return-Path: <{SENDER}>\nDelivered-To: {to}\n".encode()
                         for to in delivered_to]

    @property
    def env(self):
        return self.runner.env

    def run(self, path):
        """One delivery of the message in `path`, to its end, as the MTA runs
        it: (exit status, first line of stderr, seconds)."""
        start = time.monotonic()
        with open(path, "rb") as stdin:
            done = subprocess.run(self.argv, stdin=stdin, env=self.env, capture_output=True,
                                  timeout=120)
        reason = (done.stderr.decode(errors="replace").strip().splitlines() or [""])[0]
        return done.returncode, reason, time.monotonic() - start

    def start(self, path):
        """The same delivery under way, to be killed."""
        with open(path, "rb") as stdin:
            return Process(subprocess.Popen(self.argv, stdin=stdin, env=self.env,
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL))

    def close(self):
        """Problems found in stopping what the setup runs (none here)."""
        return []


class Process:
    """An `lda deliver` under way."""

    def __init__(self, proc):
        self.proc = proc

    def poll(self):
        return self.proc.poll()

    def wait(self, timeout):
        """The exit status; subprocess.TimeoutExpired if still running."""
        return self.proc.wait(timeout=timeout)

    def kill(self):
        """SIGKILL; None, or the exit status when it had exited first."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        return None if self.proc.returncode == -signal.SIGKILL else self.proc.returncode


class LmtpSetup(Setup):
    """The three as RCPTs of one LMTP transaction to `lda lmtp`.  A kill
    ends the whole server, supervisor and workers (a crash, the OOM killer);
    the MTA sees the connection lost and sends the transaction again to the
    restarted server, as Postfix's lmtp(8) does after a deferral."""

    def __init__(self, site, boxes):
        super().__init__(site, TEAM, boxes, site_databases(site), TEAM)
        self.server = None
        self._ensure_server()

    def _ensure_server(self):
        if self.server is not None and self.server.proc.poll() is None:
            return self.server
        # Processes 2: one session at a time, and a second process idle.
        self.server = Server(self.runner, "--processes", "2", session=True)
        # A killed server leaves its socket file, which the new one replaces.
        wait_until(self._greets, 30, "lda lmtp to accept sessions")
        return self.server

    def _greets(self):
        try:
            self.server.client().drop()
            return True
        except OSError:
            return None

    def run(self, path):
        start = time.monotonic()
        session = self.start(path)
        status = session.wait(120)
        return status, session.reason, time.monotonic() - start

    def start(self, path):
        return Session(self._ensure_server(), path.read_bytes())

    def close(self):
        if self.server is None or self.server.proc.poll() is not None:
            return []
        code, err = self.server.stop()
        return [] if code == 0 else [f"lda lmtp stopped with {code}: {err[-2000:]}"]


class Session:
    """One LMTP transaction in a thread.  Its status, as an exit status would
    say it: 0 when every RCPT got its 250 after DATA, 75 on a 4xx reply or a
    lost connection, 1 on anything else."""

    def __init__(self, server, msg):
        self.server = server
        self.status, self.reason, self.lost = None, "", False
        self.thread = threading.Thread(target=self._send, args=(msg,), daemon=True)
        self.thread.start()

    def _send(self, msg):
        try:
            client = self.server.client()
        except OSError as e:
            self.status, self.reason, self.lost = 75, f"connect: {e}", True
            return
        try:
            rcpt, data = client.send(SENDER, TEAM, msg)
            replies = list(rcpt.values()) + data
        except OSError as e:  # the connection went away mid-dialogue
            replies = [f"lost: {e}"]
        finally:
            client.drop()
        bad = [r for r in replies if not r.startswith("250")]
        self.lost = any(r.startswith("lost") for r in bad)
        self.status = 0 if not bad else 75 if self.lost or bad[0].startswith("4") else 1
        self.reason = bad[0] if bad else ""

    def poll(self):
        return None if self.thread.is_alive() else self.status

    def wait(self, timeout):
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise subprocess.TimeoutExpired("lda lmtp session", timeout)
        return self.status

    def kill(self):
        """Kill the server; None, or the status when the transaction had
        been answered first."""
        self.server.kill()
        self.thread.join(60)
        return None if self.lost else self.status


def user_setup(lda):
    """Per-user mode: the invoking user's ~/Maildir, state under ~/.local."""
    return Setup(lda, ["alice@example.org"], [lda.maildir], [lda.state / "lda.sqlite"],
                 ["alice@example.org"])


TEAM = [f"{name}@example.org" for name in ("alice", "bob", "carol")]


def site_databases(site):
    """A managed site's SQLite files: its one mailbox database, the directory."""
    return [site.db(), site.state / "directory.sqlite"]


def site_setup(site):
    """Managed mode: an alias fanning out to three mailboxes of one database."""
    boxes = [site.create(address) for address in TEAM]
    site.aliases.write_text("team: alice, bob, carol\n")
    return Setup(site, ["team@example.org"], boxes, site_databases(site),
                 ["team@example.org"] * 3)


def recipients_setup(site):
    """Managed mode: the three as envelope recipients, a copy each with its
    own Delivered-To, delivered together (one batch)."""
    boxes = [site.create(address) for address in TEAM]
    return Setup(site, TEAM, boxes, site_databases(site), TEAM)


def lmtp_setup(site):
    """Managed mode through `lda lmtp`: the three as RCPTs of one transaction."""
    return LmtpSetup(site, [site.create(address) for address in TEAM])


SETUPS = {"user": user_setup, "site": site_setup, "recipients": recipients_setup,
          "lmtp": lmtp_setup}


def scratch_setup(mode, root):
    """A second environment of the same mode, for the timing runs, so the
    real one starts empty and the first kills hit a fresh state."""
    root.mkdir()
    if mode != "user":
        return SETUPS[mode](Site(root))
    home = root / "home"
    home.mkdir()
    lda = Lda(clean_env(home))
    lda.home, lda.maildir = home, home / "Maildir"
    lda.state = home / ".local" / "state" / "lda"
    return user_setup(lda)


# -- messages --------------------------------------------------------------

class Corpus:
    """Messages with unique headers; big bodies are slices of one random
    base64 blob, so a 5 MB message costs a slice, not 5 MB of randomness."""

    def __init__(self, rng, big, tag):
        self.rng, self.big, self.tag = rng, big, tag
        self.blob = base64.encodebytes(rng.randbytes(4 * MB + MB // 2)) if big else None

    def make(self, i):
        rng = self.rng
        if self.big:
            size = rng.randint(1 * MB, 5 * MB)
            start = rng.randrange(len(self.blob) - size)
            body = self.blob[start:start + size].rstrip(b"\n") + b"\n"
        else:
            body = b"%d %s\n" % (i, rng.randbytes(8).hex().encode()) * rng.randint(1, 400)
        # One in six has no Message-ID: DeliveredTo keys it by a digest.
        message_id = None if i % 6 == 5 else f"<crash-{self.tag}-{i}@example.org>"
        date = None if i % 7 == 3 else "Tue, 24 Nov 2026 10:00:00 +0000"
        return message(message_id=message_id, date=date,
                       subject=f"crash {self.tag} {i}", body=body)


def digest(data):
    return hashlib.blake2b(data, digest_size=20).digest()


def file_digest(path):
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while chunk := f.read(MB):
            h.update(chunk)
    return h.digest()


# -- looking at the store --------------------------------------------------

class Store:
    """Reads the target Maildirs and SQLite files; a file's digest is kept by
    inode (lda hard-links one copy into every mailbox of a fan-out)."""

    def __init__(self, setup, scratch):
        self.setup = setup
        self.scratch = scratch  # where the SQLite files are copied to be read
        self.expected = {}  # digest of prefix+message -> (message number, prefix)
        self.digests = {}   # (dev, ino, size) -> digest

    def expect(self, number, msg):
        for prefix in self.setup.prefixes:
            self.expected[digest(prefix + msg)] = number, prefix

    def scan(self):
        """[(Counter of message numbers, [unknown files])] per target; a
        copy with another target's prefix is unknown."""
        result = []
        for box, prefix in zip(self.setup.targets, self.setup.prefixes):
            counts, unknown = Counter(), []
            for sub in ("new", "cur"):
                folder = box / sub
                if not folder.is_dir():
                    continue
                for entry in os.scandir(folder):
                    st = entry.stat(follow_symlinks=False)
                    key = (st.st_dev, st.st_ino, st.st_size)
                    if key not in self.digests:
                        self.digests[key] = file_digest(entry.path)
                    number, its_prefix = self.expected.get(self.digests[key], (None, None))
                    if number is None or its_prefix != prefix:
                        unknown.append(f"{sub}/{entry.name} ({st.st_size} bytes)")
                    else:
                        counts[number] += 1
            result.append((counts, unknown))
        return result

    def tmp_names(self):
        return {(box, name) for box in self.setup.targets
                for name in _listdir(box / "tmp")}

    def copy(self, path):
        """A copy of a SQLite file and its WAL, so that reading it leaves the
        original as the kill left it: opening it here would recover the WAL
        and, on close, checkpoint it, and lda would never meet that state."""
        self.scratch.mkdir(exist_ok=True)
        for old in self.scratch.iterdir():
            old.unlink()
        for suffix in ("", "-wal"):
            source = path.with_name(path.name + suffix)
            if source.exists():
                shutil.copyfile(source, self.scratch / (path.name + suffix))
        return self.scratch / path.name

    def rows(self):
        """Every DeliveredTo row, as a set of tuples (empty before the first)."""
        path = self.setup.dbs[0]
        if not path.exists():
            return set()
        conn = sqlite3.connect(self.copy(path), timeout=30)
        try:
            return set(conn.execute(
                "SELECT mailbox, message_id, submit_time, state, location "
                "FROM delivered_to"))
        except sqlite3.OperationalError:  # killed before the schema was made
            return set()
        finally:
            conn.close()

    def sqlite_problems(self):
        problems = []
        for path in self.setup.dbs:
            if path.exists():
                problems += [p.replace(str(self.scratch), str(path.parent))
                             for p in sqlite_check(self.copy(path))]
        return problems


def sqlite_check(path):
    """integrity_check and foreign_key_check findings for one SQLite file."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        integrity = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        foreign = list(conn.execute("PRAGMA foreign_key_check"))
    except sqlite3.DatabaseError as e:
        return [f"{path}: {e}"]
    finally:
        conn.close()
    problems = [] if integrity == ["ok"] else [f"{path}: integrity_check {integrity[:5]}"]
    return problems + ([f"{path}: foreign_key_check {foreign[:5]}"] if foreign else [])


def _listdir(path):
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


# -- the driver ------------------------------------------------------------

class CrashStats:
    """Figures for one or more crash runs."""

    def __init__(self):
        self.messages = self.attempts = self.kills = self.reruns = self.tempfails = 0
        self.windows = Counter()
        self.tmp_left = 0
        self.baseline = []
        self.findings = []

    def add(self, other):
        self.messages += other.messages
        self.attempts += other.attempts
        self.kills += other.kills
        self.reruns += other.reruns
        self.tempfails += other.tempfails
        self.windows.update(other.windows)
        self.tmp_left += other.tmp_left
        self.baseline += other.baseline
        self.findings += other.findings

    def before_after_new(self):
        """Kills that landed before the file was in new/, and after."""
        after = sum(n for w, n in self.windows.items()
                    if w in AFTER_NEW and w != "exited-before-kill")
        return self.kills - after, after

    def summary(self):
        before, after = self.before_after_new()
        windows = ", ".join(f"{w}={self.windows[w]}" for w in WINDOWS if self.windows[w])
        base = (f"{statistics.median(self.baseline) * 1000:.0f} ms"
                if self.baseline else "-")
        return (f"{self.messages} messages, {self.attempts} attempts, {self.kills} "
                f"SIGKILLs ({before} before the file reached new/, {after} after; "
                f"{windows}), {self.reruns} re-runs, "
                f"{self.tempfails} of them 75, {self.tmp_left} files left in tmp/, "
                f"normal delivery {base}, {len(self.findings)} findings")


def measure(setup, corpus, workdir, runs=BASELINE_RUNS):
    """Median wall time of a delivery that nobody kills, start to end,
    after one that creates the Maildir and the database (and warms caches)."""
    times = []
    for i in range(-1, runs):
        path = workdir / f"baseline-{i}.eml"
        path.write_bytes(corpus.make(10_000 + i))
        status, reason, seconds = setup.run(path)
        assert status == 0, reason
        if i >= 0:
            times.append(seconds)
        path.unlink()
    return statistics.median(times)


def attempt_with_kill(setup, path, delay, after_staging=False):
    """Start a delivery and SIGKILL it after `delay` seconds, counted with
    after_staging from the moment a new file shows in the staging tmp/;
    returns the exit status if it finished first, else None."""
    staged_before = set(_listdir(setup.staging))
    attempt = setup.start(path)
    try:
        while after_staging and attempt.poll() is None:
            if set(_listdir(setup.staging)) - staged_before:
                break
            time.sleep(0.0002)
        return attempt.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        pass
    # It may have ended between the timeout and the signal: kill() says.
    return attempt.kill()


def classify(number, before, after, exited):
    """The window a kill landed in, from what changed in the store."""
    if exited is not None:
        return "exited-before-kill"
    linked = [counts[number] for counts, _ in after["scan"]]
    new_rows = after["rows"] - before["rows"]
    if new_rows and all(row[3] == "delivered" for row in new_rows):
        return "committed"
    if any(row[3] == "pending" for row in new_rows):
        if all(linked):
            return "linked-rows-pending"
        return "linking" if any(linked) else "pending-before-link"
    if after["tmp"] - before["tmp"]:
        return "staging-in-tmp"
    return "nothing-yet"


def snapshot(store):
    return {"scan": store.scan(), "rows": store.rows(), "tmp": store.tmp_names()}


def crash_run(setup, scratch, workdir, kills, big, seed, tag):
    """Deliver messages through `setup`, killing attempts until `kills`
    kills have been made; returns CrashStats with any findings."""
    rng = random.Random(seed)
    stats = CrashStats()
    corpus = Corpus(rng, big, tag)
    duration = measure(scratch, corpus, workdir)
    stats.baseline.append(duration)
    store = Store(setup, workdir / "db-copy")
    number = 0
    while stats.kills < kills:
        msg = corpus.make(number)
        path = workdir / "message.eml"
        path.write_bytes(msg)
        store.expect(number, msg)
        stats.messages += 1
        delivered = False
        for _ in range(rng.randint(1, MAX_KILLS_PER_MESSAGE)):
            before = snapshot(store)
            if rng.random() < AFTER_STAGING:
                exited = attempt_with_kill(setup, path, rng.uniform(0, STAGED_SPREAD), True)
            else:
                exited = attempt_with_kill(setup, path,
                                           rng.uniform(0, DELAY_SPREAD * duration))
            after = snapshot(store)
            stats.attempts += 1
            stats.kills += exited is None
            stats.windows[classify(number, before, after, exited)] += 1
            if exited is not None:
                if exited not in (0, 75):
                    stats.findings.append(f"seed {seed} message {number}: an attempt "
                                          f"exited {exited} before the kill")
                delivered = exited == 0
                break
        if not delivered:
            rerun_until_delivered(setup, path, stats, seed, number)
        check_store(store, number, stats, seed)
        number += 1
    stats.tmp_left = len(store.tmp_names())
    return stats


def rerun_until_delivered(setup, path, stats, seed, number):
    """What the MTA does after a deferral: deliver again until 0."""
    for _ in range(MAX_RERUNS):
        status, reason, _ = setup.run(path)
        stats.reruns += 1
        if status == 0:
            return
        if status != 75:
            stats.findings.append(f"seed {seed} message {number}: re-run after a kill "
                                  f"exited {status}: {reason}")
            return
        stats.tempfails += 1
        time.sleep(0.05)
    stats.findings.append(f"seed {seed} message {number}: still 75 after "
                          f"{MAX_RERUNS} re-runs")


def check_store(store, number, stats, seed):
    """Messages 0..number are each in every target exactly once, whole."""
    for box, (counts, unknown) in zip(store.setup.targets, store.scan()):
        for bad in unknown:
            stats.findings.append(f"seed {seed} after message {number}: {box}/{bad} "
                                  "is not a whole message (partial or foreign)")
        for n in range(number + 1):
            if counts[n] != 1:
                stats.findings.append(f"seed {seed}: message {n} is in {box} "
                                      f"{counts[n]} times after message {number}")
    for problem in store.sqlite_problems():
        stats.findings.append(f"seed {seed} after message {number}: {problem}")


def run_case(mode, big, kills, root, setup=None, seed=None):
    """One crash case in a fresh directory: the same driver for the tests
    (with the fixtures' setup) and for bench/soak.py."""
    if seed is None:
        seed = int(os.environ.get("LDA_CRASH_SEED") or random.randrange(1 << 32))
    if setup is None:
        setup = scratch_setup(mode, root / "store")
    scratch = scratch_setup(mode, root / "timing")
    workdir = root / "work"
    workdir.mkdir()
    tag = f"{mode}-{'big' if big else 'small'}-{seed}"
    try:
        stats = crash_run(setup, scratch, workdir, kills, big, seed, tag)
    finally:
        problems = scratch.close() + setup.close()
    stats.findings += problems
    return stats


# -- the tests -------------------------------------------------------------

# A kill of `lda lmtp` costs a server start (~0.5 s): fewer of them.
CASES = [("user", False, 60), ("user", True, 60), ("site", False, 60), ("site", True, 60),
         ("recipients", False, 60), ("lmtp", False, 30)]


@pytest.mark.parametrize("mode, big, kills", CASES,
                         ids=["per-user-small", "per-user-1-5MB", "alias-to-3-small",
                              "alias-to-3-1-5MB", "3-recipients-small", "lmtp-3-rcpts-small"])
def test_sigkill_anywhere_then_retry_loses_nothing_and_doubles_nothing(
        request, tmp_path, capsys, mode, big, kills):
    fixture = request.getfixturevalue("user" if mode == "user" else "site")
    setup = SETUPS[mode](fixture)
    stats = run_case(mode, big, kills, tmp_path, setup=setup)
    with capsys.disabled():
        print(f"\n  crash {request.node.callspec.id}: {stats.summary()}")
    assert stats.findings == [], "\n".join(stats.findings[:20])
    assert stats.kills >= kills
    # The kills spread over the whole delivery: some before anything was
    # written, some after the process had finished.
    assert stats.windows["nothing-yet"] > 0


def test_classify_names_each_window():
    """The classification the figures rest on, on hand-made snapshots."""
    empty = {"scan": [(Counter(), [])], "rows": set(), "tmp": set()}
    pending = {("a", "m", "", "pending", "x")}
    delivered = {("a", "m", "", "delivered", "x")}
    linked = [(Counter({0: 1}), [])]
    assert classify(0, empty, empty, None) == "nothing-yet"
    assert classify(0, empty, dict(empty, tmp={"t"}), None) == "staging-in-tmp"
    assert classify(0, empty, dict(empty, rows=pending), None) == "pending-before-link"
    assert classify(0, empty, dict(empty, rows=pending, scan=linked),
                    None) == "linked-rows-pending"
    assert classify(0, empty, dict(empty, rows=delivered, scan=linked),
                    None) == "committed"
    assert classify(0, empty, empty, 0) == "exited-before-kill"
    two = [(Counter({0: 1}), []), (Counter(), [])]
    assert classify(0, dict(empty, scan=two), dict(empty, rows=pending, scan=two),
                    None) == "linking"

"""Races: many `lda deliver` processes at once, and deliveries racing with
`lda dedup cleanup`, `lda quota recalc` and `lda mailbox move`.

Whatever runs alongside, each message is in each mailbox exactly once, no
delivery exits with anything but 0 (or 75 while a move holds the mailbox,
retried as an MTA retries), and no stderr mentions a locked database or a
traceback.  bench/soak.py runs the same drivers with bigger counts.
"""

import itertools
import json
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import LDA, message

SENDER = "sender@example.org"
TEAM = ("alice@example.org", "bob@example.org", "carol@example.org")
BAD_STDERR = ("database is locked", "Traceback", "busy")

# One MTA queue runner: delivers its jobs in order, retrying a 75 after a
# short pause as a deferred queue would, and reports every attempt.
WORKER = r"""
import json, random, subprocess, sys, time
lda, jobs_path, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
report = []
for job in json.load(open(jobs_path)):
    attempts = []
    for _ in range(job.get("retries", 400)):
        with open(job["file"], "rb") as stdin:
            done = subprocess.run([lda, "deliver", "-f", job["sender"], *job["to"]],
                                  stdin=stdin, capture_output=True)
        err = done.stderr.decode("utf-8", "replace")
        # lda writes its one-line reason first (Postfix reads it from there)
        reason = (err.strip().splitlines() or [""])[0]
        attempts.append([done.returncode, reason, err[-2000:] if any(
            bad in err for bad in ("database is locked", "Traceback")) else ""])
        if done.returncode != 75:
            break
        time.sleep(rng.uniform(0.05, 0.25))
    report.append({"id": job["id"], "attempts": attempts})
print(json.dumps(report))
"""


class Race:
    """Figures and findings of one race run."""

    def __init__(self, name):
        self.name = name
        self.deliveries = self.attempts = self.tempfails = self.admin_runs = 0
        self.admin_outputs = []
        self.findings = []

    def summary(self):
        return (f"{self.name}: {self.deliveries} deliveries, {self.attempts} attempts "
                f"({self.tempfails} were 75), {self.admin_runs} admin runs alongside, "
                f"{len(self.findings)} findings")


# -- messages and mailboxes ------------------------------------------------

def make_messages(workdir, tag, count, body_lines=20):
    """{id: (path, bytes)} of distinct small messages written to files."""
    workdir.mkdir(exist_ok=True)
    found = {}
    for i in range(count):
        mid = f"{tag}-{i}"
        body = b"".join(b"%s line %d\n" % (mid.encode(), n) for n in range(body_lines))
        msg = message(message_id=f"<{mid}@example.org>", subject=mid, body=body)
        path = workdir / f"{mid}.eml"
        path.write_bytes(msg)
        found[mid] = (path, msg)
    return found


def mailbox_counts(maildir, messages, prefix_for):
    """(Counter of message ids found, [files that match no message])."""
    expected = {prefix_for + msg: mid for mid, (_, msg) in messages.items()}
    counts, unknown = Counter(), []
    for sub in ("new", "cur"):
        folder = Path(maildir) / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            mid = expected.get(path.read_bytes())
            if mid is None:
                unknown.append(path.name)
            else:
                counts[mid] += 1
    return counts, unknown


def prefix(recipient):
    return f"Return-Path: <{SENDER}>\nDelivered-To: {recipient}\n".encode()


def check_once(race, maildir, messages, recipient, expected=None):
    """Every message of `messages` is in maildir expected[id] times (1 by
    default), and every file there is one of them, whole."""
    counts, unknown = mailbox_counts(maildir, messages, prefix(recipient))
    for name in unknown:
        race.findings.append(f"{maildir}: {name} matches no message (partial?)")
    for mid in messages:
        want = (expected or {}).get(mid, 1)
        if counts[mid] != want:
            race.findings.append(f"{maildir}: {mid} is there {counts[mid]} times, "
                                 f"expected {want}")


def check_sqlite(race, *paths):
    for path in paths:
        conn = sqlite3.connect(path, timeout=60)
        try:
            integrity = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            foreign = list(conn.execute("PRAGMA foreign_key_check"))
        finally:
            conn.close()
        if integrity != ["ok"] or foreign:
            race.findings.append(f"{path}: integrity {integrity[:3]}, foreign keys "
                                 f"{foreign[:3]}")


# -- running queue runners -------------------------------------------------

def start_workers(env, workdir, jobs_per_worker, seed):
    procs = []
    for n, jobs in enumerate(jobs_per_worker):
        path = workdir / f"jobs-{n}.json"
        path.write_text(json.dumps(jobs))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, LDA, str(path), str(seed + n)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    return procs


def collect_workers(race, procs, allow_tempfail=None, timeout=900):
    """Read every report; a final status other than 0, a 75 not allowed by
    `allow_tempfail(reason line)`, or a bad stderr is a finding."""
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            race.findings.append(f"worker died ({proc.returncode}): {err.decode()[-800:]}")
            continue
        for job in json.loads(out):
            race.deliveries += 1
            race.attempts += len(job["attempts"])
            for rc, reason, bad in job["attempts"]:
                if rc == 75:
                    race.tempfails += 1
                    if allow_tempfail is None or not allow_tempfail(reason):
                        race.findings.append(f"{job['id']}: 75 ({reason})")
                elif rc != 0:
                    race.findings.append(f"{job['id']}: exit {rc} ({reason})")
                if bad:
                    race.findings.append(f"{job['id']}: stderr says {bad!r}")
            if job["attempts"][-1][0] != 0:
                race.findings.append(f"{job['id']}: never delivered "
                                     f"({len(job['attempts'])} attempts)")


def job(mid, path, recipients):
    return {"id": mid, "file": str(path), "sender": SENDER, "to": list(recipients)}


def deal(jobs, workers, rng):
    """Shuffle the jobs and deal them out to `workers` queue runners."""
    jobs = list(jobs)
    rng.shuffle(jobs)
    return [jobs[n::workers] for n in range(workers)]


def loop_admin(site, argv, stop, race, before=None, ok=(0,)):
    """Run an admin command over and over until `stop` is set."""
    while not stop.is_set():
        if before is not None:
            before()
        done = site.run(*argv)
        race.admin_runs += 1
        race.admin_outputs.append(done.stdout)
        err = done.stderr.decode("utf-8", "replace")
        if done.returncode not in ok or any(bad in err for bad in BAD_STDERR[:2]):
            race.findings.append(f"lda {' '.join(argv)}: exit {done.returncode}: "
                                 f"{err[-500:]}")


def run_alongside(site, argv, procs, race, before=None, ok=(0,)):
    stop = threading.Event()
    thread = threading.Thread(target=loop_admin, args=(site, argv, stop, race, before, ok))
    thread.start()
    try:
        for proc in procs:
            proc.wait(timeout=900)
    finally:
        stop.set()
        thread.join()


# -- 50 processes, one message, three recipients --------------------------

def fifty_at_once(env, argv, msg, processes):
    """Start `processes` deliveries of one message together; [(rc, stderr)]."""
    procs = [subprocess.Popen([LDA, *argv], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=env) for _ in range(processes)]
    results = []
    for proc in procs:
        _, err = proc.communicate(msg, timeout=300)
        results.append((proc.returncode, err.decode("utf-8", "replace")))
    return results


def same_message_race(site, workdir, rounds, processes):
    """`processes` deliveries of the same message to the same three
    recipients at once, `rounds` times: one copy each, all exit 0."""
    race = Race(f"{processes} processes x same message x 3 recipients")
    boxes = {address: site.maildir(address) for address in TEAM}
    messages = make_messages(workdir, "same", rounds)
    for mid, (_, msg) in messages.items():
        for rc, err in fifty_at_once(site.env, ["deliver", "-f", SENDER, *TEAM], msg,
                                     processes):
            race.attempts += 1
            if rc != 0 or any(bad in err for bad in BAD_STDERR):
                race.findings.append(f"{mid}: exit {rc}: {err.strip()[-400:]}")
        race.deliveries += 1
    for address, box in boxes.items():
        check_once(race, box, messages, address)
    check_sqlite(race, site.db(), site.state / "directory.sqlite")
    return race


def fresh_user_race(user, workdir, processes):
    """Per-user mode with no Maildir and no database yet: the processes race
    to create both (WAL switch and schema included)."""
    race = Race(f"{processes} processes x fresh per-user state")
    messages = make_messages(workdir, "fresh", 1)
    [(mid, (_, msg))] = messages.items()
    recipients = ["alice@example.org", "alice+x@example.org", "ALICE@example.org"]
    for rc, err in fifty_at_once(user.env, ["deliver", "-f", SENDER, *recipients], msg,
                                 processes):
        race.attempts += 1
        if rc != 0 or any(bad in err for bad in BAD_STDERR):
            race.findings.append(f"{mid}: exit {rc}: {err.strip()[-400:]}")
    race.deliveries = 1
    files = [p for sub in ("new", "cur") for p in (user.maildir / sub).iterdir()]
    if len(files) != 1 or not files[0].read_bytes().endswith(msg):
        race.findings.append(f"per-user Maildir holds {len(files)} files, expected 1")
    check_sqlite(race, user.state / "lda.sqlite")
    return race


def test_fifty_processes_same_message_same_three_recipients(site, tmp_path, capsys):
    for address in TEAM:
        site.create(address)
    race = same_message_race(site, tmp_path / "msgs", rounds=3, processes=50)
    with capsys.disabled():
        print(f"\n  race {race.summary()}")
    assert race.findings == [], "\n".join(race.findings[:20])


def test_fifty_processes_create_the_per_user_state_together(user, tmp_path, capsys):
    race = fresh_user_race(user, tmp_path / "msgs", processes=50)
    with capsys.disabled():
        print(f"\n  race {race.summary()}")
    assert race.findings == [], "\n".join(race.findings[:20])


# -- deliveries racing with `lda dedup cleanup` ----------------------------

OLD = 2 * 3600  # rows this old are past expiration_hours = 1


def age_rows(db_path, message_ids, seconds):
    conn = sqlite3.connect(db_path, timeout=60)
    try:
        with conn:
            conn.executemany("UPDATE delivered_to SET delivered_at = delivered_at - ? "
                             "WHERE message_id = ?",
                             [(seconds, f"{mid}@example.org") for mid in message_ids])
    finally:
        conn.close()


_fillers = itertools.count()


def add_expired_rows(db_path, count):
    """Rows of other mailboxes, past the expiry, so every cleanup has work."""
    now = time.time()
    start = next(_fillers) * 100_000
    conn = sqlite3.connect(db_path, timeout=60, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT OR IGNORE INTO delivered_to (mailbox, message_id, submit_time, "
            "delivered_at, state) VALUES (?, ?, '', ?, 'delivered')",
            [(f"gone{i % 50}@example.org", f"filler{i}@x", now - OLD - i % 600)
             for i in range(start, start + count)])
        conn.execute("COMMIT")
    finally:
        conn.close()


def cleanup_race(make_site, workdir, distinct, repeated, expired, workers, seed):
    """Distinct, repeated and expired messages delivered while `lda dedup
    cleanup` runs in a loop over rows that keep expiring.  An expired
    message is delivered anew exactly once; the rest exactly once."""
    race = Race("deliveries x lda dedup cleanup")
    rng = random.Random(seed)
    site = make_site(expiration_hours=1, cleanup_interval_seconds=1)
    address = "alice@example.org"
    box = site.create(address)
    once = make_messages(workdir, "distinct", distinct)
    again = make_messages(workdir, "repeated", repeated)
    old = make_messages(workdir, "expired", expired)
    for mid, (path, msg) in old.items():  # delivered two hours ago
        site.deliver(msg, address, check=0)
    age_rows(site.db(), old, OLD)
    add_expired_rows(site.db(), 3000)
    jobs = ([job(m, p, [address]) for m, (p, _) in once.items()]
            + [job(m, p, [address]) for m, (p, _) in again.items() for _ in range(3)]
            + [job(m, p, [address]) for m, (p, _) in old.items() for _ in range(2)])
    procs = start_workers(site.env, workdir, deal(jobs, workers, rng), seed)
    run_alongside(site, ["dedup", "cleanup", "--json"], procs, race,
                  before=lambda: add_expired_rows(site.db(), 300))
    collect_workers(race, procs)
    check_once(race, box, {**once, **again, **old}, address,
               expected={m: 2 for m in old})
    check_sqlite(race, site.db())
    race.deleted = sum(json.loads(out)["deleted"] for out in race.admin_outputs if out)
    if not race.deleted:
        race.findings.append("lda dedup cleanup deleted nothing while deliveries ran")
    return race


def test_deliveries_racing_with_dedup_cleanup(make_site, tmp_path, capsys):
    race = cleanup_race(make_site, tmp_path / "msgs", distinct=50, repeated=15,
                        expired=15, workers=6, seed=random.randrange(1 << 30))
    with capsys.disabled():
        print(f"\n  race {race.summary()}; {race.deleted} expired rows deleted meanwhile")
    assert race.findings == [], "\n".join(race.findings[:20])
    assert race.admin_runs >= 3


# -- deliveries racing with `lda quota recalc` -----------------------------

def maildirsize_usage(maildir):
    """(storage, messages) summed from a maildirsize file."""
    lines = (Path(maildir) / "maildirsize").read_text().splitlines()[1:]
    storage = messages = 0
    for line in lines:
        size, count = line.split()
        storage, messages = storage + int(size), messages + int(count)
    return storage, messages


def maildir_usage(maildir):
    files = [p for sub in ("new", "cur") for p in (Path(maildir) / sub).iterdir()]
    return sum(p.stat().st_size for p in files), len(files)


RECALC_LOOP = r"""
import os, select, sys
from lda.config import load_config
from lda.admin.mailboxes import open_directory
from lda.admin.quota import recalc
config = load_config(None)
directory = open_directory(config)
def line():
    data = b""
    while not data.endswith(b"\n") and (byte := os.read(0, 1)):
        data += byte
    return data.strip()
# "go": recount back to back until "stop", then print how many ran.
while line() == b"go":
    runs = 0
    while not select.select([0], [], [], 0)[0]:
        recalc(directory, config, sys.argv[1])
        runs += 1
    line()
    print(runs, flush=True)
"""


class RecalcLoop:
    """The library call behind `lda quota recalc`, run back to back in a
    child process between go() and stop(): the command's own start-up
    (~50 times the recount) would leave few recounts overlapping a delivery."""

    def __init__(self, env, address):
        self.proc = subprocess.Popen([sys.executable, "-c", RECALC_LOOP, address], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def go(self):
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def stop(self):
        """Returns the number of recounts; none is running after this."""
        self.proc.stdin.write(b"stop\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"recalc loop died: {self.proc.wait()}")
        return int(line)

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def quota_race(site, workdir, distinct, repeated, workers, seed):
    """Deliveries append to maildirsize while `lda quota recalc` rewrites it:
    at the end its figures must equal the Maildir's, before and after one
    more recalc."""
    race = Race("deliveries x lda quota recalc")
    rng = random.Random(seed)
    address = "alice@example.org"
    box = site.create(address, "--quota-storage", "1G", "--quota-messages", "100000")
    once = make_messages(workdir, "q-distinct", distinct)
    again = make_messages(workdir, "q-repeated", repeated)
    jobs = ([job(m, p, [address]) for m, (p, _) in once.items()]
            + [job(m, p, [address]) for m, (p, _) in again.items() for _ in range(3)])
    procs = start_workers(site.env, workdir, deal(jobs, workers, rng), seed)
    tight = RecalcLoop(site.env, address)
    tight.go()
    run_alongside(site, ["quota", "recalc", address, "--json"], procs, race)
    race.admin_runs += tight.stop()
    tight.close()
    collect_workers(race, procs)
    check_once(race, box, {**once, **again}, address)
    actual = maildir_usage(box)
    recorded = maildirsize_usage(box)
    site.run("quota", "recalc", address, "--json", check=0)
    recounted = maildirsize_usage(box)
    if recorded != actual:
        race.findings.append(f"maildirsize says {recorded} (bytes, messages) at the end, "
                             f"the Maildir holds {actual}; lda quota recalc then "
                             f"wrote {recounted}")
    elif recounted != actual:
        race.findings.append(f"lda quota recalc wrote {recounted}, Maildir {actual}")
    return race


def sample_overcounts(box, stop, seen):
    """Read maildirsize, then count new/ and cur/, until `stop`: files are
    only ever added here, so a file that says more messages than the Maildir
    holds a moment later is over-counting."""
    while not stop.is_set():
        try:
            recorded = maildirsize_usage(box)
        except (OSError, ValueError):  # absent yet, or an append half-read
            continue
        actual = maildir_usage(box)
        seen["samples"] += 1
        if recorded[1] > actual[1]:
            seen["over"] += 1
            seen["example"] = seen["example"] or (recorded, actual)


def quota_sample_race(site, workdir, rounds, per_round, seed):
    """Deliveries in bursts of `per_round` processes while the recount runs
    back to back; maildirsize is sampled all along, then compared with the
    Maildir once everything stopped."""
    race = Race("deliveries x quota recount, maildirsize sampled")
    rng = random.Random(seed)
    address = "alice@example.org"
    box = site.create(address, "--quota-storage", "1G", "--quota-messages", "100000")
    messages = make_messages(workdir, "sampled", rounds * per_round)
    ids = list(messages)
    seen = {"samples": 0, "over": 0, "example": None}
    stop = threading.Event()
    sampler = threading.Thread(target=sample_overcounts, args=(box, stop, seen))
    loop = RecalcLoop(site.env, address)
    loop.go()
    sampler.start()
    try:
        for n in range(rounds):
            batch = ids[n * per_round:(n + 1) * per_round]
            batch += rng.sample(ids[:(n + 1) * per_round], 2)  # resends
            procs = []
            for mid in batch:
                with open(messages[mid][0], "rb") as stdin:
                    procs.append(subprocess.Popen(
                        [LDA, "deliver", "-f", SENDER, address], stdin=stdin,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=site.env))
            for mid, proc in zip(batch, procs):
                _, err = proc.communicate(timeout=120)
                race.deliveries += 1
                race.attempts += 1
                if proc.returncode != 0:
                    race.findings.append(f"{mid}: exit {proc.returncode}: {err[-300:]}")
    finally:
        race.admin_runs += loop.stop()
        loop.close()
        stop.set()
        sampler.join()
    if seen["over"]:
        (storage, count), (real_storage, real_count) = seen["example"]
        race.findings.append(
            f"maildirsize counted more messages than the Maildir held in {seen['over']} "
            f"of {seen['samples']} samples, e.g. {count} messages / {storage} bytes "
            f"against {real_count} / {real_storage}: a recount that includes a file "
            "just linked into new/, before its delivery appended its own line")
    recorded, actual = maildirsize_usage(box), maildir_usage(box)
    if recorded != actual:
        race.findings.append(f"at the end maildirsize says {recorded}, the Maildir "
                             f"holds {actual}")
    check_once(race, box, messages, address)
    return race


def test_maildirsize_never_counts_more_than_the_maildir(site, tmp_path, capsys):
    race = quota_sample_race(site, tmp_path / "msgs", rounds=15, per_round=8,
                             seed=random.randrange(1 << 30))
    with capsys.disabled():
        print(f"\n  race {race.summary()}")
    assert race.findings == [], "\n".join(race.findings[:20])


def test_deliveries_racing_with_quota_recalc(site, tmp_path, capsys):
    race = quota_race(site, tmp_path / "msgs", distinct=60, repeated=15, workers=6,
                      seed=random.randrange(1 << 30))
    with capsys.disabled():
        print(f"\n  race {race.summary()}")
    assert race.findings == [], "\n".join(race.findings[:20])
    assert race.admin_runs >= 3


# -- deliveries racing with `lda mailbox move` -----------------------------

def populate(site, address, count):
    """Messages already in the mailbox, so each move has files to carry."""
    messages = make_messages(site.root / "populate", "old", count, body_lines=5)
    for i, (path, msg) in enumerate(messages.values()):
        data = prefix(address) + msg
        name = f"1700000000.M{i}P1Q{i}R{i:016x}.test,S={len(data)}:2,S"
        (site.maildir(address) / "cur" / name).write_bytes(data)
    return messages


def move_race(site, workdir, processes, messages_per_process, copies, moves, seed):
    """`processes` queue runners deliver messages (each sent `copies` times
    by different runners) while the mailbox moves between two databases
    `moves` times.  75 is allowed only with the 4.2.1 "being moved" reason."""
    race = Race(f"{processes} processes x lda mailbox move")
    rng = random.Random(seed)
    address = "alice@example.org"
    site.create(address)
    site.run("db", "create", "db2", check=0)
    before = populate(site, address, 300)
    count = processes * messages_per_process // copies
    sent = make_messages(workdir, "moving", count)
    jobs = [job(m, p, [address]) for m, (p, _) in sent.items() for _ in range(copies)]
    procs = start_workers(site.env, workdir, deal(jobs, processes, rng), seed)
    targets = ["db2", "default"] * (moves // 2) + ["db2"] * (moves % 2)
    for target in targets:
        time.sleep(rng.uniform(0, 0.5))
        done = site.run("mailbox", "move", address, "--to", target)
        race.admin_runs += 1
        if done.returncode != 0:
            race.findings.append(f"move to {target}: exit {done.returncode}: "
                                 f"{done.stderr.decode()[-500:]}")
    collect_workers(race, procs, allow_tempfail=lambda reason: reason.startswith("4.2.1"))
    box = site.maildir(address)
    check_once(race, box, {**sent, **before}, address)
    for name in ("default", "db2"):
        check_sqlite(race, site.db(name))
    other = "default" if "/db2/" in str(box) else "db2"
    if (site.state / "databases" / other / "example.org" / "alice").exists():
        race.findings.append(f"the Maildir was left behind in {other}")
    return race


@pytest.mark.parametrize("processes, moves", [(50, 6)], ids=["50-processes-6-moves"])
def test_deliveries_racing_with_mailbox_moves(site, tmp_path, capsys, processes, moves):
    race = move_race(site, tmp_path / "msgs", processes=processes, messages_per_process=4,
                     copies=2, moves=moves, seed=random.randrange(1 << 30))
    with capsys.disabled():
        print(f"\n  race {race.summary()}")
    assert race.findings == [], "\n".join(race.findings[:20])


def test_a_database_being_created_elsewhere_is_waited_for(tmp_path):
    """Another process has just made lda.sqlite and holds a lock on it
    before it switches it to WAL: PRAGMA journal_mode answers "locked" at
    once, without busy_timeout, and lda must wait rather than defer (seen
    as a 4.3.0 from Postfix's pipe transport, two recipients at once)."""
    import sqlite3
    import threading

    from lda.store.deliveredto import DB_FILE, DeliveredTo

    creator = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None,
                              check_same_thread=False)
    creator.execute("BEGIN IMMEDIATE")  # still in rollback mode, as a new file is
    creator.execute("CREATE TABLE placeholder (x)")
    release = threading.Timer(0.3, creator.execute, ["ROLLBACK"])
    release.start()
    try:
        db = DeliveredTo(str(tmp_path))
    finally:
        release.join()
        creator.close()
    assert db.conn.execute("PRAGMA user_version").fetchone()[0] > 0
    db.close()

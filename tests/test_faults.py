"""Faults under the store: disk full (Maildir, database), read-only and
unwritable directories, a missing or corrupt database, a file-size limit,
and I/O errors from a filesystem that goes away mid-delivery.

What the MTA must see in every case: exit 75 where a retry can help (never
1, never a signal), a one-line reason as the last stderr line, led by an
RFC 3463 code ("4."), never a traceback there; no partial file in new/;
every message that was acknowledged intact; and after the fault is gone,
the deferred messages delivered exactly once each.

Root only (tmpfs, bind and loop mounts, setpriv); skipped with the reason
otherwise or when a mount fails.
"""

import fcntl
import os
import random
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import LDA, Site, assert_no_traceback, maildir_files, message, write_lda_toml
from test_crash import sqlite_check
from test_races import SENDER, mailbox_counts, prefix

ADDRESS = "alice@example.org"
KB = 1024
REPO = Path(__file__).resolve().parent.parent
EXT4_IOC_SHUTDOWN = 0x8004587D        # _IOR('X', 125, __u32), also XFS_IOC_GOINGDOWN
EXT4_GOING_FLAGS_NOLOGFLUSH = 2       # drop what the journal has not committed


# -- mounts ----------------------------------------------------------------

def require_root():
    if os.geteuid() != 0:
        pytest.skip("needs root: tmpfs, bind and loop mounts")


def mount(*args):
    done = subprocess.run(["mount", *map(str, args)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mount {' '.join(map(str, args))} failed: "
                    f"{done.stderr.decode().strip()}")


def unmount(target):
    if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@contextmanager
def tmpfs(target, size):
    require_root()
    Path(target).mkdir(parents=True, exist_ok=True)
    mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", target)
    try:
        yield Path(target)
    finally:
        unmount(target)


@contextmanager
def read_only(target):
    """target bind-mounted read-only over itself."""
    require_root()
    mount("--bind", target, target)
    try:
        mount("-o", "remount,ro,bind", target)
        yield Path(target)
    finally:
        unmount(target)


def resize(target, size):
    mount("-o", f"remount,size={size}", target)


def fill(directory, name="ballast"):
    """Write zeros into directory/name until the filesystem is full."""
    block = b"\0" * (64 * KB)
    with open(Path(directory) / name, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass


# -- deliveries and what they left ----------------------------------------

class Ledger:
    """Messages sent to one Maildir and what lda answered for each."""

    def __init__(self, maildir, workdir, recipient=ADDRESS):
        self.maildir = Path(maildir)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.recipient = recipient
        self.messages = {}   # id -> (path, bytes)
        self.outcome = {}    # id -> last exit status
        self.findings = []
        self.runs = []         # every CompletedProcess, for assert_no_traceback
        self.tracebacks = []   # failures whose stderr carries a traceback, for reports
        self.reasons = set()   # last stderr lines of failures

    def new_message(self, tag, size):
        mid = f"{tag}-{len(self.messages)}"
        line = b"%s %s\n" % (mid.encode(), b"x" * 70)
        body = line * max(1, size // len(line))
        msg = message(message_id=f"<{mid}@example.org>", subject=mid, body=body)
        path = self.workdir / f"{mid}.eml"
        path.write_bytes(msg)
        self.messages[mid] = (path, msg)
        return mid

    def deliver(self, mid, argv=None, env=None, preexec_fn=None, allowed=(75,)):
        argv = argv or [LDA, "deliver", "-f", SENDER, self.recipient]
        with open(self.messages[mid][0], "rb") as stdin:
            done = subprocess.run(argv, stdin=stdin, capture_output=True, env=env,
                                  preexec_fn=preexec_fn, timeout=120)
        self.runs.append(done)
        self.outcome[mid] = done.returncode
        if done.returncode != 0:
            self.judge_failure(mid, done, allowed)
        return done

    def judge_failure(self, mid, done, allowed=(75,)):
        """A failure as the MTA must see it: 75 and a one-line reason led by
        an RFC 3463 code.  Postfix takes the status from the start of the
        command output (local(8), pipe(8)), so lda writes the reason first;
        the whole output still goes into Postfix's log and DSN text, hence a
        traceback after it is counted too."""
        err = done.stderr.decode("utf-8", "replace")
        lines = err.strip().splitlines() or [""]
        reason = lines[0]
        self.reasons.add(reason[:200])
        if "Traceback" in err:
            frames = re.findall(r'File "[^"]*/(lda/\w+\.py)", line (\d+), in (\w+)', err)
            where = ":".join(frames[-1][:2]) + f" ({frames[-1][2]})" if frames else "?"
            self.tracebacks.append(f"{mid}: raised at {where}: {reason[:200]}")
        if done.returncode not in allowed:
            self.findings.append(f"{mid}: exit {done.returncode}, expected "
                                 f"{' or '.join(map(str, allowed))}; stderr {reason!r}")
        klass = "4." if done.returncode == 75 else "5."  # a temporary or a final answer
        if not reason.startswith(klass) or "Traceback" in reason or len(reason) > 500:
            self.findings.append(f"{mid}: stderr does not start with a one-line "
                                 f"{klass}x.x reason: {reason[:300]!r}")
        return reason

    def counts(self):
        counts, unknown = mailbox_counts(self.maildir, self.messages,
                                         prefix(self.recipient))
        for name in unknown:
            self.findings.append(f"{self.maildir}: {name} is not a whole message")
        return counts

    def check(self, stage):
        """Acknowledged messages once; deferred ones at most once (a deferral
        after the link is legitimate: the retry must see it as a duplicate)."""
        counts = self.counts()
        for mid, rc in self.outcome.items():
            if rc == 0 and counts[mid] != 1:
                self.findings.append(f"{stage}: {mid} exited 0 but is in the Maildir "
                                     f"{counts[mid]} times")
            elif rc != 0 and counts[mid] > 1:
                self.findings.append(f"{stage}: {mid} failed ({rc}) yet is in the "
                                     f"Maildir {counts[mid]} times")
        return counts

    def retry_deferred(self, stage, argv=None, env=None):
        """As the MTA: deliver every deferred message again; each must now
        land exactly once, and the acknowledged ones stay single."""
        deferred = [mid for mid, rc in self.outcome.items() if rc != 0]
        for mid in deferred:
            done = self.deliver(mid, argv=argv, env=env)
            if done.returncode != 0:
                self.findings.append(f"{stage}: retry of {mid} exited {done.returncode}: "
                                     f"{done.stderr.decode()[-300:]}")
        counts = self.counts()
        for mid in self.messages:
            if mid in self.outcome and counts[mid] != 1:
                self.findings.append(f"{stage}: {mid} is in the Maildir {counts[mid]} "
                                     "times after the retries")
        return deferred

    def tmp_files(self):
        tmp = self.maildir / "tmp"
        return sorted(os.listdir(tmp)) if tmp.is_dir() else []


def report(capsys, name, text):
    with capsys.disabled():
        print(f"\n  fault {name}: {text}")


# -- disk full -------------------------------------------------------------

def disk_full_run(home, env, workdir, rng):
    """HOME (Maildir and state) on a tiny tmpfs: deliver until ENOSPC and a
    few more, then grow the filesystem and retry the deferred ones."""
    ledger = Ledger(Path(home) / "Maildir", workdir)
    failures_after_full = 0
    for _ in range(40):
        size = rng.choice([1 * KB, 40 * KB, 150 * KB, 300 * KB])
        mid = ledger.new_message("full", size)
        done = ledger.deliver(mid, env=env)
        failures_after_full += done.returncode != 0
        ledger.check(f"after {mid}")
        if failures_after_full >= 6:
            break
    resize(home, "64m")
    deferred = ledger.retry_deferred("after freeing space", env=env)
    for problem in sqlite_check(Path(home) / ".local/state/lda/lda.sqlite"):
        ledger.findings.append(problem)
    return ledger, deferred


def test_maildir_and_database_on_a_full_disk(user, tmp_path, capsys):
    with tmpfs(user.home, "2m"):
        ledger, deferred = disk_full_run(user.home, user.env, tmp_path / "msgs",
                                         random.Random(os.getpid()))
        tmp_left = ledger.tmp_files()
    report(capsys, "disk full (Maildir + state on a 2 MB tmpfs)",
           f"{len(ledger.outcome)} deliveries, {len(deferred)} deferred with 75 and "
           f"delivered once on retry, reasons {sorted(ledger.reasons)}, "
           f"{len(ledger.tracebacks)} stderr with a traceback, "
           f"{len(tmp_left)} files left in tmp/, {len(ledger.findings)} findings")
    assert deferred, "the filesystem never filled up"
    assert ledger.findings == [], "\n".join(ledger.findings[:20])
    assert_no_traceback(*ledger.runs)


def test_database_on_a_full_disk_with_the_maildir_elsewhere(user, tmp_path, capsys):
    """The Maildir has room, the state directory none: the DeliveredTo row
    cannot be written, so the delivery must not count (75, nothing in new/
    or, if the file got there, a retry that sees it)."""
    state = tmp_path / "state"
    config = write_lda_toml(tmp_path / "lda.toml", {"mode": "user", "state_dir": str(state)})
    argv = [LDA, "deliver", "-c", str(config), "-f", SENDER, ADDRESS]
    ledger = Ledger(user.maildir, tmp_path / "msgs")
    with tmpfs(state, "1m"):
        for _ in range(3):
            assert ledger.deliver(ledger.new_message("before", 2 * KB), argv=argv,
                                  env=user.env).returncode == 0
        conn = sqlite3.connect(state / "lda.sqlite")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        fill(state)
        for _ in range(4):
            ledger.deliver(ledger.new_message("db-full", 2 * KB), argv=argv, env=user.env)
        ledger.check("database full")
        in_new = [m for m, rc in ledger.outcome.items()
                  if rc != 0 and ledger.counts()[m] == 1]
        (state / "ballast").unlink()
        deferred = ledger.retry_deferred("after freeing space", argv=argv, env=user.env)
        problems = sqlite_check(state / "lda.sqlite")
    report(capsys, "database disk full (state on a full tmpfs)",
           f"{len(deferred)} of 4 deferred, {len(in_new)} of those already in new/ "
           f"(duplicate on retry), {len(ledger.tracebacks)} stderr with a traceback, "
           f"{len(ledger.findings)} findings")
    assert deferred, "the database did not run out of room"
    assert ledger.findings + problems == [], "\n".join(ledger.findings + problems)
    assert_no_traceback(*ledger.runs)


# -- read-only and unwritable directories ----------------------------------

def test_read_only_maildir_defers_then_delivers_once(user, tmp_path, capsys):
    ledger = Ledger(user.maildir, tmp_path / "msgs")
    assert ledger.deliver(ledger.new_message("rw", KB), env=user.env).returncode == 0
    with read_only(user.maildir):
        for _ in range(3):
            ledger.deliver(ledger.new_message("ro", 20 * KB), env=user.env)
        ledger.check("read-only Maildir")
    deferred = ledger.retry_deferred("after remounting read-write", env=user.env)
    report(capsys, "read-only Maildir (bind mount)",
           f"{len(deferred)} deferred, reasons {sorted(ledger.reasons)}, "
           f"{len(ledger.findings)} findings")
    assert len(deferred) >= 3
    assert ledger.findings == [], "\n".join(ledger.findings)
    assert_no_traceback(*ledger.runs)


def test_read_only_state_directory_defers_then_delivers_once(user, tmp_path, capsys):
    ledger = Ledger(user.maildir, tmp_path / "msgs")
    assert ledger.deliver(ledger.new_message("rw", KB), env=user.env).returncode == 0
    with read_only(user.state):
        for _ in range(3):
            ledger.deliver(ledger.new_message("ro-state", KB), env=user.env)
        ledger.check("read-only state directory")
    in_new = [m for m, rc in ledger.outcome.items() if rc and ledger.counts()[m]]
    deferred = ledger.retry_deferred("after remounting read-write", env=user.env)
    report(capsys, "read-only state directory (bind mount)",
           f"{len(deferred)} deferred, {len(in_new)} of them already in new/, "
           f"{len(ledger.tracebacks)} stderr with a traceback, {len(ledger.findings)} findings")
    assert len(deferred) == 3
    assert ledger.findings == [], "\n".join(ledger.findings)
    assert_no_traceback(*ledger.runs)


def test_read_only_mailbox_in_a_fan_out_is_a_partial_then_retried(site, tmp_path, capsys):
    """alias -> three mailboxes, one of them read-only: the others get the
    message, the third is recorded as a partial delivery (exit 0, or 75 if
    lda counts it a primary failure), and `lda partial retry` (or the MTA's
    retry) completes it exactly once."""
    require_root()
    boxes = {name: site.create(f"{name}@example.org") for name in ("alice", "bob", "carol")}
    site.aliases.write_text("team: alice, bob, carol\n")
    ledger = Ledger(boxes["alice"], tmp_path / "msgs", recipient="team@example.org")
    mid = ledger.new_message("fan", 5 * KB)
    argv = [LDA, "deliver", "-f", SENDER, "team@example.org"]
    with read_only(boxes["carol"]):
        done = ledger.deliver(mid, argv=argv, env=site.env)
    status = done.returncode
    retry = site.run("partial", "retry", "--json") if status == 0 else ledger.deliver(
        mid, argv=argv, env=site.env)
    findings = list(ledger.findings)
    for name, box in boxes.items():
        counts, unknown = mailbox_counts(box, ledger.messages, prefix("team@example.org"))
        if counts[mid] != 1 or unknown:
            findings.append(f"{name}: {counts[mid]} copies, unknown files {unknown}")
    report(capsys, "read-only mailbox in a fan-out",
           f"first delivery exit {status}, retry exit {retry.returncode}, "
           f"{len(findings)} findings")
    assert status in (0, 75)
    assert retry.returncode == 0, retry.stderr.decode()[-500:]
    assert findings == [], "\n".join(findings)


# -- an unprivileged lda: permissions as the kernel enforces them ----------

def nobody_python(modules="sqlite3, tomllib, lda.deliver.command"):
    """A Python that the nobody user can run lda with (import modules from
    the checkout), or skip: where the test dependencies live under a home
    nobody cannot read (pyenv in /root), the admin commands' click is not
    importable as nobody."""
    require_root()
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    for python in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", python,
             "-c", f"import {modules}"],
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, capture_output=True,
            cwd="/")
        if probe.returncode == 0:
            return python
    pytest.skip("no Python that the nobody user can run lda with")


@pytest.fixture
def nobody(tmp_path):
    """A HOME owned by nobody in a directory nobody can reach."""
    python = nobody_python()
    base = Path(tempfile.mkdtemp(prefix="lda-nobody-"))
    base.chmod(0o755)
    home = base / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", python,
            str(REPO / "bin" / "lda"), "deliver", "-f", SENDER, ADDRESS]
    yield {"base": base, "home": home, "env": env, "argv": argv}
    shutil.rmtree(base, ignore_errors=True)


def as_nobody(path, mode):
    os.chown(path, 65534, 65534)
    os.chmod(path, mode)


@pytest.mark.parametrize("case", ["new-not-writable", "tmp-not-writable",
                                  "state-parent-not-writable", "state-dir-not-writable",
                                  "database-not-writable"])
def test_unwritable_directories_as_an_unprivileged_user(nobody, tmp_path, capsys, case):
    home, env, argv = nobody["home"], nobody["env"], nobody["argv"]
    ledger = Ledger(home / "Maildir", tmp_path / "msgs")
    first = ledger.deliver(ledger.new_message("ok", KB), argv=argv, env=env)
    assert first.returncode == 0, first.stderr.decode()
    state = home / ".local" / "state" / "lda"
    if case == "state-parent-not-writable":
        shutil.rmtree(home / ".local")
        (home / ".local").mkdir(mode=0o755)  # owned by root: nobody cannot mkdir in it
    target = {"new-not-writable": home / "Maildir" / "new",
              "tmp-not-writable": home / "Maildir" / "tmp",
              "state-parent-not-writable": home / ".local",
              "state-dir-not-writable": state,
              "database-not-writable": state / "lda.sqlite"}[case]
    target.chmod(0o500 if target.is_dir() else 0o400)
    for _ in range(2):
        ledger.deliver(ledger.new_message(case, 3 * KB), argv=argv, env=env)
    ledger.check(case)
    target.chmod(0o700 if target.is_dir() else 0o600)
    if case == "database-not-writable":
        # SQLite gave the -wal and -shm it made meanwhile the file's mode:
        # the admin's fix is `chmod u+w lda.sqlite*`.
        for path in state.glob("lda.sqlite-*"):
            path.chmod(0o600)
    if case == "state-parent-not-writable":
        os.chown(target, 65534, 65534)
    deferred = ledger.retry_deferred("after fixing the permissions", argv=argv, env=env)
    report(capsys, f"unprivileged, {case}",
           f"{len(deferred)} deferred, {len(ledger.tracebacks)} stderr with a traceback, "
           f"{len(ledger.findings)} findings")
    # The WAL and its index stay beside lda.sqlite between deliveries, so a
    # state directory that only lost its write bit no longer stops one.
    assert len(deferred) == (0 if case == "state-dir-not-writable" else 2)
    assert ledger.findings == [], "\n".join(ledger.findings)
    assert_no_traceback(*ledger.runs)


# -- the database: missing directory, corrupt file --------------------------

@pytest.mark.parametrize("case", ["parent-is-a-file", "parent-is-a-dangling-symlink",
                                  "parent-is-a-symlink-loop"])
def test_state_directory_that_cannot_exist(user, tmp_path, capsys, case):
    parent = tmp_path / "parent"
    if case == "parent-is-a-file":
        parent.write_text("")
    elif case == "parent-is-a-dangling-symlink":
        parent.symlink_to(tmp_path / "nowhere")
    else:
        parent.symlink_to(parent)
    config = write_lda_toml(tmp_path / "lda.toml",
                            {"mode": "user", "state_dir": str(parent / "state")})
    argv = [LDA, "deliver", "-c", str(config), "-f", SENDER, ADDRESS]
    ledger = Ledger(user.maildir, tmp_path / "msgs")
    ledger.deliver(ledger.new_message(case, KB), argv=argv, env=user.env)
    ledger.check(case)
    parent.unlink()
    deferred = ledger.retry_deferred("after creating the directory", argv=argv,
                                     env=user.env)
    report(capsys, f"state directory, {case}",
           f"exit {ledger.outcome}, {len(ledger.tracebacks)} stderr with a traceback, "
           f"{len(ledger.findings)} findings")
    assert len(deferred) == 1
    assert ledger.findings == [], "\n".join(ledger.findings)
    assert_no_traceback(*ledger.runs)


def corrupt(path, how, rng):
    data = bytearray(path.read_bytes())
    if how == "garbage-file":
        data = bytearray(rng.randbytes(len(data)))
    elif how == "garbage-header":
        data[:100] = rng.randbytes(100)
    elif how == "garbage-pages":
        page = int.from_bytes(data[16:18], "big") or 65536
        data[page:] = rng.randbytes(len(data) - page)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["garbage-file", "garbage-header", "garbage-pages"])
def test_corrupt_database(user, tmp_path, capsys, how):
    """Garbage over lda.sqlite: 75 with a one-line reason, and the message
    not in new/ (or in new/ once, then never twice)."""
    ledger = Ledger(user.maildir, tmp_path / "msgs")
    for _ in range(2):
        assert ledger.deliver(ledger.new_message("before", KB),
                              env=user.env).returncode == 0
    db = user.state / "lda.sqlite"
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany("INSERT INTO delivered_to (mailbox, message_id, submit_time, "
                         "delivered_at, state) VALUES ('root', ?, '', ?, 'delivered')",
                         [(f"filler{i}@x", time.time()) for i in range(3000)])
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    corrupt(db, how, random.Random(7))
    mids = [ledger.new_message(how, 2 * KB) for _ in range(2)]
    mids.append(next(iter(ledger.messages)))  # and a resend of an earlier one
    for mid in mids:
        ledger.deliver(mid, env=user.env)
    counts = ledger.check(how)
    outcome = {m: (ledger.outcome[m], counts[m]) for m in mids}
    # The admin's repair: set the broken file aside; lda starts a new one.
    for path in user.state.glob("lda.sqlite*"):
        path.rename(path.with_name("broken-" + path.name))
    for mid in mids[:2]:
        if ledger.deliver(mid, env=user.env).returncode != 0:
            ledger.findings.append(f"{mid}: still failing after the repair")
    counts = ledger.check("after the repair")
    report(capsys, f"corrupt database, {how}",
           f"(exit, copies in new/) per message: {list(outcome.values())}, after the "
           f"repair {[counts[m] for m in mids]} copies, {len(ledger.tracebacks)} stderr "
           f"with a traceback, {len(ledger.findings)} findings")
    assert ledger.findings == [], "\n".join(ledger.findings)
    assert_no_traceback(*ledger.runs)
    for mid in mids[:2]:
        assert outcome[mid][0] == 75, outcome  # before the repair


# -- a file-size limit (ulimit -f), as Postfix sets for local(8) -----------

def fsize_limit(limit, sigxfsz):
    def preexec():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, sigxfsz)
    return preexec


@pytest.mark.parametrize("limit, size, sigxfsz, expected", [
    (100 * KB, 300 * KB, signal.SIG_IGN, 73),  # the message: too big, bounced
    (100 * KB, 300 * KB, signal.SIG_DFL, 73),
    (6 * KB, 2 * KB, signal.SIG_IGN, 75),      # the database: deferred
    (6 * KB, 2 * KB, signal.SIG_DFL, 75),
], ids=["message-over-limit-sigxfsz-ignored", "message-over-limit-sigxfsz-default",
        "database-over-limit-sigxfsz-ignored", "database-over-limit-sigxfsz-default"])
def test_file_size_limit(user, tmp_path, capsys, limit, size, sigxfsz, expected):
    """Postfix's set_file_limit() sets RLIMIT_FSIZE and ignores SIGXFSZ, and
    CPython ignores SIGXFSZ at start-up too: a write past the limit is EFBIG,
    which must come out as a clear answer, never a death by signal.  Postfix
    bounces EFBIG in its own mailbox delivery, and so does lda: 73 with
    5.3.4 (message too big for system), not a retry that can never work."""
    ledger = Ledger(user.maildir, tmp_path / "msgs")
    mid = ledger.new_message("limited", size)
    done = ledger.deliver(mid, env=user.env, preexec_fn=fsize_limit(limit, sigxfsz),
                          allowed=(expected,))
    ledger.check("file-size limit")
    reason = (done.stderr.decode(errors="replace").strip().splitlines() or [""])[0]
    deferred = ledger.retry_deferred("without the limit", env=user.env)
    report(capsys, f"RLIMIT_FSIZE {limit} B, {size} B message, SIGXFSZ "
           f"{'ignored' if sigxfsz == signal.SIG_IGN else 'default'}",
           f"exit {done.returncode}, {reason!r}, then {len(deferred)} retried")
    assert done.returncode != -signal.SIGXFSZ, "killed by SIGXFSZ"
    assert done.returncode == expected, (done.returncode, reason)
    assert reason.startswith("5.3.4 " if expected == 73 else "4."), reason
    assert ledger.findings == [], "\n".join(ledger.findings)
    assert_no_traceback(*ledger.runs)


# -- I/O errors: the filesystem shuts down mid-delivery ---------------------

@contextmanager
def ext4_image(image, target, size_mb=256):
    # Sparse: only what is written takes disk space.  bench/soak.py's 15
    # cuts of three-recipient deliveries (a copy each, up to 200 KB) filled
    # 64 MB, and every retry then deferred with ENOSPC.
    require_root()
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 is not installed")
    if not image.exists():
        with open(image, "wb") as f:
            f.truncate(size_mb << 20)
        made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True)
        if made.returncode != 0:
            pytest.skip(f"mkfs.ext4 failed: {made.stderr.decode().strip()}")
    target.mkdir(parents=True, exist_ok=True)
    mount("-o", "loop", image, target)
    try:
        yield target
    finally:
        unmount(target)


def shut_down(target):
    """EXT4_IOC_SHUTDOWN without flushing the journal: every later I/O gets
    EIO, and what was not committed is gone, as after a power cut."""
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH))
    finally:
        os.close(fd)


def shutdown_cycle(image, home, ledger, env, rng, cycle, databases, deliveries=12):
    """Deliver in a thread, shut the filesystem down at a random instant,
    remount, and check that everything acknowledged survived whole (and
    the SQLite files, relative to the mount point, are sound)."""
    with ext4_image(image, home):
        # Cut while delivery number `cut_at` runs (the worker never pauses
        # between deliveries, so some delivery is under way whatever the
        # machine's speed), at a random instant within its first 60 ms.
        cut_at = rng.randrange(2, deliveries - 2)
        reached = threading.Event()
        sizes = [rng.choice([KB, 200 * KB]) for _ in range(deliveries)]

        def deliver_all():
            for n, size in enumerate(sizes):
                if n == cut_at:
                    reached.set()
                ledger.deliver(ledger.new_message(f"c{cycle}", size), env=env)
            reached.set()

        worker = threading.Thread(target=deliver_all)
        worker.start()
        reached.wait(timeout=120)
        time.sleep(rng.uniform(0, 0.06))
        shut_down(home)
        worker.join()
    with ext4_image(image, home):
        ledger.check(f"cycle {cycle}, after the power cut")
        for database in databases:
            problems = sqlite_check(home / database)
            ledger.findings += [f"cycle {cycle}: {p}" for p in problems]
        deferred = ledger.retry_deferred(f"cycle {cycle}, retries", env=env)
        # A resend of everything acknowledged must find it (the rows and the
        # files were fsynced before the 0).
        for mid, rc in list(ledger.outcome.items()):
            ledger.deliver(mid, env=env)
        ledger.check(f"cycle {cycle}, resends")
    return deferred


def test_filesystem_shutdown_mid_delivery_is_a_power_cut(user, tmp_path, capsys):
    """Everything acknowledged with 0 survives the cut whole (file, new/ and
    the row were fsynced first); everything else exits 75 and is delivered
    once after the remount.  Tracebacks are reported, not asserted: the one
    seen here (EIO from the clean-up unlink of the staging file) depends on
    where the cut lands, and bench/soak.py counts them over many cuts."""
    rng = random.Random(20261125)  # the same cuts on every run
    ledger = Ledger(user.maildir, tmp_path / "msgs")
    power_cuts(capsys, "ext4 shut down mid-delivery (EIO, power cut)",
               tmp_path / "ext4.img", user.home, ledger, user.env, rng, USER_DATABASES)


def power_cuts(capsys, name, image, home, ledger, env, rng, databases, cycles=3):
    """shutdown_cycle() `cycles` times; then something must have been under
    way at a cut, and nothing found wrong."""
    deferred = []
    for cycle in range(cycles):
        deferred += shutdown_cycle(image, home, ledger, env, rng, cycle, databases)
    acknowledged = len(ledger.messages) - len(deferred)
    report(capsys, name,
           f"{cycles} cycles, {len(ledger.messages)} messages, {acknowledged} acknowledged "
           f"before the cut survived, {len(deferred)} deferred and delivered once on "
           f"retry, stderr with a traceback: {ledger.tracebacks or 'none'}, "
           f"{len(ledger.findings)} findings")
    assert deferred, "no delivery was under way at a shutdown"
    assert ledger.findings == [], "\n".join(ledger.findings[:20])


class TeamLedger(Ledger):
    """Messages to several envelope recipients in one `lda deliver` (one
    batch: a copy each, one pending transaction for all, links synced in a
    run); every mailbox is read with its own recipient's prefix."""

    def __init__(self, boxes, workdir):
        super().__init__(next(iter(boxes.values())), workdir)
        self.boxes = boxes  # address -> Maildir

    def deliver(self, mid, argv=None, env=None, **kwargs):
        return super().deliver(mid, argv or [LDA, "deliver", "-f", SENDER, *self.boxes],
                               env=env, **kwargs)

    def counts(self):
        """Copies of each message: the number every mailbox has, the largest
        if any has two or more, or -1 where some have it and some not."""
        per_box = []
        for address, box in self.boxes.items():
            counts, unknown = mailbox_counts(box, self.messages, prefix(address))
            self.findings += [f"{box}: {name} is not a whole message" for name in unknown]
            per_box.append(counts)
        merged = {}
        for mid in self.messages:
            seen = {counts[mid] for counts in per_box}
            merged[mid] = max(seen) if len(seen) == 1 or max(seen) > 1 else -1
        return merged


USER_DATABASES = [".local/state/lda/lda.sqlite"]
SITE_DATABASES = ["state/databases/default/lda.sqlite", "state/directory.sqlite"]


def team_on_image(root, image, mount):
    """A managed site whose lda.toml and state (directory, database,
    Maildirs) live on the ext4 image, with three mailboxes:
    (site, {address: Maildir})."""
    root.mkdir()
    site = Site(root, state_dir=str(mount / "state"))
    site.state = mount / "state"
    with ext4_image(image, mount):
        shutil.copyfile(site.config, mount / "lda.toml")
        site.env["LDA_CONFIG"] = str(mount / "lda.toml")
        boxes = {a: site.create(a) for a in ("alice@example.org", "bob@example.org",
                                             "carol@example.org")}
    return site, boxes


def test_filesystem_shutdown_while_delivering_to_three_recipients(tmp_path, capsys):
    """As above, with three envelope recipients in each lda deliver: a 0
    means all three copies survive the cut; after a 75, the MTA's retry
    gives each mailbox exactly one."""
    image, mount = tmp_path / "ext4.img", tmp_path / "mnt"
    site, boxes = team_on_image(tmp_path / "site", image, mount)
    power_cuts(capsys, "ext4 shut down while delivering to three recipients", image, mount,
               TeamLedger(boxes, tmp_path / "msgs"), site.env, random.Random(20261126),
               SITE_DATABASES)


def test_an_aliases_file_on_a_failed_disk_is_a_temporary_failure(site, tmp_path):
    """The aliases file alone on a filesystem that has shut down (EIO): the
    delivery defers (75, 4.x), as for any disk error, rather than calling
    the file a bad configuration (78, which Exim's pipe bounces)."""
    box = site.create("alice@example.org")
    image, mount = tmp_path / "ext4.img", tmp_path / "mnt"
    with ext4_image(image, mount):
        aliases = mount / "aliases"
        aliases.write_text("team: alice\n")
        site.config.write_text(site.config.read_text().replace(str(site.aliases),
                                                               str(aliases)))
        shut_down(mount)
        done = site.deliver(message(), "team@example.org")
    reason = done.stderr.decode().strip().splitlines()[0]
    assert done.returncode == 75 and reason.startswith("4."), done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()
    site.config.write_text(site.config.read_text().replace(str(aliases), str(site.aliases)))
    site.aliases.write_text("team: alice\n")
    site.deliver(message(), "team@example.org", check=0)  # the MTA's retry
    assert len(maildir_files(box)) == 1

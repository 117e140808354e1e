"""Dovecot reading and changing a Maildir while lda delivers into it.

Several `lda deliver` processes and one `lda lmtp` (fed by smtplib.LMTP)
deliver a mix of messages (LF, CRLF, 8-bit, one of 200 KB, some filed by a
Sieve script into a folder with a keyword, some given a keyword in the
inbox) into one managed mailbox, which a private Dovecot serves as its user
alice.  Meanwhile a loop runs doveadm on that mailbox, round after round:
fetch (uid, flags, both sizes, guid), flags add (\\Seen and a keyword of
its own, so both write dovecot-keywords), move from INBOX to Archive,
expunge, quota get and quota recalc.  Then:

- every message lda acknowledged is in exactly one of Dovecot's folders,
  by Message-ID, but those the loop expunged;
- Dovecot's size.physical and size.virtual are each file's bytes (lda's
  S= and W=, which Dovecot trusts without reading the file);
- neither Dovecot's log nor any doveadm run says anything is wrong;
- DeliveredTo holds one delivered row per message, and a resend of each
  is discarded as a duplicate, moved, flagged or expunged as it may be;
- after the last doveadm quota recalc, maildirsize, lda's own recount and
  the files on disk agree.

What Dovecot does that lda cannot change, and the tests write down:
doveadm logs its own errors on its stderr, not in Dovecot's log (both are
read); Dovecot's move links the file into the other folder under the same
base name, so a retry that meets a "pending" row (a power cut took back its
"delivered" mark) finds the message there, while one expunged meanwhile
leaves nothing to find and is delivered again, a duplicate rather than a
loss; `maildirsize` lines lda appends while doveadm recounts may be lost or
counted twice (Maildir++ has no lock for them), so its figures are compared
after the last recount (and printed before it).

Run with -s to see the figures; LIVE_N_DELIVER and LIVE_N_LMTP run more.
"""

import os
import queue
import shutil
import smtplib
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import LDA, mailbox_paths, message, poll, wait_until, write_lda_toml
from dovecot import DOVEADM, private_dovecot
from postfix import SBIN_PATH

ALICE = "alice@example.org"
SENDER = "sender@example.org"
DELIVER_WORKERS = 4
# Through `lda deliver`, DELIVER_WORKERS at a time; through one `lda lmtp`,
# one transaction each.
N_DELIVER = int(os.environ.get("LIVE_N_DELIVER", 40))
N_LMTP = int(os.environ.get("LIVE_N_LMTP", 16))
BIG = 9                 # the index of the 200 KB message
# Message i with an X-Keyword gets it (K0..K7), as lda adds keywords while
# Dovecot adds its own (D0..D9, $Label2): both assign dovecot-keywords
# letters, under Dovecot's uidlist lock, 20 names in all (26 letters).
SCRIPT = """\
require ["fileinto", "imap4flags", "mailbox", "variables"];
if header :matches "x-keyword" "*" { addflag "${1}"; }
if header :contains "subject" "[list]" { fileinto :create :flags ["$Label1"] "Lists"; stop; }
if header :contains "subject" "[label]" { addflag "$Label1"; }
"""
# Dovecot's complaints about a Maildir it reads (a wrong S= or W= shows as
# "Cached message size smaller than expected", a broken uidlist as
# "inconsistency" or "Duplicate file entry").
COMPLAINTS = ("Error", "Warning", "Panic", "Fatal", "uidlist", "inconsisten", "Cached",
              "size", "keyword", "Duplicate")


def tags(i):
    """What the Dovecot loop does to message i, named in its Subject."""
    return ["", "flag-me", "move-me", "expunge-me"][i % 4]


def make(i):
    """Message i of the mix: (Message-ID, bytes)."""
    kind = i % 5
    message_id = f"<live{i}@example.org>"
    subject = f"m{i} {tags(i)}" + {3: " [list]", 4: " [label]"}.get(kind, "")
    body = b"".join(b"line %d of message %d\n" % (n, i) for n in range(i % 7 + 1))
    if i == BIG:
        body = b"".join(b"%06d " % n + b"b" * 72 + b"\n" for n in range(2600))  # ~ 200 KB
    data = message(message_id, subject=subject, body=body,
                   extra=b"X-Keyword: K%d\n" % (i % 8) if i % 3 else b"")
    if kind == 1:
        data = data.replace(b"\n", b"\r\n")
    elif kind == 2:
        data = data.replace(b"Subject:", b"X-Name: J\xf6rg \xe9t\xe9\nSubject:", 1) \
            + b"Gr\xfc\xdfe, \xe7a va \xff\n"
    return message_id, data


def virtual_size(data):
    """RFC 3501's size: every line end counted as CRLF."""
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def crlf(data):
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def message_id_of(data):
    for line in data.split(b"\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
        if line.strip() == b"":
            return None
    return None


class Doveadm:
    """doveadm for user alice, every run's stderr kept (doveadm's own
    errors go there, not to Dovecot's log)."""

    def __init__(self, server):
        self.server = server
        self.stderr = []
        self.runs = 0

    def __call__(self, command, *args, formatter=()):
        """doveadm COMMAND -u alice ARGS ("mailbox create": two words)."""
        done = subprocess.run([DOVEADM, "-c", str(self.server.conf), *formatter,
                               *command.split(), "-u", "alice", *args], capture_output=True,
                              env={"PATH": SBIN_PATH}, timeout=60)
        self.runs += 1
        if done.stderr.strip():
            self.stderr.append((command, args, done.stderr.decode(errors="replace")))
        assert done.returncode == 0, (command, args, done.returncode, done.stderr)
        return done.stdout

    def fetch(self, fields, *search):
        """[{field: value}] per message: doveadm's tab format, one line each."""
        out = self("fetch", fields, *search, formatter=("-f", "tab"))
        out = out.decode(errors="replace").replace("\r", "")
        if not out:
            return []           # no message: not even the line of names
        names, *rows = out.split("\n")
        rows = [dict(zip(names.split("\t"), row.split("\t"))) for row in rows if row]
        assert all(len(row) == len(names.split("\t")) for row in rows), out
        return rows

    def round(self, number):
        """One round of what an IMAP user and Dovecot's tools do."""
        for row in self.fetch("uid flags size.virtual size.physical guid", "mailbox", "INBOX",
                              "all"):
            assert int(row["size.virtual"]) >= int(row["size.physical"]) > 0, row
        self("flags add", f"\\Seen $Label2 D{number % 10}", "mailbox", "*", "subject", "flag-me")
        self("move", "Archive", "mailbox", "INBOX", "subject", "move-me")
        self("expunge", "mailbox", "*", "subject", "expunge-me")
        self("quota get")


class Mailbox:
    """lda in managed mode, run as Dovecot's mail owner; its one mailbox is
    Dovecot's user alice."""

    def __init__(self, server):
        self.server = server
        self.state = server.root / "lda-state"
        self.run_dir = server.root / "lda-run"
        for directory in (self.state, self.run_dir):
            directory.mkdir()
            server.owner.chown_tree(directory)
        self.config = write_lda_toml(server.root / "lda.toml",
                                     {"state_dir": str(self.state), "log": "stderr"})
        self.env = {"LDA_CONFIG": str(self.config)}
        self.run("mailbox", "create", ALICE)
        script = server.root / "live.sieve"
        script.write_text(SCRIPT)
        script.chmod(0o644)
        self.run("sieve", "install", ALICE, str(script))
        self.db_root, maildir = mailbox_paths(self.state, ALICE)
        self.maildir = server.add_user("alice", maildir=str(maildir))

    def run(self, *args, input=b""):
        done = self.server.lda(*args, input=input, env=self.env)
        assert done.returncode == 0, (args, done.returncode, done.stderr.decode())
        return done

    def files(self):
        """{base name: path} of every message file in new/ and cur/ of the
        Maildir and of each of its folders."""
        dirs = [self.maildir] + [p for p in self.maildir.iterdir()
                                 if p.name.startswith(".") and (p / "cur").is_dir()]
        return {f.name.split(":", 1)[0]: f for d in dirs for sub in ("new", "cur")
                for f in (d / sub).iterdir()}

    def maildirsize(self):
        quota, *lines = (self.maildir / "maildirsize").read_text().splitlines()
        return quota, (sum(int(line.split()[0]) for line in lines),
                       sum(int(line.split()[1]) for line in lines))


def deliver_all(box, messages, acked, failures):
    """`lda deliver` for each (Message-ID, bytes) taken from the queue."""
    while True:
        try:
            message_id, data = messages.get_nowait()
        except queue.Empty:
            return
        done = box.server.lda("deliver", "-f", SENDER, ALICE, input=data, env=box.env)
        said = [line for line in done.stderr.decode(errors="replace").splitlines()
                if "status=sent" not in line and "status=duplicate" not in line]
        if done.returncode == 0 and not said:
            acked.append(message_id)
        else:
            failures.append((message_id, done.returncode, done.stderr.decode()))


def lmtp_all(socket_path, messages, acked, failures):
    with smtplib.LMTP(str(socket_path), local_hostname="client.example.org") as client:
        for message_id, data in messages:
            try:   # CRLF line ends, as an MTA's LMTP client sends them
                refused = client.sendmail(SENDER, [ALICE], crlf(data))
            except smtplib.SMTPException as e:
                failures.append((message_id, "lmtp", repr(e)))
                continue
            if refused:
                failures.append((message_id, "lmtp", refused))
            else:
                acked.append(message_id)


def start_lmtp(box, log_path):
    socket_path = box.run_dir / "lmtp"
    log = log_path.open("wb")
    server = subprocess.Popen(
        [str(LDA), "lmtp", "--listen", f"unix:{socket_path}", "--processes", "1"],
        user=box.server.owner.uid, group=box.server.owner.gid, extra_groups=[], cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": str(box.server.owner.home), **box.env},
        stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    assert poll(socket_path.exists, 20), "lda lmtp did not listen"
    return server, socket_path


def test_dovecot_and_lda_on_one_maildir_at_once(tmp_path):
    mix = [make(i) for i in range(N_DELIVER + N_LMTP)]
    by_id = dict(mix)
    twice = [m for i, (m, _) in enumerate(mix[:N_DELIVER]) if tags(i) == "move-me"]
    with private_dovecot(tmp_path, quota_rule="*:storage=1G") as server:
        box = Mailbox(server)
        doveadm = Doveadm(server)
        doveadm("mailbox create", "Archive")
        doveadm("quota recalc")          # Dovecot writes maildirsize: its limit line
        lmtp, socket_path = start_lmtp(box, tmp_path / "lda-lmtp.log")
        acked, failures = [], []
        try:
            messages = queue.Queue()
            for i, item in enumerate(mix[:N_DELIVER]):
                messages.put(item)
                if tags(i) == "move-me":  # twice at once, as a retrying MTA
                    messages.put(item)    # may: one meets the other's pending row
            started = time.monotonic()
            workers = [threading.Thread(target=deliver_all, args=(box, messages, acked, failures))
                       for _ in range(DELIVER_WORKERS)]
            workers.append(threading.Thread(target=lmtp_all, args=(
                socket_path, mix[N_DELIVER:], acked, failures)))
            for worker in workers:
                worker.start()
            # Dovecot's loop runs in this thread until the last delivery is
            # answered; a recalc every third round races lda's maildirsize lines.
            rounds = 0
            while any(worker.is_alive() for worker in workers):
                doveadm.round(rounds)
                rounds += 1
                if rounds % 3 == 0:
                    doveadm("quota recalc")
            for worker in workers:
                worker.join(120)
            delivered_in = time.monotonic() - started
            doveadm.round(rounds)               # everything delivered meets it once
        finally:
            lmtp.terminate()
            lmtp.wait(30)
        print(f"\n{len(acked)} delivered ({len(twice)} twice at once) in {delivered_in:.1f} s, "
              f"Dovecot meanwhile {rounds} rounds ({doveadm.runs} doveadm runs)")
        assert failures == []
        assert sorted(acked) == sorted(list(by_id) + twice)
        said = [line for line in (tmp_path / "lda-lmtp.log").read_text().splitlines()
                if "status=sent" not in line and ": lmtp: " not in line]
        assert said == []

        # Every acknowledged message once over all folders, but the expunged.
        seen = doveadm.fetch("mailbox hdr.message-id size.physical size.virtual flags", "all")
        expunged = {message_id for i, (message_id, _) in enumerate(mix)
                    if tags(i) == "expunge-me"}
        counted = {}
        for row in seen:
            counted.setdefault(row["hdr.message-id"], []).append(row["mailbox"])
        assert {m: boxes for m, boxes in counted.items() if len(boxes) != 1} == {}
        assert set(counted) == set(by_id) - expunged
        folders = {}
        for i, (message_id, _) in enumerate(mix):
            if message_id in counted:
                want = ("Lists" if i % 5 == 3 else
                        "Archive" if tags(i) == "move-me" else "INBOX")
                folders[message_id] = (counted[message_id][0], want)
        assert {m: f for m, f in folders.items() if f[0] != f[1]} == {}
        print(f"Dovecot sees {len(seen)} messages in "
              f"{sorted(set(b for bs in counted.values() for b in bs))}; "
              f"{len(expunged)} expunged")

        # Keywords: lda's $Label1 and Dovecot's $Label2 both where they belong.
        for row in seen:
            i = int(row["hdr.message-id"][len("<live"):].split("@")[0])
            flags = set(row["flags"].split())
            if i % 5 in (3, 4):
                assert "$Label1" in flags, row
            if i % 3 and i % 5 != 3:
                assert f"K{i % 8}" in flags, row
            assert not {f"K{n}" for n in range(8)} - {f"K{i % 8}"} & flags, row
            if tags(i) == "flag-me":
                assert {"\\Seen", "$Label2"} <= flags, row

        # Both sizes are the bytes of the file, as its S= and W= say.
        files = box.files()
        by_message_id = {message_id_of(path.read_bytes()): path for path in files.values()}
        assert len(by_message_id) == len(files) == len(seen)
        for row in seen:
            path = by_message_id[row["hdr.message-id"]]
            data = path.read_bytes()
            sent = by_id[row["hdr.message-id"]]
            assert data.endswith(sent) or data.endswith(crlf(sent)) \
                or data.endswith(crlf(sent).replace(b"\r\n", b"\n")), path.name
            sizes = {(part[:1]): int(part[2:]) for part in path.name.split(":")[0].split(",")[1:]
                     if part[:2] in ("S=", "W=")}
            assert sizes == {"S": len(data), "W": virtual_size(data)}, path.name
            assert (int(row["size.physical"]), int(row["size.virtual"])) \
                == (len(data), virtual_size(data)), path.name

        # DeliveredTo: one delivered row per message.
        conn = sqlite3.connect(box.db_root / "lda.sqlite")
        try:
            rows = conn.execute("SELECT message_id, state FROM delivered_to").fetchall()
        finally:
            conn.close()
        assert sorted(rows) == sorted((m.strip("<>"), "delivered") for m in by_id)

        # A resend of every message is a duplicate: exit 0, no new file.
        before = set(files)
        for message_id, data in mix:
            box.run("deliver", "-f", SENDER, ALICE, input=data)
        assert set(box.files()) == before

        # maildirsize after Dovecot's recount, lda's recount and the disk agree.
        on_disk = (sum(p.stat().st_size for p in files.values()), len(files))
        before_recalc = box.maildirsize()
        print(f"maildirsize before any recount: {before_recalc}")
        doveadm("quota recalc")
        after_dovecot = box.maildirsize()
        box.run("quota", "recalc", ALICE)
        after_lda = box.maildirsize()
        print(f"maildirsize: after doveadm recalc {after_dovecot}, after lda's {after_lda}, "
              f"files {on_disk}")
        assert after_dovecot == after_lda == (after_dovecot[0], on_disk)

        # Nothing went wrong, as Dovecot saw it.
        assert doveadm.stderr == []
        log = server.log.read_text(errors="replace").splitlines() if server.log.exists() else []
        complaints = [line for line in log if any(word in line for word in COMPLAINTS)]
        assert complaints == []



def test_a_pending_row_whose_file_dovecot_moved_to_another_folder(tmp_path):
    """A "pending" row (what a power cut leaves when it takes back the
    unsynced "delivered" commit, or a delivery still syncing new/) whose
    file an IMAP user already moved: Dovecot's move links the file into the
    other folder under the same base name, so the retry finds it there and
    discards the message as a duplicate.  Once expunged nothing is left to
    find: the retry delivers it again (a duplicate rather than a loss)."""
    with private_dovecot(tmp_path, quota_rule=None) as server:
        box = Mailbox(server)
        doveadm = Doveadm(server)
        doveadm("mailbox create", "Archive")
        for i in (0, 1):
            box.run("deliver", "-f", SENDER, ALICE, input=make(i)[1])
        doveadm("move", "Archive", "mailbox", "INBOX", "subject", "m0")
        doveadm("expunge", "mailbox", "INBOX", "subject", "m1")
        moved = box.files()
        assert [p.parent.parent.name for p in moved.values()] == [".Archive"]
        conn = sqlite3.connect(box.db_root / "lda.sqlite")
        with conn:
            conn.execute("UPDATE delivered_to SET state = 'pending'")
        conn.close()
        box.run("deliver", "-f", SENDER, ALICE, input=make(0)[1])
        assert box.files() == moved
        box.run("deliver", "-f", SENDER, ALICE, input=make(1)[1])
        again = [p for name, p in box.files().items() if name not in moved]
        assert [message_id_of(p.read_bytes()) for p in again] == [make(1)[0]]


def test_contains_looks_in_every_folder_but_through_no_symlink(tmp_path):
    """Maildir.contains (the pending-row check) without Dovecot: the base
    name in another folder's cur/ with its info counts, from INBOX or from
    a folder; a folder that is a symlink (to another Maildir holding that
    name) is not followed."""
    from lda.store.maildir import open_mailbox

    root = tmp_path / "box"
    other = tmp_path / "other"
    for maildir in (root, root / ".Archive", root / ".Lists", other / ".Archive"):
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True)
    (root / ".Archive" / "cur" / "1.M1P1.host,S=5,W=6:2,Sa").write_bytes(b"x\n")
    (other / ".Archive" / "new" / "2.M2P2.host,S=5,W=6").write_bytes(b"y\n")
    (root / ".Evil").symlink_to(other / ".Archive")
    for folder in (None, ".Lists"):
        box = open_mailbox(str(root), folder=folder, create=False)
        try:
            assert box.folder == folder
            assert box.contains("1.M1P1.host,S=5,W=6")
            assert not box.contains("2.M2P2.host,S=5,W=6")
            assert not box.contains("3.M3P3.host,S=5,W=6")
        finally:
            box.close()
    (root / ".Lists" / "new" / "2.M2P2.host,S=5,W=6").write_bytes(b"y\n")
    box = open_mailbox(str(root), create=False)
    try:
        assert box.contains("2.M2P2.host,S=5,W=6")
    finally:
        box.close()


# linkat's number, which /proc/PID/syscall shows while strace holds it there.
LINKAT = {"x86_64": 265, "aarch64": 37}.get(os.uname().machine)


def held_in(proc, number):
    """Whether strace's child (the traced lda) is inside syscall number."""
    proc_dir = Path("/proc")
    try:
        children = (proc_dir / str(proc.pid) / "task" / str(proc.pid) / "children").read_text()
        return any((proc_dir / pid / "syscall").read_text().split()[0] == str(number)
                   for pid in children.split())
    except OSError:
        return False


@pytest.mark.skipif(shutil.which("strace") is None or LINKAT is None,
                    reason="needs strace on x86_64 or aarch64")
def test_a_folder_deleted_while_lda_stores_into_it_loses_no_message(tmp_path):
    """IMAP DELETE of a folder (doveadm mailbox delete) renames .Lists to
    ..DOVECOT-TRASHED at once, then empties and removes it.  A delivery
    that opened .Lists before and links into it after the rename (held
    here in its linkat by strace, and Dovecot in its rmdirs) put the
    message where Dovecot then deleted it, and answered "delivered".  It
    must find the folder gone and answer 4.x.x, so the retry stores it
    where a message arriving after the delete goes (:create makes the
    folder again)."""
    with private_dovecot(tmp_path, quota_rule=None) as server:
        box = Mailbox(server)
        doveadm = Doveadm(server)
        doveadm("mailbox create", "Lists")
        message_id, data = make(3)  # "[list]": the script files it into Lists
        held = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=linkat",
                "-e", "inject=linkat:delay_enter=3000000"]
        env = {"HOME": str(server.owner.home), "PATH": "/usr/bin:/bin", **box.env}
        (tmp_path / "msg").write_bytes(data)
        with (tmp_path / "msg").open("rb") as stdin:
            lda = subprocess.Popen(held + [str(LDA), "deliver", "-f", SENDER, ALICE],
                                   stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   user=server.owner.uid, group=server.owner.gid,
                                   extra_groups=[], cwd="/", env=env)
        wait_until(lambda: held_in(lda, LINKAT) or lda.poll() is not None, 30,
                   "lda to reach its link into the folder")
        assert lda.poll() is None, lda.stderr.read().decode()
        delete = subprocess.Popen(
            ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=rmdir",
             "-e", "inject=rmdir:delay_enter=2000000", DOVEADM, "-c", str(server.conf),
             "mailbox", "delete", "-u", "alice", "Lists"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PATH": SBIN_PATH})
        wait_until(lambda: not (box.maildir / ".Lists").exists(), 30,
                   "Dovecot to rename .Lists")
        stderr = lda.communicate(timeout=60)[1].decode()
        deleted = delete.communicate(timeout=60)
        assert delete.returncode == 0, deleted
        found = doveadm("search", "mailbox", "*", "header", "message-id", message_id)
        if lda.returncode == 0:  # delivered: then where Dovecot sees it
            assert found.strip(), stderr
        else:
            assert lda.returncode == 75 and stderr.startswith("4."), stderr
            assert not found.strip()
            box.run("deliver", "-f", SENDER, ALICE, input=data)
            found = doveadm("search", "mailbox", "*", "header", "message-id", message_id)
            assert len(found.splitlines()) == 1, found

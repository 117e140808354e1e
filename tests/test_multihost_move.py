"""Moving a mailbox between the two hosts of tests/multihost.py while a
client sends it mail through the front Postfix, end to end over SMTP:
the move of alice from a to b under a message every 50 ms, and moves
SIGKILLed at 10 random points, each resumed with --resume.

ssh is not used: both "hosts" are this machine, so each host's
move_command is the other host's own `lda -c OTHER_TOML mailbox receive`
run locally (multihost.receive_on).  ssh would only carry the same bytes
over a pipe, and running sshd (host keys, root login, known_hosts) here
would test OpenSSH's setup rather than lda; the stream, its manifest and
its checks on arrival are the same either way.

The end state asked of each move: after `postqueue -f` on the front and
an empty queue, every message the client sent is in the mailbox's Maildir
on the host that now holds it exactly once (counted by Message-ID), the
other host has no copy left, Postfix bounced nothing, and the resend of a
message delivered before the move is discarded (its DeliveredTo row moved
along).

What the front does meanwhile (measured, see the report printed with -s):
it accepts the mailbox at RCPT and queues while the move runs (lda
socketmap and lda policy answer for a mailbox under move as for any: the
host that has it defers it, 4.2.1; the last test checks that), and after the
flip its queue manager goes on routing the same sender's mail to the old
host for up to 30 s: Postfix's address resolver client keeps its last
answer per (sender, recipient) that long (a constant in its resolve_clnt.c,
with no setting), while lda socketmap answers the
new host at once.  The old host defers those (4.3.0), so they are only
later; the client here gives each message a sender of its own, which
routes each by the answer of its own moment."""

import json
import os
import random
import re
import signal
import smtplib
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest
from conftest import wait_until
from multihost import address, hosts_behind_postfix, module_postgres  # noqa: F401
from postfix import SENDER, WAIT_SECONDS

SEND_EVERY = 0.05
RETRY_AFTER = 0.5
SEED = int(os.environ.get("LDA_MOVE_SEED", "2323"))
KILLS = 10
MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([^>]*)>", re.IGNORECASE | re.MULTILINE)


def tagged(tag, n):
    """Message n of a client, with its own Date: a resend carries the same
    one (a message without a Date gets the time Postfix received it, and
    lda's DeliveredTo key, Message-ID and Date, would differ each time)."""
    return (f"From: sender@example.org\r\nTo: {tag}\r\nSubject: {tag} {n}\r\n"
            f"Date: Sat, 05 Dec 2026 01:{n // 60 % 60:02d}:{n % 60:02d} +0000\r\n"
            f"Message-ID: <{tag}-{n}@multihost.test>\r\n\r\nHello {n}.\r\n").encode()


class Client(threading.Thread):
    """One new message to `to` through the front every SEND_EVERY seconds
    until stopped; sent[n] is the queue ID of message n (Message-ID
    <tag-n@...>).  A temporary refusal (4xx) is retried RETRY_AFTER seconds
    later, as a sending MTA would, and kept in `refused` (n, reply); the
    client stops once nothing is left to retry.  Anything else (a 5xx, a
    connection refused) goes to `errors`."""

    def __init__(self, postfix, to, tag):
        super().__init__(daemon=True)
        self.postfix, self.to, self.tag = postfix, to, tag
        self.sent, self.refused, self.errors = {}, [], []
        self.retry = {}  # n: when
        self.stopping = threading.Event()

    def run(self):
        n = 0
        while not self.stopping.is_set() or self.retry:
            start = time.monotonic()
            due = [m for m, when in self.retry.items() if when <= start]
            if not self.stopping.is_set():
                n += 1
                due.append(n)
            for m in due:
                self.retry.pop(m, None)
                self._send(m)
            time.sleep(max(0, SEND_EVERY - (time.monotonic() - start)))

    def _send(self, n):
        try:
            with smtplib.SMTP("127.0.0.1", self.postfix.port, timeout=WAIT_SECONDS) as smtp:
                smtp.ehlo("client.lda.test")
                # A sender of its own: Postfix's resolver client keeps its
                # last answer per (sender, recipient) for up to 30 s, and
                # one sender would route mail to the old host that long
                # after the move (deferred there, so only slower: measured
                # once with one sender, 29 s; not worth 30 s of every CI run).
                smtp.mail(SENDER.replace("@", f"+{n}@"))
                code, reply = smtp.rcpt(self.to)
                if code // 100 == 4:
                    self.refused.append((n, code, reply.decode()))
                    self.retry[n] = time.monotonic() + RETRY_AFTER
                    return
                if code != 250:
                    raise smtplib.SMTPRecipientsRefused({self.to: (code, reply)})
                code, reply = smtp.data(tagged(self.tag, n))
                assert code == 250, reply
            self.sent[n] = re.search(rb"queued as ([0-9A-F]+)", reply).group(1).decode()
        except (AssertionError, OSError, smtplib.SMTPException) as e:
            self.errors.append((n, repr(e)))

    def stop(self):
        self.stopping.set()
        self.join(WAIT_SECONDS)
        assert not self.is_alive(), self.retry


def message_ids(maildir):
    """Counter of the Message-IDs of every message in a Maildir (new/ and
    cur/ of the inbox and of each folder)."""
    found = Counter()
    root = Path(maildir)
    for folder in [root, *root.glob(".*/")]:
        for sub in ("new", "cur"):
            for path in sorted((folder / sub).glob("*")) if (folder / sub).is_dir() else []:
                head = path.read_bytes().split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
                found.update(m.decode() for m in MESSAGE_ID.findall(head))
    return found


def expected_ids(client):
    return Counter({f"{client.tag}-{n}@multihost.test": 1 for n in client.sent})


def delivered_rows(host, mailbox):
    """DeliveredTo rows of mailbox in host's own database."""
    with closing(sqlite3.connect(host.site.root / host.database / "lda.sqlite")) as conn:
        return conn.execute("SELECT count(*) FROM delivered_to WHERE mailbox = ?",
                            (mailbox,)).fetchone()[0]


def maildir_on(host, relative):
    return host.site.root / host.database / relative


def relay_port(delivery):
    return int(delivery.relay.rsplit(":", 1)[1])


def new_mailbox(two, local):
    """A fresh mailbox on host a (in dba); its Maildir relative to a database."""
    mailbox = address(local)
    two.a.site.create(mailbox, "--db", two.a.database)
    two.wait_mirrored(mailbox)
    return mailbox, two.a.site.maildir(mailbox).relative_to(two.a.site.root / two.a.database)


def wait_delivered_on(postfix, mailbox, host, count):
    """Until `count` messages to mailbox went to host's lda lmtp."""
    def done():
        sent = [d for d in postfix.deliveries(to=mailbox, status="sent")
                if relay_port(d) == host.lmtp.port]
        return sent if len(sent) >= count else None
    return wait_until(done, WAIT_SECONDS, f"{count} messages to {mailbox} on host {host.name}",
                      postfix.log_tail)


def settle(postfix):
    """postqueue -f, then until the front's queue is empty."""
    postfix.flush()
    postfix.wait_for_queue_empty()


def deferrals(postfix, mailbox):
    """{reply code (4.2.1, 4.3.0, ...): count} of the deferred attempts."""
    return dict(Counter(d.dsn for d in postfix.deliveries(to=mailbox, status="deferred")))


def delays(postfix, mailbox):
    """(max, how many over 1 s) of the delay= of the deliveries to mailbox:
    seconds from the front's receipt to the host's 250."""
    found = [float(m.group(1)) for m in re.finditer(
        rf"to=<{re.escape(mailbox)}>,.*? delay=([\d.]+),.*status=sent", postfix.log_text())]
    return max(found, default=0.0), sum(d > 1 for d in found)


def assert_exactly_once(two, client, mailbox, relative, holder, context):
    other = two.b if holder is two.a else two.a
    start = time.monotonic()
    settle(two.postfix)
    client.settled = time.monotonic() - start
    maildir = maildir_on(holder, relative)
    got = message_ids(maildir)
    expected = expected_ids(client)
    doubled = sorted(i for i, c in got.items() if c > 1)
    missing = sorted(set(expected) - set(got))
    assert (doubled, missing) == ([], []), (context, doubled, missing, two.postfix.log_tail())
    assert +got == expected, (context, sorted(set(got) - set(expected)))
    assert not maildir_on(other, relative).exists(), (context, "the source kept its copy")
    assert delivered_rows(other, mailbox) == 0, (context, "the source kept its rows")
    assert delivered_rows(holder, mailbox) >= len(expected), context
    assert two.postfix.deliveries(to=mailbox, status="bounced") == [], context
    assert client.errors == [], (context, client.errors)
    # The front's own refusals during a move are temporary (the client retries).
    assert {(code, reply[:5]) for _, code, reply in client.refused} <= {(451, "4.3.0")}, (
        context, client.refused)
    return maildir


def resend_is_discarded(two, client, mailbox, n, maildir, holder):
    """Message n again through the front: delivered by holder, not stored."""
    before = message_ids(maildir)
    queue_id = two.postfix.send(tagged(client.tag, n), [mailbox])
    two.postfix.wait_for_removal(queue_id)
    [delivery] = two.postfix.deliveries(queue_id=queue_id)
    assert (delivery.status, relay_port(delivery)) == ("sent", holder.lmtp.port), delivery
    assert message_ids(maildir) == before


def test_alice_moves_to_b_under_a_message_every_50_ms_each_once(hosts_behind_postfix):
    two = hosts_behind_postfix
    a, b, postfix = two.a, two.b, two.postfix
    mailbox = a.mailbox
    relative = a.site.maildir(mailbox).relative_to(a.site.root / a.database)
    client = Client(postfix, mailbox, "moving")
    client.start()
    try:
        wait_delivered_on(postfix, mailbox, a, 3)       # a took some before the move
        start = time.monotonic()
        moved = a.site.run("mailbox", "move", mailbox, "--to", b.database, "--json")
        seconds = time.monotonic() - start
        time.sleep(1)                                   # and the client goes on after
    finally:
        client.stop()
    assert moved.returncode == 0, moved.stderr
    report = json.loads(moved.stdout)
    assert report["result"] == "moved", report
    maildir = assert_exactly_once(two, client, mailbox, relative, b, "move a -> b")
    first = postfix.deliveries(to=mailbox, queue_id=client.sent[1])[0]
    assert relay_port(first) == a.lmtp.port             # delivered on a before the move
    resend_is_discarded(two, client, mailbox, 1, maildir, b)
    print(f"\nmove a->b: {len(client.sent)} messages sent, move {seconds:.2f} s "
          f"(its report: {report['seconds']} s, {report['messages']} messages, "
          f"{report['rows']} rows), deferred attempts {deferrals(postfix, mailbox)}, delay (max s, count > 1 s) "
          f"{delays(postfix, mailbox)}, refused at RCPT "
          f"{len(client.refused)}, queue empty {client.settled:.1f} s after postqueue -f")


KILLER = """
import os, signal, sys
from lda.config import load_config
from lda.admin import hostmove
from lda.admin.mailboxes import open_directory
address, target, point, fraction = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
def after_step(step):
    if step == point:
        os.kill(os.getpid(), signal.SIGKILL)
class Cut:
    # The stream to the target, SIGKILL once `at` of its bytes are written.
    def __init__(self, out, at):
        self.out, self.at, self.written = out, at, 0
    def write(self, data):
        if self.written + len(data) >= self.at:
            self.out.write(data[:max(0, self.at - self.written)])
            self.out.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        self.written += len(data)
        return self.out.write(data)
    def flush(self):
        self.out.flush()
def run_command(argv, feed):
    if point != "mid-send" or feed is None:
        return hostmove.run_command_line(argv, feed)
    # A share of the Maildir's bytes: the stream (manifest, rows) is longer.
    maildir = move._paths(journal())[0]
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(maildir)
               for f in fs)
    return hostmove.run_command_line(argv, lambda out: feed(Cut(out, int(size * fraction))))
def journal():
    return list(move.directory["moves"].rows_where("address = ?", [address]))[0]
config = load_config(None)
move = hostmove.HostMove(config, open_directory(config), address, after_step=after_step,
                         run_command=run_command)
move.run(target)
"""
# The steps test_hostmove.py kills at; "mid-send" once a random share of
# the Maildir's bytes went down the pipe to the target (in a file, as often
# as not).
POINTS = ["begin", "mid-send", "sent", "flipped", "confirmed", "cleaned"]


def kill_points(rng):
    """KILLS (point, fraction): every step once, the rest in mid-stream."""
    points = POINTS + ["mid-send"] * (KILLS - len(POINTS))
    rng.shuffle(points)
    return [(p, round(rng.uniform(0.05, 0.95), 2) if p == "mid-send" else 0.0)
            for p in points]


def test_moves_killed_at_10_random_points_resume_each_once(hosts_behind_postfix):
    """The mailbox goes a -> b -> a ... ten times, each move SIGKILLed at a
    point of a seeded draw, then resumed; the client never stops."""
    two = hosts_behind_postfix
    postfix = two.postfix
    rng = random.Random(SEED)
    plan = kill_points(rng)
    seeded = f"seed {SEED} (LDA_MOVE_SEED), kills {plan}"
    mailbox, relative = new_mailbox(two, "killed")
    client = Client(postfix, mailbox, "killed")
    client.start()
    holder, timings = two.a, []
    try:
        wait_delivered_on(postfix, mailbox, holder, 3)
        for i, (point, fraction) in enumerate(plan):
            target = two.b if holder is two.a else two.a
            start = time.monotonic()
            killed = subprocess.run([sys.executable, "-c", KILLER, mailbox, target.database,
                                     point, str(fraction)],
                                    env=holder.site.env, capture_output=True)
            assert killed.returncode == -signal.SIGKILL, (
                seeded, i, point, killed.stderr.decode()[-2000:])
            resumed = holder.site.run("mailbox", "move", mailbox, "--resume", "--json")
            assert resumed.returncode == 0, (seeded, i, point, resumed.stderr)
            assert json.loads(resumed.stdout)["result"] == "moved", (seeded, i, resumed.stdout)
            timings.append(round(time.monotonic() - start, 2))
            holder = target
            time.sleep(rng.uniform(0.1, 0.6))           # mail meanwhile, on the new host
    finally:
        client.stop()
    maildir = assert_exactly_once(two, client, mailbox, relative, holder, seeded)
    resend_is_discarded(two, client, mailbox, 1, maildir, holder)
    print(f"\n{KILLS} killed moves ({seeded}): {len(client.sent)} messages sent, "
          f"kill + resume seconds {timings}, deferred attempts {deferrals(postfix, mailbox)}, delay (max s, count > 1 s) "
          f"{delays(postfix, mailbox)}, refused at RCPT "
          f"{len(client.refused)}, queue empty {client.settled:.1f} s after postqueue -f")


def test_the_front_queues_mail_for_a_mailbox_under_move(hosts_behind_postfix):
    two = hosts_behind_postfix
    mailbox, _ = new_mailbox(two, "queued")
    killed = subprocess.run([sys.executable, "-c", KILLER, mailbox, two.b.database, "begin",
                             "0"], env=two.a.site.env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    try:
        with smtplib.SMTP("127.0.0.1", two.postfix.port, timeout=WAIT_SECONDS) as smtp:
            smtp.ehlo("client.lda.test")
            smtp.mail(SENDER)
            code, reply = smtp.rcpt(mailbox)
    finally:
        two.a.site.run("mailbox", "move", mailbox, "--resume", check=0)
    assert code == 250, reply

"""LMTP load for bench/compare.py cases 6 and 7, from either of two clients,
into fresh mailboxes, and a check of what reached the Maildirs.

A load is a list of lanes that run at once; a lane is a list of streams that
run one after the other; a stream is SESSIONS LMTP sessions to one address,
sending MESSAGES 3 KB messages between them (MAIL, one RCPT, DATA; a session
is one connection, reused for all its messages, no pipelining):

    smtp-source   Postfix's load generator (package postfix), so that the
                  figure does not depend on a client we wrote:
                  `smtp-source -L -d -s SESSIONS -m MESSAGES -l PAYLOAD
                  -f SENDER -t ADDRESS 127.0.0.1:PORT`, one process per stream.
                  -d keeps a session's connection for its next message
                  (without it every message opens its own).
    own           SESSIONS threads of lmtp_throughput.lmtp_session, each
                  sending MESSAGES / SESSIONS messages.

smtp-source has no option for the Message-ID; it writes its own, `Message-Id:
<PID.FD.N@HOSTNAME>` in hexadecimal (FD the session's socket, N a counter of
the process's messages). One process's are distinct (2,000 of 2,000 at 16
sessions, Postfix 3.7), and processes running at once have different PIDs.
Its body is the same in every message (numbered lines of X), so without those
Message-IDs lda would fall back to a digest of the body and discard all but
the first message per mailbox as duplicates.

The check below does not trust either client: it counts the files in each
Maildir's new/, expects exactly what was sent to it, and refuses a message
without a Message-ID or with one seen twice in the sample.  Every sample gets
mailboxes that no sample had before, so neither lda's DeliveredTo table nor a
fuller Maildir carries over from one sample to the next.
"""

import itertools
import os
import subprocess
import threading
import time
from dataclasses import dataclass

from lmtp_throughput import lmtp_session  # bench/ is on sys.path
from peers import DOMAIN, SMTP_SOURCE

CLIENTS = ("own", "smtp-source")
SENDER = "sender@example.org"
# smtp-source -l is the body's length; its From, To, Date and Message-Id
# lines add about 140 bytes, so a message is about 3 KB, as the own client's.
PAYLOAD = 3 * 1024 - 140


class LoadFailed(Exception):
    pass


@dataclass
class Stream:
    address: str
    maildir: str
    sessions: int
    messages: int


class Server:
    """An LMTP server on loopback and a source of fresh mailboxes on it:
    new_mailbox(user) makes user@DOMAIN's mailbox and returns its Maildir."""

    def __init__(self, name, port, new_mailbox, prefix="load"):
        self.name, self.port, self._new_mailbox = name, port, new_mailbox
        self._names = (f"{prefix}{n}" for n in itertools.count())

    def fresh(self):
        """(address, Maildir) of a mailbox no earlier load used."""
        user = next(self._names)
        return f"{user}@{DOMAIN}", self._new_mailbox(user)


# --- shapes of load -----------------------------------------------------------------

def hot(server, sessions, messages):
    """`sessions` sessions at once, all to one mailbox."""
    address, maildir = server.fresh()
    return [[Stream(address, maildir, sessions, messages)]]


def spread(server, mailboxes, sessions_each, messages_each):
    """`mailboxes` mailboxes, `sessions_each` sessions to each, all at once
    (4 x 4: 16 sessions over 4 mailboxes)."""
    return [[Stream(*server.fresh(), sessions_each, messages_each)] for _ in range(mailboxes)]


def pooled(server, sessions, per_session, concurrency):
    """`sessions` one-session streams, each to its own mailbox, run
    `concurrency` at a time: lane i takes sessions i, i + concurrency, ..."""
    streams = [Stream(*server.fresh(), 1, per_session) for _ in range(sessions)]
    return [streams[lane::concurrency] for lane in range(concurrency)]


def total(lanes):
    return sum(s.messages for lane in lanes for s in lane)


# --- running a load -------------------------------------------------------------------

def measure(client, port, lanes, name):
    """Messages per second of one load, after checking the Maildirs."""
    expected = expected_counts(lanes)
    for maildir in expected:
        if os.listdir(os.path.join(maildir, "new")):
            raise LoadFailed(f"{name}: {maildir} is not a fresh mailbox")
    start = time.perf_counter()
    run_lanes(lanes, lambda stream: send(client, port, stream, name))
    seconds = time.perf_counter() - start
    check(name, expected)
    return total(lanes) / seconds


def run_lanes(lanes, run_stream):
    """Each lane in its own thread, its streams in turn; the first failure
    is raised once every lane has ended."""
    errors = []

    def lane_job(lane):
        try:
            for stream in lane:
                run_stream(stream)
        except Exception as e:  # noqa: BLE001  (re-raised below, in the caller's thread)
            errors.append(e)

    threads = [threading.Thread(target=lane_job, args=(lane,)) for lane in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def send(client, port, stream, name):
    if client == "smtp-source":
        smtp_source(port, stream, name)
    elif client == "own":
        own_client(port, stream)
    else:
        raise ValueError(f"unknown LMTP client {client!r}")


def smtp_source(port, stream, name):
    argv = [SMTP_SOURCE, "-L", "-d", "-s", str(stream.sessions), "-m", str(stream.messages),
            "-l", str(PAYLOAD), "-f", SENDER, "-t", stream.address, f"127.0.0.1:{port}"]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:   # it exits 1 on the first reply it did not expect
        raise LoadFailed(f"{name}: smtp-source exited {done.returncode}: "
                         f"{done.stderr.strip()[-500:]}")


def own_client(port, stream):
    if stream.messages % stream.sessions:
        raise ValueError("the own client gives every session the same number of messages")
    each = stream.messages // stream.sessions
    tag = os.urandom(8).hex()
    lanes = [[[f"{tag}-s{s}-m{m}" for m in range(each)]] for s in range(stream.sessions)]
    run_lanes(lanes, lambda tags: lmtp_session(port, tags, [stream.address]))


# --- what reached the Maildirs ----------------------------------------------------------

def expected_counts(lanes):
    counts = {}
    for lane in lanes:
        for s in lane:
            counts[s.maildir] = counts.get(s.maildir, 0) + s.messages
    return counts


def check(name, expected):
    """Every Maildir holds exactly what was sent to it, each message with a
    Message-ID no other message of the load has."""
    seen = {}
    for maildir, count in expected.items():
        new = os.path.join(maildir, "new")
        files = os.listdir(new)
        if len(files) != count:
            raise LoadFailed(f"{name}: {len(files)} messages in {maildir}, expected {count}")
        for file in files:
            path = os.path.join(new, file)
            message_id = read_message_id(path)
            if message_id is None:
                raise LoadFailed(f"{name}: {path} has no Message-ID")
            if message_id in seen:
                raise LoadFailed(f"{name}: Message-ID {message_id} twice: {seen[message_id]} "
                                 f"and {path}")
            seen[message_id] = path
    return len(seen)


def read_message_id(path):
    """The Message-ID field's value, or None; the header ends at the first
    empty line (RFC 5322 section 2.1)."""
    with open(path, "rb") as f:
        for line in f:
            if line in (b"\n", b"\r\n"):
                return None
            if line[:11].lower() == b"message-id:":
                return line[11:].strip().decode("ascii", "replace")
    return None

"""The real fetchmail as lda lmtp's client, next to Dovecot's lmtp.

fetchmail polls a POP3 mailbox (here a private Dovecot's pop3 on a loopback
port) and hands each message to an LMTP server (`lmtp`, smtphost a unix
socket); it deletes the message from the POP3 server only when delivery
succeeded.  It runs once per poll (-N, no daemon), multidrop (`is * here`:
the recipients are the To: addresses in `localdomains`, `smtpaddress
example.org`), its log (-v) kept per source in the test's directory.

What fetchmail 6.4 does with each reply (its sink.c; the logs show it):
- 250 after DATA for every recipient (delivered, or lda's "already
  delivered, duplicate discarded"): DELE.
- 550 5.1.1 at RCPT: a bounce for that address through localhost:25, the
  others delivered, DELE.
- 452 at RCPT (lda's answer for a full mailbox, lmtp_rcpt_check_quota being
  true by default): RSET, nothing delivered, the message kept for the next
  poll, no bounce.
- 452 after DATA for one recipient and 250 for another (lda with
  lmtp_rcpt_check_quota = false, Dovecot's lmtp by default): an "LMTP
  partial delivery failure" bounce through localhost:25, calling it "a
  permanent error".  With an SMTP listener there (a site whose own MTA sends
  its outgoing mail) the bounce goes out and the message is deleted: the
  full recipient never gets it, which is why lda checks quota at RCPT by
  default.  With none there the message is kept and delivered again at the
  next poll, to both: a resend to the one who has it, which lda's
  DeliveredTo discards and Dovecot's lmtp stores again (PEER_DUPLICATES).

Needs root and Debian's fetchmail, dovecot-pop3d and dovecot-lmtpd
(`.ci/run` installs them); skipped without them.
"""

import os
import shutil
import smtplib
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import LDA, mailbox_paths, poll, write_lda_toml
from dovecot import private_dovecot

FETCHMAIL = shutil.which("fetchmail")
POP3 = next((p for p in ("/usr/lib/dovecot/pop3", "/usr/libexec/dovecot/pop3")
             if os.access(p, os.X_OK)), None)
DOVECOT_LMTP = next((p for p in ("/usr/lib/dovecot/lmtp", "/usr/libexec/dovecot/lmtp")
                     if os.access(p, os.X_OK)), None)

pytestmark = pytest.mark.skipif(
    not (FETCHMAIL and POP3 and DOVECOT_LMTP),
    reason="needs fetchmail, dovecot-pop3d and dovecot-lmtpd (apt-get install fetchmail "
           "dovecot-pop3d dovecot-lmtpd)")

SENDER = "sender@example.net"
# Dovecot's static passdb of tests/dovecot.py takes any password.
PASSWORD = "pop3-secret"


def dovecot_extra(port):
    return f"""\
protocols = lmtp pop3
disable_plaintext_auth = no
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
}}
# RCPT TO:<alice-resend@example.org> is Dovecot's user alice-resend.
auth_username_format = %Ln
# Over quota: a 4xx, as lda's default quota_full = "tempfail" answers.
quota_full_tempfail = yes
"""


# The LMTP servers fetchmail delivers to:
#   "lda": lda lmtp with lda's defaults;
#   "lda-data": lda lmtp judging quota after DATA only
#       (lmtp_rcpt_check_quota = false, Dovecot's default): the reply that
#       makes fetchmail resend;
#   "dovecot": Dovecot's lmtp, its defaults but quota_full_tempfail.
AGENTS = ("lda", "lda-data", "dovecot")
# Each scenario has its own POP3 source per agent and its own alice and
# carol (carol with room for one message, but in "plain").
SCENARIOS = ("plain", "resend", "noid", "bounce", "data-bounce")


def source(scenario, agent):
    return f"src-{scenario}-{agent}"


def address(name, scenario):
    return f"{name}-{scenario}@example.org"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Target:
    socket: str
    maildirs: dict = field(default_factory=dict)      # address -> Maildir
    dovecot_user: dict = field(default_factory=dict)  # address -> who doveadm reads it as


@dataclass
class Rig:
    server: object
    port: int
    targets: dict           # agent -> Target
    sources: dict           # source user -> its Maildir
    logs: Path


def start_lda_lmtp(server, socket_path, config, log):
    return subprocess.Popen(
        [str(LDA), "lmtp", "--listen", f"unix:{socket_path}", "--processes", "1"],
        user=server.owner.uid, group=server.owner.gid, extra_groups=[], cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": str(server.owner.home),
             "LDA_CONFIG": str(config)},
        stdout=subprocess.DEVNULL, stderr=log)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    keep = tmp_path_factory.mktemp("fetchmail")
    port = free_port()
    with private_dovecot(keep, quota_rule=None, extra=dovecot_extra(port)) as server:
        state = server.root / "lda-state"
        run_dir = server.root / "lda-run"
        for directory in (state, run_dir):
            directory.mkdir()
            server.owner.chown_tree(directory)
        config = write_lda_toml(server.root / "lda.toml",
                                {"state_dir": str(state), "log": "stderr"})
        data_config = write_lda_toml(server.root / "lda-data.toml", {
            "state_dir": str(state), "log": "stderr", "lmtp_rcpt_check_quota": False})
        lda = Target(str(run_dir / "lmtp"))
        targets = {"lda": lda,
                   "lda-data": Target(str(run_dir / "lmtp-data"), lda.maildirs,
                                      lda.dovecot_user),
                   "dovecot": Target(str(server.root / "run" / "lmtp"))}
        sources = {}
        # Every Dovecot user before the first login: its passwd-file userdb
        # may miss a line added within the second of its last read.
        for scenario in SCENARIOS:
            for agent in AGENTS:
                sources[source(scenario, agent)] = server.add_user(source(scenario, agent))
            for name in ("alice", "carol"):
                who = address(name, scenario)
                full = scenario != "plain" and name == "carol"
                done = server.lda("mailbox", "create", who,
                                  *(["--quota-messages", "1"] if full else []),
                                  env={"LDA_CONFIG": str(config)})
                assert done.returncode == 0, done.stderr
                lda.dovecot_user[who] = f"l-{name}-{scenario}"
                lda.maildirs[who] = server.add_user(
                    lda.dovecot_user[who], maildir=str(mailbox_paths(state, who)[1]))
                mine = targets["dovecot"]
                mine.dovecot_user[who] = f"{name}-{scenario}"
                mine.maildirs[who] = server.add_user(
                    mine.dovecot_user[who],
                    fields=["userdb_quota_rule=*:messages=1"] if full else [])
        with (keep / "lda-lmtp.log").open("wb") as log:
            servers = [start_lda_lmtp(server, targets["lda"].socket, config, log),
                       start_lda_lmtp(server, targets["lda-data"].socket, data_config, log)]
            try:
                for agent in ("lda", "lda-data"):
                    assert poll(lambda: Path(targets[agent].socket).exists(), 20), \
                        f"{agent} lmtp did not listen"
                yield Rig(server, port, targets, sources, keep)
            finally:
                for process in servers:
                    process.terminate()
                    process.wait(30)


# --- the POP3 mailbox, the LMTP mailboxes, fetchmail ------------------------------

def message(subject, to, message_id=True, extra=()):
    lines = [*extra, f"From: Sender <{SENDER}>", "To: " + ", ".join(to),
             f"Subject: {subject}", "Date: Sat, 05 Dec 2026 09:00:00 +0000"]
    if message_id:
        lines.append(f"Message-ID: <{subject}@example.net>")
    return ("\r\n".join(lines) + "\r\n\r\nHello.\r\n").encode()


def put(rig, src, data):
    """A message into the POP3 source's Maildir, as its MTA would leave it."""
    path = rig.sources[src] / "new" / f"{time.time_ns()}.P{os.getpid()}.fetchmail-test"
    path.write_bytes(data)
    os.chown(path, rig.server.owner.uid, rig.server.owner.gid)


def on_server(rig, src):
    return sum(len(os.listdir(rig.sources[src] / sub)) for sub in ("new", "cur"))


def copies(rig, agent, who, subject):
    """How many messages in who's Maildir (new and cur) have that Subject."""
    line = f"\nSubject: {subject}\n".encode()
    return sum(line in path.read_bytes().replace(b"\r\n", b"\n")
               for sub in ("new", "cur")
               for path in (rig.targets[agent].maildirs[who] / sub).iterdir())


def fill(rig, agent, who, scenario):
    """who's one message, through agent's LMTP: her quota is then full."""
    with smtplib.LMTP(rig.targets[agent].socket) as client:
        assert client.sendmail(SENDER, [who], message(f"filler-{scenario}", [who])) == {}


def free(rig, agent, who, scenario):
    """The filler expunged as her IMAP client would (Dovecot updates the
    maildirsize lda reads)."""
    rig.server.doveadm("expunge", "-u", rig.targets[agent].dovecot_user[who],
                       "mailbox", "INBOX", "header", "Subject", f"filler-{scenario}")


def fetch(rig, src, agent, envelope="no envelope"):
    """One fetchmail poll of src into agent's LMTP socket: (exit status, log).
    envelope: fetchmail's server option for where it finds the recipients
    ("no envelope": the To: and Cc: fields)."""
    home = rig.logs / f"home-{src}"
    home.mkdir(mode=0o700, exist_ok=True)
    rc = home / "fetchmailrc"
    rc.write_text(
        f"poll 127.0.0.1 protocol pop3 service {rig.port} {envelope}\n"
        f"  localdomains example.org\n"
        f'  user "{src}" password "{PASSWORD}" is * here\n'
        f'  sslproto "" lmtp smtphost "{rig.targets[agent].socket}" smtpaddress example.org\n')
    rc.chmod(0o600)
    done = subprocess.run([FETCHMAIL, "-N", "--nosyslog", "-v", "-f", str(rc),
                           "--pidfile", str(home / "pid")],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(home),
                               "FETCHMAILHOME": str(home), "LC_ALL": "C"})
    log = done.stdout + done.stderr
    with (rig.logs / f"{src}.log").open("a") as kept:
        kept.write(f"--- exit {done.returncode}\n{log}")
    # 0: mail delivered (or kept after a transient error), 1: no mail.
    assert done.returncode in (0, 1), log
    return done.returncode, log


def lmtp_lines(log):
    return [line.split("LMTP< ", 1)[1] for line in log.splitlines()
            if "LMTP< " in line and line.split("LMTP< ", 1)[1][:3] in ("250", "452", "550")
            and "<" in line.split("LMTP< ", 1)[1]]


class BounceSink:
    """An SMTP listener on 127.0.0.1:25, where fetchmail sends its bounces:
    what a site whose own MTA sends its outgoing mail has there."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.mail = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.mail.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
                return "250 2.0.0 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=25)

    def __enter__(self):
        try:
            self.controller.start()
        except (OSError, RuntimeError) as e:
            pytest.skip(f"cannot listen on 127.0.0.1:25 for fetchmail's bounces: {e}")
        return self

    def __exit__(self, *exc):
        self.controller.stop()


# --- (1) plain -----------------------------------------------------------------------

def test_plain_messages_are_stored_once_and_removed_from_the_server(rig):
    src = source("plain", "lda")
    alice, carol = address("alice", "plain"), address("carol", "plain")
    put(rig, src, message("plain-one", [alice]))
    put(rig, src, message("plain-two", [alice, carol]))
    status, log = fetch(rig, src, "lda")
    assert status == 0 and log.count("POP3> DELE ") == 2, log
    assert lmtp_lines(log) == [f"250 2.0.0 <{alice}> delivered"] * 2 + [
        f"250 2.0.0 <{carol}> delivered"]
    assert on_server(rig, src) == 0
    assert [copies(rig, "lda", alice, "plain-one"), copies(rig, "lda", alice, "plain-two"),
            copies(rig, "lda", carol, "plain-two")] == [1, 1, 1]
    # Nothing left to fetch: the next poll finds no mail.
    assert fetch(rig, src, "lda")[0] == 1


def test_an_unknown_recipient_is_bounced_by_fetchmail_and_the_others_served(rig):
    """550 5.1.1 at RCPT: fetchmail bounces for that address alone and
    delivers to the others, then deletes the message."""
    src = source("plain", "lda-data")
    alice = address("alice", "plain")
    put(rig, src, message("plain-unknown", [alice, "nobody@example.org"]))
    with BounceSink() as sink:
        log = fetch(rig, src, "lda")[1]
    assert "550 5.1.1 <nobody@example.org>: unknown recipient" in log, log
    assert lmtp_lines(log)[-1] == f"250 2.0.0 <{alice}> delivered", log
    assert "POP3> DELE 1" in log and on_server(rig, src) == 0
    [(bounce_from, bounce_to, bounce)] = sink.mail
    assert (bounce_from, bounce_to) == ("<>", [SENDER])
    assert b"nobody@example.org" in bounce and alice.encode() not in bounce.split(
        b"text/rfc822-headers")[0], bounce
    assert copies(rig, "lda", alice, "plain-unknown") == 1


def test_multidrop_with_an_envelope_field(rig):
    """fetchmail's `envelope X-Original-To`: the recipient is the one that
    field names, not the To: (a list's address) of the message."""
    src = source("plain", "dovecot")
    alice = address("alice", "plain")
    put(rig, src, message("plain-envelope", ["list@lists.example.net"],
                          extra=[f"X-Original-To: {alice}"]))
    log = fetch(rig, src, "lda", envelope='envelope "X-Original-To"')[1]
    assert lmtp_lines(log) == [f"250 2.0.0 <{alice}> delivered"], log
    assert on_server(rig, src) == 0
    assert copies(rig, "lda", alice, "plain-envelope") == 1


# --- (2) the resend after a 4xx for one recipient ----------------------------------------

def resend_story(rig, agent, scenario, message_id=True):
    """A message for alice and carol, carol full: two polls, then carol's
    quota freed and a third.  [(alice's copies, carol's copies, messages
    left on the server) after each poll], the logs."""
    src = source(scenario, agent)
    alice, carol = address("alice", scenario), address("carol", scenario)
    fill(rig, agent, carol, scenario)
    subject = f"{scenario}-{agent}"
    put(rig, src, message(subject, [alice, carol], message_id=message_id))
    figures, logs = [], []
    for number in (1, 2, 3):
        if number == 3:
            free(rig, agent, carol, scenario)
        logs.append(fetch(rig, src, agent)[1])
        figures.append((copies(rig, agent, alice, subject), copies(rig, agent, carol, subject),
                        on_server(rig, src)))
    return figures, logs


# What Dovecot's lmtp does with the same resends: a copy for alice at each
# poll.  It keeps no record of what it delivered; lda's DeliveredTo answers
# the resend "already delivered" and stores nothing.
PEER_DUPLICATES = {"dovecot": [(1, 0, 1), (2, 0, 1), (3, 1, 0)]}


@pytest.mark.parametrize("agent", ["lda-data", "dovecot"])
def test_resend_after_a_4xx_for_one_recipient(rig, agent):
    """carol's 452 after DATA: with no SMTP listener on localhost:25 for its
    bounce, fetchmail keeps the message and delivers it again to both."""
    figures, logs = resend_story(rig, agent, "resend")
    print(f"\n{agent}: (alice's copies, carol's, left on the server) per poll: {figures}")
    alice, carol = address("alice", "resend"), address("carol", "resend")
    for log in logs[:2]:
        assert "not flushed" in log and "POP3> DELE" not in log, log
        assert f"452 4.2.2 <{carol}>" in log, log
    assert "POP3> DELE 1" in logs[2], logs[2]
    if agent in PEER_DUPLICATES:
        assert figures == PEER_DUPLICATES[agent]
        return
    assert figures == [(1, 0, 1), (1, 0, 1), (1, 1, 0)]
    assert lmtp_lines(logs[0])[0] == f"250 2.0.0 <{alice}> delivered"
    for log in logs[1:]:
        assert lmtp_lines(log)[0] == (f"250 2.0.0 <{alice}> already delivered, "
                                      "duplicate discarded"), log


# --- (3) no Message-ID ----------------------------------------------------------------

def test_resend_without_message_id_is_still_discarded(rig):
    """No Message-ID: lda's key is a digest of the body (and the Date), not
    of the header block, where fetchmail's Received field differs at each
    poll; the resend is still found (DESIGN.md, DeliveredTo)."""
    figures, logs = resend_story(rig, "lda-data", "noid", message_id=False)
    alice = address("alice", "noid")
    assert figures == [(1, 0, 1), (1, 0, 1), (1, 1, 0)]
    for log in logs[1:]:
        assert lmtp_lines(log)[0] == (f"250 2.0.0 <{alice}> already delivered, "
                                      "duplicate discarded"), log
    (stored,) = [p.read_bytes() for sub in ("new", "cur")
                 for p in (rig.targets["lda"].maildirs[alice] / sub).iterdir()]
    assert b"Message-ID" not in stored and b"Received: from" in stored, stored[:600]


# --- (4) the bounce: a site with an SMTP listener on localhost:25 ------------------------

def test_a_4xx_after_data_makes_fetchmail_bounce_and_delete(rig):
    """Why lda judges quota at RCPT by default: carol's 452 after DATA
    (lmtp_rcpt_check_quota = false, as Dovecot's lmtp answers by default)
    makes fetchmail bounce the message as "a permanent error" and delete it
    from the server: carol never gets it.  fetchmail's behaviour, shown
    here with lda judging after DATA."""
    scenario, agent = "data-bounce", "lda-data"
    src = source(scenario, agent)
    alice, carol = address("alice", scenario), address("carol", scenario)
    fill(rig, agent, carol, scenario)
    put(rig, src, message(scenario, [alice, carol]))
    with BounceSink() as sink:
        log = fetch(rig, src, agent)[1]
    assert lmtp_lines(log) == [f"250 2.0.0 <{alice}> delivered", lmtp_lines(log)[1]]
    assert lmtp_lines(log)[1] == f"452 4.2.2 <{carol}> Quota exceeded (mailbox for user is full)"
    assert "LMTP partial delivery failure" in sink.mail[0][2].decode(), sink.mail
    assert "POP3> DELE 1" in log and on_server(rig, src) == 0
    assert (copies(rig, agent, alice, scenario), copies(rig, agent, carol, scenario)) == (1, 0)


def test_a_full_mailbox_never_makes_fetchmail_bounce(rig):
    """lda's defaults: carol's full mailbox is refused at RCPT (452 4.2.2);
    fetchmail then keeps the message without a bounce, and delivers it to
    both, once each, when carol has room."""
    scenario, agent = "bounce", "lda"
    src = source(scenario, agent)
    alice, carol = address("alice", scenario), address("carol", scenario)
    fill(rig, agent, carol, scenario)
    put(rig, src, message(scenario, [alice, carol]))
    with BounceSink() as sink:
        first = fetch(rig, src, agent)[1]
        assert sink.mail == [] and on_server(rig, src) == 1, first
        again = fetch(rig, src, agent)[1]  # carol still full: the same answer
        assert sink.mail == [] and on_server(rig, src) == 1, again
        assert copies(rig, agent, alice, scenario) == 0
        free(rig, agent, carol, scenario)
        second = fetch(rig, src, agent)[1]
    assert sink.mail == [], second
    assert f"452 4.2.2 <{carol}>: Quota exceeded (mailbox for user is full)" in first \
        and "RSET" in first, first
    assert lmtp_lines(second) == [f"250 2.0.0 <{alice}> delivered",
                                  f"250 2.0.0 <{carol}> delivered"], second
    assert on_server(rig, src) == 0
    assert (copies(rig, agent, alice, scenario), copies(rig, agent, carol, scenario)) == (1, 1)

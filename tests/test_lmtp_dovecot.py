"""The LMTP conversation: what Dovecot's lmtp and `lda lmtp` answer to the same client.

A site replaces Dovecot 2.3's lmtp with `lda lmtp` by pointing Postfix's
`lmtp(8)` (or Exim's, or fetchmail's) at another socket; the client keeps
talking as it did.  One private Dovecot (`protocols = lmtp`) and one `lda
lmtp` (managed mode, one process) serve the same addresses, each into
Maildirs of its own: alice, bob, carol who is over her quota on both, and
no nobody.  Each conversation of CORPUS is held with both, and each reply
is compared by its class (2/4/5), its code and its RFC 3463 code; after
DATA the client reads one reply per accepted RCPT (RFC 2033 section 4.2),
so one more or one less shows as a reply out of step.  The messages each
conversation stored are compared too.

The bytes are the same for both, but where a real client reads the LHLO
reply: Postfix's lmtp(8) adds SIZE=, BODY=8BITMIME, SMTPUTF8 and DSN's
parameters only when they are offered (mail(), rcpt()), and Exim sends BDAT
only where CHUNKING is (chunk()).  Cases named "-unoffered" send them
regardless.

The quota: Dovecot's default refuses a full mailbox for good
(`quota_full_tempfail = no`: 552 5.2.2 at DATA, `lmtp_rcpt_check_quota =
no`), so lda runs with `quota_full = "reject"` and `lmtp_rcpt_check_quota =
false` (lda's default is true), its settings for the same.

lda's differences on purpose are named with their reason: in the LHLO
keywords (ONLY_DOVECOT, ONLY_LDA), in the RFC 3463 code of one reply code
(ENHANCED), and per conversation (DIFFERENCES); anything else fails.  Run
with -s to see both servers' replies for each case.
"""
import contextlib
import re
import socket
import subprocess
from dataclasses import dataclass, field

import pytest

from conftest import LDA, mailbox_paths, poll, write_lda_toml
from dovecot import LMTP_CONF, private_dovecot

DOMAIN = "example.org"
USERS = ("alice", "bob", "carol", "dave")
FULL = ("carol", "dave")  # over their quota on both servers
QUOTA = 4096            # carol's, in bytes; FILLER is more than it holds
FILLER = b"Subject: filler\n\n" + b"x" * 8000 + b"\n"
SIZE_LIMIT = 100_000    # lda's lmtp_max_message_size


# --- A client that follows the conversation -----------------------------------------

@dataclass
class Reply:
    code: str                 # "250"; "---" when the connection closed instead
    enhanced: str = ""        # "2.1.5"; "" when there is none
    lines: list = field(default_factory=list)
    recipient: str = ""       # after the message: the accepted RCPT it answers

    def key(self):
        """What is compared: the code (its class with it) and the RFC 3463 code."""
        return f"{self.code} {self.enhanced}".rstrip()

    def __str__(self):
        return " | ".join(self.lines) if self.lines else self.code


CLOSED = Reply("---")
ENHANCED_CODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?= |$)")


class Client:
    """A client as Postfix's lmtp(8) is one: it reads the LHLO reply's
    keywords and adds MAIL's and RCPT's parameters only when they are
    advertised, sends the message only after a 354, and reads one reply
    per accepted RCPT after it."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.file = self.sock.makefile("rb")
        self.keywords = set()     # the LHLO reply's, upper case, first word each
        self.accepted = []        # the RCPTs accepted in this transaction
        self.in_data = False      # DATA was answered 354
        try:
            self.sock.connect(path)
            self.greeting = self.reply()
        except BaseException:
            self.close()
            raise

    def reply(self):
        lines = []
        while True:
            try:
                raw = self.file.readline()
            except OSError:
                raw = b""
            if not raw:
                return Reply("---", "", lines) if lines else CLOSED
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line)
            if line[3:4] != "-":
                match = ENHANCED_CODE.match(line[4:])
                return Reply(line[:3], match[0] if match else "", lines)

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            pass

    def commands(self, lines):
        """Command lines in one write (several: pipelined, RFC 2920), a reply
        read for each; a line may be a function of the LHLO keywords."""
        lines = [line(self.keywords) if callable(line) else line for line in lines]
        self.send(b"".join(line.encode() + b"\r\n" for line in lines))
        replies = []
        for line in lines:
            reply = self.reply()
            replies.append(reply)
            self.follow(line, reply)
            if reply is CLOSED:
                break
        return replies

    def follow(self, line, reply):
        verb, ok = line.split(" ", 1)[0].upper(), reply.code[:1] == "2"
        if verb == "LHLO" and ok:
            self.keywords = {line[4:].split(" ")[0].upper() for line in reply.lines[1:]}
        if verb in ("LHLO", "RSET") or (verb == "MAIL" and ok):
            self.accepted = []
        elif verb == "RCPT" and ok:
            self.accepted.append(line.partition("<")[2].partition(">")[0])
        self.in_data = verb == "DATA" and reply.code == "354"

    def per_recipient(self, least=0):
        """A reply read for each accepted RCPT (at least `least`), which
        it is taken to answer (RFC 2033 section 4.2: in RCPT order)."""
        recipients, self.accepted = self.accepted, []
        replies = []
        for index in range(max(len(recipients), least)):
            reply = self.reply()
            if reply is not CLOSED and index < len(recipients):
                reply.recipient = recipients[index]
            replies.append(reply)
        return replies

    def message(self, data, end=b".\r\n"):
        """After a 354: the message and `end`, a reply per accepted RCPT."""
        if not self.in_data:
            return []
        self.in_data = False
        self.send(data + end)
        return self.per_recipient()

    def chunk(self, data):
        """The message in one BDAT LAST (RFC 3030) where CHUNKING is
        advertised, else by DATA, as Exim's client chooses."""
        if "CHUNKING" not in self.keywords:
            return self.commands(["DATA"]) + self.message(data)
        self.send(b"BDAT %d LAST\r\n" % len(data) + data)
        return self.per_recipient(least=1)

    def close(self):
        self.file.close()
        self.sock.close()


# --- The servers ----------------------------------------------------------------------

@dataclass
class Servers:
    sockets: dict             # {"dovecot": path, "lda": path, ...}
    maildirs: dict            # {("dovecot", "alice"): Path, ...}

    def stored(self, agent):
        """{user: the messages in new/} of the server named agent."""
        return {user: len(list((path / "new").iterdir()))
                for (name, user), path in self.maildirs.items() if name == agent}


@contextlib.contextmanager
def lda_lmtp(server, socket_path, config, log_path):
    """`lda lmtp` (one process) on socket_path, run as the mail owner."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(LDA), "lmtp", "--listen", f"unix:{socket_path}", "--processes", "1"],
            user=server.owner.uid, group=server.owner.gid, extra_groups=[], cwd="/",
            env={"PATH": "/usr/bin:/bin", "HOME": str(server.owner.home),
                 "LDA_CONFIG": str(config)},
            stdout=subprocess.DEVNULL, stderr=log)
        try:
            assert poll(socket_path.exists, 20), f"lda lmtp did not listen: {log_path}"
            yield str(socket_path)
        finally:
            process.terminate()
            process.wait(30)


def fill(server, maildir):
    """Put maildir over QUOTA."""
    filler = maildir / "cur" / "1.filler.example.org:2,S"
    filler.write_bytes(FILLER)
    server.owner.chown_tree(filler)


def dovecot_users(server, users):
    """{user: Maildir} for Dovecot users, those in FULL over their quota
    (a userdb field)."""
    maildirs = {user: server.add_user(user) for user in users}
    passwd = server.root / "users"
    text = passwd.read_text()
    for user in set(users) & set(FULL):
        text = text.replace(f"/{user}::\n", f"/{user}::userdb_quota_rule=*:storage={QUOTA}B\n")
    passwd.write_text(text)
    for user in set(users) & set(FULL):
        fill(server, maildirs[user])
        server.recalc(user)
    return maildirs


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Dovecot's lmtp ("dovecot") and `lda lmtp` ("lda"), each with its own
    alice, bob and carol, carol over her quota on both; and for
    RCPT_QUOTA_CASES, the same two checking quota at RCPT
    (lmtp_rcpt_check_quota in both): "dovecot-rcpt-quota" with alice and
    dave, "lda-rcpt-quota" on lda's mailboxes, dave over his quota."""
    keep = tmp_path_factory.mktemp("lmtp-dovecot")
    with private_dovecot(keep, quota_rule=None, extra=LMTP_CONF) as server, \
            private_dovecot(tmp_path_factory.mktemp("lmtp-dovecot-rcpt-quota"), quota_rule=None,
                            extra=LMTP_CONF + "lmtp_rcpt_check_quota = yes\n") as checking:
        state = server.root / "lda-state"
        run_dir = server.root / "lda-run"
        for directory in (state, run_dir):
            directory.mkdir()
            server.owner.chown_tree(directory)
        settings = {"state_dir": str(state), "log": "stderr", "quota_full": "reject",
                    "lmtp_max_message_size": SIZE_LIMIT, "lmtp_rcpt_check_quota": False}
        config = write_lda_toml(server.root / "lda.toml", settings)
        rcpt_config = write_lda_toml(server.root / "lda-rcpt-quota.toml",
                                     {**settings, "lmtp_rcpt_check_quota": True})
        env = {"LDA_CONFIG": str(config)}
        maildirs = {}
        for user in USERS:
            address = f"{user}@{DOMAIN}"
            quota = ("--quota-storage", f"{QUOTA}") if user in FULL else ()
            done = server.lda("mailbox", "create", address, *quota, env=env)
            assert done.returncode == 0, done.stderr
            maildirs["lda", user] = maildirs["lda-rcpt-quota", user] = mailbox_paths(
                state, address)[1]
            if user in FULL:
                fill(server, maildirs["lda", user])
                done = server.lda("quota", "recalc", address, env=env)
                assert done.returncode == 0, done.stderr
        for user, maildir in dovecot_users(server, USERS[:3]).items():
            maildirs["dovecot", user] = maildir
        for user, maildir in dovecot_users(checking, ("alice", "dave")).items():
            maildirs["dovecot-rcpt-quota", user] = maildir
        with lda_lmtp(server, run_dir / "lmtp", config, keep / "lda-lmtp.log") as lda, \
                lda_lmtp(server, run_dir / "lmtp-rcpt-quota", rcpt_config,
                         keep / "lda-lmtp-rcpt-quota.log") as lda_rcpt_quota:
            yield Servers({"dovecot": str(server.root / "run" / "lmtp"), "lda": lda,
                           "dovecot-rcpt-quota": str(checking.root / "run" / "lmtp"),
                           "lda-rcpt-quota": lda_rcpt_quota}, maildirs)


# --- The conversations ----------------------------------------------------------------

SENDER = f"sender@{DOMAIN}"
ALICE, BOB, CAROL, DAVE = (f"{user}@{DOMAIN}" for user in USERS)
NOBODY = f"nobody@{DOMAIN}"


def message(tag):
    return (f"From: Sender <{SENDER}>\r\nTo: {ALICE}\r\nMessage-ID: <{tag}@conversation>\r\n"
            f"Subject: {tag}\r\n\r\nHello.\r\n").encode()


def cmd(*lines):
    """Command lines sent in one write (several: pipelined)."""
    return ("cmd", list(lines))


def msg(tag, end=b".\r\n"):
    """The message after a 354, then `end` (its final dot and what follows)."""
    return ("msg", message(tag), end)


def chunk(tag):
    return ("chunk", message(tag))


def raw(data, replies):
    return ("raw", data, replies)


DROP = ("drop",)


def mail(sender, tag, smtputf8=False):
    """MAIL as Postfix's lmtp(8) writes it for an 8-bit message
    (smtp_proto.c): SIZE= and BODY=8BITMIME when the LHLO reply offered
    them, SMTPUTF8 for a UTF-8 sender when offered, DSN's RET= and ENVID=
    when DSN was (neither server offers it: see the "dsn-" cases)."""
    def line(keywords):
        text = f"MAIL FROM:<{sender}>"
        if "SIZE" in keywords:
            text += f" SIZE={len(message(tag))}"
        if "8BITMIME" in keywords:
            text += " BODY=8BITMIME"
        if smtputf8 and "SMTPUTF8" in keywords:
            text += " SMTPUTF8"
        if "DSN" in keywords:
            text += " RET=HDRS ENVID=QQ314159"
        return text
    return line


def rcpt(address):
    """RCPT as Postfix's lmtp(8) writes it: NOTIFY= and ORCPT= when DSN was
    offered."""
    def line(keywords):
        dsn = f" NOTIFY=FAILURE,DELAY ORCPT=rfc822;{address}" if "DSN" in keywords else ""
        return f"RCPT TO:<{address}>{dsn}"
    return line


LHLO = cmd("LHLO client.example.org")
QUIT = cmd("QUIT")

CORPUS = {
    # Postfix's lmtp(8): LHLO, then MAIL, the RCPTs and DATA in one write
    # (PIPELINING), one reply per accepted RCPT after the message, RSET
    # before the next transaction on a cached connection, QUIT at the end.
    "postfix-pipelined": [
        LHLO,
        cmd(mail(SENDER, "pf1"), rcpt(ALICE), rcpt(NOBODY), rcpt(BOB), "DATA"),
        msg("pf1"),
        cmd("RSET"),
        cmd(mail(SENDER, "pf2"), rcpt(BOB), "DATA"),
        msg("pf2"),
        QUIT],
    "postfix-smtputf8-sender": [
        LHLO, cmd(mail(f"j\u00f6rg@{DOMAIN}", "utf8", smtputf8=True), rcpt(ALICE), "DATA"),
        msg("utf8"), QUIT],
    "postfix-over-quota-and-unknown": [
        LHLO, cmd(mail(SENDER, "pfq"), rcpt(CAROL), rcpt(NOBODY), rcpt(ALICE), "DATA"),
        msg("pfq"), QUIT],
    # Exim's lmtp transport and its smtp transport with protocol = lmtp:
    # one command at a time (MAIL's parameters as Postfix's), BDAT when
    # CHUNKING is offered.
    "exim": [LHLO, cmd(mail(SENDER, "exim")), cmd(rcpt(ALICE)), cmd(rcpt(BOB)), cmd("DATA"),
             msg("exim"), QUIT],
    "exim-chunking": [LHLO, cmd(mail(SENDER, "bdat")), cmd(rcpt(ALICE)), chunk("bdat"), QUIT],
    # Exim's smtp transport (protocol = lmtp) pipelines QUIT after the final
    # dot when it has nothing more to send, and starts a next transaction
    # without RSET.
    "exim-pipelined-quit": [
        LHLO, cmd(mail(SENDER, "ex1"), rcpt(ALICE), "DATA"), msg("ex1"),
        cmd(mail(SENDER, "ex2"), rcpt(BOB), "DATA"), msg("ex2", end=b".\r\nQUIT\r\n"),
        raw(b"", 1)],
    # fetchmail --lmtp: one command at a time, RSET after the message.
    "fetchmail": [LHLO, cmd(mail(SENDER, "fm")), cmd(rcpt(ALICE)), cmd("DATA"), msg("fm"),
                  cmd("RSET"), QUIT],
    # The same parameters whether offered or not (a client that does not
    # read the LHLO reply).
    "size-unoffered": [LHLO, cmd(f"MAIL FROM:<{SENDER}> SIZE=300"), QUIT],
    "size-over-limit": [LHLO, cmd(f"MAIL FROM:<{SENDER}> SIZE={SIZE_LIMIT * 10}"), QUIT],
    "body-8bitmime": [LHLO, cmd(f"MAIL FROM:<{SENDER}> BODY=8BITMIME"), QUIT],
    "body-binarymime": [LHLO, cmd(f"MAIL FROM:<{SENDER}> BODY=BINARYMIME"), QUIT],
    "body-unknown": [LHLO, cmd(f"MAIL FROM:<{SENDER}> BODY=9BIT"), QUIT],
    "smtputf8-unoffered": [LHLO, cmd(f"MAIL FROM:<j\u00f6rg@{DOMAIN}> SMTPUTF8"), QUIT],
    "utf8-sender-without-smtputf8": [LHLO, cmd(f"MAIL FROM:<j\u00f6rg@{DOMAIN}>"), QUIT],
    "dsn-mail-unoffered": [LHLO, cmd(f"MAIL FROM:<{SENDER}> RET=HDRS ENVID=QQ314159"), QUIT],
    "dsn-rcpt-unoffered": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"),
                           cmd(f"RCPT TO:<{ALICE}> NOTIFY=FAILURE ORCPT=rfc822;{ALICE}"),
                           QUIT],
    # ORCPT= alone: Dovecot's lmtp takes it unoffered (its proxy and director
    # add ORCPT=rfc822;<original> for a backend whether DSN is offered or not).
    "orcpt-unoffered": [LHLO, cmd(f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{ALICE}> ORCPT=rfc822;{ALICE}",
                                  f"RCPT TO:<{BOB}> ORCPT=rfc822;alice+2Bx@{DOMAIN}", "DATA"),
                        msg("orcpt"), QUIT],
    "orcpt-malformed": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<{ALICE}> ORCPT=bogus"),
                        QUIT],
    "starttls-unoffered": [LHLO, cmd("STARTTLS"), QUIT],
    # The order of commands.
    "before-lhlo": [cmd(f"MAIL FROM:<{SENDER}>"), cmd("RSET"), cmd("NOOP"), LHLO, QUIT],
    "helo-ehlo": [cmd("HELO client.example.org"), cmd("EHLO client.example.org"), QUIT],
    "lhlo-no-name": [cmd("LHLO"), QUIT],
    "lhlo-twice-resets": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), LHLO, cmd(f"RCPT TO:<{ALICE}>"),
                          QUIT],
    "mail-twice": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"MAIL FROM:<{SENDER}>"), QUIT],
    "rcpt-before-mail": [LHLO, cmd(f"RCPT TO:<{ALICE}>"), QUIT],
    "data-before-mail": [LHLO, cmd("DATA"), QUIT],
    "data-before-rcpt": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd("DATA"), QUIT],
    "data-no-recipient-accepted": [
        LHLO, cmd(f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{NOBODY}>", "DATA"), cmd("RSET"), QUIT],
    "rset-ends-transaction": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<{ALICE}>"),
                              cmd("RSET"), cmd("DATA"), QUIT],
    "rset-with-argument": [LHLO, cmd("RSET x"), QUIT],
    "data-with-argument": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<{ALICE}>"),
                           cmd("DATA x"), QUIT],
    "lower-case-commands": [cmd("lhlo client.example.org"), cmd(f"mail from:<{SENDER}>"),
                            cmd(f"rcpt to:<{ALICE}>"), cmd("data"), msg("lower"), cmd("quit")],
    "space-after-colon": [LHLO, cmd(f"MAIL FROM: <{SENDER}>"), cmd(f"RCPT TO: <{ALICE}>"),
                          QUIT],
    "quit-with-argument": [LHLO, cmd("QUIT now")],
    "empty-line": [LHLO, cmd(""), QUIT],
    "lhlo-address-literal": [cmd("LHLO [127.0.0.1]"), QUIT],
    "bare-lf-commands": [raw(b"LHLO c\nNOOP\n", 2), QUIT],
    "many-unknown-commands": [LHLO] + [cmd(f"XYZZY{'A' * n}") for n in range(1, 13)] + [QUIT],
    "unknown-commands-between-others": [LHLO] + [cmd(f"XYZZY{'A' * n}", "NOOP") for n in range(1, 9)]
    + [QUIT],
    # Other commands.
    "noop-with-argument": [LHLO, cmd("NOOP hello"), QUIT],
    "unknown-command": [LHLO, cmd("FOO bar"), QUIT],
    "vrfy": [LHLO, cmd("VRFY alice"), QUIT],
    "vrfy-address": [LHLO, cmd(f"VRFY {ALICE}"), QUIT],
    "noop": [LHLO, cmd("NOOP"), QUIT],
    "help": [LHLO, cmd("HELP"), QUIT],
    "expn": [LHLO, cmd("EXPN staff"), QUIT],
    # AUTH, which neither offers: a client configured for SASL tries it anyway.
    "auth-unoffered": [LHLO, cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA=="), QUIT],
    # Addresses.
    "sender-without-brackets": [LHLO, cmd(f"MAIL FROM:{SENDER}"), QUIT],
    "sender-with-space": [LHLO, cmd("MAIL FROM:<a b@example.org>"), QUIT],
    "sender-without-domain": [LHLO, cmd("MAIL FROM:<sender@>"), QUIT],
    # The root's dot after the domain: fetchmail hands on the sender a
    # message names, and drops, unbounced, one whose MAIL gets 501 (its
    # default antispam codes).
    "sender-trailing-dot": [LHLO, cmd(f"MAIL FROM:<{SENDER}.>"), cmd(f"RCPT TO:<{ALICE}>"),
                            cmd("DATA"), msg("tdot"), QUIT],
    "nul-in-sender": [LHLO, cmd("MAIL FROM:<a\0b@example.org>"), QUIT],
    "null-sender": [LHLO, cmd("MAIL FROM:<>"), cmd(f"RCPT TO:<{ALICE}>"), cmd("DATA"),
                    msg("null"), QUIT],
    "recipient-without-brackets": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:{ALICE}"),
                                   QUIT],
    "recipient-without-domain": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd("RCPT TO:<alice@>"),
                                 QUIT],
    "recipient-domain-only": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"),
                              cmd(f"RCPT TO:<@{DOMAIN}>"), QUIT],
    "recipient-unclosed": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<{ALICE}"), QUIT],
    "recipient-local-only": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd("RCPT TO:<alice>"), QUIT],
    "recipient-null": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd("RCPT TO:<>"), QUIT],
    "sender-1000": [LHLO, cmd(f"MAIL FROM:<{'s' * 1000}@{DOMAIN}>"), QUIT],
    "recipient-1000": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"),
                       cmd(f"RCPT TO:<{'a' * 1000}@{DOMAIN}>"), QUIT],
    "command-line-too-long": [LHLO, cmd("NOOP " + "x" * 5000), cmd(f"MAIL FROM:<{SENDER}>"),
                              cmd(f"RCPT TO:<{ALICE}> " + "X" * 5000), QUIT],
    # The end of a session: nothing is stored on either server.
    "quit-mid-transaction": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<{BOB}>"), QUIT],
    "drop-mid-data": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<{BOB}>"), cmd("DATA"),
                      raw(message("drop")[:40], 0), DROP],
    "drop-before-final-dot": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<{BOB}>"),
                              cmd("DATA"), raw(message("nodot"), 0), DROP],
    # The message.
    "empty-message": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<{ALICE}>"),
                      cmd("DATA"), ("msg", b"", b".\r\n"), QUIT],
    "message-over-size-limit": [
        LHLO, cmd(f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{ALICE}>", f"RCPT TO:<{BOB}>", "DATA"),
        ("msg", message("big") + (b"x" * 998 + b"\r\n") * (SIZE_LIMIT // 1000 + 10), b".\r\n"),
        QUIT],
    # Recipients.
    "over-quota": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<{CAROL}>"), cmd("DATA"),
                   msg("quota"), QUIT],
    # Quota at RCPT (Dovecot's lmtp_rcpt_check_quota, lda's of the same name).
    "over-quota-at-rcpt": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<{DAVE}>"),
                           cmd(f"RCPT TO:<{ALICE}>"), cmd("DATA"), msg("rcptquota"), QUIT],
    "over-quota-at-rcpt-only": [LHLO, cmd(mail(SENDER, "rcptonly"), rcpt(DAVE), "DATA"),
                                cmd("RSET"), QUIT],
    "postmaster": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd("RCPT TO:<Postmaster>"), QUIT],
    "unknown-recipient": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<{NOBODY}>"),
                          QUIT],
    "extension": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<alice+x@{DOMAIN}>"),
                  cmd("DATA"), msg("ext"), QUIT],
    "uppercase": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<ALICE@{DOMAIN.upper()}>"),
                  cmd("DATA"), msg("upper"), QUIT],
    "recipient-quoted": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f'RCPT TO:<"alice"@{DOMAIN}>'),
                         QUIT],
    "recipient-quoted-space": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"),
                               cmd(f'RCPT TO:<"a b"@{DOMAIN}>'), QUIT],
    # A quoted local part (RFC 5321 section 4.1.2) is read as its content,
    # split at the first recipient delimiter, as Dovecot's lmtp splits it
    # (smtp_address_detail_parse): the extension may hold what a quoted
    # string may, the user before it is looked up.
    "recipient-quoted-extension-space": [
        LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f'RCPT TO:<"alice+a b"@{DOMAIN}>'),
        cmd("DATA"), msg("qext"), QUIT],
    "recipient-quoted-extension-specials": [
        LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f'RCPT TO:<"alice+a@b \\"c\\""@{DOMAIN}>'),
        cmd("DATA"), msg("qspecials"), QUIT],
    "recipient-quoted-extension-only-space": [
        LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f'RCPT TO:<"bob++ "@{DOMAIN}>'),
        cmd("DATA"), msg("qonlyspace"), QUIT],
    "recipient-quoted-space-before-extension": [
        LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f'RCPT TO:<"al ice+x"@{DOMAIN}>'), QUIT],
    "recipient-extension-space-unquoted": [
        LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<alice+a b@{DOMAIN}>"), QUIT],
    # An extension that takes the address past 320 octets: the user is
    # looked up, the extension is the user's business.
    "recipient-long-extension": [
        LHLO, cmd(f"MAIL FROM:<{SENDER}>"),
        cmd(f"RCPT TO:<alice+{'x' * (984 - len(ALICE) - 1)}@{DOMAIN}>"),
        cmd("DATA"), msg("longext"), QUIT],
    "recipient-extension-past-984-octets": [
        LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<alice+{'x' * 2000}@{DOMAIN}>"),
        QUIT],
    "recipient-source-route": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"),
                               cmd(f"RCPT TO:<@relay.example.net:{ALICE}>"), QUIT],
    "recipient-and-its-extension": [
        LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<{ALICE}>"),
        cmd(f"RCPT TO:<alice+x@{DOMAIN}>"), cmd("DATA"), msg("both"), QUIT],
    "same-recipient-twice": [LHLO, cmd(f"MAIL FROM:<{SENDER}>"), cmd(f"RCPT TO:<{BOB}>"),
                             cmd(f"RCPT TO:<{BOB}>"), cmd("DATA"), msg("twice"), QUIT],
}


# Held with the `lda lmtp` that checks quota at RCPT.
RCPT_QUOTA_CASES = {"over-quota-at-rcpt", "over-quota-at-rcpt-only"}


def converse(path, steps):
    """[Reply] for the conversation, the greeting first."""
    client = Client(path)
    replies = [client.greeting]
    try:
        for step in steps:
            if step[0] == "cmd":
                replies += client.commands(step[1])
            elif step[0] == "msg":
                replies += client.message(step[1], step[2])
            elif step[0] == "chunk":
                replies += client.chunk(step[1])
            elif step[0] == "raw":
                client.send(step[1])
                replies += [client.reply() for _ in range(step[2])]
            else:
                break
            if replies and replies[-1] is CLOSED:
                break
    finally:
        client.close()
    return replies, client.keywords




# --- What each server answered --------------------------------------------------------

@dataclass
class Outcome:
    replies: list             # [Reply], the greeting first
    keywords: set             # the LHLO reply's
    stored: dict              # {user: messages stored in this conversation}

    def keys(self):
        return [reply.key() for reply in self.replies]


@pytest.fixture(scope="module")
def outcomes(servers):
    """{case: {"dovecot": Outcome, "lda": Outcome}}, each conversation held
    with Dovecot's lmtp, then with `lda lmtp` (the pair that checks quota at
    RCPT for RCPT_QUOTA_CASES), one after the other: a message stored late
    shows in the next case."""
    found = {}
    for case, steps in CORPUS.items():
        found[case] = {}
        for agent in ("dovecot", "lda"):
            name = f"{agent}-rcpt-quota" if case in RCPT_QUOTA_CASES else agent
            before = servers.stored(name)
            replies, keywords = converse(servers.sockets[name], steps)
            after = servers.stored(name)
            stored = {user: after[user] - before[user] for user in after
                      if after[user] != before[user]}
            found[case][agent] = Outcome(replies, keywords, stored)
    return found


# --- The differences lda keeps on purpose ---------------------------------------------

# The LHLO keywords one server offers and the other not.
ONLY_DOVECOT = {
    "CHUNKING": "lda has no BDAT (RFC 3030, optional); a client sends BDAT only where "
                "CHUNKING is offered (Exim's does, then), else DATA; Postfix's lmtp(8) never "
                "sends BDAT",
}
ONLY_LDA = {
    "SIZE": "RFC 1870: lda has a size limit (lmtp_max_message_size) and says so, so a "
            "client refuses a larger message before sending it (552 5.3.4 at MAIL); "
            "Dovecot 2.3's lmtp has none to offer",
    "SMTPUTF8": "RFC 6531: lda takes UTF-8 addresses; to a server that does not offer it "
                "Postfix cannot send a message that needs it (it bounces 5.6.7)",
}

# The same reply code, another RFC 3463 code: (Dovecot's, lda's).
ENHANCED = {
    ("503 5.5.0", "503 5.5.1"):
        "a command out of sequence: RFC 3463 section 3.6 names X.5.1 (\"Invalid command: "
        "... out of sequence or unsupported\"), Dovecot answers X.5.0 (\"other or "
        "undefined\"); both are 503, which a client takes as the same",
    ("501 5.5.4", "501 5.1.3"):
        "a recipient address that is not one: RFC 3463 X.1.3 (\"Bad destination mailbox "
        "address syntax\") says which argument, Dovecot's X.5.4 that one is wrong",
    ("501", "501 5.5.4"):
        "LHLO without a host name: lda puts an RFC 3463 code on every 2xx/4xx/5xx reply "
        "(RFC 2034 section 3), Dovecot none on this one",
    ("500 5.5.1", "500 5.5.2"):
        "an empty command line: RFC 3463 X.5.2 (\"could not be interpreted\"), Dovecot X.5.1 "
        "as for an unknown command",
    ("252 2.3.3", "252 2.5.0"):
        "VRFY's 252 (RFC 5321 section 3.5.3: cannot verify, will try): RFC 3463 has no code "
        "for it; no client reads it (Postfix verifies with RCPT)",
}


def at(index, dovecot, lda):
    """lda answers `lda` where Dovecot answers `dovecot`, reply `index` (0:
    the greeting)."""
    def change(keys):
        assert keys[index] == dovecot, (index, keys)
        return keys[:index] + [lda] + keys[index + 1:]
    return change


def hangs_up(index, lda):
    """lda answers `lda` to Dovecot's reply `index` and closes the connection."""
    def change(keys):
        assert keys[index][:1] in "45", (index, keys)
        return keys[:index] + [lda, CLOSED.key()]
    return change


def inserted(index, lda):
    """lda answers one reply more, before Dovecot's reply `index`."""
    return lambda keys: keys[:index] + [lda] + keys[index:]


@dataclass
class Difference:
    reason: str
    changes: tuple = ()       # how lda's reply keys follow from Dovecot's
    stored: dict = None       # lda's stored messages, when not Dovecot's

    def lda_keys(self, dovecot_keys):
        keys = list(dovecot_keys)
        for change in self.changes:
            keys = change(keys)
        return keys


PATH_TOO_LONG = (
    "RFC 5321 section 4.5.3.1: a local part holds at most 64 octets, a path 256; lda "
    "refuses what it never delivers to for good (501, \"Path too long\" of section "
    "4.5.3.1.10) with RFC 3463's X.1.7 or X.1.3, the check `lda deliver` makes of -f and "
    "its recipients (lda.deliver.envelope)")
LENIENT_ADDRESS = (
    "aiosmtpd reads an address without angle brackets, or with a space in it, as Postfix's "
    "smtpd does (strict_rfc821_envelopes = no); Dovecot holds to RFC 5321 section 4.1.2. "
    "lda checks the address as `lda deliver` does (a space is allowed in a sender, not in "
    "a recipient); Postfix's lmtp(8) always sends <address>, quoting a local part with a "
    "space")

DIFFERENCES = {
    "message-over-size-limit": Difference(
        "lda refuses a message over lmtp_max_message_size (here 100 KB), 552 5.3.4 for each "
        "recipient (RFC 1870 section 6.2, RFC 2033 section 4.2); Dovecot 2.3's lmtp has no "
        "such limit",
        (at(6, "250 2.0.0", "552 5.3.4"), at(7, "250 2.0.0", "552 5.3.4")), stored={}),
    "many-unknown-commands": Difference(
        "lda hangs up at the fifth unknown command in a row (aiosmtpd's limit), Dovecot at "
        "the eleventh; each says so with 421 first (RFC 5321 section 3.8). No LMTP client "
        "sends unknown commands",
        (hangs_up(6, "421 4.7.0"),)),
    "recipient-and-its-extension": Difference(
        "exactly once: alice@ and alice+x@ are one mailbox, which lda's DeliveredTo gives "
        "one copy of the message (the second recipient is answered 250, \"already "
        "delivered\"); Dovecot's lmtp stores it twice",
        stored={"alice": 1}),
    "space-after-colon": Difference(
        LENIENT_ADDRESS + "; RFC 5321 section 3.3 notes the space after \"FROM:\" as a "
        "common client error, which Dovecot refuses",
        (at(2, "501 5.5.4", "250 2.1.0"), at(3, "503 5.5.0", "250 2.1.5"))),
    "nul-in-sender": Difference(
        "a NUL in an address: lda refuses the argument (501, RFC 3463 X.1.7, its envelope "
        "check), Dovecot the command line (500 5.5.2); both are 5xx",
        (at(2, "500 5.5.2", "501 5.1.7"),)),
    "exim-chunking": Difference(
        ONLY_DOVECOT["CHUNKING"] + ": the client sends DATA to lda and gets its 354",
        (inserted(4, "354"),)),
    "size-unoffered": Difference(
        "lda offers SIZE (RFC 1870) and takes SIZE=; Dovecot, which does not, refuses it "
        "(555, RFC 5321 section 4.1.1.11); no client sends SIZE= unoffered",
        (at(2, "555 5.5.4", "250 2.1.0"),)),
    "size-over-limit": Difference(
        "RFC 1870 section 6.1: SIZE= over the fixed maximum is 552 (RFC 3463 X.3.4, "
        "message too big for system), where Dovecot, which offers no SIZE, refuses the "
        "parameter (555); both are 5xx: Postfix bounces",
        (at(2, "555 5.5.4", "552 5.3.4"),)),
    "smtputf8-unoffered": Difference(
        ONLY_LDA["SMTPUTF8"] + "; Dovecot refuses the parameter it does not offer (555)",
        (at(2, "555 5.5.4", "250 2.1.0"),)),
    "before-lhlo": Difference(
        "RFC 2033 section 4.1: LHLO has EHLO's semantics, and RFC 5321 section 4.1.4 has "
        "the client send it before a mail transaction: lda refuses MAIL before it as a "
        "command out of sequence (503 5.5.1), Dovecot 2.3 takes it; every LMTP client "
        "sends LHLO first",
        (at(1, "250 2.1.0", "503 5.5.1"),)),
    "help": Difference(
        "HELP (RFC 5321 section 4.1.1.8) is answered, as aiosmtpd answers it; Dovecot 2.3 "
        "does not know it (500); no LMTP client sends it",
        (at(2, "500 5.5.1", "250 2.0.0"),)),
    "expn": Difference(
        "EXPN is known and not done: RFC 5321 section 3.5.2 and 4.2.4 name 502 for that, "
        "Dovecot answers as to an unknown command (500); both are 5xx",
        (at(2, "500 5.5.1", "502 5.5.1"),)),
    "vrfy-address": Difference(
        "VRFY with an address: RFC 5321 section 4.1.1.6's argument is a string, which "
        "Dovecot reads as an atom and refuses at the \"@\" (501); lda answers 252 as for "
        "any VRFY (section 3.5.3); no LMTP client sends VRFY",
        (at(2, "501 5.5.4", "252 2.5.0"),)),
    "sender-without-brackets": Difference(LENIENT_ADDRESS, (at(2, "501 5.5.4", "250 2.1.0"),)),
    "sender-with-space": Difference(LENIENT_ADDRESS, (at(2, "501 5.5.4", "250 2.1.0"),)),
    "recipient-without-brackets": Difference(LENIENT_ADDRESS,
                                             (at(3, "501 5.5.4", "250 2.1.5"),)),
    "sender-without-domain": Difference(
        "RFC 5321 section 4.1.2: a mailbox has a domain after its \"@\"; lda refuses "
        "<sender@> (501 5.1.7, RFC 3463's bad sender address syntax) as it refuses "
        "<alice@> in RCPT, which Dovecot refuses too; Dovecot 2.3 takes it in MAIL",
        (at(2, "250 2.1.0", "501 5.1.7"),)),
    "recipient-local-only": Difference(
        "a recipient without a domain: lda's mailboxes are addresses, so <alice> is no "
        "one's (550 5.1.1); Dovecot looks users up by the local part here "
        "(auth_username_format = %Ln) and finds alice. Postfix always sends a domain",
        (at(3, "250 2.1.5", "550 5.1.1"),)),
    "recipient-extension-space-unquoted": Difference(
        LENIENT_ADDRESS + ": the space is in the extension, which lda reads as in "
        "\"alice+a b\"@, and takes",
        (at(3, "501 5.5.4", "250 2.1.5"),)),
    "recipient-extension-past-984-octets": Difference(
        "lda writes the recipient into Delivered-To, and RFC 5322 section 2.1.1 holds a "
        "line to 998 octets: a recipient of more than 984 is refused (501 5.1.3) by every "
        "border of lda's; Dovecot's lmtp takes any that fits its 4 KB command line and "
        "writes the longer line",
        (at(3, "250 2.1.5", "501 5.1.3"),)),
    "sender-1000": Difference(PATH_TOO_LONG, (at(2, "250 2.1.0", "501 5.1.7"),)),
    "recipient-1000": Difference(
        PATH_TOO_LONG + "; Dovecot's user lookup fails on it and answers 451 4.3.0, so "
        "Postfix would retry it for days",
        (at(3, "451 4.3.0", "501 5.1.3"),)),
}


# --- The tests ------------------------------------------------------------------------

def transcript(outcome):
    return "\n".join(f"    {str(reply)[:150]}" for reply in outcome.replies)


@pytest.mark.parametrize("case", list(CORPUS))
def test_lda_lmtp_answers_as_dovecot_lmtp(outcomes, case):
    """Reply for reply, the class, the code and the RFC 3463 code (after
    DATA one reply per accepted RCPT: the client reads that many), and the
    messages stored, unless DIFFERENCES or ENHANCED names the difference."""
    dove, ours = outcomes[case]["dovecot"], outcomes[case]["lda"]
    print(f"\n{case}: Dovecot's lmtp\n{transcript(dove)}\n  lda lmtp\n{transcript(ours)}")
    difference = DIFFERENCES.get(case, Difference(""))
    expected = difference.lda_keys(dove.keys())
    if case in DIFFERENCES:  # a difference there is
        assert expected != dove.keys() or difference.stored not in (None, dove.stored)
    got = ours.keys()
    assert [key[:1] for key in got] == [key[:1] for key in expected], "reply classes"
    assert [key[:3] for key in got] == [key[:3] for key in expected], "reply codes"
    for index, (theirs, lda) in enumerate(zip(expected, got)):
        assert theirs == lda or (theirs, lda) in ENHANCED, (index, "RFC 3463 codes")
    assert ours.stored == (dove.stored if difference.stored is None else difference.stored)


def test_every_enhanced_difference_is_seen(outcomes):
    """ENHANCED names no pair the corpus does not show."""
    seen = {(d.key(), o.key()) for pair in outcomes.values()
            for d, o in zip(pair["dovecot"].replies, pair["lda"].replies)}
    assert set(ENHANCED) <= seen


def test_lhlo_offers_what_dovecot_lmtp_offers(outcomes):
    """The LHLO keywords: the same, but for ONLY_DOVECOT and ONLY_LDA."""
    pair = outcomes["postfix-pipelined"]
    dove, ours = pair["dovecot"].keywords, pair["lda"].keywords
    print(f"\nDovecot's lmtp offers {sorted(dove)}, lda lmtp {sorted(ours)}")
    assert {"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME"} <= dove & ours
    assert dove - ours == set(ONLY_DOVECOT)
    assert ours - dove == set(ONLY_LDA)


@pytest.mark.parametrize("case", [case for case in CORPUS if any(
    step[0] in ("msg", "chunk") for step in CORPUS[case])])
def test_each_reply_after_the_message_names_its_recipient_in_rcpt_order(outcomes, case):
    """RFC 2033 section 4.2, on both servers: the client reads a reply for
    each accepted RCPT, and each names the recipient it is for."""
    for agent in ("dovecot", "lda"):
        after = [reply for reply in outcomes[case][agent].replies if reply.recipient]
        assert after, agent
        for reply in after:
            assert f"<{reply.recipient}>" in reply.lines[0], (agent, str(reply))


@pytest.mark.parametrize("case", ["quit-mid-transaction", "drop-mid-data",
                                  "drop-before-final-dot"])
def test_a_session_that_ends_before_the_final_dot_stores_nothing(outcomes, case):
    for agent in ("dovecot", "lda"):
        assert outcomes[case][agent].stored == {}, agent

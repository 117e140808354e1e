"""dovecot-lda's failure paths and options next to lda's, at the border
where a site swaps one for the other by changing the program path.

tests/test_store_dovecot.py shows both store the same bytes when delivery
succeeds.  Here each case runs once through dovecot-lda (Dovecot 2.3) and
once through the installed `lda` with the same options, to two users set up
alike in one private Dovecot (the same quota line in `maildirsize`, the
same folders, the same damage): dovecot-lda -d USER next to lda's managed
mode (a pipe(8) transport), and both run as the user without -d next to
lda's per-user mode (mailbox_command).  It compares what Postfix's pipe(8)
or local(8) would make of each answer (deliver, defer or bounce), the RFC
3463 code that leads stderr where there is one, what was stored and where,
and the rejection mail dovecot-lda sends itself.

Postfix's rule (pipe(8), local(8); src/global/pipe_command.c): status 0
delivers; else an RFC 3463 code at the start of the command's output
decides, 4.X.X defers and 5.X.X bounces; without one, 75 (EX_TEMPFAIL) and
71 (EX_OSERR) defer and any other status bounces; a command killed by a
signal defers.

Everything lda does differently is named in DIFFERENCES with its reason;
anything else is a failure.  Run with -s to see each case's answers.
"""

import os
import re
import signal
import subprocess
from dataclasses import dataclass, field

import pytest

from conftest import (LDA, assert_no_traceback, create_mailboxes, mailbox_paths, message, poll,
                      stored_by_folder, write_lda_toml)
from dovecot import DOVECOT_LDA, private_dovecot

SENDER = "sender@example.org"
QUOTA = 200 * 1024          # PrivateDovecot's quota_rule, *:storage=200K
MESSAGE = message(message_id="<dropin@example.org>")
HALF = 40                   # the bytes sent before SIGTERM
FROM_LINE = b"From bounce@example.net  Wed Jan  3 01:05:34 1996\n"
# --- What Postfix makes of an answer ---------------------------------------------

CODE = re.compile(rb"^([245])\.\d{1,3}\.\d{1,3}(?=\s|$)")


def status_code(stderr):
    """The RFC 3463 code that leads the output's first line, or None."""
    found = CODE.match(stderr.lstrip(b"\r\n")[:100])
    return found.group(0).decode() if found else None


def postfix_action(returncode, stderr):
    """What pipe(8)/local(8) do with a delivery command's answer."""
    if returncode == 0:
        return "deliver"
    if returncode < 0:  # killed by a signal
        return "defer"
    code = status_code(stderr)
    if code is not None:
        return "defer" if code.startswith("4") else "bounce"
    return "defer" if returncode in (71, 75) else "bounce"


# --- The cases ---------------------------------------------------------------------

def fill(side):
    """The mailbox one message short of full: a real message file taking
    all but 100 bytes of the quota, and maildirsize saying so."""
    size = QUOTA - 100
    name = f"1000000000.M1P1.filler,S={size},W={size}:2,S"
    side.write(side.maildir / "cur" / name, b"Subject: filler\n\n" + b"x" * (size - 17))
    side.quota(size, 1)


def unwritable(side):
    for path in (side.maildir, side.maildir / "tmp", side.maildir / "new"):
        path.chmod(0o555)


def unwritable_folder(side):
    folder(".Lists")(side)
    for sub in ("", "tmp", "new"):
        (side.maildir / ".Lists" / sub).chmod(0o555)


def no_maildir(side):
    import shutil

    shutil.rmtree(side.maildir)


def no_home(side):
    """No HOME, and none to be made: the homes' directory is root's."""
    import shutil

    shutil.rmtree(side.maildir.parent)


def folder(name):
    def make(side):
        path = side.maildir / name
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True)
        side.chown(path)
    return make


@dataclass
class Case:
    id: str
    argv: tuple = ()            # both agents' options after -d and -f
    dovecot: str | frozenset = "deliver:INBOX"  # what dovecot-lda does (outcome()),
                                # or the outcomes it was seen to choose between
    setup: object = None        # setup(side) on each side's fresh user
    message: bytes = MESSAGE
    sender: str | None = SENDER  # -f, or none
    recipient: str | None = None  # -d, else each side's own user
    mode: str = "managed"       # or "user": no -d, the mail owner's HOME (below)
    stdin: str = "pipe"         # "pipe", "closed" (no fd 0), "sigterm" (mid-read)


TOO_LARGE = message(body=b"x" * (QUOTA + 1024))
OWN_TEXT = "Mailbox full, see https://example.org/quota"
AUTOCREATE = ("-o", "lda_mailbox_autocreate=yes")
MAILED = "rejection-mailed"    # exit 0: dovecot-lda sent the sender its own rejection
CASES = [
    Case("plain"),
    Case("unknown-user", dovecot="bounce", recipient="nobody@example.org"),
    # Dovecot's quota_full_tempfail = no is its default; lda's quota_full
    # = "tempfail" is lda's.
    Case("over-quota", dovecot=MAILED, setup=fill),
    Case("over-quota-tempfail-no", ("-o", "quota_full_tempfail=no"), MAILED, fill),
    Case("over-quota-tempfail-yes", ("-o", "quota_full_tempfail=yes"), "defer", fill),
    Case("over-quota-e", ("-e",), "bounce", fill),
    # -e says how a rejection is answered (77 rather than a rejection mail),
    # not whether over quota is one: quota_full_tempfail = yes still defers.
    Case("over-quota-e-tempfail-yes", ("-e", "-o", "quota_full_tempfail=yes"), "defer", fill),
    Case("over-quota-null-sender", ("-o", "quota_full_tempfail=no"), "dropped", fill,
         sender=""),
    # Dovecot's quota plugin reads its text as a plugin setting.
    Case("over-quota-e-own-text", ("-e", "-o", f"plugin/quota_exceeded_message={OWN_TEXT}"),
         "bounce", fill),
    Case("larger-than-quota", dovecot=MAILED, message=TOO_LARGE),
    Case("larger-than-quota-tempfail-yes", ("-o", "quota_full_tempfail=yes"), "defer",
         message=TOO_LARGE),
    Case("larger-than-quota-e", ("-e",), "bounce", message=TOO_LARGE),
    Case("unwritable-maildir", dovecot="defer", setup=unwritable),
    Case("missing-maildir", setup=no_maildir),
    Case("m-missing", ("-m", "Missing", "-o", "lda_mailbox_autocreate=no")),
    Case("m-missing-autocreate", ("-m", "Missing", *AUTOCREATE), "deliver:.Missing"),
    Case("m-existing", ("-m", "Lists"), "deliver:.Lists", folder(".Lists")),
    # Its man page says dovecot-lda saves to INBOX when -m's folder fails
    # "for any reason"; a folder it may not write is not one of them.
    Case("m-unwritable", ("-m", "Lists"), "defer", unwritable_folder),
    Case("m-dot-dot", ("-m", "../x", *AUTOCREATE)),
    Case("m-slash", ("-m", "a/b", *AUTOCREATE)),
    Case("m-crlf", ("-m", "Lists\r\nX-Injected: 1", *AUTOCREATE)),
    Case("m-long", ("-m", "L" * 300, *AUTOCREATE)),
    # No -o: lda_mailbox_autocreate from the dovecot.conf -c names, as the
    # `protocol lda` filter reads it (the private Dovecot's says yes; the
    # CONF_VARIANTS below).  A site whose 15-lda.conf says so relies on it.
    Case("m-missing-conf-autocreate", ("-c", "{dovecot_conf}", "-m", "Missing"),
         "deliver:.Missing"),
    Case("m-missing-conf-subscribe", ("-c", "{subscribe_conf}", "-m", "Missing"),
         "deliver:.Missing"),
    Case("m-missing-conf-protocol-lda", ("-c", "{protocol_lda_conf}", "-m", "Missing"),
         "deliver:.Missing"),
    Case("m-missing-conf-o-wins", ("-c", "{subscribe_conf}", "-m", "Missing",
                                   "-o", "lda_mailbox_autocreate=no")),
    Case("m-missing-conf-broken", ("-c", "{broken_conf}", "-m", "Missing"), "defer"),
    Case("m-existing-conf-broken", ("-c", "{broken_conf}", "-m", "Lists"), "defer",
         folder(".Lists")),
    Case("m-missing-c-missing", ("-c", "/nonexistent/dovecot.conf", "-m", "Missing"), "defer"),
    Case("e-k", ("-e", "-k")),
    Case("r", ("-r", "final@example.org")),
    Case("a", ("-a", "original@example.org")),
    Case("a-invalid", ("-a", "not an address@@"), "bounce"),
    Case("f-invalid", sender="not an address@@"),
    Case("f-null", sender=""),
    Case("f-null-brackets", sender="<>"),
    Case("f-control", dovecot="bounce", sender="a\x01b@example.org"),
    Case("f-lf", dovecot="bounce", sender="a\nX-Injected: 1@example.org"),
    Case("f-long", sender="a" * 1000 + "@example.org"),
    # Postfix's ${sender} is the unquoted internal form.
    Case("f-space", sender="john smith@example.org"),
    Case("d-lf", dovecot="bounce", recipient="a\nX-Injected: 1@example.org"),
    Case("d-long", dovecot="defer", recipient="a" * 1000 + "@example.org"),
    Case("p-file", ("-p", "{message_file}"), message=b"not this"),
    Case("p-missing", ("-p", "/nonexistent/message.eml"), "defer"),
    Case("o-unknown-setting", ("-o", "no_such_setting=1")),
    Case("o-not-a-pair", ("-o", "quota_full_tempfail"), "defer"),
    Case("o-not-a-boolean", ("-o", "quota_full_tempfail=maybe"), "defer"),
    Case("c-dovecot-conf", ("-c", "{dovecot_conf}")),
    Case("c-missing", ("-c", "/nonexistent/dovecot.conf"), "defer"),
    Case("unknown-option", ("-x",), "bounce"),
    Case("empty-stdin", message=b""),
    # The writer gone mid-line: what came is all either can know of.
    Case("stdin-cut-mid-line", message=MESSAGE[:HALF]),
    # No fd 0 at all: dovecot-lda aborts (a signal: Postfix defers); lda
    # must say so in one line, and -p needs no standard input.
    Case("closed-stdin", dovecot="defer", stdin="closed"),
    Case("closed-stdin-p-file", ("-p", "{message_file}"), stdin="closed"),
    Case("from-line-only", message=FROM_LINE),
    # Which of the two depends on where the signal finds dovecot-lda's
    # read: both were seen on Debian's 2.3.19 (the second on a CI machine).
    Case("sigterm-mid-read", dovecot=frozenset({"deliver:INBOX", "defer"}), stdin="sigterm"),
    # mailbox_command = /usr/lib/dovecot/dovecot-lda, or lda: run as the
    # user, no -d, the Maildir ~/Maildir (lda's per-user mode).
    Case("user-plain", mode="user"),
    Case("user-over-quota", dovecot=MAILED, setup=fill, mode="user"),
    Case("user-missing-maildir", setup=no_maildir, mode="user"),
    Case("user-missing-home", dovecot="defer", setup=no_home, mode="user"),
]


@dataclass
class Difference:
    reason: str
    lda: str                    # lda's outcome, where dovecot-lda's is the case's


DIFFERENCES = {
    "over-quota": Difference(
        "lda's quota_full defaults to \"tempfail\" (75, 4.2.2): Postfix keeps the "
        "message and retries while the user makes room; Dovecot's default "
        "(quota_full_tempfail = no) rejects at the first try", "defer"),
    "user-over-quota": Difference("as over-quota, in per-user mode", "defer"),
    "over-quota-tempfail-no": Difference(
        "a rejection is lda's exit 77 with 5.2.2, and Postfix writes the bounce "
        "(an RFC 3464 DSN that honours NOTIFY and RET, in Postfix's log and queue); "
        "dovecot-lda without -e mails its own rejection and exits 0, so Postfix "
        "logs the message as delivered", "bounce"),
    "over-quota-null-sender": Difference(
        "for the null sender dovecot-lda sends no rejection and exits 0: the "
        "message is gone, and Postfix logs it as delivered; lda's 77 leaves the "
        "decision and the log line to Postfix, which sends no bounce to <> either "
        "but records the failure (and tells the postmaster if notify_classes says so)",
        "bounce"),
    "larger-than-quota": Difference(
        "as over-quota-tempfail-no: Postfix writes the bounce (5.2.3) rather than "
        "dovecot-lda's own rejection mail", "bounce"),
    "larger-than-quota-tempfail-yes": Difference(
        "a message larger than the whole storage quota can never fit: lda refuses "
        "it for good (77, 5.2.3, RFC 3463 \"message length exceeds administrative "
        "limit\") whatever quota_full says, so the sender learns now rather than "
        "after Postfix's maximal_queue_lifetime; Dovecot 2.3 answers it as a full "
        "mailbox", "bounce"),
    "m-slash": Difference(
        "lda reads \"/\" in -m as the hierarchy separator of a Dovecot namespace that "
        "sets separator = / (the common INBOX/Lists lines): a/b is the folder .a.b; "
        "this Dovecot's namespace has Maildir++'s \".\", refuses the name and "
        "saves to the INBOX.  Both keep the message", "deliver:.a.b"),
    "a-invalid": Difference(
        "-a only names the original recipient, which lda records and no delivery "
        "depends on: lda ignores a value it cannot take, with a warning, and "
        "delivers; dovecot-lda exits 64 and Postfix bounces the message", "deliver:INBOX"),
    "f-long": Difference(
        "a sender past 320 octets (64 + @ + 255; RFC 5321 4.5.3.1.3 caps a path at "
        "256) fails lda's one sender check, as LMTP's MAIL FROM does (553 5.1.7): "
        "65 with 5.1.7, where dovecot-lda delivers.  For the lead: Postfix's "
        "bounce goes to that very address; lda could drop such a -f with a "
        "warning, as it drops a From_ line's", "bounce"),
    "d-long": Difference(
        "a recipient past 320 octets cannot be one of lda's: 67 with 5.1.3, a "
        "bounce now; dovecot-lda's userdb lookup fails as a temporary error, and "
        "Postfix retries for days to bounce it in the end", "bounce"),
    "c-missing": Difference(
        "lda never reads dovecot-lda's configuration: a -c that names no lda.toml "
        "is ignored with a warning whether the file exists or not, and the "
        "delivery uses lda's own; dovecot-lda cannot start without it", "deliver:INBOX"),
    "m-missing-c-missing": Difference(
        "as c-missing: without the file lda takes lda_mailbox_autocreate as if "
        "-c were not there (one warning names the file) and stores into the "
        "INBOX", "deliver:INBOX"),
    "m-existing-conf-broken": Difference(
        "lda reads dovecot.conf only for what it takes from there, the -m "
        "folder's lda_mailbox_autocreate and lda_mailbox_autosubscribe, and "
        "only when that folder is to be made: a folder that exists takes the "
        "message whatever the file says; dovecot-lda cannot start at all",
        "deliver:.Lists"),
    "unknown-option": Difference(
        "an option lda does not know is the master.cf line's mistake, not the "
        "message's: 78 with 4.3.5, so Postfix defers until the line is fixed; "
        "dovecot-lda's 64 (EX_USAGE) bounces every message meanwhile", "defer"),
    "sigterm-mid-read": Difference(
        "dovecot-lda, sent SIGTERM while it reads the message, either stores the "
        "part it read and exits 0 (Postfix counts the message delivered and the "
        "rest is lost) or exits 75, as the timing falls; lda always dies by the "
        "signal with nothing stored, and Postfix retries",
        "defer"),
}


def outcome(result):
    """What happened, in one word: Postfix's action, and for an exit 0
    where the message went."""
    if result.action != "deliver":
        return result.action
    if result.stored:
        [(name, files)] = result.stored.items()
        assert len(files) == 1, files
        return f"deliver:{name or 'INBOX'}"
    return MAILED if result.sent else "dropped"


# --- The two sides -----------------------------------------------------------------

@dataclass
class Side:
    agent: str                  # "dovecot" or "lda"
    user: str                   # its address, the Dovecot user name too
    maildir: object
    server: object

    def listing(self):
        """The names beside the Maildir, and the Maildir's own folders."""
        if not self.maildir.parent.is_dir():
            return set(), set()
        return ({p.name for p in self.maildir.parent.iterdir()},
                {p.name for p in self.maildir.iterdir() if p.name.startswith(".")}
                if self.maildir.is_dir() and os.access(self.maildir, os.R_OK) else set())

    def quota(self, used, count):
        self.write(self.maildir / "maildirsize", f"{QUOTA}S\n{used} {count}\n".encode())

    def write(self, path, data):
        path.write_bytes(data)
        os.chown(path, self.server.owner.uid, self.server.owner.gid)

    def chown(self, path):
        self.server.owner.chown_tree(path)


@dataclass
class Result:
    returncode: int
    stderr: bytes
    stored: dict                # {folder name: [message bytes]}, INBOX ""
    sent: list = field(default_factory=list)   # [(args, bytes)] dovecot-lda mailed
    made: set = field(default_factory=set)  # names new beside the Maildir or in it
    subscriptions: bytes | None = None  # the Maildir's subscriptions file, if any

    @property
    def action(self):
        return postfix_action(self.returncode, self.stderr)

    @property
    def code(self):
        return status_code(self.stderr)


AUTOCREATE_LINE = "lda_mailbox_autocreate = yes\n"
# dovecot.conf files a case's -c names, each made from the private Dovecot's
# (which says lda_mailbox_autocreate = yes and nothing of autosubscribe).
CONF_VARIANTS = {
    "subscribe_conf": lambda conf: conf + "lda_mailbox_autosubscribe = yes\n",
    # Only the `protocol lda` filter says so, as in Debian's 15-lda.conf.
    "protocol_lda_conf": lambda conf: conf.replace(AUTOCREATE_LINE, "") + (
        "protocol lda {\n  lda_mailbox_autocreate = yes\n"
        "  lda_mailbox_autosubscribe = yes\n}\n"),
    "broken_conf": lambda conf: conf + "lda_mailbox_autocreate = maybe\n",
}


def run(server, side, case, argv, env, user):
    """One agent's run of the case: (returncode, stderr)."""
    kwargs = {"user": server.owner.uid, "group": server.owner.gid, "extra_groups": []} \
        if user else {}
    if case.stdin == "pipe":
        done = subprocess.run(argv, input=case.message, capture_output=True, timeout=60,
                              env=env, cwd="/", **kwargs)
        return done.returncode, done.stderr
    if case.stdin == "closed":
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=60, env=env, cwd="/", preexec_fn=lambda: os.close(0),
                              **kwargs)
        return done.returncode, done.stderr
    # SIGTERM once the agent waits in read(2) on its stdin, half the message sent.
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, cwd="/", **kwargs)
    process.stdin.write(case.message[:HALF])
    process.stdin.flush()

    def reading():
        try:
            with open(f"/proc/{process.pid}/syscall") as f:
                return f.read().startswith("0 0x0 ")
        except OSError:
            return False

    assert poll(reading, 20), f"{side.agent} never read its stdin"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    return process.returncode, err




@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """{case id: {"dovecot": Result, "lda": Result}}: each case through
    dovecot-lda (as root, -d: it looks the user up and becomes the mail
    owner) and through `lda` (managed mode, as the mail owner), each to a
    user of its own set up alike."""
    keep = tmp_path_factory.mktemp("dropin-dovecot")
    with private_dovecot(keep) as server:
        outbox = server.capture_sendmail()  # dovecot-lda's rejection mails
        state = server.root / "lda-state"
        state.mkdir()
        server.owner.chown_tree(state)
        config = write_lda_toml(server.root / "lda.toml", {"state_dir": str(state),
                                                           "log": "stderr"})
        user_config = write_lda_toml(server.root / "lda-user.toml", {"mode": "user",
                                                                     "log": "stderr"})
        env = {"PATH": "/usr/bin:/bin", "HOME": str(server.owner.home),
               "LDA_CONFIG": str(config)}
        # dovecot-lda run as the mail owner logs to Dovecot's log itself.
        server.log.chmod(0o666)
        message_file = server.root / "message.eml"
        message_file.write_bytes(message(subject="from a file"))
        message_file.chmod(0o644)
        values = {"message_file": str(message_file), "dovecot_conf": str(server.conf)}
        for name, variant in CONF_VARIANTS.items():
            path = server.root / f"{name}.conf"
            path.write_text(variant(server.conf.read_text()))
            path.chmod(0o644)
            values[name] = str(path)
        create_mailboxes(env, [(f"l-{case.id}@example.org",) for case in CASES
                               if case.mode == "managed"],
                         user=server.owner.uid, group=server.owner.gid, extra_groups=[], cwd="/")
        # Every user before the first delivery: Dovecot's passwd-file
        # userdb may not see a line added within the same second as its
        # last read.
        sides = {}
        for case in CASES:
            dove, ours = f"d-{case.id}@example.org", f"l-{case.id}@example.org"
            sides[case.id] = {
                "dovecot": Side("dovecot", dove, server.add_user(dove), server),
                "lda": Side("lda", ours, server.add_user(ours) if case.mode == "user" else
                            server.add_user(ours, maildir=str(mailbox_paths(state, ours)[1])),
                            server)}
        table = {}
        for case in CASES:
            table[case.id] = {}
            argv = [a.format(**values) for a in case.argv]
            envelope = ("-f", case.sender) if case.sender is not None else ()
            for agent, side in sides[case.id].items():
                side.quota(0, 0)
                if case.setup:
                    case.setup(side)
                rcpt = case.recipient or side.user
                before = set(outbox.iterdir())
                beside, folders = side.listing()
                recipient = ("-d", rcpt) if case.mode == "managed" else ()
                home = {"HOME": str(side.maildir.parent), "USER": side.user}
                if agent == "dovecot":
                    # As root with -d (it becomes the mail owner), else as him.
                    config_argv = () if "-c" in argv else ("-c", str(server.conf))
                    returncode, stderr = run(
                        server, side, case, [DOVECOT_LDA, *config_argv, *recipient,
                                             *envelope, *argv],
                        {"PATH": "/usr/bin:/bin", **(home if case.mode == "user" else {})},
                        user=case.mode == "user")
                else:
                    returncode, stderr = run(
                        server, side, case, [str(LDA), *recipient, *envelope, *argv],
                        dict(env, **home, LDA_CONFIG=str(user_config))
                        if case.mode == "user" else env, user=True)
                sent = [(p.with_suffix(".args").read_text().split(), p.read_bytes())
                        for p in sorted(set(outbox.iterdir()) - before)
                        if p.suffix == ".eml"]
                after = side.listing()
                made = (after[0] - beside) | (after[1] - folders)
                subscriptions = side.maildir / "subscriptions"
                table[case.id][agent] = Result(
                    returncode, stderr, stored_by_folder(side.maildir), sent, made,
                    subscriptions.read_bytes() if subscriptions.exists() else None)
    return table


TRACE = re.compile(rb"\A(Return-Path: <[^\n]*>\n)?Delivered-To: [^\n]*\n")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_lda_answers_postfix_as_dovecot_lda_does(results, case):
    dove, ours = results[case.id]["dovecot"], results[case.id]["lda"]
    expected = DIFFERENCES.get(case.id)
    print(f"\n{case.id}: dovecot-lda exit {dove.returncode} {outcome(dove)} "
          f"{dove.stderr[:120]!r}\n  lda exit {ours.returncode} {outcome(ours)} "
          f"{ours.stderr.splitlines()[0][:160] if ours.stderr else b''!r}")
    # dovecot-lda does what it did when this was written (Dovecot 2.3).
    seen = {case.dovecot} if isinstance(case.dovecot, str) else case.dovecot
    assert outcome(dove) in seen, dove.stderr
    assert dove.code is None  # it never leads its stderr with an RFC 3463 code
    # lda does the same, or what DIFFERENCES names.
    assert outcome(ours) == (expected.lda if expected else outcome(dove)), ours.stderr
    assert_no_traceback(subprocess.CompletedProcess([], ours.returncode, b"", ours.stderr))
    assert ours.sent == []  # lda never mails a rejection itself
    for args, _ in dove.sent:  # dovecot-lda's own, to the envelope sender
        assert args[-1] == SENDER, args
    if ours.returncode > 0:
        # lda's first line always leads with the code Postfix acts on.
        assert ours.code is not None, ours.stderr
    # The same bytes where both stored: lda's below its trace fields.
    if ours.stored and dove.stored:
        [[lda_data]], [[dove_data]] = ours.stored.values(), dove.stored.values()
        trace = TRACE.match(lda_data)
        assert trace, lda_data[:200]
        assert lda_data[trace.end():] == dove_data


def test_every_difference_is_a_case():
    assert set(DIFFERENCES) <= {case.id for case in CASES}


@pytest.mark.parametrize("case", [c for c in CASES if c.id.startswith("m-")],
                         ids=[c.id for c in CASES if c.id.startswith("m-")])
def test_a_hostile_m_makes_nothing_outside_the_maildir(results, case):
    """Neither agent makes anything beside the Maildir, or a folder in it
    other than the one it delivered to."""
    for agent in ("dovecot", "lda"):
        result = results[case.id][agent]
        assert result.made <= set(result.stored) - {""}, (agent, result.made)


V2_MISSING = b"V\t2\n\nMissing\n"   # Dovecot's subscriptions file naming Missing


@pytest.mark.parametrize("case_id, dovecot", [
    ("m-missing-conf-subscribe", V2_MISSING),
    ("m-missing-conf-protocol-lda", V2_MISSING),
    ("m-missing-conf-o-wins", None),
    # lda_mailbox_autosubscribe left at Dovecot's default: lda's own
    # subscribe_new_folders (true) decides, as for -o lda_mailbox_autocreate
    # alone (tests/test_subscriptions.py, DIFFERENCES["default"]).
    ("m-missing-conf-autocreate", None),
    ("m-missing-autocreate", None),
], ids=["conf-subscribe", "conf-protocol-lda", "conf-o-wins", "conf-autocreate-only",
        "o-autocreate-only"])
def test_a_folder_made_for_m_is_subscribed_as_the_configuration_says(results, case_id,
                                                                        dovecot):
    dove, ours = results[case_id]["dovecot"], results[case_id]["lda"]
    assert dove.subscriptions == dovecot
    # lda subscribes every folder it makes for -m here (subscribe_new_folders).
    assert outcome(ours) == outcome(dove)
    assert ours.subscriptions == (V2_MISSING if outcome(dove) == "deliver:.Missing" else None)


def test_a_quota_text_on_the_command_line_is_what_the_sender_reads(results):
    """-o plugin/quota_exceeded_message=TEXT: the rejection both write for
    Postfix's bounce is TEXT (lda's led by its code)."""
    dove, ours = (results["over-quota-e-own-text"][agent] for agent in ("dovecot", "lda"))
    assert dove.stderr.decode().splitlines() == [OWN_TEXT]
    assert ours.stderr.decode().splitlines()[0] == f"5.2.2 {OWN_TEXT}"


def test_dovecot_lda_stores_the_part_it_read_before_sigterm(results):
    """The evidence for DIFFERENCES["sigterm-mid-read"]: when dovecot-lda
    stores anything, it is the part read, with exit 0; lda never stores."""
    dove, ours = results["sigterm-mid-read"]["dovecot"], results["sigterm-mid-read"]["lda"]
    if dove.stored:
        assert (dove.returncode, dove.stored) == (0, {"": [MESSAGE[:HALF]]})
    else:
        assert dove.returncode == 75
    assert (ours.returncode, ours.stored) == (-signal.SIGTERM, {})

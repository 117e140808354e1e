"""procmail piping to the delivery agent from ~/.procmailrc, as Dovecot's
wiki taught (`:0 w` / `| /usr/lib/dovecot/dovecot-lda -m Spam`), with
Postfix's `mailbox_command = /usr/bin/procmail -a "$EXTENSION"`; a site
switches by writing `lda` in place of dovecot-lda's path.

Each case is one ~/.procmailrc and one message, run through the real
/usr/bin/procmail as the mail user twice: once with the recipes piping to
dovecot-lda (a private Dovecot, tests/dovecot.py) and once with the same
recipes piping to `lda` (per-user mode).  Both agents deliver to the same
~/Maildir, emptied between runs.  What counts is what Postfix's local(8)
makes of procmail's exit (pipe(8)'s rules, test_dropin_dovecot.postfix_action)
and where the message went: a Maildir folder, procmail's $DEFAULT (a
directory of its own here; /var/mail/$LOGNAME, an mbox, on most sites:
either way not the Maildir the user's IMAP client reads), a rejection
dovecot-lda mailed, or nowhere.

What reaches the agent differs from a direct call (procmail(1)): the
message keeps the leading `From ` line local(8) wrote, with Return-Path:,
X-Original-To: and Delivered-To: below it; procmail clears the environment
(no SENDER, RECIPIENT or EXTENSION; LOGNAME and HOME from the passwd
entry); and procmail acts on the agent's exit only with the `w` or `W`
flag (procmailrc(5)): a recipe that fails goes on to the next recipe and
to $DEFAULT, one without `w` counts as delivered whatever the agent
answered.  procmail's own exit, 0 once anything took the message, is what
Postfix sees, unless EXITCODE says otherwise.

Everything lda does differently is named in DIFFERENCES with its reason.
Run with -s to see each case's answers.
"""

import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from conftest import LDA, assert_no_traceback, message, stored_by_folder, write_lda_toml
from dovecot import DOVECOT_LDA, private_dovecot
from test_dropin_dovecot import postfix_action

PROCMAIL = shutil.which("procmail", path="/usr/bin:/bin")
QUOTA = 200 * 1024          # PrivateDovecot's quota_rule, *:storage=200K
BOUNCE = "bounce@example.net"
# What Postfix's local(8) hands mailbox_command: a From_ line, then
# Return-Path:, X-Original-To: and Delivered-To: (local/command.c's copy flags).
POSTFIX_TOP = (f"From {BOUNCE}  Sat Dec  5 09:00:00 2026\n"
               f"Return-Path: <{BOUNCE}>\n"
               "X-Original-To: alice@example.org\n"
               "Delivered-To: alice@example.org\n").encode()
MESSAGE = POSTFIX_TOP + message(message_id="<procmail@example.org>")
# procmail runs an action with metacharacters through $SHELL, the mail
# user's nologin here; every rc below sets a real one, as most do.  A
# maildir $DEFAULT: procmail's mbox locking costs a second a delivery.
HEAD = "SHELL=/bin/sh\nDEFAULT=$HOME/default/\n"
# procmail exports what the rc assigns: lda's log on its stderr (no syslog
# here), dovecot-lda unaffected.
LDA_CONFIG = "LDA_CONFIG={config}\n"
W = ":0 w\n| {agent}{args}\n"
NO_W = ":0\n| {agent}{args}\n"
# The common way to hand the agent's answer to the MTA: after a failed
# `w` recipe, its exit becomes procmail's, and /dev/null ends the rc.
EXITCODE = W + "EXITCODE=$?\n:0\n/dev/null\n"
# A whole rc in the wiki's shape: a folder for some, the inbox for the rest; then the
# lines README gives, after the last recipe only (a positive EXITCODE set
# earlier would stand even after a later recipe delivered).
WIKI = ":0 w\n* ^Subject: test\n| {agent} -m Spam\n\n:0 w\n| {agent}{args}\n" + EXITCODE[len(W):]

EARLY = ":0 w\n* ^Subject: test\n| {agent} -m Spam\nEXITCODE=$?\n\n:0 w\n| {agent}{args}\n"


def fill(home):
    """The mailbox one message short of full, as test_dropin_dovecot's fill."""
    size = QUOTA - 100
    name = f"1000000000.M1P1.filler,S={size},W={size}:2,S"
    (home / "Maildir" / "cur" / name).write_bytes(b"Subject: filler\n\n" + b"x" * (size - 17))
    (home / "Maildir" / "maildirsize").write_bytes(f"{QUOTA}S\n{size} 1\n".encode())


def unwritable(home, maildir="Maildir"):
    for sub in ("", "tmp", "new"):
        (home / maildir / sub).chmod(0o555)


def folder(name):
    def make(home):
        for sub in ("cur", "new", "tmp"):
            (home / "Maildir" / name / sub).mkdir(parents=True)
    return make


@dataclass
class Case:
    id: str
    dovecot: str                # what dovecot-lda's run comes to (outcome())
    rc: str = W                 # the recipe, {agent} and {args} filled in
    args: str = ""
    setup: object = None        # setup(home), the Maildir made
    procmail: tuple = ()        # procmail's arguments (mailbox_command's)
    message: bytes = MESSAGE
    runs: int = 1               # 2: Postfix's retry after a deferral, same home


FROM_LINE_ONLY = f"From {BOUNCE}  Sat Dec  5 09:00:00 2026\n".encode() + message(
    message_id="<from-line@example.org>")
CASES = [
    Case("plain", "deliver:INBOX"),
    Case("m-folder", "deliver:.Lists", args=" -m Lists", setup=folder(".Lists")),
    Case("m-missing-folder", "deliver:INBOX", args=" -m Missing"),
    # No Return-Path from the MTA (fetchmail or formail feeding procmail):
    # the From_ line names the sender.
    Case("from-line-only", "deliver:INBOX", message=FROM_LINE_ONLY),
    # mailbox_command = procmail -a "$EXTENSION": the extension is $1.
    Case("a-extension", "deliver:INBOX", args=" -a $1", setup=folder(".lists"),
         procmail=("-a", "lists")),
    Case("a-empty-extension", "deliver:DEFAULT", args=' -a "$1"', procmail=("-a", "")),
    # dovecot-lda's `-a $RECIPIENT` lines: procmail cleared RECIPIENT, the
    # line ends in a bare -a, and both refuse it; written out, it works.
    Case("a-unset-recipient", "deliver:DEFAULT", args=" -a $RECIPIENT"),
    Case("a-address", "deliver:INBOX", args=" -a alice+lists@example.org",
         setup=folder(".lists")),
    Case("unwritable-w", "deliver:DEFAULT", setup=unwritable),
    Case("unwritable-no-w", "deliver:lost", NO_W, setup=unwritable),
    Case("unwritable-exitcode", "defer", EXITCODE, setup=unwritable),
    Case("over-quota-w", "deliver:mailed", setup=fill),
    Case("over-quota-no-w", "deliver:mailed", NO_W, setup=fill),
    Case("over-quota-exitcode", "deliver:mailed", EXITCODE, setup=fill),
    Case("over-quota-e-w", "deliver:DEFAULT", args=" -e", setup=fill),
    Case("over-quota-e-exitcode", "bounce", EXITCODE, args=" -e", setup=fill),
    Case("wiki-rc", "deliver:.Spam", WIKI, setup=folder(".Spam")),
    # The Spam recipe fails and the next one too: the last one's answer.
    Case("wiki-rc-over-quota", "deliver:mailed", WIKI, setup=lambda home: (
        folder(".Spam")(home), fill(home))),
    Case("wiki-rc-unwritable-folder", "deliver:INBOX", WIKI,
         setup=lambda home: (folder(".Spam")(home), unwritable(home, "Maildir/.Spam"))),
    # EXITCODE=$? after a recipe other than the last: the Spam recipe fails,
    # the inbox one delivers, and procmail still exits 75.  Postfix retries
    # a message that arrived; the retry delivers it again.
    Case("exitcode-too-early", "defer:INBOX+INBOX", EARLY, runs=2,
         setup=lambda home: (folder(".Spam")(home), unwritable(home, "Maildir/.Spam"))),
]


@dataclass
class Difference:
    reason: str
    lda: str                    # lda's outcome, where dovecot-lda's is the case's


RECIPE = ("the outcome is the recipe's: README's \"Replacing dovecot-lda or procmail\" "
          "gives the lines that hand lda's answer to Postfix (over-quota-exitcode)")
DIFFERENCES = {
    "a-extension": Difference(
        "an -a without \"@\" is procmail's argument, the address extension Postfix's "
        "$EXTENSION gives (README's extension row): lda files into .lists, which "
        "exists; dovecot-lda takes \"lists\" for the original recipient's address "
        "and files into the INBOX", "deliver:.lists"),
    "a-empty-extension": Difference(
        "`procmail -a \"$EXTENSION\"` for an address without one makes `-a \"$1\"` an "
        "empty -a: lda delivers to the INBOX; dovecot-lda exits 64 (\"Invalid -a "
        "parameter\"), the `w` recipe fails, and procmail files the message in "
        "$DEFAULT, where the Maildir's IMAP user never sees it", "deliver:INBOX"),
    "over-quota-w": Difference(
        "lda defers a full mailbox (75, quota_full = \"tempfail\") where dovecot-lda "
        "mails its own rejection and exits 0; under `w` procmail takes the 75 for a "
        "failed recipe and files the message in $DEFAULT, past the quota and out of "
        "the IMAP user's sight; " + RECIPE, "deliver:DEFAULT"),
    "over-quota-no-w": Difference(
        "without `w` procmail ignores the agent's exit and counts the message "
        "delivered: dovecot-lda's rejection mail still reaches the sender, lda's 75 "
        "reaches no one and the message is gone.  The same recipe loses a message "
        "dovecot-lda cannot store (unwritable-no-w); " + RECIPE, "deliver:lost"),
    "wiki-rc-over-quota": Difference("as over-quota-exitcode", "defer"),
    "exitcode-too-early": Difference(
        "exactly once: on Postfix's retry lda finds the message delivered to the "
        "mailbox (the inbox copy) and discards it for both recipes, the Spam one "
        "too, so procmail exits 0 and Postfix is done; dovecot-lda stores it again "
        "and exits 75 on every retry (the Spam recipe keeps failing) until Postfix "
        "gives up on a message the user has.  README says to set EXITCODE after "
        "the last recipe only", "deliver:INBOX"),
    "over-quota-exitcode": Difference(
        "with EXITCODE=$? procmail exits with lda's 75 and Postfix keeps the message "
        "while the user makes room, as README's \"the mailbox is full\" row says for "
        "a direct call", "defer"),
}


@dataclass
class Result:
    returncode: int             # procmail's
    stderr: bytes               # procmail's, the agent's within (no LOGFILE)
    stored: dict                # {folder: [bytes]} in new/, INBOX ""
    default: int                # how many procmail filed in $DEFAULT
    sent: list                  # [(sendmail args, bytes)] dovecot-lda mailed

    @property
    def action(self):
        return postfix_action(self.returncode, self.stderr)


def outcome(result):
    """Postfix's action on procmail's (last) exit, and where the message
    went ("+" joins the places of a doubled one; "lost": delivered nowhere)."""
    places = [name or "INBOX" for name, files in result.stored.items() for _ in files]
    places += ["DEFAULT"] * result.default
    places += ["mailed"] * len(result.sent)
    where = "+".join(sorted(places))
    if result.action != "deliver":
        return f"{result.action}:{where}" if where else result.action
    return "deliver:" + (where or "lost")


def reset(home):
    """An empty home but for a fresh ~/Maildir: no $DEFAULT, no lda state."""
    for path in home.iterdir():
        if path.is_dir() and not path.is_symlink():
            for sub in path.rglob("*"):
                if sub.is_dir():
                    sub.chmod(0o755)
            shutil.rmtree(path)
        else:
            path.unlink()
    for sub in ("cur", "new", "tmp"):
        (home / "Maildir" / sub).mkdir(parents=True)


def procmail(owner, case):
    """procmail as Postfix's local(8) runs mailbox_command: as the user, the
    message on its stdin.  No LOGFILE: the agent's stderr is procmail's,
    which Postfix reads, and reading it to its end waits for an agent that
    procmail without `w` leaves running when it exits."""
    return subprocess.run([PROCMAIL, *case.procmail], input=case.message, capture_output=True,
                          timeout=60, user=owner.uid, group=owner.gid, extra_groups=[],
                          cwd=owner.home, env={"PATH": "/usr/bin:/bin", "HOME": str(owner.home)})


def run_case(server, case, agent, outbox, config):
    owner, home = server.owner, server.owner.home
    reset(home)
    rc = home / ".procmailrc"
    rc.write_text(HEAD + LDA_CONFIG.format(config=config)
                  + case.rc.format(agent=agent, args=case.args))
    if case.setup:
        case.setup(home)
    owner.chown_tree(home)
    rc.chmod(0o644)
    before = set(outbox.iterdir())
    for _ in range(case.runs):
        done = procmail(owner, case)
    maildir = home / "Maildir"
    for sub in ("", "tmp", "new"):
        (maildir / sub).chmod(0o755)
    sent = [(p.with_suffix(".args").read_text().split(), p.read_bytes())
            for p in sorted(set(outbox.iterdir()) - before) if p.suffix == ".eml"]
    default = home / "default" / "new"
    return Result(done.returncode, done.stderr, stored_by_folder(maildir),
                  len(list(default.iterdir())) if default.exists() else 0, sent)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    if PROCMAIL is None:
        pytest.skip("procmail is not installed (apt-get install procmail)")
    keep = tmp_path_factory.mktemp("procmail-pipe")
    with private_dovecot(keep) as server:
        # Dovecot's own default for -m's folder (the private one's is yes).
        outbox = server.capture_sendmail("lda_mailbox_autocreate = no\n")
        server.log.chmod(0o666)
        agents = {"dovecot": f"{DOVECOT_LDA} -c {server.conf}", "lda": str(LDA)}
        config = write_lda_toml(server.root / "lda-user.toml", {"mode": "user",
                                                               "log": "stderr"})
        table = {}
        try:
            for case in CASES:
                table[case.id] = {name: run_case(server, case, agent, outbox, config)
                                  for name, agent in agents.items()}
        finally:
            # procmail makes the user's system mailbox, whatever $DEFAULT says.
            for spool in ("/var/mail", "/var/spool/mail"):
                if os.path.exists(f"{spool}/{server.owner.name}"):
                    os.unlink(f"{spool}/{server.owner.name}")
    return table


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_procmail_does_with_lda_what_it_does_with_dovecot_lda(results, case):
    dove, ours = results[case.id]["dovecot"], results[case.id]["lda"]
    expected = DIFFERENCES.get(case.id)
    print(f"\n{case.id}: dovecot-lda: procmail exit {dove.returncode} {outcome(dove)}"
          f"\n  lda: procmail exit {ours.returncode} {outcome(ours)}\n{dove.stderr!r}\n---\n"
          f"{ours.stderr!r}\n{dove.stored}\n{ours.stored}")
    assert outcome(dove) == case.dovecot, dove.stderr
    assert outcome(ours) == (expected.lda if expected else case.dovecot), ours.stderr
    assert ours.sent == []


def test_every_difference_is_a_case():
    assert set(DIFFERENCES) <= {case.id for case in CASES}


BOTH_STORED = [c for c in CASES if c.dovecot.startswith("deliver:") and "DEFAULT" not in c.dovecot
               and c.dovecot not in ("deliver:lost", "deliver:mailed")]


@pytest.mark.parametrize("case", BOTH_STORED, ids=[case.id for case in BOTH_STORED])
def test_lda_stores_what_dovecot_lda_stores(results, case):
    """Both drop procmail's From_ line.  Below it Postfix's local(8) wrote
    Return-Path: and Delivered-To: for this very delivery: lda adds none of
    its own, even with no recipient named (procmail cleared RECIPIENT, and
    lda's per-user recipient is then the login name, which no Delivered-To
    from Postfix names)."""
    dove, ours = results[case.id]["dovecot"], results[case.id]["lda"]
    [dove_data] = [data for files in dove.stored.values() for data in files]
    [lda_data] = [data for files in ours.stored.values() for data in files]
    assert_no_traceback(subprocess.CompletedProcess([], ours.returncode, b"", ours.stderr))
    if case.message is MESSAGE:
        assert lda_data == dove_data
    else:
        # Nothing from the MTA on top: lda's own trace fields, the sender
        # the From_ line's.
        top = f"Return-Path: <{BOUNCE}>\nDelivered-To: ".encode()
        assert lda_data.startswith(top), lda_data[:200]
        assert lda_data.split(b"\n", 2)[2] == dove_data


def test_dovecot_lda_takes_the_sender_from_the_from_line_too(results):
    """Its rejection goes to the From_ line's sender: procmail sets no SENDER."""
    [(args, _)] = results["over-quota-w"]["dovecot"].sent
    assert args[-1] == BOUNCE, args


def test_lda_run_by_procmail_does_not_call_the_procmailrc_unread(results):
    """lda's note for a user who kept a ~/.procmailrc and has no Sieve
    script says procmail's recipes no longer run; here procmail ran them,
    and one of them ran lda."""
    for case in CASES:
        assert b"procmail-convert" not in results[case.id]["lda"].stderr, case.id

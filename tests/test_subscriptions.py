"""The folders a delivery makes are subscribed, as Dovecot's
lda_mailbox_autosubscribe = yes does, so that an IMAP client that lists
subscribed folders only (Thunderbird's and Roundcube's default) shows them.

Each case runs the same command line through dovecot-lda (Dovecot 2.3) and
through the installed `lda`, to twin users of one private Dovecot set up
alike, and compares the `subscriptions` file each leaves in the Maildir
(Dovecot's own format: lib-storage's subscription-file.c) and what
`doveadm mailbox list -s` reads from it.  Pigeonhole's `fileinto :create`
and lda's are compared the same way.  Where lda differs, DIFFERENCES says
why; anything else is a failure.
"""

import os
import subprocess
import time
from dataclasses import dataclass

import pytest

from conftest import LDA, create_mailboxes, mailbox_paths, message, write_lda_toml
from dovecot import DOVECOT_LDA, private_dovecot
from test_logs import log_lines

SIEVE_WITH_LDA = "protocol lda {\n  mail_plugins = $mail_plugins sieve\n}\n"
AUTOCREATE = ("-o", "lda_mailbox_autocreate=yes")
SUBSCRIBE = ("-o", "lda_mailbox_autosubscribe=yes")
V2 = b"V\t2\n\n"


@dataclass
class Case:
    id: str
    runs: tuple                 # one argv (after -d, -f) a delivery, in order
    before: bytes | None = None  # the subscriptions file before, None: none
    folders: tuple = ()         # folders that exist before (".Lists")
    script: str | None = None   # a Sieve script for both users


CREATE_SCRIPT = 'require ["fileinto", "mailbox"];\nfileinto :create "{}";\n'
CASES = [
    Case("fresh", ((*AUTOCREATE, *SUBSCRIBE, "-m", "Lists.Sub"),
                   (*AUTOCREATE, *SUBSCRIBE, "-m", "Entwürfe"))),
    Case("version-1-file", ((*AUTOCREATE, *SUBSCRIBE, "-m", "Lists.Sub"),
                            (*AUTOCREATE, *SUBSCRIBE, "-m", "Entwürfe")), b"Old\nA.B\n"),
    Case("empty-file", ((*AUTOCREATE, *SUBSCRIBE, "-m", "Lists.Sub"),), b""),
    Case("version-2-file", ((*AUTOCREATE, *SUBSCRIBE, "-m", "Lists"),),
         V2 + b"Old\nA\tB\n"),
    Case("already-subscribed", ((*AUTOCREATE, *SUBSCRIBE, "-m", "Lists"),),
         V2 + b"Lists\nOld\n"),
    Case("folder-existed", ((*AUTOCREATE, *SUBSCRIBE, "-m", "Lists"),), folders=(".Lists",)),
    Case("twice", ((*AUTOCREATE, *SUBSCRIBE, "-m", "Lists"),
                   (*AUTOCREATE, *SUBSCRIBE, "-m", "Lists"))),
    Case("autosubscribe-no", ((*AUTOCREATE, "-o", "lda_mailbox_autosubscribe=no",
                               "-m", "Lists"),)),
    Case("no-autocreate", (("-o", "lda_mailbox_autocreate=no", *SUBSCRIBE, "-m", "Lists"),)),
    Case("default", ((*AUTOCREATE, "-m", "Lists"),)),
    Case("sieve-create", ((*SUBSCRIBE,),), script=CREATE_SCRIPT.format("Filtered.Deep")),
    Case("sieve-create-default", ((),), script=CREATE_SCRIPT.format("Filtered")),
    Case("sieve-create-exists", ((*SUBSCRIBE,),), folders=(".Filtered",),
         script=CREATE_SCRIPT.format("Filtered")),
]
# What lda does differently: {case id: (why, lda's subscriptions file)}.
DIFFERENCES = {
    "default": ("lda subscribes the folders it makes unless told not to (lda.toml's "
                "subscribe_new_folders, or -o lda_mailbox_autosubscribe=no), where "
                "Dovecot's default is no: a filtered folder that the user's client "
                "does not list looks like lost mail", V2 + b"Lists\n"),
    "sieve-create-default": ("as default, for a folder a Sieve script makes",
                             V2 + b"Filtered\n"),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """{case id: {"dovecot": (subscriptions bytes or None, subscribed list),
    "lda": (...)}}."""
    keep = tmp_path_factory.mktemp("subscriptions")
    with private_dovecot(keep, extra=SIEVE_WITH_LDA) as server:
        state = server.root / "lda-state"
        state.mkdir()
        server.owner.chown_tree(state)
        config = write_lda_toml(server.root / "lda.toml", {"state_dir": str(state),
                                                           "log": "stderr"})
        env = {"PATH": "/usr/bin:/bin", "HOME": str(server.owner.home),
               "LDA_CONFIG": str(config)}
        run_as = {"user": server.owner.uid, "group": server.owner.gid, "extra_groups": []}
        create_mailboxes(env, [(f"l-{case.id}@example.org",) for case in CASES],
                         cwd="/", **run_as)
        maildirs = {}
        for case in CASES:
            dove, ours = f"d-{case.id}@example.org", f"l-{case.id}@example.org"
            maildirs[case.id] = {
                "dovecot": (dove, server.add_user(dove)),
                "lda": (ours, server.add_user(ours, maildir=str(mailbox_paths(state, ours)[1])))}
        time.sleep(1.2)  # Dovecot's passwd-file userdb rereads a changed file a second on
        table = {}
        for case in CASES:
            table[case.id] = {}
            for agent, (user, maildir) in maildirs[case.id].items():
                for folder in case.folders:
                    for sub in ("cur", "new", "tmp"):
                        (maildir / folder / sub).mkdir(parents=True)
                if case.before is not None:
                    (maildir / "subscriptions").write_bytes(case.before)
                if case.script is not None:  # each agent's script location
                    (maildir.parent / ".dovecot.sieve" if agent == "dovecot"
                     else maildir / "lda.sieve").write_text(case.script)
                server.owner.chown_tree(maildir.parent if agent == "dovecot" else maildir)
                for i, argv in enumerate(case.runs):
                    command = ([DOVECOT_LDA, "-c", str(server.conf)] if agent == "dovecot"
                               else [str(LDA)])
                    done = subprocess.run(
                        [*command, "-d", user, "-f", "sender@example.org", *argv],
                        input=message(message_id=f"<{case.id}-{i}@example.org>"),
                        capture_output=True, timeout=60, cwd="/", env=env,
                        **({} if agent == "dovecot" else run_as))
                    assert done.returncode == 0, (agent, case.id, done.stderr.decode())
                path = maildir / "subscriptions"
                listed = server.doveadm("mailbox", "list", "-u", user, "-s").stdout.split()
                table[case.id][agent] = (path.read_bytes() if path.exists() else None, listed)
    return table


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_the_folders_a_delivery_makes_are_subscribed_as_dovecot_lda_does(results, case):
    dovecot, lda = results[case.id]["dovecot"], results[case.id]["lda"]
    if case.id in DIFFERENCES:
        why, expected = DIFFERENCES[case.id]
        assert dovecot[0] != expected and lda[0] == expected, (why, dovecot, lda)
        return
    assert lda == dovecot


def test_the_subscriptions_dovecot_reads_are_those_expected(results):
    """What the comparison rests on, checked once against fixed bytes:
    Dovecot's version-2 file names a folder by its Maildir++ name (IMAP's
    modified UTF-7) with a tab between levels."""
    assert results["fresh"]["lda"] == (V2 + b"Lists\tSub\nEntw&APw-rfe\n",
                                       ["Lists.Sub", "Entwürfe"])
    assert results["version-1-file"]["lda"][0] == b"Old\nA.B\nLists.Sub\nEntw&APw-rfe\n"
    assert results["autosubscribe-no"]["lda"][0] is None


# --- lda alone: the lock, damage, and the other ways in ----------------------------

FILE_INTO = 'require ["fileinto", "mailbox"];\nfileinto :create "{}";\n'


def filing_alice(site, folder="Filtered", **settings):
    if settings:
        site.write_config({"state_dir": str(site.state), "aliases": str(site.aliases),
                           "log": "stderr", **settings})
    box = site.create("alice@example.org")
    (box / "lda.sieve").write_text(FILE_INTO.format(folder))
    return box


def delivered_into(box, folder):
    return [p.name for p in (box / folder / "new").iterdir()]


def test_a_folder_made_by_sieve_is_subscribed_in_a_file_of_the_maildirs_mode(site):
    box = filing_alice(site, "Filtered.Deep")
    done = site.deliver(message(), "alice@example.org", check=0)
    assert (box / "subscriptions").read_bytes() == V2 + b"Filtered\tDeep\n"
    assert oct((box / "subscriptions").stat().st_mode & 0o777) == \
        oct(box.stat().st_mode & 0o666)
    assert not (box / "subscriptions.lock").exists()
    assert len(delivered_into(box, ".Filtered.Deep")) == 1
    assert not [line for line in log_lines(done) if "subscribed" in line]


def test_subscribe_new_folders_false_leaves_the_file_alone(site):
    box = filing_alice(site, subscribe_new_folders=False)
    site.deliver(message(), "alice@example.org", check=0)
    assert len(delivered_into(box, ".Filtered")) == 1
    assert not (box / "subscriptions").exists()


def test_a_lock_another_writer_holds_delays_then_the_delivery_goes_on_unsubscribed(site):
    box = filing_alice(site)
    (box / "subscriptions").write_bytes(V2 + b"Old\n")
    (box / "subscriptions.lock").write_bytes(b"")  # a live writer's: fresh
    started = time.monotonic()
    done = site.deliver(message(), "alice@example.org", check=0)
    assert 1.5 < time.monotonic() - started < 30
    assert len(delivered_into(box, ".Filtered")) == 1
    assert (box / "subscriptions").read_bytes() == V2 + b"Old\n"
    assert (box / "subscriptions.lock").exists()  # not ours to remove
    [warning] = [line for line in log_lines(done) if "subscribed" in line]
    assert "folder Filtered made but not subscribed: subscriptions.lock: still held" in warning
    # The folder exists now: the next delivery into it does not subscribe it.
    (box / "subscriptions.lock").unlink()
    site.deliver(message(message_id="<m2@example.org>"), "alice@example.org", check=0)
    assert (box / "subscriptions").read_bytes() == V2 + b"Old\n"


def test_a_stale_lock_is_a_dead_writers_and_is_replaced(site):
    box = filing_alice(site)
    lock = box / "subscriptions.lock"
    lock.write_bytes(b"half")
    os.utime(lock, (time.time() - 60, time.time() - 60))
    site.deliver(message(), "alice@example.org", check=0)
    assert (box / "subscriptions").read_bytes() == V2 + b"Filtered\n"
    assert not lock.exists()


@pytest.mark.parametrize("damage", ["symlink", "fifo", "directory", "huge"])
def test_a_subscriptions_file_lda_cannot_rewrite_is_left_as_it_is(site, tmp_path, damage):
    box = filing_alice(site)
    path = box / "subscriptions"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(V2 + b"Other\n")
    if damage == "symlink":
        path.symlink_to(elsewhere)
    elif damage == "fifo":
        os.mkfifo(path)
    elif damage == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"x\n" * (1 << 20))
    done = site.deliver(message(), "alice@example.org", check=0)
    assert len(delivered_into(box, ".Filtered")) == 1
    assert elsewhere.read_bytes() == V2 + b"Other\n"
    assert path.is_symlink() or damage != "symlink"
    assert not (box / "subscriptions.lock").exists()
    [warning] = [line for line in log_lines(done) if "subscribed" in line]
    assert "folder Filtered made but not subscribed: subscriptions" in warning


def test_a_folder_a_killed_delivery_left_half_made_is_subscribed_by_the_next(site):
    """A folder made up to its new/ (which Maildir makes last) is one
    this delivery makes: it subscribes it."""
    box = filing_alice(site)
    for sub in ("tmp", "cur"):
        (box / ".Filtered" / sub).mkdir(parents=True)
    site.deliver(message(), "alice@example.org", check=0)
    assert (box / "subscriptions").read_bytes() == V2 + b"Filtered\n"


def test_lmtp_subscribes_a_folder_sieve_makes(lmtp):
    server = lmtp()
    box = server.site.maildir("a@example.org")
    (box / "lda.sieve").write_text(FILE_INTO.format("ByLmtp"))
    client = server.client()
    _, replies = client.send("s@example.org", ["a@example.org"], message())
    client.close()
    assert replies[0].startswith("250 2."), replies
    assert (box / "subscriptions").read_bytes() == V2 + b"ByLmtp\n"

"""Moving a mailbox to another host through a real ssh, as move_command's
default does (`ssh {host} lda mailbox receive`, README "Moving a mailbox
to another host"): a private sshd on loopback (tests/sshd.py) in front of
host b, the two hosts and the private PostgreSQL of tests/test_hostmove.py.

The command is the documented one plus what this test site needs and a
mail host would not: -F (the private sshd's client config: hosts a and b,
its key, its known_hosts, BatchMode), lda's own path (a venv the ssh
session's PATH does not have) and -c (b's lda.toml is not
/etc/lda/lda.toml, and ssh carries no LDA_CONFIG).  What crosses ssh is
real: the binary stream, the remote exit status and its stderr as ssh
hands them back, ssh's own failures (exit 255) and a connection cut in
the middle of the stream."""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import LDA, maildir_files, message, wait_until
from postgres import postgres, postgres_cluster  # noqa: F401 (fixtures)
from sshd import SSH, WAIT_SECONDS, keygen, signal_sessions, sshd  # noqa: F401 (fixture)
from test_hostmove import (ALICE, FORWARD, MESSAGES, S421_MOVING, S430_ELSEWHERE, kill_at,
                           make_hosts, moves_rows, populate, rows, tree)

from lda.config import KEYS


def over_ssh(ssh_config, lda_toml=True, options=()):
    """a's move_command: lda.toml's default (`ssh` with its options, `{host}
    lda mailbox receive`), with -F, lda's path and (unless lda_toml is
    false) b's -c.  options go first: ssh keeps an option's first value."""
    ssh, *default_options, host, lda, mailbox, receive = KEYS["move_command"][0]
    assert (ssh, host, lda, mailbox, receive) == ("ssh", "{host}", "lda", "mailbox", "receive")

    def command(b):
        config = ["-c", str(b.config)] if lda_toml else []
        return [SSH, "-F", str(ssh_config), *options, *default_options, host, LDA, *config,
                mailbox, receive]
    return command


def one_line(done):
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def sessions(sshd):
    return sshd.log_text().count("Starting session: command")


def assert_nothing_moved(a, b, before, step="send"):
    """alice is still a's, deferred on both hosts; b has none of her."""
    assert tree(a.maildir(ALICE)) == before and moves_rows(a) == [(step,)]
    assert not b.alice.exists() and rows(b.dbb) == []
    assert not list((b.state / "databases" / "dbb").glob(".lda-receive/*"))
    assert S421_MOVING in a.deliver(message(message_id="<d@x>"), ALICE, check=75).stderr


def test_a_mailbox_moves_whole_through_ssh(make_site, postgres, sshd):
    a, b = make_hosts(make_site, postgres[1], over_ssh(sshd.config))
    populate(a, MESSAGES)
    before, rows_before = tree(a.maildir(ALICE)), rows(a.dba)
    forwarded = rows(a.dba, address=f"forward:{FORWARD}")
    assert "lda.sieve" in before and "dovecot-keywords" in before and len(rows_before) == 6
    opened = sessions(sshd)
    done = a.run("mailbox", "move", ALICE, "--to", "dbb", "--json", check=0)
    report = json.loads(done.stdout)
    assert (report["result"], report["messages"], report["rows"]) == \
        ("moved", MESSAGES + 1, 2 * MESSAGES)
    assert sessions(sshd) == opened + 2                 # the stream, then --confirm
    assert tree(b.alice) == before                      # byte for byte, every folder
    assert rows(b.dbb) == rows_before and rows(b.dbb, address=f"forward:{FORWARD}") == forwarded
    assert rows(a.dba) == [] and moves_rows(a) == []
    assert not (a.dba.parent / "example.org" / "alice").exists()
    assert S430_ELSEWHERE in a.deliver(message(message_id="<n@x>"), ALICE, check=75).stderr
    b.deliver(message(message_id="<m3@example.org>", subject="m3"), ALICE, check=0)
    assert tree(b.alice) == before                      # a resend: discarded on b
    b.deliver(message(message_id="<n@x>"), ALICE, check=0)


def test_sshd_down_stops_the_move_before_the_flip_and_resume_finishes(
        make_site, postgres, sshd):
    a, b = make_hosts(make_site, postgres[1], over_ssh(sshd.config))
    populate(a, 2)
    before = tree(a.maildir(ALICE))
    sshd.stop()
    try:
        refused = a.run("mailbox", "move", ALICE, "--to", "dbb", check=75)
    finally:
        sshd.start()
    line = one_line(refused)
    assert "did not take" in line and "Connection refused" in line and "(exit 255)" in line, line
    assert_nothing_moved(a, b, before)
    done = a.run("mailbox", "move", ALICE, "--resume", "--json", check=0)
    assert json.loads(done.stdout)["result"] == "moved"
    assert tree(b.alice) == before and moves_rows(a) == []


def test_sshd_down_after_the_flip_keeps_the_source_copy_until_resume(make_site, postgres,
                                                                       sshd):
    a, b = make_hosts(make_site, postgres[1], over_ssh(sshd.config))
    populate(a, 2)
    before = tree(a.maildir(ALICE))
    source = a.dba.parent / "example.org" / "alice"
    kill_at(a, "flipped")                               # b has her; not confirmed yet
    sshd.stop()
    try:
        refused = a.run("mailbox", "move", ALICE, "--resume", check=75)
    finally:
        sshd.start()
    line = one_line(refused)
    assert "did not confirm" in line and "(exit 255)" in line, line
    assert moves_rows(a) == [("flipped",)] and tree(source) == before
    assert tree(b.alice) == before
    a.run("mailbox", "move", ALICE, "--resume", check=0)
    assert moves_rows(a) == [] and not source.exists() and tree(b.alice) == before


def test_a_changed_host_key_or_a_refused_key_moves_nothing(make_site, postgres, sshd,
                                                           tmp_path):
    """ssh's own refusals (exit 255) reach the admin in one line; once the
    client is right again, --resume finishes."""
    variant = sshd.root / f"ssh_config-{tmp_path.name}"
    a, b = make_hosts(make_site, postgres[1], over_ssh(variant))
    populate(a, 2)
    before = tree(a.maildir(ALICE))
    cases = [(dict(host_key=keygen(tmp_path / "other_host_key")),
              "Host key verification failed"),
             (dict(identity=keygen(tmp_path / "stranger")), "Permission denied (publickey)")]
    for wrong, said in cases:
        sshd.client_config(variant.name, **wrong)
        refused = a.run("mailbox", "move", ALICE, "--resume" if moves_rows(a) else "--to",
                        *([] if moves_rows(a) else ["dbb"]), check=75)
        line = one_line(refused)
        assert said in line and "(exit 255)" in line, line
        assert_nothing_moved(a, b, before)
    sshd.client_config(variant.name)
    a.run("mailbox", "move", ALICE, "--resume", check=0)
    assert tree(b.alice) == before


def test_the_target_lda_failing_reaches_the_admin(make_site, postgres, sshd):
    """Without -c, the target's lda looks for /etc/lda/lda.toml (ssh passes
    no LDA_CONFIG); its one-line refusal comes back through ssh."""
    if os.path.exists("/etc/lda/lda.toml"):
        pytest.skip("this machine has an /etc/lda/lda.toml")
    a, b = make_hosts(make_site, postgres[1], over_ssh(sshd.config, lda_toml=False))
    populate(a, 1)
    before = tree(a.maildir(ALICE))
    refused = a.run("mailbox", "move", ALICE, "--to", "dbb", check=75)
    line = one_line(refused)
    assert "did not take" in line and "no lda.toml" in line and "(exit 78)" in line, line
    assert "ssh" in line and "-c FILE" in line and "move_command" in line, line  # the fix
    assert_nothing_moved(a, b, before)
    rolled = a.run("mailbox", "move", ALICE, "--rollback", check=75)  # --abort fails alike
    assert "no lda.toml" in one_line(rolled)


# Runs the move and, once half the files are sent and b has begun to stage
# them, breaks the connection: "cut" kills the sshd sessions, "freeze"
# stops them (and b's lda) so that the network goes silent.
CUTTER = """
import os, signal, sys, time
sys.path.insert(0, sys.argv[2])
from sshd import kill_sessions, signal_sessions
from lda.config import load_config
from lda.errors import LdaError
from lda.admin.mailboxes import open_directory
from lda.admin.hostmove import HostMove
sshd, staging, cut = int(sys.argv[1]), sys.argv[3], []
def progress(phase, done, total):
    if phase != "send" or cut or done * 2 < total:
        return
    deadline = time.monotonic() + 10            # b's lda has begun to stage it
    while not (os.path.isdir(staging) and os.listdir(staging)):
        if time.monotonic() > deadline:
            sys.exit(f"nothing staged on b after {done} of {total} files")
        time.sleep(0.01)
    if sys.argv[4] == "cut":
        kill_sessions(sshd)
    else:
        signal_sessions(sshd, signal.SIGSTOP)
    cut.append(done)
config = load_config(None)
try:
    HostMove(config, open_directory(config), "alice@example.org", progress=progress).run("dbb")
except LdaError as e:
    sys.exit(f"{e}")
"""


def test_a_connection_cut_in_the_middle_of_the_stream(make_site, postgres, sshd):
    """The sshd sessions are killed while the stream goes (half the files
    sent, 256 KB among them: past lda's buffer, so b's lda is reading):
    ssh exits 255, b's lda reads a cut stream and keeps nothing, the move
    stays before the flip, and --resume sends it again whole."""
    a, b = make_hosts(make_site, postgres[1], over_ssh(sshd.config))
    populate(a, 4)
    big = a.maildir(ALICE) / ".Archive" / "cur" / "0.M0P0.host:2,S"
    big.write_bytes(message(message_id="<big@x>", body=os.urandom(1 << 17).hex().encode()))
    before = tree(a.maildir(ALICE))
    staging = b.state / "databases" / "dbb" / ".lda-receive"
    cut = subprocess.run([sys.executable, "-c", CUTTER, str(sshd.process.pid),
                          os.path.dirname(__file__), str(staging), "cut"], env=a.env,
                         capture_output=True)
    line = one_line(cut)
    assert cut.returncode == 1 and "did not take" in line and "(exit 255)" in line, line
    wait_until(lambda: not list(staging.glob("*")), WAIT_SECONDS,  # b's lda may still be
               "the target's staging removed")                     # reading the cut stream
    assert_nothing_moved(a, b, before)
    a.run("mailbox", "move", ALICE, "--resume", check=0)
    assert tree(b.alice) == before


def test_a_network_gone_silent_ends_the_stream_by_the_keepalive(make_site, postgres, sshd):
    """The sshd sessions and b's lda are stopped mid-stream: nothing answers
    and nothing resets, as when a network drops everything.  The default
    move_command's ServerAliveInterval makes ssh give up (exit 255) instead
    of waiting for TCP for hours, with alice deferred all along; here with
    1 s x 2 for the test's sake (given first, ssh keeps it over the
    default's 15 s; LogLevel as ssh's default, for its reason).  Once the
    network is back, b's lda reads a cut stream and keeps nothing, and
    --resume sends it again whole."""
    default = KEYS["move_command"][0]
    assert "BatchMode=yes" in default and "ServerAliveInterval=15" in default
    options = ["-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2",
               "-o", "LogLevel=INFO"]
    a, b = make_hosts(make_site, postgres[1], over_ssh(sshd.config, options=options))
    populate(a, 4)
    big = a.maildir(ALICE) / ".Archive" / "cur" / "0.M0P0.host:2,S"
    big.write_bytes(message(message_id="<big@x>", body=os.urandom(1 << 17).hex().encode()))
    before = tree(a.maildir(ALICE))
    staging = b.state / "databases" / "dbb" / ".lda-receive"
    try:
        silent = subprocess.run([sys.executable, "-c", CUTTER, str(sshd.process.pid),
                                 os.path.dirname(__file__), str(staging), "freeze"],
                                env=a.env, capture_output=True, timeout=60)
    finally:
        signal_sessions(sshd.process.pid, signal.SIGCONT)
    line = one_line(silent)
    assert silent.returncode == 1 and "did not take" in line and "(exit 255)" in line, line
    assert "not responding" in line, line                   # ssh's keepalive gave up
    wait_until(lambda: not list(staging.glob("*")), WAIT_SECONDS,
               "the target's staging removed")
    assert_nothing_moved(a, b, before)
    a.run("mailbox", "move", ALICE, "--resume", check=0)
    assert tree(b.alice) == before


# Characters an address may have (RFC 5322 atext) that a shell reads, as
# ssh joins its arguments into one command line for the remote shell; and
# an é (SMTPUTF8), read as UTF-8 though the ssh session has no LANG.
SHELLY = "o'b$home`true`é@example.org"


def test_an_address_a_shell_would_read_moves_intact(make_site, postgres, sshd):
    a, b = make_hosts(make_site, postgres[1], over_ssh(sshd.config))
    a.create(SHELLY, "--db", "dba")
    a.deliver(message(message_id="<s@x>"), SHELLY, check=0)
    before = tree(a.maildir(SHELLY))
    done = a.run("mailbox", "move", SHELLY, "--to", "dbb", "--json", check=0)
    report = json.loads(done.stdout)
    assert (report["address"], report["result"]) == (SHELLY, "moved")
    moved = b.state / "databases" / "dbb" / report["maildir"]
    assert tree(moved) == before and len(maildir_files(moved)) == 1
    assert moves_rows(a) == []

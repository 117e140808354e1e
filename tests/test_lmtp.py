"""`lda lmtp` over a raw socket: one reply per recipient after DATA (RFC
2033 4.2), 550 at RCPT time, concurrency, and a graceful SIGTERM."""

import os
import shutil
import signal
import smtplib
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import LDA, maildir_files, message, wait_until
from lmtp_session import Server
from statuscodes import S250_DELIVERED, S250_RCPT, S452_FULL, S550_UNKNOWN, S552_FULL


def test_helo_is_not_lmtp(lmtp):
    client = lmtp().client()
    assert client.cmd("HELO x").startswith("500")
    client.close()


def test_one_reply_per_recipient_in_rcpt_order(lmtp):
    server = lmtp()
    client = server.client()
    rcpts = ["a@example.org", "b@example.org", "nobody@example.org", "c@example.org",
             "full@example.org", "d@example.org"]
    rcpt_replies, data_replies = client.send("s@example.org", rcpts, message())
    client.close()
    assert rcpt_replies["nobody@example.org"].startswith(S550_UNKNOWN)
    assert [r.split()[0] + " " + r.split()[1] for r in data_replies] == [
        S250_DELIVERED, S250_DELIVERED, S250_DELIVERED, S452_FULL, S250_DELIVERED]
    assert "<full@example.org>" in data_replies[3]
    for name in "abcd":
        assert len(maildir_files(server.site.maildir(f"{name}@example.org"))) == 1


def test_resent_message_is_answered_250_and_not_stored_twice(lmtp):
    server = lmtp()
    for _ in range(2):
        client = server.client()
        _, replies = client.send("s@example.org", ["a@example.org", "b@example.org"],
                                 message())
        client.close()
        assert all(r.startswith(S250_DELIVERED) for r in replies)
    assert "duplicate" in replies[0]
    assert len(maildir_files(server.site.maildir("a@example.org"))) == 1


def test_quota_full_reject_gives_552(lmtp):
    server = lmtp(quota_full="reject")
    client = server.client()
    _, replies = client.send("s@example.org", ["full@example.org"], message())
    client.close()
    assert replies[0].startswith(S552_FULL)


def test_rcpt_time_quota_check_uses_declared_size(lmtp):
    server = lmtp(lmtp_rcpt_check_quota=True)
    client = server.client()
    assert client.cmd("LHLO test")[-1].startswith("250")
    assert client.cmd("MAIL FROM:<s@example.org> SIZE=5000").startswith("250")
    assert client.cmd("RCPT TO:<full@example.org>").startswith(S452_FULL)
    assert client.cmd("RCPT TO:<a@example.org>").startswith(S250_RCPT)
    client.close()


def test_rcpt_time_quota_check_counts_the_fields_lda_adds(lmtp):
    """SIZE= is the message as the client sends it; lda stores it with its
    Return-Path, Delivered-To and Received on top.  A mailbox with room for
    SIZE= alone and not for those is refused at RCPT (here 552 5.2.3: the
    message is more than the whole quota), not accepted there and refused
    after DATA, which fetchmail answers with a bounce and a delete."""
    server = lmtp()
    quota = 10_000
    server.site.create("tight@example.org", "--quota-storage", str(quota))
    data = b"Subject: tight\r\n\r\n" + b"x" * (quota - 20) + b"\r\n"
    assert len(data) == quota  # it fits: a limit reached exactly is allowed
    client = server.client()
    assert client.cmd("LHLO test")[-1].startswith("250")
    assert client.cmd(f"MAIL FROM:<s@example.org> SIZE={len(data)}").startswith("250")
    reply = client.cmd("RCPT TO:<tight@example.org>")
    if reply.startswith("250"):  # to show what it leads to
        assert client.cmd("DATA").startswith("354")
        client.sock.sendall(data + b".\r\n")
        reply = f"{reply}, then after DATA: {client.reply()}"
    client.close()
    assert reply.startswith("552 5.2.3 <tight@example.org>"), reply


@pytest.mark.parametrize(("args", "processes", "children"),
                         [((), 4, 4), (("--workers", "2"), 1, 0)],
                         ids=["own-thread", "with-threads"])
def test_the_default_process_count_follows_the_cpus(lmtp, args, processes, children):
    """On one CPU: four processes that deliver in their own thread, or one
    (the supervisor itself serving, no children) with delivery threads."""
    server = lmtp(*args, cpus={0})
    assert "a@example.org" in deliver_one(server, "a@example.org", "<cpus@example.org>")
    assert len(server.forked(children) if children else server.children()) == children
    code, err = server.stop()
    assert code == 0, err
    assert f"{processes} processes, each" in err


@pytest.mark.parametrize("workers", ["0", "4"], ids=["own-thread", "four-threads"])
@pytest.mark.parametrize("processes", ["1", "3"], ids=["one-process", "three-processes"])
def test_twenty_concurrent_sessions_with_overlapping_messages(lmtp, processes, workers):
    server = lmtp("--workers", workers, "--processes", processes)
    rcpts = ["a@example.org", "b@example.org", "c@example.org", "d@example.org"]
    failures = []

    def session(n):
        try:
            client = server.client()
            for i in range(5):  # messages 0..9 overlap between sessions
                _, replies = client.send("s@example.org", rcpts,
                                         message(message_id=f"<m{(n + i) % 10}@x>"))
                assert all(r.startswith(S250_DELIVERED) for r in replies), replies
                client.cmd("RSET")
            client.close()
        except Exception as e:  # reported below, in the test's thread
            failures.append(repr(e))

    threads = [threading.Thread(target=session, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert failures == []
    for rcpt in rcpts:
        assert len(maildir_files(server.site.maildir(rcpt))) == 10


@pytest.mark.parametrize("processes", ["1", "2"], ids=["one-process", "two-processes"])
def test_sigterm_finishes_the_delivery_under_way(lmtp, tmp_path, processes):
    slow = tmp_path / "slow-sendmail"
    slow.write_text("#!/bin/sh\nsleep 2\ncat > /dev/null\n")
    slow.chmod(0o755)
    server = lmtp("--processes", processes, sendmail=[str(slow)])
    server.site.run("mailbox", "create", "fwd@example.org", "--forward",
                    "far@elsewhere.example.net", check=0)
    client = server.client()
    replies = {}

    def send():
        replies["data"] = client.send("s@example.org", ["fwd@example.org"], message())[1]

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(1.0)  # DATA is being delivered: the sendmail stand-in sleeps
    server.proc.send_signal(signal.SIGTERM)
    sender.join(timeout=60)
    assert replies["data"][0].startswith(S250_DELIVERED)
    code, err = server.stop()
    client.drop()
    assert code == 0 and "stopped" in err
    assert not server.path.exists()
    assert len(maildir_files(server.site.maildir("fwd@example.org"))) == 1


def test_tcp_listen(lmtp):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = lmtp("--processes", "2", listen=f"127.0.0.1:{port}")
    with smtplib.LMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo_or_helo_if_needed()
        assert client.mail("s@example.org")[0] == 250
        assert client.rcpt("a@example.org")[0] == 250
        assert client.data(message())[0] == 250
    assert len(maildir_files(server.site.maildir("a@example.org"))) == 1


def test_a_process_that_dies_is_replaced(lmtp):
    server = lmtp("--processes", "2")
    first = server.forked(2)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(server.children() - {victim}) == 2, 30, "a replacement process")
    for n in range(4):  # sessions land on the survivor and the newcomer alike
        client = server.client()
        _, replies = client.send("s@example.org", ["a@example.org"],
                                 message(message_id=f"<r{n}@x>"))
        client.close()
        assert replies[0].startswith(S250_DELIVERED)
    code, err = server.stop()
    assert code == 0 and f"process {victim} killed by signal 9" in err
    assert not server.path.exists()


STRACE = shutil.which("strace")


@pytest.mark.skipif(STRACE is None, reason="needs strace (apt-get install strace)")
def test_the_socket_file_appears_only_once_it_listens(make_site, tmp_path):
    """A client that finds the socket file connects at once (Postfix's
    lmtp(8) after a restart; a test waiting for it): between bind(), which
    makes the file, and listen(), a connect is refused (ECONNREFUSED, which
    CI saw, and Postfix defers on), so the file is renamed into place only
    once the socket listens.  Seen in the order of the server's own system
    calls, as strace records them."""
    site = make_site()
    path = site.root / "lmtp.sock"
    trace = tmp_path / "trace"
    proc = subprocess.Popen([STRACE, "-f", "-qq", "-o", str(trace), "-e",
                             "trace=bind,listen,rename,renameat,renameat2",
                             LDA, "lmtp", "--listen", f"unix:{path}", "--processes", "1"],
                            env=site.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: path.exists() or proc.poll() is not None, 60, "lda lmtp to start")
    finally:
        for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
            os.kill(int(pid), signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    lines = trace.read_text().splitlines()
    if not any("bind(" in line for line in lines):  # ptrace not allowed here
        pytest.skip(f"strace recorded no bind(): {err.decode()[-300:]}")
    made = [n for n, line in enumerate(lines) if f'"{path}"' in line
            and ("bind(" in line or "rename" in line)]
    listening = [n for n, line in enumerate(lines) if "listen(" in line]
    assert made and listening and listening[0] < made[0], (lines, err.decode())


def test_sigterm_right_after_start_is_graceful(lmtp):
    server = lmtp("--processes", "2")
    server.proc.send_signal(signal.SIGTERM)
    code, err = server.stop()
    assert code == 0 and "stopped" in err and "Traceback" not in err


def test_a_stop_signal_repeated_until_the_end_still_exits_0(lmtp):
    """SIGTERM again and again while the server stops (a stop repeated by
    an impatient admin or service manager): the exit is still a clean 0.
    The interpreter's own exit used to restore SIGTERM's default action, so
    a signal in that last window ended the server by signal 15."""
    server = lmtp("--processes", "2")
    while server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.0005)
    code, err = server.stop()
    assert code == 0 and "stopped" in err and "Traceback" not in err, (code, err)


def test_processes_stop_when_the_parent_is_killed(make_site):
    site = make_site()
    site.create("a@example.org")
    server = Server(site, "--processes", "2")  # not the fixture's: it exits 0
    children = server.forked(2)
    # At once, so some runs kill it before a child has set up: the child
    # must still know whose orphan it is (once, it compared with init's pid).
    server.proc.kill()
    try:
        wait_until(lambda: not any(running(pid) for pid in children), 30,
                   "the worker processes to stop with their parent")
    finally:
        for pid in children:  # a failure here must not leave them serving
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        server.proc.communicate(timeout=60)


def deliver_one(server, recipient, message_id):
    """One message in a session of its own; its 250 reply after DATA."""
    client = server.client()
    _, replies = client.send("s@example.org", [recipient], message(message_id=message_id))
    client.close()
    assert replies[0].startswith(S250_DELIVERED), replies
    return replies[0]


def test_a_mailbox_moved_between_rcpt_and_data_is_delivered_where_it_is_now(lmtp):
    """DATA delivers by the plan RCPT resolved only while the directory is
    as it was: after a move in between, at the new place."""
    server = lmtp("--processes", "1")
    site = server.site
    site.run("db", "create", "db2", check=0)
    old = site.maildir("a@example.org")
    client = server.client()
    rcpt_replies, replies = client.send(
        "s@example.org", ["a@example.org", "b@example.org"], message(),
        before_data=lambda: site.run("mailbox", "move", "a@example.org", "--to", "db2",
                                     check=0))
    client.close()
    assert all(r.startswith(S250_RCPT) for r in rcpt_replies.values()), rcpt_replies
    new = site.maildir("a@example.org")
    assert new != old
    assert all(r.startswith(S250_DELIVERED) for r in replies), replies
    assert len(maildir_files(new)) == 1 and not old.exists()
    assert len(maildir_files(site.maildir("b@example.org"))) == 1


def test_aliases_recompiled_between_rcpt_and_data_are_used_at_data(lmtp):
    """The plan RCPT resolved is kept with the resolver it came from; an
    alias table compiled in between makes DATA resolve again."""
    server = lmtp("--processes", "1")
    site = server.site

    def aliases(member):
        site.aliases.write_text(f"team: {member}\n")
        site.run("aliases", "compile", check=0)

    aliases("a@example.org")
    deliver_one(server, "team@example.org", "<before@example.org>")
    client = server.client()
    rcpt_replies, [reply] = client.send(
        "s@example.org", ["team@example.org"], message(message_id="<after@example.org>"),
        before_data=lambda: aliases("b@example.org"))
    client.close()
    assert rcpt_replies["team@example.org"].startswith(S250_RCPT)
    assert reply.startswith(S250_DELIVERED), reply
    assert len(maildir_files(site.maildir("a@example.org"))) == 1
    assert len(maildir_files(site.maildir("b@example.org"))) == 1


def test_a_session_arriving_during_a_delivery_goes_to_another_process(lmtp):
    """Without delivery threads a process serves nothing else while it
    delivers (here: waits for a mailbox lock that an admin command holds);
    a session that comes in meanwhile is another process's."""
    from lda.store.locks import MailboxLocks

    server = lmtp("--processes", "2", "--workers", "0", lock_timeout_seconds=10)
    site = server.site
    staged = [site.maildir("a@example.org") / "tmp", site.db().parent / "tmp"]
    held = threading.Thread(target=deliver_one,
                            args=(server, "a@example.org", "<held@example.org>"))
    with MailboxLocks(str(site.state / "locks"), ["a@example.org"]):
        held.start()
        wait_until(lambda: any(d.is_dir() and any(d.iterdir()) for d in staged), 30,
                   "the first delivery to stage its copy")
        deliver_one(server, "b@example.org", "<meanwhile@example.org>")
        assert len(maildir_files(site.maildir("b@example.org"))) == 1
        assert held.is_alive() and not maildir_files(site.maildir("a@example.org"))
    held.join(60)
    assert len(maildir_files(site.maildir("a@example.org"))) == 1


def running(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped


def test_a_recompiled_alias_table_is_used_without_a_restart(lmtp):
    """An edit of an :include: file alone leaves the aliases file's mtime as
    it was; `lda aliases compile` is what the running server must notice."""
    server = lmtp("--processes", "1", "--workers", "1")
    site = server.site
    members = site.root / "team.members"
    members.write_text("a@example.org\n")
    site.aliases.write_text(f"team: :include:{members}\n")
    site.run("aliases", "compile", check=0)

    deliver_one(server, "team@example.org", "<before@example.org>")
    members.write_text("b@example.org\n")
    site.run("aliases", "compile", check=0)
    deliver_one(server, "team@example.org", "<after@example.org>")
    assert len(maildir_files(site.maildir("a@example.org"))) == 1
    assert len(maildir_files(site.maildir("b@example.org"))) == 1


@pytest.mark.parametrize("workers", ["0", "1"], ids=["own-thread", "one-thread"])
def test_a_database_replaced_while_serving_is_written_at_its_path(lmtp, workers):
    """Each worker keeps its DeliveredTo connection between messages.  When
    the file is moved away (a restore puts another in its place), the next
    delivery must record into the file the path names, not the old one."""
    server = lmtp("--processes", "1", "--workers", workers)
    site = server.site

    deliver_one(server, "a@example.org", "<first@example.org>")  # now held by the worker
    db = site.db()
    aside = db.parent / "replaced"
    aside.mkdir()
    for suffix in ("", "-wal", "-shm"):
        os.rename(f"{db}{suffix}", aside / f"lda.sqlite{suffix}")
    deliver_one(server, "a@example.org", "<second@example.org>")
    assert "duplicate" in deliver_one(server, "a@example.org", "<second@example.org>")

    code, err = server.stop()
    assert code == 0, err
    assert "deleted or replaced since the last delivery" in err
    conn = sqlite3.connect(db)
    try:
        ids = {row[0] for row in conn.execute("SELECT message_id FROM delivered_to")}
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    assert any("second@example.org" in i for i in ids) and not any("first" in i for i in ids)
    assert len(maildir_files(site.maildir("a@example.org"))) == 2



@pytest.mark.parametrize("add", [True, False], ids=["received-added", "default"])
def test_lmtp_add_received_header(lmtp, add):
    """As Dovecot's lmtp_add_received_header: the trace field (RFC 5321
    section 4.4) names the LHLO name, this host and the one recipient."""
    server = lmtp("--processes", "1", lmtp_add_received_header=add, hostname="mx.example.org")
    client = server.client()
    _, [reply] = client.send("s@example.org", ["a@example.org"], message())
    assert client.cmd("LHLO a\rReceived: forged")[:9] == "501 5.5.4"
    client.close()
    assert reply.startswith(S250_DELIVERED)
    [stored] = maildir_files(server.site.maildir("a@example.org"))
    head = stored.read_bytes().split(b"\n\n")[0]
    fields = [line for line in head.split(b"\n") if line.startswith(b"Received:")]
    if not add:
        assert fields == []
        return
    assert fields == [b"Received: from test"]
    assert b"\tby mx.example.org (lda) with LMTP\n\t(envelope-from <s@example.org>)\n" \
           b"\tfor <a@example.org>;\n\t" in head
    assert head.index(b"Received:") < head.index(b"From: Sender")


def test_a_return_path_on_top_of_the_data_gives_way_to_mail_from(lmtp):
    # As Dovecot's LMTP, the Return-Path on top names MAIL FROM; unlike it
    # (which prepends its own above), the stale one is removed (RFC 5321 4.4).
    server = lmtp("--processes", "1")
    client = server.client()
    _, [reply] = client.send("s@example.org", ["a@example.org"],
                             b"Return-Path: <old@example.org>\n" + message())
    client.close()
    assert reply.startswith(S250_DELIVERED)
    [stored] = maildir_files(server.site.maildir("a@example.org"))
    assert stored.read_bytes() == (b"Return-Path: <s@example.org>\n"
                                   b"Delivered-To: a@example.org\n" + message())


def test_the_server_loads_sieve_before_it_forks():
    """lda lmtp imports what a Sieve script needs once, before the fork,
    so that no child pays ~60 ms at its first script with sessions waiting."""
    import subprocess
    import sys

    script = ("import sys\nfrom lda.lmtp.handler import preload\npreload()\n"
              "print(*sorted(m for m in ('lda.sieve.interpreter', 'lda.sieve.parser',\n"
              "      'lda.sieve.extensions.body', 'lda.deliver.filtering') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True)
    assert done.stdout.split() == [b"lda.deliver.filtering", b"lda.sieve.extensions.body",
                                   b"lda.sieve.interpreter", b"lda.sieve.parser"]


def test_what_the_server_loads_before_it_forks_is_frozen():
    """The modules loaded before the fork are out of the collector's sight
    (gc.freeze): a child's collections neither walk them nor copy their
    pages.  What is made afterwards is collected as usual."""
    import subprocess
    import sys

    script = ("import gc\nfrom lda.lmtp.server import load_before_fork\nload_before_fork()\n"
              "from lda.sieve import interpreter\n"
              "tracked = {id(o) for o in gc.get_objects()}\n"
              "later = [[]]\n"
              "print(gc.get_freeze_count() > 10000, id(interpreter.__dict__) in tracked,\n"
              "      id(later[0]) in {id(o) for o in gc.get_objects()})")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True)
    assert done.stdout.split() == [b"True", b"False", b"True"]

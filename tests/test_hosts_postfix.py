"""Routing through a real, private Postfix to two delivery hosts (README,
"Scaling out", "Routing with Postfix"): the front expands aliases with lda's
alias map and asks lda's transport map where each mailbox lives, and each
`lda lmtp` delivers only to the databases of its own host.

The two "hosts" are two lda.toml files on this machine (host_name a and b),
two `lda lmtp` servers on their own ports, with their databases under
different paths.  They share one directory the only way two processes on
one machine can share a SQLite directory: the same state_dir, so the same
directory.sqlite.  With a PostgreSQL directory each host has a state_dir
of its own and directory.sqlite is its mirror of PostgreSQL; that replaces
this sharing, and changes nothing the front or the hosts answer."""

import smtplib
import subprocess

import pytest
from conftest import Site, maildir_files
from postfix import POSTFIX, SBIN_PATH, VIRTUAL_DOMAIN, WAIT_SECONDS, LmtpServer
from test_services import services  # noqa: F401 - the fixture

pytest_plugins = ["postfix"]  # mail_root, make_postfix

POSTMAP = POSTFIX.replace("postfix", "postmap") if POSTFIX else None
S451_ELSEWHERE = 451


def address(local):
    return f"{local}@{VIRTUAL_DOMAIN}"


def message(n):
    return (f"From: sender@example.org\r\nTo: team\r\nSubject: {n}\r\n"
            f"Message-ID: <hosts-{n}@example.org>\r\n\r\nHello {n}.\r\n").encode()


class Host:
    """One delivery host: its Site (lda.toml with host_name) and `lda lmtp`."""

    def __init__(self, root, name, shared_state):
        root.mkdir(mode=0o755)
        self.name = name
        self.site = Site(root, host_name=name, state_dir=str(shared_state))
        self.site.state = shared_state  # Site.maildir() reads the directory there
        self.lmtp = LmtpServer(self.site, "tcp", root)

    def databases(self):
        """The lda.sqlite files under this host's own databases."""
        return sorted(self.site.root.glob("db*/lda.sqlite"))


@pytest.fixture
def two_hosts(mail_root):
    """Hosts a (alice, in dba) and b (bob, in dbb) with their `lda lmtp`
    servers running, and the alias team (both) in host a's aliases file."""
    shared_state = mail_root / "state"
    a, b = (Host(mail_root / name, name, shared_state) for name in ("a", "b"))
    for host in (a, b):
        host.site.run("host", "add", host.name, "--transport", host.lmtp.transport, check=0)
        host.site.run("db", "create", f"db{host.name}", "--host", host.name,
                      "--path", str(host.site.root / f"db{host.name}"), check=0)
    a.site.create(address("alice"), "--db", "dba")
    b.site.create(address("bob"), "--db", "dbb")
    a.site.aliases.write_text(f"{address('team')}: {address('alice')}, {address('bob')}\n")
    started = [host.lmtp.start() for host in (a, b)]
    yield a, b
    assert [server.stop() for server in started] == [0, 0]


@pytest.fixture
def front(two_hosts, make_postfix, services):  # noqa: F811
    """The two hosts behind `lda socketmap` and a Postfix that expands
    aliases with its alias map and routes by its transport map; Postfix
    stops before the LMTP servers (which must then stop cleanly)."""
    a, b = two_hosts
    socketmap = services(a.site, "socketmap")
    postfix = make_postfix(start=False)
    table = f"socketmap:inet:127.0.0.1:{socketmap.port}"
    postfix.main.update({
        "virtual_mailbox_maps": f"{table}:mailbox",
        "virtual_alias_maps": f"{table}:alias",
        "transport_maps": f"{table}:transport",
        "smtpd_reject_unlisted_recipient": "yes",
    })
    postfix.start()
    yield a, b, postfix, table
    postfix.stop()


def test_each_mailbox_lands_on_its_own_host_once(front):
    a, b, postfix, _ = front
    first = postfix.send(message(1), [address("alice"), address("bob")])
    second = postfix.send(message(2), [address("team")])  # expanded by the front
    for queue_id in (first, second):
        postfix.wait_for_removal(queue_id)
    sent = postfix.deliveries(status="sent")
    assert sorted((d.to, d.relay.rsplit(":", 1)[1]) for d in sent) == sorted(
        [(address("alice"), str(a.lmtp.port))] * 2 + [(address("bob"), str(b.lmtp.port))] * 2)
    assert postfix.deliveries(status="deferred") == []
    for local, host in (("alice", a), ("bob", b)):
        delivered = maildir_files(host.site.maildir(address(local)))
        assert sorted(f.read_bytes().split(b"Subject: ")[1][:1] for f in delivered) \
            == [b"1", b"2"]
        assert str(delivered[0]).startswith(str(host.site.root))
    assert [p.parent.name for p in a.databases()] == ["dba"]
    assert [p.parent.name for p in b.databases()] == ["dbb"]


def test_postmap_asks_the_transport_map(front):
    a, b, postfix, table = front
    for local, host in (("alice", a), ("bob", b), ("bob+tag", b)):
        done = subprocess.run([POSTMAP, "-c", str(postfix.config_dir), "-q", address(local),
                               f"{table}:transport"], capture_output=True, text=True,
                              env={"PATH": SBIN_PATH}, timeout=60)
        assert (done.returncode, done.stdout.strip()) == (0, host.lmtp.transport), done.stderr


def test_the_wrong_host_answers_451_and_writes_nothing(two_hosts):
    a, b = two_hosts
    with smtplib.LMTP("127.0.0.1", b.lmtp.port, timeout=WAIT_SECONDS) as lmtp:
        lmtp.ehlo("front.lda.test")
        lmtp.mail("sender@example.org")
        code, reply = lmtp.rcpt(address("alice"))
    assert (code, reply.decode()) == (
        S451_ELSEWHERE, f"4.3.0 <{address('alice')}>: mailbox {address('alice')} is on host a")
    assert maildir_files(a.site.maildir(address("alice"))) == []
    assert b.databases() == [] and a.databases() == []

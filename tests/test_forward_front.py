"""A mailbox that forwards, behind a real, private Postfix that expands
lda's alias map (README, "Routing with Postfix"; contrib/postfix/
main.cf.services): each target gets the message exactly once.

Postfix expands virtual_alias_maps before it routes, and an expansion that
names the address itself ("alice -> bob, alice", a forward that keeps a
copy) still delivers that address.  Had the alias map answered a
mailbox's forwards, the front would send bob his copy, and alice's host,
which resolves alice again, a second one.  So the alias map answers
aliases only; the host that delivers a mailbox applies its forwards, as
Postfix's local(8) applies ~/.forward at delivery and not in
virtual_alias_maps, and re-sends through the front what lives elsewhere:
an outside address, and a mailbox another host holds.

The outside world is an SMTP sink on loopback (the front's
default_transport) that counts each copy; every lda host re-injects with
the front Postfix's own sendmail(1).  Two hosts share one state_dir, as in
tests/test_hosts_postfix.py."""

import email
import threading

import pytest
from aiosmtpd.controller import Controller
from conftest import Site, maildir_files
from postfix import SENDMAIL, VIRTUAL_DOMAIN, LmtpServer, free_port
from test_services import services  # noqa: F401 - the fixture

pytest_plugins = ["postfix"]  # mail_root, make_postfix, lda_lmtp

OUTSIDE = "carol@elsewhere.example.net"


def address(local):
    return f"{local}@{VIRTUAL_DOMAIN}"


def message(tag):
    return (f"From: sender@example.org\r\nTo: {tag}\r\nSubject: {tag}\r\n"
            f"Date: Sat, 05 Dec 2026 03:00:00 +0000\r\n"
            f"Message-ID: <forward-{tag}@example.org>\r\n\r\nHello {tag}.\r\n").encode()


class Sink:
    """The outside world: an SMTP server that keeps, per recipient, the
    Subject of every copy it accepted."""

    def __init__(self):
        self.copies = {}
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                     server_hostname="sink.lda.test")

    async def handle_DATA(self, server, session, envelope):
        subject = email.message_from_bytes(envelope.content)["Subject"]
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.copies.setdefault(rcpt.lower(), []).append(subject)
        return "250 2.0.0 kept"

    def received(self, rcpt):
        with self.lock:
            return sorted(self.copies.get(rcpt, []))


@pytest.fixture
def sink():
    sink = Sink()
    sink.controller.start()
    yield sink
    sink.controller.stop()


def front_settings(postfix, table, sink):
    """What main.cf.services and README's front add, and the way out."""
    return {
        "virtual_mailbox_domains": f"{table}:domain",
        "virtual_mailbox_maps": f"{table}:mailbox",
        "virtual_alias_maps": f"{table}:alias",
        "smtpd_reject_unlisted_recipient": "yes",
        "default_transport": f"smtp:[127.0.0.1]:{sink.port}",
    }


def reinjected_by(postfix):
    """lda.toml's sendmail: the front's own, so a forward goes through it."""
    return [SENDMAIL, "-C", str(postfix.config_dir), "-i"]


def subjects(maildir):
    return sorted(email.message_from_bytes(p.read_bytes())["Subject"]
                  for p in maildir_files(maildir))


def deliver_all(postfix, tags):
    """Send each tag's message to the address of that name; wait until
    every copy, the re-injected ones too, has left the queue."""
    for tag in tags:
        postfix.wait_for_removal(postfix.send(message(tag), [address(tag)]))
    postfix.wait_for_queue_empty()
    assert postfix.deliveries(status="deferred") == [], postfix.log_tail()
    assert postfix.deliveries(status="bounced") == [], postfix.log_tail()


@pytest.fixture
def one_host(mail_root, make_postfix, lda_lmtp, services, sink):  # noqa: F811
    """A single host (main.cf.services with its alias map): keep forwards
    to the outside and keeps a copy, away forwards there only, local
    forwards to carol (a mailbox here) and keeps a copy; team = keep, bob."""
    postfix = make_postfix(start=False)
    (mail_root / "site").mkdir(mode=0o755)
    site = Site(mail_root / "site", sendmail=reinjected_by(postfix))
    site.create(address("keep"), "--forward", OUTSIDE, "--keep-copy")
    site.create(address("away"), "--forward", OUTSIDE, "--no-keep-copy")
    site.create(address("carol"))
    site.create(address("bob"))
    site.create(address("local"), "--forward", address("carol"), "--keep-copy")
    site.aliases.write_text(f"{address('team')}: {address('keep')}, {address('bob')}\n")
    server = lda_lmtp(site, "tcp")
    table = f"socketmap:inet:127.0.0.1:{services(site, 'socketmap').port}"
    postfix.main.update(front_settings(postfix, table, sink),
                        virtual_transport=server.transport)
    postfix.start()
    return site, postfix


def test_one_host_a_forward_reaches_its_target_once(one_host, sink):
    site, postfix = one_host
    deliver_all(postfix, ["keep", "away", "local", "team"])
    assert subjects(site.maildir(address("keep"))) == ["keep", "team"]
    assert subjects(site.maildir(address("away"))) == []
    assert subjects(site.maildir(address("local"))) == ["local"]
    assert subjects(site.maildir(address("carol"))) == ["local"]
    assert subjects(site.maildir(address("bob"))) == ["team"]
    assert sink.received(OUTSIDE) == ["away", "keep", "team"]


class Host:
    """One delivery host: its Site (host_name, the shared state_dir, the
    front's sendmail) and its `lda lmtp` on a loopback port."""

    def __init__(self, root, name, shared_state, sendmail):
        root.mkdir(mode=0o755)
        self.name = name
        self.site = Site(root, host_name=name, state_dir=str(shared_state), sendmail=sendmail)
        self.site.state = shared_state  # Site.maildir() reads the directory there
        self.lmtp = LmtpServer(self.site, "tcp", root)


@pytest.fixture
def two_hosts(mail_root, make_postfix, services, sink):  # noqa: F811
    """Hosts a and b behind a front Postfix that expands aliases with the
    alias map and routes by the transport map.  On a: keep (forwards to
    bob, on b, and keeps a copy), away (forwards to bob only), out
    (forwards outside, keeps a copy); on b: bob, and back (forwards to
    keep, on a); team = keep, bob."""
    postfix = make_postfix(start=False)
    a, b = (Host(mail_root / name, name, mail_root / "state", reinjected_by(postfix))
            for name in ("a", "b"))
    for host in (a, b):
        host.site.run("host", "add", host.name, "--transport", host.lmtp.transport, check=0)
        host.site.run("db", "create", f"db{host.name}", "--host", host.name,
                      "--path", str(host.site.root / f"db{host.name}"), check=0)
    b.site.create(address("bob"), "--db", "dbb")
    a.site.create(address("keep"), "--db", "dba", "--forward", address("bob"), "--keep-copy")
    a.site.create(address("away"), "--db", "dba", "--forward", address("bob"),
                  "--no-keep-copy")
    a.site.create(address("out"), "--db", "dba", "--forward", OUTSIDE, "--keep-copy")
    b.site.create(address("back"), "--db", "dbb", "--forward", address("keep"),
                  "--no-keep-copy")
    a.site.aliases.write_text(f"{address('team')}: {address('keep')}, {address('bob')}\n")
    started = [host.lmtp.start() for host in (a, b)]
    table = f"socketmap:inet:127.0.0.1:{services(a.site, 'socketmap').port}"
    postfix.main.update(front_settings(postfix, table, sink),
                        transport_maps=f"{table}:transport")
    postfix.start()
    yield a, b, postfix
    postfix.stop()
    assert [server.stop() for server in started] == [0, 0]


def test_two_hosts_a_forward_reaches_its_target_once(two_hosts, sink):
    a, b, postfix = two_hosts
    deliver_all(postfix, ["keep", "away", "out", "back", "team"])
    assert subjects(b.site.maildir(address("bob"))) == ["away", "back", "keep", "team"]
    assert subjects(a.site.maildir(address("keep"))) == ["back", "keep", "team"]
    assert subjects(a.site.maildir(address("away"))) == []
    assert subjects(a.site.maildir(address("out"))) == ["out"]
    assert sink.received(OUTSIDE) == ["out"]

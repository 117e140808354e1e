"""Two delivery hosts sharing a PostgreSQL directory, each reading its own
mirror, behind a real Postfix (tests/multihost.py), end to end over SMTP:
routing to the right host, PostgreSQL stopped for 32 s under traffic, and
a single-host site migrated from SQLite to PostgreSQL."""

import json
import smtplib
import threading
import time

from conftest import maildir_files, message
from multihost import address, hosts_behind_postfix, module_postgres  # noqa: F401
from multihost import message as tagged, mirror_synced, numbers_in
from postfix import SENDER, WAIT_SECONDS

from lda.store.directory import MIRROR_STALE_SECONDS

S451 = 451
OUTAGE_SECONDS = MIRROR_STALE_SECONDS + 2
SEND_EVERY = 0.1


def test_each_mailbox_lands_on_its_own_host_once(hosts_behind_postfix):
    two = hosts_behind_postfix
    a, b, postfix = two.a, two.b, two.postfix
    first = postfix.send(tagged("route", 1), [a.mailbox, b.mailbox])
    second = postfix.send(tagged("route", 2), [address("team")])  # expanded by the front
    for queue_id in (first, second):
        postfix.wait_for_removal(queue_id)
    sent = [d for q in (first, second) for d in postfix.deliveries(queue_id=q)]
    assert sorted((d.to, d.status, d.relay.rsplit(":", 1)[1]) for d in sent) == sorted(
        [(a.mailbox, "sent", str(a.lmtp.port))] * 2 + [(b.mailbox, "sent", str(b.lmtp.port))] * 2)
    for host in two.hosts:
        maildir = host.site.maildir(host.mailbox)
        assert numbers_in(maildir, "route") == [1, 2]
        assert str(maildir).startswith(str(host.site.root / host.database))
        assert [p.parent.name for p in host.databases()] == [host.database]
    # Each host's mirror is its own file, and names the same directory.
    assert a.site.state != b.site.state
    assert all(mirror_synced(h.site) > time.time() - MIRROR_STALE_SECONDS for h in two.hosts)


def test_a_mailbox_created_on_host_b_is_routed_by_the_front_once_mirrored(
        hosts_behind_postfix):
    """The front asks host a's socketmap, which reads a's mirror: carol,
    created on b, is known there once a's follower copied her."""
    two = hosts_behind_postfix
    a, b, postfix = two.a, two.b, two.postfix
    carol = address("carol")
    b.site.run("mailbox", "create", carol, "--db", b.database, check=0)
    two.wait_mirrored(carol)
    queue_id = postfix.send(tagged("carol", 1), [carol])
    postfix.wait_for_removal(queue_id)
    [delivery] = postfix.deliveries(queue_id=queue_id)
    assert (delivery.status, delivery.relay.rsplit(":", 1)[1]) == ("sent", str(b.lmtp.port))
    assert numbers_in(b.site.maildir(carol), "carol") == [1]
    assert not (a.site.root / b.database).exists()


def test_a_site_migrated_from_sqlite_keeps_delivering_and_discards_resends(
        make_site, module_postgres):
    site = make_site()
    site.create("alice@example.org", "--quota-storage", "5M")
    site.run("db", "create", "db2", check=0)
    site.create("bob@example.org", "--db", "db2", "--forward", "carol@example.net")
    before = message(message_id="<before@example.org>")
    site.deliver(before, "alice@example.org", "bob@example.org", check=0)
    dsn = module_postgres.dsn(module_postgres.create_database())

    summary = json.loads(site.run("directory", "migrate", "--to", dsn, "--json",
                                  check=0).stdout)
    assert summary["mailboxes"] == 2, summary
    with open(site.config, "a") as f:
        f.write(f'directory = "{dsn}"\n')
    synced = json.loads(site.run("directory", "sync", "--json", check=0).stdout)
    assert synced["mailboxes"] == 2

    status = json.loads(site.run("directory", "status", "--json", check=0).stdout)
    assert status["version"] == status["directory_version"] is not None
    shown = json.loads(site.run("mailbox", "show", "alice@example.org", "--json",
                                check=0).stdout)
    assert shown["quota_storage"] == 5 * 1024 * 1024
    site.deliver(before, "alice@example.org", "bob@example.org", check=0)  # the resend
    site.deliver(message(message_id="<after@example.org>"), "alice@example.org",
                 "bob@example.org", check=0)
    for mailbox in ("alice@example.org", "bob@example.org"):
        assert len(maildir_files(site.maildir(mailbox))) == 2, mailbox
    assert [args[-1] for args, _ in site.sent()] == ["carol@example.net"] * 2
    # Mailboxes created after the switch are written to PostgreSQL.
    site.create("dave@example.org")
    assert module_postgres.psql("SELECT count(*) FROM mailboxes",
                                dsn.split("/")[3].split("?")[0]).strip() == "3"


class Client(threading.Thread):
    """Sends one message to alice (host a) and bob (host b) every SEND_EVERY
    seconds through the front until stopped; `sent` counts them."""

    def __init__(self, two):
        super().__init__(daemon=True)
        self.two, self.sent, self.errors = two, 0, []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            start = time.monotonic()
            try:
                self.two.postfix.send(tagged("outage", self.sent + 1),
                                      [self.two.a.mailbox, self.two.b.mailbox])
                self.sent += 1
            except (AssertionError, OSError, smtplib.SMTPException) as e:
                self.errors.append(repr(e))
            self.stopping.wait(max(0, SEND_EVERY - (time.monotonic() - start)))


def rcpt_reply(host, port, nobody, lmtp=False):
    """The reply to RCPT TO:<nobody> over SMTP (the front) or LMTP (a host).
    Each check asks another address: Postfix's smtpd keeps the answers of
    trivial-rewrite (transport_maps included) for an address a while, a
    temporary failure too."""
    with (smtplib.LMTP if lmtp else smtplib.SMTP)(host, port, timeout=WAIT_SECONDS) as s:
        s.ehlo("client.lda.test")
        s.mail(SENDER)
        code, reply = s.rcpt(address(nobody))
    return code, reply.decode()


def test_postgresql_down_known_mailboxes_keep_receiving_nothing_lost(hosts_behind_postfix):
    two = hosts_behind_postfix
    a, b, postfix, cluster = two.a, two.b, two.postfix, two.cluster
    # While the mirror is fresh, nobody is unknown for good at the front.
    assert rcpt_reply("127.0.0.1", postfix.port, "nobody-before")[0] == 550
    client = Client(two)
    client.start()
    try:
        time.sleep(1)
        cluster.stop()
        stopped = time.monotonic()
        assert not cluster.running()
        sent_when_down = client.sent
        # Past MIRROR_STALE_SECONDS without PostgreSQL: unknown addresses
        # are deferred, at the front (its socketmap reads host a's mirror)
        # and by a host's lda lmtp, never refused for good.
        time.sleep(max(0, MIRROR_STALE_SECONDS + 0.5 - (time.monotonic() - stopped)))
        assert time.time() - mirror_synced(a.site) > MIRROR_STALE_SECONDS
        front = rcpt_reply("127.0.0.1", postfix.port, "nobody-down")
        host_b = rcpt_reply("127.0.0.1", b.lmtp.port, "nobody-down", lmtp=True)
        time.sleep(max(0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
        cluster.start()
        time.sleep(1)
    finally:
        client.stopping.set()
        client.join(WAIT_SECONDS)
    assert (front[0], front[1][:5]) == (S451, "4.3.0"), front
    assert (host_b[0], host_b[1][:5]) == (S451, "4.3.0"), host_b
    assert client.errors == []
    assert client.sent - sent_when_down > OUTAGE_SECONDS / SEND_EVERY / 3  # traffic went on
    postfix.flush()
    postfix.wait_for_queue_empty()
    expected = list(range(1, client.sent + 1))
    for host in two.hosts:
        assert numbers_in(host.site.maildir(host.mailbox), "outage") == expected, host.name
    assert postfix.deliveries(status="bounced") == []
    # The followers notice PostgreSQL again by themselves (backoff <= 30 s);
    # an admin command meanwhile works at once and refreshes its mirror.
    for host in two.hosts:
        host.site.run("directory", "sync", check=0)
        assert time.time() - mirror_synced(host.site) < MIRROR_STALE_SECONDS
    after = rcpt_reply("127.0.0.1", postfix.port, "nobody-after")
    assert after[0] == 550, (after, two.socketmap.log()[-2000:])
    assert all(h.follower.process.poll() is None for h in two.hosts)

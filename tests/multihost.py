"""Two delivery hosts on one machine, real engines (README, "Scaling out"):
a private PostgreSQL holding the shared directory, and for each host (a
and b) an lda.toml with its host_name and a state_dir of its own, so its
own directory.sqlite, the mirror that `lda directory sync --follow` keeps
current, its own mailbox database and its own `lda lmtp` on a port of its
own; in front, `lda socketmap` (on host a: it reads a's mirror) and a
private Postfix that expands aliases by the alias map and routes each
recipient by the transport map.

The fixtures are module-scoped: PostgreSQL, Postfix and the four lda
servers start once for a test module (the cluster is the module's own,
so a test may stop and start it).  A test that shares them counts only
its own messages (their Message-IDs, their queue IDs).  Use with
`from multihost import hosts_behind_postfix, module_postgres  # noqa: F401`.
"""

import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import LDA, Site, wait_until
from postfix import VIRTUAL_DOMAIN, WAIT_SECONDS, LmtpServer, Postfix, require_postfix, stop_process
from postgres import PrivatePostgreSQL
from test_services import Service

HOST_NAMES = ("a", "b")
MAILBOX_OF = {"a": "alice", "b": "bob"}


def address(local):
    return f"{local}@{VIRTUAL_DOMAIN}"


def mirror_synced(site):
    """time.time() of the last contact of a host's mirror with PostgreSQL."""
    conn = sqlite3.connect(site.state / "directory.sqlite")
    try:
        row = conn.execute("SELECT max(synced) FROM mirror").fetchone()
    finally:
        conn.close()
    return row[0]


def mirror_has(site, mailbox):
    conn = sqlite3.connect(site.state / "directory.sqlite")
    try:
        return conn.execute("SELECT 1 FROM mailboxes WHERE address = ?",
                            (mailbox,)).fetchone() is not None
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


class Follower:
    """`lda directory sync --follow` of one host, as its systemd unit runs it."""

    def __init__(self, site):
        self.site = site
        self.output = site.root / "follower.log"
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen([str(LDA), "directory", "sync", "--follow"],
                                            env=site.env, stdout=out,
                                            stderr=subprocess.STDOUT)

    def log(self):
        return self.output.read_text(errors="replace")

    def stop(self):
        """SIGTERM; the exit status (0: it stopped between two passes)."""
        return stop_process(self.process)


class Host:
    """One delivery host: its Site (host_name, the shared directory, its own
    state_dir), its follower and its `lda lmtp` on a loopback port."""

    def __init__(self, root, name, dsn, move_command):
        root.mkdir(mode=0o755)
        self.name = name
        self.site = Site(root, host_name=name, directory=dsn, move_command=move_command)
        self.lmtp = LmtpServer(self.site, "tcp", root)
        self.follower = None
        self.database = f"db{name}"
        self.mailbox = address(MAILBOX_OF[name])

    def databases(self):
        """The lda.sqlite files under this host's own database directory."""
        return sorted(self.site.root.glob("db*/lda.sqlite"))


class TwoHosts:
    """What the fixture yields: cluster, dsn, hosts a and b, postfix, the
    socketmap table Postfix asks, and root (a directory every user enters)."""

    def __init__(self, root, cluster, dsn, a, b):
        self.root, self.cluster, self.dsn, self.a, self.b = root, cluster, dsn, a, b
        self.hosts = (a, b)
        self.postfix = self.socketmap = self.table = None

    def wait_mirrored(self, mailbox, timeout=WAIT_SECONDS):
        """Until every host's mirror has the mailbox (the followers' lag)."""
        wait_until(lambda: all(mirror_has(h.site, mailbox) for h in self.hosts), timeout,
                   f"{mailbox} in every mirror", lambda: "\n".join(
                       h.follower.log() for h in self.hosts if h.follower))


def receive_on(other_root):
    """A host's move_command: the other host's own `lda mailbox receive`,
    run locally with that host's lda.toml (both hosts are this machine;
    tests/test_hostmove_ssh.py takes the same stream through a real ssh)."""
    return [str(LDA), "-c", str(other_root / "lda.toml"), "mailbox", "receive"]


def start_two_hosts(root, cluster):
    """A fresh directory in cluster: hosts a (alice in dba) and b (bob in
    dbb), each created on its own host, both followers running; the alias
    team (alice and bob) in host a's aliases file (the front's alias map
    asks host a).  Each host's move_command reaches the other (receive_on)."""
    dsn = cluster.dsn(cluster.create_database())
    a, b = (Host(root / name, name, dsn, receive_on(root / other))
            for name, other in zip(HOST_NAMES, reversed(HOST_NAMES)))
    two = TwoHosts(root, cluster, dsn, a, b)
    for host in two.hosts:
        host.site.run("host", "add", host.name, "--transport", host.lmtp.transport, check=0)
        host.site.run("db", "create", host.database, "--host", host.name,
                      "--path", str(host.site.root / host.database), check=0)
        host.site.create(host.mailbox, "--db", host.database)
    a.site.aliases.write_text(f"{address('team')}: {a.mailbox}, {b.mailbox}\n")
    for host in two.hosts:
        host.follower = Follower(host.site)
    two.wait_mirrored(a.mailbox)
    two.wait_mirrored(b.mailbox)
    return two


def start_front(two):
    """The LMTP servers, `lda socketmap` on host a and the front Postfix."""
    for host in two.hosts:
        host.lmtp.start()
    two.socketmap = Service(two.a.site, "socketmap")
    two.table = f"socketmap:inet:127.0.0.1:{two.socketmap.port}"
    two.postfix = Postfix(two.root / "postfix", {
        "virtual_mailbox_maps": f"{two.table}:mailbox",
        "virtual_alias_maps": f"{two.table}:alias",
        "transport_maps": f"{two.table}:transport",
        "smtpd_reject_unlisted_recipient": "yes",
    }).start()


def stop_all(two):
    """Postfix first (the LMTP servers must then stop cleanly), then the
    lda servers and followers.  Returns the exit
    statuses of the lda processes, which must all be 0."""
    statuses = {}
    if two.postfix is not None:
        two.postfix.stop()
    if two.socketmap is not None:
        statuses["socketmap"] = two.socketmap.stop()
    for host in two.hosts:
        if host.lmtp.process is not None:
            statuses[f"lmtp {host.name}"] = host.lmtp.stop()
        if host.follower is not None:
            statuses[f"follower {host.name}"] = host.follower.stop()
    return statuses


def keep_logs(root, into):
    for log in [*root.glob("postfix/maillog"), *root.glob("*/*.log")]:
        shutil.copy(log, into / f"{log.parent.name}-{log.name}")


@pytest.fixture(scope="module")
def module_postgres():
    """A cluster of the test module's own: its tests may stop and start it."""
    cluster = PrivatePostgreSQL().start()
    yield cluster
    cluster.remove()


@pytest.fixture(scope="module")
def hosts_behind_postfix(module_postgres, tmp_path_factory):
    """TwoHosts, everything running; stopped and removed after the module
    (the logs are kept in a pytest temporary directory)."""
    require_postfix()
    root = Path(tempfile.mkdtemp(prefix="lda-multihost-"))
    root.chmod(0o755)
    two = None
    try:
        two = start_two_hosts(root, module_postgres)
        start_front(two)
        yield two
    finally:
        statuses = stop_all(two) if two is not None else {}
        keep_logs(root, tmp_path_factory.mktemp("multihost-logs"))
        shutil.rmtree(root, ignore_errors=True)
    assert all(status == 0 for status in statuses.values()), statuses


def message(tag, n):
    return (f"From: sender@example.org\r\nTo: {tag}\r\nSubject: {tag} {n}\r\n"
            f"Message-ID: <{tag}-{n}@multihost.test>\r\n\r\nHello {n}.\r\n").encode()


def numbers_in(maildir, tag):
    """The n of each `tag` message in a Maildir's new/ (one entry per file)."""
    found = []
    new = Path(maildir) / "new"
    for path in sorted(new.iterdir()) if new.is_dir() else []:
        head = path.read_bytes().split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        for line in head.splitlines():
            if line.startswith(f"Subject: {tag} ".encode()):
                found.append(int(line.split()[-1]))
    return sorted(found)


__all__ = ["Follower", "Host", "TwoHosts", "address", "hosts_behind_postfix", "message",
           "mirror_synced", "numbers_in"]

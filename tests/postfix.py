"""A private Postfix instance on loopback, for end-to-end tests of lda.

Each instance has its own config_directory (main.cf, master.cf),
queue_directory, data_directory and a maillog_file that postlogd writes
(Postfix >= 3.4), so a test reads the mail log without syslog.  smtpd
listens on 127.0.0.1 on a free port; nothing is looked up in DNS, nothing
leaves the host (default_transport is error:), and deferred mail is retried
after seconds, not minutes.

Postfix's master runs as root and its delivery agents become other users
(local(8) the recipient, pipe(8) its user=), so the fixtures need root and
an installed Postfix; they skip without either.  `.ci/run` installs
Debian's postfix and runs as root, so in CI they run.

Two things real deployments have and a test machine may lack:
- A directory every user can enter.  pytest's tmp_path lies under
  /tmp/pytest-of-root (mode 0700), which the postfix user and the mail
  users cannot traverse, so each instance gets a 0755 directory from
  tempfile; its mail log and lda's logs are copied into tmp_path at
  teardown for a post-mortem.
- An `lda` that other users may run.  When the interpreter lives under a
  private home (pyenv in /root), each throwaway user gets a POSIX ACL entry
  granting search (x) on just the directories in the way, removed at
  teardown.
"""

import errno
import fcntl
import functools
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

from conftest import poll, wait_until

SBIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
POSTFIX = shutil.which("postfix", path=SBIN_PATH)
POSTCONF = shutil.which("postconf", path=SBIN_PATH)
POSTQUEUE = shutil.which("postqueue", path=SBIN_PATH)
SENDMAIL = shutil.which("sendmail", path=SBIN_PATH)
MINIMUM_VERSION = (3, 4)  # maillog_file and postlogd

LOCAL_DOMAIN = "local.example.org"       # mydestination: unix users, local(8)
VIRTUAL_DOMAIN = "virtual.example.org"   # virtual_mailbox_domains: lda's mailboxes
OUTSIDE_DOMAIN = "elsewhere.example.net"  # "another host": Postfix's virtual(8)
SENDER = "sender@example.org"

# Named SMTP replies and mail log statuses.
S250_OK = 250
S354_START_INPUT = 354
SENT, DEFERRED, BOUNCED = "sent", "deferred", "bounced"

WAIT_SECONDS = 60

# One line of the mail log per delivery attempt of one recipient, e.g.
# postfix/lmtp[12]: 3F2A1: to=<a@x>, orig_to=<b@x>, relay=..., delay=0.1,
#   delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 <a@x> delivered)
DELIVERY_LINE = re.compile(
    r"postfix/(?P<service>[\w/.-]+)\[\d+\]: (?P<queue_id>[0-9A-F]+): "
    r"to=<(?P<to>[^>]*)>(?:, orig_to=<(?P<orig_to>[^>]*)>)?, relay=(?P<relay>[^,]*), "
    r".*?dsn=(?P<dsn>[\d.]+), status=(?P<status>\w+) \((?P<detail>.*)\)$")


@functools.cache
def postfix_version():
    # -d: compiled-in values; a fresh "No configuration" install has no main.cf
    done = subprocess.run([POSTCONF, "-d", "-h", "mail_version"], capture_output=True,
                          text=True, check=True)
    return tuple(int(part) for part in done.stdout.strip().split(".")[:2])


def installed_lda():
    """The installed lda script itself (never a pyenv shim): Postfix runs it
    by absolute path with its own PATH and environment."""
    script = Path(sysconfig.get_path("scripts")) / "lda"
    if script.is_file() and os.access(script, os.X_OK):
        return script
    found = shutil.which("lda")
    return Path(os.path.realpath(found)) if found else None


LDA = installed_lda()


def skip_reason():
    """Why the Postfix tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root: Postfix's master runs as root and the tests add unix users"
    if not (POSTFIX and POSTCONF and POSTQUEUE and SENDMAIL):
        return "Postfix is not installed (.ci/run installs Debian's postfix)"
    if postfix_version() < MINIMUM_VERSION:
        return f"Postfix {'.'.join(map(str, postfix_version()))} has no maillog_file (3.4+)"
    if LDA is None:
        return "the lda command is not installed (pip install .)"
    return None


def require_postfix():
    reason = skip_reason()
    if reason:
        pytest.skip(reason)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- search permission for throwaway users (POSIX ACLs, no setfacl needed) ---

ACL_XATTR = "system.posix_acl_access"
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20)
ACL_UNDEFINED_ID = 0xFFFFFFFF
ACL_SEARCH = 1


def _read_acl(path):
    """{(tag, id): permissions} of a directory, from its ACL or its mode."""
    try:
        raw = os.getxattr(path, ACL_XATTR)
    except OSError as e:
        if e.errno != errno.ENODATA:
            raise
        mode = os.stat(path).st_mode
        return {(ACL_USER_OBJ, ACL_UNDEFINED_ID): (mode >> 6) & 7,
                (ACL_GROUP_OBJ, ACL_UNDEFINED_ID): (mode >> 3) & 7,
                (ACL_OTHER, ACL_UNDEFINED_ID): mode & 7}
    # linux/posix_acl_xattr.h: le32 version 2, then (le16 tag, le16 perm, le32 id)
    return {(tag, ident): perm for tag, perm, ident in struct.iter_unpack("<HHI", raw[4:])}


def _write_acl(path, entries):
    named = [perm for (tag, _), perm in entries.items() if tag in (ACL_USER, ACL_GROUP)]
    if not named:  # back to plain mode bits; the group bits were the mask
        mode = os.stat(path).st_mode & 0o7777
        try:
            os.removexattr(path, ACL_XATTR)
        except OSError as e:
            if e.errno != errno.ENODATA:
                raise
        group = entries[(ACL_GROUP_OBJ, ACL_UNDEFINED_ID)]
        os.chmod(path, (mode & ~0o070) | (group << 3))
        return
    entries = {key: perm for key, perm in entries.items() if key[0] != ACL_MASK}
    mask = entries[(ACL_GROUP_OBJ, ACL_UNDEFINED_ID)]
    for perm in named:
        mask |= perm
    entries[(ACL_MASK, ACL_UNDEFINED_ID)] = mask
    raw = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, ident)
                                          for (tag, ident), perm in sorted(entries.items()))
    os.setxattr(path, ACL_XATTR, raw)


def _edit_acl(path, edit):
    """Read, edit and write a directory's ACL under an flock on the directory,
    so two test sessions granting different users do not lose an entry."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        entries = _read_acl(path)
        edit(entries)
        _write_acl(path, entries)
    finally:
        os.close(fd)


def closed_ancestors(paths):
    """Directories on the way to `paths` that other users cannot search."""
    closed = []
    for path in map(Path, map(os.path.realpath, paths)):
        on_the_way = [*reversed(path.parents)] + ([path] if path.is_dir() else [])
        for directory in on_the_way:
            if not os.stat(directory).st_mode & 0o001 and directory not in closed:
                closed.append(directory)
    return closed


def lda_files():
    """What running lda touches: the script, its interpreter, the package."""
    import lda

    with open(LDA, "rb") as f:
        first = f.readline()
    paths = [LDA, sys.prefix, sys.base_prefix, Path(lda.__file__).parent]
    if first.startswith(b"#!"):
        paths.append(first[2:].split()[0].decode())
    return paths


# --- throwaway unix users ---

class UnixUser:
    """A user made with useradd for one test: own group, home, no login."""

    def __init__(self, name, home):
        self.name = name
        self.home = home
        entry = pwd.getpwnam(name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.granted = []

    @classmethod
    def create(cls, prefix, homes):
        name = f"{prefix}{secrets.token_hex(4)}"
        home = homes / name
        subprocess.run(["useradd", "--home-dir", str(home), "--no-create-home",
                        "--shell", "/usr/sbin/nologin", "--user-group",
                        "--comment", "lda Postfix test", name],
                       check=True, capture_output=True, env={"PATH": SBIN_PATH})
        user = cls(name, home)
        home.mkdir(mode=0o700)
        os.chown(home, user.uid, user.gid)
        return user

    def chown_tree(self, root):
        """Give `root` and everything under it to this user."""
        for directory, dirs, files in os.walk(root):
            for name in [directory, *(os.path.join(directory, n) for n in dirs + files)]:
                os.lchown(name, self.uid, self.gid)

    def allow_lda(self):
        """Grant search permission where the user could not reach lda, then
        check that the user can really run it."""
        for directory in closed_ancestors(lda_files()):
            _edit_acl(directory, lambda e: e.__setitem__(
                (ACL_USER, self.uid), e.get((ACL_USER, self.uid), 0) | ACL_SEARCH))
            self.granted.append(directory)
        done = self.run([str(LDA), "deliver", "--help"])
        if done.returncode != 0:
            pytest.fail(f"user {self.name} cannot run {LDA} (exit {done.returncode}): "
                        f"{done.stderr.decode(errors='replace')[-500:]}")

    def run(self, argv, **kwargs):
        return subprocess.run(argv, user=self.uid, group=self.gid, extra_groups=[],
                              cwd=self.home, capture_output=True, timeout=60,
                              env={"HOME": str(self.home), "PATH": "/usr/bin:/bin"},
                              **kwargs)

    def delete(self):
        for directory in reversed(self.granted):
            _edit_acl(directory, lambda e: e.pop((ACL_USER, self.uid), None))
        self.granted = []
        subprocess.run(["userdel", self.name], capture_output=True,
                       env={"PATH": SBIN_PATH})
        if subprocess.run(["getent", "group", self.name], capture_output=True).returncode == 0:
            subprocess.run(["groupdel", self.name], capture_output=True,
                           env={"PATH": SBIN_PATH})


# --- the Postfix instance ---

class Delivery:
    """One delivery line of the mail log."""

    def __init__(self, match):
        for name, value in match.groupdict().items():
            setattr(self, name, value)

    def __repr__(self):
        return (f"<{self.queue_id} to={self.to} relay={self.relay} dsn={self.dsn} "
                f"status={self.status} ({self.detail})>")


BASE_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
smtp      unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """A private Postfix instance under `root`; `main` overrides main.cf
    settings and `services` adds master.cf entries."""

    def __init__(self, root, main=None, services=""):
        self.root = Path(root)
        self.config_dir = self.root / "etc"
        self.queue_dir = self.root / "spool"
        self.data_dir = self.root / "data"  # postfix creates it, owned by postfix
        self.maillog = self.root / "maillog"
        self.port = free_port()
        self.main = {**self.default_main(), **(main or {})}
        self.services = services
        self.env = {"PATH": SBIN_PATH, "LANG": "C"}

    def default_main(self):
        nowhere = "error:5.7.1 no mail leaves the lda test instance"
        return {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "myhostname": "mail.lda.test",
            "mydomain": "lda.test",
            "myorigin": "$mydomain",
            "mydestination": LOCAL_DOMAIN,
            "virtual_mailbox_domains": VIRTUAL_DOMAIN,
            # lda decides who exists (an unknown recipient bounces with 5.1.1)
            "smtpd_reject_unlisted_recipient": "no",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "mail_spool_directory": str(self.root / "mail"),
            "default_transport": nowhere,
            "relay_transport": nowhere,
            "smtp_dns_support_level": "disabled",
            "lmtp_dns_support_level": "disabled",
            "smtpd_peername_lookup": "no",
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.root),
            "queue_run_delay": "2s",
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "4s",
            "delay_warning_time": "0",
            "biff": "no",
        }

    # lifecycle

    def write_config(self):
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.queue_dir.mkdir(mode=0o755, exist_ok=True)  # postfix start fills it
        (self.config_dir / "main.cf").write_text(
            "".join(f"{key} = {value}\n" for key, value in self.main.items()))
        smtpd = f"127.0.0.1:{self.port} inet n - n - - smtpd\n"
        (self.config_dir / "master.cf").write_text(smtpd + BASE_SERVICES + self.services)

    def postfix(self, *args, check=True):
        done = subprocess.run([POSTFIX, "-c", str(self.config_dir), *args], env=self.env,
                              capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            pytest.fail(f"postfix {' '.join(args)} exited {done.returncode}: "
                        f"{done.stderr.strip()}\n{self.log_tail()}")
        return done

    def start(self):
        self.write_config()
        self.postfix("start")
        wait_until(self._accepting, WAIT_SECONDS, f"smtpd on 127.0.0.1:{self.port}",
                   self.log_tail)
        return self

    def _accepting(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        """postfix stop, then end whatever of this instance is still running."""
        if (self.queue_dir / "pid" / "master.pid").exists():
            self.postfix("stop", check=False)
        if poll(lambda: not self._processes(), 10) is None:
            for pid in self._processes():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _processes(self):
        """Processes of this instance: Postfix daemons (and what they run)
        work in its queue directory or chroot."""
        found = []
        root = str(self.root) + "/"
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                places = [os.readlink(entry / "cwd"), os.readlink(entry / "root")]
            except OSError:
                continue
            if any((place + "/").startswith(root) for place in places):
                found.append(int(entry.name))
        return found

    # mail in

    def send(self, message, recipients, sender=SENDER):
        """Submit by SMTP; returns the queue ID Postfix gave the message."""
        data = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        with smtplib.SMTP("127.0.0.1", self.port, timeout=WAIT_SECONDS) as smtp:
            smtp.ehlo("client.lda.test")
            code, reply = smtp.mail(sender)
            assert code == S250_OK, reply
            for recipient in recipients:
                code, reply = smtp.rcpt(recipient)
                assert code == S250_OK, (recipient, reply)
            code, reply = smtp.data(data)
            assert code == S250_OK, reply
        return re.search(rb"queued as ([0-9A-F]+)", reply).group(1).decode()

    # the queue

    def queue(self):
        """postqueue -j: one dict per queued message (maildrop included)."""
        done = subprocess.run([POSTQUEUE, "-c", str(self.config_dir), "-j"], env=self.env,
                              capture_output=True, text=True, timeout=60, check=True)
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def queued_recipients(self):
        return sorted(r["address"] for m in self.queue() for r in m["recipients"])

    def flush(self):
        subprocess.run([POSTQUEUE, "-c", str(self.config_dir), "-f"], env=self.env,
                       capture_output=True, timeout=60, check=True)

    def wait_for_queue_empty(self, timeout=WAIT_SECONDS):
        wait_until(lambda: not self.queue(), timeout, "an empty queue",
                   lambda: f"queue: {self.queue()}\n{self.log_tail()}")

    # the mail log

    def log_text(self):
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return "mail log:\n" + "\n".join(self.log_text().splitlines()[-lines:])

    def deliveries(self, to=None, status=None, queue_id=None):
        """Delivery lines of the mail log, filtered by recipient, status, ID."""
        found = []
        for line in self.log_text().splitlines():
            match = DELIVERY_LINE.search(line)
            if match is None:
                continue
            item = Delivery(match)
            if ((to is None or item.to == to) and (status is None or item.status == status)
                    and (queue_id is None or item.queue_id == queue_id)):
                found.append(item)
        return found

    def wait_for_delivery(self, queue_id, to, status=None, timeout=WAIT_SECONDS):
        """The first log line for `to` of message `queue_id` (any queue ID
        when None) with `status` (any when None)."""
        return wait_until(lambda: self.deliveries(to, status, queue_id), timeout,
                          f"{queue_id}: to=<{to}>, status={status}", self.log_tail)[0]

    def wait_for_removal(self, queue_id, timeout=WAIT_SECONDS):
        """qmgr logs "removed" once every recipient is done with."""
        wait_until(lambda: f"{queue_id}: removed" in self.log_text(), timeout,
                   f"{queue_id} to leave the queue", self.log_tail)


# --- lda lmtp as a subprocess ---

class LmtpServer:
    """`lda lmtp` for a managed site, on a unix socket Postfix's lmtp(8)
    client (user postfix) may use, or on a loopback TCP port."""

    def __init__(self, site, kind, socket_dir):
        self.site = site
        self.kind = kind
        if kind == "unix":
            self.path = socket_dir / "lda.sock"
            self.listen = f"unix:{self.path}"
            self.transport = f"lmtp:unix:{self.path}"
        else:
            self.port = free_port()
            self.listen = f"127.0.0.1:{self.port}"
            self.transport = f"lmtp:inet:127.0.0.1:{self.port}"
        self.output = site.root / f"lmtp-{kind}.log"
        self.process = None

    def start(self):
        if self.kind == "unix":
            # lda makes the socket 0660; a set-group-ID directory of group
            # postfix hands the socket that group, as a packaged unit would.
            self.path.parent.mkdir(mode=0o750, exist_ok=True)
            os.chown(self.path.parent, 0, pwd.getpwnam("postfix").pw_gid)
            os.chmod(self.path.parent, 0o2750)
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [str(LDA), "lmtp", "--listen", self.listen, "--grace", "30"],
                env=self.site.env, cwd=self.site.root, stdout=out, stderr=subprocess.STDOUT)
        wait_until(self._ready, WAIT_SECONDS, f"lda lmtp on {self.listen}",
                   lambda: self.output.read_text(errors="replace"))
        return self

    def _ready(self):
        if self.process.poll() is not None:
            pytest.fail(f"lda lmtp exited {self.process.returncode}:\n"
                        + self.output.read_text(errors="replace"))
        try:
            if self.kind == "unix":
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.path))
            else:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        """SIGTERM; returns the exit status (lda lmtp exits 0 when stopped)."""
        return stop_process(self.process)


def stop_process(process):
    """SIGTERM to an lda server, then its exit status, or a sentence when it
    had to be killed: what a test's teardown asserts on."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return "killed after not stopping on SIGTERM"
    return process.returncode


# --- fixtures ---

@pytest.fixture
def mail_root(tmp_path):
    """A directory every user can enter, removed at teardown; the logs in it
    are kept in tmp_path."""
    require_postfix()
    root = Path(tempfile.mkdtemp(prefix="lda-postfix-"))
    root.chmod(0o755)
    yield root
    for log in [*root.glob("*/maillog"), *root.glob("**/lmtp-*.log")]:
        shutil.copy(log, tmp_path / f"{log.parent.name}-{log.name}")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_user(mail_root):
    """make_user(prefix) -> a new UnixUser that can run lda (unless
    runs_lda=False); deleted at teardown."""
    users = []
    homes = mail_root / "home"
    homes.mkdir(mode=0o755, exist_ok=True)

    def make(prefix="ldatest", runs_lda=True):
        user = UnixUser.create(prefix, homes)
        users.append(user)
        if runs_lda:
            user.allow_lda()
        return user

    yield make
    for user in users:
        user.delete()


@pytest.fixture
def lda_lmtp(mail_root):
    """lda_lmtp(site, "unix" | "tcp") -> a running LmtpServer.  At teardown
    (after Postfix has stopped) each gets SIGTERM and must exit 0."""
    servers = []

    def start(site, kind="unix"):
        server = LmtpServer(site, kind, mail_root / f"lmtp{len(servers)}")
        servers.append(server)
        return server.start()

    yield start
    statuses = {server.listen: server.stop() for server in servers}
    assert all(status == 0 for status in statuses.values()), statuses


@pytest.fixture
def make_postfix(mail_root, make_user, lda_lmtp):
    """make_postfix(main={...}, services="...") -> a started Postfix (with
    start=False, one to finish configuring and start()); stopped at
    teardown, whatever happened.  It depends on the user and LMTP fixtures
    so that Postfix stops before its users go and its LMTP servers stop."""
    instances = []

    def make(main=None, services="", start=True):
        instance = Postfix(mail_root / f"postfix{len(instances)}", main, services)
        instances.append(instance)
        return instance.start() if start else instance

    yield make
    for instance in instances:
        instance.stop()

"""Fixtures: the installed `lda` command run as a subprocess against real
Maildirs and real SQLite files under tmp_path."""

import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# The helper modules of the real peers hold assertions and fixtures; they are
# imported by several test modules (dovecot.py imports postfix.py), so their
# assertions are rewritten from here, before any test module imports them.
pytest.register_assert_rewrite("postfix", "dovecot", "postgres")

LDA = shutil.which("lda")
POSTFIX_ENV = ("SENDER", "RECIPIENT", "ORIGINAL_RECIPIENT", "EXTENSION", "LDA_CONFIG",
               "XDG_STATE_HOME", "LOCAL", "DOMAIN")


def message(message_id="<m1@example.org>", date="Tue, 24 Nov 2026 10:00:00 +0000",
            subject="test", body=b"Hello.\n", extra=b""):
    """A small RFC 5322 message as bytes; None drops a header."""
    lines = [b"From: Sender <sender@example.org>", b"To: alice@example.org"]
    if message_id is not None:
        lines.append(b"Message-ID: " + message_id.encode())
    if date is not None:
        lines.append(b"Date: " + date.encode())
    lines.append(b"Subject: " + subject.encode())
    return b"\n".join(lines) + b"\n" + extra + b"\n" + body


POLL_SECONDS = 0.1


def poll(predicate, timeout):
    """predicate()'s first true value within timeout seconds, else None."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value or None
        time.sleep(POLL_SECONDS)


def wait_until(predicate, timeout, what, details=lambda: ""):
    """Poll predicate() until it returns something true; fail after timeout."""
    value = poll(predicate, timeout)
    if value is None:
        pytest.fail(f"timed out after {timeout}s waiting for {what}\n{details()}")
    return value


def raise_open_files(needed):
    """This process's soft limit of open files (which the servers it starts
    inherit) raised to `needed`; the test is skipped if the hard one is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def open_files_of(pid):
    """(soft, hard) RLIMIT_NOFILE of a running process."""
    with open(f"/proc/{pid}/limits") as limits:
        [line] = [line for line in limits if line.startswith("Max open files")]
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def without_site(script, env):
    """Run script in a fresh interpreter started with -S, lda importable
    through PYTHONPATH: what the environment's .pth files import (an
    editable install's finder brings functools) does not count, so
    sys.modules shows lda's own imports alone."""
    import lda

    package_root = os.path.dirname(os.path.dirname(lda.__file__))
    return subprocess.run([sys.executable, "-S", "-c", script], capture_output=True,
                          text=True, env=dict(env, PYTHONPATH=package_root), check=True)


def maildir_files(maildir, sub="new"):
    path = Path(maildir) / sub
    return sorted(path.iterdir()) if path.is_dir() else []


def stored_by_folder(maildir):
    """{folder ("" for the inbox): [the bytes of each message in new/]} of
    a Maildir and its Maildir++ folders, those with messages only; what
    two delivery agents stored, compared."""
    found = {}
    if not maildir.is_dir():
        return found
    for path in [maildir, *sorted(p for p in maildir.iterdir() if p.name.startswith("."))]:
        new = path / "new"
        if new.is_dir() and os.access(new, os.R_OK):
            files = [p.read_bytes() for p in sorted(new.iterdir())]
            if files:
                found["" if path == maildir else path.name] = files
    return found


class Lda:
    """Runs the installed lda command with a controlled environment."""

    def __init__(self, env):
        if LDA is None:
            pytest.fail("the lda command is not installed (pip install .)")
        self.env = env

    def run(self, *args, input=b"", env=None, check=None, timeout=120):
        merged = dict(self.env, **(env or {}))
        done = subprocess.run([LDA, *args], input=input, env=merged, capture_output=True,
                              timeout=timeout)
        if check is not None:
            assert done.returncode == check, (done.returncode, done.stderr.decode())
        return done

    def deliver(self, msg, *recipients, sender="sender@example.org", check=None, env=None):
        args = ["deliver"] + (["-f", sender] if sender is not None else []) + list(recipients)
        return self.run(*args, input=msg, env=env, check=check)


def mailbox_paths(state, address):
    """(its database's root, its Maildir) for a managed mailbox, read from
    the directory.sqlite in state (a site's state_dir)."""
    import sqlite3

    conn = sqlite3.connect(Path(state) / "directory.sqlite")
    try:
        root, relative = conn.execute(
            "SELECT d.path, m.maildir FROM mailboxes m JOIN databases d "
            "ON d.name = m.database WHERE m.address = ?", (address,)).fetchone()
    finally:
        conn.close()
    return Path(root), Path(root) / relative


def write_lda_toml(path, values):
    """An lda.toml at path with {key: value}; the path."""
    import json

    def toml(value):  # JSON strings and arrays are valid TOML
        return str(value).lower() if isinstance(value, bool) else json.dumps(value)

    Path(path).write_text("".join(f"{k} = {toml(v)}\n" for k, v in values.items()))
    return path


def damage_pages(path, mailbox):
    """Rows for `mailbox` in the DeliveredTo database at path, then garbage
    in one of its pages past the header: the file opens and its schema reads,
    and a query (or an integrity check) meets the damage."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(path)) as conn:
        conn.executemany("INSERT INTO delivered_to VALUES (?, ?, '', 0, 'delivered', "
                         "NULL, NULL)", [(mailbox, f"<{n}@x>") for n in range(3000)])
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    with open(path, "r+b") as f:
        f.seek(page * (pages // 2) + 8)  # past the page header: cell pointers
        f.write(b"\xff" * 64)


def write_maildirsize(maildir, data, mtime=None):
    """maildir/maildirsize holding `data` (bytes), in a Maildir whose tmp,
    new and cur exist; the path.  `mtime` backdates the file (the quota
    code recalculates one 15 minutes old); None leaves it just written."""
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    path = maildir / "maildirsize"
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def fill_mailbox(maildir, size):
    """Make a mailbox hold `size` bytes as quota counts them, without
    writing them: an empty file in cur/ whose name says ,S=size (read
    before stat).  A full mailbox needs a limit its message would fit in
    when empty; a message larger than the whole limit is refused for good
    (5.2.3), not deferred as a full mailbox's is."""
    (Path(maildir) / "cur" / f"1.filler.test,S={size}:2,S").write_bytes(b"")


def remove_directory_entry(site, address):
    """Only the directory entry of a mailbox gone, its Maildir, DeliveredTo
    rows and partial records left: what `lda mailbox delete` did before it
    took them along, and what a directory restored from a backup older
    than the mailbox leaves."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(site.state / "directory.sqlite")) as conn, conn:
        conn.execute("DELETE FROM mailboxes WHERE address = ?", (address,))


def assert_no_traceback(*runs):
    """No run of lda (a CompletedProcess, stderr as bytes) ended in a
    traceback: neither "Traceback" on stderr nor exit status 1, Python's
    for an uncaught exception (lda's own are sysexits).  A fault lda can
    name deserves an LdaError and its one line: a traceback lands in
    Postfix's log and in the DSN text."""
    bad = [run for run in runs if run.returncode == 1 or b"Traceback" in run.stderr]
    assert not bad, "a traceback instead of a one-line reason:\n" + "\n".join(
        f"exit {run.returncode}: {run.stderr.decode(errors='replace')[-2000:]}"
        for run in bad[:5])


def clean_env(home):
    env = {k: v for k, v in os.environ.items() if k not in POSTFIX_ENV}
    env["HOME"] = str(home)
    return env


@pytest.fixture
def user(tmp_path):
    """Per-user mode: no configuration file, HOME under tmp_path.  Its log
    goes where log = "auto" sends it: with stderr a pipe, as under an MTA,
    to syslog (see user_log_on_stderr)."""
    home = tmp_path / "home"
    home.mkdir()
    lda = Lda(clean_env(home))
    lda.home = home
    lda.maildir = home / "Maildir"
    lda.state = home / ".local" / "state" / "lda"
    return lda


@pytest.fixture
def user_log_on_stderr(user, tmp_path):
    """Per-user mode for a test that reads the log lines on stderr: an
    lda.toml that says only mode = "user" and log = "stderr"."""
    config = write_lda_toml(tmp_path / "lda-user.toml", {"mode": "user", "log": "stderr"})
    user.env = dict(user.env, LDA_CONFIG=str(config))
    return user


class SyslogSink:
    """What lda sends to a syslog_socket: a datagram socket bound where a
    test's lda.toml points, standing in for /dev/log."""

    def __init__(self, path):
        import socket

        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    def records(self):
        """[(priority, text)] received since the last call: "<22>lda[7]: x"
        is (22, "lda[7]: x")."""
        found = []
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return found
            priority, _, text = data.decode().partition(">")
            found.append((int(priority.lstrip("<")), text))

    def lines(self):
        """The text of each record, without "lda[PID]: "."""
        return [text.split(": ", 1)[1] for _, text in self.records()]

    def close(self):
        self.sock.close()


@pytest.fixture
def syslog(tmp_path):
    sink = SyslogSink(tmp_path / "log")
    yield sink
    sink.close()


CREATE_MAILBOXES = """\
import json, sys
from lda.cli import cli
for argv in json.loads(sys.argv[1]):
    cli(["mailbox", "create", *argv], standalone_mode=False)
"""


def create_mailboxes(env, specs, **run):
    """`lda mailbox create ADDRESS *OPTIONS` for each spec, by the installed
    lda's own command code, one interpreter for all; run: subprocess.run's
    user, group and the like."""
    with open(LDA, "rb") as script:
        python = script.readline()[2:].split()[0].decode()
    done = subprocess.run([python, "-c", CREATE_MAILBOXES, json.dumps([list(s) for s in specs])],
                          capture_output=True, env=env, timeout=120, **run)
    assert done.returncode == 0, done.stderr.decode(errors="replace")


class Site(Lda):
    """Managed mode: an lda.toml, a directory, an aliases file, and a sendmail
    stand-in (a real script) that stores each re-injected message."""

    def __init__(self, root, **settings):
        self.root = root
        self.state = root / "state"
        self.aliases = root / "aliases"
        self.outbox = root / "outbox"
        self.outbox.mkdir()
        self.aliases.write_text("")
        sendmail = root / "sendmail"
        sendmail.write_text(textwrap.dedent(f"""\
            #!/bin/sh
            # argv: -i -f SENDER -- RCPT ; keep the message and the arguments
            f="{self.outbox}/$$.$(date +%s%N)"
            cat > "$f.eml" && echo "$*" > "$f.args"
            """))
        sendmail.chmod(0o755)
        self.config = root / "lda.toml"
        # Its tests read the log lines on stderr.
        values = {"state_dir": str(self.state), "aliases": str(self.aliases),
                  "sendmail": [str(sendmail), "-i"], "log": "stderr", **settings}
        self.write_config(values)
        super().__init__(dict(clean_env(root), LDA_CONFIG=str(self.config)))

    def write_config(self, values):
        write_lda_toml(self.config, values)

    def create(self, address, *options):
        self.run("mailbox", "create", address, *options, check=0)
        return self.maildir(address)

    def create_many(self, *specs):
        """`lda mailbox create` for each (address, *options), in one
        interpreter: for fixtures that set up several mailboxes for a test
        about something else (each its own `lda` would take ~0.2 s)."""
        create_mailboxes(self.env, specs)
        return [self.maildir(address) for address, *_ in specs]

    def maildir(self, address):
        return mailbox_paths(self.state, address)[1]

    def db(self, name="default"):
        return self.state / "databases" / name / "lda.sqlite"

    def sent(self):
        """[(args, message bytes)] the sendmail stand-in received."""
        return [(p.with_suffix(".args").read_text().split(), p.read_bytes())
                for p in sorted(self.outbox.glob("*.eml"))]


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path)


@pytest.fixture
def make_site(tmp_path):
    def make(**settings):
        root = tmp_path / f"site{len(list(tmp_path.glob('site*')))}"
        root.mkdir()
        return Site(root, **settings)
    return make


@pytest.fixture
def two_dbs(site, tmp_path):
    """alice in default, bob in db2 (at a path of its own), one delivery each
    way: the alias team reaches both."""
    site.create("alice@example.org")
    site.run("db", "create", "db2", "--path", str(tmp_path / "disk2"), check=0)
    site.create("bob@example.org", "--db", "db2")
    site.aliases.write_text("team: alice, bob\n")
    site.deliver(message(message_id="<m1@example.org>"), "team@example.org", check=0)
    site.deliver(message(message_id="<m2@example.org>"), "alice@example.org", check=0)
    return site


@pytest.fixture
def alice_and_empty_db2(site):
    """alice in default with nothing delivered, and db2 empty: a mailbox
    with somewhere to move to."""
    site.create("alice@example.org")
    site.run("db", "create", "db2", check=0)
    return site


@pytest.fixture
def lmtp(make_site):
    """lmtp(*server_args, **lda_settings) -> a started Server on a site with
    mailboxes a to d and full (10 bytes of quota); stopped at teardown, and
    it must exit 0."""
    from lmtp_session import Server  # it imports this module

    servers = []

    def start(*args, listen=None, cpus=None, open_files=None, pass_fds=(), **settings):
        site = make_site(**settings)
        *_, full = site.create_many(*[(f"{name}@example.org",) for name in "abcd"],
                                    ("full@example.org", "--quota-storage", "1M"))
        fill_mailbox(full, 1024**2)
        server = Server(site, *args, listen=listen, cpus=cpus, open_files=open_files,
                        pass_fds=pass_fds)
        server.site = site
        servers.append(server)
        return server

    yield start
    for server in servers:
        code, err = server.stop()
        assert code == 0, err


def python_peak_rss_kib(argv, stdin_path, env):
    """Run argv as the only child of a fresh Python and return (rc, peak RSS)."""
    probe = ("import resource,subprocess,sys;"
             f"rc=subprocess.run({argv!r}, stdin=open({str(stdin_path)!r},'rb'), "
             "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode;"
             "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                         check=True).stdout.split()
    return int(out[0]), int(out[1])

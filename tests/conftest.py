"""Fixtures: the installed `lda` command run as a subprocess against real
Maildirs and real SQLite files under tmp_path."""

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

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


def clean_env(home):
    env = {k: v for k, v in os.environ.items() if k not in POSTFIX_ENV}
    env["HOME"] = str(home)
    return env


@pytest.fixture
def user(tmp_path):
    """Per-user mode: no configuration file, HOME under tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    lda = Lda(clean_env(home))
    lda.home = home
    lda.maildir = home / "Maildir"
    lda.state = home / ".local" / "state" / "lda"
    return lda


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
        values = {"state_dir": str(self.state), "aliases": str(self.aliases),
                  "sendmail": [str(sendmail), "-i"], **settings}
        self.write_config(values)
        super().__init__(dict(clean_env(root), LDA_CONFIG=str(self.config)))

    def write_config(self, values):
        import json

        def toml(value):  # JSON strings and arrays are valid TOML
            return str(value).lower() if isinstance(value, bool) else json.dumps(value)

        self.config.write_text("".join(f"{k} = {toml(v)}\n" for k, v in values.items()))

    def create(self, address, *options):
        self.run("mailbox", "create", address, *options, check=0)
        return self.maildir(address)

    def maildir(self, address):
        import sqlite3

        conn = sqlite3.connect(self.state / "directory.sqlite")
        try:
            root, relative = conn.execute(
                "SELECT d.path, m.maildir FROM mailboxes m JOIN databases d "
                "ON d.name = m.database WHERE m.address = ?", (address,)).fetchone()
        finally:
            conn.close()
        return Path(root) / relative

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
def lmtp(make_site):
    """lmtp(*server_args, **lda_settings) -> a started Server on a site with
    mailboxes a to d and full (10 bytes of quota); stopped at teardown, and
    it must exit 0."""
    from lmtp_session import Server  # it imports this module

    servers = []

    def start(*args, listen=None, cpus=None, open_files=None, **settings):
        site = make_site(**settings)
        for name in ("a", "b", "c", "d"):
            site.create(f"{name}@example.org")
        site.create("full@example.org", "--quota-storage", "10")
        server = Server(site, *args, listen=listen, cpus=cpus, open_files=open_files)
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

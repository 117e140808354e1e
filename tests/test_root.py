"""lda run as root in per-user mode: the privilege border (issue 16, section 3).

Postfix's local(8) runs mailbox_command as the recipient, never as root, so a
root lda delivering into someone's HOME is a person or a script getting it
wrong.  Without allow_root_delivery it must refuse before it creates anything
there (else the user's own deliveries then fail on root's files); with it, no
symlink the user planted among lda's state may lead root's writes elsewhere.

The throwaway user is `nobody`, with a HOME made for the test; lda runs as
it from the source tree through setpriv, as test_faults runs it.  Root only;
skipped otherwise.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import LDA, clean_env, maildir_files, message
from test_faults import REPO, nobody_python

NOBODY = 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run lda as root "
                                "and as another user")


@pytest.fixture
def base():
    """A directory every user can search (tmp_path's parents are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="lda-root-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def home(base):
    path = base / "home"
    path.mkdir()
    os.chown(path, NOBODY, NOBODY)
    return path


def as_root(home, config=None, msg=None):
    argv = [LDA, "deliver", *(["-c", str(config)] if config else []), "-f",
            "sender@example.org", "nobody@example.org"]
    return subprocess.run(argv, input=msg or message(), env=clean_env(home),
                          capture_output=True, timeout=60)


def as_nobody(home, msg=None):
    # As test_faults runs it: setpriv with the Python that nobody can run.
    argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            nobody_python(), str(REPO / "bin" / "lda"), "deliver", "-f",
            "sender@example.org", "nobody@example.org"]
    return subprocess.run(argv, input=msg or message(), cwd="/", capture_output=True,
                          timeout=60,
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin",
                               "PYTHONPATH": str(REPO)})


def everything_under(path):
    return sorted(str(p.relative_to(path)) for p in Path(path).rglob("*"))


def owners_under(path):
    return {p.lstat().st_uid for p in [Path(path), *Path(path).rglob("*")]}


def assert_refused(done, code, words):
    stderr = done.stderr.decode()
    assert done.returncode == code, stderr
    first = stderr.splitlines()[0]
    assert first.startswith("4.3.5 " if code == 78 else "4.3.0 ") and words in first, stderr
    assert "Traceback" not in stderr


def test_root_creates_nothing_in_a_users_home_and_the_user_then_delivers(home):
    done = as_root(home)
    # 78 (EX_CONFIG, 4.3.5): Postfix defers, the message waits for the fix.
    assert_refused(done, 78, "refusing")
    assert everything_under(home) == []
    mine = as_nobody(home)
    assert mine.returncode == 0, mine.stderr.decode()
    assert len(maildir_files(home / "Maildir")) == 1
    assert owners_under(home) == {NOBODY}


def test_root_refuses_a_users_state_dir_before_writing_anything(home):
    """The Maildir root's own (say, made by hand), the state dir the user's."""
    maildir = home / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    state = home / ".local" / "state" / "lda"
    state.mkdir(parents=True)
    for path in [home / ".local", home / ".local" / "state", state]:
        os.chown(path, NOBODY, NOBODY)
    before = everything_under(home)
    assert_refused(as_root(home), 78, "refusing")
    assert everything_under(home) == before
    assert maildir_files(maildir) == []


def test_root_delivers_into_its_own_maildir(base):
    own = base / "root-home"
    own.mkdir()
    first = as_root(own)
    assert first.returncode == 0, first.stderr.decode()
    assert as_root(own, msg=message("<m2@example.org>")).returncode == 0
    assert len(maildir_files(own / "Maildir")) == 2
    assert owners_under(own) == {0}


def root_stats_per_open(trace, root):
    """For each descriptor of the directory root that the strace -f log
    shows opened (openat ... = FD), how often it was fstat'ed before it
    was closed or the log ended, in order."""
    counts, open_fds = [], {}
    for line in trace.splitlines():
        _, _, call = line.partition(" ")
        call = call.lstrip()  # strace pads a short PID: "2678  openat(...)"
        if call.startswith("openat(") and f'"{root}"' in call and "= " in call:
            fd = call.rsplit("= ", 1)[1].split()[0]
            if fd.isdigit():
                open_fds[fd] = len(counts)
                counts.append(0)
        elif call.startswith(("newfstatat(", "fstat(")):
            fd = call[call.index("(") + 1:].split(",")[0]
            if fd in open_fds and (call.startswith("fstat(") or ', "",' in call):
                counts[open_fds[fd]] += 1
        elif call.startswith("close("):
            open_fds.pop(call[len("close("):].split(")")[0], None)
    return counts


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_root_reads_its_maildir_s_owner_and_permissions_with_one_fstat(base):
    """As root, the Maildir's root is checked for its owner (NotOwner) and
    read for the permissions of what is staged in it: one fstat of the
    descriptor answers both.  It was fstat'ed twice while staging."""
    own = base / "root-home"
    (own / "Maildir").mkdir(parents=True)
    assert as_root(own).returncode == 0
    trace = base / "trace"
    argv = ["strace", "-f", "-qq", "-o", str(trace), "-e",
            "trace=openat,close,fstat,newfstatat", LDA, "deliver", "-f",
            "sender@example.org", "nobody@example.org"]
    done = subprocess.run(argv, input=message("<m2@example.org>"), env=clean_env(own),
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    counts = root_stats_per_open(trace.read_text(), own / "Maildir")
    assert counts and max(counts) == 1, counts


def test_root_creates_no_home(base):
    """A HOME that does not exist is not lda's to make: useradd -m would then
    find it there, owned by root."""
    done = as_root(base / "missing")
    assert done.returncode == 75, done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()
    assert everything_under(base) == []


# -- allow_root_delivery = true: the user's symlinks are not followed --------

def plant(link, destination):
    """A symlink the user made, at `link`, to `destination`."""
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(destination, link)
    os.lchown(link, NOBODY, NOBODY)


def give_to_nobody(home):
    for path in [home, *home.rglob("*")]:
        os.lchown(path, NOBODY, NOBODY)


STATE = Path(".local/state/lda")
# (what the user replaced with a symlink, whether it points at a directory)
PLANTED = {
    "locks": (STATE / "locks", True),
    "database": (STATE / "lda.sqlite", False),
    "wal": (STATE / "lda.sqlite-wal", False),
    "staging-tmp": (STATE / "tmp", True),
    "partial-spool": (STATE / "partial", True),
    "sieve-cache": (STATE / "sieve-cache", True),
    "state-dir": (STATE, True),
    "state-parent": (Path(".local/state"), True),
    "local": (Path(".local"), True),
}


@pytest.mark.parametrize("case", PLANTED)
def test_allow_root_delivery_follows_no_symlink_of_the_user(base, home, case):
    config = base / "lda.toml"
    config.write_text('mode = "user"\nallow_root_delivery = true\n'
                      'sendmail = ["/bin/false"]\n')
    destination = base / "elsewhere"
    destination.mkdir()
    relative, is_dir = PLANTED[case]
    if case != "staging-tmp":  # tmp/ of the state dir stages only without a Maildir
        for sub in ("tmp", "new", "cur"):
            (home / "Maildir" / sub).mkdir(parents=True)
    if case == "partial-spool":  # a redirect that fails: a partial delivery
        (home / ".lda.sieve").write_text('require "copy";\n'
                                         'redirect :copy "other@example.net";\n')
    if case == "sieve-cache":  # a script: its compiled form is cached
        (home / ".lda.sieve").write_text("keep;\n")
    plant(home / relative, destination if is_dir else destination / "file")
    give_to_nobody(home)
    done = as_root(home, config=config)
    assert everything_under(destination) == []
    # A copy that can be neither forwarded nor kept for retry defers that
    # recipient (its Maildir copy is then a duplicate on the retry).
    assert_refused(done, 75 if case == "partial-spool" else 78, "symlink")


def test_allow_root_delivery_without_symlinks_delivers(base, home):
    """The refusals above are the symlinks' doing, not the option's."""
    config = base / "lda.toml"
    config.write_text('mode = "user"\nallow_root_delivery = true\n')
    for sub in ("tmp", "new", "cur"):
        (home / "Maildir" / sub).mkdir(parents=True)
    (home / ".lda.sieve").write_text("keep;\n")
    (home / STATE).mkdir(parents=True)
    give_to_nobody(home)
    done = as_root(home, config=config)
    assert done.returncode == 0, done.stderr.decode()
    assert len(maildir_files(home / "Maildir")) == 1

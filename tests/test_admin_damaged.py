"""Every admin command on damaged state: a corrupt, missing or unopenable
lda.sqlite or directory.sqlite, and a state_dir that is a regular file.

None prints a traceback or exits 1 (a bounce, to anything that reads
sysexits): each either does its work or says in one line which file is
wrong, with exit 78 for a file that is the admin's to repair and 75 for a
failure a retry may not meet.  The commands come from walking the click
tree, so a new command is tried here as soon as it exists (with no
arguments until ARGS gives it better ones)."""

import shutil

import click
import pytest

from conftest import Site, damage_pages, message
from lda.cli import cli

# Delivery commands have their own damaged-state answers (75 keeps the
# message queued), tested with the deliveries; the servers (`lda lmtp`,
# `lda policy`, `lda socketmap`) would serve, and answer each request
# (test_lmtp.py, test_services.py).
DELIVERY = {"deliver", "lmtp", "policy", "socketmap"}
# `lda mailbox receive` reads a mailbox stream from another host first and
# refuses anything else (65) before it opens any state; its answers on a
# valid stream are in test_hostmove.py.
STREAMS = {"mailbox receive"}
ALICE = "alice@example.org"
ARGS = {
    "aliases compile": [],
    "db create": ["db3"],
    "db show": ["default"],
    "dedup forget": ["--message-id", "<m1@example.org>"],
    "dedup lookup": ["--message-id", "<m1@example.org>"],
    # No server listens there: the command reads directory.sqlite first.
    "directory migrate": ["--to", "postgresql://lda@/lda?host=/nonexistent"],
    "explain": [ALICE],
    "host add": ["d", "--transport", "lmtp:inet:127.0.0.1:24"],
    "host remove": ["c"],
    "mailbox create": ["carol@example.org"],
    "mailbox delete": [ALICE],
    "mailbox move": [ALICE, "--to", "db2"],
    "mailbox set-quota": [ALICE, "--storage", "1G"],
    "mailbox show": [ALICE],
    "partial bounce": ["--all"],
    "quota recalc": ["--all"],
    "quota show": [ALICE],
    "sieve activate": [ALICE, "script"],
    "sieve check": ["{root}/script.sieve"],
    "sieve deactivate": [ALICE],
    "sieve delete": [ALICE, "spare"],
    "sieve install": [ALICE, "{root}/script.sieve"],
    "sieve list": [ALICE],
    "sieve rename": [ALICE, "script", "renamed"],
    "sieve show": [ALICE],
    "sieve test": ["{root}/script.sieve"],
    "procmail-convert": ["{root}/procmailrc"],
}


def leaves(command, path=()):
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from leaves(sub, path + (name,))
    elif " ".join(path) not in DELIVERY | STREAMS:
        yield " ".join(path)


COMMANDS = list(leaves(cli))


def remove(path):
    """The SQLite file and its WAL and shared memory, as a lost file leaves."""
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        path.with_name(name).unlink(missing_ok=True)


def garbage(path):
    remove(path)
    path.write_bytes(b"this is no SQLite database\n" * 300)


def damaged_pages(path):
    """A database whose header and schema read well, and one of whose
    DeliveredTo pages is garbage: found by a query, not by the open."""
    damage_pages(path, ALICE)


def a_directory(path):
    remove(path)
    path.mkdir()


def state_dir_file(state):
    shutil.rmtree(state)
    state.write_text("not a directory\n")


# name -> (what it does to the site, the file an error must name)
DAMAGE = {
    "corrupt-lda.sqlite": (lambda s: garbage(s.db()), lambda s: s.db()),
    "corrupt-directory": (lambda s: garbage(s.state / "directory.sqlite"),
                          lambda s: s.state / "directory.sqlite"),
    "damaged-pages-lda.sqlite": (lambda s: damaged_pages(s.db()), lambda s: s.db()),
    "missing-lda.sqlite": (lambda s: remove(s.db()), lambda s: s.db()),
    "missing-directory": (lambda s: remove(s.state / "directory.sqlite"),
                          lambda s: s.state / "directory.sqlite"),
    "lda.sqlite-is-a-directory": (lambda s: a_directory(s.db()), lambda s: s.db()),
    "directory-is-a-directory": (lambda s: a_directory(s.state / "directory.sqlite"),
                                 lambda s: s.state / "directory.sqlite"),
    "state_dir-is-a-file": (lambda s: state_dir_file(s.state), lambda s: s.state),
}
MISSING = {"missing-lda.sqlite", "missing-directory"}
# Commands whose work is to report damage: the file is named on stdout.
REPORTS = {"db check", "config check"}
# Commands whose work is on a server the test has none of (above): past
# the files they read themselves, they fail for that, in one line.
ELSEWHERE = {"directory migrate"}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A site with a mailbox, a message, a second database and a partial
    record; its state is saved and put back before each case."""
    root = tmp_path_factory.mktemp("damaged")
    site = Site(root)
    site.create(ALICE)
    site.create("bob@example.org", "--quota-messages", "1")
    site.run("db", "create", "db2", check=0)
    site.run("host", "add", "c", "--transport", "lmtp:inet:127.0.0.1:24", check=0)
    site.run("mailbox", "create", "team@example.org", "--forward", ALICE,
             "--forward", "bob@example.org", "--no-keep-copy", check=0)
    site.deliver(message("<fill@example.org>"), "bob@example.org", check=0)
    site.deliver(message(), "team@example.org", check=0)  # bob is full: a partial
    (root / "script.sieve").write_text('require "fileinto";\nfileinto "x";\n')
    (root / "procmailrc").write_text("MAILDIR=$HOME/Maildir\n:0\n* ^Subject: x\n.x/\n")
    site.run("sieve", "install", ALICE, str(root / "script.sieve"), check=0)
    site.run("sieve", "install", ALICE, str(root / "script.sieve"), "--name", "spare",
             "--no-activate", check=0)  # one `sieve delete` may remove
    shutil.copytree(site.state, root / "state.saved", symlinks=True)
    return site


@pytest.fixture
def damaged(pristine):
    def damage(kind):
        shutil.rmtree(pristine.state, ignore_errors=True)
        if pristine.state.is_file():
            pristine.state.unlink()
        shutil.copytree(pristine.root / "state.saved", pristine.state, symlinks=True)
        DAMAGE[kind][0](pristine)
        return pristine, DAMAGE[kind][1](pristine)
    return damage


def run(site, name):
    args = [a.format(root=site.root) for a in ARGS.get(name, [])]
    return site.run(*name.split(), *args, input=message(), timeout=60)


def error_lines(done):
    return done.stderr.decode(errors="replace").strip().splitlines()


@pytest.mark.parametrize("kind", DAMAGE)
@pytest.mark.parametrize("name", COMMANDS)
def test_admin_command_on_damaged_state_says_which_file_in_one_line(damaged, name, kind):
    site, path = damaged(kind)
    done = run(site, name)
    lines = error_lines(done)
    assert "Traceback" not in done.stderr.decode(errors="replace"), lines
    assert done.returncode != 1, lines
    if name in REPORTS and done.returncode:
        assert done.returncode == 78 and not lines, (done.returncode, lines)
        assert str(path) in done.stdout.decode()
        return
    if done.returncode == 0 or kind in MISSING:
        # A database never delivered to, or a new site: nothing is wrong; a
        # failure is one line (an unknown mailbox, say).
        assert done.returncode == 0 or len(lines) == 1, lines
        return
    assert done.returncode in (75, 78), (done.returncode, lines)
    assert len(lines) == 1 and lines[0].startswith("lda: "), lines
    if name in ELSEWHERE and done.returncode == 75 and "cannot reach" in lines[0]:
        return
    # Damage met past the open, where no file is named any more, points
    # to the check that names it.
    assert str(path) in lines[0] or (kind == "damaged-pages-lda.sqlite"
                                     and "`lda db check`" in lines[0]), lines


@pytest.mark.parametrize("name", ["partial list", "partial retry", "partial bounce",
                                  "dedup stats", "db list", "mailbox move"])
def test_corrupt_lda_sqlite_is_a_configuration_error_naming_it(damaged, name):
    site, path = damaged("corrupt-lda.sqlite")
    done = run(site, name)
    assert done.returncode == 78, error_lines(done)
    assert error_lines(done) == [
        f"lda: {path}: not an SQLite database, or a damaged one (file is not a "
        f"database); restore it from a backup, or salvage it: "
        f"`sqlite3 {path} .recover | sqlite3 {path}.recovered`"]


@pytest.mark.parametrize("name", ["mailbox list", "mailbox show", "partial list",
                                  "quota recalc", "db list"])
def test_corrupt_directory_is_a_configuration_error_naming_it(damaged, name):
    site, path = damaged("corrupt-directory")
    done = run(site, name)
    assert done.returncode == 78, error_lines(done)
    assert len(error_lines(done)) == 1
    assert error_lines(done)[0].startswith(f"lda: {path}: not an SQLite database")


@pytest.mark.parametrize("name", ["mailbox list", "partial list", "partial retry",
                                  "aliases compile", "db list", "dedup cleanup"])
def test_state_dir_that_is_a_file_is_a_configuration_error(damaged, name):
    site, path = damaged("state_dir-is-a-file")
    done = run(site, name)
    assert done.returncode == 78, error_lines(done)
    assert error_lines(done) == [f"lda: {path}: state_dir is not a directory"]

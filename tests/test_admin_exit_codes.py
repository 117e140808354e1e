"""One exit-status rule for every admin command (issue 19, section 5), the
table of lda(1)'s EXIT STATUS section:

    64 EX_USAGE     the command line: a bad option or argument value,
                    conflicting options, a missing argument
    67 EX_NOUSER    a name that does not exist: mailbox, database, move,
                    partial-delivery record
    73 EX_CANTCREAT what is to be created is there already
    78 EX_CONFIG    a bad lda.toml or aliases file, damaged state

Each case runs the installed command and wants one line on stderr that
says what is wrong; the ones that main got wrong come first in each list."""

import shutil
import sqlite3
import subprocess
import tempfile
from contextlib import closing
from pathlib import Path

import pytest

from test_admin import one_line_error

# (arguments, exit status, words the one line must hold)
USAGE = [
    (["mailbox", "create", "bob@example.org", "--quota-storage", "lots"], 64,
     "'lots' is not a size"),
    (["mailbox", "create", "bob@example.org", "--quota-storage", "-5"], 64,
     "'-5' is not a size"),
    (["mailbox", "create", "bob@example.org", "--quota-messages", "-5"], 64,
     "'-5' is not a number of messages"),
    (["mailbox", "create", "bad address"], 64, "'bad address' is not an address"),
    (["mailbox", "create", "bob@example.org", "--forward", "nowhere"], 64,
     "'nowhere' is not an address"),
    (["db", "create", "Bad Name"], 64, "invalid database name 'Bad Name'"),
    (["db", "create", "../x"], 64, "invalid database name"),
    (["mailbox", "move", "alice@example.org", "--to", "db2", "--rollback"], 64,
     "give --to DATABASE (and/or --resume), or --rollback alone"),
    (["partial", "bounce", "--all", "--id", "1"], 64, "--all conflicts with --id"),
    (["mailbox", "set-quota", "alice@example.org", "--storage", "1.5G"], 64,
     "'1.5G' is not a size"),
    (["mailbox", "move", "alice@example.org"], 64, "give --to DATABASE (and/or --resume), or --rollback alone"),
    (["dedup", "cleanup", "--older-than", "soon"], 64, "'soon' is not a duration"),
    (["mailbox", "show"], 64, "Missing argument 'ADDRESS'"),
    (["mailbox", "list", "--nosuch"], 64, "No such option '--nosuch'"),
]
UNKNOWN = [
    (["db", "show", "nosuch"], 67, "no mailbox database named 'nosuch'"),
    (["dedup", "cleanup", "--db", "nosuch"], 67, "no mailbox database named 'nosuch'"),
    (["dedup", "stats", "--db", "nosuch"], 67, "no mailbox database named 'nosuch'"),
    (["db", "check", "nosuch"], 67, "no mailbox database named 'nosuch'"),
    (["mailbox", "create", "bob@example.org", "--db", "nosuch"], 67,
     "no mailbox database named 'nosuch'"),
    (["mailbox", "move", "alice@example.org", "--to", "nosuch"], 67,
     "no mailbox database named 'nosuch'"),
    (["mailbox", "move", "alice@example.org", "--rollback"], 67,
     "no unfinished move of alice@example.org"),
    (["partial", "list", "--db", "nosuch"], 67, "no mailbox database named 'nosuch'"),
    (["partial", "bounce", "--id", "99"], 67, "no partial delivery 99"),
    (["partial", "retry", "--id", "99"], 67, "no partial delivery 99"),
    (["mailbox", "show", "nobody@example.org"], 67, "no mailbox nobody@example.org"),
    (["mailbox", "move", "nobody@example.org", "--to", "db2"], 67, "no mailbox"),
    (["quota", "show", "nobody@example.org"], 67, "no mailbox nobody@example.org"),
]
EXISTING = [
    (["mailbox", "create", "alice@example.org"], 73,
     "mailbox alice@example.org exists already"),
    (["db", "create", "default"], 73, "mailbox database 'default' exists already"),
    (["mailbox", "move", "alice@example.org", "--to", "default"], 73,
     "alice@example.org is in default already"),
]
CASES = USAGE + UNKNOWN + EXISTING


@pytest.mark.parametrize("args, code, text", CASES,
                         ids=[f"{code}-{' '.join(args)}" for args, code, _ in CASES])
def test_admin_exit_status(alice_and_empty_db2, args, code, text):
    line = one_line_error(alice_and_empty_db2.run(*args), code)
    assert text in line, line


def test_nothing_was_made_by_a_refused_command(alice_and_empty_db2):
    """A refusal changes nothing: the mailboxes and databases are as they were."""
    site = alice_and_empty_db2
    before = [site.run(*what, "--json", check=0).stdout
              for what in (["mailbox", "list"], ["db", "list"])]
    for args, _, _ in CASES:
        site.run(*args)
    after = [site.run(*what, "--json", check=0).stdout
             for what in (["mailbox", "list"], ["db", "list"])]
    assert after == before


def test_a_move_in_the_way_is_73_and_says_how_to_go_on(alice_and_empty_db2):
    """An unfinished move to db2 stops a move elsewhere: the message names
    both ways out."""
    site = alice_and_empty_db2
    site.run("db", "create", "db3", check=0)
    conn_args = ("alice@example.org", "default", "db2", "example.org/alice",
                 "example.org/alice", "maildir", 0.0)
    with closing(sqlite3.connect(site.state / "directory.sqlite")) as conn, conn:
        conn.execute("INSERT INTO moves VALUES (?, ?, ?, ?, ?, ?, ?)", conn_args)
    line = one_line_error(site.run("mailbox", "move", "alice@example.org", "--to", "db3"),
                          73)
    assert "resume it with --to db2 or undo it with --rollback" in line, line


def test_configuration_errors_stay_78(make_site):
    """78 is kept for the configuration: a bad lda.toml, aliases file."""
    site = make_site(expiration_hours="a week")
    one_line_error(site.run("mailbox", "list"), 78)
    site = make_site()
    # A bad line is skipped with a warning (compile exits 0, as newaliases);
    # `aliases check` and an alias loop are what stop an admin with 78.
    site.aliases.write_text("broken line without colon\n")
    done = site.run("aliases", "check")
    assert done.returncode == 78 and b"broken line" in done.stdout + done.stderr
    site.aliases.write_text("ping: pong\npong: ping\n")
    done = site.run("aliases", "compile")
    assert done.returncode == 78 and b"loop" in done.stderr, done.stderr


@pytest.fixture
def site_of_root(tmp_path_factory):
    """A site whose state_dir root made (0700), its lda.toml readable by
    all, in a directory every user can search (tmp_path's parents are 0700)."""
    from test_faults import nobody_python

    from conftest import Site

    # Skips unless root, with setpriv, and a Python whose click nobody can import.
    python = nobody_python("sqlite3, click, sqlite_utils, lda.cli")
    base = Path(tempfile.mkdtemp(prefix="lda-perm-"))
    base.chmod(0o755)
    site = Site(base)
    site.create("alice@example.org")
    site.config.chmod(0o644)
    yield site, python
    shutil.rmtree(base, ignore_errors=True)


def as_nobody(site, python, *args):
    from test_faults import REPO

    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           python, str(REPO / "bin" / "lda"), *args], cwd="/",
                          env={"LDA_CONFIG": str(site.config), "PATH": "/usr/bin:/bin",
                               "HOME": "/", "PYTHONPATH": str(REPO)},  # as nobody_python probes
                          capture_output=True, timeout=60)


@pytest.mark.parametrize("args", [["mailbox", "list"], ["mailbox", "create", "b@example.org"],
                                  ["db", "check"], ["partial", "list"], ["dedup", "stats"]],
                         ids=" ".join)
@pytest.mark.parametrize("opened", [False, True], ids=["state_dir-0700", "files-0600"])
def test_another_users_state_is_77_not_an_empty_site(site_of_root, args, opened):
    """Run as a user who may not read state_dir (or, with the directory
    opened to all, its files): 77 and a line that says whose it is, where
    main said 78, or saw no state at all (db check: 0, partial list: no
    directory)."""
    site, python = site_of_root
    if opened:
        site.state.chmod(0o755)
    done = as_nobody(site, python, *args)
    if opened and args == ["db", "check"]:  # a problem it lists, on stdout
        assert done.returncode == 77, done
        line = done.stdout.decode().splitlines()[0]
    else:
        line = one_line_error(done, 77)
    assert "permission denied; run lda as the user that owns state_dir" in line, line
    assert str(site.state) in line, line
    assert site.run("mailbox", "list", "--json", check=0).stdout.count(b"address") == 1

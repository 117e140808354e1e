"""`lda config show` (every key, its value and source, as pasteable TOML)
and `lda config check` (each problem a delivery would meet, created for
real, found as one line "WHERE: problem; repair"), through the installed
command."""

import json
import os
import pwd
import shutil
import tomllib

import pytest

from conftest import Lda, assert_no_traceback, damage_pages, message
from lda.config import KEYS, Config

ALICE = "alice@example.org"
BAD_SCRIPT = 'require "fileinto";\nif true {\n  fileinto "Junk"\n}\n'  # no ";" at 4:1
GOOD_SCRIPT = 'require "fileinto";\nif header :contains "subject" "x" { fileinto "X"; }\n'


def show(lda, *args, code=0):
    done = lda.run("config", "show", *args)
    assert done.returncode == code, (done.returncode, done.stderr)
    return done.stdout.decode()


def shown_json(lda, *args):
    return {row["key"]: row for row in json.loads(show(lda, "--json", *args))["keys"]}


def check(lda, code):
    """The problem lines of `lda config check` (its last line, the count, left off)."""
    done = lda.run("config", "check")
    assert_no_traceback(done)
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    *problems, last = done.stdout.decode().splitlines()
    assert last.endswith(f"{len(problems) or 'no'} problem(s)"), last
    return problems


def one(lines, text):
    found = [line for line in lines if text in line]
    assert len(found) == 1, (text, lines)
    return found[0]


def set_keys(site, **values):
    """Add keys to the site's lda.toml."""
    written = tomllib.loads(site.config.read_text())
    site.write_config({**written, **values})


# --- show ----------------------------------------------------------------------


def test_show_is_toml_that_lda_toml_takes_back(site, tmp_path):
    set_keys(site, quota_storage="2G", quota_warnings=["storage 80%"], sieve_before="a.sieve")
    text = show(site)
    values = tomllib.loads(text)
    assert set(values) == set(KEYS)
    config = Config(values, path="pasted", environ={"HOME": str(tmp_path)})
    assert config.quota_storage == 2 << 30 and config.quota_warnings == (("storage", 80),)
    assert values["sieve_before"] == [os.path.abspath("a.sieve")]


def test_show_names_each_source(site):
    lines = show(site).splitlines()
    assert lines[0] == f'# configuration file: "{site.config}" (-c/LDA_CONFIG); mode managed'
    assert f'state_dir = "{site.state}"  # lda.toml' in lines
    assert "expiration_hours = 168  # default" in lines
    assert f'hostname = "{os.uname().nodename}"  # derived (uname)' in lines
    assert f'lmtp_listen = "unix:{site.state}/lmtp.sock"  # derived (state_dir)' in lines
    assert f'maildir = "{site.root}/Maildir"  # environment (HOME)' in lines


def test_show_changed_lists_only_what_lda_toml_changes(site):
    set_keys(site, expiration_hours=168, quota_full="reject")
    keys = tomllib.loads(show(site, "--changed"))
    assert set(keys) == {"state_dir", "aliases", "sendmail", "log", "quota_full"}


def test_show_json_has_value_source_and_default(site):
    rows = shown_json(site)
    assert rows["quota_full"] == {"key": "quota_full", "value": "tempfail",
                                  "source": "default", "default": "tempfail",
                                  "changed": False}
    assert rows["log"]["source"] == "lda.toml" and rows["log"]["changed"]


def test_show_per_user_paths_come_from_the_environment(user, tmp_path):
    rows = shown_json(user)
    assert (rows["mode"]["value"], rows["mode"]["source"]) == ("user", "no configuration file")
    assert rows["state_dir"] == dict(rows["state_dir"], value=str(user.state),
                                     source="environment (HOME)")
    state = tmp_path / "xdg"
    rows = shown_json(Lda(dict(user.env, XDG_STATE_HOME=str(state))))
    assert (rows["state_dir"]["value"], rows["state_dir"]["source"]) == (
        str(state / "lda"), "environment (XDG_STATE_HOME)")
    assert set(tomllib.loads(show(user, "--changed"))) == {"mode"}


def test_show_with_a_bad_lda_toml_is_one_line_and_78(site):
    site.config.write_text("quota_full = 'sometimes'\n")
    done = site.run("config", "show")
    assert_no_traceback(done)
    assert (done.returncode, done.stdout) == (78, b"")
    assert done.stderr.decode().splitlines() == [
        f"lda: {site.config}: quota_full must be one of tempfail, reject, not 'sometimes'"]


# --- check: clean ----------------------------------------------------------------


def test_a_clean_site_has_no_problems(site):
    site.create(ALICE)
    (site.maildir(ALICE) / "lda.sieve").write_text(GOOD_SCRIPT)
    site.aliases.write_text(f"postmaster: {ALICE}\n")
    site.run("aliases", "compile", check=0)
    done = site.run("config", "check", check=0)
    assert done.stdout.decode().splitlines() == [
        f"checked {site.config}, 1 mailbox(es), 1 Sieve script(s): no problem(s)"]
    assert done.stderr == b""


def test_per_user_mode_with_nothing_yet_is_clean(user):
    assert check(user, 0) == []


def test_a_symlinked_state_dir_is_followed_and_its_target_checked(make_site, tmp_path):
    """Decided: lda follows a state_dir symlink (config.state_base), so the
    check does too; the directory it leads to is what must be safe."""
    target = tmp_path / "real-state"
    target.mkdir(mode=0o700)
    link = tmp_path / "state-link"
    link.symlink_to(target)
    site = make_site(state_dir=str(link))
    site.run("mailbox", "create", ALICE, check=0)
    assert check(site, 0) == []
    target.chmod(0o777)
    assert one(check(site, 78), "writable by group and others").startswith(f"{link}: ")


# --- check: lda.toml ---------------------------------------------------------------


@pytest.mark.parametrize("text, problem", [
    ("state_dir = '/tmp/x'\nbogus = 1\n", "unknown key 'bogus'"),
    ("expiration_hours = 'soon'\n", "expiration_hours must be an integer, not 'soon'"),
    ("state_dir = [\n", "invalid TOML: "),
], ids=["bad-key", "bad-type", "bad-toml"])
def test_an_invalid_lda_toml_is_one_line_and_78(site, text, problem):
    site.config.write_text(text)
    [line] = check(site, 78)
    assert line.startswith(f"{site.config}: {problem}") and "lda.toml(5)" in line


def test_a_missing_configuration_file_is_one_line(site, tmp_path):
    missing = tmp_path / "no" / "lda.toml"
    [line] = check(Lda(dict(site.env, LDA_CONFIG=str(missing))), 78)
    assert line.startswith(f"{missing}: configuration file not found")


def test_a_hostile_config_path_is_one_line(site, tmp_path):
    done = site.run("config", "check", env={"LDA_CONFIG": str(tmp_path / "a\nb/../lda.toml")})
    assert_no_traceback(done)
    assert done.returncode == 78
    [line, _] = done.stdout.decode().splitlines()
    assert line.startswith(f"{tmp_path}/a\\x0ab/../lda.toml: configuration file not found")


# --- check: aliases ------------------------------------------------------------------


def test_a_bad_aliases_line_is_reported_at_its_line(site):
    site.aliases.write_text(f"postmaster: {ALICE}\nteam alice bob\n")
    line = one(check(site, 78), str(site.aliases))
    assert line.startswith(f"{site.aliases}:2: missing \":\"")


def test_a_compiled_table_older_than_the_file(site):
    site.aliases.write_text(f"postmaster: {ALICE}\n")
    site.run("aliases", "compile", check=0)
    site.aliases.write_text(f"postmaster: {ALICE}\nabuse: {ALICE}\n")
    [line] = check(site, 78)
    assert line.startswith(f"{site.state}/aliases.sqlite: the compiled aliases table is "
                           f"older than its source {site.aliases}")
    assert "`lda aliases compile`" in line


def test_a_missing_aliases_file(site):
    site.aliases.unlink()
    assert one(check(site, 78), str(site.aliases)).startswith(f"{site.aliases}: ")


# --- check: Sieve ------------------------------------------------------------------


def test_a_mailbox_script_that_does_not_compile_is_reported_at_file_line_col(site):
    script = site.create(ALICE) / "lda.sieve"
    script.write_text(BAD_SCRIPT)
    [line] = check(site, 78)
    assert line.startswith(f"{script}:4:1: ") and f"lda sieve check {script}" in line


def test_a_stored_script_that_does_not_compile(site):
    stored = site.create(ALICE) / "sieve"
    stored.mkdir()
    (stored / "old.sieve").write_text(BAD_SCRIPT)
    assert check(site, 78)[0].startswith(f"{stored}/old.sieve:4:1: ")


def test_an_extension_compiles_only_when_lda_toml_turns_it_on(site):
    script = site.create(ALICE) / "lda.sieve"
    script.write_text('require "editheader";\naddheader "X-A" "1";\n')
    assert check(site, 78)[0].startswith(f'{script}:1:9: unsupported extension "editheader"')
    set_keys(site, sieve_extensions_extra=["editheader"])
    assert check(site, 0) == []


@pytest.mark.parametrize("kind", ["to-a-stored-script", "out-of-the-mailbox", "not-a-sieve",
                                  "dangling", "fifo"])
def test_a_managesieve_link_that_a_delivery_does_not_follow_is_reported(site, tmp_path, kind):
    """lda.sieve a symlink, as ManageSieve makes it, but to nothing a
    delivery runs (lda/deliver/sievescripts.py, mailbox_script): the
    mailbox's filter is off, and the check says so, as a problem to
    repair; a link to a stored script is the normal case."""
    maildir = site.create(ALICE)
    (maildir / "sieve").mkdir()
    link = maildir / "lda.sieve"
    target = {"to-a-stored-script": maildir / "sieve" / "main.sieve",
              "out-of-the-mailbox": tmp_path / "elsewhere.sieve",
              "not-a-sieve": maildir / "sieve" / "notes.txt",
              "dangling": maildir / "sieve" / "gone.sieve", "fifo": None}[kind]
    if kind == "fifo":  # not a link, and no script either
        os.mkfifo(link, 0o600)
    else:
        if kind != "dangling":
            target.write_text(GOOD_SCRIPT)
        link.symlink_to(target)
    if kind == "to-a-stored-script":
        assert check(site, 0) == []
        return
    [line] = check(site, 78)
    assert line.startswith(f"{link}: ") and "no script run" in line, line
    assert f"lda sieve activate {ALICE} NAME" in line, line
    done = site.run("config", "check", "--json")
    report = json.loads(done.stdout)
    assert done.returncode == report["exit_code"] == 78
    assert [p["file"] for p in report["problems"]] == [str(link)]


def test_a_missing_sieve_before_script(site, tmp_path):
    missing = tmp_path / "before.sieve"
    set_keys(site, sieve_before=[str(missing)])
    [line] = check(site, 78)
    assert line.startswith(f"{missing}: sieve_before names it and it does not exist")


def test_a_sieve_before_script_that_does_not_compile(site, tmp_path):
    before = tmp_path / "before.d"
    before.mkdir()
    (before / "10-spam.sieve").write_text(BAD_SCRIPT)
    (before / "20-ok.sieve").write_text(GOOD_SCRIPT)
    set_keys(site, sieve_before=str(before))
    [line] = check(site, 78)
    assert line.startswith(f"{before}/10-spam.sieve:4:1: ")


def test_a_per_user_dovecot_sieve_that_does_not_compile(user):
    (user.home / ".dovecot.sieve").write_text(BAD_SCRIPT)
    [line] = check(user, 78)
    assert line.startswith(f"{user.home}/.dovecot.sieve:4:1: ")


def test_a_per_user_lda_sieve_a_delivery_passes_over(user):
    """~/.lda.sieve that is a FIFO: a delivery logs it and runs no script,
    and the check says so under that path (not ~/.dovecot.sieve's)."""
    os.mkfifo(user.home / ".lda.sieve")
    [line] = check(user, 78)
    assert line == (f"{user.home}/.lda.sieve: is a FIFO: not read, no script run; "
                    "make it a Sieve script, or remove it")


# --- check: state ------------------------------------------------------------------


def test_a_damaged_directory(site):
    site.create(ALICE)
    directory = site.state / "directory.sqlite"
    for stale in ("-wal", "-shm"):
        directory.with_name(directory.name + stale).unlink(missing_ok=True)
    directory.write_bytes(b"garbage" * 1000)
    [line] = check(site, 78)
    assert line.startswith(f"{directory}: ") and ".recover" in line


def test_a_damaged_database(site):
    site.create(ALICE)
    site.deliver(message(), ALICE, check=0)
    damage_pages(site.db(), ALICE)
    line = one(check(site, 78), str(site.db()))
    assert line.startswith(f"{site.db()}: integrity check failed")


@pytest.mark.parametrize("what", ["missing", "no-new"])
def test_a_maildir_missing_or_without_new(site, what):
    maildir = site.create(ALICE)
    shutil.rmtree(maildir if what == "missing" else maildir / "new")
    [line] = check(site, 78)
    assert line.startswith(f"{maildir}: the Maildir of {ALICE} "
                           + ("is missing" if what == "missing" else "has no new/"))


def test_a_world_writable_state_dir(site):
    site.create(ALICE)
    site.state.chmod(0o777)
    [line] = check(site, 78)
    assert line.startswith(f"{site.state}: writable by group and others (mode 0777)")
    assert f"`chmod go-w {site.state}`" in line


def test_a_group_writable_database_directory(site):
    site.create(ALICE)
    root = site.state / "databases" / "default"
    root.chmod(0o770)
    [line] = check(site, 78)
    assert line.startswith(f"{root}: writable by group (mode 0770)")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_database_owned_by_another_user_than_state_dir(site):
    site.create(ALICE)
    site.deliver(message(), ALICE, check=0)
    nobody = pwd.getpwnam("nobody")
    os.chown(site.db(), nobody.pw_uid, -1)
    [line] = check(site, 78)
    assert line.startswith(f"{site.db()}: owned by nobody, not by root, the owner of "
                           "state_dir") and f"`chown -R root {site.db()}`" in line


# --- check: output ------------------------------------------------------------------


def test_check_json_lists_each_problem_with_its_repair(site):
    script = site.create(ALICE) / "lda.sieve"
    script.write_text(BAD_SCRIPT)
    site.state.chmod(0o757)
    done = site.run("config", "check", "--json")
    assert done.returncode == 78
    report = json.loads(done.stdout)
    assert (report["config"], report["mailboxes"], report["scripts"]) == (
        str(site.config), 1, 1)
    assert [p["file"] for p in report["problems"]] == [str(site.state), f"{script}:4:1"]
    assert all(p["repair"] for p in report["problems"]) and report["exit_code"] == 78


def test_check_on_a_terminal_shows_progress(site):
    """As `lda db check`: a progress bar, only on a terminal (script(1) gives one)."""
    if shutil.which("script") is None:
        pytest.skip("script(1) is not installed")
    for n in range(3):
        site.create(f"user{n}@example.org")
    env = dict(site.env, PATH=os.path.dirname(shutil.which("lda") or "") + ":"
               + os.environ.get("PATH", ""))
    import subprocess

    done = subprocess.run(["script", "-qec", "lda config check", "/dev/null"], env=env,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout
    assert b"compiling Sieve scripts" in done.stdout and b"no problem(s)" in done.stdout


def test_lda_dash_c_file_config_is_an_admin_command_not_a_delivery(site, tmp_path):
    """main.py must know `config` as an admin command: `lda -c FILE config
    show` with nothing on stdin is not a delivery."""
    other = tmp_path / "other.toml"
    other.write_text(f'state_dir = "{tmp_path / "other"}"\n')
    done = site.run("-c", str(other), "config", "show", "--changed", check=0)
    assert done.stdout.decode().splitlines()[1:] == [
        f'state_dir = "{tmp_path / "other"}"  # lda.toml']


def test_a_database_only_busy_for_now_exits_75(site):
    """A database another process holds locked is unreadable for now, not
    damaged: 75, so a timer retries; nothing else is wrong."""
    import sqlite3
    from contextlib import closing

    site.create(ALICE)
    site.deliver(message(), ALICE, check=0)
    with closing(sqlite3.connect(site.db(), isolation_level=None)) as holder:
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        [line] = check(site, 75)
    assert line.startswith(f"{site.db()}: ") and "run the check again later" in line

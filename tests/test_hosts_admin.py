"""Admin commands on a site of two hosts sharing a PostgreSQL directory
(tests/postgres.py), each host with its own state_dir and mirror: a
mailbox is created on the host that holds its database, and a database
registered from another host gets its directory there, not here."""

import json

import pytest
from conftest import maildir_files, message
from postgres import postgres, postgres_cluster  # noqa: F401 (fixtures)

REFUSED = 64


@pytest.fixture
def two_sites(make_site, postgres):  # noqa: F811
    """Sites a and b (host_name a and b) on one PostgreSQL directory; both
    hosts registered, and database dbb on b registered from host a with a
    path under b's root (its parent, a disk of b's, is not there on a)."""
    _, dsn = postgres
    a, b = (make_site(host_name=name, directory=dsn) for name in ("a", "b"))
    a.run("host", "add", "a", "--transport", "lmtp:inet:127.0.0.1:2401", check=0)
    a.run("host", "add", "b", "--transport", "lmtp:inet:127.0.0.1:2402", check=0)
    a.run("db", "create", "dbb", "--host", "b", "--path", str(b.root / "disk" / "dbb"),
          check=0)
    return a, b


def mailboxes(site):
    return json.loads(site.run("mailbox", "list", "--json", check=0).stdout)


def test_a_database_of_another_host_gets_no_directory_here(two_sites):
    a, b = two_sites
    assert not (b.root / "disk").exists()
    shown = json.loads(b.run("db", "show", "dbb", "--json", check=0).stdout)
    assert (shown["host"], shown["path"], shown["disk_bytes"]) == (
        "b", str(b.root / "disk" / "dbb"), None)
    # The host that holds it makes it with its first mailbox, and delivers.
    b.run("mailbox", "create", "bob@example.org", "--db", "dbb", check=0)
    assert (b.root / "disk" / "dbb").stat().st_mode & 0o777 == 0o700
    b.deliver(message(), "bob@example.org", check=0)
    assert len(maildir_files(b.root / "disk" / "dbb" / "example.org" / "bob")) == 1


@pytest.mark.parametrize("host_name", ["a", ""], ids=["other-host", "no-host-name"])
def test_a_mailbox_in_a_database_of_another_host_is_refused(two_sites, host_name):
    a, _ = two_sites
    if not host_name:
        a.write_config({**_settings(a), "host_name": ""})
    done = a.run("mailbox", "create", "bob@example.org", "--db", "dbb", check=REFUSED)
    assert done.stderr.decode().strip().splitlines()[-1].endswith(
        "database dbb is on host b: create the mailbox there")
    assert len(done.stderr.decode().strip().splitlines()) == 1
    assert mailboxes(a) == []
    assert not (a.root / "disk").exists() and not list(a.root.glob("**/bob"))


def _settings(site):
    import tomllib

    return tomllib.loads(site.config.read_text())


def test_commands_on_a_hosts_files_leave_another_hosts_databases_to_it(two_sites):
    """db check, dedup and partial open databases' files: on host a, the
    files of b's database are not there (b's disk is moved away while a
    runs, as a's view of it), so a checks, cleans and retries only its own
    databases, and refuses to be pointed at b's."""
    a, b = two_sites
    b.run("mailbox", "create", "bob@example.org", "--db", "dbb", check=0)
    a.run("mailbox", "create", "al@example.org", check=0)
    b.deliver(message(message_id="<one@x>"), "bob@example.org", check=0)
    a.deliver(message(message_id="<one@x>"), "al@example.org", check=0)
    disk, away = b.root / "disk", b.root / "disk-away"
    disk.rename(away)
    try:
        checked = json.loads(a.run("db", "check", "--json", check=0).stdout)
        assert (checked["databases"], checked["mailboxes"], checked["problems"],
                checked["elsewhere"]) == (1, 1, [], ["dbb"])
        text = a.run("db", "check", check=0).stdout.decode()
        assert "not checked here, held by other hosts: dbb" in text
        assert not json.loads(a.run("config", "check", "--json", check=None).stdout
                              )["problems"]
        found = json.loads(a.run("dedup", "lookup", "--message-id", "<one@x>", "--json",
                                 check=0).stdout)
        assert [row["database"] for row in found] == ["default"]
        for args in (("db", "check", "dbb"),
                     ("dedup", "lookup", "--message-id", "<one@x>",
                      "--mailbox", "bob@example.org"),
                     ("dedup", "forget", "--message-id", "<one@x>",
                      "--mailbox", "bob@example.org"),
                     ("dedup", "cleanup", "--db", "dbb"),
                     ("partial", "list", "--db", "dbb")):
            done = a.run(*args, check=REFUSED)
            assert done.stderr.decode().strip().endswith(
                "database dbb is on host b: run this on that host"), args
        cleaned = a.run("dedup", "cleanup", "--json", check=0)
        assert json.loads(cleaned.stdout)["databases"] == 1
        a.run("partial", "retry", check=0)
        assert not disk.exists()
    finally:
        away.rename(disk)
    # b, the holder, still finds its row: nothing of a's touched it.
    found = json.loads(b.run("dedup", "lookup", "--message-id", "<one@x>", "--mailbox",
                             "bob@example.org", "--json", check=0).stdout)
    assert [row["database"] for row in found] == ["dbb"]


def test_an_alias_keeps_its_rows_in_a_database_of_this_host(two_sites):
    """A forward of an alias keeps its DeliveredTo row in the alias's home
    database: 'default', else the first by name, of this host's.  dbb, b's,
    comes first by name; a used to create b's path on its own disk for it."""
    a, b = two_sites
    a.run("db", "create", "dbc", "--host", "a", "--path", str(a.root / "disk" / "dbc"),
          check=0)
    a.run("mailbox", "create", "al@example.org", "--db", "dbc", check=0)
    a.aliases.write_text("team: al@example.org, ext@elsewhere.org\n")
    a.deliver(message(message_id="<alias@x>"), "team@example.org", check=0)
    assert not (b.root / "disk").exists()
    found = json.loads(a.run("dedup", "lookup", "--message-id", "<alias@x>", "--json",
                             check=0).stdout)
    assert sorted((row["database"], row["mailbox"]) for row in found) == [
        ("dbc", "al@example.org"), ("dbc", "forward:ext@elsewhere.org")], found
    # The resend is recognised for both, the forward included.
    done = a.deliver(message(message_id="<alias@x>"), "team@example.org", check=0)
    assert done.stderr.decode().count("duplicate") == 2, done.stderr
    assert len(a.sent()) == 1

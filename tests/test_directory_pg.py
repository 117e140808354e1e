"""The directory in PostgreSQL (directory = "postgresql://..."), the
migration from SQLite, and each host's mirror, directory.sqlite: a real
private PostgreSQL (tests/postgres.py) and the installed `lda` command."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import time

import pytest
from conftest import LDA, maildir_files, message, wait_until
from postgres import own_postgres, postgres, postgres_cluster  # noqa: F401 (fixtures)
from test_deliver import NOT_ON_THE_DELIVERY_PATH, modules_after_delivery

PASSWORD = "s3cret-Pw"


def with_password(dsn):
    """The same DSN with a password (trust authentication ignores it): it
    must never be printed, logged or stored in the mirror."""
    return dsn.replace("postgresql://lda@", f"postgresql://lda:{PASSWORD}@")


def mirror_rows(site, sql):
    conn = sqlite3.connect(site.state / "directory.sqlite")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def dbname(dsn):
    return dsn.split("/")[3].split("?")[0]


def out(done):
    return (done.stdout + done.stderr).decode()


@pytest.fixture
def pg_site(make_site, postgres):
    cluster, dsn = postgres
    site = make_site(directory=with_password(dsn))
    site.cluster, site.dsn = cluster, dsn
    return site


def test_admin_commands_write_postgresql_and_the_mirror_follows_at_once(pg_site):
    site, cluster = pg_site, pg_site.cluster
    created = site.run("mailbox", "create", "alice@example.org", "--quota-storage", "5M",
                       check=0)
    site.run("db", "create", "db2", check=0)
    site.run("mailbox", "create", "bob@example.org", "--db", "db2", "--forward",
             "carol@example.net", check=0)
    assert cluster.psql("SELECT address, database, quota_storage FROM mailboxes ORDER BY 1",
                        dbname(site.dsn)).split() == [
        "alice@example.org|default|5242880", "bob@example.org|db2|"]
    # Delivered at once on this host: the command updated the mirror itself.
    site.deliver(message(), "bob@example.org", check=0)
    assert len(maildir_files(site.maildir("bob@example.org"))) == 1
    assert len(site.sent()) == 1
    shown = json.loads(site.run("mailbox", "show", "alice@example.org", "--json",
                                check=0).stdout)
    assert shown["quota_storage"] == 5242880
    listed = json.loads(site.run("mailbox", "list", "--json", check=0).stdout)
    assert [r["address"] for r in listed] == ["alice@example.org", "bob@example.org"]
    dbs = json.loads(site.run("db", "list", "--json", check=0).stdout)
    assert {d["name"]: d["mailboxes"] for d in dbs} == {"db2": 1, "default": 1}
    assert len(dbs) == int(cluster.psql("SELECT count(*) FROM databases", dbname(site.dsn)))
    site.run("mailbox", "set-quota", "alice@example.org", "--messages", "7", check=0)
    assert mirror_rows(site, "SELECT quota_messages FROM mailboxes WHERE address = "
                             "'alice@example.org'") == [(7,)]
    quota = site.run("quota", "show", "alice@example.org", "--json", check=0)
    assert json.loads(quota.stdout)["messages_limit"] == 7
    # A move switches the entry in one PostgreSQL transaction.
    site.run("mailbox", "move", "alice@example.org", "--to", "db2", check=0)
    assert mirror_rows(site, "SELECT database FROM mailboxes WHERE address = "
                             "'alice@example.org'") == [("db2",)]
    assert mirror_rows(site, "SELECT count(*) FROM moves") == [(0,)]
    site.run("mailbox", "delete", "alice@example.org", check=0)
    site.deliver(message("<m2@example.org>"), "alice@example.org", check=67)
    [(source, version, synced)] = mirror_rows(site, "SELECT * FROM mirror")
    assert source == site.dsn and version >= 5 and time.time() - synced < 60
    status = json.loads(site.run("directory", "status", "--json", check=0).stdout)
    assert status["version"] == status["directory_version"] == version
    for done in (created, site.run("directory", "status"), site.run("directory", "sync")):
        assert PASSWORD not in out(done)


@pytest.mark.parametrize("address", ["../x@example.org", "a\r\nb@example.org",
                                     "x" * 300 + "@example.org"],
                         ids=["dotdot", "crlf", "long"])
def test_hostile_addresses_are_refused_on_postgresql_too(pg_site, address):
    done = pg_site.run("mailbox", "create", address)
    assert done.returncode == 64, out(done)
    # Refused at the argument, the directory's tables may not exist yet.
    tables = pg_site.cluster.psql("SELECT count(*) FROM information_schema.tables "
                                  "WHERE table_name = 'mailboxes'", dbname(pg_site.dsn))
    if tables.strip() != "0":
        assert pg_site.cluster.psql("SELECT count(*) FROM mailboxes",
                                    dbname(pg_site.dsn)).strip() == "0"


def test_a_slash_in_an_address_never_becomes_a_path_on_postgresql(pg_site):
    # RFC 5322 allows it in a local part; the Maildir's name escapes it.
    done = pg_site.run("mailbox", "create", "a/b@example.org", "--json", check=0)
    assert json.loads(done.stdout)[0]["maildir"] == "example.org/a%2Fb"
    assert pg_site.cluster.psql("SELECT maildir FROM mailboxes",
                                dbname(pg_site.dsn)).split() == ["example.org/a%2Fb"]


def test_migrate_then_deliver_from_the_mirror(make_site, postgres):
    cluster, dsn = postgres
    site = make_site()
    alice = site.create("alice@example.org", "--quota-storage", "10M")
    site.run("db", "create", "db2", check=0)
    bob = site.create("bob@example.org", "--db", "db2", "--forward", "carol@example.net",
                      "--quota-messages", "50")
    site.deliver(message("<before@example.org>"), "alice@example.org", check=0)
    with sqlite3.connect(site.state / "directory.sqlite") as conn:
        conn.execute("INSERT INTO moves (address, source_db, target_db, step) VALUES "
                     "('alice@example.org', 'default', 'db2', 'maildir')")
    moving = site.run("directory", "migrate", "--to", dsn)
    assert moving.returncode == 75 and b"unfinished" in moving.stderr
    with sqlite3.connect(site.state / "directory.sqlite") as conn:
        conn.execute("DELETE FROM moves")

    done = site.run("directory", "migrate", "--to", with_password(dsn), "--json", check=0)
    summary = json.loads(done.stdout)
    assert (summary["databases"], summary["mailboxes"], summary["hosts"]) == (2, 2, 0)
    assert PASSWORD not in out(done) and "directory =" in summary["next"]
    again = site.run("directory", "migrate", "--to", dsn)
    assert again.returncode == 73 and b"not empty" in again.stderr

    site.write_config({"state_dir": str(site.state), "aliases": str(site.aliases),
                       "sendmail": [str(site.root / "sendmail"), "-i"], "log": "stderr",
                       "directory": dsn})
    site.run("directory", "sync", check=0)
    again = site.run("directory", "migrate", "--to", dsn)
    assert again.returncode == 73 and b"already" in again.stderr
    # The resend of a message delivered before the migration is discarded:
    # DeliveredTo stayed in the database's lda.sqlite.
    site.deliver(message("<before@example.org>"), "alice@example.org", check=0)
    assert len(maildir_files(alice)) == 1
    site.deliver(message("<after@example.org>"), "bob@example.org", check=0)
    assert len(maildir_files(bob)) == 1 and "db2" in str(bob)
    assert len(site.sent()) == 1  # bob's forward, carried over
    assert mirror_rows(site, "SELECT quota_storage, quota_messages FROM mailboxes "
                             "ORDER BY address") == [(10485760, None), (None, 50)]


def test_bad_urls_are_one_line_and_never_show_the_password(make_site, postgres):
    cluster, dsn = postgres
    site = make_site()
    site.create("alice@example.org")
    # One host: directory.sqlite is the directory itself, nothing to mirror.
    for command in ("sync", "status"):
        done = json.loads(site.run("directory", command, "--json", check=0).stdout)
        assert done["shared"] is False
    unreachable = f"postgresql://lda:{PASSWORD}@/x?host=/nonexistent&port=5432"
    done = site.run("directory", "migrate", "--to", unreachable)
    assert done.returncode == 75 and PASSWORD not in out(done)
    assert len(done.stderr.splitlines()) == 1
    malformed = site.run("directory", "migrate", "--to",
                         f"postgresql://lda:{PASSWORD}@host:99999/x")
    assert malformed.returncode == 78 and PASSWORD not in out(malformed)
    # libpq reads option values only when it connects: a bad one is still
    # the URL's fault, not the server's.
    for option in ("sslmode=bogus", "gssencmode=never", "target_session_attrs=any-old"):
        bad = site.run("directory", "migrate", "--to",
                       f"postgresql://lda:{PASSWORD}@/x?host={cluster.socket_dir}&{option}")
        assert bad.returncode == 78, (option, out(bad))
        assert PASSWORD not in out(bad) and len(bad.stderr.splitlines()) == 1
    forged = site.run("directory", "migrate", "--to", f"postgresql://lda:{PASSWORD}@/x\r\n"
                                                      "lda: forged line")
    assert forged.returncode == 78 and len(forged.stderr.splitlines()) == 1
    assert PASSWORD not in out(forged) and b"forged" not in forged.stderr
    site.write_config({"state_dir": str(site.state), "directory": unreachable})
    for args in (["mailbox", "list"], ["directory", "sync"], ["mailbox", "create",
                                                                 "bob@example.org"]):
        done = site.run(*args)
        assert done.returncode == 75, out(done)
        assert PASSWORD not in out(done) and len(done.stderr.splitlines()) == 1
    site.write_config({"state_dir": str(site.state), "directory": "mysql://x"})
    assert site.run("mailbox", "list").returncode == 78


def fresh(site):
    """Whether the mirror heard from PostgreSQL within the last half second."""
    return mirror_rows(site, "SELECT synced FROM mirror")[0][0] > time.time() - 0.5


def follower(site):
    return subprocess.Popen([LDA, "directory", "sync", "--follow"], env=site.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_the_follower_copies_each_change_and_stops_on_sigterm(pg_site):
    site, name = pg_site, dbname(pg_site.dsn)
    site.create("alice@example.org")
    proc = follower(site)
    try:
        wait_until(lambda: fresh(site), 10, "the follower's first pass")
        # A change made without lda (another host's admin): only the
        # follower can bring it here.
        lags = []
        for n in range(5):
            start = time.monotonic()
            site.cluster.psql(f"INSERT INTO mailboxes (address, database, maildir) VALUES "
                              f"('u{n}@example.org', 'default', 'example.org/u{n}')", name)
            wait_until(lambda: mirror_rows(site, f"SELECT 1 FROM mailboxes WHERE address"
                                                 f" = 'u{n}@example.org'"), 5,
                       f"u{n} in the mirror")
            lags.append(time.monotonic() - start)
        # The heartbeat refreshes `synced` with no change at all.
        before = mirror_rows(site, "SELECT synced FROM mirror")[0][0]
        wait_until(lambda: mirror_rows(site, "SELECT synced FROM mirror")[0][0] > before,
                   5, "a heartbeat")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert PASSWORD not in stderr.decode() and b"stopped" in stderr
    assert max(lags) < 2.0, lags


def test_postgresql_down_leaves_the_mirror_and_known_mailboxes_deliver(make_site,
                                                                      own_postgres):
    cluster = own_postgres
    site_dsn = cluster.dsn(cluster.create_database())
    site = make_site(directory=site_dsn)
    alice = site.create("alice@example.org")
    proc = follower(site)
    try:
        wait_until(lambda: fresh(site), 10, "the follower's first pass")
        cluster.stop()
        mirror = site.state / "directory.sqlite"
        rows = mirror_rows(site, "SELECT * FROM mailboxes UNION ALL SELECT source, version, "
                                 "synced, 0, 0, 0, 0, 0 FROM mirror")
        done = site.run("directory", "sync")
        assert done.returncode == 75 and len(done.stderr.splitlines()) == 1, out(done)
        assert mirror_rows(site, "SELECT * FROM mailboxes UNION ALL SELECT source, version, "
                                 "synced, 0, 0, 0, 0, 0 FROM mirror") == rows
        status = json.loads(site.run("directory", "status", "--json", check=0).stdout)
        assert status["directory_version"] is None and "cannot reach" in status["error"]
        site.deliver(message(), "alice@example.org", check=0)
        assert len(maildir_files(alice)) == 1
        assert site.run("mailbox", "create", "bob@example.org").returncode == 75
        # What only reads reads the mirror meanwhile, and says so in one line.
        for args in (("mailbox", "list"), ("mailbox", "show", "alice@example.org"),
                     ("quota", "show", "alice@example.org"), ("host", "list"),
                     ("dedup", "lookup", "--message-id", "<m1@example.org>")):
            done = site.run(*args, "--json", check=0)
            warning, = done.stderr.decode().splitlines()
            assert "cannot reach PostgreSQL" in warning, args
            assert re.search(r"this host's mirror read instead, synced \d+ s ago$",
                             warning), warning
        listed = json.loads(site.run("mailbox", "list", "--json", check=0).stdout)
        assert [m["address"] for m in listed] == ["alice@example.org"]
        assert site.run("dedup", "cleanup").returncode == 75  # it writes: no fallback
        assert mirror.exists() and proc.poll() is None  # the follower waits it out
        cluster.start()
        site.run("mailbox", "create", "bob@example.org", check=0)
        assert mirror_rows(site, "SELECT count(*) FROM mailboxes") == [(2,)]
        # Another host's change: only the follower, reconnected, brings it.
        cluster.psql("DELETE FROM mailboxes WHERE address = 'bob@example.org'",
                     dbname(site_dsn))
        wait_until(lambda: mirror_rows(site, "SELECT count(*) FROM mailboxes") == [(1,)],
                   15, "the follower back after PostgreSQL's restart")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0 and b"retrying" in stderr, stderr


def test_a_delivery_never_imports_psycopg(pg_site):
    pg_site.create("alice@example.org")
    rc, loaded, stderr = modules_after_delivery(pg_site.env, "alice@example.org")
    assert rc == 0, stderr
    assert sorted(m for m in loaded if m.startswith(("psycopg", "lda.admin"))) == []
    assert sorted(loaded.intersection(NOT_ON_THE_DELIVERY_PATH)) == []
    assert os.path.exists(pg_site.state / "directory.sqlite")


def test_sieve_commands_work_on_postgresql(pg_site, tmp_path):
    """lda sieve asks the directory whether a move is under way; on
    PostgreSQL that question once ended in a traceback."""
    site = pg_site
    site.run("mailbox", "create", "alice@example.org", check=0)
    script = tmp_path / "work.sieve"
    script.write_text('require ["fileinto", "mailbox"];\nif header :contains "subject" "work" '
                      '{ fileinto :create "Work"; }\n')
    installed = site.run("sieve", "install", "alice@example.org", str(script))
    assert installed.returncode == 0 and b"Traceback" not in installed.stderr, out(installed)
    listed = site.run("sieve", "list", "alice@example.org", check=0)
    assert b"work" in listed.stdout
    site.deliver(message(subject="work to do"), "alice@example.org", check=0)
    assert len(maildir_files(site.maildir("alice@example.org") / ".Work")) == 1


def test_every_admin_command_runs_on_postgresql(pg_site):
    """Each admin command test_admin_damaged.py knows, in turn, on a site
    whose directory is PostgreSQL: a result or one line, never a traceback
    (lda sieve once asked the PostgreSQL table for a method it lacked) and
    never the URL's password."""
    from test_admin_damaged import ARGS, COMMANDS

    site = pg_site
    root = site.root
    (root / "script.sieve").write_text('require "fileinto";\nfileinto "x";\n')
    (root / "procmailrc").write_text("MAILDIR=$HOME/Maildir\n:0\n* ^Subject: x\n.x/\n")
    site.run("mailbox", "create", "alice@example.org", check=0)
    site.run("db", "create", "db2", check=0)
    site.run("host", "add", "c", "--transport", "lmtp:inet:127.0.0.1:24", check=0)
    site.deliver(message(), "alice@example.org", check=0)
    failures = {}
    for name in COMMANDS:
        args = [a.format(root=root) for a in ARGS.get(name, [])]
        done = site.run(*name.split(), *args, input=message(), timeout=60)
        text = out(done)
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        if ("Traceback" in text or done.returncode == 1 or PASSWORD in text
                or (done.returncode and len(lines) != 1)):
            failures[name] = (done.returncode, text[-500:])
    assert failures == {}

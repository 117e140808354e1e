"""Several delivery hosts sharing one directory (README, "Scaling out"):
`lda host` and `lda db create --host`, each host delivering only to its own
databases (451 4.3.0 over LMTP, exit 75 from `lda deliver`, said by `lda
explain`), an unknown recipient deferred while the directory mirror is
stale, and the socketmap's transport map answering each mailbox's host.
All through the installed `lda` command and real sockets; the routing by a
real Postfix is in test_hosts_postfix.py."""

import json
import re
import sqlite3
import time
from contextlib import closing

import pytest
from conftest import maildir_files, message
from lmtp_session import Server
from statuscodes import S250_DELIVERED, S250_RCPT, S451_INTERNAL, S550_UNKNOWN
from test_services import ask, lookup, services  # noqa: F401 - services: the fixture

from lda.admin.hosts import validate_host_name, validate_transport
from lda.errors import UsageError

TRANSPORT_A = "lmtp:inet:10.0.0.1:24"
TRANSPORT_B = "lmtp:inet:10.0.0.2:24"
# A DSN nothing listens on: only the mirror rule reads this key here.
POSTGRES = "postgresql:///lda?host=/nonexistent"
S451_ELSEWHERE = "451 4.3.0"  # S451_INTERNAL's code, another reason


def directory(site, sql, *args):
    """Run sql on the site's directory.sqlite, as a follower (or a hand
    edit) would write it."""
    with closing(sqlite3.connect(site.state / "directory.sqlite")) as conn, conn:
        return conn.execute(sql, args).fetchall()


def listing(site, *args):
    return json.loads(site.run(*args, "--json", check=0).stdout)


def as_host(site, name):
    """The environment that runs lda as host name sees this site: a copy of
    its lda.toml that says host_name = name."""
    config = site.root / f"lda-{name}.toml"
    config.write_text("".join(f'host_name = "{name}"\n' if line.startswith("host_name ")
                              else line + "\n" for line in site.config.read_text().splitlines()))
    return {"LDA_CONFIG": str(config)}


@pytest.fixture
def hosts(make_site):
    """hosts(**settings): a site whose lda.toml says host_name = "a" (unless
    settings say otherwise), hosts a and b, alice in database dba on a, bob
    in dbb on b, carol in default (no host), and the alias team (alice and
    carol)."""
    def make(**settings):
        site = make_site(**{"host_name": "a", **settings})
        site.run("host", "add", "a", "--transport", TRANSPORT_A, check=0)
        site.run("host", "add", "b", "--transport", TRANSPORT_B, check=0)
        site.run("db", "create", "dba", "--host", "a", check=0)
        site.run("db", "create", "dbb", "--host", "b", check=0)
        # Each mailbox is created on the host that holds its database.
        site.run("mailbox", "create", "alice@example.org", "--db", "dba",
                 env=as_host(site, "a"), check=0)
        site.run("mailbox", "create", "bob@example.org", "--db", "dbb",
                 env=as_host(site, "b"), check=0)
        site.create("carol@example.org")
        site.aliases.write_text("team@example.org: alice@example.org, carol@example.org\n")
        return site
    return make


@pytest.fixture
def lmtp_server():
    started = []

    def start(site):
        started.append(Server(site))
        return started[-1]

    yield start
    for server in started:
        code, err = server.stop()
        assert code == 0, err


# --- lda host and lda db create --host --------------------------------------

def test_hosts_are_added_listed_and_removed(hosts):
    site = hosts()
    assert [(h["name"], h["transport"], h["databases"]) for h in listing(site, "host", "list")] \
        == [("a", TRANSPORT_A, ["dba"]), ("b", TRANSPORT_B, ["dbb"])]
    text = site.run("host", "list", check=0).stdout.decode()
    assert "lmtp:inet:10.0.0.2:24  dbb" in text
    databases = {d["name"]: d["host"] for d in listing(site, "db", "list")}
    assert databases == {"dba": "a", "dbb": "b", "default": None}
    site.run("host", "add", "c", "--transport", "smtp:[10.0.0.3]:25", check=0)
    assert site.run("host", "add", "c", "--transport", TRANSPORT_A).returncode == 73
    removed = json.loads(site.run("host", "remove", "c", "--json", check=0).stdout)
    assert removed["name"] == "c"
    assert site.run("host", "remove", "c").returncode == 67


def test_a_host_that_holds_a_database_is_not_removed(hosts):
    site = hosts()
    done = site.run("host", "remove", "b", check=64)
    assert b"host 'b' still holds mailbox database(s) dbb; nothing removed" in done.stderr
    assert [h["name"] for h in listing(site, "host", "list")] == ["a", "b"]


def test_a_database_on_an_unknown_host_is_not_created(hosts):
    site = hosts()
    done = site.run("db", "create", "dbz", "--host", "zz", check=67)
    assert b"no host named 'zz'" in done.stderr
    assert "dbz" not in {d["name"] for d in listing(site, "db", "list")}
    assert not (site.state / "databases" / "dbz").exists()


HOSTILE_NAMES = ["../etc", "a/b", "a b", "a\nb", "a\rb", "-a", "a.", ".a", "a..b", "",
                 "x" * 254, "ä"]


def test_hostile_host_names_are_refused_and_nothing_changes(hosts):
    """Every name at both entry points, on one site (a site per name cost
    40 s of CI): each refused in one line, and nothing changed after all."""
    site = hosts()
    before = listing(site, "host", "list"), listing(site, "db", "list")
    for name in HOSTILE_NAMES:
        done = site.run("host", "add", "--transport", TRANSPORT_A, "--", name)
        assert done.returncode == 64, (name, done.stderr)
        # lda's own check, or the argument's (cli.output.Name) for bytes no
        # name may hold: one line either way.
        assert done.stderr.startswith((b"lda: invalid host name", b"lda: Invalid value")) \
            and b"host name" in done.stderr, (name, done.stderr)
        assert done.stderr.count(b"\n") == 1, (name, done.stderr)
        done = site.run("db", "create", "dbz", f"--host={name}")
        assert done.returncode == 64, (name, done.stderr)
        assert done.stderr.startswith((b"lda: invalid host name", b"lda: Invalid value")) \
            and b"host name" in done.stderr, (name, done.stderr)
    assert (listing(site, "host", "list"), listing(site, "db", "list")) == before
    assert not (site.state / "databases" / "dbz").exists()


HOSTILE_TRANSPORTS = [
    "lmtp inet:10.0.0.1:24", "lmtp:inet:10.0.0.1:24\nx", "lmtp:inet:10.0.0.1:24\r",
    "lmtp:inet:10.0.0.1: 24", "lmtp", "lmtp:", ":inet:10.0.0.1:24", "lmtp/x:y",
    "lmtp:" + "x" * 260, "lmtp:ä", ""]


def test_hostile_transports_are_refused_and_nothing_changes(hosts):
    site = hosts()
    before = listing(site, "host", "list")
    for transport in HOSTILE_TRANSPORTS:
        done = site.run("host", "add", "c", "--transport", transport)
        assert done.returncode == 64, (transport, done.stderr)
        assert done.stderr.startswith(b"lda: invalid transport"), (transport, done.stderr)
    assert listing(site, "host", "list") == before


def test_a_nul_cannot_pass_either():
    """A NUL cannot be in an argv; the library refuses it all the same."""
    for call, value in [(validate_host_name, "a\x00b"),
                        (validate_transport, "lmtp:inet:a\x00:24")]:
        with pytest.raises(UsageError):
            call(value)
    assert validate_host_name("mail-2.example.org") == "mail-2.example.org"
    assert validate_transport("lmtp:unix:/run/lda/lmtp") == "lmtp:unix:/run/lda/lmtp"


# --- each host delivers only to its own databases ---------------------------

def test_deliver_defers_a_mailbox_of_another_host(hosts):
    site = hosts()
    done = site.deliver(message(), "bob@example.org", check=75)
    assert done.stderr.decode().splitlines()[0] == "4.3.0 mailbox bob@example.org is on host b"
    assert maildir_files(site.maildir("bob@example.org")) == []
    site.deliver(message(), "alice@example.org", check=0)
    site.deliver(message(), "carol@example.org", check=0)  # a database of no host
    site.deliver(message(message_id="<t@x>"), "team@example.org", check=0)
    assert len(maildir_files(site.maildir("alice@example.org"))) == 2


def test_the_other_host_delivers_it(hosts):
    site = hosts(host_name="b")
    site.deliver(message(), "bob@example.org", check=0)
    assert len(maildir_files(site.maildir("bob@example.org"))) == 1
    done = site.deliver(message(), "alice@example.org", check=75)
    assert b"4.3.0 mailbox alice@example.org is on host a" in done.stderr


def test_a_host_without_host_name_delivers_only_to_databases_of_no_host(hosts):
    site = hosts(host_name="")
    site.deliver(message(), "carol@example.org", check=0)
    done = site.deliver(message(), "alice@example.org", check=75)
    assert b"is on host a" in done.stderr


def test_a_member_elsewhere_is_resent_for_its_host(hosts):
    """The host that expands an alias or a forward delivers its own members
    and re-sends, through sendmail, one another host holds (erin, on b):
    that host delivers it and applies its forwards (erin's to dave), once."""
    site = hosts()
    site.run("mailbox", "create", "erin@example.org", "--db", "dbb", "--forward",
             "dave@example.net", env=as_host(site, "b"), check=0)
    site.create("frank@example.org", "--db", "dba", "--forward", "erin@example.org")
    site.aliases.write_text("team@example.org: alice@example.org, erin@example.org\n")
    site.deliver(message(), "team@example.org", "frank@example.org", check=0)
    assert len(maildir_files(site.maildir("alice@example.org"))) == 1
    assert len(maildir_files(site.maildir("frank@example.org"))) == 1
    assert maildir_files(site.maildir("erin@example.org")) == []
    assert [args[-1] for args, _ in site.sent()] == ["erin@example.org"] * 2
    site.deliver(message(), "team@example.org", "frank@example.org", check=0)  # a resend
    assert len(site.sent()) == 2
    done = site.deliver(message(), "erin@example.org", check=75)  # herself: b's
    assert b"4.3.0 mailbox erin@example.org is on host b" in done.stderr
    explained = site.run("explain", "team@example.org", check=0).stdout.decode()
    assert "=> would re-send with sendmail: host b holds the mailbox" in explained, explained
    assert "=> would deliver to maildir" in explained  # alice, here


def test_a_failed_resend_to_a_member_elsewhere_is_retried_as_a_resend(hosts):
    """sendmail down: frank's forward to erin (on b) is kept as a partial
    delivery, and `lda partial retry` re-sends it, never writes it here."""
    site = hosts()
    down = site.root / "sendmail-down"
    site.write_config({"state_dir": str(site.state), "aliases": str(site.aliases),
                       "host_name": "a", "log": "stderr", "sendmail": ["/bin/sh", "-c",
                       f'[ -e "{down}" ] && exit 75; exec "$0" "$@"',
                       str(site.root / "sendmail"), "-i"]})
    down.touch()
    site.run("mailbox", "create", "erin@example.org", "--db", "dbb",
             env=as_host(site, "b"), check=0)
    frank = site.create("frank@example.org", "--db", "dba", "--forward", "erin@example.org")
    site.deliver(message(), "frank@example.org", check=0)
    assert site.sent() == [] and len(maildir_files(frank)) == 1
    down.unlink()
    [report] = json.loads(site.run("partial", "retry", "--json", check=0).stdout)
    assert (report["target"], report["outcome"]) == ("erin@example.org", "delivered"), report
    assert [args[-1] for args, _ in site.sent()] == ["erin@example.org"]
    assert maildir_files(site.maildir("erin@example.org")) == []


def test_explain_says_which_host(hosts):
    site = hosts()
    done = site.run("explain", "bob@example.org", "--json", input=message(), check=0)
    explained = json.loads(done.stdout)
    assert explained["exit_code"] == 75
    assert (explained["recipients"][0]["reply"], explained["recipients"][0]["reason"]) == \
        ("451 4.3.0", "4.3.0 mailbox bob@example.org is on host b")
    text = site.run("explain", "bob@example.org", input=message(), check=0).stdout.decode()
    assert "lda deliver would exit 75: 451 4.3.0 mailbox bob@example.org is on host b" in text


def test_lmtp_defers_the_recipient_of_another_host_and_delivers_the_others(
        hosts, lmtp_server):
    site = hosts()
    client = lmtp_server(site).client()
    try:
        rcpt, data = client.send("s@example.org", ["alice@example.org", "bob@example.org",
                                                   "carol@example.org"], message())
    finally:
        client.close()
    assert rcpt["alice@example.org"].startswith(S250_RCPT)
    assert rcpt["bob@example.org"] == \
        f"{S451_ELSEWHERE} <bob@example.org>: mailbox bob@example.org is on host b"
    assert [reply[:9] for reply in data] == [S250_DELIVERED] * 2
    assert maildir_files(site.maildir("bob@example.org")) == []
    assert len(maildir_files(site.maildir("alice@example.org"))) == 1


def test_lmtp_defers_a_mailbox_whose_database_changed_host_after_rcpt(hosts, lmtp_server):
    site = hosts()
    client = lmtp_server(site).client()
    try:
        rcpt, data = client.send(
            "s@example.org", ["alice@example.org"], message(),
            before_data=lambda: directory(site, "UPDATE databases SET host = 'b' "
                                                "WHERE name = 'dba'"))
    finally:
        client.close()
    assert rcpt["alice@example.org"].startswith(S250_RCPT)
    assert data == [f"{S451_INTERNAL} <alice@example.org> "
                    "mailbox alice@example.org is on host b"]
    assert maildir_files(site.maildir("alice@example.org")) == []


def test_a_directory_from_before_hosts_still_delivers(make_site):
    """No databases.host column (a directory no admin command has migrated
    since the upgrade): every database is this host's."""
    site = make_site(host_name="a")
    site.create("alice@example.org")
    directory(site, "ALTER TABLE databases DROP COLUMN host")
    site.deliver(message(), "alice@example.org", check=0)
    assert len(maildir_files(site.maildir("alice@example.org"))) == 1


# --- the directory mirror ---------------------------------------------------

def mirrored(make_site, synced):
    """A site whose directory is PostgreSQL: directory.sqlite is the mirror,
    last synced `synced` seconds ago (None: never)."""
    site = make_site()
    site.create("alice@example.org")
    if synced is not None:
        directory(site, "INSERT INTO mirror VALUES (?, 1, ?)", POSTGRES, time.time() - synced)
    site.write_config({**site_settings(site), "directory": POSTGRES})
    return site


def site_settings(site):
    import tomllib

    return tomllib.loads(site.config.read_text())


@pytest.mark.parametrize("synced, code, reason", [
    (1, 67, "5.1.1 unknown recipient nobody@example.org"),
    (None, 75, "4.3.0 unknown recipient nobody@example.org: the directory mirror has "
               "never been synced"),
    (120, 75, "4.3.0 unknown recipient nobody@example.org: directory mirror is 120 s old"),
], ids=["fresh", "never-synced", "stale"])
def test_an_unknown_recipient_is_unknown_only_while_the_mirror_is_fresh(
        make_site, synced, code, reason):
    site = mirrored(make_site, synced)
    done = site.deliver(message(), "nobody@example.org", check=code)
    first = done.stderr.decode().splitlines()[0]
    # A loaded machine may take a second or two from the set age to the read.
    assert re.sub(r"is 12[0-9] s old$", "is 120 s old", first) == reason
    site.deliver(message(), "alice@example.org", check=0)  # known: delivered, stale or not
    assert len(maildir_files(site.maildir("alice@example.org"))) == 1


def test_the_mirror_rule_is_only_for_a_postgresql_directory(make_site):
    site = make_site()  # directory.sqlite is the directory itself: no mirror row
    site.create("alice@example.org")
    site.deliver(message(), "nobody@example.org", check=67)


def test_lmtp_defers_an_unknown_recipient_while_the_mirror_is_stale(make_site, lmtp_server):
    site = mirrored(make_site, 60)
    server = lmtp_server(site)
    client = server.client()
    try:
        rcpt, _ = client.send("s@example.org", ["nobody@example.org"], message())
        assert rcpt["nobody@example.org"].startswith(S451_INTERNAL)
        # 60 s when set, a second or more later on a loaded machine
        age = re.search(r"directory mirror is (\d+) s old", rcpt["nobody@example.org"])
        assert age and 60 <= int(age.group(1)) < 120, rcpt
        directory(site, "UPDATE mirror SET synced = ?", time.time())  # the follower is back
        rcpt, _ = client.send("s@example.org", ["nobody@example.org"], message())
        assert rcpt["nobody@example.org"].startswith(S550_UNKNOWN)
    finally:
        client.close()


# --- what the front asks: lda socketmap and lda policy ----------------------

def test_the_transport_map_answers_each_mailbox_its_host(hosts, services):  # noqa: F811
    site = hosts(host_name="a", lmtp_listen="127.0.0.1:2424")
    socketmap = services(site, "socketmap")
    assert lookup(socketmap,
                  "transport alice@example.org", "transport bob@example.org",
                  "transport BOB+tag@Example.org", "transport carol@example.org",
                  "transport team@example.org", "transport example.org",
                  "transport nobody@example.org", "mailbox bob@example.org") == [
        ("OK", TRANSPORT_A), ("OK", TRANSPORT_B), ("OK", TRANSPORT_B),
        ("OK", "lmtp:inet:127.0.0.1:2424"),  # a database of no host: as before
        ("OK", "lmtp:inet:127.0.0.1:2424"),  # an alias: whichever host receives it
        ("OK", "lmtp:inet:127.0.0.1:2424"), ("NOTFOUND", ""),
        ("OK", "bob@example.org")]  # on host b, and known here


def test_a_host_with_no_transport_row_is_a_temporary_answer(hosts, services):  # noqa: F811
    site = hosts(lmtp_listen="127.0.0.1:2424")
    directory(site, "PRAGMA foreign_keys = OFF")
    directory(site, "DELETE FROM hosts WHERE name = 'b'")  # a hand edit
    socketmap = services(site, "socketmap")
    [(status, reason)] = lookup(socketmap, "transport bob@example.org")
    assert (status, reason) == ("TEMP", "database dbb is on host b, which has no transport")


def test_policy_leaves_a_mailbox_of_another_host_to_that_host(hosts, services):  # noqa: F811
    site = hosts(policy_reject_unknown=True)
    policy = services(site, "policy")
    assert ask(policy, "bob@example.org", "nobody@example.org") == [
        "DUNNO", "550 5.1.1 Unknown user"]


def test_policy_never_permits_a_mailbox_it_did_not_judge(hosts, services):  # noqa: F811
    """With quota_status_success = "OK", an OK skips every restriction after
    check_policy_service: lda gives it only to a recipient whose quota it
    read.  bob's maildirsize is on host b, so a's answer is DUNNO, as for
    any request lda does not judge (Dovecot's quota-status answers so)."""
    site = hosts(quota_status_success="OK")
    policy = services(site, "policy")
    assert ask(policy, "bob@example.org", "alice@example.org") == ["DUNNO", "OK"]


@pytest.mark.parametrize("name", ["../x", "a/b", "a b", "a\r\nb", "-a", "a..b", "x" * 254, "é"])
def test_a_hostile_host_name_in_lda_toml_is_refused(make_site, name):
    """lda.toml's host_name follows lda host add's rule; a delivery and an
    admin command both stop at it (78, one line), before any work."""
    from lda.config import is_host_name

    with pytest.raises(UsageError):
        validate_host_name(name)
    assert not is_host_name(name)
    site = make_site(host_name=name)
    for done in (site.run("mailbox", "list"),
                 site.deliver(message(), "alice@example.org")):
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        assert done.returncode == 78 and len(lines) == 1 and "host_name" in lines[0], lines


@pytest.mark.parametrize("name", ["a", "host-b.example.org", "db_1", "A1"])
def test_the_host_name_rules_agree(name):
    from lda.config import is_host_name

    assert validate_host_name(name) == name and is_host_name(name)

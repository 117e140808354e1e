"""The compiled aliases table: `lda aliases compile` writes it, deliveries
look keys up in it while it matches its source files, and parse the source
(with one warning line) when it does not.  Either way a delivery must come
out the same."""

import json
import os
import re
import sqlite3
import subprocess
import sys

import pytest

from conftest import maildir_files, message
from lda.store.aliases import (AliasTable, Aliases, expand, load_aliases, open_aliases, table_path,
                         write_table)
from lda.errors import ConfigError

WARNING = "warning: aliases table "


def compile_table(path, state_dir):
    """The table as `lda aliases compile` writes it, without its checks, so
    files it would refuse (loops, deep chains) can be compared too."""
    write_table(load_aliases(str(path)), table_path(str(state_dir)))


def warnings(done):
    return [line for line in done.stderr.decode().splitlines() if WARNING in line]


# --- lookups, in process -------------------------------------------------------


def generated(tmp_path):
    """An alias file with every kind of key and member, and includes."""
    (tmp_path / "staff.list").write_text("# staff\nAlice, bob@Example.ORG\n\n:include:more\n")
    (tmp_path / "more").write_text("carol@example.net\n")
    lines = ['"quoted": alice', "postmaster: root", "root: alice, root",
             "Info: alice", "info@example.org: bob", "info@other.example: carol",
             "staff: :include:staff.list, dave", "multi: a,", "  b, c", "# comment", "  d",
             "ping: pong", "pong: ping", "team: alice, bob@example.org"]
    lines += [f"list{i}: user{i}, user{i + 1}@example.com" for i in range(200)]
    lines += [f"deep{i}: deep{i + 1}" for i in range(25)]
    path = tmp_path / "aliases"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def opened(path, state_dir):
    found = []
    aliases = open_aliases(path, table_path(str(state_dir)), found.append)
    return aliases, found


ADDRESSES = ["quoted", "QUOTED@example.org", "postmaster", "postmaster@example.org",
             "root@elsewhere.example", "info", "info@example.org", "INFO@Example.Org",
             "info@other.example", "info@third.example", "staff", "staff@example.org",
             "multi", "ping", "pong@example.org", "list7", "list199@example.org",
             "list200", "deep0", "deep24", "nobody", "nobody@example.org", "", "@",
             "a@b@example.org", "team+tag@example.org", "team"]


def test_compiled_lookup_equals_source_lookup(tmp_path):
    path = generated(tmp_path)
    source = load_aliases(path)
    compile_table(path, tmp_path / "state")
    table, found = opened(path, tmp_path / "state")
    assert isinstance(table, AliasTable) and found == []
    keys = list(source) + [k.upper() for k in source] + [f"{k}@example.org" for k in source]
    for address in keys + ADDRESSES:
        for local_part in (True, False):
            assert table.lookup(address, local_part) == source.lookup(address, local_part), \
                (address, local_part)


def outcome(lookup, address):
    try:
        return expand(address, lookup)
    except ConfigError as e:
        return ("ConfigError", str(e), e.chain)


def test_compiled_expansion_equals_source_expansion(tmp_path):
    path = generated(tmp_path)
    source = load_aliases(path)
    compile_table(path, tmp_path / "state")
    table, _ = opened(path, tmp_path / "state")
    for address in list(source) + ADDRESSES:
        assert outcome(table.lookup, address) == outcome(source.lookup, address), address


def test_missing_table_parses_the_source_silently(tmp_path):
    path = generated(tmp_path)
    aliases, found = opened(path, tmp_path / "state")
    assert isinstance(aliases, Aliases) and found == []


def test_table_damaged_after_opening_falls_back_to_the_source(tmp_path):
    path = generated(tmp_path)
    compile_table(path, tmp_path / "state")
    table, found = opened(path, tmp_path / "state")
    table._conn.close()  # the next query fails as on a damaged file
    assert table.lookup("team") == ["alice", "bob@example.org"]
    assert table.lookup("staff") == load_aliases(path).lookup("staff")
    assert len(found) == 1 and "is unreadable" in found[0]


def test_table_records_every_file_read(tmp_path):
    path = generated(tmp_path)
    compile_table(path, tmp_path / "state")
    conn = sqlite3.connect(table_path(str(tmp_path / "state")))
    rows = conn.execute("SELECT path, mtime_ns, size, ino FROM sources ORDER BY position")
    names = []
    for name, mtime_ns, size, ino in rows:
        st = os.stat(name)
        assert (st.st_mtime_ns, st.st_size, st.st_ino) == (mtime_ns, size, ino)
        names.append(os.path.basename(name))
    conn.close()
    assert names == ["aliases", "staff.list", "more"]


# --- deliveries: the same with the table as with the source ------------------

CASES = {
    "alias": ("team: alice, bob@example.org\n", "team@example.org"),
    "external member": ("ext: someone@elsewhere.example.net, alice\n", "ext@example.org"),
    "full key wins": ("info: alice\ninfo@example.org: bob\n", "info@example.org"),
    "extension": ("team: alice, bob\n", "team+tag@example.org"),
    "self reference": ("alice: alice, bob\n", "alice@example.org"),
    "upper case": ("Team: Alice\n", "TEAM@Example.org"),
    "nested": ("a: b\nb: alice, c\nc: bob\n", "a@example.org"),
    "include": ("staff: :include:staff.list\n", "staff@example.org"),
    "bare member gets the domain": ("x: carol\n", "x@example.org"),
    "loop without mailbox": ("ping: pong\npong: ping\n", "ping@example.org"),
    "too deep": ("".join(f"d{i}: d{i + 1}\n" for i in range(25)), "d0@example.org"),
    "unknown": ("team: alice\n", "nobody@example.org"),
    "mailbox, no alias": ("team: alice\n", "bob@example.org"),
}


def normalized(done, message_id):
    """Exit status, the reason line and the log lines, without pids and ids."""
    lines = [re.sub(r"^lda\[\d+\]: ", "", line).replace(message_id, "ID")
             for line in done.stderr.decode().splitlines()]
    return done.returncode, lines


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    from conftest import Site

    site = Site(tmp_path_factory.mktemp("site"))
    site.create("alice@example.org")
    site.create("bob@example.org")
    (site.root / "staff.list").write_text("alice\nbob@example.org\n")
    return site


@pytest.mark.parametrize("name", list(CASES))
def test_delivery_is_the_same_with_table_and_source(shared, name):
    text, recipient = CASES[name]
    shared.aliases.write_text(text)
    table = table_path(str(shared.state))
    results = {}
    for mode in ("source", "table"):
        if mode == "table":
            compile_table(shared.aliases, shared.state)
        elif os.path.exists(table):
            os.unlink(table)
        message_id = f"<{name.replace(' ', '-')}-{mode}@example.org>"
        sent_before = len(shared.sent())
        done = shared.deliver(message(message_id=message_id), recipient)
        assert b"Traceback" not in done.stderr
        sent = [args[-1] for args, _ in shared.sent()[sent_before:]]
        results[mode] = normalized(done, message_id), sent
    assert results["table"] == results["source"]
    assert results["source"][0][0] in {0, 67, 78}


def test_compile_then_deliver_uses_the_table(site):
    alice = site.create("alice@example.org")
    site.aliases.write_text("team: alice, bob@example.org\n")
    site.run("aliases", "compile", check=0)
    # The source must not be parsed: no email-validator (for bob@example.org).
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "lda", "deliver", "-f",
                           "s@example.org", "team@example.org"], input=message(),
                          env=site.env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    assert b"email_validator" not in done.stderr and WARNING.encode() not in done.stderr
    assert len(maildir_files(alice)) == 1
    assert [args[-1] for args, _ in site.sent()] == ["bob@example.org"]


# --- stale or damaged tables: the source, one warning, never a traceback ----


def test_stale_table_falls_back_with_a_warning(site):
    alice, bob = site.create("alice@example.org"), site.create("bob@example.org")
    site.aliases.write_text("team: alice\n")
    site.run("aliases", "compile", check=0)
    site.aliases.write_text("team: alice, bob\n")  # edited, not compiled
    done = site.deliver(message(), "team@example.org", check=0)
    assert (len(maildir_files(alice)), len(maildir_files(bob))) == (1, 1)
    assert [re.sub(r"^lda\[\d+\]: ", "", line) for line in warnings(done)] == [
        f"{WARNING}{site.state}/aliases.sqlite is older than its source {site.aliases}; "
        f"reading {site.aliases} instead; run 'lda aliases compile'"]
    site.run("aliases", "compile", check=0)
    done = site.deliver(message("<m2@example.org>"), "team@example.org", check=0)
    assert warnings(done) == [] and len(maildir_files(bob)) == 2


def test_changed_include_file_falls_back(site):
    alice, bob = site.create("alice@example.org"), site.create("bob@example.org")
    members = site.root / "members"
    members.write_text("alice\n")
    site.aliases.write_text("team: :include:members\n")
    site.run("aliases", "compile", check=0)
    with members.open("a") as f:
        f.write("bob\n")
    done = site.deliver(message(), "team@example.org", check=0)
    assert (len(maildir_files(alice)), len(maildir_files(bob))) == (1, 1)
    [line] = warnings(done)
    assert f"is older than its source {members};" in line


def test_removed_include_file_gives_what_the_source_gives(site):
    site.create("alice@example.org")
    members = site.root / "members"
    members.write_text("alice\n")
    site.aliases.write_text("team: :include:members\n")
    site.run("aliases", "compile", check=0)
    members.unlink()
    # team is now defined on a bad line: deferred, and so is no mail lost.
    done = site.deliver(message(), "team@example.org", check=75)
    assert done.stderr.decode().splitlines()[0].startswith("4.3.5 ")
    assert (f"{site.aliases}:1: cannot read \"{members}\": No such file or directory; "
            "deferred") in done.stderr.decode().splitlines()[0]
    assert len(warnings(done)) == 1


def damage(site, how):
    table = site.state / "aliases.sqlite"
    if how == "garbage":
        table.write_bytes(b"not a database at all\n" * 100)
    elif how == "empty file":
        table.write_bytes(b"")
    elif how == "truncated":
        data = table.read_bytes()
        table.write_bytes(data[: len(data) // 2])
    elif how == "older format":
        conn = sqlite3.connect(table)
        conn.execute("PRAGMA user_version = 0")
        conn.close()
    elif how == "another schema":
        table.unlink()
        conn = sqlite3.connect(table)
        conn.execute("CREATE TABLE t (x)")
        conn.execute("PRAGMA user_version = 1")
        conn.close()
    elif how == "a directory":
        table.unlink()
        table.mkdir()
    elif how == "another source":
        other = site.root / "other"
        other.write_text("team: bob\n")
        compile_table(other, site.state)


DAMAGE = ["garbage", "empty file", "truncated", "older format", "another schema",
          "a directory", "another source"]


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("source", ["team: alice, bob\n", "team: alice\nbad: |/bin/true\n"],
                         ids=["good source", "bad source"])
def test_damaged_table_gives_what_the_source_gives(site, how, source):
    site.create("alice@example.org")
    site.create("bob@example.org")
    site.aliases.write_text(source)
    before = site.deliver(message("<source@example.org>"), "team@example.org")
    if "bad" in source:  # it cannot be compiled: a table of another file
        other = site.root / "compiled-from"
        other.write_text("team: alice, bob\n")
        compile_table(other, site.state)
    else:
        compile_table(site.aliases, site.state)
    damage(site, how)
    done = site.deliver(message("<table@example.org>"), "team@example.org")
    assert b"Traceback" not in done.stderr
    assert len(warnings(done)) == 1, done.stderr.decode()
    code, lines = normalized(done, "<table@example.org>")
    # The bad line is logged by the first delivery, not again so soon.
    before_code, before_lines = normalized(before, "<source@example.org>")
    assert (code, [line for line in lines if WARNING not in line]) == \
        (before_code, [line for line in before_lines if "line skipped" not in line])
    assert code == 0


# --- bad lines: skipped with a warning, as newaliases(1) does ------------------
#
# One typo must not defer the whole site: the other aliases, and addresses
# with no alias, are delivered; an alias whose own definition is on a bad
# line is deferred (75, 4.3.5) so no mail to it bounces for a typo.

BAD_LINES = ("broken line without colon\n"
             "team alice@example.org\n"
             "list: alice, bob\n"
             'quoted: "unterminated\n'
             "piped: alice, |/bin/true\n")
BAD_LINE_NUMBERS = [1, 2, 4, 5]


def reason(done):
    return done.stderr.decode().splitlines()[0]


def bad_line_warnings(done):
    return [line for line in done.stderr.decode().splitlines() if "line skipped" in line]


@pytest.mark.parametrize("compiled", [False, True], ids=["source", "table"])
def test_a_bad_line_defers_only_its_own_alias(site, compiled):
    alice, bob = site.create("alice@example.org"), site.create("bob@example.org")
    site.aliases.write_text(BAD_LINES)
    if compiled:
        done = site.run("aliases", "compile", check=0)
        assert len(bad_line_warnings(done)) == len(BAD_LINE_NUMBERS)
    site.deliver(message("<a@example.org>"), "alice@example.org", check=0)
    site.deliver(message("<l@example.org>"), "list@example.org", check=0)
    assert (len(maildir_files(alice)), len(maildir_files(bob))) == (2, 1)
    for name in ("team", "quoted", "piped", "broken"):
        done = site.deliver(message(f"<{name}@example.org>"), f"{name}@example.org", check=75)
        assert reason(done).startswith("4.3.5 "), reason(done)
        assert f"{site.aliases}:" in reason(done)
    site.deliver(message("<n@example.org>"), "nobody@example.org", check=67)
    assert (len(maildir_files(alice)), len(maildir_files(bob))) == (2, 1)


def test_bad_lines_are_logged_once_per_interval_on_delivery(site):
    site.create("alice@example.org")
    site.aliases.write_text(BAD_LINES)
    first = site.deliver(message("<1@example.org>"), "alice@example.org", check=0)
    assert [re.search(r"aliases (\S+):(\d+): ", line).groups()
            for line in bad_line_warnings(first)] == \
        [(str(site.aliases), str(n)) for n in BAD_LINE_NUMBERS]
    again = site.deliver(message("<2@example.org>"), "alice@example.org", check=0)
    assert bad_line_warnings(again) == []
    # An edit is news: its bad lines are logged at once.
    site.aliases.write_text(BAD_LINES + "more bad\n")
    edited = site.deliver(message("<3@example.org>"), "alice@example.org", check=0)
    assert len(bad_line_warnings(edited)) == len(BAD_LINE_NUMBERS) + 1
    # Later than the interval, they are logged again.
    stamp = site.state / "aliases.warned"
    old = stamp.stat().st_mtime - 3600
    os.utime(stamp, (old, old))
    later = site.deliver(message("<4@example.org>"), "alice@example.org", check=0)
    assert len(bad_line_warnings(later)) == len(BAD_LINE_NUMBERS) + 1


def test_compile_warns_and_succeeds_check_fails_listing_every_bad_line(site):
    site.aliases.write_text(BAD_LINES)
    done = site.run("aliases", "compile", "--json", check=0)
    summary = json.loads(done.stdout)
    assert summary["entries"] == 1 and [p["line"] for p in summary["problems"]] == \
        BAD_LINE_NUMBERS
    assert os.path.exists(table_path(str(site.state)))
    done = site.run("aliases", "check", "--json", check=78)
    assert [p["line"] for p in json.loads(done.stdout)] == BAD_LINE_NUMBERS


def test_compile_still_refuses_a_loop(site):
    site.aliases.write_text("ping: pong\npong: ping\nbroken\n")
    done = site.run("aliases", "compile", check=78)
    assert "alias loop" in done.stderr.decode()
    assert not os.path.exists(table_path(str(site.state)))


HOSTILE = {
    "NUL": b"nul: al\0ice\n",
    "CR": b"cr: alice\rbob\n",
    "long line": b"long: " + b"a" * (2 << 20) + b"\n",
    "not UTF-8": b"latin: caf\xe9@example.org\n",
    "NUL key": b"n\0ul: alice\n",
    "binary": bytes(range(256)) * 64 + b"\n",
}


@pytest.mark.parametrize("compiled", [False, True], ids=["source", "table"])
def test_hostile_bytes_are_bad_lines_never_a_crash(site, compiled):
    alice = site.create("alice@example.org")
    site.aliases.write_bytes(b"".join(HOSTILE.values()) + b"ok: alice\n")
    done = site.run("aliases", "check", check=78)
    assert b"Traceback" not in done.stderr
    if compiled:
        site.run("aliases", "compile", check=0)
    site.deliver(message(), "ok@example.org", check=0)
    assert len(maildir_files(alice)) == 1
    for name in ("nul", "cr", "long", "latin"):
        done = site.deliver(message(f"<{name}@example.org>"), f"{name}@example.org", check=75)
        assert b"Traceback" not in done.stderr


def test_lmtp_defers_only_the_recipient_on_a_bad_line(lmtp):
    """LMTP answers per recipient: 451 4.3.5 for the alias on a bad line,
    250 for the others in the same transaction."""
    server = lmtp("--processes", "1")
    server.site.aliases.write_text("team a@example.org\nlist: b@example.org\n")
    client = server.client()
    rcpt_replies, replies = client.send(
        "s@example.org", ["team@example.org", "list@example.org", "c@example.org"],
        message(message_id="<lmtp@example.org>"))
    client.close()
    assert rcpt_replies["team@example.org"].startswith("451 4.3.5 "), rcpt_replies
    assert all(replies[i].startswith("250") for i in range(len(replies))), replies
    assert len(maildir_files(server.site.maildir("b@example.org"))) == 1
    assert len(maildir_files(server.site.maildir("c@example.org"))) == 1
    assert maildir_files(server.site.maildir("a@example.org")) == []

"""`lda explain`: the whole decision of a delivery, and nothing written.

The installed command throughout; the agreement tests run `lda explain
--json` and then `lda deliver` on the same inputs and compare."""

import json
import os
import sqlite3
from pathlib import Path

import pytest

from conftest import fill_mailbox, maildir_files, message

MSG = message()
BIG = message(body=b"x" * 500 + b"\n")
ALICE, BOB, CAROL = "alice@example.org", "bob@example.org", "carol@example.org"


def explain(lda, *args, msg=MSG, check=0):
    done = lda.run("explain", "--json", *args, input=msg, check=check)
    return json.loads(done.stdout)


def targets(report, index=0):
    return {t["address"]: t for t in report["recipients"][index]["targets"]}


def team_with_forward_over_quota(site):
    """team: alice and, through an :include: file, bob; bob's mailbox
    forwards to carol (keeping a copy); carol is over quota."""
    site.create(ALICE)
    site.create(BOB, "--forward", CAROL, "--keep-copy")
    carol = site.create(CAROL, "--quota-storage", "1K")
    fill_mailbox(carol, 1024)
    (site.root / "team.list").write_text("# the team\nbob\n")
    site.aliases.write_text("postmaster: alice\nteam: alice, :include: team.list\n")
    return carol


def test_alias_with_include_and_forward_over_quota_is_a_partial_delivery(site):
    carol = team_with_forward_over_quota(site)
    report = explain(site, "-f", "sender@example.org", "team@example.org", msg=BIG)
    [entry] = report["recipients"]
    steps = {(s["from"], s["to"]): s for s in entry["expansion"]}
    alias = steps[("team@example.org", ALICE)]
    assert (alias["by"], alias["file"], alias["line"]) == ("alias", str(site.aliases), 2)
    included = steps[("team@example.org", BOB)]
    assert included["include_file"] == str(site.root / "team.list")
    assert included["include_line"] == 2
    assert steps[(BOB, CAROL)]["by"] == "forward"
    found = targets(report)
    assert {a: t["outcome"] for a, t in found.items()} == {
        ALICE: "deliver", BOB: "deliver", CAROL: "partial"}
    quota = found[CAROL]["quota"]
    assert quota["storage_limit"] == 1024 and quota["storage_used"] == 1024
    assert quota["fits"] is False and quota["message_size"] > 500
    assert found[CAROL]["reply"].startswith("452 4.2.2")
    assert found[ALICE]["folder"] == "INBOX" and found[ALICE]["maildir"] == str(
        site.maildir(ALICE))
    assert (report["exit_code"], report["reply"]) == (0, "250 2.0.0")
    text = site.run("explain", "team@example.org", input=BIG, check=0).stdout.decode()
    assert f"(alias, {site.aliases}:2, :include: {site.root / 'team.list'}:2)" in text
    assert "partial delivery, kept for retry" in text and "does not fit" in text
    assert maildir_files(carol) == []


@pytest.mark.parametrize("recipient", ["team@example.org", "team+x@example.org"])
def test_an_alias_is_explained_from_the_compiled_table_too(site, recipient):
    """Once `lda aliases compile` had run, lda explain of an alias exited
    75 with an AttributeError ('AliasTable' object has no attribute
    'key_for'); deliveries were fine.  It names the alias's line as from
    the file."""
    team_with_forward_over_quota(site)
    site.run("aliases", "compile", check=0)
    report = explain(site, "-f", "sender@example.org", recipient, msg=BIG)
    [entry] = report["recipients"]
    steps = {(s["from"], s["to"]): s for s in entry["expansion"]}
    alias = steps[(recipient, ALICE)]
    assert (alias["by"], alias["file"], alias["line"]) == ("alias", str(site.aliases), 2)


def test_mailbox_over_quota_predicts_the_temporary_failure(site):
    bob = site.create(BOB, "--quota-storage", "1K")
    fill_mailbox(bob, 1024)
    report = explain(site, BOB, msg=BIG)
    assert targets(report)[BOB]["outcome"] == "fail"
    assert (report["exit_code"], report["reply"]) == (75, "452 4.2.2")
    site.write_config({"state_dir": str(site.state), "aliases": str(site.aliases),
                       "log": "stderr", "quota_full": "reject"})
    assert explain(site, BOB, msg=BIG)["exit_code"] == 77


def test_already_delivered_message_is_a_duplicate_with_its_time(site):
    site.create(ALICE)
    site.deliver(MSG, ALICE, check=0)
    report = explain(site, ALICE)
    target = targets(report)[ALICE]
    assert target["outcome"] == "duplicate" and target["detail"] == "duplicate, discarded"
    with sqlite3.connect(site.db()) as conn:
        [(at,)] = conn.execute("SELECT delivered_at FROM delivered_to").fetchall()
    assert target["already_delivered_at"][:16] == \
        __import__("time").strftime("%Y-%m-%dT%H:%M", __import__("time").gmtime(at))
    assert target["key"] == {"mailbox": ALICE, "message_id": "m1@example.org",
                             "submit_time": "2026-11-24T10:00:00Z"}
    assert "already delivered at" in site.run("explain", ALICE, input=MSG).stdout.decode()


def test_a_mailbox_two_recipients_share_gets_one_copy(site):
    site.create(ALICE)
    site.aliases.write_text("team: alice\n")
    report = explain(site, "team@example.org", ALICE)
    assert targets(report, 0)[ALICE]["outcome"] == "deliver"
    second = targets(report, 1)[ALICE]
    assert second["outcome"] == "duplicate" and "team@example.org" in second["detail"]
    site.deliver(MSG, "team@example.org", ALICE, check=0)
    assert len(maildir_files(site.maildir(ALICE))) == 1


def test_message_without_message_id_is_keyed_by_its_digest(site):
    site.create(ALICE)
    report = explain(site, ALICE, msg=message(message_id=None))
    assert report["message"]["key_kind"] == "digest"
    assert report["message"]["key_id"].startswith("digest:")
    assert targets(report)[ALICE]["key"]["message_id"] == report["message"]["key_id"]


def test_sieve_fileinto_names_the_rule_that_fired(site):
    maildir = site.create(ALICE)
    (maildir / "lda.sieve").write_text(
        'require ["fileinto", "mailbox"];\n'
        'if header :contains "subject" "invoice" {\n'
        '    fileinto :create "Bills";\n'
        '} elsif header :contains "subject" "test" {\n'
        '    fileinto :create "Tests";\n'
        '}\n')
    os.chmod(maildir / "lda.sieve", 0o600)
    report = explain(site, ALICE)
    rules = report["recipients"][0]["sieve"]
    assert not [line for line in report["log"] if "sieve" in line], report["log"]
    script = str(maildir / "lda.sieve")
    assert [(r["script"], r["line"], r["action"]) for r in rules] == [
        (script, 2, "elsif (branch 2) matched"), (script, 5, "fileinto")]
    assert targets(report)[ALICE]["folder"] == "Tests"
    assert not (site.state / "sieve-cache").exists()
    # The folder does not exist: the delivery would make it and subscribe
    # it (subscribe_new_folders), and the explanation says so.
    row = targets(report)[ALICE]
    assert (row["makes_folder"], row["subscribes"]) == (True, True)
    assert row["detail"].startswith("would make folder Tests, subscribed, and deliver to "), row
    assert not (maildir / ".Tests").exists() and not (maildir / "subscriptions").exists()
    for sub in ("cur", "new", "tmp"):
        (maildir / ".Tests" / sub).mkdir(parents=True)
    row = targets(explain(site, ALICE))[ALICE]
    assert (row["makes_folder"], row["subscribes"]) == (False, False)
    assert row["detail"].startswith("would deliver to maildir"), row


def test_unknown_recipient_predicts_67(site):
    site.create(ALICE)
    report = explain(site, "nobody@example.org")
    assert (report["exit_code"], report["reply"]) == (67, "550 5.1.1")
    assert "unknown recipient" in report["reason"]


@pytest.mark.parametrize("recipient", ["../../etc/passwd", "a/b@example.org",
                                       "x\r\nTo: evil@example.org", "a" * 400 + "@example.org",
                                       "@example.org"],
                         ids=["dotdot", "slash", "crlf", "long", "no-local-part"])
def test_hostile_recipients_are_refused_and_change_nothing(site, recipient):
    site.create(ALICE)
    before = snapshot(site.root)
    report = explain(site, recipient)
    assert report["exit_code"] in (64, 67) and report["recipients"][0]["targets"] == []
    assert_same(before, snapshot(site.root))


def test_bad_sender_is_a_usage_error(site):
    site.create(ALICE)
    done = site.run("explain", "-f", "a\nb@example.org", ALICE, input=MSG)
    assert done.returncode == 64 and b"sender" in done.stderr


def test_unreadable_directory_is_temporary(site):
    site.create(ALICE)
    (site.state / "directory.sqlite").write_bytes(b"not a database" * 100)
    done = site.run("explain", ALICE, input=MSG)
    assert done.returncode in (75, 78), done.stderr


def test_per_user_mode(user):
    (user.maildir / "cur").mkdir(parents=True)
    report = explain(user, "-f", "sender@example.org")
    [entry] = report["recipients"]
    [target] = entry["targets"]
    assert report["mode"] == "user" and target["maildir"] == str(user.maildir)
    assert target["outcome"] == "deliver" and report["exit_code"] == 0
    user.deliver(MSG, check=0)
    assert targets(explain(user))[target["address"]]["outcome"] == "duplicate"


def test_without_a_message_only_resolution_and_quota(site):
    team_with_forward_over_quota(site)
    report = explain(site, "team@example.org", msg=b"")
    assert report["message"] is None
    carol = targets(report)[CAROL]
    assert "key" not in carol and carol["quota"]["message_size"] == 0
    assert carol["quota"]["storage_used"] == 1024  # full, yet 0 bytes fit
    assert report["recipients"][0]["expansion"] != []


def assert_same(before, after):
    files = {k: (before[0].get(k), after[0].get(k)) for k in before[0].keys() | after[0].keys()
             if before[0].get(k) != after[0].get(k)}
    assert sorted(files) == [] and before[1] == after[1]


def snapshot(root):
    """Every file under root with its size and mtime, and the rows of every
    SQLite file.  SQLite's shared-memory index (-shm) is left out: every
    reader, lda's own included, updates its read marks."""
    files = {}
    for path in sorted(Path(root).rglob("*")):
        if path.name.endswith("-shm"):
            continue
        st = path.lstat()
        files[str(path)] = (st.st_size, st.st_mtime_ns, st.st_mode)
    rows = {}
    for path in Path(root).rglob("*.sqlite"):
        # Read as it stands unless a WAL is there: a reader would make one.
        as_is = "" if Path(f"{path}-wal").exists() else "&immutable=1"
        conn = sqlite3.connect(f"file:{path}?mode=ro{as_is}", uri=True)
        try:
            tables = [t for (t,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
            rows[str(path)] = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(),
                                         key=repr) for t in tables}
        finally:
            conn.close()
    return files, rows


def test_explain_writes_nothing(site):
    carol = team_with_forward_over_quota(site)
    site.deliver(message(message_id="<earlier@example.org>"), "team@example.org", check=0)
    (site.maildir(ALICE) / "lda.sieve").write_text('require "fileinto";\nfileinto "X";\n')
    os.chmod(site.maildir(ALICE) / "lda.sieve", 0o600)
    # A maildirsize a delivery would not trust (two lines, over quota, old):
    # explain recounts without rewriting it.
    (carol / "maildirsize").write_text("1024S\n1024 1\n10 1\n")
    os.utime(carol / "maildirsize", (1, 1))
    before = snapshot(site.root)
    for args in (["team@example.org"], [ALICE, BOB, "nobody@example.org"], ["--json", CAROL]):
        site.run("explain", *args, input=BIG, check=0)
    report = explain(site, CAROL, msg=BIG)
    assert targets(report)[CAROL]["quota"]["would_recount"] is True
    assert_same(before, snapshot(site.root))


def deliver_and_compare(site, recipients, msg, sender="sender@example.org"):
    """explain --json, then the delivery: the exit status, each target's
    decision and the folder each copy landed in agree."""
    report = explain(site, "-f", sender, *recipients, msg=msg)
    before = {a: files_by_folder(site, a) for a in mailboxes(site)}
    sent = len(site.sent())
    done = site.deliver(msg, *recipients, sender=sender)
    assert done.returncode == report["exit_code"], (done.stderr, report)
    after = {a: files_by_folder(site, a) for a in mailboxes(site)}
    landed = {a: {f for f in after[a] if after[a][f] > before[a].get(f, 0)} for a in after}
    predicted = {}
    forwards = 0
    for entry in report["recipients"]:
        for target in entry["targets"]:
            if target["kind"] == "mailbox" and target["outcome"] == "deliver":
                predicted.setdefault(target["address"], set()).add(target["folder"])
            elif target["kind"] != "mailbox" and target["outcome"] == "deliver":
                forwards += 1
    assert {a: f for a, f in landed.items() if f} == predicted, (report, done.stderr)
    assert len(site.sent()) - sent == forwards
    # Each target's decision, as the delivery logged it (Postfix's words).
    logged = [line.split("status=")[1].split()[0] for line in done.stderr.decode().splitlines()
              if "status=" in line and "relay=lda" in line]
    said = {"deliver": "sent", "duplicate": "duplicate", "partial": "deferred"}
    expected = [said.get(t["outcome"]) or ("bounced" if t["reply"][0] == "5" else "deferred")
                for e in report["recipients"] for t in e["targets"]]
    expected += ["bounced" if e["reply"][0] == "5" else "deferred"
                 for e in report["recipients"] if not e["targets"] and e["exit_code"]]
    assert sorted(logged) == sorted(expected), (logged, report)
    partial = sum(t["outcome"] == "partial" for e in report["recipients"]
                  for t in e["targets"])
    with sqlite3.connect(site.db()) as conn:
        recorded = conn.execute("SELECT count(*) FROM partial_deliveries").fetchone()[0]
    return report, partial, recorded


def mailboxes(site):
    with sqlite3.connect(site.state / "directory.sqlite") as conn:
        return [a for (a,) in conn.execute("SELECT address FROM mailboxes")]


def files_by_folder(site, address):
    root = site.maildir(address)
    counts = {}
    for new in [root / "new", root / "cur"] + list(root.glob(".*/new")) + list(
            root.glob(".*/cur")):
        folder = "INBOX" if new.parent == root else new.parent.name[1:]
        counts[folder] = counts.get(folder, 0) + len(list(new.iterdir()))
    return counts


def test_explain_agrees_with_the_delivery(site):
    team_with_forward_over_quota(site)
    site.create("dave@example.org", "--forward", "dave@elsewhere.example")
    erin = site.create("erin@example.org")
    (erin / "lda.sieve").write_text(
        'require ["fileinto", "mailbox"];\n'
        'if header :contains "subject" "report" { fileinto :create "Reports"; stop; }\n'
        'if header :contains "subject" "spam" { discard; }\n')
    os.chmod(erin / "lda.sieve", 0o600)
    scenarios = [
        (["team@example.org"], BIG),                            # partial for carol
        (["team@example.org"], BIG),                            # all duplicates now
        ([ALICE, BOB, "nobody@example.org"], message(message_id="<2@x>")),  # 67
        (["dave@example.org", ALICE], message(message_id="<3@x>")),         # forward
        (["erin@example.org"], message(message_id="<4@x>", subject="report")),
        (["erin@example.org"], message(message_id="<5@x>", subject="spam")),
        (["erin@example.org", "team@example.org"], message(message_id=None)),
        ([CAROL], message(message_id="<6@x>", body=b"y" * 2000 + b"\n")),  # 77 too big
        ([CAROL], message(message_id="<7@x>")),                  # 75 full
        (["team@example.org", ALICE, BOB], message(message_id="<8@x>")),  # shared mailboxes
    ]
    seen = set()
    for recipients, msg in scenarios:
        report, partial, recorded = deliver_and_compare(site, recipients, msg)
        assert recorded >= partial
        seen |= {t["outcome"] for e in report["recipients"] for t in e["targets"]}
        seen |= {report["exit_code"]}
    assert seen >= {"deliver", "duplicate", "partial", "fail", 0, 67, 75, 77}
    # the second run of the first scenario predicted duplicates everywhere
    again = explain(site, "team@example.org", msg=BIG)
    assert {t["outcome"] for t in again["recipients"][0]["targets"]} <= {"duplicate",
                                                                          "partial"}
    pending = targets(again)[CAROL]["partial_pending"]
    assert pending is not None and pending["attempts"] >= 1


def test_a_recipient_refused_once_the_message_is_read_stops_the_others(site):
    """lda deliver stores no copy for alice when full@ of the same command
    is refused for good; lda explain said alice's copy would be stored."""
    site.write_config({"state_dir": str(site.state), "aliases": str(site.aliases),
                       "log": "stderr", "quota_full": "reject"})
    alice = site.create(ALICE)
    full = site.create("full@example.org", "--quota-storage", "1K")
    fill_mailbox(full, 1024)
    report = explain(site, ALICE, "full@example.org", msg=BIG)
    assert report["exit_code"] == 77
    [row] = report["recipients"][0]["targets"]
    assert row["outcome"] == "fail" and row["reply"].startswith("552 5.2.2")
    assert "not stored: full@example.org was refused" in row["detail"]
    site.deliver(BIG, ALICE, "full@example.org", check=77)
    assert maildir_files(alice) == []


def test_a_recipient_refused_under_the_locks_is_predicted_bounced_alone(site):
    """A full mailbox with a Sieve script is judged after the others' copies
    are stored, and bounced alone with a DSN (exit 0); lda explain said 77
    and no copy for alice."""
    site.write_config({"state_dir": str(site.state), "aliases": str(site.aliases),
                       "sendmail": [str(site.root / "sendmail"), "-i"],
                       "log": "stderr", "quota_full": "reject"})
    alice = site.create(ALICE)
    full = site.create("full@example.org", "--quota-storage", "1K")
    (full / "lda.sieve").write_text("keep;\n")
    fill_mailbox(full, 1024)
    report = explain(site, "-f", "sender@example.org", ALICE, "full@example.org", msg=BIG)
    assert report["exit_code"] == 0
    assert [t["outcome"] for t in report["recipients"][0]["targets"]] == ["deliver"]
    refused = report["recipients"][1]
    assert refused["reply"].startswith("552 5.2.2")
    assert refused["bounced_alone"] == "DSN to sender@example.org"
    site.deliver(BIG, ALICE, "full@example.org", check=0)
    assert len(maildir_files(alice)) == 1 and len(site.sent()) == 1

"""`lda partial list|retry|bounce`: a retry delivers exactly one copy (or
finds the one already there), a failing target is deferred, an expired
record is returned to its sender as an RFC 3464 DSN.  The installed command
throughout, except where the clock must be injected."""

import email
import email.policy
import io
import json
import os
import sqlite3
import subprocess
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest

from conftest import LDA, fill_mailbox, maildir_files, message, remove_directory_entry

BIG = message(body=b"x" * 500 + b"\n")


def records(site, name="default"):
    conn = sqlite3.connect(site.db(name))
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM partial_deliveries ORDER BY id")]
    finally:
        conn.close()


def run_json(site, *args, check=0):
    done = site.run("partial", *args, "--json", check=check)
    return json.loads(done.stdout)


def team_partial(site, msg=BIG, sender="sender@example.org"):
    """alice gets the message, bob (over quota) becomes a partial delivery."""
    alice = site.create("alice@example.org")
    bob = site.create("bob@example.org", "--quota-storage", "1K")
    fill_mailbox(bob, 1024)
    site.aliases.write_text("team: alice, bob\n")
    site.deliver(msg, "team@example.org", sender=sender, check=0)
    assert len(maildir_files(alice)) == 1 and maildir_files(bob) == []
    [record] = records(site)
    return alice, bob, record


def raise_quota(site, address, storage="1M"):
    site.run("mailbox", "set-quota", address, "--storage", storage, check=0)


def dsn_parts(raw):
    dsn = email.message_from_bytes(raw, policy=email.policy.default)
    return dsn, dsn.get_payload()


def test_retry_after_raising_the_quota_delivers_one_copy(site):
    _, bob, record = team_partial(site)
    spooled = Path(record["spool_file"]).read_bytes()
    raise_quota(site, "bob@example.org")
    done = site.run("partial", "retry", check=0)
    assert done.stdout.decode().splitlines()[-1] == "1 delivered, 0 deferred, 0 bounced"
    [copy] = maildir_files(bob)
    assert copy.read_bytes() == spooled  # bytes as delivered to alice, prefix included
    assert spooled.startswith(b"Return-Path: <sender@example.org>\nDelivered-To: team@")
    assert records(site) == [] and not os.path.exists(record["spool_file"])
    assert run_json(site, "retry") == []
    site.deliver(BIG, "team@example.org", check=0)  # a resend: nothing new anywhere
    assert len(maildir_files(bob)) == 1 and records(site) == []


def test_a_retried_copy_is_named_by_its_own_sizes(site):
    """The spooled copy is linked as it is: S= and W= are its bytes', not
    those of what lda's reader makes of them (a CR CR LF became CR LF when
    the message was first read, and would become LF the second time), or
    Dovecot finds the file's size differing from its name and a quota
    recount is off."""
    _, bob, record = team_partial(site, message(body=b"line\r\r\nnext\n" + b"x" * 500))
    spooled = Path(record["spool_file"]).read_bytes()
    assert b"line\r\nnext" in spooled
    raise_quota(site, "bob@example.org")
    site.run("partial", "retry", check=0)
    [copy] = maildir_files(bob)
    assert copy.read_bytes() == spooled
    vsize = len(spooled) + spooled.count(b"\n") - spooled.count(b"\r\n")
    assert copy.name.endswith(f",S={len(spooled)},W={vsize}")


def test_retry_while_still_over_quota_is_deferred(site):
    _, bob, record = team_partial(site)
    [report] = run_json(site, "retry")
    assert (report["outcome"], report["target"], report["id"]) == (
        "deferred", "bob@example.org", record["id"])
    assert report["reason"] == "4.2.2 Quota exceeded (mailbox for user is full)"
    [after] = records(site)
    assert after["attempts"] == 2 and after["last_attempt"] >= record["last_attempt"]
    assert os.path.exists(record["spool_file"]) and maildir_files(bob) == []


def test_retry_after_a_direct_delivery_is_a_duplicate(site):
    _, bob, record = team_partial(site)
    raise_quota(site, "bob@example.org")
    site.deliver(BIG, "bob@example.org", check=0)  # bob got it meanwhile
    [report] = run_json(site, "retry")
    assert report["outcome"] == "duplicate"
    assert len(maildir_files(bob)) == 1
    assert records(site) == [] and not os.path.exists(record["spool_file"])


def test_crash_after_delivery_then_retry_again_is_a_duplicate(site):
    """A crash between the delivery and the record's removal: simulated by
    putting record and spooled copy back after a successful retry."""
    _, bob, record = team_partial(site)
    spooled = Path(record["spool_file"]).read_bytes()
    raise_quota(site, "bob@example.org")
    assert [r["outcome"] for r in run_json(site, "retry")] == ["delivered"]
    with open(record["spool_file"], "wb") as f:
        f.write(spooled)
    conn = sqlite3.connect(site.db())
    with conn:
        conn.execute(f"INSERT INTO partial_deliveries ({', '.join(record)}) "
                     f"VALUES ({', '.join('?' * len(record))})", list(record.values()))
    conn.close()
    assert [r["outcome"] for r in run_json(site, "retry")] == ["duplicate"]
    assert len(maildir_files(bob)) == 1
    assert records(site) == [] and not os.path.exists(record["spool_file"])


def test_concurrent_retries_deliver_one_copy(site):
    _, bob, record = team_partial(site)
    raise_quota(site, "bob@example.org")
    runs = [subprocess.Popen([LDA, "partial", "retry", "--json"], env=site.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(4)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0] * 4
    outcomes = sorted(r["outcome"] for out, _ in outputs for r in json.loads(out))
    assert outcomes == ["delivered"]  # the others found nothing left to do
    assert len(maildir_files(bob)) == 1
    assert records(site) == [] and not os.path.exists(record["spool_file"])


def test_external_target_is_retried_through_sendmail(site, tmp_path):
    flag = tmp_path / "sendmail-down"
    flaky = tmp_path / "flaky-sendmail"
    flaky.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        if [ -e "{flag}" ]; then echo 'queue file write error'; exit 75; fi
        exec "{site.root / 'sendmail'}" "$@"
        """))
    flaky.chmod(0o755)
    site.write_config({"state_dir": str(site.state), "aliases": str(site.aliases),
                       "sendmail": [str(flaky), "-i"]})
    flag.touch()
    alice = site.create("alice@example.org", "--forward", "a@elsewhere.example.net")
    site.deliver(message(), "alice@example.org", check=0)
    [record] = records(site)
    assert record["target"] == "a@elsewhere.example.net" and record["mailbox"] is None
    [report] = run_json(site, "retry")
    assert report["outcome"] == "deferred" and "exited 75" in report["reason"]
    assert records(site)[0]["attempts"] == 2 and site.sent() == []
    flag.unlink()
    [report] = run_json(site, "retry")
    assert report["outcome"] == "delivered"
    [(args, sent)] = site.sent()
    assert args[-4:] == ["-f", "sender@example.org", "--", "a@elsewhere.example.net"]
    # the spooled copy's Delivered-To goes along, its Return-Path not (RFC 5321 4.4)
    assert sent == b"Delivered-To: alice@example.org\n" + message()
    assert records(site) == [] and not os.path.exists(record["spool_file"])
    site.deliver(message(), "alice@example.org", check=0)  # a resend: no second forward
    assert len(site.sent()) == 1 and len(maildir_files(alice)) == 1


def test_expired_partial_is_returned_to_the_sender_as_a_dsn(make_site):
    site = make_site(partial_expiration=1)
    _, bob, record = team_partial(site)
    time.sleep(1.1)
    [report] = run_json(site, "retry")
    assert report["outcome"] == "bounced" and "DSN sent to <sender@example.org>" in \
        report["reason"]
    [(args, raw)] = site.sent()
    assert args[-4:] == ["-f", "<>", "--", "sender@example.org"] and "-i" in args
    dsn, (text, status, headers) = dsn_parts(raw)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["To"] == "sender@example.org" and dsn["From"].addresses[0].username == \
        "MAILER-DAEMON"
    assert dsn["Auto-Submitted"] == "auto-replied" and dsn["Date"] and dsn["Message-ID"]
    assert dsn["Subject"] == "Undelivered Mail Returned to Sender (partial delivery)"
    assert text.get_content_type() == "text/plain"
    assert "<bob@example.org>" in text.get_content() and "other recipients" in \
        text.get_content()
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"].startswith("dns; ")
    assert per_message["Arrival-Date"]
    assert per_recipient["Final-Recipient"] == "rfc822; bob@example.org"
    assert per_recipient["Original-Recipient"] == "rfc822; team@example.org"
    assert (per_recipient["Action"], per_recipient["Status"]) == ("failed", "5.2.2")
    assert per_recipient["Diagnostic-Code"] == \
        "smtp; 552 5.2.2 Quota exceeded (mailbox for user is full)"
    assert per_recipient["Last-Attempt-Date"]
    assert headers.get_content_type() == "text/rfc822-headers"
    returned = headers.get_content()
    assert "Message-ID: <m1@example.org>" in returned and "Subject: test" in returned
    assert "xxxx" not in returned  # the header block only, not the body
    assert records(site) == [] and not os.path.exists(record["spool_file"])
    assert maildir_files(bob) == []


@pytest.mark.parametrize("sender", ["<>", "MAILER-DAEMON"])
def test_expired_partial_of_the_null_sender_is_removed_without_dsn(make_site, sender):
    """MAILER-DAEMON is what pipe(8) passes for the null sender unless its
    line sets null_sender=: a DSN to it bounced a bounce (to postmaster)."""
    site = make_site(partial_expiration=1)
    _, _, record = team_partial(site, sender=sender)
    assert record["sender"] == ("" if sender == "<>" else sender)
    time.sleep(1.1)
    [report] = run_json(site, "retry")
    assert report["outcome"] == "bounced" and "null sender, no DSN" in report["reason"]
    assert site.sent() == []
    assert records(site) == [] and not os.path.exists(record["spool_file"])


def test_expiry_with_an_injected_clock(site):
    from lda.config import load_config
    from lda.log import Log
    from lda.admin.partial import retry_partials

    team_partial(site)
    config = load_config(str(site.config))
    log = io.StringIO()
    later = time.time() + config.partial_expiration - 60
    [report] = retry_partials(config, Log(stream=log), clock=lambda: later)
    assert report["outcome"] == "deferred"
    much_later = time.time() + config.partial_expiration + 60
    [report] = retry_partials(config, Log(stream=log), clock=lambda: much_later)
    assert report["outcome"] == "bounced" and "status=bounced" in log.getvalue()
    [(_, raw)] = site.sent()
    _, (text, _, _) = dsn_parts(raw)
    assert "tried again for 5 days" in text.get_content()


def test_bounce_by_id_and_age(site):
    _, _, record = team_partial(site)
    done = site.run("partial", "bounce")
    assert done.returncode == 64 and b"--older-than" in done.stderr
    assert run_json(site, "bounce", "--older-than", "1h") == []
    assert site.run("partial", "bounce", "--id", "99").returncode == 67
    [report] = run_json(site, "bounce", "--id", str(record["id"]))
    assert report["outcome"] == "bounced"
    [(args, _)] = site.sent()
    assert args[-1] == "sender@example.org"
    assert records(site) == [] and not os.path.exists(record["spool_file"])


def test_deleted_target_mailbox_is_bounced_at_once(site):
    _, _, record = team_partial(site)
    # `lda mailbox delete` takes the records along now (test_admin_lifecycle);
    # a directory restored from an older backup still leaves them.
    remove_directory_entry(site, "bob@example.org")
    [report] = run_json(site, "retry")
    assert report["outcome"] == "bounced"
    [(_, raw)] = site.sent()
    _, (_, status, _) = dsn_parts(raw)
    assert status.get_payload()[1]["Status"] == "5.1.1"
    assert records(site) == []


def test_missing_spool_is_reported_and_kept(site):
    _, _, record = team_partial(site)
    os.unlink(record["spool_file"])
    raise_quota(site, "bob@example.org")
    done = site.run("partial", "retry")
    assert done.returncode == 75
    assert "1 lost-spool" in done.stdout.decode() and b"is missing" in done.stderr
    assert len(records(site)) == 1
    [report] = run_json(site, "bounce", "--all")  # the admin gives up on it
    assert report["outcome"] == "bounced"
    [(_, raw)] = site.sent()
    _, parts = dsn_parts(raw)
    assert [p.get_content_type() for p in parts] == ["text/plain",
                                                     "message/delivery-status"]
    assert records(site) == []


def test_extension_target_lands_in_its_folder(site):
    site.create("alice@example.org")
    bob = site.create("bob@example.org", "--quota-storage", "100")
    for sub in ("cur", "new", "tmp"):
        (bob / ".lists" / sub).mkdir(parents=True)
    site.aliases.write_text("team: alice, bob+lists\n")
    site.deliver(BIG, "team@example.org", check=0)
    [record] = records(site)
    assert (record["target"], record["mailbox"]) == ("bob+lists@example.org",
                                                     "bob@example.org")
    raise_quota(site, "bob@example.org")
    assert [r["outcome"] for r in run_json(site, "retry")] == ["delivered"]
    assert len(maildir_files(bob / ".lists")) == 1 and maildir_files(bob) == []


def test_list_and_retry_across_two_databases(site):
    site.run("db", "create", "db2", check=0)
    site.create("alice@example.org")
    site.create("bob@example.org", "--quota-storage", "100")
    site.create("carol@example.org", "--db", "db2")
    dave = site.create("dave@example.org", "--db", "db2", "--quota-storage", "100")
    site.aliases.write_text("team: alice, bob\ncrew: carol, dave\n")
    site.deliver(BIG, "team@example.org", check=0)
    site.deliver(BIG, "crew@example.org", check=0)
    listed = run_json(site, "list")
    assert sorted((r["database"], r["id"], r["target"]) for r in listed) == [
        ("db2", 1, "dave@example.org"), ("default", 1, "bob@example.org")]
    assert all(r["age_seconds"] >= 0 and r["attempts"] == 1 for r in listed)
    assert [r["target"] for r in run_json(site, "list", "--db", "db2")] == [
        "dave@example.org"]
    table = site.run("partial", "list", check=0).stdout.decode().splitlines()
    assert table[0].split()[:3] == ["database", "id", "target"] and len(table) == 3
    done = site.run("partial", "retry", "--id", "1")
    assert done.returncode == 64 and b"ambiguous" in done.stderr
    raise_quota(site, "dave@example.org")
    [report] = run_json(site, "retry", "--id", "db2:1")
    assert (report["database"], report["outcome"]) == ("db2", "delivered")
    assert len(maildir_files(dave)) == 1
    assert [r["database"] for r in run_json(site, "list")] == ["default"]


@pytest.mark.parametrize("reason, status", [
    ("mailbox full: bob@example.org uses 600 of 100 bytes", "5.2.2"),
    ("/usr/sbin/sendmail exited 75 for a@b.example: queue file write error", "5.3.0"),
    ("/usr/sbin/sendmail exited 69 for a@b.example: 4.1.2 Host not found", "5.1.2"),
    ("mailbox bob@example.org is being moved; deliver again later", "5.2.1"),
    ("something else", "5.0.0"),
], ids=["quota", "sendmail", "mta-status", "moving", "default"])
def test_dsn_status_from_the_reason(reason, status):
    from lda.deliver.dsn import status_for

    assert status_for(reason) == status


def test_an_over_quota_target_leaves_no_pending_row(site):
    """The row written for bob before the mailbox lock (the early claim) is
    removed when his quota refuses the copy: a pending row left behind
    would name a file that never existed."""
    team_partial(site)
    with closing(sqlite3.connect(site.db())) as conn:
        rows = conn.execute("SELECT mailbox, state FROM delivered_to ORDER BY 1").fetchall()
    assert rows == [("alice@example.org", "delivered")]

"""Quota warnings (issue 18): a delivery that takes a mailbox's usage across
a quota_warnings threshold stores one warning in its INBOX; real Maildirs,
real SQLite, the installed lda command."""

import email
import email.policy
import json
import os
import sqlite3
from contextlib import closing

import pytest

from conftest import maildir_files, message, write_lda_toml, write_maildirsize
from dovecot import dovecot  # noqa: F401  (a fixture)

LIMIT = 10000


def warnings_in(maildir):
    """The warnings in new/, parsed: [(path, EmailMessage)]."""
    found = []
    for path in maildir_files(maildir):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if parsed["Message-ID"].startswith("<quota-warning."):
            found.append((path, parsed))
    return found


def sized(message_id, total, recipient="a@example.org"):
    """A message that is `total` bytes once stored with the Return-Path and
    Delivered-To fields lda prepends (sender sender@example.org)."""
    prefix = len(f"Return-Path: <sender@example.org>\nDelivered-To: {recipient}\n")
    head = message(message_id, body=b"")
    return message(message_id, body=b"x" * (total - prefix - len(head) - 1) + b"\n")


def maildirsize_total(maildir):
    """(bytes, messages) summed over maildirsize's usage lines."""
    lines = (maildir / "maildirsize").read_text().splitlines()[1:]
    return tuple(sum(int(line.split()[i]) for line in lines) for i in (0, 1))


def stored_total(maildir):
    files = maildir_files(maildir) + maildir_files(maildir, "cur")
    return sum(p.stat().st_size for p in files), len(files)


@pytest.fixture
def warned(make_site):
    """A site warning at 80 % of storage, and a@example.org limited to LIMIT bytes."""
    site = make_site(quota_warnings=["storage 80%"], hostname="mx.example.org")
    site.maildir_a = site.create("a@example.org", "--quota-storage", str(LIMIT))
    return site


def test_crossing_80_percent_delivers_one_warning_and_crossing_again_another(warned):
    box = warned.maildir_a
    warned.deliver(sized("<m1@example.org>", 6000), "a@example.org", check=0)
    assert warnings_in(box) == []
    done = warned.deliver(sized("<m2@example.org>", 2500), "a@example.org", check=0)
    [(path, first)] = warnings_in(box)
    assert b"quota warning (storage 80%) delivered" in done.stderr
    assert first["From"] == "Mail Delivery System <MAILER-DAEMON@mx.example.org>"
    assert first["To"] == "a@example.org"
    assert first["Auto-Submitted"] == "auto-generated"
    assert first["Subject"] == "Your mailbox is 85% full"
    assert first["Date"] and first.get_content_type() == "text/plain"
    assert first.get_content_charset() == "utf-8"
    assert "a@example.org has reached 85% of its storage quota" in first.get_content()
    # Counted like any message: maildirsize agrees with a recount.
    assert maildirsize_total(box) == stored_total(box)

    warned.deliver(sized("<m3@example.org>", 300), "a@example.org", check=0)
    assert len(warnings_in(box)) == 1  # above 80 % already: no crossing

    shown = json.loads(warned.run("quota", "show", "a@example.org", "--json", check=0).stdout)
    assert shown["warning_storage_80%"].startswith("last sent ")

    # Below 80 % again (m1 deleted), then across it once more.
    [m1] = [p for p in maildir_files(box) if b"<m1@example.org>" in p.read_bytes()]
    m1.unlink()
    recounted = json.loads(warned.run("quota", "recalc", "a@example.org", "--json",
                                      check=0).stdout)
    assert recounted["storage_used"] < 8000
    warned.deliver(sized("<m4@example.org>", 8000 - recounted["storage_used"]),
                   "a@example.org", check=0)
    ids = sorted(parsed["Message-ID"] for _, parsed in warnings_in(box))
    assert len(ids) == 2 and ids[0] != ids[1]


def test_a_warning_is_delivered_even_when_it_goes_past_the_limit(make_site):
    site = make_site(quota_warnings=["storage 90%"])
    box = site.create("a@example.org", "--quota-storage", "1000")
    site.deliver(sized("<m1@example.org>", 950), "a@example.org", check=0)
    assert len(warnings_in(box)) == 1
    used, count = maildirsize_total(box)
    assert used > 1000 and (used, count) == stored_total(box)  # exempt from the check, not the count
    full = site.deliver(message("<m2@example.org>"), "a@example.org", check=75)
    assert full.stderr.startswith(b"4.2.2 Quota exceeded")


def test_one_delivery_across_two_thresholds_warns_for_the_higher(make_site):
    site = make_site(quota_warnings=["storage 80%", "storage 95%", "messages 50%"])
    box = site.create("a@example.org", "--quota-storage", str(LIMIT), "--quota-messages", "2")
    site.deliver(sized("<m1@example.org>", 9700), "a@example.org", check=0)
    kinds = sorted(parsed["X-Lda-Quota-Warning"] for _, parsed in warnings_in(box))
    assert kinds == ["messages 50%", "storage 95%"]


def test_an_unreadable_template_leaves_the_delivery_alone(make_site, tmp_path):
    site = make_site(quota_warnings=["storage 80%"],
                     quota_warning_template=str(tmp_path / "missing.txt"))
    box = site.create("a@example.org", "--quota-storage", str(LIMIT))
    done = site.deliver(sized("<m1@example.org>", 9000), "a@example.org", check=0)
    assert warnings_in(box) == []
    assert len(maildir_files(box)) == 1
    [line] = [l for l in done.stderr.decode().splitlines() if "quota warning" in l]
    assert "a@example.org: quota warning not delivered" in line and "missing.txt" in line
    assert "status=sent" in done.stderr.decode()


def test_the_admins_template_is_filled_in(make_site, tmp_path):
    template = tmp_path / "warning.txt"
    template.write_text("Subject: Postfach zu $percent% voll – $address\n\n"
                        "$kind: $used von $limit (Schwelle $threshold%).\n")
    site = make_site(quota_warnings=["storage 80%"], quota_warning_template=str(template),
                     postmaster="postmaster@example.org")
    box = site.create("a@example.org", "--quota-storage", str(LIMIT))
    site.deliver(sized("<m1@example.org>", 8200), "a@example.org", check=0)
    [(path, parsed)] = warnings_in(box)
    assert parsed["Subject"] == "Postfach zu 82% voll – a@example.org"
    assert parsed["From"] == "Mail Delivery System <postmaster@example.org>"
    assert b"=?UTF-8?B?" in path.read_bytes().split(b"\n\n")[0]
    assert parsed.get_content() == "storage: 8.0 KiB von 9.8 KiB (Schwelle 80%).\n"


def test_a_retried_trigger_gives_no_second_warning(warned):
    box = warned.maildir_a
    trigger = sized("<m1@example.org>", 8500)
    warned.deliver(trigger, "a@example.org", check=0)
    [(_, first)] = warnings_in(box)
    # The trigger is stored again as new (its DeliveredTo row lost, its file
    # gone, the usage back below 80 %): the same warning is a duplicate.
    [copy] = [p for p in maildir_files(box) if b"<m1@example.org>" in p.read_bytes()]
    copy.unlink()
    with closing(sqlite3.connect(warned.db())) as conn, conn:
        assert conn.execute("DELETE FROM delivered_to WHERE message_id = "
                            "'m1@example.org'").rowcount == 1
    warned.run("quota", "recalc", "a@example.org", check=0)
    warned.deliver(trigger, "a@example.org", check=0)
    assert len([p for p in maildir_files(box) if b"<m1@example.org>" in p.read_bytes()]) == 1
    assert [parsed["Message-ID"] for _, parsed in warnings_in(box)] == [first["Message-ID"]]
    assert maildirsize_total(box) == stored_total(box)


def test_the_sent_record_replaces_a_symlink_rather_than_following_it(warned, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not lda's\n")
    (warned.maildir_a / "lda-quota-warnings").symlink_to(elsewhere)
    warned.deliver(sized("<m1@example.org>", 8500), "a@example.org", check=0)
    assert len(warnings_in(warned.maildir_a)) == 1
    assert elsewhere.read_text() == "not lda's\n"
    record = warned.maildir_a / "lda-quota-warnings"
    assert not record.is_symlink() and record.read_text().startswith("storage 80 ")


@pytest.mark.parametrize("planted", ["symlink", "fifo"])
def test_courier_s_mark_is_never_followed_nor_waited_on(warned, tmp_path, planted):
    """quotawarn (Courier's once-a-day mark, touched by each warning) is not
    followed through a symlink nor opened blocking on a FIFO: the warning is
    delivered, the log says the mark was not updated, the target is as it was."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not lda's\n")
    os.utime(elsewhere, (1_000_000_000, 1_000_000_000))
    mark = warned.maildir_a / "quotawarn"
    if planted == "symlink":
        mark.symlink_to(elsewhere)
    else:
        os.mkfifo(mark)
    done = warned.deliver(sized("<m1@example.org>", 8500), "a@example.org", check=0)
    assert len(warnings_in(warned.maildir_a)) == 1
    assert elsewhere.read_text() == "not lda's\n" and elsewhere.stat().st_mtime == 1_000_000_000
    assert f"{warned.maildir_a}/quotawarn: not updated" in done.stderr.decode()


def test_a_mailbox_without_limit_gets_no_warning(make_site):
    site = make_site(quota_warnings=["storage 1%"], quota_storage=0)
    box = site.create("a@example.org")
    site.deliver(sized("<m1@example.org>", 9000), "a@example.org", check=0)
    assert len(maildir_files(box)) == 1 and not (box / "lda-quota-warnings").exists()


def test_per_user_mode_warns_by_the_quota_dovecot_wrote(user, tmp_path):
    config = write_lda_toml(tmp_path / "user.toml", {"mode": "user", "log": "stderr",
                                                      "quota_warnings": ["messages 50%"]})
    write_maildirsize(user.maildir, b"0S,4C\n0 0\n")
    env = {"LDA_CONFIG": str(config)}
    user.deliver(message("<m1@example.org>"), "alice@example.org", env=env, check=0)
    assert warnings_in(user.maildir) == []
    user.deliver(message("<m2@example.org>"), "alice@example.org", env=env, check=0)
    [(_, parsed)] = warnings_in(user.maildir)
    assert parsed["To"] == "alice@example.org"
    assert maildirsize_total(user.maildir) == (stored_total(user.maildir)[0], 3)
    assert (user.maildir / "lda-quota-warnings").read_text().startswith("messages 50 ")


@pytest.mark.parametrize("entry", ["storage 80", "disk 80%", "storage 0%", "storage=80%"])
def test_a_bad_threshold_stops_lda_with_exit_78(make_site, entry):
    site = make_site(quota_warnings=["messages 90%", entry])
    done = site.deliver(message(), "a@example.org", check=78)
    assert f"quota_warnings: {entry!r}" in done.stderr.decode()


def test_lmtp_delivers_the_warning_once(lmtp):
    server = lmtp(quota_warnings=["storage 80%"])
    box = server.site.create("w@example.org", "--quota-storage", str(LIMIT))
    client = server.client()
    try:
        for number, size in ((1, 8500), (2, 300)):
            _, replies = client.send("s@example.org", ["w@example.org", "a@example.org"],
                                     sized(f"<m{number}@example.org>", size, "w@example.org"))
            assert [r[:3] for r in replies] == ["250", "250"]
    finally:
        client.drop()
    [(_, parsed)] = warnings_in(box)
    assert parsed["To"] == "w@example.org"
    assert warnings_in(server.site.maildir("a@example.org")) == []


def test_dovecot_reads_the_warning_as_a_message_and_counts_it_as_lda_does(dovecot):  # noqa: F811
    """The real Dovecot (tests/dovecot.py): its quota plugin takes the limit
    from the maildirsize quota line, as per-user mode does."""
    server = dovecot
    server.configure(quota_rule=None)
    maildir = server.add_user("dora")
    write_maildirsize(maildir, b"2000S\n0 0\n")
    server.owner.chown_tree(maildir)
    config = write_lda_toml(server.root / "lda.toml", {"mode": "user",
                                                        "quota_warnings": ["storage 80%"]})
    config.chmod(0o644)
    done = server.lda("deliver", "-f", "sender@example.org", "dora@example.org",
                      home=server.home("dora"), env={"LDA_CONFIG": str(config)},
                      input=sized("<m1@example.org>", 1700, "dora@example.org"))
    assert done.returncode == 0, done.stderr
    assert len(server.flags("dora")) == 2  # the message and the warning
    headers = server.doveadm("-f", "flow", "fetch", "-u", "dora", "hdr",
                             "mailbox", "INBOX", "all").stdout
    assert headers.count("Auto-Submitted: auto-generated") == 1
    used, count = maildirsize_total(maildir)
    assert (used, count) == stored_total(maildir) and used > 2000 and count == 2
    kib = -(-used // 1024)  # doveadm quota get rounds bytes up to KiB
    assert server.quota("dora") == {"STORAGE": (kib, 2), "MESSAGE": (count, None)}
    server.recalc("dora")  # Dovecot's own recount of every file agrees
    assert server.quota("dora") == {"STORAGE": (kib, 2), "MESSAGE": (count, None)}
    # Dovecot's users empty the mailbox: usage falls below 80 %, and the
    # next crossing warns again, under another Message-ID.
    server.expunge("dora", "mailbox", "INBOX", "all")
    server.recalc("dora")
    assert maildirsize_total(maildir) == (0, 0)
    done = server.lda("deliver", "-f", "sender@example.org", "dora@example.org",
                      home=server.home("dora"), env={"LDA_CONFIG": str(config)},
                      input=sized("<m2@example.org>", 1700, "dora@example.org"))
    assert done.returncode == 0, done.stderr
    ids = server.doveadm("-f", "flow", "fetch", "-u", "dora", "hdr.message-id",
                         "mailbox", "INBOX", "header", "Auto-Submitted", "auto-generated").stdout
    assert ids.count("quota-warning.storage-80.") == 1
    assert server.quota("dora")["STORAGE"][0] == -(-maildirsize_total(maildir)[0] // 1024)
    # A message larger than the limit Dovecot set is refused for good, at once.
    done = server.lda("deliver", "-f", "sender@example.org", "dora@example.org",
                      home=server.home("dora"), env={"LDA_CONFIG": str(config)},
                      input=sized("<big@example.org>", 2500, "dora@example.org"))
    assert done.returncode == 77 and done.stderr.startswith(b"5.2.3 "), done.stderr
    assert len(server.flags("dora")) == 2

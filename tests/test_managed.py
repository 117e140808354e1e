"""Managed mode: the directory, aliases and forwards, quota, partial
delivery, external forwards, expiry.  The installed command throughout,
except where the clock must be injected."""

import io
import json
import sqlite3
import subprocess
import sys

import pytest

from conftest import LDA, fill_mailbox, maildir_files, message


def partials(site, name="default"):
    conn = sqlite3.connect(site.db(name))
    try:
        return conn.execute("SELECT recipient, target, reason, spool_file, attempts "
                            "FROM partial_deliveries ORDER BY id").fetchall()
    finally:
        conn.close()


def test_unknown_recipient_exits_67(site):
    site.create("alice@example.org")
    done = site.deliver(message(), "nobody@example.org", check=67)
    assert done.stderr.decode().strip().splitlines()[0].startswith("5.1.1 ")


def test_mailbox_delivery_and_extension(site):
    box = site.create("alice@example.org")
    site.deliver(message(message_id="<1@x>"), "Alice@Example.org", check=0)
    site.deliver(message(message_id="<2@x>"), "alice+news@example.org", check=0)
    assert len(maildir_files(box)) == 2


def test_alias_fan_out_with_include(site, tmp_path):
    boxes = [site.create(f"{n}@example.org") for n in ("alice", "bob", "carol", "dave")]
    members = tmp_path / "members"
    members.write_text("# the rest of the team\ncarol@example.org,\n  dave\n")
    site.aliases.write_text(f"team: alice, bob@example.org,\n  :include:{members}\n")
    done = site.deliver(message(), "team@example.org", check=0)
    assert [len(maildir_files(b)) for b in boxes] == [1, 1, 1, 1]
    assert done.stderr.count(b"status=sent") == 4
    site.deliver(message(), "team@example.org", check=0)  # a resend
    assert [len(maildir_files(b)) for b in boxes] == [1, 1, 1, 1]


def test_fan_out_and_direct_copy_give_one_copy(site):
    alice = site.create("alice@example.org")
    site.create("bob@example.org")
    site.aliases.write_text("list: alice@example.org, bob@example.org\n")
    site.deliver(message(), "alice@example.org", check=0)
    site.deliver(message(), "list@example.org", check=0)
    assert len(maildir_files(alice)) == 1


def create_many(site, addresses):
    """Mailboxes made by the library in one process: `lda mailbox create`
    once per address would start Python 150 times."""
    script = ("import sys; from lda.config import load_config; "
              "from lda.admin.mailboxes import create_mailbox, open_directory; "
              "c = load_config(None); d = open_directory(c); "
              "[create_mailbox(d, c, a) for a in sys.argv[1:]]; d.close()")
    subprocess.run([sys.executable, "-c", script, *addresses], env=site.env, check=True)


def test_more_recipients_than_one_sync_run_get_one_copy_each(site):
    """Envelope recipients past SYNC_BATCH (their copies are written, then
    fsynced, a run at a time) and an alias of as many members (their links
    synced a run at a time): each mailbox gets the message once, the
    recipients' copies each with their own Delivered-To, and no copy is
    left in a tmp/."""
    from lda.deliver.delivery import SYNC_BATCH

    addresses = [f"u{i}@example.org" for i in range(2 * SYNC_BATCH + 22)]
    create_many(site, addresses)
    done = site.deliver(message(message_id="<each@x>"), *addresses, check=0)
    assert done.stderr.count(b"status=sent") == len(addresses)
    boxes = [site.maildir(a) for a in addresses]
    for address, box in zip(addresses, boxes):
        [path] = maildir_files(box)
        head = path.read_bytes().split(b"\n\n", 1)[0]
        assert head.count(b"Delivered-To:") == 1, address
        assert f"Delivered-To: {address}\n".encode() in head + b"\n", address
    site.aliases.write_text("all: " + ",\n  ".join(addresses) + "\n")
    site.deliver(message(message_id="<alias@x>"), "all@example.org", check=0)
    site.deliver(message(message_id="<each@x>"), *addresses, check=0)  # a resend
    assert [len(maildir_files(b)) for b in boxes] == [2] * len(addresses)
    assert [p for b in boxes for p in (b / "tmp").iterdir()] == []


def test_two_recipients_of_one_message_sharing_a_mailbox_give_one_copy(site):
    """alice directly and through a list, in one envelope: the recipients
    are delivered together unless they share a mailbox, so the list's turn
    finds alice's row as if it came second."""
    alice = site.create("alice@example.org")
    bob = site.create("bob@example.org")
    site.aliases.write_text("list: alice@example.org, bob@example.org\n")
    done = site.deliver(message(), "alice@example.org", "list@example.org", check=0)
    assert [len(maildir_files(alice)), len(maildir_files(bob))] == [1, 1]
    assert done.stderr.count(b"status=sent") == 2, done.stderr
    assert done.stderr.count(b"status=duplicate") == 1, done.stderr


def test_alias_cycle_without_mailbox_is_a_configuration_error(site):
    site.create("alice@example.org")
    site.aliases.write_text("ping: pong\npong: ping\n")
    done = site.deliver(message(), "ping@example.org", check=78)
    assert b"loop" in done.stderr


def test_self_reference_delivers_to_the_mailbox(site):
    alice = site.create("alice@example.org")
    bob = site.create("bob@example.org")
    site.aliases.write_text("alice: alice, bob\n")
    site.deliver(message(), "alice@example.org", check=0)
    assert (len(maildir_files(alice)), len(maildir_files(bob))) == (1, 1)


def test_forward_target_over_quota_is_a_partial_delivery(site):
    alice = site.create("alice@example.org")
    bob = site.create("bob@example.org", "--quota-storage", "1K")
    fill_mailbox(bob, 1024)
    site.aliases.write_text("team: alice, bob\n")
    msg = message(body=b"x" * 500 + b"\n")
    done = site.deliver(msg, "team@example.org", check=0)
    assert len(maildir_files(alice)) == 1 and maildir_files(bob) == []
    [(recipient, target, reason, spool, attempts)] = partials(site)
    assert (recipient, target, attempts) == ("team@example.org", "bob@example.org", 1)
    assert reason == "4.2.2 Quota exceeded (mailbox for user is full)"
    with open(spool, "rb") as f:
        assert f.read().endswith(msg)
    # Postfix's word for a target that is tried again later
    assert b"dsn=4.2.2, status=deferred (" in done.stderr and b"kept for retry" in done.stderr
    site.deliver(msg, "team@example.org", check=0)  # resent: still one record
    assert [p[4] for p in partials(site)] == [2]
    assert len(maildir_files(alice)) == 1


def test_reused_message_ids_kept_for_a_full_forward_target_are_each_retried(make_site):
    """verify_body: messages reusing one Message-ID with other bodies are
    each recorded under their own key (Message-ID + digest).  When bob is
    full for two of them, each partial record must carry its own key: under
    the bare Message-ID the third would count as another attempt of the
    second, never be spooled, and never reach bob."""
    site = make_site(verify_body=True)
    alice = site.create("alice@example.org")
    bob = site.create("bob@example.org", "--quota-messages", "1")
    site.aliases.write_text("team: alice, bob\n")
    for body in (b"first\n", b"second\n", b"third\n"):
        site.deliver(message(body=body), "team@example.org", check=0)
    assert [p[4] for p in partials(site)] == [1, 1]
    site.run("mailbox", "set-quota", "bob@example.org", "--messages", "0", check=0)
    site.run("partial", "retry", check=0)
    assert [len(maildir_files(alice)), len(maildir_files(bob))] == [3, 3]


def test_every_target_over_quota_is_a_temporary_failure(site):
    fill_mailbox(site.create("bob@example.org", "--quota-storage", "1K"), 1024)
    site.create("carol@example.org", "--quota-messages", "1")
    site.deliver(message(message_id="<first@x>"), "carol@example.org", check=0)
    site.aliases.write_text("team: bob, carol\n")
    done = site.deliver(message(body=b"y" * 500 + b"\n"), "team@example.org", check=75)
    assert partials(site) == []
    assert done.stderr.decode().strip().splitlines()[0].startswith("4.")


@pytest.mark.parametrize("settings, argv, code, status", [
    ({}, [], 75, "4.2.2"),
    ({"quota_full": "reject"}, [], 77, "5.2.2"),
    ({}, ["-e"], 77, "5.2.2"),
], ids=["tempfail", "reject-config", "reject-flag"])
def test_primary_over_quota(make_site, settings, argv, code, status):
    site = make_site(**settings)
    box = site.create("alice@example.org", "--quota-storage", "1K")
    site.deliver(message(message_id="<small@x>"), "alice@example.org", check=0)
    done = site.run("deliver", *argv, "-f", "s@example.org", "alice@example.org",
                    input=message(body=b"z" * 700 + b"\n"), check=code)
    assert done.stderr.decode().strip().splitlines()[0].startswith(status + " ")
    assert len(maildir_files(box)) == 1
    first_line = (box / "maildirsize").read_text().splitlines()[0]
    assert first_line == "1024S"


def test_maildirsize_tracks_deliveries(site):
    box = site.create("alice@example.org", "--quota-storage", "1M",
                      "--quota-messages", "100")
    for i in range(3):
        site.deliver(message(message_id=f"<q{i}@x>"), "alice@example.org", check=0)
    lines = (box / "maildirsize").read_text().splitlines()
    assert lines[0] == "1048576S,100C"
    total = sum(int(line.split()[0]) for line in lines[1:])
    assert total == sum(p.stat().st_size for p in maildir_files(box))


def test_external_forward_is_reinjected_once(site):
    alice = site.create("alice@example.org", "--forward", "alice@elsewhere.example.net")
    msg = message()
    site.deliver(msg, "alice@example.org", sender="sender@example.org", check=0)
    site.deliver(msg, "alice@example.org", sender="sender@example.org", check=0)
    [(args, sent)] = site.sent()
    assert args[-4:] == ["sender@example.org", "--", "alice@elsewhere.example.net"][-4:] \
        or args[-3:] == ["sender@example.org", "--", "alice@elsewhere.example.net"]
    assert "-i" in args and "-f" in args
    # This hop's Delivered-To for the loop check; no Return-Path (RFC 5321
    # section 4.4: a message sent on carries none; the next final delivery
    # writes its own).
    assert sent == b"Delivered-To: alice@example.org\n" + msg
    assert len(maildir_files(alice)) == 1  # --keep-copy is the default


def test_forward_without_keep_copy(site):
    alice = site.create("alice@example.org", "--forward", "bob@example.org",
                        "--no-keep-copy")
    bob = site.create("bob@example.org")
    site.deliver(message(), "alice@example.org", check=0)
    assert (len(maildir_files(alice)), len(maildir_files(bob))) == (0, 1)


def test_failing_sendmail_with_local_copy_is_partial(make_site, tmp_path):
    failing = tmp_path / "failing-sendmail"
    failing.write_text("#!/bin/sh\necho 'queue file write error' >&2\nexit 75\n")
    failing.chmod(0o755)
    site = make_site(sendmail=[str(failing)])
    alice = site.create("alice@example.org", "--forward", "a@elsewhere.example.net")
    site.deliver(message(), "alice@example.org", check=0)
    assert len(maildir_files(alice)) == 1
    [(_, target, reason, _, _)] = partials(site)
    assert target == "a@elsewhere.example.net" and "exited 75" in reason


def test_returned_forward_is_seen_as_a_loop(site):
    alice = site.create("alice@example.org", "--forward", "a@elsewhere.example.net")
    site.deliver(message(), "alice@example.org", check=0)
    [(_, sent)] = site.sent()
    bounced_back = b"Received: from elsewhere by here; Tue, 24 Nov 2026\n" + sent
    site.deliver(bounced_back, "alice@example.org", check=65)
    assert len(maildir_files(alice)) == 1


def test_expiry_is_honoured(site):
    """Inject the clock: 167 hours later a resend is a duplicate, 169 not."""
    from lda.deliver.command import deliver

    box = site.create("alice@example.org")
    start = 1_800_000_000.0
    for hours, expected in ((0, 1), (167, 1), (169 + 167, 2)):
        status = deliver(["-f", "s@example.org", "alice@example.org"],
                         stdin=io.BytesIO(message()), environ=site.env,
                         clock=lambda h=hours: start + h * 3600)
        assert status == 0
        assert len(maildir_files(box)) == expected, hours


def test_expired_rows_are_cleaned_up_during_deliveries(make_site):
    from lda.deliver.command import deliver

    site = make_site(expiration_hours=1, cleanup_interval_seconds=60)
    site.create("alice@example.org")
    start = 1_800_000_000.0
    for i in range(5):
        deliver(["alice@example.org"], stdin=io.BytesIO(message(message_id=f"<e{i}@x>")),
                environ=site.env, clock=lambda: start)
    deliver(["alice@example.org"], stdin=io.BytesIO(message(message_id="<late@x>")),
            environ=site.env, clock=lambda: start + 2 * 3600)
    conn = sqlite3.connect(site.db())
    rows = [r[0] for r in conn.execute("SELECT message_id FROM delivered_to")]
    conn.close()
    assert rows == ["late@x"]


def test_mailbox_admin_commands(site):
    site.create("alice@example.org", "--quota-storage", "2G")
    listed = json.loads(site.run("mailbox", "list", "--json", check=0).stdout)
    assert [(m["address"], m["quota_storage"]) for m in listed] == [
        ("alice@example.org", 2 * 1024**3)]
    done = site.run("mailbox", "create", "alice@example.org")
    assert done.returncode == 73 and b"exists" in done.stderr  # EX_CANTCREAT
    site.run("mailbox", "delete", "alice@example.org", check=0)
    site.deliver(message(), "alice@example.org", check=67)


def test_aliases_check_reports_line_numbers(site):
    site.aliases.write_text("ok: alice@example.org\nbad: |/bin/true\n")
    done = site.run("aliases", "check", "--json")
    problems = json.loads(done.stdout)
    assert done.returncode == 78
    assert [p["line"] for p in problems] == [2]


def test_bare_alias_key_does_not_capture_a_remote_forward(site):
    site.create("alice@example.org", "--forward", "root@elsewhere.example.net")
    site.create("admin@example.org")
    site.aliases.write_text("root: admin\n")
    site.deliver(message(), "alice@example.org", check=0)
    assert [args[-1] for args, _ in site.sent()] == ["root@elsewhere.example.net"]
    assert maildir_files(site.maildir("admin@example.org")) == []


def test_group_config_option_reaches_deliver(site):
    box = site.create("alice@example.org")
    env = {k: v for k, v in site.env.items() if k != "LDA_CONFIG"}
    done = subprocess.run([LDA, "-c", str(site.config), "deliver", "alice@example.org"],
                          input=message(), env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert len(maildir_files(box)) == 1


def test_negative_quota_is_refused_at_create(site):
    done = site.run("mailbox", "create", "neg@example.org", "--quota-messages", "-5")
    assert done.returncode == 64 and b"quota" in done.stderr  # a bad command line


def _refuse_unknown(site):
    pass  # nobody@ has no mailbox


def _refuse_moving(site):
    site.create("mover@example.org")
    with sqlite3.connect(site.state / "directory.sqlite") as conn:
        conn.execute("INSERT INTO moves (address, source_db, target_db, step) "
                     "VALUES ('mover@example.org', 'default', 'db2', 'copying')")
    conn.close()


def _refuse_loop(site):
    site.aliases.write_text("loop1: loop2\nloop2: loop1\n")


@pytest.mark.parametrize("refusal, recipient, error", [
    (_refuse_unknown, "nobody@example.org", "UnknownRecipient"),
    (_refuse_moving, "mover@example.org", "MailboxMoving"),
    (_refuse_loop, "loop1@example.org", "ConfigError"),
], ids=["unknown", "moving", "alias-loop"])
def test_a_resolve_that_raises_leaves_no_read_transaction_open(site, refusal, recipient,
                                                                 error):
    """resolve() reads the directory in one read transaction (one snapshot);
    whatever it raises, the transaction is over, or this resolver (kept for
    the life of an lda lmtp worker) would go on reading the directory as it
    was: a mailbox created afterwards would stay unknown."""
    from lda.config import load_config
    from lda.deliver.resolve import make_resolver

    site.create("alice@example.org")
    refusal(site)
    config = load_config(str(site.config), environ=site.env)
    resolver = make_resolver(config, site.env)
    assert resolver.resolve("alice@example.org").canonical == "alice@example.org"
    with pytest.raises(Exception) as raised:
        resolver.resolve(recipient)
    assert type(raised.value).__name__ == error
    assert not resolver.directory.conn.in_transaction
    site.create("later@example.org")  # another process commits meanwhile
    plan = resolver.resolve("later@example.org")
    assert [t.mailbox for t in plan.targets] == ["later@example.org"]
    assert plan.holds(resolver)


def test_a_directory_snapshot_reads_one_version_and_nests(site):
    """Inside Directory.snapshot() a commit by another process is not seen
    (one read transaction); after it, it is; a snapshot inside another
    leaves the transaction to the outer one."""
    from lda.store.directory import Directory

    site.create("alice@example.org")
    directory = Directory(str(site.state / "directory.sqlite"))
    with directory.snapshot():
        version = directory.version()
        site.create("bob@example.org")
        with directory.snapshot():
            assert directory.mailbox("bob@example.org") is None
        assert directory.conn.in_transaction
        assert directory.version() == version
    assert not directory.conn.in_transaction
    assert directory.mailbox("bob@example.org") is not None
    assert directory.version() != version
    directory.close()

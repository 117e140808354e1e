"""lda behind a real Postfix on loopback: mailbox_command for unix users,
a pipe(8) transport and LMTP for virtual mailboxes, resends, per-recipient
deferral, partial deliveries and forwards re-injected through Postfix.

Every test starts its own Postfix instance (tests/postfix.py) and runs the
installed lda; messages go in by SMTP and the assertions read the Maildirs,
lda's SQLite files, Postfix's queue and its mail log.
"""

import email
import sqlite3

import pytest
from conftest import (
    Site,
    SyslogSink,
    fill_mailbox,
    maildir_files,
    message,
    wait_until,
)
from postfix import (
    BOUNCED, DEFERRED, LDA, LOCAL_DOMAIN, OUTSIDE_DOMAIN, SENDER, SENDMAIL, SENT, VIRTUAL_DOMAIN)

pytest_plugins = ["postfix"]  # its fixtures: mail_root, make_user, lda_lmtp, make_postfix

TRANSPORTS = ["pipe", "lmtp-unix", "lmtp-tcp"]


def assert_sent(delivery):
    """The whole log line on failure: Postfix's reason says why."""
    assert delivery.status == SENT, delivery


def address(local):
    return f"{local}@{VIRTUAL_DOMAIN}"


def fields(path):
    return email.message_from_bytes(path.read_bytes())


def one_file(maildir):
    files = maildir_files(maildir)
    assert len(files) == 1, files
    return files[0]


class Stack:
    """A managed lda site behind a Postfix instance, through one transport.
    With the pipe transport lda runs as `owner`, who must own the state."""

    def __init__(self, site, postfix, owner=None, outside=None):
        self.site = site
        self.postfix = postfix
        self.owner = owner
        self.outside = outside  # the catch-all Maildir of OUTSIDE_DOMAIN

    def admin(self, *args):
        done = self.site.run(*args, check=0)
        if self.owner:
            self.owner.chown_tree(self.site.state)
        return done

    def create(self, local, *options):
        self.admin("mailbox", "create", address(local), *options)
        return self.site.maildir(address(local))

    def partials(self):
        conn = sqlite3.connect(self.site.db())
        try:
            return conn.execute("SELECT recipient, target FROM partial_deliveries").fetchall()
        finally:
            conn.close()


def pipe_service(user, site):
    """master.cf: lda as a pipe(8) transport, as README.md gives it."""
    return (f"lda unix - n n - - pipe\n  flags=DRhu user={user.name} argv={LDA} deliver "
            f"-c {site.config} -f ${{sender}} -a ${{original_recipient}} ${{recipient}}\n")


def route_outside_to(keeper, postfix):
    """OUTSIDE_DOMAIN goes to a catch-all Maildir that Postfix's own
    virtual(8) writes as `keeper`: another host, as far as lda can tell."""
    postfix.main.update({
        "transport_maps": f"inline:{{{OUTSIDE_DOMAIN}=virtual:}}",
        "virtual_mailbox_base": str(keeper.home),
        "virtual_mailbox_maps": f"inline:{{@{OUTSIDE_DOMAIN}=elsewhere/}}",
        "virtual_uid_maps": f"static:{keeper.uid}",
        "virtual_gid_maps": f"static:{keeper.gid}",
        "virtual_minimum_uid": "1"})
    return keeper.home / "elsewhere"


@pytest.fixture
def make_stack(mail_root, make_postfix, make_user, lda_lmtp):
    """make_stack(transport, outside=False, main=None, **lda_settings) -> a
    started Stack; `main` adds main.cf settings.

    "pipe": `lda deliver` as a pipe(8) transport, run as a throwaway user
    who owns the site; "lmtp-unix", "lmtp-tcp": `lda lmtp` (run as root).
    outside=True also routes OUTSIDE_DOMAIN (route_outside_to) and makes lda
    re-inject forwards with this instance's sendmail.  That needs an LMTP
    transport: Postfix's set-gid postdrop takes a private config directory
    (sendmail -C) from root only, unless /etc/postfix/main.cf lists it in
    alternate_config_directories."""

    def make(transport, outside=False, main=None, **settings):
        postfix = make_postfix(start=False)
        postfix.main.update(main or {})
        if outside:
            settings["sendmail"] = [SENDMAIL, "-C", str(postfix.config_dir), "-i"]
        (mail_root / f"site-{transport}").mkdir(mode=0o755)
        site = Site(mail_root / f"site-{transport}", **settings)
        owner = make_user("ldavm") if transport == "pipe" else None
        if owner:
            postfix.main.update({"virtual_transport": "lda",
                                 "lda_destination_recipient_limit": "1"})
            postfix.services += pipe_service(owner, site)
        else:
            server = lda_lmtp(site, transport.removeprefix("lmtp-"))
            postfix.main["virtual_transport"] = server.transport
        catch_all = route_outside_to(make_user("ldaout", runs_lda=False),
                                     postfix) if outside else None
        return Stack(site, postfix.start(), owner, catch_all)

    return make


def test_mailbox_command_delivers_once_to_a_unix_user(make_postfix, make_user):
    user = make_user()
    postfix = make_postfix(main={"mailbox_command": f"{LDA} deliver"})
    recipient = f"{user.name}@{LOCAL_DOMAIN}"
    msg = message(message_id="<unix-user@example.org>")

    first = postfix.send(msg, [recipient])
    sent = postfix.wait_for_delivery(first, recipient)
    assert (sent.status, sent.relay, sent.dsn) == (SENT, "local", "2.0.0")
    path = one_file(user.home / "Maildir")
    assert path.stat().st_uid == user.uid
    # local(8) prepends both; lda must not add its own
    assert fields(path).get_all("Delivered-To") == [recipient]
    assert fields(path).get_all("Return-Path") == [f"<{SENDER}>"]
    assert (user.home / ".local" / "state" / "lda" / "lda.sqlite").is_file()

    second = postfix.send(msg, [recipient])  # the same Message-ID and Date
    assert_sent(postfix.wait_for_delivery(second, recipient))
    assert maildir_files(user.home / "Maildir") == [path]
    postfix.wait_for_queue_empty()


@pytest.mark.parametrize("line", [f"{LDA} deliver", f'{LDA} -f "$SENDER" -a "$RECIPIENT"'],
                         ids=["deliver", "dovecot-lda-line"])
def test_mailbox_command_keeps_local_s_return_path_for_a_sender_it_filtered(
        make_postfix, make_user, line):
    """local(8) writes Return-Path: <o'brien@...> on top, and hands the
    command $SENDER through command_expansion_filter: o_brien@...  lda took
    local(8)'s field for a stale one and replaced it with the filtered
    address (and Sieve's replies would go there); dovecot-lda keeps it.
    Both of local(8)'s fields are the delivery's own: lda adds neither."""
    user = make_user()
    postfix = make_postfix(main={"mailbox_command": line, "recipient_delimiter": "+"})
    recipient = f"{user.name}+a&b@{LOCAL_DOMAIN}"
    sender = "o'brien&co@example.org"
    queued = postfix.send(message(message_id="<filtered@example.org>"), [recipient],
                          sender=sender)
    assert_sent(postfix.wait_for_delivery(queued, recipient))
    path = one_file(user.home / "Maildir")
    assert fields(path).get_all("Return-Path") == [f"<{sender}>"]
    assert fields(path).get_all("Delivered-To") == [recipient]


@pytest.mark.parametrize("configured", [False, True], ids=["no-lda.toml", "syslog_socket"])
def test_mailbox_command_over_quota_defers_with_the_reason_alone(make_postfix, make_user,
                                                                 mail_root, configured):
    """Postfix's defer reason (and so a bounce) once read "mailbox full: ...
    lda[30067]: <...>: to=<...> ... status=failed": lda's log line."""
    user = make_user()
    maildir = user.home / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "maildirsize").write_text("1000S\n1000 0\n")  # full, not too big
    user.chown_tree(user.home)
    main = {"mailbox_command": f"{LDA} deliver"}
    if configured:  # the default log = "auto", its syslog in a socket the test reads
        sink = SyslogSink(mail_root / "log")
        (mail_root / "log").chmod(0o666)
        config = mail_root / "lda.toml"
        config.write_text(f'mode = "user"\nsyslog_socket = "{sink.path}"\n')
        main["export_environment"] = f"TZ MAIL_CONFIG LANG LDA_CONFIG={config}"
    postfix = make_postfix(main=main)
    recipient = f"{user.name}@{LOCAL_DOMAIN}"
    queue_id = postfix.send(message(message_id="<full@example.org>"), [recipient])
    logged = postfix.wait_for_delivery(queue_id, recipient)
    assert (logged.status, logged.dsn) == (DEFERRED, "4.2.2"), logged
    # What the bounce would say: no usage or limit (tests/test_quota_replies.py).
    reason = "Quota exceeded (mailbox for user is full)"
    assert reason in logged.detail and "to=<" not in logged.detail, logged
    assert "status=" not in logged.detail and logged.detail.count("lda: ") <= 1, logged
    assert "1000" not in logged.detail, logged
    if configured:
        assert logged.detail == reason + " ", logged  # nothing more
        [(_, line)] = wait_until(sink.records, 10, "lda's line in syslog")
        assert (f"<full@example.org>: to=<{recipient}>, relay=lda, dsn=4.2.2, "
                f"status=deferred (mailbox full: {recipient} uses 1000 of 1000 bytes") in line
        sink.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_virtual_mailboxes_get_one_copy_even_when_resent(make_stack, transport):
    stack = make_stack(transport)
    boxes = {address(n): stack.create(n) for n in ("alice", "bob")}
    postfix = stack.postfix
    msg = message(message_id=f"<resent-{transport}@example.org>")

    first = postfix.send(msg, list(boxes))
    for recipient, box in boxes.items():
        assert_sent(postfix.wait_for_delivery(first, recipient))
        path = one_file(box)
        assert fields(path).get_all("Delivered-To") == [recipient]
        assert fields(path).get_all("Return-Path") == [f"<{SENDER}>"]

    second = postfix.send(msg, list(boxes))  # the same Message-ID and Date
    for recipient, box in boxes.items():
        again = postfix.wait_for_delivery(second, recipient)
        assert_sent(again)
        if transport != "pipe":  # pipe(8) logs no output on success
            assert "already delivered, duplicate discarded" in again.detail
        assert len(maildir_files(box)) == 1
    postfix.wait_for_queue_empty()


def exit_case(transport, local, settings, status, dsn, reason, marks=()):
    return pytest.param(transport, local, settings, status, dsn, reason, marks=marks,
                        id=f"{transport}-{local}-{status}"
                        + ("-quota_full=reject" if settings else ""))


# The text an MTA puts in its log and bounce: the figures are lda's log's alone.
FULL = "Quota exceeded (mailbox for user is full)"
TOO_BIG = "Message is larger than the mailbox quota"
EXIT_CASES = [
    exit_case("pipe", "nobody", {}, BOUNCED, "5.1.1", "unknown recipient"),
    exit_case("pipe", "full", {}, DEFERRED, "4.2.2", FULL),
    exit_case("pipe", "full", {"quota_full": "reject"}, BOUNCED, "5.2.2", FULL),
    exit_case("lmtp-unix", "nobody", {}, BOUNCED, "5.1.1", "unknown recipient"),
    exit_case("lmtp-unix", "full", {}, DEFERRED, "4.2.2", FULL),
    exit_case("lmtp-unix", "full", {"quota_full": "reject"}, BOUNCED, "5.2.2", FULL),
    # Larger than the whole quota: returned at once, never retried.
    exit_case("pipe", "tiny", {}, BOUNCED, "5.2.3", TOO_BIG),
    exit_case("lmtp-unix", "tiny", {}, BOUNCED, "5.2.3", TOO_BIG),
]


@pytest.mark.parametrize("transport, local, settings, status, dsn, reason", EXIT_CASES)
def test_lda_answer_becomes_the_postfix_status(make_stack, transport, local, settings,
                                               status, dsn, reason):
    stack = make_stack(transport, **settings)
    fill_mailbox(stack.create("full", "--quota-storage", "1M"), 1024**2)
    stack.create("tiny", "--quota-storage", "1")
    queue_id = stack.postfix.send(message(message_id="<status@example.org>"),
                                  [address(local)])
    logged = stack.postfix.wait_for_delivery(queue_id, address(local))
    assert reason in logged.detail  # lda's one-line reason reaches the mail log
    # lda's reason, before the log lines this stack's log = "stderr" adds:
    # no figures.
    said = logged.detail.partition(" lda[")[0]
    assert "uses" not in said and "may hold" not in said, logged
    assert (logged.status, logged.dsn) == (status, dsn)


def test_lmtp_defers_only_the_recipient_over_quota(make_stack):
    stack = make_stack("lmtp-unix")
    postfix = stack.postfix
    boxes = {address(n): stack.create(n) for n in ("a", "b", "c", "d")}
    full = address("full")
    boxes[full] = stack.create("full", "--quota-storage", "1M")
    fill_mailbox(boxes[full], 1024**2)
    msg = message(message_id="<five@example.org>")

    queue_id = postfix.send(msg, list(boxes))
    deferred = postfix.wait_for_delivery(queue_id, full)
    assert (deferred.status, deferred.dsn) == (DEFERRED, "4.2.2")
    # lmtp_rcpt_check_quota = true, the default: refused before the message
    # is sent (a client such as fetchmail handles a 4XX there, and not
    # after DATA, as Postfix does both).
    assert "in reply to RCPT TO command" in deferred.detail, deferred.detail
    for recipient in list(boxes)[:4]:
        assert_sent(postfix.wait_for_delivery(queue_id, recipient))
    wait_until(lambda: postfix.queued_recipients() == [full], 10, "only <full> queued",
               lambda: f"queued: {postfix.queued_recipients()}")
    assert [len(maildir_files(box)) for box in boxes.values()] == [1, 1, 1, 1, 0]

    stack.admin("mailbox", "set-quota", full, "--storage", "0")
    postfix.flush()
    assert postfix.wait_for_delivery(queue_id, full, SENT).dsn == "2.0.0"
    postfix.wait_for_queue_empty()
    assert [len(maildir_files(box)) for box in boxes.values()] == [1, 1, 1, 1, 1]
    for recipient in boxes:
        assert len(postfix.deliveries(recipient, SENT, queue_id)) == 1


def test_lmtp_delivers_a_line_of_5000_bytes_whole_to_each_recipient(make_stack):
    """Postfix's lmtp(8) with lmtp_line_length_limit = 0 sends long lines
    whole.  Each recipient gets its own reply after the dot (RFC 2033 4.2)
    and the message as it was sent; once, lda refused the line with a single
    reply, and Postfix bounced one recipient and timed out on the other."""
    stack = make_stack("lmtp-unix", main={"lmtp_line_length_limit": "0"})
    postfix = stack.postfix
    boxes = {address(n): stack.create(n) for n in ("a", "b")}
    line = (bytes(range(33, 127)) * 54)[:5000]  # every printable character
    assert len(line) == 5000
    msg = message(message_id="<long-line@example.org>", body=b"before\n" + line + b"\nafter\n")

    queue_id = postfix.send(msg, list(boxes))
    for recipient in boxes:
        assert_sent(postfix.wait_for_delivery(queue_id, recipient))
    postfix.wait_for_removal(queue_id)
    assert postfix.deliveries(status=DEFERRED) == [] and postfix.deliveries(status=BOUNCED) == []
    for recipient, box in boxes.items():
        stored = one_file(box).read_bytes()
        assert stored.endswith(b"\n\nbefore\n" + line + b"\nafter\n"), recipient
        assert len(postfix.deliveries(recipient, SENT, queue_id)) == 1


def test_a_pipe_command_for_two_recipients_bounces_the_refused_one_alone(
        mail_root, make_postfix, make_user):
    """pipe(8) with lda_destination_recipient_limit = 2 hands lda both
    recipients, and bounces both on a 5.X.X exit.  full@ (over quota under
    quota_full = "reject", with a Sieve script) is judged after bob's copy
    is stored: lda exited 77 and Postfix returned the message for bob too.
    lda now sends full@'s DSN itself, and Postfix counts both delivered."""
    postfix = make_postfix(start=False)
    (mail_root / "site-two").mkdir(mode=0o755)
    site = Site(mail_root / "site-two", quota_full="reject")
    owner = make_user("ldavm")
    postfix.main.update({"virtual_transport": "lda", "lda_destination_recipient_limit": "2"})
    # No D flag: pipe(8) prepends Delivered-To for one recipient only.
    postfix.services += (f"lda unix - n n - - pipe\n  flags=Rhu user={owner.name} "
                         f"argv={LDA} deliver -c {site.config} -f ${{sender}} ${{recipient}}\n")
    stack = Stack(site, postfix.start(), owner)
    bob = stack.create("bob")
    full = stack.create("full", "--quota-storage", "1K")
    (full / "lda.sieve").write_text("keep;\n")
    fill_mailbox(full, 1024)
    owner.chown_tree(site.root)  # the script, the filler, the sendmail stand-in's outbox

    recipients = [address("bob"), address("full")]
    queue_id = postfix.send(message(message_id="<two@example.org>"), recipients)
    for recipient in recipients:
        assert_sent(postfix.wait_for_delivery(queue_id, recipient))
    postfix.wait_for_removal(queue_id)
    assert postfix.deliveries(status=BOUNCED) == [] and postfix.deliveries(status=DEFERRED) == []
    assert len(maildir_files(bob)) == 1 and maildir_files(full) == []
    [(args, dsn)] = site.sent()
    assert args[-4:] == ["-f", "<>", "--", SENDER], args
    assert f"Final-Recipient: rfc822; {address('full')}".encode() in dsn
    assert b"Status: 5.2.2" in dsn


@pytest.mark.parametrize("transport", ["pipe", "lmtp-unix"])
def test_alias_with_a_full_member_is_sent_and_recorded_as_partial(make_stack, transport):
    stack = make_stack(transport)
    alice, bob = stack.create("alice"), stack.create("bob")
    full = stack.create("full", "--quota-storage", "1")
    stack.site.aliases.write_text("team: alice, bob, full\n")
    postfix = stack.postfix

    queue_id = postfix.send(message(message_id="<team@example.org>"), [address("team")])
    logged = postfix.wait_for_delivery(queue_id, address("team"))
    assert (logged.status, logged.dsn) == (SENT, "2.0.0")
    postfix.wait_for_removal(queue_id)
    assert postfix.deliveries(status=DEFERRED) == []
    assert postfix.queue() == []
    assert [len(maildir_files(b)) for b in (alice, bob, full)] == [1, 1, 0]
    assert stack.partials() == [(address("team"), address("full"))]


def test_external_forward_is_reinjected_through_postfix_once(make_stack):
    stack = make_stack("lmtp-unix", outside=True)
    postfix = stack.postfix
    bob = f"bob@{OUTSIDE_DOMAIN}"
    carol = stack.create("carol", "--forward", bob, "--keep-copy")
    msg = message(message_id="<forward@example.org>")

    first = postfix.send(msg, [address("carol")])
    assert postfix.wait_for_delivery(first, address("carol")).status == SENT
    forwarded = postfix.wait_for_delivery(None, bob)
    assert (forwarded.status, forwarded.relay) == (SENT, "virtual")
    # a new message that Postfix's sendmail handed to pickup(8)
    assert f"{forwarded.queue_id}: uid=0 from=<{SENDER}>" in postfix.log_text()
    postfix.wait_for_queue_empty()
    assert len(maildir_files(carol)) == 1
    copy = fields(one_file(stack.outside))
    # virtual(8)'s own, then the one lda put on the forwarded copy
    assert copy.get_all("Delivered-To") == [bob, address("carol")]
    assert copy.get_all("Return-Path") == [f"<{SENDER}>"]

    second = postfix.send(msg, [address("carol")])  # the same Message-ID and Date
    again = postfix.wait_for_delivery(second, address("carol"))
    assert "duplicate discarded" in again.detail
    postfix.wait_for_queue_empty()  # a re-injected copy would show in maildrop
    assert len(postfix.deliveries(bob)) == 1
    assert len(maildir_files(stack.outside)) == 1
    assert len(maildir_files(carol)) == 1


# --- dovecot-lda's and procmail's lines, only the path changed (issue 19) ---------

def dovecot_lda_service(user, extra=""):
    """master.cf: dovecot-lda's documented pipe(8) transport, its program
    path replaced by lda's and nothing else (no `deliver`, no -c)."""
    return (f"lda unix - n n - - pipe\n  flags=DRhu user={user.name} argv={LDA} "
            f"-f ${{sender}} -d ${{user}}@${{nexthop}} -a ${{original_recipient}}{extra}\n")


def make_folder(maildir, name, owner):
    for sub in ("tmp", "new", "cur"):
        (maildir / name / sub).mkdir(parents=True, exist_ok=True)
    owner.chown_tree(maildir)
    return maildir / name


@pytest.mark.parametrize("extra", ["", " -m ${extension}"], ids=["dovecot-lda", "m-extension"])
def test_dovecot_lda_pipe_line_delivers_with_only_the_path_changed(mail_root, make_postfix,
                                                                  make_user, extra):
    """The line names no lda.toml: LDA_CONFIG from main.cf's
    export_environment stands in for /etc/lda/lda.toml."""
    postfix = make_postfix(start=False)
    (mail_root / "site-dovecot").mkdir(mode=0o755)
    site = Site(mail_root / "site-dovecot")
    owner = make_user("ldavm")
    postfix.main.update({"virtual_transport": "lda", "lda_destination_recipient_limit": "1",
                         "recipient_delimiter": "+",
                         "export_environment": f"TZ MAIL_CONFIG LANG LDA_CONFIG={site.config}"})
    postfix.services += dovecot_lda_service(owner, extra)
    stack = Stack(site, postfix.start(), owner)
    alice = stack.create("alice")
    lists = make_folder(alice, ".lists", owner)

    plain = postfix.send(message(message_id="<plain@example.org>"), [address("alice")])
    tagged = postfix.send(message(message_id="<tagged@example.org>"),
                          [address("alice+lists")])
    assert_sent(postfix.wait_for_delivery(plain, address("alice")))
    assert_sent(postfix.wait_for_delivery(tagged, address("alice+lists")))
    postfix.wait_for_queue_empty()
    # dovecot-lda's own line files by -m alone; -m ${extension} picks .lists
    assert len(maildir_files(alice)) == (1 if extra else 2)
    assert len(maildir_files(lists)) == (1 if extra else 0)
    [path] = [p for p in maildir_files(alice) if b"<plain@" in p.read_bytes()]
    assert fields(path).get_all("Delivered-To") == [address("alice")]  # flag D's alone
    assert fields(path).get_all("Return-Path") == [f"<{SENDER}>"]

    again = postfix.send(message(message_id="<plain@example.org>"), [address("alice")])
    assert_sent(postfix.wait_for_delivery(again, address("alice")))
    postfix.wait_for_queue_empty()
    assert len(maildir_files(alice)) == (1 if extra else 2)  # the resend discarded


def test_procmail_mailbox_command_delivers_with_only_the_path_changed(make_postfix,
                                                                     make_user):
    """main.cf's documented `mailbox_command = procmail -a "$EXTENSION"`."""
    user = make_user()
    maildir = user.home / "Maildir"
    lists = make_folder(maildir, ".lists", user)
    postfix = make_postfix(main={"mailbox_command": f'{LDA} -a "$EXTENSION"',
                                 "recipient_delimiter": "+"})
    plain, tagged = f"{user.name}@{LOCAL_DOMAIN}", f"{user.name}+lists@{LOCAL_DOMAIN}"

    first = postfix.send(message(message_id="<plain@example.org>"), [plain])
    second = postfix.send(message(message_id="<tagged@example.org>"), [tagged])
    assert_sent(postfix.wait_for_delivery(first, plain))
    assert_sent(postfix.wait_for_delivery(second, tagged))
    postfix.wait_for_queue_empty()
    assert len(maildir_files(maildir)) == 1 and len(maildir_files(lists)) == 1
    assert one_file(lists).stat().st_uid == user.uid


def test_an_unknown_option_in_the_line_defers_the_mail(make_postfix, make_user):
    """An admin's typo in master.cf or main.cf: Postfix reads 4.3.5 and keeps
    the message (it bounced on 5.5.4 before)."""
    user = make_user()
    postfix = make_postfix(main={"mailbox_command": f"{LDA} -Y -a \"$EXTENSION\""})
    recipient = f"{user.name}@{LOCAL_DOMAIN}"
    queued = postfix.send(message(), [recipient])
    deferred = postfix.wait_for_delivery(queued, recipient)
    assert (deferred.status, deferred.dsn) == (DEFERRED, "4.3.5"), deferred
    assert "unknown option -Y" in deferred.detail
    assert postfix.queued_recipients() == [recipient]
    assert maildir_files(user.home / "Maildir") == []

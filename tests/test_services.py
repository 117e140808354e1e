"""`lda policy` and `lda socketmap`: Postfix's SMTP-time lookups, answered
over real sockets by the installed `lda` command, from a real directory.
The Postfix end-to-end cases are in test_services_postfix.py."""

import contextlib
import os
import re
import resource
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import LDA, fill_mailbox, open_files_of, raise_open_files, wait_until
from postfix import free_port
from test_quota_replies import FULL

from lda.services.server import MAX_CONNECTIONS, THREADS
from lda.sockets import BACKLOG

DUNNO = "DUNNO"


class Service:
    """`lda policy` or `lda socketmap` for a site, on a loopback port, or
    with unix=True on a unix socket in the site's directory; open_files:
    its RLIMIT_NOFILE (soft, hard); pass_fds: descriptors it inherits."""

    def __init__(self, site, name, *args, unix=False, open_files=None, pass_fds=()):
        self.site, self.name = site, name
        self.port = None if unix else free_port()
        self.path = site.root / f"{name}.sock" if unix else None
        self.output = site.root / f"{name}.log"
        listen = f"unix:{self.path}" if unix else f"127.0.0.1:{self.port}"
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [str(LDA), name, "--listen", listen, *args], env=site.env, stdout=out,
                stderr=subprocess.STDOUT, pass_fds=pass_fds,
                preexec_fn=open_files and (lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                                      open_files)))
        wait_until(self._ready, 30, f"lda {name}", self.log)

    def log(self):
        return self.output.read_text(errors="replace")

    def _ready(self):
        if self.process.poll() is not None:
            pytest.fail(f"lda {self.name} exited {self.process.returncode}:\n{self.log()}")
        try:
            self.socket(timeout=1).close()
            return True
        except OSError:
            return False

    def socket(self, timeout=30):
        """A new connection to the service."""
        if self.path is None:
            return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        conn = socket.socket(socket.AF_UNIX)
        try:
            conn.connect(str(self.path))  # blocking: waits while the backlog is full
        except OSError:
            conn.close()
            raise
        conn.settimeout(timeout)
        return conn

    def connect(self):
        conn = self.socket()
        return conn, conn.makefile("rb")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return "killed"


@pytest.fixture
def services():
    started = []

    def start(site, name, *args, **options):
        service = Service(site, name, *args, **options)
        started.append(service)
        return service

    yield start
    for service in started:
        assert service.stop() == 0, service.log()


@pytest.fixture
def quota_site(make_site):
    """alice fits, full is full (1 MiB of 1 MiB), small has 10 KiB of
    quota; team is an alias of alice and full, fullteam of full alone;
    fwd forwards outside."""
    def make(**settings):
        site = make_site(**settings)
        site.create("alice@example.org")
        fill_mailbox(site.create("full@example.org", "--quota-storage", "1M"), 1024**2)
        site.create("small@example.org", "--quota-storage", "10K")
        site.aliases.write_text("team@example.org: alice@example.org, full@example.org\n"
                                "fullteam@example.org: full@example.org\n"
                                "out@example.org: someone@elsewhere.example\n")
        return site
    return make


def request(recipient, size=0, state="RCPT", **extra):
    attributes = {"request": "smtpd_access_policy", "protocol_state": state,
                  "protocol_name": "ESMTP", "client_address": "127.0.0.1",
                  "sender": "sender@example.net", "recipient": recipient,
                  "size": str(size), **extra}
    return "".join(f"{k}={v}\n" for k, v in attributes.items()).encode() + b"\n"


def ask(service, *requests, raw=False):
    """The actions for requests sent one after another on one connection."""
    conn, reader = service.connect()
    actions = []
    with conn, reader:
        for req in requests:
            conn.sendall(req if raw else request(**req) if isinstance(req, dict)
                         else request(req))
            line = reader.readline()
            assert reader.readline() == b"\n", line
            assert line.startswith(b"action="), line
            actions.append(line[len("action="):].decode().rstrip("\n"))
    return actions


# --- the policy service ------------------------------------------------------

def test_policy_answers_each_recipient_as_a_delivery_would(quota_site, services):
    policy = services(quota_site(quota_full="reject"), "policy")
    actions = ask(policy, "alice@example.org", "full@example.org", "alice+tag@example.org",
                  "team@example.org", "fullteam@example.org", "out@example.org",
                  {"recipient": "small@example.org", "size": 20000},
                  {"recipient": "small@example.org", "size": 2000},
                  "nobody@example.org")
    assert actions == [DUNNO, f"552 5.2.2 {FULL}", DUNNO,
                       DUNNO,  # alice can take it: lda delivers and keeps a partial
                       f"552 5.2.2 {FULL}", DUNNO,
                       "552 5.2.3 Message is larger than the mailbox quota", DUNNO,
                       DUNNO]  # unknown, but policy_reject_unknown is off


def test_policy_defers_a_full_mailbox_when_lda_would(quota_site, services):
    """quota_full = "tempfail" (the default): the MTA would be told 4.2.2."""
    policy = services(quota_site(), "policy")
    assert ask(policy, "full@example.org") == [f"452 4.2.2 {FULL}"]


@pytest.mark.parametrize("address", ["full+a b@example.org", "full+" + "x" * 400 + "@example.org"],
                         ids=["space-in-extension", "long-extension"])
def test_policy_judges_a_recipient_by_its_user_whatever_its_extension(quota_site, services,
                                                                       address):
    """An extension with a space, or one that takes the address past 320
    octets, delivers into the user's mailbox (as Dovecot's lmtp): the
    policy service answered DUNNO, and a full mailbox was found only at
    delivery, after the SMTP client was gone."""
    policy = services(quota_site(), "policy")
    assert ask(policy, address) == [f"452 4.2.2 {FULL}"]


def test_policy_says_what_a_delivery_would_when_the_mailbox_is_full(quota_site, services):
    """Without quota_status_overquota, the text after the codes is
    quota_exceeded_message, the one lda deliver and lda lmtp answer with:
    a site's own text reaches the sender whichever refuses first."""
    text = "Mailbox full, see https://example.org/quota"
    policy = services(quota_site(quota_exceeded_message=text), "policy")
    assert ask(policy, "full@example.org") == [f"452 4.2.2 {text}"]


def test_policy_replies_are_the_configured_ones(quota_site, services):
    site = quota_site(policy_reject_unknown=True, quota_status_success="OK",
                      quota_status_overquota="554 5.2.2 Over quota, sorry",
                      quota_status_nouser="REJECT no such user")
    policy = services(site, "policy")
    actions = ask(policy, "alice@example.org", "full@example.org", "nobody@example.org",
                  "bad\x7fname@example.org")
    assert actions[:3] == ["OK", "554 5.2.2 Over quota, sorry", "REJECT no such user"]
    assert actions[3].startswith("553 5.1.3 "), actions


def test_policy_other_stages_and_requests_are_dunno(quota_site, services):
    policy = services(quota_site(policy_reject_unknown=True), "policy")
    assert ask(policy, {"recipient": "full@example.org", "state": "DATA"},
               {"recipient": "", "state": "CONNECT"}) == [DUNNO, DUNNO]
    junk = b"request=something_else\nrecipient=full@example.org\n\n"
    no_equals = b"this line has no equals sign\nrequest=smtpd_access_policy\n" \
                b"protocol_state=RCPT\nrecipient=alice@example.org\n\n"
    assert ask(policy, junk, no_equals, raw=True) == [DUNNO, DUNNO]


@pytest.mark.parametrize("recipient", [
    "../../etc/passwd@example.org", "a/b@example.org", "x" * 5000 + "@example.org",
    "alice@example.org\x00evil", "", "@example.org", "alice", "<alice@example.org>",
], ids=["dotdot", "slash", "long", "nul", "empty", "domain-only", "no-domain", "angles"])
def test_policy_hostile_recipients_get_a_clear_answer_and_nothing_changes(
        quota_site, services, recipient):
    site = quota_site(policy_reject_unknown=True)
    policy = services(site, "policy")
    [action] = ask(policy, recipient)
    if recipient == "<alice@example.org>":
        assert action == DUNNO  # as a delivery takes it
    else:
        assert action.split()[0] in ("550", "553"), action
    assert ask(policy, "alice@example.org") == [DUNNO]  # the connection still works


def test_policy_reads_a_recipient_with_a_trailing_dot_as_postfix_delivers_it(quota_site,
                                                                          services):
    """Postfix hands the policy service RCPT TO's address as the client
    wrote it and strips a trailing dot of the domain itself when it routes:
    with policy_reject_unknown, lda refused a real mailbox (550, seen through
    a real Postfix) and left a full one unchecked."""
    policy = services(quota_site(policy_reject_unknown=True, quota_full="reject"), "policy")
    assert ask(policy, "alice@example.org.", "full@example.org.") == [
        DUNNO, f"552 5.2.2 {FULL}"]


def test_policy_attributes_it_does_not_use_cannot_push_out_those_it_does(quota_site,
                                                                       services):
    """Past the 100th attribute, lda dropped the rest silently, the
    recipient or the request itself with them: a mailbox with room got
    553, a full one went unchecked.  Only the attributes a decision reads
    are kept, however many others come."""
    policy = services(quota_site(policy_reject_unknown=True, quota_full="reject"), "policy")
    junk = {f"x_attr{n}": "v" for n in range(120)}
    assert ask(policy, {"recipient": "alice@example.org", **junk},
               {"recipient": "full@example.org", **junk}) == [DUNNO, f"552 5.2.2 {FULL}"]
    late = (b"".join(b"x_attr%d=v\n" % n for n in range(120))
            + b"request=smtpd_access_policy\nprotocol_state=RCPT\n"
            b"recipient=full@example.org\n\n")
    assert ask(policy, late, raw=True) == [f"552 5.2.2 {FULL}"]


@pytest.mark.parametrize("lines, expected", [
    (b"RECIPIENT=full@example.org\n", DUNNO),  # names are exact, as quota-status reads them
    (b"recipient=full@example.org\r\r\n", None),  # one CR is the line end, the other a byte
], ids=["upper-case-name", "two-crs"])
def test_policy_reads_lines_as_dovecot_quota_status_does(quota_site, services, lines,
                                                          expected):
    policy = services(quota_site(quota_full="reject"), "policy")
    head = b"request=smtpd_access_policy\nprotocol_state=RCPT\n"
    [action] = ask(policy, head + lines + b"\n", raw=True)
    if expected is not None:
        assert action == expected
    else:  # the address with a CR in it is no mailbox: not judged full
        assert action != f"552 5.2.2 {FULL}", action


def test_policy_a_size_it_cannot_read_gets_no_success_reply(quota_site, services):
    """size=30000\\0: Dovecot's quota-status reads the 30000 before the NUL
    (its C string ends there); lda read no size, judged one byte, and with
    quota_status_success = "OK" let a message larger than small's whole
    quota past every restriction after it.  Postfix writes no such value
    (SMTPD_POLICY_README: no NUL, and SIZE= is digits); one that is not
    ASCII digits is judged as one byte, so a full mailbox is still refused,
    but a recipient with room gets DUNNO, not the success reply, since lda
    has not judged the message, and the log says so.  An empty size= is no
    size, as before."""
    policy = services(quota_site(quota_full="reject", quota_status_success="OK"), "policy")
    assert ask(policy, {"recipient": "small@example.org", "size": "30000\0"},
               {"recipient": "full@example.org", "size": "3000\0"},
               {"recipient": "alice@example.org", "size": "3000x"},
               {"recipient": "alice@example.org", "size": ""},
               {"recipient": "alice@example.org", "size": "3000"}) == [
        DUNNO, f"552 5.2.2 {FULL}", DUNNO, "OK", "OK"]
    assert "small@example.org: size='30000\\x00' is not a number" in policy.log()


def test_policy_serves_fifty_connections_at_once(quota_site, services):
    policy = services(quota_site(quota_full="reject"), "policy")
    results, errors = [], []

    def client(n):
        try:
            results.append(ask(policy, *(["alice@example.org", "full@example.org"] * 5)))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert results == [[DUNNO, f"552 5.2.2 {FULL}"] * 5] * 50


def damage(path):
    """Overwrite the SQLite header in place: every later read fails."""
    with open(path, "r+b") as f:
        f.write(b"this is no longer a database file" * 4)
        f.flush()
        os.fsync(f.fileno())


def test_policy_defers_when_the_directory_cannot_be_read(quota_site, services):
    site = quota_site(policy_reject_unknown=True, quota_full="reject")
    policy = services(site, "policy")
    assert ask(policy, "full@example.org") == [f"552 5.2.2 {FULL}"]
    damage(site.state / "directory.sqlite")
    actions = ask(policy, "full@example.org", "nobody@example.org", "alice@example.org")
    assert all(a.startswith("DEFER_IF_PERMIT 4.3.0 ") for a in actions), actions


# --- the socketmap -------------------------------------------------------------

def netstring(data):
    return b"%d:%s," % (len(data), data)


def lookup(service, *requests):
    """(status, value) for each "MAP KEY" request, on one connection."""
    conn, reader = service.connect()
    answers = []
    with conn, reader:
        for req in requests:
            conn.sendall(netstring(req.encode("utf-8", "surrogateescape")))
            length = b""
            while (c := reader.read(1)) != b":":
                assert c.isdigit(), (length, c)
                length += c
            data = reader.read(int(length) + 1)
            assert data.endswith(b","), data
            status, _, value = data[:-1].decode().partition(" ")
            answers.append((status, value))
    return answers


def test_socketmap_answers_every_map(quota_site, services):
    site = quota_site(lmtp_listen="unix:/run/lda/lmtp")
    site.create("bob@example.com", "--forward", "bob@elsewhere.example", "--keep-copy")
    socketmap = services(site, "socketmap")
    assert lookup(socketmap,
                  "mailbox alice@example.org", "mailbox ALICE+tag@Example.org",
                  "mailbox team@example.org", "mailbox nobody@example.org",
                  "mailbox @example.org", "mailbox alice",
                  "alias team@example.org", "alias alice@example.org",
                  "alias bob@example.com", "alias nobody@example.org",
                  "domain example.org", "domain example.com", "domain example.net",
                  "transport alice@example.org", "transport example.org",
                  "transport nobody@example.org", "transport example.net",
                  "users alice@example.org") == [
        ("OK", "alice@example.org"), ("OK", "alice+tag@example.org"),
        ("OK", "team@example.org"), ("NOTFOUND", ""),
        ("NOTFOUND", ""), ("NOTFOUND", ""),
        ("OK", "alice@example.org,full@example.org"), ("NOTFOUND", ""),
        ("NOTFOUND", ""), ("NOTFOUND", ""),  # bob's forward: his host applies it
        ("OK", "example.org"), ("OK", "example.com"), ("NOTFOUND", ""),
        ("OK", "lmtp:unix:/run/lda/lmtp"), ("OK", "lmtp:unix:/run/lda/lmtp"),
        ("NOTFOUND", ""), ("NOTFOUND", ""),
        ("PERM", "no map named 'users' (lda has mailbox, alias, domain, transport)")]


def test_socketmap_takes_an_extension_as_a_delivery_does(quota_site, services):
    """An extension with a space, or one past 320 octets in all, delivers
    into the user's mailbox; the maps answered NOTFOUND for such an
    address, so only Postfix's own retry with the bare user found it."""
    socketmap = services(quota_site(lmtp_listen="unix:/run/lda/lmtp"), "socketmap")
    long = "alice+" + "x" * 400 + "@example.org"
    assert lookup(socketmap, "mailbox alice+a b@example.org", f"mailbox {long}",
                  "transport alice+a b@example.org") == [
        ("OK", "alice+a b@example.org"), ("OK", long), ("OK", "lmtp:unix:/run/lda/lmtp")]


def test_the_alias_map_answers_a_bare_key_in_the_domain_asked(quota_site, services):
    """postmaster (no domain) answers for the address Postfix asks, whatever
    the server thread looked up before it; Postfix qualifies and recurses."""
    site = quota_site()
    site.aliases.write_text("postmaster: root\nroot: alice@example.org\n")
    socketmap = services(site, "socketmap")
    assert lookup(socketmap, "alias postmaster@example.org", "alias root@example.org",
                  "mailbox alice@example.com", "alias postmaster@example.org") == [
        ("OK", "root@example.org"), ("OK", "alice@example.org"), ("NOTFOUND", ""),
        ("OK", "root@example.org")]


def test_socketmap_sees_changes_without_a_restart(quota_site, services):
    site = quota_site()
    socketmap = services(site, "socketmap")
    assert lookup(socketmap, "mailbox new@example.org", "alias new@example.org") == [
        ("NOTFOUND", ""), ("NOTFOUND", "")]
    site.create("new@example.org")
    assert lookup(socketmap, "mailbox new@example.org") == [("OK", "new@example.org")]
    site.aliases.write_text("new2@example.org: new@example.org\n")
    assert lookup(socketmap, "alias new2@example.org") == [("OK", "new@example.org")]


def test_socketmap_is_temp_never_notfound_when_the_directory_is_unreadable(quota_site,
                                                                          services):
    site = quota_site()
    socketmap = services(site, "socketmap")
    damage(site.state / "directory.sqlite")
    answers = lookup(socketmap, "mailbox alice@example.org", "mailbox nobody@example.org",
                     "domain example.org", "transport alice@example.org")
    assert [status for status, _ in answers] == ["TEMP"] * 4, answers


@pytest.mark.parametrize("key", ["../x@example.org", "a\x00b@example.org", "a\rb@example.org",
                                 "x" * 3000 + "@example.org", "\udcff@example.org"],
                         ids=["dotdot", "nul", "cr", "long", "bad-utf8"])
def test_socketmap_hostile_keys_are_not_found(quota_site, services, key):
    socketmap = services(quota_site(), "socketmap")
    assert lookup(socketmap, f"mailbox {key}", "mailbox alice@example.org") == [
        ("NOTFOUND", ""), ("OK", "alice@example.org")]


@pytest.mark.parametrize("garbage", [b"abc", b"5:short", b"999999999:x,", b"3:abcX"],
                         ids=["no-length", "short", "too-long", "no-comma"])
def test_socketmap_closes_a_connection_that_speaks_no_netstrings(quota_site, services,
                                                                 garbage):
    socketmap = services(quota_site(), "socketmap")
    conn, reader = socketmap.connect()
    with conn, reader:
        conn.sendall(garbage)
        conn.shutdown(socket.SHUT_WR)
        assert reader.read() == b""
    assert lookup(socketmap, "mailbox alice@example.org") == [("OK", "alice@example.org")]


def test_socketmap_a_domain_longer_than_any_is_not_found_not_temp(quota_site, services):
    """A key of 50,000 characters made SQLite's LIKE refuse the pattern,
    which lda reported as TEMP with a false "unreadable mailbox directory"
    in its log; no domain is longer than 255 octets."""
    socketmap = services(quota_site(), "socketmap")
    assert lookup(socketmap, "domain " + "a" * 50010, "transport " + "a" * 50010) == [
        ("NOTFOUND", ""), ("NOTFOUND", "")]
    assert "unreadable" not in socketmap.log()


def test_socketmap_refuses_an_unknown_map_within_postfixs_reply_limit(quota_site, services):
    """The PERM reply named the whole map name, escaped: 99,000 NULs gave
    a reply of 396 KB, past Postfix's socketmap_max_reply_size (100,000)."""
    socketmap = services(quota_site(), "socketmap")
    [(status, text)] = lookup(socketmap, "\0" * 99000 + " x")
    assert status == "PERM" and len(text) < 1000, len(text)


# --- both services: idle clients and the connection limit --------------------

IDLE = 2  # seconds: policy_idle_timeout and socketmap_idle_timeout in these tests
# A whole request of each service, and lda's answer to it.
WHOLE = {"policy": (request("alice@example.org"), b"action=DUNNO\n\n"),
         "socketmap": (netstring(b"mailbox alice@example.org"),
                       netstring(b"OK alice@example.org"))}


def idle_service(quota_site, services, name, idle=IDLE, **options):
    return services(quota_site(**{f"{name}_idle_timeout": idle}), name, **options)


def seconds_until_closed(conn, trickle=b"", limit=IDLE + 5):
    """Seconds until lda closes conn, unanswered; meanwhile `trickle` goes
    out a byte every IDLE / 4 s.  None if conn is still open after `limit`."""
    readable = select.poll()  # not select(): past MAX_CONNECTIONS the fd is > 1023
    readable.register(conn, select.POLLIN | select.POLLHUP | select.POLLERR)
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if readable.poll(IDLE / 4 * 1000):
            try:
                data = conn.recv(4096)
            except ConnectionResetError:
                data = b""
            assert data == b"", data  # no answer to a request never finished
            return time.monotonic() - started
        if trickle:
            conn.sendall(trickle[:1])
            trickle = trickle[1:]
    return None


def answer(conn, whole, expected):
    conn.sendall(whole)
    data = b""
    while len(data) < len(expected) and (chunk := conn.recv(4096)):
        data += chunk
    return data


@pytest.mark.parametrize("name", ["policy", "socketmap"])
def test_a_client_that_sends_no_whole_request_in_time_is_closed(quota_site, services, name):
    """A client that connected and sent nothing, or half a request, or a
    request a byte at a time, held its connection for ever: 1,000 of them
    and lda refused every other one, Postfix's lookups with them, until a
    restart.  Each is closed once `<name>_idle_timeout` has passed since
    it connected (or since lda's last reply to it); a client that is slow
    within that time is answered, and gets the time again after each reply."""
    service = idle_service(quota_site, services, name)
    whole, expected = WHOLE[name]
    idle, half, trickling, slow = (service.socket() for _ in range(4))
    with idle, half, trickling, slow, ThreadPoolExecutor(3) as pool:
        half.sendall(whole[:len(whole) // 2])
        closing = [pool.submit(seconds_until_closed, idle), pool.submit(seconds_until_closed, half),
                   pool.submit(seconds_until_closed, trickling, whole[:-1])]
        slow.sendall(whole[:10])
        time.sleep(IDLE * 0.6)
        assert answer(slow, whole[10:], expected) == expected
        time.sleep(IDLE * 0.6)  # 1.2 times the timeout since it connected
        assert answer(slow, whole, expected) == expected
        closed_after = [future.result() for future in closing]
    assert all(s is not None and IDLE * 0.75 <= s <= IDLE + 3 for s in closed_after), \
        closed_after
    with service.socket() as conn:  # the service goes on answering
        assert answer(conn, whole, expected) == expected


# Settings that make each reply some 2 KB, and a request that gets one: the
# replies fill the socket buffers long before the requests run out.
LONG_REPLIES = {"policy": ({"quota_status_success": "WARN " + "x" * 2000},
                           request("alice@example.org")),
                "socketmap": ({"socketmap_transport": "lmtp:inet:" + "x" * 2000},
                              netstring(b"transport alice@example.org"))}


@pytest.mark.parametrize("name", ["policy", "socketmap"])
def test_a_client_that_takes_no_replies_is_closed(quota_site, services, name):
    """A client that sent requests and read none of the replies held its
    connection for ever: lda waited, with its answers, for the client to
    take them.  It has `<name>_idle_timeout` to take each, and is closed
    then, its unsent answers dropped, though it never reads again."""
    settings, whole = LONG_REPLIES[name]
    service = services(quota_site(**{f"{name}_idle_timeout": IDLE}, **settings), name)
    with socket.socket() as conn:
        conn.connect(("127.0.0.1", service.port))
        conn.setblocking(False)
        while select.select([], [conn], [], 1)[1]:  # until lda reads no more
            conn.send(whole * 100)
        closed = select.poll()
        closed.register(conn, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        started = time.monotonic()
        assert closed.poll((IDLE + 5) * 1000), "still open"  # and nothing read
        assert time.monotonic() - started <= IDLE + 3


def counted(log, what):
    """How many connections the log's lines say were `what`, and in how many lines."""
    counts = [int(n) for n in re.findall(rf": (\d+) connections? {what}", log)]
    return sum(counts), len(counts)


def test_a_connection_past_the_limit_is_logged_and_idle_ones_make_room(quota_site, services):
    """With MAX_CONNECTIONS open, lda closed each further connection
    unanswered and said nothing, so nobody could tell why Postfix's lookups
    failed.  Each refusal is counted in the log, the first at once, then one
    line a minute at most (and at the stop); once the idle connections are
    closed, lda answers again."""
    raise_open_files(MAX_CONNECTIONS + 200)
    held_for = 5
    policy = idle_service(quota_site, services, "policy", idle=held_for, unix=True)
    held = []
    try:
        held.extend(policy.socket() for _ in range(MAX_CONNECTIONS))
        for _ in range(3):
            with policy.socket() as refused:
                try:  # lda may close it before the request is written
                    refused.sendall(request("alice@example.org"))
                except (BrokenPipeError, ConnectionResetError):
                    continue
                assert seconds_until_closed(refused, limit=5) is not None
        assert wait_until(lambda: counted(policy.log(), "refused") == (1, 1), 5,
                          "the first refusal in the log", policy.log)
        deadline = time.monotonic() + held_for + 10
        for conn in held:
            assert seconds_until_closed(conn, limit=deadline - time.monotonic()) is not None
    finally:
        for conn in held:
            conn.close()
    assert ask(policy, "alice@example.org") == [DUNNO]
    assert policy.stop() == 0
    assert counted(policy.log(), "refused") == (3, 2), policy.log()
    assert counted(policy.log(), "closed")[0] == MAX_CONNECTIONS, policy.log()


def test_a_service_without_a_listen_address_is_a_configuration_error(site):
    done = site.run("policy", check=None)
    assert done.returncode == 78, done.stderr
    assert "policy_listen" in done.stderr.decode()


# --- both services: stopping --------------------------------------------------

def answered(service, conn, reader):
    """One request asked and answered on conn, which stays open."""
    if service.name == "policy":
        conn.sendall(request("alice@example.org"))
        assert reader.readline() == b"action=DUNNO\n" and reader.readline() == b"\n"
    else:
        conn.sendall(netstring(b"mailbox alice@example.org"))
        assert reader.read(len(netstring(b"OK alice@example.org"))) \
            == netstring(b"OK alice@example.org")


@pytest.mark.parametrize("clients", [1, 50])
@pytest.mark.parametrize("name", ["policy", "socketmap"])
def test_a_stop_with_clients_connected_is_quiet_and_prompt(quota_site, services, name,
                                                           clients):
    """Postfix keeps its policy and socketmap connections open, so every
    restart stops lda with clients connected.  lda printed each cancelled
    session's CancelledError with its traceback on stderr (an lda from
    before the Acceptor, still installed beside the project, showed it to
    the fuzzer; today's does not), and it says nothing of the connections
    it closed.  The stop is one line saying how many, at once."""
    service = services(quota_site(), name, unix=True)
    held = []
    try:
        for _ in range(clients):
            held.append(service.connect())
            answered(service, *held[-1])
        time.sleep(1)  # idle, as Postfix's are between requests
        started = time.monotonic()
        assert service.stop() == 0
        elapsed = time.monotonic() - started
        assert all(reader.read() == b"" for _, reader in held)  # closed
    finally:
        for conn, reader in held:
            reader.close()
            conn.close()
    log = service.log()
    assert "Traceback" not in log and "CancelledError" not in log, log
    closed = re.search(rf"{name}: stopping; (\d+) connections? closed", log)
    # One more when the readiness probe's connection still held its place.
    assert closed and clients <= int(closed[1]) <= clients + 1, log
    assert elapsed < 5, elapsed


@contextlib.contextmanager
def locked_directory(site):
    """The directory held as another program's long write transaction
    holds it: every lookup waits on the lock (SQLite's busy timeout, 30 s)."""
    locked = sqlite3.connect(site.state / "directory.sqlite", isolation_level=None)
    try:
        locked.execute("PRAGMA locking_mode = EXCLUSIVE")
        locked.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        locked.close()


@pytest.mark.parametrize("name", ["policy", "socketmap"])
def test_a_stop_does_not_wait_for_lookups_stuck_on_a_locked_directory(quota_site, services,
                                                                      name):
    """With the directory locked by another program, a SIGTERM ended lda
    only once the lookups its threads were running gave up or the lock
    was gone (30 s here, SQLite's busy timeout; some 3 s in the field): the
    threads were joined at the interpreter's exit.  A stop closes the
    connections, answers nothing more and ends at once."""
    site = quota_site()
    service = services(site, name)
    whole, _ = WHOLE[name]
    held = []
    try:
        with locked_directory(site):
            for _ in range(THREADS + 2):  # every thread waiting, and more queued
                held.append(service.connect())
                held[-1][0].sendall(whole)
            time.sleep(1)
            started = time.monotonic()
            service.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.process.wait(timeout=10)
            elapsed = time.monotonic() - started
        assert service.process.returncode == 0 and elapsed < 1, (elapsed, service.log())
        assert all(reader.read() == b"" for _, reader in held)  # closed, unanswered
    finally:
        for conn, reader in held:
            reader.close()
            conn.close()
    assert "Traceback" not in service.log()


# --- both services: open files -----------------------------------------------

def cpu_seconds(pid):
    """The user and system CPU time a process has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("name", ["policy", "socketmap"])
def test_a_service_raises_its_open_files_limit_as_far_as_its_connections_need(
        quota_site, services, name):
    """Started under a soft limit of 256 open files (1,024 is common), lda
    kept it, so MAX_CONNECTIONS could never be held: accept() failed with
    EMFILE long before.  The soft limit is raised for MAX_CONNECTIONS and
    what else lda keeps open, and no further: the hard limit may be huge."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4 * MAX_CONNECTIONS:
        pytest.skip(f"the hard limit of open files is {hard}")
    service = services(quota_site(), name, open_files=(256, hard))
    soft, kept_hard = open_files_of(service.process.pid)
    assert MAX_CONNECTIONS < soft <= 2 * MAX_CONNECTIONS, soft
    assert kept_hard == (hard if hard != resource.RLIM_INFINITY else kept_hard)
    assert "open files" not in service.log()


def test_a_service_under_a_low_hard_limit_refuses_what_it_cannot_hold(quota_site, services):
    """Under a hard limit of 128 open files, lda policy accepted until
    accept() failed with EMFILE; the connections after waited unanswered
    in the listen queue for as long as the others stayed, and asyncio
    printed a traceback a second meanwhile.  lda now says at its start how
    many connections its descriptors hold, and refuses those past that as
    it does past MAX_CONNECTIONS: closed at once, counted in the log."""
    policy = services(quota_site(), "policy", unix=True, open_files=(128, 128))
    connections = 150
    held = []
    try:
        held.extend(policy.socket() for _ in range(connections))
        assert seconds_until_closed(held[-1], limit=5) is not None, policy.log()
        time.sleep(2)
    finally:
        for conn in held:
            conn.close()
    assert wait_until(lambda: ask_soon(policy) == [DUNNO], 10, "an answer", policy.log)
    assert policy.stop() == 0
    log = policy.log()
    limit = int(re.search(r"policy: at most 128 open files \(ulimit -n\): (\d+) connections",
                          log)[1])
    assert 0 < limit < 128 - 16
    assert "Traceback" not in log and "Too many open files" not in log, log
    refused, lines = counted(log, "refused")
    # One more when the readiness probe's connection still held its place.
    assert connections - limit <= refused <= connections - limit + 1 and lines <= 3, log


def ask_soon(service):
    """ask() for alice; None when the connection is refused (closed)."""
    try:
        return ask(service, "alice@example.org")
    except (AssertionError, ConnectionError):
        return None


def test_a_service_out_of_descriptors_neither_spins_nor_floods_the_log(quota_site, services):
    """With its descriptors gone before its connection limit (here 100
    inherited ones; in the field the system's own limit, ENFILE), lda's
    accept() fails with EMFILE.  It did not spin or die (asyncio pauses a
    second), but asyncio printed a traceback, unescaped, on stderr whatever
    `log` said, once a second for as long as it lasted.  The pauses are
    counted in lda's log instead, as refusals are; lda answers again once
    descriptors are free, and uses no CPU while it waits."""
    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(100)]
    try:
        policy = services(quota_site(), "policy", unix=True, open_files=(256, 256),
                          pass_fds=spare)
    finally:
        for fd in spare:
            os.close(fd)
    held = []
    try:
        held.extend(policy.socket() for _ in range(160))
        assert seconds_until_closed(held[-1], limit=1) is None  # waits, unaccepted
        used = cpu_seconds(policy.process.pid)
        time.sleep(4)
        assert cpu_seconds(policy.process.pid) - used < 0.5
        assert policy.process.poll() is None
    finally:
        for conn in held:
            conn.close()
    assert wait_until(lambda: ask_soon(policy) == [DUNNO], 10, "an answer", policy.log)
    assert policy.stop() == 0
    log = policy.log()
    assert "Traceback" not in log, log
    failures = [int(n) for n in re.findall(r"policy: (\d+) accept\(\) failures?", log)]
    assert len(failures) <= 2 and sum(failures) >= 3, log
    assert "Too many open files" in log


# --- every server: the listen queue ------------------------------------------

def listen_backlog(port):
    """The backlog of the socket listening on the loopback port: ss shows
    it as a listener's Send-Q."""
    ss = shutil.which("ss") or pytest.skip("no ss (iproute2) to read the backlog with")
    out = subprocess.run([ss, "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    [(state, queued, backlog, *_)] = [line.split() for line in out.splitlines()]
    return int(backlog)


@pytest.mark.parametrize("name", ["policy", "socketmap", "lmtp"])
def test_every_server_listens_with_the_backlog_lda_sets(quota_site, services, lmtp, name):
    """asyncio's start_server() listened again with its own default, 100,
    over the BACKLOG (128) that lda's bind() had set, for lda policy and
    lda socketmap: a burst of Postfix's smtpd processes connecting (100 by
    default) filled it sooner.  lda lmtp accepts by itself and kept it."""
    if name == "lmtp":
        port = free_port()
        lmtp(listen=f"127.0.0.1:{port}")
    else:
        port = services(quota_site(), name).port
    assert listen_backlog(port) == BACKLOG


# --- both services: what a bad client can make lda log ------------------------

def counts(log, pattern):
    """(the sum of the counts the log's lines matching `pattern` state, how
    many such lines): pattern has one group, the count."""
    found = [int(n) for n in re.findall(pattern, log)]
    return sum(found), len(found)


BAD = 500


def tallied(n):
    """What counts() finds for n events logged as a Tally logs them: the
    first at once, the rest at the stop, and one more line should a
    minute pass meanwhile on a slow machine."""
    return [(n, 2), (n, 3)]


def test_policy_bad_requests_are_counted_not_logged_one_by_one(quota_site, services):
    """Each request that was not smtpd_access_policy, and each size= that
    was no number, got a warning line of its own: 500 of each from one
    client made 1,000 lines, and a client that went on would fill the disk.
    Each kind is logged as refusals are: the first at once, saying from
    whom and what was wrong (escaped, cut short), then one line a minute
    with the count, and the rest at the stop."""
    policy = services(quota_site(), "policy")
    junk = b"request=" + b"\x1bsomething_else" * 10 + b"\nrecipient=full@example.org\n\n"
    bad_size = request("alice@example.org", size="3000\0")
    assert ask(policy, *[junk, bad_size] * BAD, raw=True) == [DUNNO] * (2 * BAD)
    assert policy.stop() == 0
    log = policy.log()
    assert counts(log, r"policy: (\d+) requests? not understood") in tallied(BAD), log
    assert counts(log, r"policy: (\d+) requests? with a size= that is no number") in \
        tallied(BAD)
    assert len(log.splitlines()) <= 7, log
    assert re.search(r"not understood: from 127\.0\.0\.1:\d+: not an smtpd_access_policy "
                     r"request: request='(\\x1bsomething_else)+", log), log
    assert re.search(r"no number.*: from 127\.0\.0\.1:\d+: alice@example\.org: "
                     r"size='3000\\x00'", log), log
    assert "\x1b" not in log and len(max(log.splitlines(), key=len)) < 400


def test_bad_requests_that_close_their_connections_are_counted(quota_site, services):
    """A line longer than 128 KiB (policy), or no netstring (socketmap),
    closes the connection, with a warning line each: a client connecting
    again and again logged a line a connection.  They are counted as the
    other bad requests are; the first line names the client (a unix socket
    client by its pid and uid)."""
    policy = services(quota_site(), "policy", unix=True)
    socketmap = services(quota_site(), "socketmap")
    for _ in range(20):
        with policy.socket() as conn:
            conn.sendall(b"request=" + b"x" * (129 << 10))
            with contextlib.suppress(ConnectionError):
                assert conn.recv(10) == b""
    for _ in range(BAD):
        with socketmap.socket() as conn:
            conn.sendall(b"abc")
            with contextlib.suppress(ConnectionError):
                assert conn.recv(10) == b""
    assert policy.stop() == 0 and socketmap.stop() == 0
    assert counts(policy.log(), r"policy: (\d+) requests? not understood") in tallied(20)
    assert re.search(rf"from pid {os.getpid()} uid {os.getuid()}: a line longer than 128 KiB",
                     policy.log()), policy.log()
    log = socketmap.log()
    assert counts(log, r"socketmap: (\d+) requests? not understood") in tallied(BAD), log
    assert re.search(r"from 127\.0\.0\.1:\d+: bad netstring length b'a'", log), log


def test_lookups_that_fail_are_counted_not_logged_one_by_one(quota_site, services):
    """With the directory unreadable, each request logged the error again:
    500 policy requests made 500 lines, 500 socketmap lookups 500 more,
    for as long as Postfix kept asking.  The failures are counted as bad
    requests are, the first line saying what cannot be read and why."""
    site = quota_site()
    policy, socketmap = services(site, "policy"), services(site, "socketmap")
    damage(site.state / "directory.sqlite")
    actions = ask(policy, *["full@example.org"] * BAD)
    assert set(actions) == {"DEFER_IF_PERMIT 4.3.0 Temporary lookup failure"}
    assert {status for status, _ in lookup(socketmap, *["mailbox alice@example.org"] * BAD)} \
        == {"TEMP"}
    assert policy.stop() == 0 and socketmap.stop() == 0
    for service in policy, socketmap:
        log = service.log()
        assert counts(log, rf"{service.name}: (\d+) lookups? failed") in tallied(BAD), log
        assert "directory.sqlite" in log and len(log.splitlines()) <= 5, log


def test_lookups_that_time_out_are_counted_not_logged_one_by_one(quota_site, services):
    """Lookups slower than LOOKUP_SECONDS (here the directory locked by
    another program) logged a line each: many connections asking at once,
    as Postfix's smtpd processes do, made a line each.  They are counted."""
    site = quota_site()
    policy = services(site, "policy")
    clients = 20
    with locked_directory(site), ThreadPoolExecutor(clients) as pool:
        actions = list(pool.map(lambda _: ask(policy, "full@example.org"), range(clients)))
    assert actions == [["DEFER_IF_PERMIT 4.4.3 recipient lookup timed out"]] * clients
    assert ask(policy, "alice@example.org") == [DUNNO]
    assert policy.stop() == 0
    log = policy.log()
    assert counts(log, r"policy: (\d+) lookups? unanswered within 10 s") in tallied(clients)
    assert "full@example.org" in log and len(log.splitlines()) <= 4, log


def test_lookups_answered_as_timed_out_are_not_run_once_the_stall_ends(quota_site, services):
    """A lookup answered DEFER_IF_PERMIT 4.4.3 (LOOKUP_SECONDS passed)
    stayed queued for the threads: through a stall (the directory locked
    by another program while Postfix keeps asking) the queue grew for as
    long as it lasted, and once it ended the threads worked through
    requests nobody waited for.  Here a damaged file replaces the directory
    before the lock goes, so that each lookup run after the stall fails and
    is counted in the log: of the timed-out ones, only those a thread had
    started by then may run."""
    site = quota_site()
    policy = services(site, "policy")
    clients = 10 * THREADS
    with locked_directory(site), ThreadPoolExecutor(clients) as pool:
        actions = list(pool.map(lambda _: ask(policy, "full@example.org"), range(clients)))
        damaged = site.state / "damaged.sqlite"
        damaged.write_bytes(b"this is no longer a database file" * 4)
        damaged.rename(site.state / "directory.sqlite")
    assert actions == [["DEFER_IF_PERMIT 4.4.3 recipient lookup timed out"]] * clients
    started = time.monotonic()
    assert ask(policy, "alice@example.org") == ["DEFER_IF_PERMIT 4.3.0 Temporary lookup failure"]
    assert time.monotonic() - started < 1
    assert policy.stop() == 0
    failed, _ = counts(policy.log(), r"policy: (\d+) lookups? failed")
    assert failed <= THREADS + 1, policy.log()  # and the fresh one

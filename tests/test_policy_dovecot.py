"""`lda policy` next to Dovecot 2.3's quota-status (`quota-status -p postfix`),
the service sites run today as Postfix's check_policy_service.

One private Dovecot runs quota-status on a unix socket; an `lda policy`
per variant (managed mode, as Dovecot's mail owner) answers for the same
mailboxes: the same Maildirs, the same quotas (lda's directory, Dovecot's
userdb quota_rule).  Every case (CASES) sends the same bytes to both and
compares the actions in each of three configurations (VARIANTS): both
services' defaults, the same four quota_status_* texts, and "permit" (OK
for a recipient with room, unknown ones left to later restrictions).
Replies that say the same in other words are in SAME_MEANING, every other
difference in DIFFERENCES, each with its reason; anything else fails.

Then both with their directory unreadable, and a real Postfix in front of
each: the SMTP client must get the same RCPT replies.  Run with -s to see
both answers.
"""

import fnmatch
import shutil
import smtplib
import socket
import subprocess
from dataclasses import dataclass

import pytest

from conftest import LDA, fill_mailbox, mailbox_paths, poll, write_lda_toml
from dovecot import private_dovecot
from postfix import WAIT_SECONDS, Postfix, free_port, require_postfix

DOMAIN = "example.org"
# name: (quota, bytes it holds).  The same limit is lda's --quota-storage
# and Dovecot's quota_rule; quota_grace is 0 in both.
USERS = {
    "room": ("1M", 0),
    "near": ("10K", 9000),   # 1240 bytes of room: the message's size decides
    "over": ("10K", 12000),  # over its limit: takes nothing
    "tiny": ("2K", 0),       # a message over 2048 bytes is larger than the quota
    "free": (None, 5000),    # no quota
}                            # and "nobody", unknown to both

QUOTA_STATUS = """\
service quota-status {
  executable = quota-status -p postfix
  unix_listener quota-status {
    mode = 0666
  }
  client_limit = 1
}
"""
# The replies of each variant: (lda.toml's settings, dovecot.conf's plugin
# settings).  "texts": the same four texts in both (lda takes
# quota_status_nouser only with policy_reject_unknown).  "permit": a
# recipient that fits is permitted (OK) and an unknown one left to the
# restrictions after (Dovecot: quota_status_nouser = DUNNO; lda: no
# policy_reject_unknown), quota_status_toolarge unset.
TEXTS = {"quota_status_success": "OK",
         "quota_status_nouser": "REJECT Unknown user here",
         "quota_status_overquota": "552 5.2.2 Mailbox is full",
         "quota_status_toolarge": "552 5.3.4 Message too big for this mailbox"}
PERMIT = {"quota_status_success": "OK", "quota_status_overquota": "552 5.2.2 Mailbox is full"}
VARIANTS = {"defaults": ({}, {}),
            "texts": ({**TEXTS, "policy_reject_unknown": True}, TEXTS),
            "permit": (PERMIT, {**PERMIT, "quota_status_nouser": "DUNNO"})}
# What each variant's quota-status answers for an unknown user: how a test
# knows that Dovecot's reload took.
NOUSER = {"defaults": "REJECT Unknown user", "texts": TEXTS["quota_status_nouser"],
          "permit": "DUNNO"}


def dovecot_conf(variant):
    texts = "".join(f'  {k} = "{v}"\n' for k, v in VARIANTS[variant][1].items())
    return QUOTA_STATUS + (f"plugin {{\n{texts}}}\n" if texts else "")


def request(recipient=f"room@{DOMAIN}", size="0", state="RCPT", **extra):
    """One smtpd_access_policy request as Postfix writes it (the attributes
    of SMTPD_POLICY_README's example); None leaves an attribute out."""
    attributes = {"request": "smtpd_access_policy", "protocol_state": state,
                  "protocol_name": "ESMTP", "client_address": "192.0.2.1",
                  "client_name": "client.example.net", "helo_name": "client.example.net",
                  "sender": "sender@example.net", "recipient": recipient,
                  "recipient_count": "0", "queue_id": "", "instance": "123.456.7",
                  "size": size, **extra}
    return b"".join(f"{k}={v}\n".encode("utf-8", "surrogateescape")
                    for k, v in attributes.items() if v is not None) + b"\n"


CLOSED = "<connection closed>"


def exchange(path, payload, count, timeout=10):
    """The actions for `count` requests sent in one write on one connection
    to the unix socket at path; CLOSED for each the server never answered."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.sendall(payload)
        data = b""
        while data.count(b"\n\n") < count:
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    replies = [r for r in data.split(b"\n\n") if r][:count]
    actions = []
    for reply in replies:
        assert reply.startswith(b"action=") and b"\n" not in reply, reply
        actions.append(reply[len(b"action="):].decode("utf-8", "replace"))
    return actions + [CLOSED] * (count - len(actions))


class Pair:
    """The private Dovecot with quota-status, and one `lda policy` per
    variant, over the same users."""

    def __init__(self, server, keep):
        self.server, self.keep = server, keep
        self.variant = None
        self.run_dir = server.root / "lda-run"
        self.run_dir.mkdir()
        self.processes, self.sockets = [], {}
        self.dovecot_socket = server.root / "run" / "quota-status"
        server.owner.chown_tree(self.run_dir)
        self.state = server.root / "lda-state"
        self.state.mkdir()
        server.owner.chown_tree(self.state)
        # One directory, one lda.toml per variant.
        configs = {name: write_lda_toml(server.root / f"lda-{name}.toml",
                                        {"state_dir": str(self.state), "log": "stderr",
                                         **settings})
                   for name, (settings, _) in VARIANTS.items()}
        for user, (quota, holds) in USERS.items():
            address = f"{user}@{DOMAIN}"
            self.lda(configs["defaults"], "mailbox", "create", address,
                     *(("--quota-storage", quota) if quota else ()))
            maildir = mailbox_paths(self.state, address)[1]
            if holds:
                fill_mailbox(maildir, holds)
            rule = [f"userdb_quota_rule=*:storage={quota}"] if quota else []
            server.add_user(address, maildir=str(maildir), fields=rule)
        for name, config in configs.items():
            self.start(name, config)
        self.use("defaults")

    def lda(self, config, *args):
        done = self.server.lda(*args, env={"LDA_CONFIG": str(config)})
        assert done.returncode == 0, (args, done.stderr.decode())
        return done

    def start(self, name, config):
        path = self.run_dir / f"policy-{name}"
        log = (self.keep / f"lda-policy-{name}.log").open("wb")
        self.processes.append((subprocess.Popen(
            [str(LDA), "policy", "--listen", f"unix:{path}"],
            user=self.server.owner.uid, group=self.server.owner.gid, extra_groups=[],
            cwd="/", env={"PATH": "/usr/bin:/bin", "HOME": str(self.server.owner.home),
                          "LDA_CONFIG": str(config)},
            stdout=subprocess.DEVNULL, stderr=log), log))
        self.sockets[name] = path
        assert poll(path.exists, 20), f"lda policy ({name}) did not listen"

    def log(self, name):
        return (self.keep / f"lda-policy-{name}.log").read_text(errors="replace")

    def use(self, variant):
        """Dovecot configured as `variant`; reloaded (and waited for) when
        it was not."""
        if variant == self.variant:
            return
        self.server.configure(quota_rule=None, extra=dovecot_conf(variant))
        if self.variant is None:
            self.server.start()
        expected = NOUSER[variant]
        probe = request(f"nobody@{DOMAIN}")

        def answers():
            try:
                return exchange(self.dovecot_socket, probe, 1) == [expected]
            except OSError:
                return False
        assert poll(answers, 20), f"quota-status did not answer as {variant}"
        self.variant = variant

    def ask(self, variant, payload, count):
        """{"dovecot": actions, "lda": actions} for the same bytes."""
        self.use(variant)
        return {"dovecot": exchange(self.dovecot_socket, payload, count),
                "lda": exchange(self.sockets[variant], payload, count)}

    def stop(self):
        """SIGTERM each `lda policy`: each must exit 0."""
        statuses = []
        for process, log in self.processes:
            process.terminate()
            statuses.append(process.wait(30))
            log.close()
        return statuses


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    keep = tmp_path_factory.mktemp("policy-dovecot")
    with private_dovecot(keep, quota_rule=None) as server:
        server.stop()  # Pair starts it once quota-status is configured
        pair = Pair(server, keep)
        try:
            yield pair
        finally:
            statuses = pair.stop()
        assert statuses == [0] * len(statuses), statuses


# --- The cases -------------------------------------------------------------------

@dataclass
class Case:
    id: str
    payload: bytes
    count: int = 1   # requests in payload


def rcpt(user, size="0", **attributes):
    return request(f"{user}@{DOMAIN}" if "@" not in user else user, size, **attributes)


CASES = [
    *[Case(f"{user}-size0", rcpt(user)) for user in (*USERS, "nobody")],
    *[Case(f"{user}-size3000", rcpt(user, "3000")) for user in (*USERS, "nobody")],
    Case("near-exactly-full", rcpt("near", "1240")),
    Case("near-one-byte-over", rcpt("near", "1241")),
    Case("tiny-exactly-quota", rcpt("tiny", "2048")),
    Case("tiny-one-byte-over", rcpt("tiny", "2049")),
    Case("no-size", rcpt("over", None)),
    Case("size-not-a-number", rcpt("tiny", "abc")),
    Case("size-negative", rcpt("tiny", "-3000")),
    Case("size-space", rcpt("tiny", " 3000")),
    Case("size-superscript-digit", rcpt("near", "\u00b2")),
    Case("size-arabic-indic-digits", rcpt("near", "\u0663\u0660\u0660\u0660")),
    Case("size-10e18", rcpt("tiny", "1" + "0" * 18)),
    Case("size-10e19", rcpt("tiny", "1" + "0" * 19)),
    Case("size-25-digits", rcpt("tiny", "9" * 25)),
    Case("size-nul", rcpt("near", "3000\0")),
    Case("extension", rcpt("over+x")),
    Case("extension-fits", rcpt("room+x")),
    Case("extension-size", rcpt("near+x", "3000")),
    Case("upper-case", rcpt("OVER@EXAMPLE.ORG")),
    Case("mixed-case-extension", rcpt("Over+Tag@Example.Org")),
    Case("angle-brackets", rcpt("<over@example.org>")),
    Case("no-domain", rcpt("over@")),
    Case("local-part-only", request("over")),
    Case("domain-only", request("@example.org")),
    Case("other-domain", request("someone@elsewhere.example")),
    Case("missing-recipient", request(None)),
    Case("empty-recipient", request("")),
    Case("state-data", rcpt("over", state="DATA")),
    Case("state-end-of-message", rcpt("over", "3000", state="END-OF-MESSAGE")),
    Case("state-connect", request(None, state="CONNECT")),
    Case("state-lower-case", rcpt("over", state="rcpt")),
    Case("state-missing", rcpt("over", state=None)),
    Case("request-missing", rcpt("over", request=None)),
    Case("request-other", rcpt("over", request="something_else")),
    Case("several-on-one-connection",
         rcpt("room") + rcpt("over") + rcpt("nobody") + rcpt("near", "3000")
         + rcpt("near", "1000") + rcpt("tiny", "5000") + rcpt("free", "5000"), 7),
    Case("size-of-the-request-before", rcpt("near", "3000") + rcpt("near", None), 2),
    Case("malformed-line", b"\x01\x02 not an attribute \xff\n" + rcpt("over")),
    Case("attribute-without-equals", rcpt("over").replace(b"recipient=", b"recipient ")),
    Case("empty-name", b"=over@example.org\n" + rcpt("room")),
    Case("duplicate-recipient", rcpt("over").replace(b"recipient=", b"recipient=room@"
                                                     b"example.org\nrecipient=")),
    Case("long-attribute-100k", rcpt("over", ccert_subject="x" * 100_000)),
    Case("long-line-200k", rcpt("over", ccert_subject="x" * 200_000) + rcpt("over"), 2),
    Case("long-recipient", rcpt("x" * 5000 + "@example.org")),
    Case("empty-request", b"\n"),
    Case("empty-request-then-one", b"\n" + rcpt("over"), 2),
    Case("crlf-line-ends", rcpt("over").replace(b"\n", b"\r\n")),
    Case("dotdot", request("../../etc/passwd@example.org")),
    Case("dotdot-user", request("../over@example.org")),
    Case("slash", request("a/b@example.org")),
    Case("slash-only", request("/")),
    Case("nul-after", request("over@example.org\x00evil")),
    Case("nul-inside", request("over\x00@example.org")),
    Case("cr-inside", request("over\r@example.org")),
    Case("bad-utf8", request("over\udcff@example.org")),
]

QUOTA_EXCEEDED = "554 5.2.2 Quota exceeded (mailbox for user is full)"
LDA_FULL = "452 4.2.2 Quota exceeded (mailbox for user is full)"
LDA_TOOLARGE = "552 5.2.3 Message is larger than the mailbox quota"
# Replies that say the same in other words, by variant and service: each is
# compared as what it stands for.  With both services' defaults:
# - a recipient that fits: lda says DUNNO, Dovecot OK, which would skip the
#   restrictions after check_policy_service (README).
# - an unknown recipient: lda leaves it to Postfix (reject_unlisted_recipient,
#   550 5.1.1) unless policy_reject_unknown is set; Dovecot rejects it.
# - a full mailbox: lda says what its delivery would, 452 4.2.2 with
#   quota_full = "tempfail" (its default; 552 5.2.2 with "reject"), where
#   Dovecot says 554, RFC 5321's "transaction failed" rather than 552; the
#   text after the codes is quota_exceeded_message in both.
# - a message larger than the whole quota: lda says 552 5.2.3 (RFC 3463:
#   length exceeds an administrative limit), permanent even with quota_full
#   = "tempfail", since no expunge makes room; Dovecot gives it the text of
#   a full mailbox.
# With "permit" (quota_status_toolarge unset), the last again: lda keeps its
# own default where Dovecot falls back to quota_status_overquota, which may
# be a 4XX that defers, again and again, a message that can never fit.
SAME_MEANING = {
    "defaults": {"dovecot": {"OK": "DUNNO", "REJECT Unknown user": "DUNNO",
                             QUOTA_EXCEEDED: "refused"},
                 "lda": {LDA_FULL: "refused", LDA_TOOLARGE: "refused"}},
    "permit": {"lda": {LDA_TOOLARGE: PERMIT["quota_status_overquota"]}},
}

BAD_ADDRESS = "553 5.1.3 *"
_OVER = {"defaults": LDA_FULL, "texts": TEXTS["quota_status_overquota"],
         "permit": PERMIT["quota_status_overquota"]}
_FITS = {"defaults": "DUNNO", "texts": "OK", "permit": "OK"}


def everywhere(*actions):
    return {variant: list(actions) for variant in VARIANTS}


# Where lda answers otherwise on purpose: {case id: (why, {variant: lda's
# actions, as fnmatch patterns})}; in a variant not named both agree.
DIFFERENCES = {
    "state-missing": (
        "lda judges only a request that says it is at RCPT; Postfix always sends "
        "protocol_state (SMTPD_POLICY_README), Dovecot takes its absence for RCPT",
        everywhere("DUNNO")),
    "request-missing": (
        "lda answers only request=smtpd_access_policy, the one request "
        "SMTPD_POLICY_README defines; Dovecot never reads request=",
        everywhere("DUNNO")),
    "request-other": (
        "lda answers only request=smtpd_access_policy (SMTPD_POLICY_README: the "
        "request attribute is required); Dovecot never reads request=",
        everywhere("DUNNO")),
    "size-of-the-request-before": (
        "each request stands alone (SMTPD_POLICY_README); Dovecot keeps the size of "
        "the request before when one has none (quota-status.c, client_reset)",
        {v: [_OVER[v], _FITS[v]] for v in VARIANTS}),
    "duplicate-recipient": (
        "SMTPD_POLICY_README: the server may keep the first value or the last; "
        "lda keeps the last, Dovecot the first", {v: [_OVER[v]] for v in VARIANTS}),
    "long-line-200k": (
        "lda closes a connection whose line passes 128 KiB (bounded memory; "
        "Postfix's lines are far shorter), as SMTPD_POLICY_README has a server in "
        "trouble do, and Postfix retries, then applies "
        "smtpd_policy_service_default_action (451 4.3.5); Dovecot reads any length",
        everywhere("<connection closed>", "<connection closed>")),
    "long-recipient": (
        "no mailbox has a 5000-octet address: lda answers as for any invalid address; "
        "Dovecot's auth refuses the username as an internal error, a DEFER_IF_PERMIT "
        "the client meets again at every retry",
        {"defaults": ["DUNNO"], "texts": [BAD_ADDRESS], "permit": ["DUNNO"]}),
    "nul-after": (
        "\"over@example.org\\0evil\" is not over's address (SMTPD_POLICY_README: a "
        "value must not contain null); Dovecot's C strings end it at the NUL and judge "
        "over's mailbox",
        {"defaults": ["DUNNO"], "texts": [BAD_ADDRESS], "permit": ["DUNNO"]}),
    "size-25-digits": (
        "a declared size past 2^64 is no smaller: lda takes it as too large, Dovecot's "
        "str_to_uoff overflows and takes it as no size",
        {"defaults": [LDA_TOOLARGE], "texts": [TEXTS["quota_status_toolarge"]],
         "permit": [LDA_TOOLARGE]}),
}
# With policy_reject_unknown, lda refuses what is no valid address (553 5.1.3,
# RFC 3463: bad destination mailbox address syntax), as it would refuse to
# deliver it (test_services.py's hostile recipients); Dovecot answers DUNNO
# when its parser fails, else looks the name up (an unknown user).
for _id in ("no-domain", "domain-only", "missing-recipient", "empty-recipient",
            "attribute-without-equals", "nul-inside", "cr-inside", "bad-utf8"):
    DIFFERENCES[_id] = ("with policy_reject_unknown lda refuses an invalid address, "
                        "Dovecot leaves it (DUNNO) or finds no such user",
                        {"texts": [BAD_ADDRESS]})


# A size= that is not ASCII digits (Postfix writes none) tells lda nothing of
# the message: it judges one byte, so a full mailbox is refused all the same,
# but a recipient with room gets DUNNO, never quota_status_success.
for _id in ("size-not-a-number", "size-negative", "size-space", "size-superscript-digit",
            "size-arabic-indic-digits"):
    DIFFERENCES[_id] = ("a size lda cannot read is not judged to fit: DUNNO, where Dovecot "
                        "takes it as 0 and answers its success reply",
                        {"texts": ["DUNNO"], "permit": ["DUNNO"]})
DIFFERENCES["size-nul"] = (
    "\"3000\\0\" is no number to lda (SMTPD_POLICY_README: a value holds no NUL), so a "
    "mailbox with room for a byte gets DUNNO; Dovecot's C string ends at the NUL and "
    "refuses near for 3000 bytes", everywhere("DUNNO"))


def meaning(variant, agent, actions):
    names = SAME_MEANING.get(variant, {}).get(agent, {})
    return [names.get(action, action) for action in actions]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
@pytest.mark.parametrize("variant", VARIANTS)
def test_lda_policy_answers_what_quota_status_answers(pair, variant, case):
    got = pair.ask(variant, case.payload, case.count)
    print(f"\n{variant:<8} {case.id:<28} dovecot {got['dovecot']}\n{'':<37}lda     "
          f"{got['lda']}")
    dovecot, lda = meaning(variant, "dovecot", got["dovecot"]), meaning(variant, "lda",
                                                                          got["lda"])
    reason, expected = DIFFERENCES.get(case.id, ("", {}))
    if variant in expected:
        assert len(got["lda"]) == len(expected[variant]), reason
        assert all(fnmatch.fnmatchcase(action, pattern)
                   for action, pattern in zip(got["lda"], expected[variant])), reason
        assert lda != dovecot, f"no longer a difference: {reason}"
    else:
        assert lda == dovecot


def damage(path):
    """Overwrite the SQLite header in place: every later read fails."""
    with open(path, "r+b") as f:
        f.write(b"this is no longer a database file" * 4)


def deferred(actions):
    return actions if actions[0].startswith("DEFER_IF_PERMIT") else None


def test_both_defer_when_they_cannot_tell_who_has_a_mailbox(pair):
    """lda's directory damaged, Dovecot's userdb a symlink to itself: neither
    can look the recipient up, and both answer DEFER_IF_PERMIT, never a
    rejection.  lda's copy of the directory is its own (a third `lda
    policy`), so the other cases keep theirs."""
    pair.use("defaults")
    state = pair.server.root / "lda-damaged"
    shutil.copytree(pair.state, state)
    pair.server.owner.chown_tree(state)
    config = write_lda_toml(pair.server.root / "lda-damaged.toml",
                            {"state_dir": str(state), "log": "stderr"})
    damage(state / "directory.sqlite")
    pair.start("damaged", config)
    users = pair.server.root / "users"
    users.rename(users.with_name("users.away"))
    try:
        users.symlink_to(users.name)  # stat() fails: ELOOP
        # Dovecot's passwd-file looks at its file at most once a second,
        # and keeps what it read for the rest of that second.
        dovecot = poll(lambda: deferred(exchange(pair.dovecot_socket, rcpt("over"), 1)), 5)
    finally:
        users.unlink(missing_ok=True)
        users.with_name("users.away").rename(users)
    ours = exchange(pair.sockets["damaged"], rcpt("room") + rcpt("over"), 2)
    print(f"\ndovecot {dovecot}\nlda     {ours}")
    assert dovecot == ["DEFER_IF_PERMIT Temporary internal error"]
    # Postfix hands the text to the SMTP client (450 4.3.0 <rcpt>: Recipient
    # address rejected: ...): like Dovecot's, lda's names no file and no
    # error, which go to its log.  The difference in words: lda gives RFC
    # 3463's 4.3.0 and Postfix's own words for a table it cannot read.
    assert ours == ["DEFER_IF_PERMIT 4.3.0 Temporary lookup failure"] * 2
    assert "unreadable mailbox directory" in pair.log("damaged")


# --- A real Postfix in front of each ------------------------------------------------

# (recipient, SIZE= or None): what an SMTP client gets at RCPT.
SMTP_CASES = [("room", None), ("near", 1000), ("near", 3000), ("over", None), ("tiny", 5000),
              ("free", 5000), ("nobody", None), ("over+x", None), ("OVER", None)]


def rcpt_replies(port, size, recipients):
    with smtplib.SMTP("127.0.0.1", port, timeout=WAIT_SECONDS) as smtp:
        smtp.ehlo("client.example.net")
        code, reply = smtp.mail("sender@example.net", [f"SIZE={size}"] if size else [])
        assert code == 250, reply
        return [smtp.rcpt(f"{r}@{DOMAIN}") for r in recipients]


def test_postfix_in_front_of_each_gives_the_client_the_same_replies(pair):
    """One private Postfix, two smtpd listeners: one asks quota-status, the
    other `lda policy` (check_policy_service after reject_unauth_destination,
    as SMTPD_POLICY_README says), with the same texts ("texts")."""
    require_postfix()
    pair.use("texts")
    lda_socket = pair.sockets["texts"]
    lda_socket.chmod(0o666)  # Postfix's smtpd, user postfix, connects
    restrictions = "reject_unauth_destination, check_policy_service unix:{}"
    root = pair.server.root / "postfix"
    root.mkdir(mode=0o755)
    postfix = Postfix(root, {"virtual_mailbox_domains": DOMAIN,
                             "smtpd_recipient_restrictions":
                                 restrictions.format(pair.dovecot_socket),
                             "lda_recipient_restrictions": restrictions.format(lda_socket)})
    lda_port = free_port()
    postfix.services = (f"127.0.0.1:{lda_port} inet n - n - - smtpd -o "
                        f"smtpd_recipient_restrictions=$lda_recipient_restrictions\n")
    postfix.start()
    try:
        for size in sorted({size for _, size in SMTP_CASES}, key=str):
            recipients = [r for r, s in SMTP_CASES if s == size]
            dovecot = rcpt_replies(postfix.port, size, recipients)
            ours = rcpt_replies(lda_port, size, recipients)
            print(f"\nSIZE={size}: {recipients}\ndovecot {dovecot}\nlda     {ours}")
            assert ours == dovecot
    finally:
        postfix.stop()
        shutil.copy(postfix.maillog, pair.keep / "maillog")

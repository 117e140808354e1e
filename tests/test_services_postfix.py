"""`lda policy` and `lda socketmap` in front of a real, private Postfix:
what lda would refuse is refused at RCPT and never queued, and Postfix's own
lookups (`postmap -q`) read lda's directory."""

import smtplib
import subprocess

import pytest
from conftest import Site, fill_mailbox
from postfix import POSTFIX, S250_OK, SBIN_PATH, VIRTUAL_DOMAIN, WAIT_SECONDS
from test_services import services  # noqa: F401 - the fixture

pytest_plugins = ["postfix"]  # mail_root, make_postfix, lda_lmtp

POSTMAP = POSTFIX.replace("postfix", "postmap") if POSTFIX else None


def address(local):
    return f"{local}@{VIRTUAL_DOMAIN}"


@pytest.fixture
def front(mail_root, make_postfix, lda_lmtp, services):  # noqa: F811
    """A site (alice; full at its 1 MiB quota; team = alice, full; quota_full
    = reject), lda lmtp, lda policy and lda socketmap, and a Postfix that
    asks both before it accepts a recipient."""
    (mail_root / "site").mkdir(mode=0o755)
    site = Site(mail_root / "site", quota_full="reject",
                socketmap_transport="lmtp:inet:lmtp.lda.test:24")
    site.create(address("alice"))
    fill_mailbox(site.create(address("full"), "--quota-storage", "1M"), 1024**2)
    site.aliases.write_text(f"{address('team')}: {address('alice')}, {address('full')}\n"
                            f"{address('fullteam')}: {address('full')}\n")
    server = lda_lmtp(site, "tcp")
    policy = services(site, "policy")
    socketmap = services(site, "socketmap")
    postfix = make_postfix(start=False)
    postfix.main.update({
        "virtual_transport": server.transport,
        "smtpd_reject_unlisted_recipient": "yes",
        "virtual_mailbox_maps": f"socketmap:inet:127.0.0.1:{socketmap.port}:mailbox",
        # As contrib/postfix/main.cf.services has it: the relay check first
        # (SMTPD_POLICY_README), then lda's policy.
        "smtpd_recipient_restrictions":
            f"reject_unauth_destination, check_policy_service inet:127.0.0.1:{policy.port}",
    })
    postfix.start()
    return site, postfix, policy, socketmap


def rcpt_replies(postfix, recipients, size=None):
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=WAIT_SECONDS) as smtp:
        smtp.ehlo("client.lda.test")
        options = [f"SIZE={size}"] if size else []
        code, reply = smtp.mail("sender@example.org", options)
        assert code == S250_OK, reply
        return [smtp.rcpt(r) for r in recipients]


def test_postfix_refuses_at_rcpt_what_lda_would_refuse(front):
    site, postfix, _, _ = front
    replies = rcpt_replies(postfix, [address("full"), address("nobody"), address("fullteam"),
                                     address("team"), address("alice")])
    codes = [code for code, _ in replies]
    assert codes == [552, 550, 552, 250, 250], replies
    assert replies[0][1] == (f"5.2.2 <{address('full')}>: Recipient address rejected: "
                             "Quota exceeded (mailbox for user is full)").encode()
    assert b"5.1.1" in replies[1][1]
    assert postfix.queue() == []  # nothing was accepted, nothing queued


def test_a_valid_recipient_is_delivered_once(front):
    site, postfix, _, _ = front
    message = (b"From: sender@example.org\r\nTo: alice\r\nSubject: hi\r\n"
               b"Message-ID: <policy-1@example.org>\r\n\r\nHello.\r\n")
    queue_id = postfix.send(message, [address("alice")])
    postfix.wait_for_delivery(queue_id, address("alice"), status="sent")
    delivered = list((site.maildir(address("alice")) / "new").iterdir())
    assert len(delivered) == 1
    assert delivered[0].read_bytes().endswith(b"Hello.\n")


@pytest.mark.parametrize("name, key, answer", [
    ("mailbox", address("alice"), address("alice")),
    ("mailbox", address("team"), address("team")),
    ("mailbox", address("nobody"), None),
    ("alias", address("team"), f"{address('alice')},{address('full')}"),
    ("alias", address("alice"), None),
    ("domain", VIRTUAL_DOMAIN, VIRTUAL_DOMAIN),
    ("domain", "example.net", None),
    ("transport", address("alice"), "lmtp:inet:lmtp.lda.test:24"),
    ("transport", VIRTUAL_DOMAIN, "lmtp:inet:lmtp.lda.test:24"),
    ("transport", address("nobody"), None),
], ids=lambda v: str(v).split("@")[0].split(":")[0])
def test_postmap_reads_every_map(front, name, key, answer):
    site, postfix, _, socketmap = front
    table = f"socketmap:inet:127.0.0.1:{socketmap.port}:{name}"
    done = subprocess.run([POSTMAP, "-c", str(postfix.config_dir), "-q", key, table],
                          capture_output=True, text=True, env={"PATH": SBIN_PATH}, timeout=60)
    if answer is None:
        assert done.returncode == 1 and done.stdout == "", (done.stdout, done.stderr)
    else:
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == answer

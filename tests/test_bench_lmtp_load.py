"""bench/lmtp_load.py, the LMTP load of bench/compare.py cases 6 and 7: its
check of the Maildirs, and Postfix's smtp-source and the own client against
a real `lda lmtp` with tiny loads."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))
import lmtp_load  # noqa: E402  (bench/lmtp_load.py)
import peers  # noqa: E402  (bench/peers.py)

needs_smtp_source = pytest.mark.skipif(not os.path.exists(peers.SMTP_SOURCE),
                                       reason="smtp-source (package postfix) not installed")


def maildir_with(root, *message_ids):
    """A Maildir holding one message per Message-ID (None: no such field)."""
    peers.make_maildir(str(root))
    for i, message_id in enumerate(message_ids):
        field = b"" if message_id is None else b"Message-Id: " + message_id.encode() + b"\r\n"
        (root / "new" / f"{i}.bench").write_bytes(b"From: <a@example.org>\r\n" + field +
                                                  b"\r\nbody\r\nMessage-Id: <not@header>\r\n")
    return str(root)


def test_check_accepts_what_was_sent(tmp_path):
    one = maildir_with(tmp_path / "one", "<a@x>", "<b@x>")
    two = maildir_with(tmp_path / "two", "<c@x>")
    assert lmtp_load.check("load", {one: 2, two: 1}) == 3


@pytest.mark.parametrize("ids, expected, error", [
    (["<a@x>"], 2, "1 messages in"),
    (["<a@x>", "<b@x>", "<c@x>"], 2, "3 messages in"),
    (["<a@x>", None], 2, "has no Message-ID"),
], ids=["lost", "doubled", "no-message-id"])
def test_check_refuses_a_wrong_maildir(tmp_path, ids, expected, error):
    box = maildir_with(tmp_path / "box", *ids)
    with pytest.raises(lmtp_load.LoadFailed, match=error):
        lmtp_load.check("load", {box: expected})


def test_check_refuses_a_message_id_seen_twice_across_mailboxes(tmp_path):
    one = maildir_with(tmp_path / "one", "<a@x>")
    two = maildir_with(tmp_path / "two", "<a@x>")
    with pytest.raises(lmtp_load.LoadFailed, match="Message-ID <a@x> twice"):
        lmtp_load.check("load", {one: 1, two: 1})


def test_shapes_of_load(tmp_path):
    made = []

    def new_mailbox(user):
        made.append(user)
        return str(tmp_path / user)

    server = lmtp_load.Server("test", 0, new_mailbox)
    hot = lmtp_load.hot(server, 16, 64)
    assert [[(s.sessions, s.messages) for s in lane] for lane in hot] == [[(16, 64)]]
    spread = lmtp_load.spread(server, 4, 4, 16)
    assert len({s.address for lane in spread for s in lane}) == 4
    pooled = lmtp_load.pooled(server, 16, 3, 4)
    assert [len(lane) for lane in pooled] == [4, 4, 4, 4]
    assert lmtp_load.total(pooled) == 48
    assert len(made) == len(set(made)) == 1 + 4 + 16   # every mailbox a fresh one


@pytest.fixture
def lmtp_server(lmtp):
    """`lda lmtp` on loopback TCP, as compare.py runs it, and a source of
    fresh mailboxes on its site."""
    port = peers.free_port()
    server = lmtp(listen=f"127.0.0.1:{port}")
    return lmtp_load.Server("lda lmtp", port,
                            lambda user: str(server.site.create(f"{user}@{peers.DOMAIN}")))


@needs_smtp_source
def test_smtp_source_into_one_mailbox_delivers_every_message(lmtp_server):
    lanes = lmtp_load.hot(lmtp_server, 4, 24)
    assert lmtp_load.measure("smtp-source", lmtp_server.port, lanes, "hot") > 0
    maildir = lanes[0][0].maildir
    assert len(os.listdir(os.path.join(maildir, "new"))) == 24


def test_own_client_spread_delivers_every_message(lmtp_server):
    lanes = lmtp_load.spread(lmtp_server, 2, 2, 8)
    assert lmtp_load.measure("own", lmtp_server.port, lanes, "spread") > 0
    assert lmtp_load.check("again", lmtp_load.expected_counts(lanes)) == 16


@needs_smtp_source
def test_without_message_ids_lda_keeps_one_and_the_check_says_so(lmtp_server, tmp_path):
    """smtp-source's bodies are all alike: from a file without a Message-ID
    (-F), lda discards all but the first as duplicates of its body's digest.
    The driver relies on smtp-source's own Message-IDs, and the check would
    catch a load that lost them."""
    template = tmp_path / "message"
    template.write_text("From: <a@example.org>\nSubject: same\n\nthe same body\n")
    address, maildir = lmtp_server.fresh()
    subprocess.run([peers.SMTP_SOURCE, "-L", "-d", "-m", "4", "-F", str(template),
                    "-t", address, f"127.0.0.1:{lmtp_server.port}"], check=True,
                   capture_output=True)
    with pytest.raises(lmtp_load.LoadFailed, match="1 messages in"):
        lmtp_load.check("no ids", {maildir: 4})

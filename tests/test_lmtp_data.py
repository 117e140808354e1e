"""lda lmtp's DATA reader against aiosmtpd's own, over real sockets.

LdaLMTP.smtp_DATA reads the message in runs of up to a kilobyte where
aiosmtpd reads a line at a time.  Both servers run side by side on
loopback, aiosmtpd's without its line length limit (lda has none: only the
message size is limited); every byte stream is sent to each, and the whole
transcript (the code of every reply, to DATA and to whatever follows it)
and the message each handler received must be the same: the end of the
message, dot removal and the size limit (552).  lda's replies carry
enhanced status codes and its LHLO reply other lines, so the transcripts are
compared by reply code, one per reply.
"""

import socket
import time

import pytest
from aiosmtpd.lmtp import LMTP
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lmtp_pair import SIZE_LIMIT, ServerPair


class Capture:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.original_content)
        return "250 OK"


class Unlimited(LMTP):
    """aiosmtpd's LMTP without its 1,001-byte limit on message lines."""

    line_length_limit = 2**30


class Pair(ServerPair):
    """aiosmtpd's LMTP and lda's, each with a handler that keeps what it got."""

    def __init__(self):
        super().__init__({"aiosmtpd": Capture(), "lda": Capture()}, Unlimited)

    def transcript(self, name, data, piece=None,
                   start=b"LHLO client.example.org\r\nMAIL FROM:<a@example.org>\r\n"
                         b"RCPT TO:<b@example.org>\r\nDATA\r\n"):
        """The code of each reply the server sends for one session with
        `data` after 354, then QUIT, and the messages its handler received.  With
        `piece`, the data goes in pieces of that size, a moment apart, so
        the server's reads (and where its runs end) fall at other places."""
        capture = self.captures[name]
        capture.messages = []
        with socket.create_connection(("127.0.0.1", self.ports[name]), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(start)
            stream = data + b"QUIT\r\n"
            step = piece or len(stream)
            for start in range(0, len(stream), step):
                sock.sendall(stream[start:start + step])
                if piece:
                    time.sleep(0.002)
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        return reply_codes(received), list(capture.messages)


def reply_codes(received):
    """b"220 250 354 250 221" from a transcript: each reply's code, the
    lines of a multi-line reply counted once."""
    return b" ".join(line[:3] for line in received.split(b"\r\n") if line[3:4] == b" ")


@pytest.fixture(scope="module")
def pair():
    servers = Pair()
    yield servers
    servers.close()


def same(pair, data, piece=None, **start):
    reference = pair.transcript("aiosmtpd", data, piece, **start)
    ours = pair.transcript("lda", data, piece, **start)
    assert ours == reference
    return ours


def test_an_ordinary_message_arrives_whole_and_unstuffed(pair):
    replies, messages = same(pair, b"Subject: x\r\n\r\n..dot\r\nbody.\r\n.\r\n")
    assert messages == [b"Subject: x\r\n\r\n.dot\r\nbody.\r\n"]
    assert replies == b"220 250 250 250 354 250 221"


def test_the_size_limit_is_aiosmtpds_and_lines_have_none(pair):
    replies, messages = same(pair, (b"y" * 98 + b"\r\n") * 31 + b".\r\n")  # 3,100 bytes
    assert messages == [] and replies.endswith(b"354 552 221")
    _, messages = same(pair, (b"y" * 98 + b"\r\n") * 30 + b".\r\n")  # 3,000: taken
    assert len(messages[0]) == SIZE_LIMIT
    _, messages = same(pair, b"z" * 2998 + b"\r\n.\r\n")  # one line of 3,000 bytes
    assert messages == [b"z" * 2998 + b"\r\n"]


@pytest.mark.parametrize("length", [500, 1001, 1002, 5000, 70_000])
def test_long_command_lines_get_aiosmtpds_replies(pair, length):
    """lda's reader has a larger limit than aiosmtpd's (fewer pauses while a
    message arrives); a command line over the limits must still be
    answered as aiosmtpd answers it (lda takes longer MAIL and RCPT lines:
    test_lmtp_replies.py)."""
    for command in (b"NOOP ", b"XYZZY "):
        replies, _ = same(pair, command + b"x" * length + b"\r\nNOOP\r\n",
                          start=b"LHLO client.example.org\r\n")
        assert len(replies.split()) == 5  # greeting, LHLO, two replies, QUIT


line = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\r\n.\r\n", b"")),
    st.sampled_from([b"", b".", b"..", b".x", b"\r", b"\n", b"x\r", b"\r.", b". ", b".\r"]),
    st.integers(990, 1010).map(lambda n: b"w" * n),
    st.integers(2, 12).map(lambda n: (b"v" * 98 + b"\r\n") * n + b"v" * 98),
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=st.lists(line, max_size=30), tail=st.sampled_from([b".\r\n", b"\r\n.\r\n"]),
       piece=st.sampled_from([None, None, 97, 256, 1000, 1003, 1500]))
@example(lines=[], tail=b".\r\n", piece=None)
@example(lines=[b"."], tail=b".\r\n", piece=None)
@example(lines=[b"a", b".", b"b"], tail=b".\r\n", piece=None)
@example(lines=[b"x\r"], tail=b".\r\n", piece=None)
@example(lines=[b"w" * 1002, b"v" * 3000], tail=b".\r\n", piece=None)
def test_any_data_gives_the_same_transcript(pair, lines, tail, piece):
    """Lines may hold bare CR and LF, lone dots (the message ends early and
    the rest is read as commands), lines around the 1,001-byte limit and
    runs over the 3,000-byte size limit, sent at once or in pieces."""
    same(pair, at_most_two_commands_after_the_end(
        b"".join(text + b"\r\n" for text in lines) + tail), piece)


def at_most_two_commands_after_the_end(data):
    """What follows an early end of the message is read as commands; after
    five bad ones aiosmtpd hangs up, and a close with unread input resets
    the connection, which would lose replies at random: keep two."""
    end = 3 if data.startswith(b".\r\n") else data.find(b"\r\n.\r\n") + 5
    for _ in range(2):
        found = data.find(b"\r\n", end)
        end = len(data) if found < 0 else found + 2
    return data[:end]

"""`lda lmtp` writes the replies of a pipelined group together (RFC 2920
section 3.1), and holds none while it waits: a client that pipelines
reads MAIL's, every RCPT's and DATA's replies in one read; a client that
sends one command at a time, or whose next line is still on its way, gets
each reply without sending anything more.

Each test talks to the installed `lda lmtp` over a real unix socket.
"""

import asyncio
import signal
import socket
import time

import pytest

from conftest import maildir_files, message
from lmtp_session import dot_stuffed

SENDER = "s@example.org"
BOX = "a@example.org"
# Long enough for any reply on a loaded machine; a reply held until the
# client's next command never comes.
PROMPT = 20


def connect(server):
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(PROMPT)
    sock.connect(str(server.path))
    assert read_lines(sock, 1)[0].startswith("220")
    sock.sendall(b"LHLO test\r\n")
    assert read_lines(sock, 6)[-1].startswith("250 ")
    return sock


def read_lines(sock, count):
    """`count` reply lines, however many reads they take."""
    data = b""
    while data.count(b"\r\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return data.decode().split("\r\n")[:count]


def one_read(sock):
    """The reply lines a single recv() returns: all of a group's when the
    server wrote them in one write; a recv() woken by the first of several
    writes returns that one alone."""
    data = sock.recv(65536)
    return data.decode().split("\r\n")[:-1]


def codes(lines):
    return [line[:3] for line in lines]


@pytest.mark.parametrize("count", [1, 3, 50])
def test_a_pipelined_group_gets_its_replies_in_one_write(lmtp, count):
    server = lmtp("--processes", "1")
    sock = connect(server)
    rcpts = [f"a+{n}@example.org" for n in range(1, count + 1)]
    group = [f"MAIL FROM:<{SENDER}>"] + [f"RCPT TO:<{r}>" for r in rcpts] + ["DATA"]
    sock.sendall("".join(f"{line}\r\n" for line in group).encode())
    lines = one_read(sock)
    assert codes(lines) == ["250"] * (count + 1) + ["354"], lines
    msg = message(message_id="<piped@example.org>")
    # The final dot and the next transaction's group in one write: the
    # delivery's replies go with that group's.
    sock.sendall(dot_stuffed(msg) + b".\r\n" + "".join(f"{line}\r\n" for line in group).encode())
    lines = read_lines(sock, count + count + 2)
    assert codes(lines) == ["250"] * count + ["250"] * (count + 1) + ["354"], lines
    assert all(f"<{r}>" in line for r, line in zip(rcpts, lines)), lines
    sock.sendall(dot_stuffed(msg) + b".\r\nQUIT\r\n")
    lines = read_lines(sock, count + 1)
    assert codes(lines) == ["250"] * count + ["221"], lines
    sock.close()
    assert len(maildir_files(server.site.maildir(BOX))) == 1  # the second a duplicate


def test_a_client_that_does_not_pipeline_gets_every_reply_at_once(lmtp):
    """Each command alone, and the next only after its reply: a reply held
    for a next command would never come (the recv times out)."""
    server = lmtp("--processes", "1")
    sock = connect(server)
    for line, code in [(f"MAIL FROM:<{SENDER}>", "250"), (f"RCPT TO:<{BOX}>", "250"),
                       ("NOOP", "250"), ("DATA", "354")]:
        sock.sendall(f"{line}\r\n".encode())
        assert codes(read_lines(sock, 1)) == [code], line
    sock.sendall(dot_stuffed(message(message_id="<alone@example.org>")) + b".\r\n")
    assert codes(read_lines(sock, 1)) == ["250"]
    sock.sendall(b"RSET\r\n")
    assert codes(read_lines(sock, 1)) == ["250"]
    sock.close()


def test_a_reply_is_not_held_for_a_line_still_on_its_way(lmtp):
    """MAIL and half of RCPT in one write: MAIL's 250 comes while the rest
    of the RCPT line has not, then RCPT's when it has."""
    server = lmtp("--processes", "1")
    sock = connect(server)
    sock.sendall(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<a@exa".encode())
    assert codes(read_lines(sock, 1)) == ["250"]
    sock.sendall(b"mple.org>\r\n")
    assert codes(read_lines(sock, 1)) == ["250"]
    sock.sendall(b"QUIT\r\n")
    assert codes(read_lines(sock, 1)) == ["221"]
    sock.close()


def test_held_replies_keep_their_order_around_a_refusal_and_before_quit(lmtp):
    """A refusal is sent at once with the 250s held before it; QUIT's 221
    sends what is held before the server closes."""
    server = lmtp("--processes", "1")
    sock = connect(server)
    group = [f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{BOX}>", "RCPT TO:<nobody@example.org>",
             "RCPT TO:<b@example.org>", "RSET", "NOOP", "QUIT"]
    sock.sendall("".join(f"{line}\r\n" for line in group).encode())
    lines = read_lines(sock, len(group))
    assert codes(lines) == ["250", "250", "550", "250", "250", "250", "221"], lines
    assert sock.recv(100) == b""  # closed, nothing more
    sock.close()


def test_a_stop_sends_the_held_replies_before_421(lmtp):
    """`lda lmtp` stopped while it answers a pipelined group (each RCPT
    resolved in a worker thread, so the stop comes between two): the
    replies of the commands it answered come, in order, then 421.  The
    refused RCPT early in the group is sent at once: once it is here, the
    server is working through the rest.  (How many it answered the client
    cannot know: the next test holds the held replies to account.)"""
    server = lmtp("--processes", "1", "--workers", "1")
    sock = connect(server)
    group = ([f"MAIL FROM:<{SENDER}>", "RCPT TO:<nobody@example.org>"]
             + [f"RCPT TO:<a+{n}@example.org>" for n in range(990)])
    sock.sendall("".join(f"{line}\r\n" for line in group).encode())
    data = b""
    while b"\r\n550 " not in data:
        data += sock.recv(65536)
    time.sleep(0.02)
    server.proc.send_signal(signal.SIGTERM)
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    lines = data.decode().split("\r\n")[:-1]
    answered = len(lines) - 3  # after MAIL's 250 and the 550, before the 421
    assert 1 <= answered <= len(group) - 2, lines[-3:]
    assert codes(lines) == ["250", "550"] + ["250"] * answered + ["421"], lines[-3:]


class StopAtRcpt:
    """An LMTP handler that ends the session (as a stop does, close_with)
    while it answers the RCPT for stop@: the held replies are due first."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        if address.startswith("stop@"):
            server.close_with("421 4.3.2 shutting down")
        return "250 2.1.5 OK"


def test_a_session_closed_while_replies_are_held_sends_them_before_421(tmp_path):
    """Deterministic, in one process: LdaLMTP on a unix socket, a group of
    MAIL and three RCPTs, the session closed during the third; MAIL's and
    the first two RCPTs' 250s (held: the next line was there) come before
    the 421."""
    from lda.config import Config
    from lda.lmtp.protocol import LdaLMTP

    config = Config({"state_dir": str(tmp_path / "state")})
    path = str(tmp_path / "lmtp.sock")

    async def run():
        server = await asyncio.get_running_loop().create_unix_server(
            lambda: LdaLMTP(StopAtRcpt(), config), path)
        reader, writer = await asyncio.open_unix_connection(path)
        await reader.readline()
        writer.write(b"LHLO test\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<a@example.org>\r\n"
                     b"RCPT TO:<b@example.org>\r\nRCPT TO:<stop@example.org>\r\n")
        data = await asyncio.wait_for(reader.read(), PROMPT)
        writer.close()
        server.close()
        return data.decode().split("\r\n")[:-1]

    lines = asyncio.run(run())
    assert codes(lines) == ["250"] * 6 + ["250", "250", "250", "421"], lines

"""lda lmtp's command loop and MAIL/RCPT against aiosmtpd's own.

LdaLMTP runs a leaner copy of aiosmtpd's command loop and of its MAIL and
RCPT (no per-line logging, no awaits between checks): for any run of
commands it must answer as aiosmtpd's LMTP answers, reply for reply, and
hand the handler the same envelope.  Both servers run side by side on
loopback with the same handler (no MAIL or RCPT hook: aiosmtpd's defaults
decide), every byte stream goes to each, and each reply is compared by its
code and its text without the RFC 3463 code lda adds; LHLO's reply (lda
advertises more) by its code.
"""

import re
import socket

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lmtp_pair import ServerPair

from lda.log import printable

END = b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"


class Capture:
    """A handler with DATA alone: what the envelope held at each DATA."""

    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, envelope.rcpt_tos, envelope.mail_options,
                               envelope.rcpt_options, envelope.smtp_utf8,
                               envelope.original_content))
        return "250 OK"


class Pair(ServerPair):
    def __init__(self):
        super().__init__({"aiosmtpd": Capture(), "lda": Capture()})

    def transcript(self, name, data):
        capture = self.captures[name]
        capture.envelopes = []
        with socket.create_connection(("127.0.0.1", self.ports[name]), timeout=10) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        return replies(received.decode("utf-8", "surrogateescape")), list(capture.envelopes)


ENHANCED = re.compile(r"^([245][0-9][0-9]) [245]\.[0-9]{1,3}\.[0-9]{1,3} ")
# lda's rewordings: aiosmtpd's 553 for an address it cannot parse, its
# LMTP's LHLO, which names EHLO, its 501 for BODY=BINARYMIME, which RFC 5321
# section 4.1.1.11 answers 555, and its 502 before it hangs up on too many
# unknown commands, which section 3.8 answers 421 (test_lmtp_dovecot.py).
# HELP's list is compared without AUTH, which lda lmtp does not do.
REWORDED = {"501 malformed address": "553 Error: malformed address",
            "501 Syntax: LHLO hostname": "501 Syntax: EHLO hostname",
            "555 Error: BODY can only be one of 7BIT, 8BITMIME":
                "501 Error: BODY can only be one of 7BIT, 8BITMIME",
            "421 Too many unrecognized commands, closing":
                "502 Too many unrecognized commands, goodbye."}


UNKNOWN = '500 Error: command "'


def replies(received):
    """Each reply as "code text" without an enhanced code; a multi-line
    reply as its code alone."""
    found, multi = [], False
    for line in received.split("\r\n")[:-1]:
        if line[3:4] == "-":
            multi = True
            continue
        text = ENHANCED.sub(r"\1 ", line)
        if text.startswith(UNKNOWN):  # lda escapes what aiosmtpd echoes raw
            text = printable(text)
        if "Supported commands:" in text:
            text = text.replace(" AUTH ", " ")
        found.append(line[:3] if multi else REWORDED.get(text, text))
        multi = False
    return found


@pytest.fixture(scope="module")
def pair():
    servers = Pair()
    yield servers
    servers.close()


HANG_UP = "502 Too many unrecognized commands, goodbye."


def same(pair, lines, end=END):
    data = b"".join(line + b"\r\n" for line in lines) + end
    reference = pair.transcript("aiosmtpd", data)
    ours, envelopes = pair.transcript("lda", data)
    answered = one_reply_after_data(ours, envelopes)
    if HANG_UP in reference[0] and HANG_UP not in answered:
        # aiosmtpd hangs up at the fifth unknown command of the session,
        # lda at the fifth in a row, as Dovecot's lmtp counts them
        # (test_lmtp_dovecot.py): the same up to there, then lda goes on.
        at = reference[0].index(HANG_UP)
        assert answered[:at] == reference[0][:at]
        assert answered[at].startswith("500 Error: command"), answered
        return ours, envelopes
    assert (answered, envelopes) == reference
    return ours, envelopes


def one_reply_after_data(codes, envelopes):
    """lda's replies with DATA answered once, as aiosmtpd answers it: lda
    answers each recipient (RFC 2033 section 4.2, test_lmtp_replies.py)."""
    if not envelopes:
        return codes
    [(_, rcpts, *_)] = envelopes
    after = codes.index("354 End data with <CR><LF>.<CR><LF>") + 1
    assert codes[after:after + len(rcpts)] == [codes[after]] * len(rcpts), codes
    return codes[:after + 1] + codes[after + len(rcpts):]


def test_a_transaction_gets_aiosmtpds_replies(pair):
    codes, [envelope] = same(pair, [b"LHLO c", b"MAIL FROM:<a@example.org> BODY=8BITMIME",
                                      b"RCPT TO:<b@example.org>"])
    assert [r[:3] for r in codes] == ["220", "250", "250", "250", "354", "250", "221"]
    assert envelope[:5] == ("a@example.org", ["b@example.org"], ["BODY=8BITMIME"], [], False)


def test_help_lists_mail_and_rcpt_as_aiosmtpd_does(pair):
    codes, _ = same(pair, [b"LHLO c", b"HELP", b"HELP MAIL", b"HELP RCPT"])
    assert "MAIL" in codes[2] and "RCPT" in codes[2], codes
    # Not AUTH, which lda lmtp neither offers nor does (replies() leaves
    # it out of aiosmtpd's list).
    with socket.create_connection(("127.0.0.1", pair.ports["lda"]), timeout=10) as sock:
        sock.sendall(b"LHLO c\r\nHELP\r\nQUIT\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    [listing] = [line for line in received.split(b"\r\n") if b"Supported" in line]
    assert b"MAIL" in listing and b"AUTH" not in listing, listing
    assert codes[3].startswith("250 Syntax: MAIL FROM:"), codes


verbs = st.sampled_from([b"MAIL", b"mail", b"RCPT", b"Rcpt", b"RSET", b"NOOP", b"HELP",
                         b"VRFY", b"DATA", b"LHLO", b"HELO", b"\xc3\xa9", b""])
keywords = st.sampled_from([b"", b" ", b" FROM:", b" from:", b" FROM: ", b" TO:", b" to:",
                           b"  TO:", b" FROMX:"])
# Not a "<" without its ">", nor a control character, which lda reads more
# strictly on purpose (test_lmtp_address.py).
addresses = st.sampled_from([b"", b"<>", b"<a@example.org>", b"a@example.org",
                             b"<a@example.org>>", b'<"q r"@example.org>',
                             b"<@relay.org:a@example.org>", b"<\xc3\xa9@example.org>",
                             b"<\xff@example.org>",
                             b"<a@example.org> (c)", b"<a.b@x-y.example.org>"])
params = st.lists(st.sampled_from([b" SIZE=100", b" SIZE=3000", b" SIZE=3001", b" SIZE=x",
                                   b" SIZE",
                                   b" BODY=8BITMIME", b" BODY=7BIT", b" BODY=BINARYMIME",
                                   b" SMTPUTF8", b" SMTPUTF8=1", b" X=1", b" =1", b"\tSIZE=1",
                                   b" size=10", b" NOTIFY=NEVER", b" body="]), max_size=3)
anything = st.builds(lambda v, k, a, p: v + k + a + b"".join(p), verbs, keywords, addresses,
                     params)
# MAIL and RCPT with an address, so that the parameters decide.
well_formed = st.builds(lambda v, a, p: v + a + b"".join(p),
                        st.sampled_from([b"MAIL FROM:", b"RCPT TO:"]),
                        st.sampled_from([b"<a@example.org>", b"<b@example.org>"]), params)
command = st.one_of(anything, well_formed)


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lhlo=st.sampled_from([b"LHLO client", b"LHLO", None]),
       lines=st.lists(command, max_size=12), unknown=st.sampled_from([None, b"XYZZY x"]))
@example(lhlo=b"LHLO client", lines=[b"MAIL FROM:<a@example.org> SIZE=100 SMTPUTF8",
                                     b"RCPT TO:<b@example.org>", b"RCPT TO:<b@example.org>"],
         unknown=None)
@example(lhlo=None, lines=[b"MAIL FROM:<a@example.org> SIZE=1"], unknown=None)
@example(lhlo=b"LHLO client", lines=[b"MAIL FROM:<a@example.org> SIZE=3001",
                                     b"MAIL FROM:<a@example.org> SIZE=3000"], unknown=None)
@example(lhlo=b"LHLO client", lines=[b"MAIL FROM:<a@example.org>", b"MAIL FROM:<c@d.org>",
                                     b"RCPT TO:<b@example.org> X=1"], unknown=b"XYZZY")
def test_any_commands_get_aiosmtpds_replies_and_envelope(pair, lhlo, lines, unknown):
    """Every order of commands (before LHLO, MAIL twice, RCPT before MAIL,
    DATA without recipients), every form of argument aiosmtpd tells apart
    (no keyword, no address, malformed, parameters known, unknown and
    badly formed, bytes that are not UTF-8), upper and lower case, a
    non-ASCII and an empty line, at
    most one unknown command (the text after a refused DATA adds three:
    aiosmtpd hangs up at five)."""
    same(pair, ([lhlo] if lhlo else []) + lines + ([unknown] if unknown else []))


@pytest.mark.parametrize("line", [b"\x00\x00\x00", b"\x01X\x7f", b"A\x1b[2JB",
                                  "X\u202eY".encode(), "X\u0085Y".encode()])
def test_an_unknown_command_is_echoed_escaped(pair, line):
    """aiosmtpd echoed an unknown command's characters as they came (NULs,
    escape sequences, bidi overrides) into its 500 reply, and into
    Postfix's log of it; lda escapes them, as in its own log."""
    with socket.create_connection(("127.0.0.1", pair.ports["lda"]), timeout=10) as sock:
        sock.sendall(line + b"\r\nQUIT\r\n")
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    [_, reply, _] = received.decode("utf-8").split("\r\n")[:-1]
    assert reply.startswith("500 5.5."), reply  # not recognized, or bad syntax
    assert reply.isprintable() and reply.isascii(), reply

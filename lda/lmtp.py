"""The LMTP protocol for lda: aiosmtpd's LMTP with per-recipient replies.

aiosmtpd's smtp_DATA pushes the handler's status as one reply (its issue
517); RFC 2033 section 4.2 wants one reply per accepted recipient, in RCPT
order.  push() writes the status and a CRLF, so the handler returns the
replies joined by CRLF and every recipient gets its own line.
"""

import asyncio
import re

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, syntax

# <local@domain> with a dot-atom local part and domain, ASCII, then spaces
# and nothing that starts a comment: what MTAs send in MAIL and RCPT.
# aiosmtpd parses every address with the email package's header parser and
# a Protocol class defined per call, a fifth of lda lmtp's event-loop time;
# this gives the same (address, rest) for these, and the parser gets the
# rest (quoted local parts, source routes, comments, <>, UTF-8).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
                            r"(?![ \t]*[(])[ \t]*")


TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"


def data_replies(replies):
    """The DATA status for aiosmtpd: one reply line per recipient."""
    return "\r\n".join(replies)


class LdaLMTP(LMTP):
    """LMTP that names itself, never decodes message bytes, and tells
    `on_close` when its session ends."""

    # aiosmtpd sizes its StreamReader by this: at 1,001 bytes the transport
    # paused and resumed every 2 KB of a message.  Message lines are still
    # held to aiosmtpd's 1,001 (smtp_DATA) and command lines to its
    # command_size_limit, with the same replies.
    line_length_limit = 65536
    # asyncio's socket transport recv()s up to 256 KiB at a time.  That is
    # over glibc's mmap threshold: every read, of a 30-byte command too,
    # maps and unmaps a buffer of its own (~15 us; a tenth of lda lmtp's
    # Python time).  64 KiB buffers come from the heap.
    read_size = 65536

    def __init__(self, handler, config, on_close=None, **kwargs):
        super().__init__(handler, hostname=config.hostname, ident="lda LMTP",
                         data_size_limit=config.lmtp_max_message_size,
                         enable_SMTPUTF8=True, decode_data=False, **kwargs)
        self.on_close = on_close

    def _getaddr(self, arg):
        match = _PLAIN_ADDRESS.match(arg)
        if match is None:
            return super()._getaddr(arg)
        address = match[1]
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, arg[match.end():]

    @syntax("DATA")
    async def smtp_DATA(self, arg):
        """aiosmtpd's DATA, reading the message in runs up to the next
        ".\r\n" rather than a line at a time (a fifth of the event loop's
        time went to its per-line loop); what it accepts and answers is
        unchanged."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content, error = await read_data(self._reader, self.data_size_limit,
                                             SMTP.line_length_limit)
        except asyncio.CancelledError:
            self._writer.close()  # the connection was lost during DATA
            raise
        if error:
            await self.push(error)
            self._set_post_data_state()
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    def connection_made(self, transport):
        super().connection_made(transport)
        if hasattr(transport, "max_size"):  # asyncio's selector transports
            transport.max_size = self.read_size

    def connection_lost(self, error):
        super().connection_lost(error)
        if self.on_close is not None:
            self.on_close()


async def read_data(reader, size_limit, line_limit):
    """(message, None) or (None, error reply) for the DATA that follows 354.

    The message ends at the first line that is a lone "."; each line's
    leading dot is removed (RFC 5321 section 4.5.2).  As in aiosmtpd, a
    message over `size_limit` bytes, or with a line of more than
    `line_limit` bytes, is read to its end and refused, with whichever of
    552 and 500 its first offending line gives.  Each run ends at a ".\r\n"
    or at the reader's limit, so nothing past the end is read."""
    parts, size, error = [], 0, None
    line = 0  # bytes of the line under way, before `run`
    carry = b""  # a CR held back: its LF may begin the next run
    while True:
        try:
            run = carry + await reader.readuntil(b".\r\n")
        except asyncio.LimitOverrunError as e:
            run = carry + await reader.read(e.consumed)  # holds no ".\r\n"
        ended = run.endswith(b"\r\n.\r\n") or (line == 0 and run == b".\r\n")
        body, carry = (run[:-3], b"") if ended else (
            (run[:-1], b"\r") if run.endswith(b"\r") else (run, b""))
        lines = body.split(b"\r\n")
        for piece in lines[:-1]:
            length, line = line + len(piece), 0  # without its CRLF
            if error is None and length > line_limit:
                error = TOO_LONG  # aiosmtpd's reader overruns before counting it
            size += length + 2
            if error is None and size_limit and size > size_limit:
                error = "552 Error: Too much mail data"
            if error is None and length + 2 > line_limit:
                error = TOO_LONG
        line += len(lines[-1])
        if error is None:
            parts.append(body)
        else:
            parts.clear()  # refused: keep nothing while reading to the end
        if ended:
            break
    if error:
        return None, error
    data = b"".join(parts)
    return (data[1:] if data.startswith(b".") else data).replace(b"\r\n.", b"\r\n"), None

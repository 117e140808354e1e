"""The LMTP protocol for lda: aiosmtpd's LMTP with per-recipient replies.

aiosmtpd's smtp_DATA pushes the handler's status as one reply (its issue
517); RFC 2033 section 4.2 wants one reply per accepted recipient, in RCPT
order.  push() writes the status and a CRLF, so the handler returns the
replies joined by CRLF and every recipient gets its own line.
"""

import re

from aiosmtpd.lmtp import LMTP

# <local@domain> with a dot-atom local part and domain, ASCII, then spaces
# and nothing that starts a comment: what MTAs send in MAIL and RCPT.
# aiosmtpd parses every address with the email package's header parser and
# a Protocol class defined per call, a fifth of lda lmtp's event-loop time;
# this gives the same (address, rest) for these, and the parser gets the
# rest (quoted local parts, source routes, comments, <>, UTF-8).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
                            r"(?![ \t]*[(])[ \t]*")


def data_replies(replies):
    """The DATA status for aiosmtpd: one reply line per recipient."""
    return "\r\n".join(replies)


class LdaLMTP(LMTP):
    """LMTP that names itself, never decodes message bytes, and tells
    `on_close` when its session ends."""

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

    def connection_lost(self, error):
        super().connection_lost(error)
        if self.on_close is not None:
            self.on_close()

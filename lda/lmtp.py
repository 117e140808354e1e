"""The LMTP protocol for lda: aiosmtpd's LMTP with per-recipient replies.

aiosmtpd's smtp_DATA pushes the handler's status as one reply (its issue
517); RFC 2033 section 4.2 wants one reply per accepted recipient, in RCPT
order.  push() writes the status and a CRLF, so the handler returns the
replies joined by CRLF and every recipient gets its own line.
"""

from aiosmtpd.lmtp import LMTP


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

    def connection_lost(self, error):
        super().connection_lost(error)
        if self.on_close is not None:
            self.on_close()

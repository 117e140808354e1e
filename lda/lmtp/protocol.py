"""The LMTP protocol for lda: aiosmtpd's LMTP with per-recipient replies.

aiosmtpd's smtp_DATA pushes the handler's status as one reply (its issue
517), and refuses a message over the size limit or with a long line with a
single reply too; RFC 2033 section 4.2 wants one reply per accepted
recipient, in RCPT order, whatever becomes of the DATA: a client that
pipelines (RFC 2920) otherwise reads its next command's reply as a
recipient's.  Here DATA always answers every recipient, and a session that
must end (a stop, an idle client) answers the recipients it owes before it
closes.  Every reply carries an RFC 3463 code (RFC 2034, which LHLO
advertises with PIPELINING).

Replies to pipelined commands go out together (RFC 2920 section 3.1, as
Postfix's smtpd and Dovecot's LMTP write them): a 250 is held while the
client's next command line is already here, and sent with the first reply
after it that is not held (in order; 354 and every refusal are sent at
once), so that a group MAIL, RCPT..., DATA costs one write, one wake-up of
the client and one TCP segment, not one each.  Nothing is held while the
session waits for input (the next line is here, so it does not wait), nor
through a delivery (354 comes before it and sends all), nor past a close.

The command loop and the verbs of a transaction (MAIL, RCPT, DATA) are
aiosmtpd's, read line for line, without what costs per command and lda
never uses: the debug and info logging of every line (its arguments built
even when the level is off), the TLS, AUTH, PROXY and call-limit checks,
the idle timer re-armed at each command, and an await for each check of
the order of commands (bench/profiles/lmtp-loop.txt).  A server made with
any of those options runs aiosmtpd's own loop and verbs.
"""

import asyncio
import collections
import re
import traceback

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import BOGUS_LIMIT, MISSING, SMTP, syntax
from aiosmtpd.smtp import log as aiosmtpd_log

from ..log import printable

# <local@domain> with a dot-atom local part and domain, ASCII, then spaces
# and nothing that starts a comment: what MTAs send in MAIL and RCPT.
# aiosmtpd parses every address with the email package's header parser and
# a Protocol class defined per call, a fifth of lda lmtp's event-loop time;
# this gives the same (address, rest) for these, and the parser gets the
# rest (quoted local parts, source routes, comments, <>, UTF-8).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# A domain may end with the root's dot (example.org.), which Dovecot's lmtp
# takes and Postfix strips when it routes: the address is read without it.
_PLAIN_ADDRESS = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)\.?>"
                            r"(?![ \t]*[(])[ \t]*")
# Control characters but the tab, which may separate an address from its
# parameters.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


# RFC 5321 section 4.5.3.1.4 sets 512 bytes as the least a server must take
# for a command line; MAIL and RCPT get more, so that what refuses a long
# address is the check `lda deliver` makes of it (5.1.7, 5.1.3), not the
# line length.
ADDRESS_COMMAND_LIMIT = 4096

# RFC 3463 codes for the replies aiosmtpd writes without one: by their first
# words, else by the reply code.  RFC 2034 section 3 leaves the greeting
# (220), LHLO's lines and 354 without one.
CODE_BY_TEXT = (
    ('500 Error: command "', "5.5.1"),  # an unknown command, HELO and EHLO too
    ("252 ", "2.5.0"),
)
CODE_BY_REPLY = {"221": "2.0.0", "250": "2.0.0", "421": "4.3.0", "451": "4.3.0",
                 "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1",
                 "504": "5.5.4", "552": "5.3.4", "554": "5.5.0", "555": "5.5.4"}
_HAS_CODE = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}( |$)")
# aiosmtpd's reply to an address it cannot parse, for MAIL and RCPT alike:
# RFC 3463 names the sender's (5.1.7) and the recipient's (5.1.3) apart.
MALFORMED = "553 5.1.3 Error: malformed address"
# MAIL's BODY= with a value other than 7BIT and 8BITMIME.
UNSUPPORTED_BODY = "555 Error: BODY can only be one of 7BIT, 8BITMIME"
# MAIL's and RCPT's keyword and the form their syntax error names.
ADDRESS_SYNTAX = {"MAIL": ("FROM:", "MAIL FROM: <address>"),
                  "RCPT": ("TO:", "RCPT TO: <address>")}


def with_enhanced_code(status, verb=None):
    """`status` led by its RFC 3463 code after the reply code."""
    reply, _, text = status.partition(" ")
    if status == MALFORMED:
        return f"501 {'5.1.7' if verb == 'MAIL' else '5.1.3'} malformed address"
    if reply[:1] not in "245" or reply == "220" or _HAS_CODE.match(text):
        return status
    code = next((code for start, code in CODE_BY_TEXT if status.startswith(start)),
                CODE_BY_REPLY.get(reply, f"{reply[0]}.0.0"))
    return f"{reply} {code} {text}"


def per_recipient(status, recipients):
    """One reply per recipient from a status shared by all: `421 4.3.2
    text` becomes `421 4.3.2 <rcpt> text` for each."""
    reply, code, text = (status.split(" ", 2) + [""])[:3]
    return [f"{reply} {code} <{r}> {text}".rstrip() for r in recipients]


# Replies held back at most (a client that pipelines thousands of RCPTs is
# answered in groups of this many).
HELD_MAX = 100


# What a session is doing: reading commands, reading a message after 354, or
# delivering it.
COMMANDS, DATA, DELIVERING = "commands", "data", "delivering"


class LdaLMTP(LMTP):
    """LMTP that names itself, never decodes message bytes, answers every
    recipient after DATA, and tells `on_close` when its session ends."""

    # aiosmtpd sizes its StreamReader by this: at 1,001 bytes the transport
    # paused and resumed every 2 KB of a message.  Message lines have no
    # limit (the message size has one); command lines are held to
    # aiosmtpd's command_size_limit, with its replies.
    line_length_limit = 65536
    # asyncio's socket transport recv()s up to 256 KiB at a time.  That is
    # over glibc's mmap threshold: every read, of a 30-byte command too,
    # maps and unmaps a buffer of its own, a tenth of lda lmtp's Python time
    # (bench/profiles/lmtp-case6-gil-64k-plans.txt).  64 KiB buffers come
    # from the heap.
    read_size = 65536

    def __init__(self, handler, config, on_close=None, **kwargs):
        super().__init__(handler, hostname=config.hostname, ident="lda LMTP",
                         data_size_limit=config.lmtp_max_message_size,
                         enable_SMTPUTF8=True, decode_data=False,
                         timeout=config.lmtp_idle_timeout, **kwargs)
        self.on_close = on_close
        # Per session: aiosmtpd's is one mapping in the class, which every
        # EHLO of every session grows.
        self.command_size_limits = collections.defaultdict(
            lambda: SMTP.command_size_limit,
            MAIL=ADDRESS_COMMAND_LIMIT, RCPT=ADDRESS_COMMAND_LIMIT)
        self.phase = COMMANDS
        self.verb = None
        self.closing = None  # the reply that ends the session after a delivery
        self.last_read = self.loop.time()
        self.held = []  # 250 replies (bytes) not sent yet: see reply()
        # aiosmtpd's options lda does not use: with any, its own loop runs.
        self.lean = not (self._proxy_timeout is not None or self.tls_context
                         or self._auth_required or self._enforce_call_limit)

    async def push(self, status):
        await self.reply([with_enhanced_code(status, self.verb)])

    async def _handle_client(self):
        """aiosmtpd's command loop (SMTP._handle_client), its replies in its
        order, for a server without TLS, AUTH, PROXY or call limits."""
        if not self.lean:
            await super()._handle_client()
            return
        await self.push(f"220 {self.hostname} {self.__ident__}")
        bogus_budget = BOGUS_LIMIT
        reader = self._reader
        while self.transport is not None:
            try:
                try:
                    line = await reader.readuntil()
                except asyncio.LimitOverrunError as error:
                    await self._skip_long_line(error.consumed)
                    await self.push("500 Command line too long")
                    continue
                line = line.rstrip(b"\r\n")
                command_bytes, _, arg_bytes = line.partition(b" ")
                try:
                    command = command_bytes.upper().decode("ascii") if line else None
                except UnicodeDecodeError:
                    command = None
                if command is None:
                    await self.push("500 Error: bad syntax")
                    continue
                arg = str(arg_bytes.strip(), "utf-8", "surrogateescape") if arg_bytes else None
                limit = (self.command_size_limits[command] if self.session.extended_smtp
                         else self.command_size_limit)
                if len(line) > limit:
                    await self.push("500 Command line too long")
                    continue
                method = self._smtp_methods.get(command)
                if method is None:
                    aiosmtpd_log.warning("%r unrecognised: %s", self.session.peer, command)
                    bogus_budget -= 1
                    if bogus_budget < 1:
                        aiosmtpd_log.warning("%r too many bogus commands", self.session.peer)
                        # aiosmtpd's 502 here: RFC 5321 section 3.8 has a
                        # server that closes say so with 421 (as Dovecot).
                        await self.push("421 4.7.0 Too many unrecognized commands, closing")
                        self.transport.close()
                        continue
                    await self.push(f'500 Error: command "{printable(command)}" not recognized')
                    continue
                bogus_budget = BOGUS_LIMIT  # unknown commands in a row count, as in Dovecot
                await method(arg)
            except (asyncio.CancelledError, ConnectionResetError):
                self._writer.close()
                raise
            except Exception as error:  # noqa: BLE001 - aiosmtpd's 500, the session goes on
                await self.push(await self._exception_status(error))

    async def _skip_long_line(self, consumed):
        """Read to the end of a line over the reader's limit."""
        await self._reader.read(consumed)
        while True:
            try:
                await self._reader.readuntil()
                return
            except asyncio.LimitOverrunError as e:
                await self._reader.read(e.consumed)

    async def _exception_status(self, error):
        try:
            return await self.handle_exception(error)
        except Exception as inner:  # noqa: BLE001 - as aiosmtpd describes it
            try:
                return f"500 Error: ({inner.__class__.__name__}) {inner}"
            except Exception:  # noqa: BLE001
                return "500 Error: Cannot describe error"

    def _refusal(self, verb):
        """aiosmtpd's check_helo_needed, and RCPT's need of a MAIL, without
        an await each: the refusal or None (check_auth_needed has nothing to
        check without AUTH)."""
        if not self.session.host_name:
            return "503 Error: send HELO first"
        if verb == "RCPT" and not self.envelope.mail_from:
            return "503 Error: need MAIL command"
        return None

    async def reply(self, lines):
        """Send `lines` (a reply, or one per recipient) with the replies
        held before them, or hold them too when they are all 250s and the
        client's next command line is already in the reader's buffer: the
        next command's reply follows at once, and the last of a pipelined
        group (the line after it is not here yet) sends them all."""
        data = "\r\n".join(lines).encode() + b"\r\n"
        if (len(self.held) < HELD_MAX and b"\n" in self._reader._buffer  # not read yet
                and all(line.startswith("250") for line in lines)):
            self.held.append(data)
            return
        self._writer.write(self.take_held() + data if self.held else data)
        if self._paused or self._connection_lost:
            # Only then does drain() wait, or raise ConnectionResetError.
            await self._writer.drain()

    def take_held(self):
        held, self.held = b"".join(self.held), []
        return held

    def _getaddr(self, arg):
        match = _PLAIN_ADDRESS.match(arg)
        if match is None:
            return self._parse_address(arg)
        address = match[1]
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, arg[match.end():]

    def _parse_address(self, arg):
        """aiosmtpd's reading of an address that is not plain, but stricter
        where the email parser is lenient: a "<" without its ">" (RFC 5321
        section 4.1.2; a bare LF ends a command line early) is malformed,
        and a CR or a NUL, which the parser takes into an address or calls
        a syntax error, is left in it for the checks `lda deliver` makes of
        its -f and recipients (lda.deliver.envelope), so that they refuse it with
        their code."""
        text = arg.strip()
        if text.startswith("<") and ">" not in text:
            return None, None
        if _CONTROL.search(arg):
            address, _, rest = text.removeprefix("<").partition(">")
            return address, rest
        return super()._getaddr(arg)

    async def smtp_AUTH(self, arg):
        """AUTH is never offered (no SASL; the socket's permissions and the
        network decide who delivers): RFC 5321 section 4.2.4's 502, as
        Dovecot's lmtp answers, rather than aiosmtpd's 538 that sends a
        SASL client after TLS lda does not have either.  Without a syntax,
        HELP does not list it."""
        await self.push("502 5.5.1 Error: AUTH not supported")

    async def smtp_STARTTLS(self, arg):
        """TLS is never offered either: 502, as Dovecot's lmtp answers,
        rather than aiosmtpd's 454, a temporary failure a client would
        retry as if TLS might come back."""
        await self.push("502 5.5.1 Error: TLS not supported")

    @syntax("LHLO hostname")
    async def smtp_LHLO(self, arg):
        """aiosmtpd's EHLO reply, with what a client may rely on added:
        PIPELINING (RFC 2920) and ENHANCEDSTATUSCODES (RFC 2034)."""
        if not arg or _CONTROL.search(arg):  # it goes into Received:
            await self.push("501 Syntax: LHLO hostname")
            return
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = arg
        lines = [self.hostname, "PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8"]
        if self.data_size_limit:
            lines.append(f"SIZE {self.data_size_limit}")
        await self.reply([f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"])

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg):
        """aiosmtpd's MAIL: its checks, in its order, and its replies."""
        self.verb = "MAIL"
        if not self.lean:
            await super().smtp_MAIL(arg)
            return
        await self._envelope_command("MAIL", arg, self._mail_arguments, self._mail_from)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg):
        """aiosmtpd's RCPT: its checks, in its order, and its replies."""
        self.verb = "RCPT"
        if not self.lean:
            await super().smtp_RCPT(arg)
            return
        await self._envelope_command("RCPT", arg, self._rcpt_arguments, self._rcpt_to)

    async def _envelope_command(self, verb, arg, arguments, record):
        """MAIL or RCPT as aiosmtpd runs it: the order of commands, the
        argument (arguments(arg): (refusal or None, address, options)),
        the handler's hook, then record(address, options) if the hook
        left the envelope to it."""
        status = self._refusal(verb)
        if status is None:
            status, address, options = arguments(arg)
        if status is None:
            status = await self._call_handler_hook(verb, address, options)
            if status is MISSING:
                record(address, options)
                status = "250 OK"
        await self.push(status)

    def _mail_from(self, address, options):
        self.envelope.mail_from = address
        self.envelope.mail_options.extend(options)

    def _rcpt_to(self, address, options):
        self.envelope.rcpt_tos.append(address)
        self.envelope.rcpt_options.extend(options)

    def _address_and_options(self, verb, arg):
        """aiosmtpd's first checks of MAIL's and RCPT's argument, for both:
        (refusal or None, address, the parameters' words, the reply to a
        syntax error)."""
        keyword, form = ADDRESS_SYNTAX[verb]
        syntaxerr = f"501 Syntax: {form}" + (" [SP <mail-parameters>]"
                                             if self.session.extended_smtp else "")
        address, params = self._address(arg, keyword)
        if address is None:
            return MALFORMED, None, None, syntaxerr
        if not address or (params and not self.session.extended_smtp):
            return syntaxerr, None, None, syntaxerr
        return None, address, params.upper().split(), syntaxerr

    def _mail_arguments(self, arg):
        """(None, address, options) for MAIL's argument, or (refusal, None,
        None), as aiosmtpd's smtp_MAIL checks them."""
        status, address, options, syntaxerr = self._address_and_options("MAIL", arg)
        if status is not None:
            return status, None, None
        if self.envelope.mail_from:
            return "503 Error: nested MAIL command", None, None
        if not options:
            self.envelope.smtp_utf8 = False
            return None, address, options
        values = self._getparams(options)
        if values is None:
            return syntaxerr, None, None
        if not self._decode_data and values.pop("BODY", "7BIT") not in ("7BIT", "8BITMIME"):
            # aiosmtpd's 501 says the syntax is wrong; RFC 5321 section
            # 4.1.1.11 names 555 for a parameter known and not implemented
            # (BODY=BINARYMIME), as Dovecot's lmtp answers it.
            return UNSUPPORTED_BODY, None, None
        smtputf8 = values.pop("SMTPUTF8", False)
        if not isinstance(smtputf8, bool):
            return "501 Error: SMTPUTF8 takes no arguments", None, None
        if smtputf8 and not self.enable_SMTPUTF8:
            return "501 Error: SMTPUTF8 disabled", None, None
        self.envelope.smtp_utf8 = smtputf8
        size = values.pop("SIZE", None)
        if size:
            if isinstance(size, bool) or not size.isdigit():
                return syntaxerr, None, None
            if self.data_size_limit and int(size) > self.data_size_limit:
                return ("552 Error: message size exceeds fixed maximum message size",
                        None, None)
        if values:
            return "555 MAIL FROM parameters not recognized or not implemented", None, None
        return None, address, options

    def _rcpt_arguments(self, arg):
        """As _mail_arguments, for RCPT (aiosmtpd knows no RCPT parameter)."""
        status, address, options, syntaxerr = self._address_and_options("RCPT", arg)
        if status is not None:
            return status, None, None
        if options:
            values = self._getparams(options)
            if values is None:
                return syntaxerr, None, None
            # RFC 3461's ORCPT= is taken though DSN is not offered, as
            # Dovecot's lmtp takes it: its proxy and director send it to
            # every backend.  It names the original recipient, which lda
            # gets from the delivery itself; only its form is checked.
            orcpt = values.pop("ORCPT", None)
            if orcpt is not None and not _orcpt_form(orcpt):
                return "501 5.5.4 Invalid ORCPT= parameter", None, None
            if values:
                return "555 RCPT TO parameters not recognized or not implemented", None, None
        return None, address, options

    def _address(self, arg, keyword):
        """(address, the rest) after `keyword` (FROM: or TO:), ("", "") when
        there is none, (None, None) when it is malformed."""
        if arg is None:
            return "", ""
        arg = self._strip_command_keyword(keyword, arg)
        if arg is None:
            return "", ""
        return self._getaddr(arg)

    @syntax("DATA")
    async def smtp_DATA(self, arg):
        """aiosmtpd's DATA, reading the message in runs up to the next
        ".\r\n" rather than a line at a time (a fifth of the event loop's
        time went to its per-line loop), and answering each recipient."""
        if self.lean:
            refusal = self._refusal("DATA")
            if refusal:
                await self.push(refusal)
                return
        elif await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self.phase = DATA
        try:
            content = await read_data(self._reader, self.data_size_limit)
        except (asyncio.CancelledError, asyncio.IncompleteReadError, ConnectionError):
            self._writer.close()  # the connection was lost: nothing is delivered
            raise asyncio.CancelledError from None
        replies = await self._replies_to(content)
        self.phase = COMMANDS
        self._set_post_data_state()
        await self.reply([with_enhanced_code(reply) for reply in replies])
        self.last_read = self.loop.time()  # the client waited on us until now
        if self.closing:
            self.close_with(self.closing)

    async def _replies_to(self, content):
        """The handler's reply for each recipient (RFC 2033 section 4.2):
        552 for each when the message is over the size limit, 451 for each
        when the handler fails or answers some recipients and not others."""
        recipients = self.envelope.rcpt_tos
        if content is None:
            return per_recipient("552 5.3.4 message exceeds the size limit", recipients)
        self.envelope.content = self.envelope.original_content = content
        self.phase = DELIVERING
        try:
            status = await self._call_handler_hook("DATA")
        except Exception as e:  # noqa: BLE001 - 451 for each: the MTA retries them
            self.event_handler.log.error("".join(traceback.format_exception(e)).rstrip())
            status = None
        if status is MISSING:
            status = "250 OK"
        replies = [status] * len(recipients) if isinstance(status, str) else status
        if not isinstance(replies, list) or len(replies) != len(recipients):
            return per_recipient("451 4.3.0 internal error, try again later", recipients)
        return replies

    def close_with(self, status):
        """End the session with `status`: for each recipient while their
        message arrives (it is not delivered), once otherwise; a delivery
        under way answers first (RFC 2033 section 4.2 owes those replies)."""
        if self.transport is None or self.transport.is_closing():
            return
        if self.phase == DELIVERING:
            self.closing = status
            return
        replies = per_recipient(status, self.envelope.rcpt_tos) if self.phase == DATA else [
            status]
        self._writer.write(self.take_held() + "".join(r + "\r\n" for r in replies).encode())
        self.transport.close()  # writes what is buffered, then closes

    def data_received(self, data):
        self.last_read = self.loop.time()
        if self.lean:  # the reader aiosmtpd keeps (StreamReaderProtocol's is a weak reference)
            self._reader.feed_data(data)
        else:
            super().data_received(data)

    def _reset_timeout(self, duration=None):
        """aiosmtpd re-arms the idle timer at every command: a timer made,
        and one cancelled for the event loop to carry, four per message.
        The timer counts from the last byte read (_timeout_cb arms it again
        for what is left), so one that is armed stays; an explicit
        `duration` always re-arms it."""
        if duration is None and self._timeout_handle is not None:
            return
        super()._reset_timeout(duration)

    def _timeout_cb(self):
        """lmtp_idle_timeout without a byte from the client: 421 4.4.2 and a
        close.  aiosmtpd counts from the last command, so a message that
        takes longer to arrive, or to deliver, would be cut."""
        idle = self.loop.time() - self.last_read
        if self.phase == DELIVERING:
            self._reset_timeout(self._timeout_duration)
        elif idle < self._timeout_duration:
            self._reset_timeout(self._timeout_duration - idle)
        else:
            self.close_with("421 4.4.2 idle for too long, closing")

    def connection_made(self, transport):
        super().connection_made(transport)
        if hasattr(transport, "max_size"):  # asyncio's selector transports
            transport.max_size = self.read_size

    def connection_lost(self, error):
        super().connection_lost(error)
        if self.on_close is not None:
            self.on_close()


async def read_data(reader, size_limit):
    """The message that follows 354, or None when it is over `size_limit`
    bytes (read to its end all the same, so the session stays in step).

    The message ends at the first line that is a lone "."; each line's
    leading dot is removed (RFC 5321 section 4.5.2).  Lines may be of any
    length: they are stored as they came, as `lda deliver` stores them.
    Each run ends at a ".\r\n" or at the reader's limit, so nothing past
    the end is read."""
    parts, size = [], 0
    at_line_start = True
    carry = b""  # a CR held back: its LF may begin the next run
    while True:
        try:
            run = carry + await reader.readuntil(b".\r\n")
        except asyncio.LimitOverrunError as e:
            run = carry + await reader.read(e.consumed)  # holds no ".\r\n"
            if not run:
                raise asyncio.IncompleteReadError(b"", None) from None
        ended = run.endswith(b"\r\n.\r\n") or (at_line_start and run == b".\r\n")
        body, carry = (run[:-3], b"") if ended else (
            (run[:-1], b"\r") if run.endswith(b"\r") else (run, b""))
        size += len(body)
        if size_limit and size > size_limit:
            parts.clear()  # refused: keep nothing while reading to the end
        else:
            parts.append(body)
        if ended:
            break
        at_line_start = run.endswith(b"\r\n")
    if size_limit and size > size_limit:
        return None
    data = b"".join(parts)
    return (data[1:] if data.startswith(b".") else data).replace(b"\r\n.", b"\r\n")


def _orcpt_form(value):
    """RFC 3461 section 4.2: addr-type ";" xtext, the type an atom and the
    text printable ASCII without "=" and with "+" only before two hex digits."""
    if not isinstance(value, str):
        return False
    kind, semicolon, text = value.partition(";")
    if not semicolon or not kind or not text or not all(
            c.isascii() and c.isalnum() or c == "-" for c in kind):
        return False
    if any(not "!" <= c <= "~" or c == "=" for c in text):
        return False
    return all(len(part) >= 2 and all(c in "0123456789ABCDEF" for c in part[:2])
               for part in text.split("+")[1:])


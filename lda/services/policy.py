"""Postfix's policy delegation protocol (SMTPD_POLICY_README): name=value
lines ended by an empty line; the reply is one action=... line and an empty
line; a connection carries any number of requests.

Only the RCPT stage asks anything of lda (answers.Answers.policy); every
other request is answered DUNNO, whatever quota_status_success says, so lda
can sit in any restriction list.
"""

import asyncio

from ..sockets import peer
from .answers import DUNNO, declared_size

USED = frozenset({b"request", b"protocol_state", b"recipient", b"size"})  # what decide() reads


class BadRequest(Exception):
    """A request lda cannot read: the connection is closed."""


async def session(service, reader, writer):
    client = peer(writer)
    while True:
        try:
            attributes = await service.next_request(read_request(reader))
        except BadRequest as e:
            service.not_understood.add(f"from {client}: {e}: connection closed")
            return
        if attributes is None:
            return
        action = await decide(service, attributes, client)
        await service.send(writer, f"action={action}\n\n".encode("utf-8"))


async def read_request(reader):
    """The attributes decide() reads of the next request, up to its empty
    line; None when the client closed the connection."""
    attributes = {}
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            raise BadRequest("a line longer than 128 KiB") from None
        line = line[:-1].removesuffix(b"\r")  # one CR of the line end; another is a byte
        if not line:
            return attributes
        # Names as Postfix writes them and Dovecot's quota-status reads
        # them, exactly; the others are never stored, however many come.
        name, equals, value = line.partition(b"=")
        if equals and name in USED:
            attributes[name.decode("ascii")] = value.decode("utf-8", "surrogateescape")


async def decide(service, attributes, client):
    """The action for one request; a temporary one if lda cannot tell.
    What the client got wrong is counted, named in the log's first line."""
    if attributes.get("request") != "smtpd_access_policy":
        service.not_understood.add(f"from {client}: not an smtpd_access_policy request: "
                                   f"request={attributes.get('request', '')[:40]!r}, "
                                   "answered DUNNO")
        return DUNNO
    if declared_size(attributes.get("size", "")) is None:  # Answers.policy says DUNNO
        service.bad_sizes.add(f"from {client}: {attributes.get('recipient', '')[:200]}: "
                              f"size={attributes['size'][:40]!r} is not a number")
    try:
        return await service.call(service.answers.policy, attributes)
    except TimeoutError:
        service.timed_out.add(attributes.get("recipient", "")[:200])
        return "DEFER_IF_PERMIT 4.4.3 recipient lookup timed out"
    except Exception as e:  # noqa: BLE001 - defer, never reject, when lda fails
        service.log.error(f"policy: {type(e).__name__}: {e}")
        return "DEFER_IF_PERMIT 4.3.0 internal error"

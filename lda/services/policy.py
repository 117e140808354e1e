"""Postfix's policy delegation protocol (SMTPD_POLICY_README): name=value
lines ended by an empty line; the reply is one action=... line and an empty
line; a connection carries any number of requests.

Only the RCPT stage asks anything of lda (answers.Answers.policy); every
other request is answered DUNNO, whatever quota_status_success says, so lda
can sit in any restriction list.
"""

import asyncio

from .answers import DUNNO

USED = frozenset({b"request", b"protocol_state", b"recipient", b"size"})  # what decide() reads


async def session(service, reader, writer):
    while (attributes := await service.next_request(read_request(service, reader))) is not None:
        action = await decide(service, attributes)
        await service.send(writer, f"action={action}\n\n".encode("utf-8"))


async def read_request(service, reader):
    """The attributes decide() reads of the next request, up to its empty
    line; None when the client closed the connection or sent a line too
    long to read."""
    attributes = {}
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            service.log.warning("policy: a request line longer than 128 KiB: connection closed")
            return None
        line = line[:-1].removesuffix(b"\r")  # one CR of the line end; another is a byte
        if not line:
            return attributes
        # Names as Postfix writes them and Dovecot's quota-status reads
        # them, exactly; the others are never stored, however many come.
        name, equals, value = line.partition(b"=")
        if equals and name in USED:
            attributes[name.decode("ascii")] = value.decode("utf-8", "surrogateescape")


async def decide(service, attributes):
    """The action for one request; a temporary one if lda cannot tell."""
    if attributes.get("request") != "smtpd_access_policy":
        service.log.warning(f"policy: not an smtpd_access_policy request: "
                            f"request={attributes.get('request', '')[:40]!r}")
        return DUNNO
    try:
        return await service.call(service.answers.policy, attributes)
    except TimeoutError:
        service.log.warning(f"policy: {attributes.get('recipient', '')[:200]!r}: no answer "
                            f"within {service.timeout} s: DEFER_IF_PERMIT")
        return "DEFER_IF_PERMIT 4.4.3 recipient lookup timed out"
    except Exception as e:  # noqa: BLE001 - defer, never reject, when lda fails
        service.log.error(f"policy: {type(e).__name__}: {e}")
        return "DEFER_IF_PERMIT 4.3.0 internal error"

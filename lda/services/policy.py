"""Postfix's policy delegation protocol (SMTPD_POLICY_README): name=value
lines ended by an empty line; the reply is one action=... line and an empty
line; a connection carries any number of requests.

Only the RCPT stage asks anything of lda (answers.Answers.policy); every
other request is answered DUNNO, whatever quota_status_success says, so lda
can sit in any restriction list.
"""

import asyncio

from .answers import DUNNO

MAX_ATTRIBUTES = 100  # Postfix sends about 30
MAX_LINE = 1 << 16


async def session(service, reader, writer):
    attributes = {}
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return  # the client closed the connection
        except asyncio.LimitOverrunError:
            service.log.warning("policy: a request line longer than 128 KiB: connection closed")
            return
        line = line.rstrip(b"\r\n")
        if line:
            name, equals, value = line.partition(b"=")
            if equals and len(line) <= MAX_LINE and len(attributes) < MAX_ATTRIBUTES:
                attributes[name.decode("ascii", "replace").lower()] = value.decode(
                    "utf-8", "surrogateescape")
            continue
        writer.write(f"action={await decide(service, attributes)}\n\n".encode("utf-8"))
        await writer.drain()
        attributes = {}


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

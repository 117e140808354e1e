"""Postfix's socketmap protocol (socketmap_table(5), from Sendmail):
each request is a netstring "MAPNAME KEY", each reply a netstring "OK
VALUE", "NOTFOUND ", "TEMP REASON" or "PERM REASON"; a connection carries
any number of requests.  answers.Answers.lookup decides.
"""

from ..sockets import peer

MAX_REQUEST = 100000  # Postfix's own limit on a socketmap request


class BadNetstring(Exception):
    """The client does not speak netstrings: the connection is closed."""


async def read_netstring(reader):
    """The payload of the next netstring, or None at a clean end of input."""
    digits = b""
    while True:
        c = await reader.read(1)
        if not c:
            if digits:
                raise BadNetstring("connection closed inside a length")
            return None
        if c == b":":
            break
        if not c.isdigit() or len(digits) >= len(str(MAX_REQUEST)):
            raise BadNetstring(f"bad netstring length {digits + c!r}")
        digits += c
    if not digits or int(digits) > MAX_REQUEST:
        raise BadNetstring(f"netstring length {digits.decode() or 'missing'}")
    data = await reader.readexactly(int(digits) + 1)
    if data[-1:] != b",":
        raise BadNetstring("netstring without its closing comma")
    return data[:-1]


def netstring(data):
    return b"%d:%s," % (len(data), data)


async def session(service, reader, writer):
    client = peer(writer)
    while True:
        try:
            request = await service.next_request(read_netstring(reader))
        except BadNetstring as e:
            service.not_understood.add(f"from {client}: {e}: connection closed")
            return
        if request is None:
            return
        text = request.decode("utf-8", "surrogateescape")
        name, _, key = text.partition(" ")
        status, value = await lookup(service, name, key)
        reply = f"{status} {value}".encode("utf-8", "surrogateescape")
        await service.send(writer, netstring(reply))


async def lookup(service, name, key):
    try:
        return await service.call(service.answers.lookup, name, key)
    except TimeoutError:
        service.timed_out.add(f"{name[:80]} {key[:200]}")
        return "TEMP", "lookup timed out"
    except Exception as e:  # noqa: BLE001 - TEMP, never NOTFOUND, when lda fails
        service.log.error(f"socketmap {name}: {type(e).__name__}: {e}")
        return "TEMP", "internal error"

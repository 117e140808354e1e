"""The listening sockets of lda's servers: `lda lmtp`, `lda policy` and
`lda socketmap` take the same unix:PATH or HOST:PORT, the forms Postfix
writes its own service addresses in."""

import os
import socket

from .errors import ConfigError

BACKLOG = 128


def parse_listen(listen, service="lmtp"):
    """("unix", path) or ("tcp", (host, port)) from unix:PATH, PATH or HOST:PORT."""
    if listen.startswith("unix:") or listen.startswith("/"):
        return "unix", listen.removeprefix("unix:")
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or not host:
        raise ConfigError(f"{service} listen address {listen!r} is neither unix:PATH "
                          "nor HOST:PORT")
    return "tcp", (host.strip("[]"), int(port))


def bind(listen, service="lmtp"):
    """The listening socket, bound before any fork so every child shares it."""
    kind, where = parse_listen(listen, service)
    if kind == "tcp":
        host, port = where
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.create_server(address, family=family, backlog=BACKLOG)
    else:
        os.makedirs(os.path.dirname(where) or ".", mode=0o755, exist_ok=True)
        if os.path.exists(where):
            os.unlink(where)  # a socket left by a previous, killed server
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(where)
        os.chmod(where, 0o660)  # the MTA's group connects; nobody else
        sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock

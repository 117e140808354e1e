"""`lda lmtp`: listening, concurrency and a graceful stop.

SIGTERM or SIGINT closes the listening socket at once, lets every delivery
that is under way finish and answer (up to `grace` seconds), then exits; a
session cut before its DATA was answered is retried by the MTA, and
DeliveredTo makes that retry harmless.
"""

import asyncio
import os
import signal
from concurrent.futures import ThreadPoolExecutor

from .errors import ConfigError


def parse_listen(listen):
    """("unix", path) or ("tcp", (host, port)) from unix:PATH, PATH or HOST:PORT."""
    if listen.startswith("unix:") or listen.startswith("/"):
        return "unix", listen.removeprefix("unix:")
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or not host:
        raise ConfigError(f"lmtp listen address {listen!r} is neither unix:PATH "
                          "nor HOST:PORT")
    return "tcp", (host.strip("[]"), int(port))


async def _listen(loop, factory, listen):
    kind, where = parse_listen(listen)
    if kind == "tcp":
        return await loop.create_server(factory, *where, reuse_address=True)
    os.makedirs(os.path.dirname(where) or ".", mode=0o755, exist_ok=True)
    if os.path.exists(where):
        os.unlink(where)  # a socket left by a previous, killed server
    server = await loop.create_unix_server(factory, where)
    os.chmod(where, 0o660)  # the MTA's group connects; nobody else
    return server


async def serve(config, log, listen=None, grace=300, ready=None, clock=None):
    from .lmtp import LdaLMTP
    from .lmtp_handler import DeliveryHandler

    loop = asyncio.get_running_loop()
    listen = listen or config.lmtp_listen
    with ThreadPoolExecutor(config.lmtp_workers, thread_name_prefix="deliver") as pool:
        handler = DeliveryHandler(config, pool, log, clock=clock)
        stop = asyncio.Event()
        # Before the socket exists: a SIGTERM right after start is graceful too.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        server = await _listen(loop, lambda: LdaLMTP(handler, config), listen)
        log.info(f"lmtp: listening on {listen}, {config.lmtp_workers} workers")
        if ready:
            ready()
        await stop.wait()
        for signum in (signal.SIGTERM, signal.SIGINT):
            # Once stopping, a second SIGTERM must not kill the process while
            # asyncio.run() restores the default handlers on its way out.
            loop.remove_signal_handler(signum)
            signal.signal(signum, signal.SIG_IGN)
        server.close()
        log.info(f"lmtp: stopping; {handler.in_flight} deliveries under way")
        try:
            await asyncio.wait_for(handler.idle.wait(), grace)
        except asyncio.TimeoutError:
            log.warning(f"lmtp: {handler.in_flight} deliveries still running after "
                        f"{grace}s; their sessions will be retried")
    kind, where = parse_listen(listen)
    if kind == "unix" and os.path.exists(where):
        os.unlink(where)
    log.info("lmtp: stopped")


def run(config, log, listen=None, grace=300):
    asyncio.run(serve(config, log, listen, grace))

"""Serving `lda policy` and `lda socketmap`: one process, one asyncio loop,
the lookups in a few threads.

Postfix keeps a connection per smtpd process and sends one request at a
time on it, so one process serves many connections; a lookup reads SQLite
and maybe a maildirsize, which is disk work, so it runs in a thread
(aiosmtpd's lesson: no blocking work in an async handler), each thread with
its own resolver (ThreadResolvers).

A lookup that takes longer than LOOKUP_SECONDS is answered as a temporary
failure (DEFER_IF_PERMIT, TEMP) while it finishes in its thread.  Should
lda not answer at all (stopped, or its threads stuck), Postfix applies its
own timeout and default: smtpd_policy_service_timeout (100 s) and
smtpd_policy_service_default_action (451 4.3.5) for the policy service, a
lookup error that defers the message for a socketmap table.  Either way no
message is rejected because lda is unwell.

SIGTERM or SIGINT stops accepting and closes the connections; Postfix
reconnects to the next server.
"""

import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor

from ..deliver.resolve import ThreadResolvers
from ..errors import ConfigError
from ..sockets import bind
from .answers import Answers

THREADS = 4
LOOKUP_SECONDS = 10
# Postfix opens one connection per smtpd process (default_process_limit 100).
MAX_CONNECTIONS = 1000


class Service:
    """What a connection handler needs: the answers, the threads they run
    in, the log, and how long a lookup may take."""

    def __init__(self, config, log, threads=THREADS, timeout=LOOKUP_SECONDS):
        self.answers = Answers(config, ThreadResolvers(config, log=log), log)
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="lookup")
        self.log = log
        self.timeout = timeout
        self.connections = 0

    async def call(self, fn, *args):
        """fn(*args) in a lookup thread; TimeoutError after `timeout`."""
        future = asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        return await asyncio.wait_for(asyncio.shield(future), self.timeout)


def check(config):
    """The reply keys end up in Postfix's protocol: one line each."""
    if config.per_user:
        raise ConfigError('lda policy and lda socketmap need managed mode (mode = "managed")')
    for key in ("quota_status_success", "quota_status_nouser", "quota_status_overquota",
                "quota_status_toolarge", "socketmap_transport"):
        value = getattr(config, key)
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ConfigError(f"{key} must be one line of printable text")


def run(config, log, listen, name):
    """Serve `name` ("policy" or "socketmap") on `listen` until SIGTERM."""
    check(config)
    if not listen:
        raise ConfigError(f"lda {name}: give --listen or set {name}_listen in lda.toml")
    if name == "policy":
        from .policy import session
    else:
        from .socketmap import session
    sock = bind(listen, name)
    log.info(f"{name}: listening on {listen}")
    asyncio.run(serve(Service(config, log), session, sock))


async def serve(service, session, sock):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    open_writers = set()

    async def connected(reader, writer):
        if service.connections >= MAX_CONNECTIONS:
            writer.close()
            return
        service.connections += 1
        open_writers.add(writer)
        try:
            await session(service, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as e:  # noqa: BLE001 - one connection, never the server
            service.log.error(f"connection: {type(e).__name__}: {e}")
        finally:
            service.connections -= 1
            open_writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(connected, sock=sock, limit=1 << 17)
    async with server:
        await stop.wait()
    for writer in list(open_writers):
        writer.close()
    service.executor.shutdown(wait=False, cancel_futures=True)

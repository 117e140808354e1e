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

A client has `policy_idle_timeout` (`socketmap_idle_timeout`) seconds
from its connection, and again from each reply, to send its whole next
request, and as long to take each reply; then its connection is closed,
so that clients silent, trickling or not reading cannot hold the
MAX_CONNECTIONS for ever.  Postfix closes its own idle connections no
later (smtpd_policy_service_max_idle, 300 s; a socketmap's after 10 s);
when lda closes one first, Postfix sees it before its next request and
connects again (attr_clnt, dict_sockmap), so no lookup fails.  Dovecot's
quota-status has no such limit: an idle client keeps its process.  A
connection beyond MAX_CONNECTIONS is closed at once, and counted in the
log, so that an administrator whose Postfix defers mail can see why.

SIGTERM or SIGINT stops accepting and closes the connections; Postfix
reconnects to the next server.
"""

import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor

from ..deliver.resolve import ThreadResolvers
from ..errors import ConfigError
from ..sockets import BACKLOG, Tally, bind
from .answers import Answers

THREADS = 4
LOOKUP_SECONDS = 10
# Postfix opens one connection per smtpd process (default_process_limit 100).
MAX_CONNECTIONS = 1000


class Service:
    """What a connection handler needs: the answers, the threads they run
    in, the log, how long a lookup may take and how long a client may idle."""

    def __init__(self, config, log, name, threads=THREADS, timeout=LOOKUP_SECONDS):
        self.answers = Answers(config, ThreadResolvers(config, log=log), log)
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="lookup")
        self.log = log
        self.timeout = timeout
        self.idle_timeout = getattr(config, f"{name}_idle_timeout")
        self.connections = 0
        self.refused = Tally(log.warning, name, f"refused: {MAX_CONNECTIONS} open, "
                                                f"the most lda {name} serves")
        self.idled = Tally(log.info, name, f"closed: idle past {name}_idle_timeout "
                                           f"({self.idle_timeout} s)")

    async def call(self, fn, *args):
        """fn(*args) in a lookup thread; TimeoutError after `timeout`."""
        future = asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        return await asyncio.wait_for(asyncio.shield(future), self.timeout)

    async def next_request(self, read):
        """What `read` (a coroutine reading the client's next whole request)
        returns; TimeoutError if it takes longer than idle_timeout."""
        async with asyncio.timeout(self.idle_timeout):
            return await read

    async def send(self, writer, reply):
        """The reply to the client, which has idle_timeout to take it: one
        that sends requests and reads no replies would otherwise hold its
        connection, blocked here, for ever.  TimeoutError after."""
        writer.write(reply)
        async with asyncio.timeout(self.idle_timeout):
            await writer.drain()


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
    asyncio.run(serve(Service(config, log, name), session, sock))


async def serve(service, session, sock):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    open_writers = set()

    async def connected(reader, writer):
        if service.connections >= MAX_CONNECTIONS:
            service.refused.add()
            writer.close()
            return
        service.connections += 1
        open_writers.add(writer)
        try:
            await session(service, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except TimeoutError:  # from next_request() or send(): the client idled
            service.idled.add()
            writer.transport.abort()  # close() would wait for it to take the replies
        except Exception as e:  # noqa: BLE001 - one connection, never the server
            service.log.error(f"connection: {type(e).__name__}: {e}")
        finally:
            service.connections -= 1
            open_writers.discard(writer)
            writer.close()

    # The backlog again, or asyncio's listen() would make it 100.
    server = await asyncio.start_server(connected, sock=sock, limit=1 << 17,
                                        backlog=BACKLOG)
    async with server:
        await stop.wait()
    for writer in list(open_writers):
        writer.close()
    service.refused.flush()
    service.idled.flush()
    service.executor.shutdown(wait=False, cancel_futures=True)

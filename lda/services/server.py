"""Serving `lda policy` and `lda socketmap`: one process, one asyncio loop,
the lookups in a few threads.

Postfix keeps a connection per smtpd process and sends one request at a
time on it, so one process serves many connections; a lookup reads SQLite
and maybe a maildirsize, which is disk work, so it runs in a thread
(aiosmtpd's lesson: no blocking work in an async handler), each thread with
its own resolver (ThreadResolvers).

A lookup that takes longer than LOOKUP_SECONDS is answered as a temporary
failure (DEFER_IF_PERMIT, TEMP): if no thread has started it, it never
runs; if one has, it finishes there, its answer dropped.  Should
lda not answer at all (stopped, or its threads stuck), Postfix applies its
own timeout and default: smtpd_policy_service_timeout (100 s) and
smtpd_policy_service_default_action (451 4.3.5) for the policy service, a
lookup error that defers the message for a socketmap table.  Either way no
message is rejected because lda is unwell.

A client has `policy_idle_timeout` (`socketmap_idle_timeout`) seconds
from its connection, and again from each reply, to send its whole next
request, and as long to take each reply; then its connection is closed,
so that clients silent, trickling or not reading cannot hold every
connection lda serves for ever.  Postfix closes its own idle connections no
later (smtpd_policy_service_max_idle, 300 s; a socketmap's after 10 s);
when lda closes one first, Postfix sees it before its next request and
connects again (attr_clnt, dict_sockmap), so no lookup fails.  Dovecot's
quota-status has no such limit: an idle client keeps its process.  A
connection beyond MAX_CONNECTIONS (or beyond what the open-files limit
holds, sockets.connection_limit) is closed at once, and counted in the
log, so that an administrator whose Postfix defers mail can see why.
Should the descriptors run out all the same (the system's own limit),
lda stops accepting for a second at a time, and counts those pauses in
its log as it counts refusals (Acceptor).

SIGTERM or SIGINT stops accepting and closes the connections, saying how
many in the log; Postfix reconnects to the next server.  No lookup is
waited for (LookupThreads): one can wait 30 s on a directory another
program holds locked, and its answer has nobody to go to.
"""

import asyncio
import collections
import contextlib
import signal
import threading
from concurrent.futures import Future

from ..deliver.resolve import ThreadResolvers
from ..errors import ConfigError
from ..sockets import (BACKLOG, Tally, accept, accept_failures, bind, connection_limit,
                       release)
from .answers import Answers

THREADS = 4
LOOKUP_SECONDS = 10
# Postfix opens one connection per smtpd process (default_process_limit 100).
MAX_CONNECTIONS = 1000
# The longest request line lda policy reads (a StreamReader's limit).
LINE_LIMIT = 1 << 17


class Service:
    """What a connection handler needs: the answers, the threads they run
    in, the log, how long a lookup may take, how long a client may idle and
    how many may be connected at once."""

    def __init__(self, config, log, name, threads=THREADS, timeout=LOOKUP_SECONDS,
                 limit=MAX_CONNECTIONS):
        self.name = name
        self.answers = Answers(config, ThreadResolvers(config, log=log), self._failed)
        self.loop = None  # serve()'s
        self.threads = LookupThreads(threads)
        self.log = log
        self.timeout = timeout
        self.idle_timeout = getattr(config, f"{name}_idle_timeout")
        self.connections = 0
        self.limit = limit
        self.refused = Tally(log.warning, name, f"refused: {limit} open, "
                                                f"the most lda {name} serves")
        self.idled = Tally(log.info, name, f"closed: idle past {name}_idle_timeout "
                                           f"({self.idle_timeout} s)")
        self.unaccepted = accept_failures(log, name)
        # A client can send bad requests as fast as it likes: counted too.
        self.not_understood = Tally(log.warning, name, "not understood", unit="request")
        self.bad_sizes = Tally(log.warning, name, "with a size= that is no number (judged "
                                                  "as one byte: DUNNO rather than a success)",
                               unit="request")  # policy's alone
        # Postfix asks on every RCPT: a fault that fails each lookup would
        # otherwise log a line each.
        temporary = "DEFER_IF_PERMIT" if name == "policy" else "TEMP"
        self.failed = Tally(log.warning, name, f"failed ({temporary})", unit="lookup")
        self.timed_out = Tally(log.warning, name, f"unanswered within {timeout} s "
                                                  f"({temporary})", unit="lookup")
        self.tallies = (self.refused, self.idled, self.unaccepted, self.not_understood,
                        self.bad_sizes, self.failed, self.timed_out)

    def _failed(self, detail):
        """From a lookup thread: counted in the loop's Tally."""
        try:
            self.loop.call_soon_threadsafe(self.failed.add, detail)
        except RuntimeError:
            pass  # the loop has closed: lda is stopping, the answer is dropped

    async def call(self, fn, *args):
        """fn(*args) in a lookup thread; TimeoutError after `timeout`, the
        lookup then withdrawn if no thread has started it."""
        future = asyncio.wrap_future(self.threads.submit(fn, *args))
        return await asyncio.wait_for(future, self.timeout)

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


class LookupThreads:
    """The threads lookups run in, taking them in turn (each thread keeps
    its own resolver, ThreadResolvers).  Daemon threads: lda's stop does
    not wait for them, where concurrent.futures joins its threads at the
    interpreter's exit, so a lookup waiting on a locked directory (SQLite's
    busy timeout, 30 s) held the stop as long.

    A lookup cancelled before a thread takes it (its client was answered
    as timed out, or lda is stopping) leaves the queue at once, so what
    waits is only what clients wait for, one a connection at most: through
    a stall the queue stays within the connection limit, and once the
    stall ends the threads go to the requests of now, not to stale ones."""

    def __init__(self, count):
        self.waiting = collections.deque()
        self.ready = threading.Condition()
        for n in range(count):
            threading.Thread(target=self._run, name=f"lookup-{n}", daemon=True).start()

    def submit(self, fn, *args):
        """A Future of fn(*args), run in the next free thread."""
        future = Future()
        work = (future, fn, args)
        with self.ready:
            self.waiting.append(work)
            self.ready.notify()
        future.add_done_callback(lambda done: done.cancelled() and self._withdraw(work))
        return future

    def _withdraw(self, work):
        with self.ready:
            with contextlib.suppress(ValueError):  # a thread took it first
                self.waiting.remove(work)

    def stop(self):
        """Start nothing more: what waits is cancelled."""
        with self.ready:
            while self.waiting:
                self.waiting.popleft()[0].cancel()

    def _run(self):
        while True:
            with self.ready:
                while not self.waiting:
                    self.ready.wait()
                future, fn, args = self.waiting.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - the caller's to report
                future.set_exception(e)


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
    # Its threads started before the socket exists: a SIGTERM that comes
    # once a client can connect finds serve()'s handler the sooner.
    service = Service(config, log, name, limit=connection_limit(MAX_CONNECTIONS, log, name))
    sock = bind(listen, name)
    log.info(f"{name}: listening on {listen}")
    try:
        asyncio.run(serve(service, session, sock))
    finally:
        sock.close()
        release(listen, name)


class Acceptor:
    """Connections taken from the listening socket one at a time.  One past
    the limit is closed before the next accept(), so refusing never holds
    more than one descriptor: asyncio's own server accepts a whole backlog
    at a go and closes none until their tasks run, which ran out of
    descriptors under a low limit.  An accept() that finds none pauses
    accepting for a while (sockets.accept), counted in the log (asyncio printed a
    traceback on stderr each time)."""

    def __init__(self, loop, sock, service, connected):
        self.loop, self.sock, self.service, self.connected = loop, sock, service, connected
        self.tasks = set()
        loop.add_reader(sock, self._accept)

    def _accept(self):
        service = self.service
        for _ in range(BACKLOG):  # then the loop's other work, and back
            conn = accept(self.loop, self.sock, service.unaccepted, self._resume)
            if conn is None:
                return  # the reader calls again for any still waiting
            if service.connections >= service.limit:
                conn.close()
                service.refused.add()
                continue
            service.connections += 1
            task = self.loop.create_task(self.connected(conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _resume(self):
        if self.sock.fileno() >= 0:
            self.loop.add_reader(self.sock, self._accept)

    def close(self):
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock)
            self.sock.close()


async def serve(service, session, sock):
    loop = service.loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    open_writers = set()

    async def connected(conn):
        writer = None
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=LINE_LIMIT)
            open_writers.add(writer)
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
            if writer is None:
                conn.close()
            else:
                open_writers.discard(writer)
                writer.close()

    acceptor = Acceptor(loop, sock, service, connected)
    await stop.wait()
    acceptor.close()
    plural = "s" if service.connections != 1 else ""
    service.log.info(f"{service.name}: stopping; {service.connections} connection{plural} "
                     "closed")
    for writer in list(open_writers):
        writer.close()
    for tally in service.tallies:
        tally.flush()
    service.threads.stop()

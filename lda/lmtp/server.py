"""`lda lmtp`: listening, worker processes and a graceful stop.

The parent binds the socket, then forks `lmtp_processes` children, each with
its own asyncio loop on that one socket (pre-fork, as Postfix's and Dovecot's
services run).  By default a child delivers in its own thread, one message
at a time, and there are 4 children per CPU, so that a delivery that waits
holds up few sessions.  With `lmtp_workers` a child delivers in that many
threads instead: they share one core and its GIL, and at 16 sessions the
GIL's hand-overs cost more CPU per message than the threads saved.  A
child accepts one connection per wake-up, so whichever child is free takes
the next session.  The parent only supervises: it restarts a child that
dies and passes a stop on to all.

At most `lmtp_max_sessions` sessions are open at once, counted over all the
processes (each keeps its count in memory they share): a connection beyond
that is answered 421 4.3.2 and closed at once, so that a flood of idle
connections neither exhausts the descriptors nor leaves the next client
waiting for a greeting that never comes.
The soft open-files limit is raised for them and no further, as for lda
policy (sockets.connection_limit); should descriptors run out all the same
(the system's own limit), a process stops accepting for a second at a
time, and counts those pauses in the log (sockets.accept_failures).

SIGTERM or SIGINT closes the listening socket at once; each process lets
every delivery under way finish and answer (up to `grace` seconds), and
closes every session with 421 4.3.2 (after the replies of its delivery, or
one per recipient for a message that was still arriving, which is not
delivered), then exits; the MTA retries those, and DeliveredTo makes the
retry harmless.  The unix socket is removed last.
"""

import asyncio
import contextlib
import fcntl
import gc
import mmap
import os
import signal
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from ..sockets import Tally, accept, accept_failures, bind, connection_limit, release
from .handler import DeliveryHandler, preload
from .protocol import LdaLMTP

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A child that dies sooner than this after its start is restarted after a
# growing delay, so a crash at start-up cannot turn into a fork loop.
STABLE_SECONDS = 5
MAX_RESTART_DELAY = 30
# A process with sessions open waits this long per session (at most
# MAX_ACCEPT_DELAY) before it accepts, so that a less busy one gets there first.
ACCEPT_DELAY_PER_SESSION = 0.0005
MAX_ACCEPT_DELAY = 0.005
# Processes per CPU when they deliver in their own thread.  At 16 sessions
# on 2 CPUs, 3 to 8 processes gave the same throughput within the noise
# (bench/profiles/lmtp-own-thread-vs-threads.txt); with more, a delivery that
# waits (a 100 MB message, a mailbox lock an admin command holds) holds up
# fewer sessions.
PROCESSES_PER_CPU = 4
# ...but no more than this many: Postfix opens 20 sessions to one LMTP
# server by default (default_destination_concurrency_limit), and each
# process holds memory of its own (bench/profiles/lmtp-own-thread-vs-threads.txt).
MAX_AUTO_PROCESSES = 32


SHUTTING_DOWN = "421 4.3.2 lda LMTP shutting down, try again later"
TOO_MANY_SESSIONS = b"421 4.3.2 too many sessions, try again later\r\n"


class SessionCounts:
    """The sessions each process has open, in memory that the processes
    share (a file mapped before the fork): one slot per process, written by
    that process alone.  A new session is counted under a POSIX record lock
    on that file, so that two processes accepting at once cannot both take
    the last place; the kernel drops the lock of a process that dies."""

    def __init__(self, processes):
        self.file = tempfile.TemporaryFile()
        self.file.truncate(8 * processes)
        self.memory = mmap.mmap(self.file.fileno(), 8 * processes)
        self.slots = memoryview(self.memory).cast("q")

    def take(self, slot, limit):
        """Count one more session in `slot`, unless the server has `limit`."""
        fcntl.lockf(self.file, fcntl.LOCK_EX)
        try:
            if sum(self.slots) >= limit:
                return False
            self.slots[slot] += 1
            return True
        finally:
            fcntl.lockf(self.file, fcntl.LOCK_UN)

    def release(self, slot):
        self.slots[slot] -= 1


def session_limit(config, log):
    """lmtp_max_sessions, or fewer if the open-files limit would not hold
    them (sockets.connection_limit): any one process may hold them all."""
    return connection_limit(config.lmtp_max_sessions, log, "lmtp", "sessions",
                            f"lmtp_max_sessions = {config.lmtp_max_sessions}")


def process_count(config):
    """lmtp_processes, where 0 means PROCESSES_PER_CPU per CPU this process
    may run on (at most MAX_AUTO_PROCESSES), or one per CPU when each process
    has delivery threads."""
    if config.lmtp_processes:
        return config.lmtp_processes
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return cpus if config.lmtp_workers else min(cpus * PROCESSES_PER_CPU, MAX_AUTO_PROCESSES)


class Acceptor:
    """Sessions shared out between processes waiting on one socket: one
    accept() per readiness event (asyncio's own server takes the whole
    backlog at once), and a process that has sessions open already lets the
    others try first.  Every process is woken; one gets each connection."""

    def __init__(self, loop, sock, factory, log, limit, counts, slot=0, shared=True):
        self.loop, self.sock, self.factory, self.log = loop, sock, factory, log
        self.limit, self.counts, self.slot = limit, counts, slot
        self.shared = shared
        self.sessions = 0
        self.open = set()  # the sessions' protocols, for a stop to close them
        self.waited = False
        self.tasks = set()
        self.refused = Tally(log.warning, "lmtp", f"refused: {limit} sessions open, "
                                                  "the most lda lmtp holds")
        self.unaccepted = accept_failures(log, "lmtp")
        loop.add_reader(sock, self._accept)

    def protocol(self):
        session = self.factory(lambda: self._closed(session))
        self.open.add(session)
        return session

    def _closed(self, session=None):
        self.open.discard(session)
        self.sessions -= 1
        self.counts.release(self.slot)

    def _started(self, task):
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.warning(f"lmtp: a session could not start: {task.exception()}")
            self._closed()  # no protocol: it was counted all the same

    def _accept(self):
        if self.shared and self.sessions and not self.waited:
            self.loop.remove_reader(self.sock)
            self.loop.call_later(min(self.sessions * ACCEPT_DELAY_PER_SESSION,
                                     MAX_ACCEPT_DELAY), self._resume, True)
            return
        self.waited = False
        conn = accept(self.loop, self.sock, self.unaccepted, self._resume)
        if conn is None:
            return
        if not self.counts.take(self.slot, self.limit):
            _refuse(conn)
            self.refused.add()
            return
        self.sessions += 1
        conn.setblocking(False)
        if conn.family != socket.AF_UNIX:
            # asyncio sets this only for sockets whose proto says TCP, which
            # accept() on a socket.create_server() socket does not: without
            # it each session's first replies wait for a delayed ACK (40 ms).
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = self.loop.create_task(self.loop.connect_accepted_socket(self.protocol, conn))
        self.tasks.add(task)
        task.add_done_callback(self._started)

    def _resume(self, waited=False):
        if self.sock.fileno() >= 0:
            self.waited = waited
            self.loop.add_reader(self.sock, self._accept)

    def close(self):
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock)
            self.sock.close()
        self.refused.flush()
        self.unaccepted.flush()

    def close_sessions(self, status):
        for session in list(self.open):
            session.close_with(status)


def _refuse(conn):
    """421 and a close for a connection over lmtp_max_sessions: a fresh
    socket's buffer takes the line at once."""
    try:
        conn.setblocking(False)
        conn.send(TOO_MANY_SESSIONS)
    except OSError:
        pass  # the client has gone already
    finally:
        conn.close()


async def serve(config, log, sock, grace=300, clock=None, parent=None, counts=None, slot=0):
    """One process's server on a bound socket, until SIGTERM or SIGINT;
    `parent` is the supervisor's pid, in a child that shares the socket and
    keeps its session count in counts.slots[slot]."""
    loop = asyncio.get_running_loop()
    threads = (ThreadPoolExecutor(config.lmtp_workers, thread_name_prefix="deliver",
                                  initializer=signal.pthread_sigmask,
                                  initargs=(signal.SIG_BLOCK, STOP_SIGNALS))
               if config.lmtp_workers else contextlib.nullcontext())
    with threads as pool:  # None without threads: the handler delivers on the loop
        handler = DeliveryHandler(config, pool, log, clock=clock)
        stop = asyncio.Event()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, stop.set)
        # A child starts with these blocked (see _supervise): a stop that came
        # before the handlers existed is delivered now, and is graceful too.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (*STOP_SIGNALS, signal.SIGCHLD))
        acceptor = Acceptor(loop, sock, lambda on_close: LdaLMTP(handler, config, on_close),
                            log, config.lmtp_max_sessions, counts or SessionCounts(1), slot,
                            shared=parent is not None)
        if parent is not None:
            _stop_when_orphaned(loop, parent, stop)
        await stop.wait()
        # Once stopping, a second SIGTERM must not kill the process while
        # asyncio.run() restores the default handlers on its way out, nor in
        # the instant between remove_signal_handler (SIG_DFL) and SIG_IGN
        # here: blocked first, it waits, and is then ignored (run()).
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
            signal.signal(signum, signal.SIG_IGN)
        acceptor.close()
        log.info(f"lmtp: stopping; {handler.in_flight} deliveries under way")
        acceptor.close_sessions(SHUTTING_DOWN)
        try:
            await asyncio.wait_for(handler.idle.wait(), grace)
        except asyncio.TimeoutError:
            log.warning(f"lmtp: {handler.in_flight} deliveries still running after "
                        f"{grace}s; their sessions will be retried")
        await asyncio.sleep(0)  # the last replies and 421s go out


def _stop_when_orphaned(loop, parent, stop):
    """A parent killed outright (SIGKILL) cannot pass the stop on: its
    children notice and stop gracefully themselves rather than serve on."""
    if os.getppid() != parent:
        stop.set()
    else:
        loop.call_later(1, _stop_when_orphaned, loop, parent, stop)


def load_before_fork():
    """What every process needs, loaded once in the parent so that the
    children share its pages (preload), and kept out of the collector's
    sight (gc.freeze): it lives as long as the process, and a child's
    collections then neither walk those objects nor write to their pages
    (copy-on-write).  ~1 MB less private memory a child, and its first
    older-generation collection takes 0.5 ms instead of 2.5
    (bench/profiles/lmtp-cpu-stop29.txt)."""
    preload()
    gc.freeze()


def run(config, log, listen=None, grace=300):
    """Serve until stopped; the socket is gone when this returns."""
    listen = listen or config.lmtp_listen
    processes = process_count(config)
    load_before_fork()
    config.lmtp_max_sessions = session_limit(config, log)
    # Blocked from before the socket exists: a SIGTERM right after the start
    # is graceful too, in the parent (sigtimedwait) as in each child.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, (*STOP_SIGNALS, signal.SIGCHLD))
    sock = bind(listen)
    try:
        threads = (f"{config.lmtp_workers} delivery threads" if config.lmtp_workers
                   else "delivering in its own thread")
        log.info(f"lmtp: listening on {listen}, {processes} processes, each {threads}")
        if processes == 1:
            asyncio.run(serve(config, log, sock, grace))
        else:
            _supervise(config, log, sock, processes, grace)
    finally:
        sock.close()
        for signum in STOP_SIGNALS:
            # Stopping: a second SIGTERM, blocked until now, must not kill
            # the process on its way out.
            signal.signal(signum, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        release(listen)
    log.info("lmtp: stopped")


def _supervise(config, log, sock, processes, grace):
    """Keep `processes` children serving; on a stop signal, pass it on and
    wait for every child to finish its deliveries."""
    children = {}  # pid -> (start time (monotonic), its slot in `counts`)
    counts = SessionCounts(processes)
    try:
        _keep_serving(config, log, sock, processes, grace, children, counts)
    finally:
        for pid in children:  # only left on an unexpected error: no orphans
            _kill(pid, signal.SIGTERM)


def _keep_serving(config, log, sock, processes, grace, children, counts):
    restarts = []  # monotonic times at which to start a replacement
    delay = 0.0
    for _ in range(processes):
        _spawn(config, log, sock, grace, children, counts)
    stopping = False
    while children or (restarts and not stopping):
        timeout = max(0.0, min(restarts) - time.monotonic()) if restarts else None
        info = (signal.sigtimedwait((*STOP_SIGNALS, signal.SIGCHLD), timeout)
                if timeout is not None else
                signal.sigwaitinfo((*STOP_SIGNALS, signal.SIGCHLD)))
        if info is not None and info.si_signo in STOP_SIGNALS and not stopping:
            stopping = True
            restarts.clear()
            for pid in children:
                _kill(pid, signal.SIGTERM)
            sock.close()  # new connections are refused at once
        for pid, status, lived in _reap(children):
            if stopping:
                if status:
                    log.warning(f"lmtp: process {pid} {_describe(status)} while stopping")
                continue
            delay = 0.0 if lived >= STABLE_SECONDS else min(max(delay * 2, 0.5),
                                                            MAX_RESTART_DELAY)
            log.warning(f"lmtp: process {pid} {_describe(status)}; "
                        f"starting another in {delay:.1f}s")
            restarts.append(time.monotonic() + delay)
        now = time.monotonic()
        for due in [t for t in restarts if t <= now and not stopping]:
            restarts.remove(due)
            _spawn(config, log, sock, grace, children, counts)


def _spawn(config, log, sock, grace, children, counts):
    # Taken before the fork: a parent killed before the child has set up
    # would otherwise leave it comparing against init's pid forever.
    parent = os.getpid()
    # A dead process's slot: its sessions ended with it.
    slot = min(set(range(len(counts.slots))) - {s for _, s in children.values()})
    counts.slots[slot] = 0
    pid = os.fork()
    if pid:
        children[pid] = (time.monotonic(), slot)
        return
    status = 75
    try:
        asyncio.run(serve(config, log, sock, grace, parent=parent, counts=counts, slot=slot))
        status = 0
    except BaseException as e:  # noqa: BLE001 - logged; the parent starts another
        log.exception(e)
    finally:
        os._exit(status)  # never back into the parent's code (click, finally:)


def _reap(children):
    """(pid, wait status, seconds it lived) for each child that has exited."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
        child = children.pop(pid, None)
        if child is not None:  # not a sendmail's child or the like
            yield pid, status, time.monotonic() - child[0]


def _kill(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # already gone; reaped on its SIGCHLD


def _describe(status):
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"

"""The listening sockets of lda's servers: `lda lmtp`, `lda policy` and
`lda socketmap` take the same unix:PATH or HOST:PORT, the forms Postfix
writes its own service addresses in, and log what they turn away alike
(Tally)."""

import asyncio
import errno
import os
import resource
import socket
import stat
import struct

from .errors import ConfigError

BACKLOG = 128
MAX_UNIX_PATH = 108  # sun_path's size on Linux, its terminating NUL included
# Connections refused at a server's limit, or closed for idling, are logged
# at most once in this many seconds, with how many there were (Dovecot's
# master says "process_limit reached" at most once a second).
REPORT_SECONDS = 60
# Descriptors a server keeps for other things than its connections: the
# listening socket, the event loop's, SQLite files, a maildirsize being read,
# a message being written, a sendmail's pipes.
FILES_RESERVED = 64
# What accept() fails with when descriptors or memory run out: a server
# stops accepting this long, as asyncio's own server does
# (ACCEPT_RETRY_DELAY), rather than spin, and counts the pauses
# (accept_failures).
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
PAUSE_SECONDS = 1
# What bind() refuses a TCP address for that waiting does not mend: the
# administrator changes the address, or stops the program that holds it (a
# stopping lda closes its listening socket at once).  Exit 78, as for a
# unix socket another server listens on.
UNSERVABLE = {errno.EACCES: "a port below 1024 needs root or CAP_NET_BIND_SERVICE",
              errno.EADDRNOTAVAIL: "no interface of this host has that address",
              errno.EADDRINUSE: "stop the program listening there, or listen somewhere else"}
# path -> (st_dev, st_ino) of each unix socket this process bound (release).
_BOUND = {}


def parse_listen(listen, service="lmtp"):
    """("unix", path) or ("tcp", (host, port)) from unix:PATH, PATH or
    HOST:PORT ([IPv6]:PORT, as Postfix writes it); ConfigError for an
    address that no socket could have."""
    if listen.startswith("unix:") or listen.startswith("/"):
        return "unix", _unix_path(listen, service)
    return "tcp", _tcp_address(listen, service)


def _unix_path(listen, service):
    path = listen.removeprefix("unix:")
    if not path:
        raise ConfigError(f"{service} listen address {listen!r}: no path after unix:")
    if len(os.fsencode(path)) >= MAX_UNIX_PATH:
        raise ConfigError(f"{service} listen address {listen!r}: longer than a unix "
                          f"socket's path can be ({MAX_UNIX_PATH} bytes)")
    return path


def _tcp_address(listen, service):
    host, _, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:  # an IPv6 address needs brackets: [::1]:24
        host = ""
    # isdigit() is true for "²" too; 0 is a port the kernel picks, which no
    # Postfix table can name.
    if (not host or "[" in host or "]" in host or not (port.isascii() and port.isdigit())
            or not 0 < int(port) <= 65535):
        raise ConfigError(f"{service} listen address {listen!r} is neither unix:PATH "
                          "nor HOST:PORT with a port from 1 to 65535 ([::1]:PORT for IPv6)")
    return host, int(port)


def bind(listen, service="lmtp"):
    """The listening socket, bound before any fork so every child shares it."""
    kind, where = parse_listen(listen, service)
    sock = _bind_tcp(listen, *where, service) if kind == "tcp" else _bind_unix(where)
    sock.setblocking(False)
    return sock


def _bind_tcp(listen, host, port, service):
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    try:
        return socket.create_server(address, family=family, backlog=BACKLOG)
    except OSError as e:
        if e.errno not in UNSERVABLE:
            raise
        why = os.strerror(e.errno)  # e.strerror has the address as Python writes it
        if e.errno != errno.EACCES or port < 1024:  # above: a security module's refusal
            why += f"; {UNSERVABLE[e.errno]}"
        raise ConfigError(f"{service} listen address {listen!r}: {why}") from None


def _bind_unix(where):
    """A listening Unix socket at `where`.  bind() makes the file and a
    connect() before listen() is refused, so the socket is bound and
    listening under a name beside it first, then renamed over `where`: a
    client that finds the file can connect (Postfix's lmtp(8) right after a
    restart), and a socket a previous, killed server left is replaced in
    one step, never missing in between.  Only a socket is replaced, and the
    directory must exist: as with Postfix's and Dovecot's sockets, its
    owner and mode are the administrator's to choose (the unit makes it)."""
    directory = os.path.dirname(where) or "."
    try:
        found = stat.S_ISDIR(os.stat(directory).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        found = False
    if not found:
        raise ConfigError(f"{where}: its directory {directory} does not exist")
    staged = where + ".new"
    if len(os.fsencode(staged)) >= MAX_UNIX_PATH:
        staged = where  # no room for a longer name: bound in place, as before
    for path in {staged, where}:
        _check_replaceable(path)
    if _answers(where):
        raise ConfigError(f"{where}: another server is listening there; stop it, or "
                          "listen somewhere else")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if os.path.lexists(staged):
            os.unlink(staged)  # a socket left by a previous, killed server
        sock.bind(staged)
        os.chmod(staged, 0o660)  # the MTA's group connects; nobody else
        sock.listen(BACKLOG)
        if staged != where:
            os.rename(staged, where)
        found = os.stat(where)
        _BOUND[where] = (found.st_dev, found.st_ino)
    except PermissionError as e:
        sock.close()
        # The directory is the administrator's (above): lda's own state
        # is not what refused it.
        raise ConfigError(f"{where}: {e.strerror}: lda may not make its socket in "
                          f"{directory}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def release(listen, service="lmtp"):
    """At a server's stop: remove its unix socket, if the file at its path
    is still the one it bound (a successor may have replaced it since)."""
    kind, where = parse_listen(listen, service)
    if kind != "unix" or where not in _BOUND:
        return
    try:
        found = os.stat(where)
        if (found.st_dev, found.st_ino) == _BOUND.pop(where):
            os.unlink(where)
    except FileNotFoundError:
        pass


def _answers(path):
    """Whether a server accepts connections on the unix socket at path (a
    socket left by a killed one refuses them, and is replaced)."""
    if not os.path.lexists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(path)
        except OSError:  # ECONNREFUSED: nobody listens; a full backlog: EAGAIN
            return False
    return True


def _check_replaceable(path):
    """ConfigError unless path is free or a socket (an earlier server's):
    a mistyped address must not cost a file its contents."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"{path}: not a socket, which lda would replace; "
                          "listen somewhere else or remove it")


def connection_limit(connections, log, name, unit="connections", wanted=None):
    """How many connections a server can hold at once, at most
    `connections`: each holds a descriptor, and a server out of them can
    accept nobody, not even to refuse.  The soft open-files limit (often
    1,024) is raised for them and FILES_RESERVED, and no further, since the
    hard limit may be a million; the log says when not even the hard limit
    holds them (`unit` and `wanted`, the setting asked for, name them)."""
    needed = connections + FILES_RESERVED
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return connections
    limit = max(1, soft - FILES_RESERVED)
    log.warning(f"{name}: at most {soft} open files (ulimit -n): {limit} {unit} at once, "
                f"not {wanted or connections}")
    return limit


def accept(loop, sock, failures, resume):
    """The next connection waiting on the listening sock, or None: none is
    waiting (or another process took it), that connection failed on its
    own (accept(2)'s ECONNABORTED, EPROTO...), or descriptors or memory ran
    out (OUT_OF_RESOURCES): then accepting pauses for PAUSE_SECONDS, the
    pause counted in `failures` (accept_failures), and resume() follows."""
    try:
        conn, _ = sock.accept()
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as e:
        if e.errno in OUT_OF_RESOURCES:
            failures.add(e.strerror)
            loop.remove_reader(sock)
            loop.call_later(PAUSE_SECONDS, resume)
        return None
    return conn


def accept_failures(log, name):
    """The Tally of accept() calls that found no descriptor or memory
    (OUT_OF_RESOURCES), each followed by a pause of PAUSE_SECONDS."""
    return Tally(log.warning, name, f"(accepting paused {PAUSE_SECONDS} s after each)",
                 unit="accept() failure")


def peer(writer):
    """Who is at the other end of a connection, for the log: HOST:PORT, or
    on a unix socket the pid and uid the kernel vouches for (SO_PEERCRED)."""
    sock = writer.get_extra_info("socket")
    try:
        if sock.family == socket.AF_UNIX:
            credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                          struct.calcsize("3i"))
            pid, uid, _ = struct.unpack("3i", credentials)
            return f"pid {pid} uid {uid}"
        host, port = sock.getpeername()[:2]
    except OSError:
        return "a client that has gone"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Tally:
    """Events that a client can cause over and over (connections refused or
    closed, bad requests), logged without flooding the log: the first at
    once, with its `detail`, then one line every REPORT_SECONDS with how
    many since, for as long as more come."""

    def __init__(self, write, name, what, unit="connection"):
        self.write, self.name, self.what, self.unit = write, name, what, unit
        self.count = 0
        self.timer = None

    def add(self, detail=""):
        """Count one; `detail` (say what was wrong and from whom) is logged
        only if this one is logged at once."""
        self.count += 1
        if self.timer is None:
            self._report(detail)

    def _report(self, detail=""):
        if self.count:
            self.flush(detail)
            self.timer = asyncio.get_running_loop().call_later(REPORT_SECONDS, self._report)
        else:
            self.timer = None

    def flush(self, detail=""):
        """The line for those counted since the last one, if any."""
        if self.count:
            plural = "s" if self.count > 1 else ""
            self.write(f"{self.name}: {self.count} {self.unit}{plural} {self.what}"
                       + (f": {detail}" if detail else ""))
            self.count = 0

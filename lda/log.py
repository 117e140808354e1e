"""One log line per delivery target, in the style of Postfix's mail log.

stderr or syslog, as lda.toml says (log = "auto" chooses, see
Log.configured).  The logging package is not used: it costs several
milliseconds of imports on every delivery; nor is the syslog module, which
cannot tell that nothing listens on /dev/log, so lda writes to that socket
itself.

Every line passes through printable() here, whoever wrote it: a recipient,
sender, Message-ID, folder or reason comes from outside, and a line break
in one would forge a whole log line.
"""

import errno
import os
import sys
import time

FACILITIES = {"mail": 2 << 3, "user": 1 << 3, "daemon": 3 << 3,
              **{f"local{i}": (16 + i) << 3 for i in range(8)}}
INFO, WARNING, ERROR = 6, 4, 3  # syslog severities (RFC 5424 section 6.2.1)
# After a failed write to the syslog socket, lines are dropped (and counted)
# for this long before the next attempt, so that a missing syslog daemon does
# not cost a connect() per line of a busy LMTP server.
SYSLOG_RETRY_SECONDS = 10


def printable(text):
    """text with each character that is not printable (controls, line and
    paragraph separators, format characters such as bidi overrides, bytes
    that were not UTF-8) written as a Python escape: `\\x0a`, `\\u202e`."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char):
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte it stands for
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class Syslog:
    """RFC 3164 lines (`<PRI>lda[PID]: text`) to the local syslog socket, a
    datagram socket as glibc's syslog(3) prefers, else a stream one."""

    def __init__(self, path, facility):
        self.path = path
        self.facility = FACILITIES.get(facility, FACILITIES["mail"])
        self.sock = None

    def send(self, severity, line):
        """Raises OSError when the line could not be handed over.  Local
        references throughout: the LMTP server's threads share this."""
        data = f"<{self.facility | severity}>lda[{os.getpid()}]: {line}".encode(
            "utf-8", "replace")
        sock = self.sock or self._connect()
        try:
            self._send(sock, data)
        except ConnectionError:  # syslogd restarted: its socket is a new one
            self.close()
            self._send(self._connect(), data)

    def _send(self, sock, data):
        import _socket  # imported by _connect already (see there)

        if sock.type == _socket.SOCK_STREAM:
            sock.sendall(data + b"\0")  # glibc's record separator on a stream
        else:
            sock.send(data)

    def _connect(self):
        # A socket path that is not there (no syslog daemon on this host)
        # fails here with the error connect() would give, before _socket
        # is imported: its import and a socket's creation are most of what
        # the line costs (bench/profiles/deliver-case1-startup.txt, 19).
        # A name with a NUL is no file's (Linux's abstract names begin with one).
        if "\0" not in self.path:
            os.stat(self.path)
        # _socket, not socket: socket.py imports selectors and collections,
        # milliseconds of every delivery (tests/test_deliver.py lists them).
        import _socket

        for kind in (_socket.SOCK_DGRAM, _socket.SOCK_STREAM):
            sock = _socket.socket(_socket.AF_UNIX, kind | _socket.SOCK_CLOEXEC)
            # A syslogd that stops reading must not stall a delivery.
            sock.settimeout(5)
            try:
                sock.connect(self.path)
            except OSError as e:
                sock.close()
                if e.errno == errno.EPROTOTYPE and kind == _socket.SOCK_DGRAM:
                    continue
                raise
            self.sock = sock
            return sock

    def close(self):
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()


class Log:
    def __init__(self, destination="stderr", facility="mail", stream=None,
                 syslog_socket="/dev/log"):
        self.stream = stream or sys.stderr
        self.syslog = Syslog(syslog_socket, facility) if destination == "syslog" else None
        self.lost = 0  # lines syslog did not take since it last failed
        self._retry_at = 0

    @classmethod
    def configured(cls, config, stream=None, mta_stderr=None):
        """The log lda.toml asks for.  log = "auto" (the default) is syslog
        for `lda deliver` (mta_stderr: its stderr) unless that stderr is a
        terminal: an MTA puts a delivery command's whole output into its
        defer or bounce reason, where log lines bury the one-line reason;
        run by hand, the lines are read on the terminal.  Every other
        command logs to stderr: `lda lmtp` under systemd, the timers and an
        admin at a terminal read it there (the journal)."""
        destination = config.log
        if destination == "auto":
            interactive = mta_stderr is None or _isatty(mta_stderr)
            destination = "stderr" if interactive else "syslog"
        return cls(destination, config.syslog_facility, stream, config.syslog_socket)

    @property
    def to_stderr(self):
        return self.syslog is None

    def _write(self, severity, line):
        line = printable(line)
        if self.syslog is None:
            self.stream.write(f"lda[{os.getpid()}]: {line}\n")
            self.stream.flush()
        else:
            self._to_syslog(severity, line)

    def _to_syslog(self, severity, line):
        """A line syslog cannot take is counted, and the first of an outage
        is reported on the stream (after lda deliver's reason): said once,
        not dropped in silence, and not one stderr line per log line."""
        if self.lost and time.monotonic() < self._retry_at:
            self.lost += 1
            return
        try:
            self.syslog.send(severity, line)
            self.lost = 0
        except OSError as e:
            self.syslog.close()
            if not self.lost:
                path = printable(self.syslog.path)
                self.stream.write(f"lda: cannot log to syslog at {path}: {e.strerror or e}; "
                                  "log lines are dropped (set log = \"stderr\" in lda.toml "
                                  "to keep them on stderr)\n")
                self.stream.flush()
            self.lost += 1
            self._retry_at = time.monotonic() + SYSLOG_RETRY_SECONDS

    def info(self, line):
        self._write(INFO, line)

    def warning(self, line):
        self._write(WARNING, f"warning: {line}")

    def error(self, line):
        self._write(ERROR, f"error: {line}")

    def exception(self, error, prefix=""):
        """An unexpected error's traceback, one line each (each escaped)."""
        import traceback

        for line in "".join(traceback.format_exception(error)).splitlines():
            self.error(prefix + line)

    def target(self, message_log_id, to, orig_to, status, dsn, detail):
        """Postfix style: id: to=<a>, orig_to=<b>, dsn=2.0.0, status=sent (...).
        No id when the message was not read yet (a recipient refused first)."""
        orig = f", orig_to=<{orig_to}>" if orig_to and orig_to != to else ""
        lead = f"{message_log_id}: " if message_log_id else ""
        self.info(f"{lead}to=<{to}>{orig}, relay=lda, dsn={dsn}, "
                  f"status={status} ({' '.join(detail.split())})")


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or closed
        return False


def failure_status(error):
    """Postfix's status word for a failed target: a temporary failure is
    retried ("deferred"), a permanent one returned ("bounced")."""
    return "bounced" if error.permanent else "deferred"

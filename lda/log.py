"""One log line per delivery target, in the style of Postfix's mail log.

stderr or syslog, as lda.toml says.  The logging package is not used: it
costs several milliseconds of imports on every delivery.
"""

import os
import sys

FACILITIES = {"mail": 2 << 3, "user": 1 << 3, "daemon": 3 << 3,
              **{f"local{i}": (16 + i) << 3 for i in range(8)}}


class Log:
    def __init__(self, destination="stderr", facility="mail", stream=None):
        self.stream = stream or sys.stderr
        self.syslog = None
        if destination == "syslog":
            import syslog

            syslog.openlog("lda", syslog.LOG_PID, FACILITIES.get(facility, 2 << 3))
            self.syslog = syslog

    def _write(self, level, line):
        if self.syslog:
            # Python's syslog takes UTF-8 only: a field holding bytes of
            # argv that were not UTF-8 (surrogateescape) raised, and a
            # refused address became a retried one.  Logged escaped instead
            # (the byte 0xff as \udcff).
            self.syslog.syslog(level, line.encode("utf-8", "backslashreplace").decode())
        else:
            self.stream.write(f"lda[{os.getpid()}]: {line}\n")
            self.stream.flush()

    def info(self, line):
        self._write(6, line)

    def warning(self, line):
        self._write(4, f"warning: {line}")

    def error(self, line):
        self._write(3, f"error: {line}")

    def target(self, message_log_id, to, orig_to, status, dsn, detail):
        """Postfix style: id: to=<a>, orig_to=<b>, dsn=2.0.0, status=sent (...)."""
        orig = f", orig_to=<{orig_to}>" if orig_to and orig_to != to else ""
        self.info(f"{message_log_id}: to=<{to}>{orig}, relay=lda, dsn={dsn}, "
                  f"status={status} ({detail})")

"""A raw LMTP client, and `lda lmtp` run as a subprocess: what test_lmtp.py
and the crash driver of test_crash.py talk to."""

import os
import resource
import signal
import socket
import subprocess
from pathlib import Path

from conftest import LDA, wait_until


def dot_stuffed(data):
    """The message as DATA sends it: CRLF lines, a leading dot doubled
    (RFC 5321 section 4.5.2), without the final dot."""
    body = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    body = b"\r\n".join(b"." + l if l.startswith(b".") else l for l in body.split(b"\r\n"))
    return body + (b"" if body.endswith(b"\r\n") else b"\r\n")


class Client:
    """Just enough LMTP to see every reply line."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(60)
        self.file = self.sock.makefile("rb")
        try:
            self.sock.connect(str(path))
            self.greeting = self.reply()
        except OSError:
            self.drop()
            raise

    def reply(self):
        lines = []
        while True:
            raw = self.file.readline()
            if not raw:
                raise ConnectionError("the server closed the connection")
            line = raw.decode().rstrip("\r\n")
            lines.append(line)
            if line[3:4] != "-":
                return lines if len(lines) > 1 else lines[0]

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def send(self, sender, recipients, data, before_data=None):
        """({recipient: RCPT reply}, [reply after DATA per accepted one]);
        before_data() runs between the last RCPT and DATA."""
        assert self.cmd("LHLO test")[-1].startswith("250")
        assert self.cmd(f"MAIL FROM:<{sender}>").startswith("250")
        accepted = []
        rcpt_replies = {}
        for rcpt in recipients:
            rcpt_replies[rcpt] = self.cmd(f"RCPT TO:<{rcpt}>")
            if rcpt_replies[rcpt].startswith("250"):
                accepted.append(rcpt)
        if not accepted:
            self.cmd("RSET")
            return rcpt_replies, []
        if before_data is not None:
            before_data()
        assert self.cmd("DATA").startswith("354")
        self.sock.sendall(dot_stuffed(data) + b".\r\n")
        return rcpt_replies, [self.reply() for _ in accepted]

    def pipeline(self, sender, recipients, data, then=b".\r\nRSET\r\n"):
        """As a PIPELINING client (RFC 2920): LHLO, then MAIL, every RCPT and
        DATA in one write, then the message and `then` (its final dot and
        the next command) in one more; the replies up to 354, in order."""
        lines = [f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{r}>" for r in recipients]
        self.sock.sendall(b"LHLO test\r\n")
        before = [self.reply()]
        self.sock.sendall("".join(f"{line}\r\n" for line in lines + ["DATA"]).encode())
        before += [self.reply() for _ in range(len(lines) + 1)]
        if before[-1].startswith("354"):
            self.sock.sendall(dot_stuffed(data) + then)
        return before

    def replies(self, most):
        """Up to `most` replies, fewer if the server closes the connection."""
        found = []
        try:
            while len(found) < most:
                found.append(self.reply())
        except (ConnectionError, OSError):
            pass
        return found

    def close(self):
        try:
            self.cmd("QUIT")
        finally:
            self.drop()

    def drop(self):
        self.file.close()
        self.sock.close()


def limit_child(cpus, open_files):
    if cpus:
        os.sched_setaffinity(0, cpus)
    if open_files:
        resource.setrlimit(resource.RLIMIT_NOFILE, open_files if isinstance(open_files, tuple)
                           else (open_files, open_files))


class Server:
    def __init__(self, site, *args, listen=None, cpus=None, session=False, open_files=None,
                 pass_fds=()):
        """session: in a process group of its own, which kill() ends at once;
        cpus: the CPUs it may run on; open_files: its RLIMIT_NOFILE, soft
        and hard, or a (soft, hard) pair; pass_fds: descriptors it inherits."""
        self.path = site.root / "lmtp.sock"
        self.listen = listen or f"unix:{self.path}"
        self.proc = subprocess.Popen([LDA, "lmtp", "--listen", self.listen, *args],
                                     env=site.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=session,
                                     pass_fds=pass_fds,
                                     preexec_fn=lambda: limit_child(cpus, open_files))
        wait_until(lambda: self.listening() or self.proc.poll() is not None, 30,
                   "lda lmtp to start")
        assert self.proc.poll() is None, self.proc.communicate()

    def listening(self):
        if self.listen.startswith("unix:"):
            return self.path.exists()
        host, _, port = self.listen.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return True
        except OSError:
            return False

    def client(self):
        return Client(self.path)

    def children(self):
        """The worker processes' pids (none with --processes 1)."""
        tasks = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return {int(pid) for pid in tasks.read_text().split()}

    def forked(self, count):
        """The worker processes' pids once there are count of them: the
        socket exists before the supervisor forks them, so a test that
        starts reading at once can see fewer (CI saw 1 of 2)."""
        def all_forked():
            pids = self.children()
            return pids if len(pids) == count else None

        return wait_until(all_forked, 30, f"{count} worker processes")

    def kill(self):
        """SIGKILL to the supervisor and its workers together, as the OOM
        killer or `systemctl kill -s KILL` would: the socket file stays."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.communicate(timeout=60)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err.decode()

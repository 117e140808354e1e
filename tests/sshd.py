"""A private OpenSSH server on loopback, for the moves between hosts that go
through ssh, as move_command's default does (README, "Moving a mailbox to
another host").

Each instance lives in a directory of its own: its host key and the
client's key (ssh-keygen), an authorized_keys with that key alone, an
sshd_config for `sshd -D` on 127.0.0.1 and a free port (UsePAM no, no
password, its PidFile and log in the directory; StrictModes no, since the
directory lies under /tmp, which is world-writable, and sshd refuses key
files below such a directory otherwise), and a client ssh_config in which
the hosts a and b are that server, with the instance's key, its own
known_hosts and BatchMode (no prompt ever).  Nothing under /etc/ssh is
read or changed; the system's sshd, if the package started one, is left
alone.  sshd needs /run/sshd for privilege separation when run as root
(the package's unit makes it at boot): made here if missing.

`.ci/run` installs Debian's openssh-server; without /usr/sbin/sshd the
fixtures skip.
"""

import getpass
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import wait_until
from postfix import free_port

SSHD = "/usr/sbin/sshd"
SSH = shutil.which("ssh")
SSH_KEYGEN = shutil.which("ssh-keygen")
HOSTS = ("a", "b")
WAIT_SECONDS = 30


def require_sshd():
    if not (os.access(SSHD, os.X_OK) and SSH and SSH_KEYGEN):
        pytest.skip("OpenSSH's server and client are not installed (openssh-server)")


def keygen(path):
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", path.name,
                    "-f", str(path)], check=True, capture_output=True)
    return path


def children(pid):
    """The pids of pid's descendants (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(
                int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_sessions(listener):
    """SIGKILL the sessions of the sshd whose pid is listener (the sshd
    processes serving each connection, not what they run): every
    connection breaks, as when the network between two hosts fails."""
    for pid in children(listener):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass  # it ended meanwhile


def signal_sessions(listener, signum):
    """Send signum to the sshd whose pid is listener's sessions and all they
    run: SIGSTOP makes every connection go silent with no reset (the
    kernel still acknowledges what arrives), as a network that drops
    everything does; SIGCONT lets them go on."""
    for pid in children(listener):
        try:
            os.kill(pid, signum)
        except OSError:
            pass  # it ended meanwhile


class PrivateSshd:
    """sshd on 127.0.0.1:port for the user running the tests; config is
    the client's ssh_config (hosts a and b)."""

    def __init__(self, root):
        require_sshd()
        self.root = Path(root)
        self.port = free_port()
        self.user = getpass.getuser()
        self.host_key = keygen(self.root / "host_ed25519")
        self.client_key = keygen(self.root / "client_ed25519")
        (self.root / "authorized_keys").write_bytes(
            self.client_key.with_suffix(".pub").read_bytes())
        self.log = self.root / "sshd.log"
        self.sshd_config = self.root / "sshd_config"
        self.sshd_config.write_text(
            f"ListenAddress 127.0.0.1:{self.port}\n"
            f"HostKey {self.host_key}\n"
            f"PidFile {self.root / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\n"
            f"AllowUsers {self.user}\n"
            "UsePAM no\nStrictModes no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "LogLevel VERBOSE\n")
        self.config = self.client_config("ssh_config")
        self.process = None

    def client_config(self, name, identity=None, host_key=None):
        """An ssh_config for hosts a and b (this server); another identity
        or another host key in its known_hosts makes a client the server
        refuses, or one that refuses the server."""
        known_hosts = self.root / f"{name}.known_hosts"
        key = (host_key or self.host_key).with_suffix(".pub").read_text().split()
        known_hosts.write_text(f"[127.0.0.1]:{self.port} {key[0]} {key[1]}\n")
        path = self.root / name
        path.write_text(
            f"Host {' '.join(HOSTS)}\n"
            f"  HostName 127.0.0.1\n  Port {self.port}\n  User {self.user}\n"
            f"  IdentityFile {identity or self.client_key}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 10\n"
            "  LogLevel ERROR\n")
        return path

    def start(self):
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([SSHD, "-D", "-f", str(self.sshd_config),
                                             "-E", str(self.log)], stdout=log,
                                            stderr=subprocess.STDOUT)
        wait_until(self._answers, WAIT_SECONDS, f"sshd on port {self.port}", self.log_text)
        return self

    def _answers(self):
        if self.process.poll() is not None:
            pytest.fail(f"sshd exited {self.process.returncode}:\n{self.log_text()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                return s.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    def cut(self):
        kill_sessions(self.process.pid)

    def stop(self):
        """The listener and its sessions."""
        if self.process is not None and self.process.poll() is None:
            self.cut()
            self.process.terminate()
            try:
                self.process.wait(timeout=WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A PrivateSshd, running; a test that stops it starts it again."""
    server = PrivateSshd(tmp_path_factory.mktemp("sshd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


__all__ = ["PrivateSshd", "children", "keygen", "kill_sessions", "require_sshd",
           "signal_sessions", "sshd"]

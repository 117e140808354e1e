"""The other delivery agents bench/compare.py measures lda against: install
them from Debian, and give each its own Maildirs under a temporary root,
without touching /etc or any system mailbox.

    dovecot-lda   Dovecot's LDA, two ways: run as the mailbox owner without
                  -d (as Postfix's mailbox_command runs it: no userdb lookup),
                  and as root with -d USER (a static userdb served by our own
                  Dovecot's auth process, as a virtual-user pipe(8) runs it).
    dovecot lmtp  the same private Dovecot (`dovecot -F -c OUR.conf`), its
                  LMTP service on a loopback port.
    procmail      an rcfile `DEFAULT=$HOME/Maildir/` (trailing slash:
                  Maildir), HOME given as a command-line assignment.
    maildrop      a mailfilter `to "ROOT/maildrop/$1/Maildir"`, mode 0600 and
                  owned by the user, as maildrop insists.

Dovecot refuses to access mail as uid 0 ("userdb returned 0 as uid"), so its
mailboxes belong to an unprivileged account (nobody); the others, like lda,
run as the invoking user (root here).
"""

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field

PACKAGES = ["dovecot-core", "dovecot-lmtpd", "procmail", "maildrop", "time"]
OPTIONAL_PACKAGES = ["hyperfine"]
DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"
BINARIES = {"dovecot-core": DOVECOT_LDA, "dovecot-lmtpd": "/usr/lib/dovecot/lmtp",
            "procmail": "/usr/bin/procmail", "maildrop": "/usr/bin/maildrop",
            "time": "/usr/bin/time"}   # GNU time: peak RSS without the harness's own
# Postfix's LMTP load generator, for compare.py cases 6 and 7 (package postfix)
SMTP_SOURCE = "/usr/sbin/smtp-source"
# Installed unconfigured: no main.cf, so no Postfix starts or listens on port 25.
POSTFIX_DEBCONF = "postfix postfix/main_mailer_type select No configuration\n"
SYSTEM_DOVECOT_PID = "/run/dovecot/master.pid"
DOMAIN = "bench.example.org"
UNPRIVILEGED = "nobody"


@dataclass
class Agent:
    """How to run one delivery agent once: argv, environment, user."""

    name: str
    argv: list
    env: dict
    maildirs: list              # Maildir roots it delivers into
    user: int | None = None
    group: int | None = None
    extra_groups: list = field(default_factory=list)


def missing_packages(smtp_source=False):
    missing = [p for p in PACKAGES if not os.path.exists(BINARIES[p])]
    if smtp_source and not os.path.exists(SMTP_SOURCE):
        missing.append("postfix")
    return missing


def install(say=print, smtp_source=False):
    """apt-get install what is missing (and hyperfine, if it can); stop a
    system Dovecot that the install started.  With smtp_source, Postfix
    too, for its smtp-source, left unconfigured."""
    missing = missing_packages(smtp_source)
    wanted = missing + [p for p in OPTIONAL_PACKAGES if shutil.which(p) is None]
    if not wanted:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"missing {' '.join(missing)}: run as root, or install them")
    dovecot_before = _system_dovecot_pid()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    say(f"installing {' '.join(wanted)} (apt-get) ...")
    if "postfix" in wanted:
        subprocess.run(["debconf-set-selections"], input=POSTFIX_DEBCONF, text=True,
                       capture_output=True)
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends"]
    done = subprocess.run(command + wanted, env=env, capture_output=True, text=True)
    if done.returncode != 0:  # a stale package list: update once and retry
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(command + missing, env=env, capture_output=True, text=True)
        if done.returncode == 0 and any(shutil.which(p) is None for p in OPTIONAL_PACKAGES):
            subprocess.run(command + OPTIONAL_PACKAGES, env=env, capture_output=True)
    if missing_packages(smtp_source):
        raise SystemExit(f"apt-get install failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    started = _system_dovecot_pid()
    if started and started != dovecot_before:
        say(f"stopping the system Dovecot the package started (pid {started})")
        stop_system_dovecot(started)


def _system_dovecot_pid():
    try:
        with open(SYSTEM_DOVECOT_PID) as f:
            pid = int(f.read().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def stop_system_dovecot(pid):
    if shutil.which("systemctl") and os.path.isdir("/run/systemd/system"):
        subprocess.run(["systemctl", "stop", "dovecot"], capture_output=True)
    if _system_dovecot_pid() == pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if _system_dovecot_pid() != pid:
                break
            time.sleep(0.05)


def versions():
    """One line per peer, for the report."""
    out = {}
    for name, argv in (("dovecot", ["dovecot", "--version"]), ("procmail", ["procmail", "-v"]),
                       ("maildrop", ["maildrop", "-v"]),
                       ("postfix (smtp-source)", ["dpkg-query", "-W", "-f", "${Version}",
                                                  "postfix"])):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            text = (done.stdout or done.stderr).strip().splitlines()
            out[name] = text[0] if text else "?"
        except OSError:
            out[name] = "not installed"
    return out


def unprivileged():
    """(uid, gid) of the account that owns Dovecot's mailboxes."""
    entry = pwd.getpwnam(UNPRIVILEGED)
    return entry.pw_uid, entry.pw_gid


def make_maildir(path, uid=None, gid=None):
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
    if uid is not None:
        for here in (path, *(os.path.join(path, s) for s in ("cur", "new", "tmp"))):
            os.chown(here, uid, gid)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, what, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"{what} did not start listening on port {port}") from None
            time.sleep(0.05)


# --- Dovecot ------------------------------------------------------------------

COMMON_CONF = """\
# Written by bench/peers.py; nothing here reads /etc/dovecot.
base_dir = {base_dir}
log_path = {log}
info_log_path = {log}
ssl = no
mail_location = maildir:~/Maildir
postmaster_address = postmaster@{domain}
"""

SERVER_CONF = """\
protocols = lmtp
listen = 127.0.0.1
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={homes}/%n
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"""


class Dovecot:
    """A private Dovecot: its master (auth for `dovecot-lda -d`, LMTP on a
    loopback port) and a master-less configuration for dovecot-lda run as
    the mailbox owner."""

    def __init__(self, root):
        self.root = os.path.join(root, "dovecot")
        self.uid, self.gid = unprivileged()
        self.homes = os.path.join(self.root, "homes")      # home of user u: homes/u
        os.makedirs(self.homes, exist_ok=True)
        os.chown(self.homes, self.uid, self.gid)
        self.port = free_port()
        self.conf = os.path.join(self.root, "dovecot.conf")
        self.log = os.path.join(self.root, "dovecot.log")
        with open(self.conf, "w") as f:
            f.write(COMMON_CONF.format(base_dir=os.path.join(self.root, "run"), log=self.log,
                                       domain=DOMAIN))
            f.write(SERVER_CONF.format(uid=self.uid, gid=self.gid, homes=self.homes,
                                       port=self.port))
        # dovecot-lda as the mailbox owner: no master, so no stats socket,
        # and a log file that owner can write.
        self.user_root = os.path.join(self.root, "user")
        self.user_home = os.path.join(self.user_root, "home")
        self.user_conf = os.path.join(self.user_root, "dovecot.conf")
        self.user_log = os.path.join(self.user_root, "dovecot.log")
        os.makedirs(self.user_home, exist_ok=True)
        with open(self.user_conf, "w") as f:
            f.write(COMMON_CONF.format(base_dir=os.path.join(self.user_root, "run"),
                                       log=self.user_log, domain=DOMAIN))
            f.write("stats_writer_socket_path =\n")
        open(self.user_log, "a").close()
        for path in (self.user_root, self.user_home, self.user_log):
            os.chown(path, self.uid, self.gid)
        make_maildir(os.path.join(self.user_home, "Maildir"), self.uid, self.gid)
        self.master = None

    def start(self):
        self.master = subprocess.Popen(["dovecot", "-F", "-c", self.conf],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.master, "dovecot (lmtp)")

    def stop(self):
        if self.master is not None and self.master.poll() is None:
            self.master.terminate()
            try:
                self.master.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.master.kill()
                self.master.wait()

    def maildir(self, user):
        return os.path.join(self.homes, user, "Maildir")

    def prepare_user(self, user):
        """Create a -d/LMTP user's home and Maildir, owned by the mail uid."""
        home = os.path.join(self.homes, user)
        os.makedirs(home, exist_ok=True)
        os.chown(home, self.uid, self.gid)
        make_maildir(self.maildir(user), self.uid, self.gid)

    def new_mailbox(self, user):
        """prepare_user, for bench/lmtp_load.py: the new Maildir."""
        self.prepare_user(user)
        return self.maildir(user)

    def lda_as_owner(self, sender):
        """dovecot-lda as Postfix's mailbox_command runs it: as the user."""
        env = {"HOME": self.user_home, "USER": UNPRIVILEGED, "PATH": "/usr/bin:/bin"}
        return Agent("dovecot-lda", [DOVECOT_LDA, "-c", self.user_conf, "-f", sender],
                     env, [os.path.join(self.user_home, "Maildir")], self.uid, self.gid)

    def lda_with_d(self, user, sender, name="dovecot-lda -d"):
        """dovecot-lda -d USER as root: a userdb lookup through our auth."""
        return Agent(name, [DOVECOT_LDA, "-c", self.conf, "-d", user, "-f", sender],
                     {"PATH": "/usr/bin:/bin"}, [self.maildir(user)])


# --- procmail and maildrop ------------------------------------------------------

class Procmail:
    """One rcfile for every user; HOME=... on the command line picks the user."""

    def __init__(self, root):
        self.root = os.path.join(root, "procmail")
        os.makedirs(self.root, exist_ok=True)
        self.rcfile = os.path.join(self.root, "procmailrc")
        with open(self.rcfile, "w") as f:
            f.write("DEFAULT=$HOME/Maildir/\n")  # trailing slash: Maildir format
        os.chmod(self.rcfile, 0o600)

    def maildir(self, user):
        return os.path.join(self.root, user, "Maildir")

    def agent(self, user, sender, name="procmail"):
        make_maildir(self.maildir(user))
        # procmail sets HOME from the passwd entry; an assignment on the
        # command line comes after that and wins.
        home = os.path.join(self.root, user)
        return Agent(name, ["procmail", "-f", sender, f"HOME={home}", self.rcfile],
                     {"PATH": "/usr/bin:/bin"}, [self.maildir(user)])


class Maildrop:
    """One mailfilter; its first argument ($1) names the user's directory.
    maildrop takes HOME from the passwd entry, so the path is absolute."""

    def __init__(self, root):
        self.root = os.path.join(root, "maildrop")
        os.makedirs(self.root, exist_ok=True)
        self.filter = os.path.join(self.root, "mailfilter")
        with open(self.filter, "w") as f:
            f.write(f'to "{self.root}/$1/Maildir"\n')
        os.chmod(self.filter, 0o600)  # maildrop refuses a filter others can write

    def maildir(self, user):
        return os.path.join(self.root, user, "Maildir")

    def agent(self, user, sender, name="maildrop"):
        make_maildir(self.maildir(user))
        return Agent(name, ["maildrop", "-f", sender, self.filter, user],
                     {"PATH": "/usr/bin:/bin"}, [self.maildir(user)])

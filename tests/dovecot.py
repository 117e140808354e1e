"""A private Dovecot that reads the Maildirs lda writes, as IMAP users' do.

Each instance has its own dovecot.conf, base_dir and log in a directory of
its own (nothing under /etc/dovecot is read: `-c` everywhere), no listening
protocol (doveadm and dovecot-lda talk to its auth through base_dir), the
quota plugin with the Maildir++ backend, and a passwd-file userdb whose
users all belong to one throwaway unix user, the mail owner: Dovecot
refuses uid 0 for mail, so lda runs as that user too (PrivateDovecot.lda).

Needs root (useradd, Dovecot's master) and Debian's dovecot-core; the
fixture skips without either.  `.ci/run` installs dovecot-core.
"""

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from postfix import LDA, SBIN_PATH, UnixUser

DOVECOT = shutil.which("dovecot", path=SBIN_PATH)
DOVEADM = shutil.which("doveadm", path=SBIN_PATH)
DOVECOT_LDA = next((p for p in ("/usr/lib/dovecot/dovecot-lda", "/usr/libexec/dovecot/dovecot-lda")
                    if os.access(p, os.X_OK)), None)

CONF = """\
# Written by tests/dovecot.py; nothing here reads /etc/dovecot.
base_dir = {root}/run
log_path = {root}/dovecot.log
ssl = no
protocols =
mail_location = maildir:~/Maildir
postmaster_address = postmaster@example.org
default_internal_user = {owner}
default_login_user = {owner}
lda_mailbox_autocreate = yes
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = passwd-file
  args = {root}/users
}}
mail_plugins = quota
plugin {{
  quota = maildir:User quota
{rules}
}}
{extra}
"""


# Dovecot's lmtp on a unix socket, run/lmtp, that any user may connect to;
# RCPT TO:<NAME@example.org> is Dovecot's user NAME.
LMTP_CONF = """\
protocols = lmtp
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
auth_username_format = %Ln
"""
# A sendmail_path that keeps each message Dovecot sends (a rejection, a
# vacation reply) in OUTBOX as NAME.eml, with its arguments in NAME.args.
CAPTURE_SENDMAIL = """\
#!/bin/sh
f="{outbox}/$$.$(date +%s%N)"
cat > "$f.eml" && echo "$*" > "$f.args"
"""


def skip_reason():
    if os.geteuid() != 0:
        return "a private Dovecot needs root (useradd, Dovecot's master)"
    if not (DOVECOT and DOVEADM and DOVECOT_LDA):
        return "Dovecot is not installed (apt-get install dovecot-core)"
    return None


class PrivateDovecot:
    """One Dovecot master, its users and their Maildirs under root."""

    def __init__(self, root, owner, quota_rule="*:storage=200K", grace="0", extra="",
                 more_rules=()):
        self.root = Path(root)
        self.owner = owner
        self.conf = self.root / "dovecot.conf"
        self.log = self.root / "dovecot.log"
        self.homes = self.root / "homes"
        self.homes.mkdir(mode=0o755, exist_ok=True)
        (self.root / "users").write_text("")
        self.master = None
        self.configure(quota_rule, grace, extra, more_rules)

    def configure(self, quota_rule="*:storage=200K", grace="0", extra="", more_rules=()):
        """(Re)write dovecot.conf: quota_rule None for no limit in Dovecot's
        configuration (then Dovecot takes the maildirsize quota line);
        grace as Dovecot's quota_grace ("0", "10%%", "1M"); more_rules as
        quota_rule2, quota_rule3... ("Trash:ignore")."""
        rules = [f"  quota_grace = {grace}"]
        if quota_rule is not None:
            rules.append(f"  quota_rule = {quota_rule}")
        rules += [f"  quota_rule{n} = {rule}" for n, rule in enumerate(more_rules, 2)]
        self.conf.write_text(CONF.format(root=self.root, owner=self.owner.name,
                                         rules="\n".join(rules), extra=extra))
        if self.master is not None:
            self.doveadm("reload")

    def start(self):
        # The master forks into the background: no pipes for it to hold open.
        subprocess.run([DOVECOT, "-c", str(self.conf)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.master = True

    def stop(self):
        if self.master is not None:
            subprocess.run([DOVEADM, "-c", str(self.conf), "stop"], capture_output=True)
            self.master = None

    # --- users and their Maildirs ---

    def add_user(self, name, maildir=None, fields=()):
        """A Dovecot user owned by the mail owner, with home homes/NAME and
        ~/Maildir there, or Maildir `maildir` (lda's managed mailbox path,
        say) when given, and userdb `fields` ("userdb_quota_rule=...").
        Returns the Maildir's path."""
        home = self.homes / name
        home.mkdir(mode=0o700, exist_ok=True)
        os.chown(home, self.owner.uid, self.owner.gid)
        extra = " ".join(([f"userdb_mail=maildir:{maildir}"] if maildir else []) + list(fields))
        with open(self.root / "users", "a") as f:
            f.write(f"{name}::{self.owner.uid}:{self.owner.gid}::{home}::{extra}\n")
        path = Path(maildir) if maildir else home / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self.owner.chown_tree(path)
        return path

    def home(self, name):
        return self.homes / name

    def capture_sendmail(self, extra=""):
        """Point sendmail_path at CAPTURE_SENDMAIL (with `extra` settings);
        returns the outbox directory its messages go to."""
        outbox = self.root / "outbox"
        outbox.mkdir()
        self.owner.chown_tree(outbox)
        sendmail = self.root / "sendmail"
        sendmail.write_text(CAPTURE_SENDMAIL.format(outbox=outbox))
        sendmail.chmod(0o755)
        self.configure(extra=f"sendmail_path = {sendmail}\n{extra}")
        return outbox

    # --- Dovecot's tools ---

    def doveadm(self, *args, check=True):
        done = subprocess.run([DOVEADM, "-c", str(self.conf), *args], capture_output=True,
                              text=True, env={"PATH": SBIN_PATH}, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"doveadm {' '.join(args)} exited {done.returncode}: "
                                 f"{done.stderr.strip()} {self.log_tail()}")
        return done

    def quota(self, name):
        """`doveadm quota get`: {"STORAGE": (used KiB, limit KiB or None),
        "MESSAGE": (used, limit or None)}."""
        out = self.doveadm("-f", "tab", "quota", "get", "-u", name).stdout
        figures = {}
        for line in out.splitlines()[1:]:
            _, kind, value, limit, _ = line.split("\t")
            figures[kind] = (int(value), None if limit == "-" else int(limit))
        return figures

    def recalc(self, name):
        self.doveadm("quota", "recalc", "-u", name)

    def flags(self, name, mailbox="INBOX"):
        """The flags of each message in mailbox, in UID order, as sets."""
        out = self.doveadm("-f", "tab", "fetch", "-u", name, "flags",
                           "mailbox", mailbox, "all").stdout
        return [set(line.split()) for line in out.splitlines()[1:]]

    def fetch(self, name, field, mailbox="INBOX"):
        """One field of the message in mailbox (the caller makes sure it
        holds one), as doveadm fetch gives it: bytes, since a header may
        hold NUL or 8-bit bytes; None when the mailbox is empty."""
        done = subprocess.run([DOVEADM, "-c", str(self.conf), "-f", "pager", "fetch", "-u",
                               name, field, "mailbox", mailbox, "all"], capture_output=True,
                              env={"PATH": SBIN_PATH}, timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"doveadm fetch {field} exited {done.returncode}: "
                                 f"{done.stderr.decode(errors='replace')}")
        out = done.stdout
        if not out:
            return None
        # The pager format: "field:\nVALUE" for a multi-line field (hdr,
        # body), "field: VALUE\n" for the others.
        if out.startswith(field.encode() + b":\n"):
            return out[len(field) + 2:]
        assert out.startswith(field.encode() + b": ") and out.endswith(b"\n"), out[:200]
        return out[len(field) + 2:-1]

    def expunge(self, name, *search):
        self.doveadm("expunge", "-u", name, *search)

    def deliver(self, name, message, sender="sender@example.org", *options):
        """dovecot-lda -d NAME -f SENDER (None: no -f), as root (it becomes
        the mail owner)."""
        envelope = ("-f", sender) if sender is not None else ()
        return subprocess.run([DOVECOT_LDA, "-c", str(self.conf), "-d", name, *envelope,
                               *options], input=message, capture_output=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin"})

    def lda(self, *args, home=None, input=b"", env=None, groups=()):
        """The installed lda as the mail owner, HOME the Dovecot user's home
        (per-user mode: ~/Maildir is that user's Maildir); groups: its
        supplementary group ids (none by default)."""
        environ = {"HOME": str(home or self.owner.home), "PATH": "/usr/bin:/bin", **(env or {})}
        return subprocess.run([str(LDA), *args], input=input, capture_output=True, timeout=60,
                              user=self.owner.uid, group=self.owner.gid,
                              extra_groups=list(groups), cwd="/", env=environ)

    def log_tail(self, lines=10):
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


@contextlib.contextmanager
def private_dovecot(keep_log_in, **settings):
    """A started PrivateDovecot (settings as configure takes them) whose
    mail owner can run lda; stopped, its owner deleted, on leaving (its log
    is copied into keep_log_in)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="lda-dovecot-"))
    root.chmod(0o755)
    owner = UnixUser.create("ldadove", root)
    try:
        owner.allow_lda()
        server = PrivateDovecot(root, owner, **settings)
        server.start()
        try:
            yield server
        finally:
            server.stop()
            if server.log.exists():
                shutil.copy(server.log, Path(keep_log_in) / "dovecot.log")
    finally:
        owner.delete()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def dovecot(tmp_path):
    """A started PrivateDovecot for one test (private_dovecot)."""
    with private_dovecot(tmp_path) as server:
        yield server

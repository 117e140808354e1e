"""Pigeonhole's sieve-test and `lda sieve test --json` on one case, each
reduced to one comparable shape (Result): the differential test of issue 20.

sieve-test runs privately: its own dovecot.conf (`-c`, nothing under
/etc/dovecot is read), base_dir, HOME and Maildir in a fresh directory per
case, so no duplicate or vacation state carries over.  As root it drops to
nobody (Dovecot refuses mail access as uid 0), which owns that directory.

A case is run twice when its plan holds a vacation: first without `-e`
(sieve-test prints the actions it would take, "Performed actions" and
"Implicit keep"), then with `-e` into a Maildir whose folders exist,
because only execution applies RFC 5230 section 4.5's checks (is the user
among the recipients, a list message, ...) and logs "sent vacation
response" or why not ("discarding vacation response ...", "not sending
vacation response to system address ...").

Needs Debian's dovecot-sieve (`.ci/run` installs it); skip_reason() says
why not.
"""

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

SIEVE_TEST = shutil.which("sieve-test", path=os.environ.get("PATH", "") + ":/usr/bin")

CONF = """\
# Written by tests/pigeonhole.py; nothing here reads /etc/dovecot.
base_dir = {root}/run
log_path = /dev/stderr
mail_location = maildir:{root}/Maildir
postmaster_address = postmaster@example.org
{owner}
plugin {{
{settings}
}}
"""
RUNTIME_FAILURE = "final result: failed; resolved with successful implicit keep"
COMPILE_FAILURE = "failed to compile sieve script"
TIMEOUT = 30


class PigeonholeFailed(Exception):
    """sieve-test did not run the case (neither a result nor a compile error)."""


class Result(NamedTuple):
    """What a Sieve run decided, as both implementations can report it.

    error: None, "compile" or "runtime" (both then keep implicitly).
    stores: sorted (folder, sorted lower-case flags); "INBOX" in any case
      is "INBOX", and a keep is a store into it.
    other: anything a parser did not know, so that it shows in a diff.
    """

    error: object = None
    stores: tuple = ()
    implicit_keep: bool = False
    redirects: tuple = ()
    vacation: bool = False
    notify: tuple = ()
    reject: bool = False
    discard: bool = False
    other: tuple = ()

    def show(self):
        """Only the fields that differ from an empty Result: for ids and diffs."""
        return {k: v for k, v in self._asdict().items() if v not in (None, (), False)}


def skip_reason():
    if SIEVE_TEST is None:
        return "Pigeonhole's sieve-test is not installed (apt-get install dovecot-sieve)"
    return None


def store(folder, flags):
    folder = "INBOX" if folder.upper() == "INBOX" else folder
    return (folder, tuple(sorted({f.lower() for f in flags})))


def normalize(error=None, stores=(), redirects=(), notify=(), other=(), **flags):
    return Result(error, tuple(sorted(set(stores))), redirects=tuple(sorted(redirects)),
                  notify=tuple(sorted(notify)), other=tuple(other), **flags)


# --- Pigeonhole ------------------------------------------------------------

class SieveTest:
    """One private sieve-test set-up in `root`, a fresh directory that
    nobody can enter when the tests run as root (pytest's tmp_path cannot
    be: /tmp/pytest-of-root is 0700)."""

    def __init__(self, root, settings=None):
        self.root = Path(root)
        self.uid = self.gid = None
        owner = ""
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self.uid, self.gid = nobody.pw_uid, nobody.pw_gid
            owner = f"mail_uid = {self.uid}\nmail_gid = {self.gid}"
        lines = "\n".join(f"  {k} = {v}" for k, v in (settings or {}).items())
        self.conf = self.root / "dovecot.conf"
        self.conf.write_text(CONF.format(root=self.root, owner=owner, settings=lines))
        for path in (self.root / "run", self.root / "sieve", self.root):
            path.mkdir(exist_ok=True)
            self._own(path)

    def _own(self, path):
        if self.uid is not None:
            os.chown(path, self.uid, self.gid)

    def copy_in(self, source, under=""):
        (self.root / under).mkdir(exist_ok=True)
        self._own(self.root / under)
        target = self.root / under / Path(source).name
        shutil.copyfile(source, target)
        self._own(target)
        return target

    def run(self, script, message, sender, recipient, original=None, extensions="",
            execute=False):
        args = [SIEVE_TEST, "-c", str(self.conf), "-C", "-f", sender, "-r", recipient,
                "-a", original or recipient]
        if extensions:
            args += ["-x", extensions]
        if execute:
            args += ["-e", "-l", f"maildir:{self.root}/Maildir"]
        env = dict(os.environ, HOME=str(self.root))
        return subprocess.run(args + [str(script), str(message)], capture_output=True,
                              env=env, timeout=TIMEOUT)

    def make_folders(self, folders):
        """The Maildir++ folders a plan stores into, so that `-e` can store
        (sieve-test creates none, whatever lda_mailbox_autocreate says)."""
        from lda.store.folders import maildir_folder

        paths = [self.root / "Maildir"]
        paths += [self.root / "Maildir" / maildir_folder(f) for f in folders if f != "INBOX"]
        for path in paths:
            for sub in ("", "cur", "new", "tmp"):
                (path / sub).mkdir(parents=True, exist_ok=True)
                self._own(path / sub)
        self._own(self.root / "Maildir")


def pigeonhole(script, message, sender, recipient, original=None, extensions="",
               settings=None, includes=()):
    """Run sieve-test on the case in a fresh directory; its Result.
    `includes` go into the user's script storage, for include :personal."""
    with tempfile.TemporaryDirectory(prefix="pigeonhole-") as root:
        # The user's script storage, where include :personal looks.
        settings = dict(settings or {}, sieve=f"file:{root}/sieve")
        return run_case(SieveTest(root, settings), script, message, sender, recipient,
                        original, extensions, includes)


def run_case(tester, script, message, sender, recipient, original, extensions, includes):
    for path in includes:
        tester.copy_in(path, "sieve")
    script, message = tester.copy_in(script), tester.copy_in(message)
    done = tester.run(script, message, sender, recipient, original, extensions)
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0:
        if COMPILE_FAILURE in stderr and ": error: " in stderr:
            return Result(error="compile")
        if RUNTIME_FAILURE in stderr:
            return normalize("runtime", [store("INBOX", ())], implicit_keep=True)
        raise PigeonholeFailed(f"sieve-test exit {done.returncode}: {stderr.strip()}")
    stdout = done.stdout.decode("utf-8", "replace")
    if "Performed actions:" not in stdout:
        raise PigeonholeFailed(f"sieve-test printed no actions: {stdout} {stderr}")
    result = parse_plan(stdout)
    if result.vacation:
        tester.make_folders(folder for folder, _ in result.stores)
        executed = tester.run(script, message, sender, recipient, original, extensions,
                              execute=True)
        log = executed.stderr.decode("utf-8", "replace")
        if "vacation action: " not in log:
            raise PigeonholeFailed(f"sieve-test -e did not decide the vacation: {log.strip()}")
        result = result._replace(vacation="vacation action: sent vacation response" in log)
    return result


def plan_entries(text):
    """{"performed"|"implicit": [(action line, [detail lines])]} from
    sieve-test's listing; a vacation's or notification's message text
    (START MESSAGE .. END MESSAGE) is skipped."""
    sections = {"performed": [], "implicit": []}
    section, entry, in_message = None, None, False
    for line in text.splitlines():
        if in_message:
            in_message = not line.startswith("END MESSAGE")
        elif line.startswith("START MESSAGE"):
            in_message = True
        elif line in ("Performed actions:", "Implicit keep:"):
            section = "performed" if line.startswith("Performed") else "implicit"
        elif line.startswith(" * ") and section:
            entry = (line[3:].strip(), [])
            sections[section].append(entry)
        elif line.strip().startswith(("+", "=>")) and entry:
            entry[1].append(line.strip().lstrip("+=> ").strip())
    return sections


def parse_plan(text):
    sections = plan_entries(text)
    fields = {"stores": [], "redirects": [], "notify": [], "other": []}
    for action, details in sections["performed"] + sections["implicit"]:
        if action.startswith("store message in folder:"):
            flags = [f for d in details if d.startswith("add IMAP flags:")
                     for f in d.split(":", 1)[1].split()]
            fields["stores"].append(store(action.split(":", 1)[1].strip(), flags))
        elif action.startswith("redirect message to: "):
            fields["redirects"].append(action.split(": ", 1)[1].strip("<>"))
        elif action == "discard":
            fields["discard"] = True
        elif action == "send vacation message:":
            fields["vacation"] = True
        elif action.startswith("reject message"):
            fields["reject"] = True
        elif action.startswith("track duplicate"):
            pass  # duplicate (RFC 7352) records state; lda keeps it out of the actions
        elif action.startswith("send notification with method"):
            fields["notify"] += [d.split(":", 1)[1].strip().lower() for d in details
                                 if d.startswith("To:")]
        else:
            fields["other"].append(action)
    fields["implicit_keep"] = bool(sections["implicit"])
    return normalize(**fields)


# --- lda -------------------------------------------------------------------

def lda(run, script, message, sender, recipient, original=None, env=None):
    """Run `lda sieve test --json` through `run` (conftest's Lda.run); its Result."""
    args = ["sieve", "test", str(script), "--json", "-f", sender, "-r", recipient]
    if original:
        args += ["-a", original]
    done = run(*args, input=Path(message).read_bytes(), env=env)
    if done.returncode not in (0, 65) or not done.stdout.strip():
        raise AssertionError(f"lda sieve test exit {done.returncode}: {done.stderr.decode()}")
    return lda_result(json.loads(done.stdout))


def lda_result(record):
    if not record["compiled"]:
        return Result(error="compile")
    fields = {"stores": [], "redirects": [], "notify": [], "other": []}
    for action in record["actions"]:
        name = action["action"]
        if name in ("keep", "fileinto"):
            fields["stores"].append(store(action.get("folder", "INBOX"), action["flags"]))
        elif name == "redirect":
            fields["redirects"].append(action["address"])
        elif name == "discard":
            fields["discard"] = True
        elif name == "vacation":
            fields["vacation"] = True
        elif "reject" in name:
            fields["reject"] = True
        elif "notify" in name:
            fields["notify"] += notify_recipients(action)
        else:
            fields["other"].append(name)
    return normalize("runtime" if record["errors"] else None,
                     implicit_keep=record["implicit_keep"], **fields)


def notify_recipients(action):
    """The mailto: addresses of a notify action (RFC 5436), lower case:
    its "to" (one address or a list), else those of its method URI."""
    from urllib.parse import unquote

    if "to" in action:
        to = action["to"]
        return [a.lower() for a in ([to] if isinstance(to, str) else to)]
    method = next((v for k, v in action.items() if k in ("method", "uri", "url")), "")
    if isinstance(method, str) and method.lower().startswith("mailto:"):
        return [unquote(a).strip().lower() for a in
                method[len("mailto:"):].split("?", 1)[0].split(",") if a.strip()]
    return [str(method)]

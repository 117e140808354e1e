"""dovecot-lda's and procmail's options as lda reads them, so that a site
adopts lda by changing only the program path in its master.cf or main.cf
line (dovecot-lda(1), procmail(1)).

Each option is given the meaning the other program gives it, as far as
lda has one: -m names the default folder, -o sets the dovecot settings lda
has an equivalent for, -c names a configuration lda reads only if it is an
lda.toml, but for -m's folder (FolderSettings).  What has no equivalent is
accepted with one warning, never refused: the line works, and the log says
what was left out.
"""

import os
import stat

from ..errors import ConfigError, TemporaryFailure
from ..store.folders import UnsafeFolder, check_folder, maildir_folder
from .envelope import folder_for_extension

# dovecot setting -> the lda.toml key it sets (values converted by
# _setting_value); lda_mailbox_autocreate is the -m folder's own.
SETTINGS = {
    "quota_full_tempfail": "quota_full",
    "recipient_delimiter": "recipient_delimiter",
    "hostname": "hostname",
    "postmaster_address": "postmaster",
    "sendmail_path": "sendmail",
    "mail_location": "maildir",
    "lda_mailbox_autosubscribe": "subscribe_new_folders",
    # The quota plugin's, which -o names with its plugin/ prefix.
    "plugin/quota_exceeded_message": "quota_exceeded_message",
}
BOOLEANS = ("quota_full_tempfail", "lda_mailbox_autosubscribe")
YES = ("yes", "y", "true", "1")
NO = ("no", "n", "false", "0")
AUTOCREATE, AUTOSUBSCRIBE = "lda_mailbox_autocreate", "lda_mailbox_autosubscribe"
# The configuration dovecot-lda reads without -c, and the doveconf it
# reads it with (Debian's and Red Hat's path, then a source build's).
DOVECOT_CONF = "/etc/dovecot/dovecot.conf"
DOVECONF = ("/usr/bin/doveconf", "/usr/local/bin/doveconf")


def dovecot_settings(pairs):
    """(lda.toml overrides, lda_mailbox_autocreate (None: not given),
    lda_original_recipient_header, warnings) for the
    values of dovecot-lda's -o options ("key=value").  A value lda cannot
    take is the configuration's mistake (ConfigError: Postfix defers, the
    message waits for the fix); a key lda has no equivalent for is one
    warning, so the rest of the line still works."""
    overrides, autocreate, header, warnings = {}, None, None, []
    for pair in pairs:
        key, equals, value = pair.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ConfigError(f"-o {pair[:80]!r}: not a setting=value pair")
        if not value and (key in SETTINGS or key == "lda_original_recipient_header") \
                and key not in BOOLEANS:
            # Dovecot's setting left empty, its default for the header and
            # mail_location: lda's own default, as if -o were not there.
            continue
        if key == "lda_mailbox_autocreate":
            autocreate = _yes(key, value)
        elif key == "lda_original_recipient_header":
            header = _field_name(value)
        elif key in SETTINGS:
            if not value.isprintable():  # a host name or From: with a line break
                raise ConfigError(f"-o {key}: control character in {value[:80]!r}")
            overrides[SETTINGS[key]] = _setting_value(key, value.strip())
        else:
            warnings.append(f"-o {key[:80]}: not a setting lda has; ignored")
    return overrides, autocreate, header, warnings


def _field_name(value):
    """A header field name for lda_original_recipient_header (RFC 5322
    section 2.2: printable ASCII but ":" and space)."""
    name = value.strip()
    if not name or not all("!" <= c <= "~" and c != ":" for c in name):
        raise ConfigError(f"-o lda_original_recipient_header={value[:80]!r}: "
                          "not a header field name")
    return name


def _setting_value(key, value):
    """The lda.toml value for a dovecot setting's; lda.config checks it
    further (a recipient_delimiter with a line break, say) as it checks
    lda.toml's own."""
    if key == "quota_full_tempfail":
        return "tempfail" if _yes(key, value) else "reject"
    if key == "lda_mailbox_autosubscribe":
        return _yes(key, value)
    if key == "sendmail_path":
        # Dovecot adds sendmail's arguments itself; lda's list holds them.
        return [value, "-i"]
    if key == "mail_location":
        kind, _, path = value.partition(":")
        # Only a plain maildir:PATH: Dovecot's %u variables and :INDEX=
        # options have no lda equivalent, and a guess could misplace mail.
        if kind != "maildir" or not path or "%" in path or ":" in path:
            raise ConfigError(f"-o mail_location={value[:80]!r}: lda reads only "
                              "maildir:PATH without variables or options")
        return path
    return value


def _yes(key, value):
    """A dovecot boolean: yes/no, as its settings parser also takes y/n."""
    word = value.strip().lower()
    if word not in YES + NO:
        raise ConfigError(f"-o {key}={value[:40]!r}: not yes or no")
    return word in YES


def default_folder(name):
    """(the Maildir++ folder for dovecot-lda's -m, None) or (None, why not).

    "INBOX/Lists", "INBOX.Lists" and "Lists" all name .Lists: "/" is the
    hierarchy separator of a Dovecot namespace that sets one, "." is
    Maildir++'s.  An empty name (-m "${extension}" without an extension)
    is the INBOX, as dovecot-lda takes it; a name that could leave the
    Maildir is refused here, and the message goes to the INBOX."""
    if not name:
        return None, None
    if not name.isprintable():  # C1 controls and format characters too, as for -a
        return None, f"-m folder ignored, delivered to INBOX: control character in {name[:80]!r}"
    try:
        return maildir_folder(check_folder(name.replace("/", "."))), None
    except UnsafeFolder as e:
        return None, f"-m folder ignored, delivered to INBOX: {e}"


def folder_settings(folder, named, autocreate, subscribe_given, notes):
    """What DefaultFolder takes for -m's folder: -o's lda_mailbox_autocreate
    (False when not given) if nothing is left to read, else FolderSettings
    for the dovecot.conf dovecot-lda reads: named, -c's when it is not an
    lda.toml, or DOVECOT_CONF.  A -c file that cannot be read is one
    warning, and the line works as it did without it."""
    given = bool(autocreate)
    settled = autocreate is not None and subscribe_given
    if named is not None:
        if not folder or settled:
            notes.append(f"-c {named[:200]!r}: not an lda.toml (dovecot-lda's "
                         "configuration?); ignored")
            return given
        problem = _unreadable(named)
        if problem:
            notes.append(f"-c {named[:200]!r}: cannot read it ({problem}); -m's folder "
                         "is made only with -o lda_mailbox_autocreate=yes")
            return given
        notes.append(f"-c {named[:200]!r}: not an lda.toml (dovecot-lda's configuration?); "
                     "lda reads only its lda_mailbox_autocreate and "
                     "lda_mailbox_autosubscribe, for -m's folder")
    if not folder or settled:
        return given
    return FolderSettings(autocreate, subscribe_given, named or DOVECOT_CONF)


def _unreadable(path):
    """Why path is no file doveconf can read, or None: a FIFO (which
    doveconf would wait on for a writer) or a directory is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block
    except OSError as e:
        return e.strerror
    except ValueError:  # a NUL, which only an in-process caller can pass
        return "not a path"
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    return None if regular else "not a regular file"


class FolderSettings:
    """lda_mailbox_autocreate and lda_mailbox_autosubscribe for -m's folder
    as the site's dovecot-lda took them: from -o on the line, else from the
    dovecot.conf it reads, as its `protocol lda` filter sees it, read by
    Dovecot's own doveconf (read_dovecot_conf).

    The file counts where it sets a value other than Dovecot's default;
    where it does not, lda's own setting decides: lda.toml's
    subscribe_new_folders (true unless set: lda subscribes the folders it
    makes, so that a client that lists subscribed folders shows the mail;
    tests/test_subscriptions.py), and for lda_mailbox_autocreate, which
    lda.toml has no key for, Dovecot's default, no.  So -o wins, then
    dovecot.conf, then lda.toml; doveconf cannot tell a `= no` written in
    the file from one left out, and lda.toml's setting would be lost to
    every dovecot.conf that never mentions it.

    Read once, and only for a folder that is to be made (DefaultFolder):
    they decide nothing else, and a delivery into an existing folder does
    not run doveconf."""

    def __init__(self, autocreate=None, subscribe_given=False, conf=DOVECOT_CONF,
                 doveconf=DOVECONF):
        self.autocreate, self.subscribe_given = autocreate, subscribe_given
        self.conf, self.doveconf = conf, doveconf
        self.read = None

    def for_new_folder(self):
        """(autocreate, subscribe): subscribe None leaves lda.toml's (or -o's)."""
        if self.read is None:
            self.read = read_dovecot_conf(self.conf, self.doveconf)
        autocreate = self.autocreate
        if autocreate is None:
            autocreate = self.read.get(AUTOCREATE, False)
        return autocreate, None if self.subscribe_given else self.read.get(AUTOSUBSCRIBE)


def read_dovecot_conf(path, doveconf=DOVECONF):
    """{setting: bool} for lda_mailbox_autocreate and _autosubscribe where
    the dovecot.conf at path sets them other than Dovecot's default, read
    by doveconf with the filter and module dovecot-lda runs it with
    (service=lda, lda).  {} without doveconf or the file: lda then works as
    if Dovecot were not there.  A file doveconf refuses stops dovecot-lda
    too (it exits 75): ConfigError, 78 with 4.3.5, and Postfix defers until
    it is fixed, as it did."""
    program = next((p for p in doveconf if os.access(p, os.X_OK)), None)
    if program is None or not os.path.exists(path):
        return {}
    status, out, err = _run([program, "-n", "-c", path, "-f", "service=lda", "-m", "lda",
                             AUTOCREATE, AUTOSUBSCRIBE])
    if status < 0:  # killed: nothing said about the file
        raise TemporaryFailure(f"{program} -c {path[:200]}: killed by signal {-status}")
    if status != 0:
        raise ConfigError(f"{path[:200]}: {_fatal(err)} (doveconf); lda reads "
                          "lda_mailbox_autocreate there for -m's folder, as dovecot-lda does")
    settings = {}
    for line in out.decode(errors="replace").splitlines():
        key, equals, value = line.partition(" = ")
        if equals and key in (AUTOCREATE, AUTOSUBSCRIBE):
            settings[key] = value.strip() == "yes"
    return settings


def _fatal(err):
    """doveconf's reason, its last line without "doveconf: Fatal: "."""
    lines = err.decode(errors="replace").strip().splitlines() or ["no reason given"]
    reason = lines[-1].removeprefix("doveconf: ").removeprefix("Fatal: ")
    return "".join(c if c.isprintable() else "?" for c in reason[:300])


def _run(argv):
    """(exit status, negative for a signal; stdout; stderr) of argv with
    standard input from /dev/null, without subprocess, whose import takes
    longer than doveconf's whole run."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        try:
            pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)])
        finally:
            os.close(out_w)
            os.close(err_w)
        # stderr first: all doveconf writes to stdout is two short lines,
        # which the pipe holds until they are read.
        err, out = _read_all(err_r), _read_all(out_r)
    except OSError as e:
        raise TemporaryFailure(f"{argv[0]}: cannot run it: {e.strerror}") from None
    finally:
        os.close(out_r)
        os.close(err_r)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), out, err


def _read_all(fd):
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def extension_folder_problem(extension):
    """Why procmail's -a (Postfix's $EXTENSION) cannot select a folder, or
    None; the message then goes to the INBOX."""
    if extension and folder_for_extension(extension) is None:
        return f"address extension ignored, delivered to INBOX: {extension[:80]!r}"
    return None


class DefaultFolder:
    """A resolver whose mailbox targets go to -m's folder rather than the
    INBOX (or an address extension's folder), as dovecot-lda's -m; Sieve's
    keep then stores there too (filtering takes target.folder).  A folder
    that does not exist is made only with lda_mailbox_autocreate=yes;
    without it the message goes to the INBOX (maildir.open_mailbox).

    create: -o's lda_mailbox_autocreate, or the FolderSettings to ask
    (folder_settings)."""

    def __init__(self, resolver, folder, create):
        self.resolver = resolver
        self.folder = folder
        self.create = create

    def resolve(self, recipient):
        """The resolver's plan, every mailbox target sent to the folder;
        forwards (no mailbox) are left as they are."""
        plan = self.resolver.resolve(recipient)
        for target in plan.targets:
            if target.local:
                target.folder, target.create_folder = self.folder, self._create(target)
        return plan

    def _create(self, target):
        """Whether the delivery may make the folder.  One with its new/
        takes the message whatever the settings say (maildir.open_mailbox),
        so FolderSettings reads nothing for it."""
        if not isinstance(self.create, FolderSettings):
            return self.create
        if os.path.isdir(os.path.join(target.maildir_path, self.folder, "new")):
            return False
        create, subscribe = self.create.for_new_folder()
        if subscribe is not None:
            # As -o lda_mailbox_autosubscribe sets it: for a Sieve script's
            # fileinto :create in this delivery too, as in Dovecot.
            self.resolver.config.subscribe_new_folders = subscribe
        return create

    def check_current(self, plan):
        """As the resolver checks it: -m changes no mailbox."""
        return self.resolver.check_current(plan)

    def state(self):
        """As the resolver's: -m is the same for every plan of this run."""
        return self.resolver.state()

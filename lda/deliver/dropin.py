"""dovecot-lda's and procmail's options as lda reads them, so that a site
adopts lda by changing only the program path in its master.cf or main.cf
line (dovecot-lda(1), procmail(1)).

Each option is given the meaning the other program gives it, as far as
lda has one: -m names the default folder, -o sets the dovecot settings lda
has an equivalent for, -c names a configuration lda cannot read unless it
is an lda.toml.  What has no equivalent is accepted with one warning, never
refused: the line works, and the log says what was left out.
"""

from ..errors import ConfigError
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


def dovecot_settings(pairs):
    """(lda.toml overrides, lda_mailbox_autocreate,
    lda_original_recipient_header, warnings) for the
    values of dovecot-lda's -o options ("key=value").  A value lda cannot
    take is the configuration's mistake (ConfigError: Postfix defers, the
    message waits for the fix); a key lda has no equivalent for is one
    warning, so the rest of the line still works."""
    overrides, autocreate, header, warnings = {}, False, None, []
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
    without it the message goes to the INBOX (maildir.open_mailbox)."""

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
                target.folder, target.create_folder = self.folder, self.create
        return plan

    def check_current(self, plan):
        """As the resolver checks it: -m changes no mailbox."""
        return self.resolver.check_current(plan)

    def state(self):
        """As the resolver's: -m is the same for every plan of this run."""
        return self.resolver.state()

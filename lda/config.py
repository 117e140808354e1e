"""lda.toml: where the configuration comes from, its keys and their defaults.

With no configuration file lda runs in per-user mode (the invoking user's
~/Maildir, like procmail's default), so `mailbox_command = lda deliver` and
`|lda deliver` in ~/.forward need nothing else.
"""

import errno
import os
import stat

from .errors import ConfigError, TemporaryFailure, is_file_problem

SYSTEM_CONFIG = "/etc/lda/lda.toml"
# A managed mailbox's Sieve script, in its root, so that a move carries it.
SCRIPT_IN_MAILBOX = "lda.sieve"
# ...and its stored scripts (lda sieve install), which include :personal reads.
SCRIPTS_IN_MAILBOX = "sieve"
MAX_EXPIRATION_HOURS = 100 * 366 * 24
# The bounds of the numbers lda takes (lda.toml(5) and lda(1) list them):
# far beyond any real site, and far below what overflows a C long, a
# timeout or SQLite's 64-bit integer.
MAX_SIZE = 1024**5  # 1024T: sizes and storage quotas
MAX_DURATION = MAX_EXPIRATION_HOURS * 3600  # 100 years: partial_expiration, --older-than
MAX_MESSAGES = 10**9  # a message-count quota
DAY = 86400
# key: (least, most, what a value means where it is special).
RANGES = {
    "expiration_hours": (1, MAX_EXPIRATION_HOURS, " (100 years)"),
    "cleanup_interval_seconds": (1, 366 * DAY, " (a year)"),
    "lock_timeout_seconds": (1, DAY, " (a day)"),
    "quota_messages": (0, MAX_MESSAGES, " (0: none)"),
    "lmtp_processes": (0, 1024, " (0: automatic)"),
    "lmtp_workers": (0, 1024, " (0: no threads)"),
    "lmtp_max_sessions": (1, 100_000, ""),
    "lmtp_max_recipients": (1, 100_000, ""),
    "lmtp_idle_timeout": (1, DAY, " (a day)"),
    "policy_idle_timeout": (1, DAY, " (a day)"),
    "socketmap_idle_timeout": (1, DAY, " (a day)"),
}
# Dovecot's default quota_exceeded_message, which a client of either reads.
QUOTA_EXCEEDED = "Quota exceeded (mailbox for user is full)"
# The longest quota_exceeded_message: one reply line holds it with the
# address and codes (RFC 5321 section 4.5.3.1.5: 512 octets).
MAX_REPLY_TEXT = 200

# key: (default, type check, description) -- the man page lists the same keys.
KEYS = {
    "mode": ("managed", str, "managed (virtual mailboxes) or user (~/Maildir)"),
    "state_dir": ("", str, "directory, locks and the default database"),
    "maildir": ("~/Maildir", str, "the Maildir of per-user mode"),
    "sieve_script": ("~/.lda.sieve", str, "per-user mode's Sieve script (managed: "
                     "lda.sieve in the mailbox)"),
    "aliases": ("", str, "aliases(5)-style file; empty for none"),
    "directory": ("", str, "the mailbox directory: empty for directory.sqlite in state_dir, "
                           "or a postgresql:// URL shared by several hosts (then "
                           "directory.sqlite is this host's mirror of it)"),
    "host_name": ("", str, "this host's name among the hosts of a shared directory "
                           "(empty: one host, every mailbox database is local)"),
    "move_command": (["ssh", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=15", "{host}",
                      "lda", "mailbox", "receive"], list,
                     "how `lda mailbox move` reaches `lda mailbox receive` on the target "
                     "host ({host}: its name)"),
    "expiration_hours": (168, int, "how long DeliveredTo remembers a message"),
    "cleanup_interval_seconds": (3600, int, "how often deliveries prune expired rows"),
    "quota_full": ("tempfail", str, "tempfail (exit 75) or reject (exit 77)"),
    "quota_storage": (0, (int, str), "default storage quota in bytes (0: none)"),
    "quota_messages": (0, int, "default message-count quota (0: none)"),
    "quota_rules": ("dovecot", str, "what a recount counts: dovecot (every message and "
                                    "folder) or courier (no .Trash, no T-flagged)"),
    "quota_ignore_folders": ([], list, "folders the quota does not count, as Dovecot's "
                                       "quota_rule NAME:ignore: [\"Trash\"]"),
    "quota_exceeded_message": (QUOTA_EXCEEDED, str, "what the sender reads when a mailbox "
                               "is full (the figures go to the log), as Dovecot's"),
    "quota_grace": (0, (int, str), "how far past its storage limit the last message may "
                                   "take a mailbox: a size or a percentage (\"10%\")"),
    "recipient_delimiter": ("+", str, "characters that separate a local part from its "
                                      "extension"),
    "subscribe_new_folders": (True, bool, "a folder a delivery makes (Sieve fileinto "
                                          ":create, -m with lda_mailbox_autocreate) is "
                                          "subscribed, as Dovecot's "
                                          "lda_mailbox_autosubscribe = yes"),
    "extension_folders": (True, bool, "an address extension (alice+lists@) files into "
                                      "its existing folder (.lists); false: the inbox"),
    "sendmail": (["/usr/sbin/sendmail", "-i"], list, "command that re-injects forwards"),
    "log": ("auto", str, "stderr, syslog, or auto: syslog for lda deliver unless its "
                         "stderr is a terminal, stderr for the other commands"),
    "syslog_facility": ("mail", str, "facility for log = syslog"),
    "hostname": ("", str, "host name in Maildir file names (default: uname)"),
    "lock_timeout_seconds": (60, int, "wait for a busy mailbox before a tempfail"),
    "allow_root_delivery": (False, bool, "as root, write into Maildirs of other users"),
    "verify_body": (False, bool, "a known Message-ID with another body is delivered"),
    "partial_expiration": ("5d", (int, str), "retry a partial delivery this long, then DSN"),
    "postmaster": ("", str, "From: of DSNs (default MAILER-DAEMON@hostname)"),
    "lmtp_listen": ("", str, "lda lmtp socket: unix:PATH or HOST:PORT"),
    "lmtp_processes": (0, int, "LMTP server processes (0: 4 per CPU up to 32, "
                               "or 1 per CPU with lmtp_workers)"),
    "lmtp_workers": (0, int, "delivery threads per LMTP server process (0: none, deliver "
                             "in the process's own thread)"),
    # True: a client such as fetchmail bounces a 4xx after DATA and deletes
    # the message (tests/test_fetchmail.py); a 4xx at RCPT it retries.
    "lmtp_rcpt_check_quota": (True, bool, "refuse an over-quota RCPT (452/552)"),
    "lmtp_max_message_size": ("50M", (int, str), "largest message LMTP accepts"),
    "syslog_socket": ("/dev/log", str, "the local syslog socket that log = syslog writes to"),
    "lmtp_max_sessions": (1000, int, "LMTP sessions at once, all processes together "
                                     "(beyond: 421 4.3.2)"),
    "lmtp_idle_timeout": (300, int, "seconds an LMTP client may stay silent (then 421 4.4.2)"),
    "lmtp_max_recipients": (1000, int, "RCPTs per LMTP transaction (beyond: 452 4.5.3)"),
    "lmtp_add_received_header": (False, bool, "LMTP adds a Received: header field"),
    "policy_listen": ("", str, "lda policy socket: unix:PATH or HOST:PORT"),
    "policy_idle_timeout": (300, int, "seconds an lda policy client has for each whole "
                                      "request, and to take each reply (then closed)"),
    "policy_reject_unknown": (False, bool, "lda policy refuses an unknown recipient "
                                           "(quota_status_nouser)"),
    "quota_status_success": ("DUNNO", str, "lda policy's action for a recipient that fits"),
    "quota_status_nouser": ("550 5.1.1 Unknown user", str, "lda policy's action for an "
                            "unknown recipient, with policy_reject_unknown"),
    "quota_status_overquota": ("", str, "lda policy's action for a full mailbox (empty: "
                               "552 5.2.2 with quota_full = reject, else 452 4.2.2, "
                               "then quota_exceeded_message)"),
    "quota_status_toolarge": ("552 5.2.3 Message is larger than the mailbox quota", str,
                              "lda policy's action for a message larger than a whole quota"),
    "socketmap_listen": ("", str, "lda socketmap socket: unix:PATH or HOST:PORT"),
    "socketmap_idle_timeout": (300, int, "seconds an lda socketmap client has for each "
                                         "whole request, and to take each reply"),
    "socketmap_transport": ("", str, "the transport map's value (empty: lmtp: and "
                                     "lmtp_listen)"),
    "quota_warnings": ([], list, 'thresholds that deliver a warning into the mailbox, '
                                 'e.g. ["storage 80%", "messages 95%"]'),
    "quota_warning_template": ("", str, "the warning's text (empty: the built-in one)"),
    "sieve_before": ([], (list, str), "Sieve scripts (or directories of *.sieve) run before "
                                      "each mailbox's own, as Pigeonhole's sieve_before"),
    "sieve_after": ([], (list, str), "Sieve scripts (or directories) run after it while "
                                     "the keep is in effect, as Pigeonhole's sieve_after"),
    "sieve_default": ("", str, "the Sieve script of a mailbox that has none of its own"),
    "sieve_dir": ("~/sieve", str, "per-user mode's directory of :personal include scripts, "
                                  "as Pigeonhole's (managed: sieve/ in the mailbox)"),
    "sieve_global_dir": ("", str, "directory of :global include scripts, as Pigeonhole's "
                                  "sieve_global; empty for none"),
    # RFC 5235 spamtest and virustest, configured as Pigeonhole's settings of
    # the same names (lda/sieve/extensions/spamtest.py reads them).
    **{f"sieve_{kind}_{key}": (default, kind_type, f"{kind}: {text}")
       for kind in ("spamtest", "virustest")
       for key, (default, kind_type, text) in {
           "status_type": ("score", str, "what the status header holds: score, strlen "
                                         "(\"*****\") or text"),
           "status_header": ("", str, 'the header with the scanner\'s verdict: "NAME" or '
                                      '"NAME: REGEX" capturing it (empty: not configured)'),
           "max_header": ("", str, 'the header with the highest score: "NAME: REGEX"'),
           "max_value": (0, (int, float), "the highest score (score and strlen)"),
           "text_values": ([], list, 'for status_type text: which text is which value, '
                                     'as ["1 No", "10 Yes"]'),
       }.items()},
    "sieve_extensions_extra": ([], list, "Sieve extensions that are off by default and that "
                                         'scripts may then require: ["editheader"]'),
    "sieve_editheader_max_header_size": (2048, (int, str), "largest value addheader adds "
                                                           "(at least 1K), as Pigeonhole's"),
    "sieve_editheader_protected": ([], list, "header fields no script may add or delete, "
                                             "beyond Received, Auto-Submitted, Return-Path "
                                             "and Delivered-To"),
}
CHOICES = {"mode": ("managed", "user"), "quota_full": ("tempfail", "reject"),
           "quota_rules": ("dovecot", "courier"),
           "log": ("auto", "stderr", "syslog"),
           "syslog_facility": ("mail", "user", "daemon", *(f"local{i}" for i in range(8))),
           "sieve_spamtest_status_type": ("score", "strlen", "text"),
           "sieve_virustest_status_type": ("score", "strlen", "text")}
# The highest value of each test's text_values (RFC 5235 sections 3.1, 3.3).
SCANNER_TOP = {"spamtest": 10, "virustest": 5}
SIZE_SUFFIXES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class Config:
    """Validated settings; attribute names are the lda.toml keys."""

    def __init__(self, values=None, path=None, environ=os.environ):
        self.path = path
        self.home = environ.get("HOME") or _passwd_home()
        for key, (default, _, _) in KEYS.items():
            setattr(self, key, default)
        for key, value in (values or {}).items():
            self._set(key, value)
        self.quota_storage = self._in_file(parse_size, "quota_storage")
        self.quota_grace = self._in_file(parse_grace, "quota_grace")
        self.partial_expiration = self._in_file(parse_duration, "partial_expiration")
        # state_base: the part of state_dir that the configuration or the
        # environment names, which lda follows; below it (.local/state/lda
        # of a per-user HOME) lda opens its own directories as it opens a
        # Maildir's, never through a symlink, when it runs as root.
        if self.state_dir:
            self.state_base = self.state_dir = self.expand(self.state_dir)
        else:
            base, below = self._default_state_dir(environ)
            self.state_base = self.expand(base)
            self.state_dir = os.path.join(self.state_base, *below)
        self.maildir = self.expand(self.maildir)
        self.sieve_script = self.expand(self.sieve_script)
        self.aliases = self.expand(self.aliases) if self.aliases else ""
        self.hostname = self.hostname or os.uname().nodename
        self.postmaster = self.postmaster or f"MAILER-DAEMON@{self.hostname}"
        self.lmtp_listen = self.lmtp_listen or "unix:" + os.path.join(self.state_dir,
                                                                       "lmtp.sock")
        self.lmtp_max_message_size = self._in_file(parse_size, "lmtp_max_message_size")
        self.quota_warnings = parse_thresholds(self.quota_warnings, self.path)
        self.quota_ignore_folders = parse_folder_masks(self.quota_ignore_folders, self.path)
        self.sieve_before = self._paths("sieve_before")
        self.sieve_after = self._paths("sieve_after")
        self.sieve_default = self.expand(self.sieve_default) if self.sieve_default else ""
        self.sieve_dir = self.expand(self.sieve_dir) if self.sieve_dir else ""
        self.sieve_global_dir = self.expand(self.sieve_global_dir) if self.sieve_global_dir else ""
        self.sieve_editheader_max_header_size = self._in_file(
            parse_size, "sieve_editheader_max_header_size")
        if self.quota_warning_template:
            self.quota_warning_template = self.expand(self.quota_warning_template)
        self._check_ranges()

    @property
    def per_user(self):
        return self.mode == "user"

    @property
    def directory_path(self):
        return os.path.join(self.state_dir, "directory.sqlite")

    def sieve_options(self):
        """The sieve_* keys, for the Sieve extensions that read site settings
        (lda.sieve.Envelope.options)."""
        return {key: getattr(self, key) for key in KEYS if key.startswith("sieve_")}

    def sieve_script_for(self, maildir_path):
        """~/.lda.sieve (sieve_script) in per-user mode; lda.sieve in the root
        of a managed mailbox.  Here rather than in sieve_delivery, which a
        delivery loads only once a script exists."""
        if self.per_user:
            return self.sieve_script
        return os.path.join(maildir_path, SCRIPT_IN_MAILBOX)

    def sieve_dir_for(self, maildir_path):
        """Where include finds :personal scripts (RFC 6609): sieve_dir
        (~/sieve) in per-user mode; sieve/ in the root of a managed mailbox,
        where `lda sieve install` keeps them."""
        if self.per_user:
            return self.sieve_dir
        return os.path.join(maildir_path, SCRIPTS_IN_MAILBOX)

    def _paths(self, key):
        """A path or a list of paths, as a tuple of absolute paths: one
        string is the common case, a list Pigeonhole's sieve_before2, 3..."""
        value = getattr(self, key)
        if isinstance(value, str):
            value = [value] if value else []
        paths = value
        if not all(isinstance(path, str) and path for path in paths):
            raise ConfigError(f"{self.path}: {key} must be a path or a list of paths, "
                              f"not {getattr(self, key)!r}")
        return tuple(self.expand(path) for path in paths)

    def expand(self, path):
        """`~/x` is relative to the recipient's HOME, as Postfix sets it."""
        if path == "~" or path.startswith("~/"):
            path = self.home + path[1:]
        return os.path.abspath(path)

    def _in_file(self, parse, key):
        """parse(value of key), its error naming this file: the parsers
        serve the command line too, where there is no file to name."""
        try:
            return parse(getattr(self, key), key)
        except ConfigError as e:
            raise ConfigError(f"{self.path}: {e}") from None

    def _set(self, key, value):
        if key not in KEYS:
            raise ConfigError(f"{self.path}: unknown key {key!r}")
        kind = KEYS[key][1]
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            raise ConfigError(f"{self.path}: {key} must be {expected(kind, key)}, "
                              f"not {value!r}")
        if holds_nul(value):
            raise ConfigError(f"{self.path}: {key} contains a NUL character, which no path, "
                              "command or name can hold")
        if key in CHOICES and value not in CHOICES[key]:
            raise ConfigError(f"{self.path}: {key} must be one of "
                              f"{', '.join(CHOICES[key])}, not {value!r}")
        setattr(self, key, value)

    def _check_ranges(self):
        for key, (least, most, meaning) in RANGES.items():
            if not least <= getattr(self, key) <= most:
                raise ConfigError(f"{self.path}: {key} must be at least {least} and at most "
                                  f"{most}{meaning}, not {getattr(self, key)}")
        if self.sieve_editheader_max_header_size < 1024:  # RFC 5293 section 4: >= 998
            raise ConfigError(f"{self.path}: sieve_editheader_max_header_size must be "
                              ">= 1024, as Pigeonhole's")
        if not self.sendmail or not all(isinstance(a, str) for a in self.sendmail):
            raise ConfigError(f"{self.path}: sendmail must be a list of strings")
        if not self.move_command or not all(isinstance(a, str) for a in self.move_command):
            raise ConfigError(f"{self.path}: move_command must be a list of strings")
        if any(c == "@" or not c.isprintable() or c.isspace() for c in self.recipient_delimiter):
            raise ConfigError(f"{self.path}: recipient_delimiter must not contain '@', "
                              "spaces or control characters")
        for kind in SCANNER_TOP:
            self._check_scanner(kind)
        self._check_reply_text("quota_exceeded_message")
        if self.host_name and not is_host_name(self.host_name):
            raise ConfigError(f"{self.path}: host_name must be letters, digits, - and _ in "
                              "dot-separated labels, at most 253 characters (as lda host add)")
        # Not echoed: a URL may carry a password.
        if self.directory and not self.directory.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"{self.path}: directory must be empty (directory.sqlite in "
                              "state_dir) or a postgresql:// URL")

    def _check_reply_text(self, key):
        """One line of ASCII text (RFC 5321 section 4.2: a reply's text is
        ASCII, unless SMTPUTF8 was negotiated) for a reply an MTA or LMTP
        client reads; Dovecot's "<FILE" form is refused, not sent as it is."""
        text = getattr(self, key)
        if not (text.strip() and text.isascii() and text.isprintable()
                and len(text) <= MAX_REPLY_TEXT):
            raise ConfigError(f"{self.path}: {key} must be one line of printable ASCII "
                              f"text, 1 to {MAX_REPLY_TEXT} characters")
        if text.startswith("<"):
            raise ConfigError(f"{self.path}: {key}: lda reads no file (Dovecot's \"<FILE\"); "
                              "give the text itself")

    def _check_scanner(self, kind):
        """Pigeonhole's checks of sieve_spamtest_* / sieve_virustest_*, at
        load: a score needs exactly one of max_value and max_header."""
        prefix, top = f"sieve_{kind}_", SCANNER_TOP[kind]
        values = {}
        for entry in getattr(self, prefix + "text_values"):
            number, _, text = entry.partition(" ") if isinstance(entry, str) else ("", "", "")
            if not (number.isascii() and number.isdigit() and int(number) <= top and text):
                raise ConfigError(f"{self.path}: {prefix}text_values: {entry!r} is not "
                                  f'"NUMBER TEXT" with a NUMBER from 0 to {top}')
            values[text] = int(number)
        # {text: value} for lda/sieve/extensions/spamtest.py
        setattr(self, prefix + "text_values", values)
        status_type = getattr(self, prefix + "status_type")
        if not getattr(self, prefix + "status_header") or status_type == "text":
            return
        if (getattr(self, prefix + "max_value") > 0) == bool(getattr(self, prefix + "max_header")):
            raise ConfigError(f"{self.path}: {prefix}status_type {status_type} needs one of "
                              f"{prefix}max_value (> 0) and {prefix}max_header")

    def _default_state_dir(self, environ):
        """(state_base, the directories below it) when lda.toml names none."""
        if not self.per_user:
            return "/var/lib/lda", ()
        if environ.get("XDG_STATE_HOME"):
            return environ["XDG_STATE_HOME"], ("lda",)
        return self.home, (".local", "state", "lda")


def holds_nul(value):
    """A NUL in a string value, or in a string of a list (TOML spells it
    \u0000; no path, argv or name can hold one)."""
    if isinstance(value, str):
        return "\0" in value
    return isinstance(value, list) and any(isinstance(v, str) and "\0" in v for v in value)


HOST_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def is_host_name(name):
    """The rule of lda/admin/hosts.py's HOST_NAME, without loading re on
    every delivery: labels of letters, digits, - and _, joined by dots, no
    label empty or starting or ending with -."""
    return (len(name) <= 253 and set(name) <= HOST_NAME_CHARS
            and all(label and label[0] != "-" and label[-1] != "-"
                    for label in name.split(".")))


TYPE_NAMES = {int: "an integer", str: "a string", bool: "true or false",
              list: "an array", float: "a number"}


def expected(kind, key):
    """What a key's value must be, in the reader's words: a size key that
    takes 500M or 1048576 says so rather than "int or str"."""
    if kind == (int, str):
        return ("a duration like 3600 or 5d" if key == "partial_expiration" else
                "a size like 1048576 or 500M" + (" or a percentage like \"10%\""
                                                 if key == "quota_grace" else ""))
    if isinstance(kind, tuple):  # sieve_before: a path or a list of paths
        return " or ".join(TYPE_NAMES[k] for k in kind)
    return TYPE_NAMES[kind]


def parse_size(value, key="size"):
    """Bytes from 1048576, "1M" or "2G" (binary multiples, as Dovecot reads them)."""
    if isinstance(value, int):
        number = value
    else:
        text = value.strip().upper().removesuffix("B")
        suffix = text[-1:] if text[-1:] in SIZE_SUFFIXES else ""
        digits = text[: len(text) - len(suffix)].strip()
        if not digits.isdigit():
            raise ConfigError(f"{key}: {value!r} is not a size like 1048576, 500M or 2G")
        number = int(digits) * SIZE_SUFFIXES[suffix]
    if number < 0:
        raise ConfigError(f"{key} must not be negative")
    if number > MAX_SIZE:
        raise ConfigError(f"{key}: {value!r} is more than lda takes: at most 1024T")
    return number


def parse_grace(value, key="quota_grace"):
    """quota_grace as (percent, bytes), one of them 0: "10%" is a share of
    each mailbox's own storage limit, as Dovecot's quota_grace is."""
    if isinstance(value, str) and value.strip().endswith("%"):
        digits = value.strip()[:-1].strip()
        if not (digits.isascii() and digits.isdigit()):
            raise ConfigError(f"{key}: {value!r} is not a size like 1M or a "
                              "percentage like 10%")
        if int(digits) > 100:
            raise ConfigError(f"{key}: {value!r} is more than lda takes: at most 100%")
        return int(digits), 0
    return 0, parse_size(value, key)


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value, key="duration"):
    """Seconds from 3600, "90m", "36h", "5d" or "2w"."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        text = str(value).strip().lower()
        unit = text[-1:] if text[-1:] in DURATION_UNITS else "s"
        digits = text[:-1] if text[-1:] in DURATION_UNITS else text
        if not digits.isdigit():
            raise ConfigError(f"{key}: {value!r} is not a duration like 3600, 36h or 5d")
        seconds = int(digits) * DURATION_UNITS[unit]
    if seconds <= 0:
        raise ConfigError(f"{key} must be positive")
    if seconds > MAX_DURATION:
        raise ConfigError(f"{key}: {value!r} is more than lda takes: at most 100 years")
    return seconds


def parse_count(value, key="count"):
    """A number of messages, 0 to MAX_MESSAGES, from the command line."""
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        raise ConfigError(f"{key}: {value!r} is not a number of messages")
    if int(text) > MAX_MESSAGES:
        raise ConfigError(f"{key}: {value!r} is more than lda takes: at most {MAX_MESSAGES}")
    return int(text)


THRESHOLD_KINDS = ("storage", "messages")


def parse_thresholds(entries, path="lda.toml"):
    """quota_warnings as ((kind, percent), ...), highest first: each entry is
    "storage 80%" or "messages 95%" (1-100 % of the mailbox's limit).
    Parsed here, at load, so a bad entry stops every command with exit 78
    (and lda.deliver.quotawarn is imported only for a delivery that may warn)."""
    found = []
    for entry in entries:
        words = entry.split() if isinstance(entry, str) else []
        number = words[1].removesuffix("%") if len(words) == 2 else ""
        if (not number.isascii() or not number.isdigit() or not words[1].endswith("%")
                or words[0] not in THRESHOLD_KINDS or not 1 <= int(number) <= 100):
            raise ConfigError(f"{path}: quota_warnings: {entry!r} is not like "
                              "\"storage 80%\" or \"messages 95%\" (1-100%)")
        if (words[0], int(number)) in found:
            raise ConfigError(f"{path}: quota_warnings: {entry!r} is listed twice")
        found.append((words[0], int(number)))
    return tuple(sorted(found, key=lambda t: (THRESHOLD_KINDS.index(t[0]), -t[1])))


def parse_folder_masks(entries, path="lda.toml"):
    """quota_ignore_folders as a tuple of masks, each matched against whole
    folder names (lda.store.maildirsize.Rules) as Dovecot matches the NAME of
    `quota_rule = NAME:ignore` against mailbox names: "INBOX" in any case is
    the inbox, "*" and "?" are wildcards.  Dovecot's "/" separator is read as
    Maildir++'s "." and a leading "INBOX." (a namespace prefix) is dropped,
    as lda reads every folder name (store.folders.check_folder)."""
    masks = []
    for entry in entries:
        if not isinstance(entry, str) or not entry:
            raise ConfigError(f"{path}: quota_ignore_folders: {entry!r} is not a folder name")
        if entry in ("*", "?"):
            raise ConfigError(f"{path}: quota_ignore_folders: {entry!r} names Dovecot's "
                              "default rule, not a mailbox: list the folders")
        mask = "INBOX" if entry.upper() == "INBOX" else entry.replace("/", ".")
        if mask[:6].upper() == "INBOX.":
            mask = mask[6:]
        if not mask or mask.startswith("."):
            raise ConfigError(f"{path}: quota_ignore_folders: {entry!r} is not a folder "
                              'name (a folder is named as IMAP shows it: "Trash", not ".Trash")')
        masks.append(mask)
    return tuple(masks)


def _passwd_home():
    import pwd

    return pwd.getpwuid(os.getuid()).pw_dir


def find_config_path(option=None, environ=os.environ):
    """-c, then LDA_CONFIG, then /etc/lda/lda.toml; None means per-user mode."""
    path = option or environ.get("LDA_CONFIG")
    if path:
        return path
    return SYSTEM_CONFIG if os.path.exists(SYSTEM_CONFIG) else None


def load_config(option=None, environ=os.environ, overrides=None):
    """The configuration; `overrides` ({key: value}, the dovecot settings of
    `lda deliver -o`) win over the file's and are checked as its keys are."""
    overrides = overrides or {}
    path = find_config_path(option, environ)
    if path is None:
        return Config({"mode": "user", **overrides}, path="(per-user defaults)",
                      environ=environ)
    return Config({**read_values(path), **overrides}, path=path, environ=environ)


def _read_file(path):
    """The bytes of the regular file at path.  Opened without blocking, so
    that a FIFO named as the configuration is refused (EISDIR's 78, as a
    directory is) instead of waited on until a writer comes."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EISDIR, "not a regular file")
    with open(fd, "rb") as f:
        return f.read()


def read_values(path):
    """The keys the file at `path` sets, as written (`lda config show` tells
    them from defaults)."""
    try:
        data = _read_file(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as e:  # an I/O error is the disk's, not the configuration's (75)
        kind = ConfigError if is_file_problem(e) else TemporaryFailure
        raise kind(f"{path}: cannot read configuration: {e.strerror}") from None
    # Here, where a file is read: per-user mode without one never needs it.
    from .startup.tomllib import flat_toml

    values = flat_toml(data)
    if values is None:
        import tomllib

        try:
            values = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{path}: invalid TOML: {e}") from None
        except RecursionError:  # tomllib recurses once per level of [ and {
            raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too "
                              "deep") from None
    return values

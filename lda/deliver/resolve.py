"""From an envelope recipient to delivery targets.

Managed mode looks the recipient up in the alias file, then in the mailbox
directory (with its forwards), trying the address without its extension
when the full one is unknown, as Postfix local(8) does.  Per-user mode has
one mailbox, the invoking user's Maildir, for every recipient.
"""

import os

from ..errors import ConfigError, MailboxMoving
from .envelope import domain_of, folder_for_extension, normalize, split_extension


class Target:
    """One place a copy goes: a local mailbox or an address outside the store.

    A Sieve script can turn a mailbox target into several (derive()): extra
    stores and redirects are keyed apart from the mailbox (`key`) but locked
    with it (`lock_key`), and a vacation target carries its own reply."""

    def __init__(self, address, db_root, mailbox=None, maildir_root=None,
                 maildir_relative=None, folder=None, quota=None, primary=False, via=(),
                 info=None, create_folder=False, key=None, lock_key=None, reply=None,
                 keywords=()):
        self.address = address
        self.db_root = db_root
        self.mailbox = mailbox                 # DeliveredTo key, None if external
        self.maildir_root = maildir_root
        self.maildir_relative = maildir_relative
        self.folder = folder
        self.quota = quota                     # maildirsize.Quota or None
        self.primary = primary
        self.via = via
        self.info = info                       # Maildir info flags ("FS"): into cur/
        self.keywords = keywords               # IMAP keyword names: letters in cur/
        self.create_folder = create_folder
        self.key = key
        self.lock_key = lock_key or self.key_mailbox
        self.reply = reply                     # bytes to send instead of the message
        self.filtered = False                  # a Sieve script has run for it
        self.staged = None                     # a Sieve script's edited copy (filtering.py)

    def derive(self, folder, info, create_folder, suffix, keywords=()):
        """The same mailbox, another folder or flags (a Sieve store)."""
        derived = Target(self.address, self.db_root, self.mailbox, self.maildir_root,
                         self.maildir_relative, folder, self.quota, self.primary, self.via,
                         info, create_folder, key=self.mailbox + suffix if suffix else None,
                         lock_key=self.mailbox, keywords=keywords)
        derived.filtered = True
        return derived

    @property
    def local(self):
        return self.mailbox is not None

    @property
    def maildir_path(self):
        """The mailbox root, where maildirsize lives."""
        if self.maildir_relative:
            return os.path.join(self.maildir_root, self.maildir_relative)
        return self.maildir_root

    def delivered_to_key(self, info):
        """The DeliveredTo key of this target for the message info describes:
        (mailbox, Message-ID or content digest, submit time)."""
        return (self.key_mailbox, info.key_id, info.submit_time)

    @property
    def key_mailbox(self):
        if self.key:
            return self.key
        return self.mailbox if self.local else "forward:" + self.address


class Plan:
    """The targets of one envelope recipient, and the resolver's state()
    they were resolved under (None: unknown, check everything).  unnamed:
    no recipient was given, and canonical is the invoking user's login."""

    def __init__(self, recipient, canonical, targets, home_db, state=None, unnamed=False):
        self.recipient = recipient
        self.canonical = canonical
        self.targets = targets
        self.home_db = home_db
        self.state = state
        self.unnamed = unnamed

    def holds(self, resolver):
        """Whether nothing this plan was resolved from has changed since:
        the same resolver (its aliases) at the same directory version."""
        return self.state is not None and self.state == resolver.state()


def address_folder(config, extension):
    """The folder an address's extension files into: folder_for_extension,
    or none with extension_folders = false (as Dovecot's lmtp, whose
    lmtp_save_to_detail_mailbox is off by default).  -m and procmail's -a
    EXTENSION name a folder themselves, whatever this says."""
    return folder_for_extension(extension) if config.extension_folders else None


class UserResolver:
    """Per-user mode: every recipient is the invoking user's own Maildir."""

    def __init__(self, config, user, extension=None):
        self.config = config
        self.user = user
        self.extension = extension

    def resolve(self, recipient):
        canonical = (normalize(recipient, self.config.recipient_delimiter) if recipient
                     else self.user)
        _, extension = split_extension(canonical, self.config.recipient_delimiter)
        folder = (folder_for_extension(self.extension) if self.extension
                  else address_folder(self.config, extension))
        maildir = self.config.maildir
        quota = None
        # Honour a quota Dovecot or Courier set.  Most Maildirs have no
        # maildirsize (maildirsize.FILENAME, the Maildir++ name): one lstat
        # spares them importing the module.
        if os.path.lexists(os.path.join(maildir, "maildirsize")):
            from ..store.maildirsize import existing_quota

            quota = existing_quota(maildir)
        target = Target(canonical, self.config.state_dir, mailbox=self.user,
                        maildir_root=maildir, folder=folder, quota=quota, primary=True)
        return Plan(recipient or self.user, canonical, [target], self.config.state_dir,
                    unnamed=not recipient)

    def check_current(self, plan):
        """Per-user mode has no moves."""

    def state(self):
        """None: a per-user Plan is not kept (its quota is read anew)."""
        return None


class ManagedResolver:
    """Managed mode: alias file, then the mailbox directory."""

    def __init__(self, config, directory, log=None, read_only=False):
        self.config = config
        self.directory = directory
        self.log = log
        self.aliases = None
        self._domain = ""
        # address -> Mailbox or None, for one resolve() or direct_target():
        # expansion asks for the same address three times over.
        self._found = {}
        if config.aliases:
            from ..store.aliases import open_aliases, table_path

            # The compiled table if it is current, else the file parsed.
            # read_only (`lda explain`): not even the stamp of warnings given.
            self.aliases = open_aliases(config.aliases, table_path(config.state_dir),
                                        self._warn, stamp=not read_only)

    def _warn(self, line):
        """To the delivery's log; without one (lmtp, partial), lda.toml's."""
        if self.log is None:
            from ..log import Log

            self.log = Log.configured(self.config)
        self.log.warning(line)

    def state(self):
        """What a Plan resolved now was resolved from: this resolver (its
        aliases) and the directory's version.  Equal later, the Plan holds."""
        return self, self.directory.version()

    def check_current(self, plan):
        """Under the mailbox locks: each local target still lives where it was
        resolved and no move is running, or the delivery is retried later.
        A move takes the same locks, so this cannot change until release.

        A plan resolved by this resolver at the directory version it still
        has stands whole: nothing was committed to the directory since (a
        move writes its `moves` row and the new location), so the two
        queries per target, 2,000 for an alias of 1,000, would read what
        resolve() read."""
        if plan.holds(self):
            return
        for target in plan.targets:
            if not target.local:
                continue
            mailbox = self.directory.mailbox(target.mailbox)
            if mailbox is not None:
                self.directory.check_host(mailbox, self.config.host_name)
            if (mailbox is None or self.directory.moving(target.mailbox)
                    or (mailbox.db_root, mailbox.maildir)
                    != (target.maildir_root, target.maildir_relative)):
                raise MailboxMoving(f"mailbox {target.mailbox} is being moved; "
                                    "deliver again later")

    def direct_target(self, address, home_db, resend_elsewhere=False):
        """A target for exactly this address, without alias expansion (for
        retrying a partial delivery): its mailbox, else an external one.
        resend_elsewhere (a forward's retry): a mailbox another host holds
        is external too, re-sent, as resolve() makes it."""
        self._found = {}
        mailbox, extension = self._mailbox(address)
        if mailbox is None or (resend_elsewhere and self._elsewhere(mailbox)):
            return Target(address, home_db)
        return Target(address, mailbox.db_root, mailbox=mailbox.address,
                      maildir_root=mailbox.db_root, maildir_relative=mailbox.maildir,
                      folder=address_folder(self.config, extension), quota=self._quota(mailbox))

    def _lookup(self, address):
        """directory.mailbox(address), once per resolution."""
        if address not in self._found:
            self._found[address] = self.directory.mailbox(address)
        return self._found[address]

    def _mailbox(self, address):
        """(Mailbox, extension) for an address, trying it without extension."""
        mailbox = self._lookup(address)
        if mailbox:
            return mailbox, None
        base, extension = split_extension(address, self.config.recipient_delimiter)
        if extension is not None:
            mailbox = self._lookup(base)
            if mailbox:
                return mailbox, extension
        return None, None

    def members(self, address):
        """What an alias expands to, one level, or None for any other address
        (`lda socketmap`'s alias map).  Never a mailbox's forwards: the host
        that delivers the mailbox applies them, once."""
        self._found = {}
        self._domain = domain_of(address)  # a bare key answers for the address asked
        return self._members(address, forwards=False)

    def _members(self, address, forwards=True):
        """Alias members (a bare name in the alias's own domain, as local(8)
        reads it), or a mailbox's forwards; None for a plain address."""
        members = self._unqualified_members(address, forwards)
        domain = domain_of(address)
        if members is None or not domain:
            return members
        return [m if "@" in m else f"{m}@{domain}" for m in members]

    def _unqualified_members(self, address, forwards):
        if self.aliases is not None:
            # A bare key (postmaster) answers for the recipient's own domain,
            # never for a forward to someone else's postmaster@.
            local = domain_of(address) in ("", self._domain)
            members = self.aliases.lookup(address, local)
            if members is None:
                base, extension = split_extension(address, self.config.recipient_delimiter)
                if extension is not None and not self._lookup(address):
                    members = self.aliases.lookup(base, local)
            if members is not None:
                return members
        mailbox, _ = self._mailbox(address) if forwards else (None, None)
        # Another host's mailbox is that host's to expand (see _target).
        if mailbox and mailbox.forward and not self._elsewhere(mailbox):
            return list(mailbox.forward) + ([mailbox.address] if mailbox.keep_copy else [])
        return None

    def resolve(self, recipient):
        from ..store.aliases import expand

        canonical = normalize(recipient, self.config.recipient_delimiter)
        self._domain = domain_of(canonical)
        self._found = {}
        # The version and every lookup from one snapshot of the directory
        # (one read transaction, not one per query), ended on any exception.
        with self.directory.snapshot():
            state = self.state()
            own, _ = self._mailbox(canonical)
            expansion = expand(canonical, self._members)
            targets = []
            for leaf in expansion.leaves:
                target = self._target(leaf, canonical, own, expansion)
                if target is not None:
                    targets.append(target)
            if not targets:
                raise self.directory.unknown(canonical, mirror=bool(self.config.directory))
            home = self._home_root(own)
        return Plan(recipient, canonical, targets, home, state)

    def _target(self, leaf, canonical, own, expansion):
        via = tuple(expansion.via.get(leaf, ()))
        mailbox, extension = self._mailbox(leaf)
        if (mailbox is not None and self._elsewhere(mailbox)
                and (own is None or mailbox.address != own.address)):
            # A member another host holds: re-sent, as to an outside address,
            # for that host to deliver and apply its forwards, once.
            return Target(leaf, self._home_root(own), via=via)
        if mailbox is not None:
            # The host first: a mailbox on its way here is another host's
            # (4.3.0) until the directory flips (admin/hostmove.py).
            self.directory.check_host(mailbox, self.config.host_name)
        if mailbox is not None and self.directory.moving(mailbox.address):
            raise MailboxMoving(f"mailbox {mailbox.address} is being moved; "
                                "deliver again later")
        in_cycle = any(path and path[-1] == leaf for path in expansion.cycles)
        if mailbox is None:
            if in_cycle:
                chain = next(p for p in expansion.cycles if p[-1] == leaf)
                raise ConfigError(f"alias loop: {' -> '.join(chain)}")
            if leaf == canonical or not domain_of(leaf):
                if leaf == canonical:
                    return None
                raise ConfigError(f"alias target {leaf!r} has no domain and no mailbox")
            return Target(leaf, self._home_root(own), via=via)
        quota = self._quota(mailbox)
        return Target(leaf, mailbox.db_root, mailbox=mailbox.address,
                      maildir_root=mailbox.db_root, maildir_relative=mailbox.maildir,
                      folder=address_folder(self.config, extension), quota=quota,
                      primary=own is not None and mailbox.address == own.address, via=via)

    def _elsewhere(self, mailbox):
        """Whether another host delivers to mailbox (Directory.check_host)."""
        return self.directory.on_other_host(mailbox.host, self.config.host_name)

    def _home_root(self, own):
        return own.db_root if own else self.directory.default_database(self.config.host_name)[1]

    def _quota(self, mailbox):
        """lda's own limits (the mailbox's columns, else lda.toml's), which
        win; without any, the quota line of an existing maildirsize, so a
        limit Dovecot or Courier set is kept and enforced, and its usage
        kept right; None when there is no maildirsize either: one lstat, and
        the maildirsize module is not imported (as UserResolver does)."""
        storage = mailbox.quota_storage
        messages = mailbox.quota_messages
        storage = self.config.quota_storage if storage is None else storage
        messages = self.config.quota_messages if messages is None else messages
        if storage <= 0 and messages <= 0:
            maildir = os.path.join(mailbox.db_root, mailbox.maildir)
            if not os.path.lexists(os.path.join(maildir, "maildirsize")):
                return None
            from ..store.maildirsize import existing_quota

            return existing_quota(maildir)
        from ..store.maildirsize import Quota

        return Quota(storage, messages)


def current_user(environ=os.environ):
    """The invoking user's login name from the passwd entry of the uid, else
    USER.  Not USER first, as dovecot-lda takes it: the name keys the user's
    DeliveredTo rows, and a USER that su(1) left behind would change it."""
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return environ.get("USER") or str(os.getuid())


def make_resolver(config, environ, log=None, read_only=False):
    """The resolver for the configuration's mode, as `lda deliver` and
    `lda lmtp` build it (read_only: as `lda explain` does, see
    ManagedResolver)."""
    if config.per_user:
        return UserResolver(config, current_user(environ), environ.get("EXTENSION"))
    # Per-user mode has no directory: a per-user delivery does not import it.
    from ..store.directory import Directory

    return ManagedResolver(config, Directory(config.directory_path, read_only), log,
                           read_only)


class ThreadResolvers:
    """One resolver per thread (SQLite connections stay in their thread),
    for the servers that answer many recipients: `lda lmtp`, `lda policy`,
    `lda socketmap`.  Rebuilt when the aliases file or its compiled table
    changes (`lda aliases compile` after an edit of an :include: file
    alone), or when directory.sqlite is another file or was written outside
    SQLite's own protocol (restored from a backup, damaged): a connection
    keeps reading the file it opened, and trusts its cached pages while the
    WAL says nothing changed.  Commits through SQLite need no rebuild: each
    query reads what was last committed."""

    def __init__(self, config, environ=os.environ, log=None):
        import threading

        self.config, self.environ, self.log = config, environ, log
        self.local = threading.local()

    def get(self):
        from ..store.aliases import table_path

        config = self.config
        stamp = (_mtime(config.aliases),
                 _mtime(table_path(config.state_dir)) if config.aliases else None,
                 None if config.per_user else _identity(config.directory_path))
        if getattr(self.local, "stamp", None) != stamp or not hasattr(self.local, "resolver"):
            self.local.resolver = make_resolver(config, self.environ, self.log)
            self.local.stamp = stamp
        return self.local.resolver


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns if path else None
    except OSError:
        return None


def _identity(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns

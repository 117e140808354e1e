"""One message to its recipients, each target at most once.

Write the message into tmp/ once for every envelope recipient, with its own
prefix (fsynced a run at a time).  Then, for up to PLAN_BATCH recipients
with no mailbox in common, holding their targets' mailbox locks: look up
DeliveredTo and write "pending" rows (one transaction and WAL sync per
database), link each file into its new/ (hard links on one filesystem),
fsync those new/ a run at a time, and mark the rows delivered.  A forward
target that cannot take the message becomes a partial delivery when any
other target got it.  Plain Maildir deliveries (no forward, no Sieve) hold
the locks for less: their pending rows are written and synced before the
locks (Delivery._claim_early), and new/ is synced after them
(Delivery._may_sync_unlocked), so that deliveries into one mailbox queue
for no sync.  The pending row is durable before the link, and the link
before the answer, as ever.
"""

import os
import time

from ..errors import (
    CannotCreate,
    ForwardFailed,
    LdaError,
    MaildirMissing,
    MailLoop,
    NotOwner,
    TemporaryFailure,
    UnsafePath,
)
from ..log import failure_status
from ..store import maildir as md
from ..store.locks import MailboxLocks
from ..store.maildir import SYNC_BATCH

DELIVERED, DUPLICATE = "delivered", "duplicate"
# The header bytes read before choosing the prefix (see _stage).
LEAD_BYTES = 65536
# Databases a caller's `kept` holds open at most (3 descriptors each).
KEPT_DATABASES = 8
# Envelope recipients delivered under one set of mailbox locks, at most
# (Postfix gives an LMTP server up to 50 at a time,
# lmtp_destination_recipient_limit): the locks are held until the last of
# them is synced.
PLAN_BATCH = 64


class Result:
    """What happened to one envelope recipient."""

    def __init__(self, recipient, error=None):
        self.recipient = recipient
        self.error = error
        self.outcomes = {}  # Target -> DELIVERED, DUPLICATE or an LdaError
        self.stored_in = {}  # local Target -> the Maildir (or folder) it went to
        self.partial = []

    @property
    def ok(self):
        return self.error is None


class _Linked:
    """One database's targets of a delivery between their links and the
    commit that marks them delivered (Delivery._claim_and_link)."""

    def __init__(self, db, pending):
        self.db = db
        self.pending = pending  # [(target, its file name, or None: a forward)]
        self.linked = []  # (target, new/ descriptor, its path): linked, not yet synced
        self.done, self.failed = [], []  # DeliveredTo keys
        self.recorded = False

    def close(self):
        for _, fd, _ in self.linked:
            os.close(fd)
        self.linked = []


def _failures(live):
    """Whether any target of the live recipients (see _deliver_together)
    has failed so far."""
    return any(isinstance(outcome, LdaError)
               for _, _, result, _, _ in live for outcome in result.outcomes.values())


def _has_quota(target):
    """Whether a local target has a maildirsize to keep (the resolver found
    one, or lda limits the mailbox and so writes one): only then is the
    maildirsize code imported.  Its usage is kept even without a limit to
    check, since Dovecot or Courier reads it (Target.quota: Quota() then)."""
    return target.local and target.quota is not None


def prefix_for(plan, sender, lead):
    """Return-Path and Delivered-To, unless the MTA prepended them already.

    With no recipient named (procmail clears Postfix's RECIPIENT before it
    runs lda) the plan's address is the login name, which no MTA's field
    names: a Delivered-To the MTA wrote on top is then this delivery's, as
    it is for dovecot-lda, which adds none."""
    from .envelope import reverse_path
    from .message import bare_address

    names = {name for name, _ in lead}
    mta_delivered_to = {bare_address(v) for n, v in lead if n == b"delivered-to"}
    if "_" in plan.canonical:  # given as local(8) filters it: its field says the same
        from .envelope import expansion_filtered

        mta_delivered_to |= {expansion_filtered(d) for d in mta_delivered_to}
    prefix = b""
    if sender is not None and b"return-path" not in names:
        prefix += (b"Return-Path: <" + reverse_path(sender).encode("utf-8", "surrogateescape")
                   + b">\n")
    recipient = plan.canonical
    if recipient.lower() not in mta_delivered_to and not (plan.unnamed and mta_delivered_to):
        prefix += b"Delivered-To: " + recipient.encode("utf-8", "surrogateescape") + b"\n"
    return prefix


def loop_error(plan, info):
    """MailLoop when the message carries a Delivered-To for the recipient."""
    if info.is_loop(plan.canonical):
        return MailLoop(f"mail forwarding loop for {plan.canonical}")
    return None


class Delivery:
    """Delivers one message; side effects (clock, sendmail, log) are parameters."""

    # False for `lda explain` (explain.py), which runs the same decisions
    # and stops before the first write; sieve_trace then collects which
    # Sieve commands ran (interpreter.Execution.trace).
    writes = True
    sieve_trace = None
    # One exit status answers for several recipients (a command's, set by
    # run(together=True)): a refusal for good of one must not come after
    # another's copy is stored (_refuse_all, _refused_once_read).
    shared_status = False

    def __init__(self, config, resolver, log, sender=None, original_recipient=None,
                 clock=time.time, sendmail=None, kept=None, original_header=None,
                 peer=None, procmail=False):
        self.config = config
        self.resolver = resolver
        self.log = log
        self.sender = sender
        self.original_recipient = original_recipient
        self._log_original = original_recipient
        # dovecot's lda_original_recipient_header (`lda deliver -o`): the
        # field an MTA wrote the original recipient into (X-Original-To).
        self.original_header = original_header
        self.clock = clock
        # (address, name) of the LMTP client, or of the SMTP client that
        # Postfix names to `lda deliver`, for Sieve's environment extension
        # (RFC 5183 remote-ip, remote-host); None or "" when unknown.
        self.peer = peer
        # Run by a ~/.procmailrc recipe (`| lda`): the rc is read, by procmail.
        self.procmail = procmail
        self.sendmail = sendmail or config.sendmail
        self.databases = {}
        # {db_root: DeliveredTo} the caller keeps open between deliveries
        # (lda lmtp, one per worker thread); None: each delivery closes its own.
        self.kept = kept
        self.touched = set()  # Maildir (or folder) paths written to
        self.claims = {}  # see _claim_early
        self._may_run_scripts = {}  # Maildir path -> _may_have_scripts' answer
        self._passed_over = set()  # why a script was not run, as logged (_scripts)
        self.lock_dir = os.path.join(config.state_dir, "locks")
        # As root, state directories are opened as Maildirs are (see
        # maildir.open_state); without allow_root_delivery every directory
        # written to must be root's (owner), checked before anything is made.
        self.as_root = os.geteuid() == 0
        self.owner = 0 if self.as_root and not config.allow_root_delivery else None

    def run(self, recipients, stream, resolved=None, together=False):
        """One Result per recipient, in the order given (LMTP replies in
        RCPT order, RFC 2033 section 4.2).  resolved: {recipient: Plan}
        that the caller resolved already (LMTP, at RCPT), used while it
        holds (a mailbox moved or the aliases changed since: resolved
        again); check_current() still checks each target under its locks.
        together: one exit status answers for all (a command, not LMTP),
        so a recipient refused for good stops the others (_refuse_all)."""
        results, plans = self.resolve_all(recipients, resolved)
        if together and plans:
            plans = self._refuse_all(results, plans)
        self.shared_status = together and len(plans) > 1
        if plans:
            try:
                delivered = self._deliver_plans([plan for _, plan in plans], stream)
            except LdaError as e:  # the message could not even be written once
                delivered = [Result(plan.recipient, e) for _, plan in plans]
                for _, plan in plans:  # one status line each, as for the others
                    self.log.target(None, plan.canonical, self._log_original,
                                    failure_status(e), e.status, str(e))
            for (index, _), result in zip(plans, delivered):
                results[index] = result
        self._cleanup_databases()
        return results

    def resolve_all(self, recipients, resolved=None):
        """([Result or None per recipient], [(index, Plan)]): a recipient
        refused here has its Result (logged), the others their Plan; the
        first step of run() and of `lda explain`."""
        # -a names the original of one recipient; with several it is unknown.
        self._log_original = self.original_recipient if len(recipients) == 1 else None
        results, plans = [None] * len(recipients), []
        for index, recipient in enumerate(recipients):
            try:
                plan = resolved.get(recipient) if resolved else None
                if plan is None or not plan.holds(self.resolver):
                    plan = self.resolver.resolve(recipient)
                plans.append((index, plan))
            except LdaError as e:
                results[index] = Result(recipient, e)
                # Refused before the message was read: no Message-ID yet.
                self.log.target(None, recipient, self._log_original,
                                failure_status(e), e.status, str(e))
        return results, plans

    def _refuse_all(self, results, plans):
        """The plans still to deliver: none when a recipient was refused for
        good.  The MTA bounces every recipient of a command that exits
        5.X.X (pipe(8)), so a copy stored for another would be delivered
        and reported failed, and sent again.  A temporary refusal lets the
        others go on: the MTA retries all, and DeliveredTo drops the copies
        that arrived."""
        refused = next((r for r in results if r is not None and r.error.bounces), None)
        if refused is None:
            return plans
        for index, plan in plans:
            results[index] = self._not_stored(plan, refused.recipient, refused.error, None)
        return []

    def _not_stored(self, plan, refused, error, log_id):
        """The Result (logged) of a recipient whose copy is not stored
        because `refused`, another recipient of the command, was refused
        for good with error (_refuse_all, _refused_once_read)."""
        self.log.target(log_id, plan.recipient, self._log_original, "bounced", error.status,
                        f"not stored: {refused} was refused, and one exit "
                        "status answers for every recipient of the command")
        return Result(plan.recipient, error)

    def _refused_once_read(self, plans, staged, unwritten, info):
        """With one exit status for several recipients (shared_status), the
        first (index, error) that would bounce them all, found once the
        message is read and before any copy is stored: a mail loop, or a
        mailbox over quota under quota_full = "reject" (judged as
        _claim_and_link judges it, but without the locks and without
        rewriting maildirsize).  A mailbox that has the message already is
        left to DeliveredTo (a duplicate, not a refusal), one with a Sieve
        script to its script; a refusal that comes only under the locks
        (a race with another delivery) is reported as before.  None when
        nothing is refused for good."""
        for i, plan in enumerate(plans):
            error = unwritten.get(i)
            if error is None:
                error = next(filter(None, (self._quota_refusal(t, staged[i].size, info)
                                           for t in plan.targets)), None)
            if error is not None and error.bounces:
                return i, error
        return None

    def _quota_refusal(self, target, size, info):
        """_refused_once_read's judgement of one target's quota."""
        if (not target.local or not _has_quota(target) or target.quota.unlimited()
                or self._may_have_scripts(target)):
            return None
        from ..store.maildirsize import quota_judgement

        failure = quota_judgement(self.config, target, size, self.clock, write=False)[0]
        if failure is None or not failure.bounces:
            return None
        key = target.delivered_to_key(info)
        return None if self.database(target.db_root).lookup([key]).get(key) else failure

    def _deliver_plans(self, plans, stream):
        from .message import Reader

        reader = Reader(stream, self.config.verify_body)
        staging_dir, perms, origin = self._staging_dir(plans[0])
        first = self._stage(plans[0], reader, staging_dir, perms, origin)
        info = reader.info()
        if self.original_header and self.original_recipient is None:
            self._original_from_header(info, len(plans))
        staged, unwritten = {0: first}, {}
        results = [None] * len(plans)
        try:
            self._copies(plans, first, info, staged, unwritten)
            refused = self._refused_once_read(plans, staged, unwritten, info) \
                if self.shared_status else None
            if refused is not None:
                index, error = refused
                self._log_failed(plans[index], error, info)
                return [Result(plan.recipient, error) if i == index else
                        self._not_stored(plan, plans[index].recipient, error, info.log_id)
                        for i, plan in enumerate(plans)]
            batch, mailboxes = [], set()
            for i, plan in enumerate(plans):
                if i in unwritten:
                    results[i] = Result(plan.recipient, unwritten[i])
                    self._log_failed(plan, unwritten[i], info)
                    continue
                locked = {t.lock_key for t in plan.targets}
                # A mailbox two recipients share waits for the next batch, so
                # the second finds the first's row, as one after the other.
                if len(batch) == PLAN_BATCH or not mailboxes.isdisjoint(locked):
                    self._deliver_batch(plans, staged, batch, info, results)
                    batch, mailboxes = [], set()
                batch.append(i)
                mailboxes |= locked
            if batch:
                self._deliver_batch(plans, staged, batch, info, results)
            if self.shared_status and self.writes:
                self._bounce_alone(plans, results, staged, info)
        finally:
            for item in staged.values():
                item.unlink()
            os.close(staging_dir)
        return results

    def _bounce_alone(self, plans, results, staged, info):
        """With one exit status for several recipients (shared_status), a
        recipient refused for good once another's copy is stored would make
        the MTA bounce them all, the stored ones too, and the sender send
        them again.  Such a refusal comes only under the locks: a full
        mailbox whose Sieve script ran, or one that filled in a race with
        _refused_once_read.  The recipient is bounced alone, with lda's own
        DSN (as Postfix's local(8) bounces one recipient), and the status
        is the others'.  A temporary failure of any leaves everything to the
        MTA's retry (which DeliveredTo makes safe); a DSN that cannot be
        sent leaves the refusal to the exit status, as before."""
        for i in bounced_alone(results):
            result = results[i]
            where = f"{info.log_id}: {plans[i].recipient}: refused ({result.error.status})"
            why = "one exit status answers for every recipient, and another's copy is stored"
            if not self._dsn_to():
                self.log.info(f"{where}; no DSN to the null sender, as {why}")
            else:
                try:
                    self._send_dsn(plans[i], result.error, staged.get(i), info)
                except LdaError as e:
                    self.log.warning(f"{where}; DSN not sent: {e}")
                    continue
                self.log.info(f"{where}; DSN sent to {self.sender}, as {why}")
            result.error = None

    def _dsn_to(self):
        """dsn.returned_to(sender), with no import when there is none."""
        if not self.sender:
            return None
        from .dsn import returned_to

        return returned_to(self.sender)

    def _send_dsn(self, plan, error, staged, info):
        """The DSN of _bounce_alone for plan's recipient, refused with error."""
        from . import dsn

        data = b""  # the sender's header, without lda's prefix
        if staged is not None:
            fd = staged.open()
            try:
                data = os.pread(fd, dsn.MAX_HEADER_BYTES, staged.prefix_len)
            except OSError:
                pass
            finally:
                os.close(fd)
        now = self.clock()
        record = {"sender": self.sender, "recipient": plan.recipient, "target": plan.canonical,
                  "reason": error.reason(), "created": now, "last_attempt": now,
                  "attempts": 1, "kept": False}
        report = dsn.build_dsn(self.config, record, dsn.header_of(data) or None, now)
        dsn.send_dsn(self.config, self.sender, report, self.sendmail)

    def _original_from_header(self, info, recipients):
        """The original recipient from original_header when neither -a nor
        ORIGINAL_RECIPIENT named one, as dovecot-lda takes it; checked as
        -a is, since the sender may have written that field itself."""
        from .envelope import original_recipient
        from .message import text

        raw = info.headers.first(self.original_header.lower().encode("ascii", "replace"))
        if raw is None:
            return
        self.original_recipient, ignored = original_recipient(
            text(raw).strip(), self.config.recipient_delimiter)
        if ignored:
            self.log.warning(f"{self.original_header}: original recipient ignored: {ignored}")
        self._log_original = self.original_recipient if recipients == 1 else None

    def _deliver_batch(self, plans, staged, batch, info, results):
        """results[i] for each plans[i] of the batch (recipients with no
        mailbox in common), delivered together: see _deliver_together."""
        try:
            delivered = self._deliver_together([(plans[i], staged[i]) for i in batch], info)
        except LdaError as e:  # the locks, or a database, failed them all
            delivered = [Result(plans[i].recipient, e) for i in batch]
        for i, result in zip(batch, delivered):
            results[i] = result
            if result.error is not None and not result.outcomes:
                self._log_failed(plans[i], result.error, info)

    def _log_failed(self, plan, error, info):
        """For a recipient that failed before any target was tried."""
        self.log.target(info.log_id, plan.canonical, self._log_original,
                        failure_status(error), error.status, str(error))

    def _staging_dir(self, plan):
        """(a descriptor of tmp/, the permissions of the files made there,
        the path of the mailbox they come from) of the first local target's
        Maildir (so hard links work), else of the db's (lda's own
        permissions, no mailbox's): also when that Maildir is damaged or not
        the owner's, whose own delivery then fails alone, at its link, not
        every recipient's.

        The Maildir is not created here, outside the mailbox locks: one that
        `lda mailbox move` took away since the recipient was resolved would
        come back, empty, at its old path (and the next move back fails).
        _link creates a missing one, under the locks, once check_current()
        has said it still belongs there."""
        for target in plan.targets:
            if target.local:
                try:
                    # The INBOX's tmp/ alone, for a folder too: opening the
                    # folder would make it (autocreate, :create) before
                    # DeliveredTo has said the message is new, so a resend
                    # would bring back a folder the user deleted.
                    return md.open_tmp(target.maildir_root, target.maildir_relative,
                                       self.owner)
                except (CannotCreate, UnsafePath, NotOwner):
                    break  # not there (yet), or unusable: the database's tmp/
        return self._open_state(plan.home_db, "tmp"), md.PRIVATE, None

    def _open_state(self, db_root, sub=None):
        """A descriptor of a state directory, db_root or its sub (created if
        need be): as root, below config.state_base (or a database root
        outside it) never through a symlink, owner checked."""
        path = os.path.join(db_root, sub) if sub else db_root
        if self.as_root:
            base = self.config.state_base
            if db_root != base and not md.is_below(db_root, base):
                base = db_root  # a database of its own path (lda db create --path)
            # A HOME is not lda's to make (useradd -m would find root's).
            home = self.config.expand("~")
            return md.open_state(path, base, self.owner, make_base=base != home)
        try:
            return md.open_path(path, create=True)
        except OSError as e:  # a state directory that cannot exist: say so, retry
            raise CannotCreate(f"{path}: cannot create: {e.strerror}") from None

    def _state_opener(self, db_root, sub=None):
        """For DeliveredTo and MailboxLocks: as root, how to open their
        directory (_open_state); None: by path, as the configuration says."""
        if not self.as_root:
            return None
        return lambda: self._open_state(db_root, sub)

    def _stage(self, plan, reader, dir_fd, perms, origin):
        """The first recipient's copy (md.stage); the MTA's own fields at
        its top decide every recipient's prefix."""
        head, lead, chunks = self.read_lead(reader)
        prefix = prefix_for(plan, self.sender, lead)
        return md.stage(dir_fd, self.config.hostname, prefix, _after(head, chunks), lead,
                        perms, origin)

    def read_lead(self, reader):
        """(the header read so far, the MTA's own fields at its top, the
        rest of the chunks): a stale Return-Path already dropped."""
        from .message import leading_prepended, unfolded

        chunks = reader.chunks()
        # Read on until the header ends (or 64 KB): a pipe may hand over
        # "Retur" first, and what is stored must not depend on how the input
        # was chunked.
        head = b""
        for chunk in chunks:
            head += chunk
            if b"\n\n" in head or len(head) >= LEAD_BYTES:
                break
        if self.sender is None and reader.from_line:
            self.sender = self._from_line_sender(reader.from_line)
        # The header only as far as the MTA's own fields go.
        lead = leading_prepended(unfolded(head[:LEAD_BYTES].split(b"\n\n", 1)[0]))
        if self.sender and "_" in self.sender:
            self.sender = self._unfiltered_sender(lead)
        if self.sender is not None and any(name == b"return-path" for name, _ in lead):
            from .message import without_stale_return_path

            trimmed = without_stale_return_path(head, lead, self.sender)
            if trimmed is not None:
                head = trimmed
                lead = [field for field in lead if field[0] != b"return-path"]
        return head, lead, chunks

    def _unfiltered_sender(self, lead):
        """The sender, or the MTA's Return-Path on top when the sender is
        that address as local(8) filtered it for a mailbox_command
        (o'brien@ handed over as o_brien@): the field is right, and stays."""
        from .envelope import check_sender, expansion_filtered
        from .message import address_of

        for name, value in lead:
            if name != b"return-path":
                continue
            path = address_of(value)
            if path != self.sender and expansion_filtered(path) == self.sender:
                try:
                    return check_sender(path)
                except LdaError:
                    break
        return self.sender

    def _from_line_sender(self, line):
        """Without -f or SENDER, the sender of the message's From_ line, as
        dovecot-lda (src/lda/main.c) and procmail take it; checked as -f
        is, and one the check refuses is dropped, never the message."""
        from .envelope import check_sender
        from .message import from_line_sender, text

        sender = from_line_sender(bytes(line))
        if sender is None:
            return None
        try:
            return check_sender(sender)
        except LdaError as e:
            self.log.warning(f"From_ line {text(bytes(line))[:100]!r}: sender ignored: {e}")
            return None

    def _copies(self, plans, first, info, staged, unwritten):
        """Every other recipient's copy (same bytes, its own prefix) into
        staged[i], or the LdaError that keeps recipient i from any into
        unwritten[i] (a mail loop, the first recipient's too)."""
        prefixes = {}
        for i, plan in enumerate(plans):
            loop = loop_error(plan, info)
            if loop is not None:
                unwritten[i] = loop
            elif i:  # the first is staged already, by _stage
                prefixes[i] = prefix_for(plan, self.sender, first.lead)
        copies, failed = md.stage_copies(first, prefixes, self.config.hostname)
        staged.update(copies)
        unwritten.update(failed)

    def redeliver(self, plan, path):
        """Deliver a spooled copy, bytes as they are (prefix included), to the
        plan's targets; DeliveredTo still decides what is a duplicate."""
        from .message import Reader

        with open(path, "rb") as spooled:
            counted = _Counted(spooled)
            reader = Reader(counted, self.config.verify_body)
            for _ in reader.chunks():
                pass
        dir_fd = md.open_path(os.path.dirname(path))
        try:
            staged = md.Staged(dir_fd, os.path.basename(path), counted.size, 0,
                               vsize=counted.vsize.size)
            [result] = self._deliver_together([(plan, staged)], reader.info())
        except LdaError as e:
            result = Result(plan.recipient, e)
        finally:
            os.close(dir_fd)
        self._cleanup_databases()
        return result

    def database(self, db_root):
        """The DeliveredTo table of db_root, open for this delivery (the
        Sieve state of filtering.run_script lives there too)."""
        from ..store.deliveredto import DeliveredTo

        if db_root not in self.databases:
            db = self.kept.pop(db_root, None) if self.kept is not None else None
            if db is not None and not db.is_current():
                # SQLite itself neither checkpoints into a moved file nor
                # deletes the new one's WAL when this closes (databaseIsUnmoved).
                self.log.warning(f"{db.path}: the database file was deleted or replaced "
                                 "since the last delivery; opened again")
                db.close()
                db = None
            self.databases[db_root] = db or DeliveredTo(
                db_root, self.config.expiration_hours,
                self.config.cleanup_interval_seconds, self.clock, kept=self.kept is not None,
                open_root=self._state_opener(db_root))
        return self.databases[db_root]

    def _open(self, target, create=True):
        box = md.open_mailbox(target.maildir_root, target.maildir_relative,
                              target.folder, create, target.create_folder, self.owner,
                              self.config.subscribe_new_folders)
        if box.unsubscribed:
            self.log.warning(f"{target.address}: folder {box.folder[1:]} made but not "
                             f"subscribed: {box.unsubscribed}")
        return box

    def _deliver_together(self, entries, info):
        """A Result for each (plan, its staged copy), all under one set of
        mailbox locks: for each database, one transaction (and one WAL
        sync) for every recipient's pending rows, then the links, synced a
        run at a time, then one for the delivered rows.  A recipient whose
        mailbox moved gets its own 4.2.1; the others go on.  For Maildir
        targets with no Sieve script the pending rows are written, and the
        WAL synced, before the locks are taken (_claim_early), and when
        every target is a plain Maildir delivery the locks go once the
        links are made: the syncs and the delivered rows follow without
        them (_may_sync_unlocked).  Under the locks there is then no sync."""
        results = [Result(plan.recipient) for plan, _ in entries]
        self.claims = self._claim_early(entries, info)
        try:
            return self._deliver_claimed(entries, info, results)
        finally:
            self._forget_unused_claims()

    def _deliver_claimed(self, entries, info, results):
        """_deliver_together's work once the early claims are written."""
        locks = MailboxLocks(self.lock_dir,
                             [t.lock_key for plan, _ in entries for t in plan.targets],
                             self.config.lock_timeout_seconds,
                             open_dir=self._state_opener(self.config.state_dir, "locks"))
        with locks:
            live = []  # (plan, staged, result, targets, filtered)
            # Per target of every recipient: its DeliveredTo key (one dict:
            # _rekey_other_body's change must reach _conclude), copy, Result.
            keys, copy_of, result_of, groups = {}, {}, {}, {}
            for (plan, copy), result in zip(entries, results):
                try:
                    self.resolver.check_current(plan)
                    targets, filtered = self._filter(plan, info, copy)
                except LdaError as e:  # moved away, or refused by a Sieve ereject
                    result.error = e
                    continue
                live.append((plan, copy, result, targets, filtered))
                for target in targets:
                    keys[target] = target.delivered_to_key(info)
                    copy_of[target], result_of[target] = target.staged or copy, result
                    groups.setdefault(target.db_root, []).append(target)
            unlocked = self._may_sync_unlocked(live, keys)
            linked = [self._claim_and_link(self.database(db_root), group, keys, copy_of,
                                           info, result_of, unlocked)
                      for db_root, group in groups.items()]
            released = unlocked and not _failures(live)
            if released:
                locks.release()
            for group in linked:
                self._record_synced(group, keys, copy_of, result_of)
            if not released:
                self._conclude_all(live, info, keys)
        if released:
            if _failures(live):
                # A sync failed after the locks went: what _conclude records
                # (a partial delivery) is recorded under them, as always.
                with MailboxLocks(self.lock_dir, [t.lock_key for t in keys],
                                  self.config.lock_timeout_seconds,
                                  open_dir=self._state_opener(self.config.state_dir,
                                                              "locks")):
                    self._conclude_all(live, info, keys)
            else:
                self._conclude_all(live, info, keys)
        for target in keys:  # the copies of Sieve scripts that edited the header
            if target.staged is not None:
                target.staged.unlink()
        for plan, copy, result, *_ in live:
            self._log_outcomes(plan, info, copy, result)
        return results

    def _claim_early(self, entries, info):
        """{db_root: {DeliveredTo key: file name}}: the pending rows written
        (and the WAL synced, once for every delivery syncing at that
        moment) before the mailbox locks are taken, for keys that have no
        row yet; _claim_and_link then only checks, under the locks, that
        each row still names its file.  Only for Maildir targets with no
        Sieve script: a forward's pending row cannot be checked against a
        file, and a script may change the targets.  Another delivery of the
        same message that takes the locks first finds the row and no file,
        and claims it for itself as from a writer that died; this one then
        finds the other's row (_claim_and_link) and judges it as usual."""
        targets = [(t, copy) for plan, copy in entries for t in plan.targets]
        if not all(t.local for t, _ in targets) or any(self._may_have_scripts(t)
                                                       for t, _ in targets):
            return {}
        groups = {}
        for target, copy in targets:
            groups.setdefault(target.db_root, []).append((target, copy))
        claims = {}
        for db_root, group in groups.items():
            db = self.database(db_root)
            mine = claims[db_root] = {}
            with db.transaction(durable=False):
                found = db.lookup([t.delivered_to_key(info) for t, _ in group])
                for target, copy in group:
                    key = target.delivered_to_key(info)
                    if key not in found and key not in mine:
                        mine[key] = copy.file_name(self.config.hostname)
                db.mark_pending(list(mine.items()), info.body_digest)
            if mine:
                db.sync_wal()  # before any link can be durable: see _claim_and_link
        return claims

    def _claimed(self, target, keys, found):
        """The file name this delivery's _claim_early wrote into the
        target's row, if the row still names it (taken from self.claims:
        what is left there is forgotten at the end); None otherwise."""
        if target.filtered or target.staged is not None:
            return None
        claims = self.claims.get(target.db_root)
        name = claims.get(keys[target]) if claims else None
        row = found.get(keys[target])
        if name is None or not row or row[0] != "pending" or row[1] != name:
            return None
        del claims[keys[target]]
        return name

    def _forget_unused_claims(self):
        """Forget each early claim that no link used (its recipient moved
        away, is over quota, or another delivery claimed the row since),
        as long as its row still names it."""
        claims, self.claims = self.claims, {}
        for db_root, unused in claims.items():
            if unused:
                try:
                    db = self.database(db_root)
                    with db.transaction(durable=False):
                        db.forget_named(list(unused.items()))
                except LdaError:
                    pass  # a row without its file: the next delivery claims it

    def _conclude_all(self, live, info, keys):
        for plan, copy, result, targets, filtered in live:
            self._conclude(plan, targets, copy, info, keys, result)
            if filtered:
                from .filtering import commit_filters

                commit_filters(filtered, result)

    def _may_sync_unlocked(self, live, keys):
        """Whether the mailbox locks may go before new/ is synced and the
        rows marked delivered: only for Maildir targets that no Sieve
        script touched, with no quota warning to write (those steps keep
        the locks).  A delivery of the same message that takes the lock
        meanwhile finds the pending row and the file, and syncs new/ itself
        before it answers "duplicate" (_already_there)."""
        return (not self.config.quota_warnings and all(t.local for t in keys)
                and not any(filtered for *_, filtered in live))

    def _filter(self, plan, info, staged):
        """Run each local target's Sieve script (once the message is known to
        be new for that mailbox); returns the resulting targets and
        [(mailbox target, outcome, state)] to commit after delivery.  The
        Sieve code is imported only for a mailbox that has a script."""
        targets, filtered = [], []
        for target in plan.targets:
            scripts = []
            if target.local and not target.filtered:
                scripts = self._scripts(target, info)
            if not scripts:
                targets.append(target)
                continue
            from .filtering import filter_target

            derived, ran = filter_target(self, scripts, plan, target, info, staged)
            targets.extend(derived)
            if ran is not None:
                filtered.append(ran)
        return targets, filtered

    def _trusted_script(self, path, info):
        """An existing script that only its owner can change; one writable by
        group or others is ignored, as Postfix ignores such a .forward."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        if st.st_mode & 0o022:
            self.log.warning(f"{info.log_id}: {path} is writable by group or others: "
                             "ignored, message kept in INBOX")
            return False
        return True

    def sieve_cache(self):
        """Where compiled scripts are kept.  The cache writes by path: as
        root, the way there is first checked as any state directory's
        (_open_state), so that a symlink planted in it is refused."""
        cache = os.path.join(self.config.state_dir, "sieve-cache")
        if self.as_root:
            os.close(self._open_state(self.config.state_dir, "sieve-cache"))
        return cache

    def _claim_and_link(self, db, targets, keys, staged, info, results, unlocked=False):
        """Claim and link the targets that live in one database; staged[target]
        is its recipient's copy, results[target] its Result.  Returns what
        _record_synced finishes (with the locks held, unless unlocked)."""
        # Rows claimed early (_claim_early) were synced then; under the
        # locks a plain read says whether each still names its file (only
        # a lock holder changes a row that exists), so a delivery whose
        # every target was claimed writes nothing here.
        claimed = {}
        found = db.lookup([keys[t] for t in targets]) if self.claims.get(db.db_root) else {}
        for target in targets:
            name = self._claimed(target, keys, found)
            if name is None:
                continue
            failure = self._quota_failure(target, staged[target].size)
            if failure is not None:
                # Not linked: given back, so that _forget_unused_claims
                # removes the row rather than leave a pending one behind.
                self.claims[target.db_root][keys[target]] = name
                results[target].outcomes[target] = failure
            claimed[target] = name
        rest = [t for t in targets if t not in claimed]
        fresh = []
        if rest:
            # Synced before any link: a power cut that keeps the link into
            # new/ must keep this row too, or the MTA's retry would find no
            # row and deliver a second copy (test_faults' ext4 shutdown
            # caught that).
            with db.transaction(durable=False):
                found = db.lookup([keys[t] for t in rest])
                for target in rest:
                    size = staged[target].size
                    verdict = self.judge(db, target, keys, found, info, size)
                    if verdict is not None:
                        results[target].outcomes[target] = verdict
                        continue
                    name = staged[target].file_name(self.config.hostname)
                    fresh.append((target, name if target.local else None))
                db.mark_pending([(keys[t], name) for t, name in fresh], info.body_digest)
                duplicates = [keys[t] for t in rest
                              if results[t].outcomes.get(t) == DUPLICATE]
                db.mark_delivered(duplicates)
            if fresh or duplicates:
                db.sync_wal()
        pending = [(t, name) for t, name in claimed.items() if t not in results[t].outcomes]
        pending += fresh
        group = _Linked(db, pending)
        try:
            for target, name in pending:
                try:
                    if target.local:
                        group.linked.append((target, *self._link(target, staged[target], name)))
                    else:
                        self._forward(target, staged[target])
                        results[target].outcomes[target] = DELIVERED
                        group.done.append(keys[target])
                except LdaError as e:
                    results[target].outcomes[target] = e
                    group.failed.append(keys[target])
                if len(group.linked) >= SYNC_BATCH:
                    self._sync_linked(group.linked, keys, results, group.done, group.failed)
        except BaseException:
            group.close()  # only when something unexpected was raised
            raise
        if not unlocked:
            self._record_synced(group, keys, staged, results)
        return group

    def _record_synced(self, group, keys, staged, results):
        """Sync what is still unsynced of a _claim_and_link, then mark its
        rows delivered (or forget those that failed); once only."""
        if group.recorded:
            return
        group.recorded = True
        db, pending = group.db, group.pending
        try:
            self._sync_linked(group.linked, keys, results, group.done, group.failed)
        finally:
            group.close()  # only when something unexpected was raised
        # Not synced when every target is a local Maildir: its synced pending
        # row names the file, and new/ was synced after the link, so a power
        # cut that takes this commit back leaves a row that _already_there
        # resolves by finding the file.  A forward leaves nothing to find.
        # Without the locks (see _may_sync_unlocked) another delivery may have
        # replaced a failed row with its own: a row is forgotten only while it
        # still names this delivery's file.
        names = {keys[t]: name for t, name in pending}
        with db.transaction(durable=any(not t.local for t, _ in pending)):
            db.mark_delivered(group.done)
            db.forget_named([(key, names.get(key)) for key in group.failed])
            db.read_cleanup_stamp()  # for _cleanup_databases, without a read of its own
        self._warn_quota(db, [t for t, _ in pending], keys, staged, results)

    def judge(self, db, target, keys, found, info, size):
        """DUPLICATE, the LdaError that keeps the target from the message
        (its quota), or None: go ahead.  found: db.lookup() of the keys."""
        row = found.get(keys[target])
        if row and self._other_body(row, info):
            row = self._rekey_other_body(db, target, keys, info)
        if row and self._already_there(target, row):
            return DUPLICATE
        return self._quota_failure(target, size) or None

    def _warn_quota(self, db, targets, keys, staged, results):
        """A warning into each mailbox whose usage these deliveries took
        across a quota_warnings threshold (lda.deliver.quotawarn, which is
        imported only when one is configured and the mailbox has a limit).
        Still under the mailbox locks; it never changes a result."""
        if not self.config.quota_warnings:
            return
        delivered = [t for t in targets if _has_quota(t) and not t.quota.unlimited()
                     and results[t].outcomes.get(t) == DELIVERED]
        if delivered:
            from .quotawarn import warn

            warn(self, db, delivered, keys, staged)

    def _may_have_scripts(self, target):
        """False when no Sieve script can run for the local target: one or
        two stats say so for most mailboxes, once a delivery (_claim_early
        asks before the locks, _scripts under them)."""
        path = target.maildir_path
        known = self._may_run_scripts.get(path)
        if known is None:
            known = self._may_run_scripts[path] = self._scripts_exist(path)
        return known

    def _scripts_exist(self, path):
        config = self.config
        found = bool(config.sieve_before or config.sieve_after or config.sieve_default
                     # lexists: a link that leads nowhere is logged (_scripts)
                     or os.path.lexists(config.sieve_script_for(path))
                     or (config.per_user and os.path.lexists(os.path.join(config.home,
                                                                          ".dovecot.sieve"))))
        if not found and config.per_user and not self.procmail:
            self._note_procmailrc()
        return found

    def _note_procmailrc(self):
        """A user without a Sieve script whose ~/.procmailrc is still there
        (lda took procmail's place) has recipes that no longer run: say so,
        each delivery, with the command that translates them."""
        procmailrc = os.path.join(self.config.home, ".procmailrc")
        if os.path.isfile(procmailrc):
            self.log.warning(f"{procmailrc} is not read: lda runs Sieve (~/.lda.sieve or "
                             f"~/.dovecot.sieve); `lda procmail-convert {procmailrc}` "
                             "prints its recipes as Sieve")

    def _scripts(self, target, info):
        """The trusted scripts to run for a local target (sievescripts).
        Most mailboxes have none (_may_have_scripts), and only a delivery
        that may have one imports the code that orders them."""
        if not self._may_have_scripts(target):
            return []
        from .sievescripts import scripts_for

        return [path for path in scripts_for(self.config, target.maildir_path,
                                             self._log_passed_over)
                if self._trusted_script(path, info)]

    def _log_passed_over(self, line):
        """Why a script that is there does not run (sievescripts): once a
        delivery, however many of its recipients share the mailbox."""
        if line not in self._passed_over:
            self._passed_over.add(line)
            self.log.warning(line)

    def _sync_linked(self, linked, keys, results, done, failed):
        """Sync the directories linked into since the last call (see
        maildir.sync_linked); only then does each delivery count."""
        for target, path, error in md.sync_linked(linked):
            if error is None:
                results[target].outcomes[target] = DELIVERED
                results[target].stored_in[target] = os.path.dirname(path)
                done.append(keys[target])
            else:
                results[target].outcomes[target] = CannotCreate(f"{path}: {error.strerror}")
                failed.append(keys[target])

    def _quota_failure(self, target, size):
        if not _has_quota(target) or target.quota.unlimited():
            return None
        from ..store.maildirsize import quota_failure

        return quota_failure(self.config, target, size, self.clock)

    def _other_body(self, row, info):
        """verify_body: a known key whose recorded body differs is not the
        same message (a reused or forged Message-ID)."""
        return (self.config.verify_body and row[2] is not None
                and info.body_digest is not None and row[2] != info.body_digest)

    def _rekey_other_body(self, db, target, keys, info):
        """Record the other message under (Message-ID + its digest), so it is
        delivered once and its own resends are still caught."""
        mailbox, message_id, submit_time = keys[target]
        keys[target] = (mailbox, f"{message_id}#body:{info.body_digest}", submit_time)
        self.log.warning(f"{info.log_id}: {target.address}: same Message-ID, different "
                         "body: delivered as a different message (verify_body)")
        return db.lookup([keys[target]]).get(keys[target])

    def _already_there(self, target, row):
        state, location, _ = row
        if state == "delivered":
            return True
        # A pending row: its writer died holding the lock we now hold, a
        # power cut took back its unsynced "delivered" commit, or its writer
        # let the locks go and is syncing new/ (_may_sync_unlocked).  The
        # file name in it tells whether the link into new/ happened: found
        # in new/, in cur/ or in another folder, where a reader (IMAP MOVE)
        # may have taken it meanwhile (Maildir.contains).
        if not (target.local and location):
            return False  # a forward cannot be checked: a duplicate beats a loss
        try:
            box = self._open(target, create=False)
        except MaildirMissing:
            # Killed while _link created the Maildir: without its new/ and
            # cur/ the file cannot be there, and _link finishes creating it.
            return False
        try:
            if not box.contains(location):
                return False
            # The link may not be durable yet (its writer is still to sync
            # new/, or died first): "duplicate" only once it is.
            try:
                box.sync_contents()
            except OSError as e:
                raise CannotCreate(f"{box.path}: cannot sync: {e.strerror}") from None
            return True
        finally:
            box.close()

    def _link(self, target, staged, name):
        """Link the staged file into the target's Maildir (maildir.link);
        returns (a descriptor of the directory, its path) for the caller
        to sync and close.  A plain delivery into an INBOX opens new/ alone
        (maildir.link_new); the whole Maildir is opened (and made, if need
        be) for the other cases, or when that cannot link."""
        linked, folder = None, None
        if not (target.folder or target.info or target.keywords):
            linked = md.link_new(staged, target.maildir_root, target.maildir_relative, name,
                                 self.owner)
        if linked is not None:
            self.touched.add(target.maildir_path)
        else:
            box = self._open(target)
            self.touched.add(box.path)
            try:
                keywords = ""
                if target.keywords:  # only from a Sieve script: filtering is loaded
                    from .filtering import keyword_letters

                    keywords = keyword_letters(box, target, self.config.lock_timeout_seconds,
                                               self.log)
                linked = md.link(staged, box, name, target.info, self.config.hostname,
                                 keywords)
            finally:
                box.close()
            folder = box.folder
        try:
            self._add_usage(target, staged, folder)
        except BaseException:
            os.close(linked[0])
            raise
        return linked

    def _add_usage(self, target, staged, folder):
        """One maildirsize line for the message stored in folder (the
        folders of quota_ignore_folders, and under the courier rules .Trash
        and T-flagged messages, are left out)."""
        if _has_quota(target):
            from ..store.maildirsize import Rules, add_usage, counts_towards_quota

            if not counts_towards_quota(folder, target.info, Rules.of(self.config)):
                return
            try:
                add_usage(target.maildir_path, staged.size)
            except LdaError as e:  # delivered already; the next read recalculates
                self.log.warning(f"{target.address}: maildirsize not updated: {e}")

    def _forward(self, target, staged):
        from .sendmail import past_return_path, sendmail

        if target.reply is not None:  # RFC 5230 5.1: a vacation reply goes from <>
            sendmail(self.sendmail, "", target.address, target.reply)
            return
        try:
            fd = staged.open()
        except OSError as e:  # as a sendmail that cannot run: this target fails alone
            raise ForwardFailed(f"cannot read the copy to forward: {e.strerror}") from None
        try:
            past_return_path(fd)
            sendmail(self.sendmail, self.sender, target.address, fd)
        finally:
            os.close(fd)

    def _conclude(self, plan, targets, staged, info, keys, result):
        """Primary failure: the recipient fails.  Forward failure: partial,
        unless no target at all took the message or the copy cannot be kept
        for retry.  A vacation reply that could not be sent is only logged:
        its retry is the next message."""
        result.error, partial = verdict(plan, targets, result.outcomes)
        for target, error in partial.items():
            try:
                self._record_partial(plan, target, error, target.staged or staged, info,
                                     keys[target])
            except LdaError as e:
                # Neither forwarded nor kept: only a retry of this recipient
                # keeps the copy from being lost (its delivered targets are
                # then duplicates); the other recipients stand.
                result.error = TemporaryFailure(
                    f"{target.address}: {error.reply_text()}; {e}")
                # Its status line (_log_outcomes) says why, once, with the
                # figures the public reason leaves out.
                result.outcomes[target] = TemporaryFailure(f"{error}; {e}")
                return
            result.partial.append(target)

    def _record_partial(self, plan, target, error, staged, info, key):
        """Spool a copy for `lda partial retry`; a resend of a message that is
        already spooled for this target only counts another attempt."""
        db = self.database(target.db_root if target.local else plan.home_db)
        reason = error.reason()  # led by the RFC 3463 code the DSN will carry
        with db.transaction():
            existing = db.pending_partial(target.address, key)
            if existing is not None:
                db.count_attempt(existing, reason)
                return
        try:
            spool_fd = self._open_state(db.db_root, "partial")
        except LdaError as e:
            raise CannotCreate(f"cannot keep a copy for retry: {e}") from None
        try:
            spool = md.spool(staged, spool_fd, f"{db.db_root}/partial",
                             self.config.hostname)
        except OSError as e:
            raise CannotCreate(f"cannot keep a copy for retry in {db.db_root}/partial: "
                               f"{e.strerror}") from None
        finally:
            os.close(spool_fd)
        with db.transaction():
            db.record_partial(self.sender or "", plan.canonical, target.address,
                              target.mailbox, key, reason, spool)

    def _log_outcomes(self, plan, info, staged, result):
        """Statuses as Postfix logs them (sent, deferred, bounced), so that
        a log reader counts lda's targets as it counts Postfix's; lda's own
        "duplicate" says what no Postfix status does."""
        for target, outcome in result.outcomes.items():
            if outcome == DELIVERED:
                status, dsn, detail = "sent", "2.0.0", self._sent_detail(target, result)
                self._log_fallback(target, result)
            elif outcome == DUPLICATE:
                status, dsn, detail = "duplicate", "2.0.0", (
                    "already delivered within expiration_hours; discarded")
            elif target in result.partial:  # `lda partial retry` tries again
                status, dsn, detail = "deferred", outcome.status, (
                    f"{outcome}; partial delivery, message kept for retry")
            elif target.reply is not None:  # never retried: see _conclude
                status, dsn, detail = "bounced", outcome.status, (
                    f"{_reply_kind(target)} not sent: {outcome}")
            else:
                status, dsn, detail = failure_status(outcome), outcome.status, str(outcome)
            self.log.target(info.log_id, target.address,
                            self._log_original or plan.canonical, status, dsn, detail)

    def _log_fallback(self, target, result):
        """A Sieve fileinto of a folder that does not exist (no :create, as
        Dovecot's lda_mailbox_autocreate = no) stored into the INBOX: said
        once the copy is there, not when the INBOX was opened for it."""
        if (target.filtered and target.folder and target.local
                and result.stored_in.get(target) == target.maildir_path):
            self.log.warning(f"{target.address}: folder {target.folder[1:]} does not "
                             "exist; delivered to INBOX instead")

    def _sent_detail(self, target, result):
        """Where a copy went: the Maildir or the folder (an address
        extension's, a Sieve fileinto's) it was stored in, or how it left."""
        if target.local:
            return f"delivered to maildir {result.stored_in.get(target, target.maildir_path)}"
        if target.reply is not None:
            return f"{_reply_kind(target)} sent with {self.sendmail[0]}"
        return f"forwarded with {self.sendmail[0]}"

    def _cleanup_databases(self):
        """Prune expired rows when due, and then (as rarely) the tmp/ files
        that killed deliveries left in the Maildirs just written."""
        swept = False
        for db_root, db in self.databases.items():
            try:
                swept |= db.cleanup_if_due() is not None
            except Exception as e:  # cleanup must never fail a delivery
                self.log.warning(f"{db.path}: cleanup skipped: {e}")
            if self.kept is not None:
                self.kept[db_root] = db  # last, as the most recently used
            else:
                db.close()
        while self.kept and len(self.kept) > KEPT_DATABASES:
            self.kept.pop(next(iter(self.kept))).close()  # least recently used
        self.databases = {}
        for path in self.touched if swept else ():
            for name in md.sweep_tmp(path, self.clock()):
                self.log.info(f"removed stale {path}/tmp/{name}")
        self.touched = set()


def bounced_alone(results):
    """The indexes of the recipients refused for good that a command bounces
    alone (Delivery._bounce_alone): none when one failed only for now (the
    MTA retries them all) or none has its copy."""
    if (all(r.error is not None for r in results)
            or any(r.error is not None and not r.error.bounces for r in results)):
        return []
    return [i for i, r in enumerate(results) if r.error is not None]


def verdict(plan, targets, outcomes):
    """(the recipient's error or None, {forward target: its error} to keep
    as partial deliveries) from the outcomes of its targets: a primary
    failure fails the recipient, and so does every target failing."""
    failures = {t: o for t, o in outcomes.items()
                if isinstance(o, LdaError) and t.reply is None}
    primary = [o for t, o in failures.items() if t.primary]
    if primary:
        return primary[0], {}
    if not failures:
        return None, {}
    if len(failures) == len([t for t in targets if t.reply is None]):
        errors = list(failures.values())
        permanent = all(e.permanent for e in errors)
        return (errors[0] if permanent else TemporaryFailure(
            f"no target of {plan.canonical} could take the message: "
            + "; ".join(f"{t.address}: {e.reply_text()}" for t, e in failures.items()))), {}
    return None, failures


def _reply_kind(target):
    """What a reply target sends, from its key ("reject:MAILBOX:TO",
    filtering.targets_for): a vacation reply, a notification, a reject's
    refusal."""
    kind = (target.key or "").partition(":")[0]
    names = {"vacation": "vacation reply", "notify": "notification"}
    return names.get(kind) or f"Sieve {kind or 'reply'} message"


class _Counted:
    """A stream's reader that counts the bytes as they are on disk: the
    spooled copy is linked as it is, so its names must say its own sizes,
    not those of the bytes Reader makes of it (a CR CR LF, which became
    CR LF when the message came in, would become LF)."""

    def __init__(self, stream):
        self.stream, self.size, self.vsize = stream, 0, md.VirtualSize()

    def read(self, n):
        data = self.stream.read(n)
        self.size += len(data)
        return self.vsize.add(data)


def _after(head, chunks):
    """The message's chunks, the header already read (head) first."""
    yield head
    yield from chunks

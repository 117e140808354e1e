"""Running a mailbox's Sieve script inside a delivery.

The script runs under the mailbox lock, after DeliveredTo has said the
message is new for this mailbox (a resend is a duplicate before any script
runs, so it is neither redirected nor answered again).  Its actions become
delivery targets: keep and fileinto store into the mailbox (each extra store
keyed by its folder), redirect is a forward target keyed per mailbox, and
discard stores nothing.  Duplicate and vacation state lives in the
mailbox's database and is written only once the message is stored (RFC 7352
section 3).
"""

import os

from ..errors import LdaError, Rejected

# The header block read back from a staged copy, at most (message.MAX_HEADER_BYTES).
MAX_HEADER_BYTES = 8 << 20


class SieveState:
    """RFC 7352 duplicate and RFC 5230 vacation memory in SQLite."""

    def __init__(self, db, mailbox, clock, maildir=None):
        self.db, self.mailbox, self.now = db, mailbox, clock
        self.maildir = maildir

    def mailbox_exists(self, name):
        """RFC 5490 mailboxexists: INBOX, or the Maildir++ folder's directory."""
        import os

        from ..store.folders import UnsafeFolder, check_folder, maildir_folder

        try:
            folder = maildir_folder(check_folder(name))
        except UnsafeFolder:
            return False
        return folder is None or (self.maildir is not None
                                  and os.path.isdir(os.path.join(self.maildir, folder)))

    def duplicate_seen(self, key, seconds, last):
        row = self.db.conn.execute(
            "SELECT expires FROM sieve_duplicates WHERE mailbox = ? AND key = ?",
            (self.mailbox, key)).fetchone()
        return row is not None and row[0] > self.now()

    def duplicate_record(self, key, seconds, last):
        if last or not self.duplicate_seen(key, seconds, last):
            self.db.conn.execute("INSERT OR REPLACE INTO sieve_duplicates VALUES (?, ?, ?)",
                                 (self.mailbox, key, self.now() + seconds))

    def vacation_recently(self, sender, handle, seconds):
        row = self.db.conn.execute(
            "SELECT sent_at FROM sieve_vacations WHERE mailbox = ? AND sender = ? "
            "AND handle = ?", (self.mailbox, sender.lower(), handle)).fetchone()
        return row is not None and self.now() - row[0] < seconds

    def vacation_record(self, sender, handle, seconds):
        now = self.now()
        self.db.conn.execute("INSERT OR REPLACE INTO sieve_vacations (mailbox, sender, handle, "
                             "sent_at, expires) VALUES (?, ?, ?, ?, ?)",
                             (self.mailbox, sender.lower(), handle, now, now + seconds))


class Message:
    """What a script may look at: the header fields and the size, and the
    whole message through raw() (read only when a body or mime test runs)."""

    def __init__(self, headers, size, staged=None):
        self.headers, self.size, self.staged = headers, size, staged

    def raw(self, limit):
        """The first `limit` bytes of the message as stored, after the
        Return-Path/Delivered-To lines lda prepended (staged.prefix_len)."""
        fd = self.staged.open()
        try:
            data, offset = [], self.staged.prefix_len
            while limit > 0:
                chunk = os.pread(fd, min(limit, 1 << 20), offset)
                if not chunk:
                    break
                data.append(chunk)
                offset += len(chunk)
                limit -= len(chunk)
            return b"".join(data)
        finally:
            os.close(fd)


class EditedHeaders:
    """A script's edited header (Outcome.header, editheader) as the next
    script of a sequence reads it."""

    def __init__(self, header):
        self.edited = header
        self.fields = [(name, value) for name, value, _ in header]

    def as_written(self):
        """The edited values are Sieve's already (Headers.as_written)."""
        return self.fields


class HeaderMismatch(Exception):
    """The staged copy's header is not the one the script saw."""


def targets_for(outcome, target, log, log_id):
    """The delivery targets a script's outcome makes of one mailbox target."""
    from .resolve import Target

    derived, stores = [], 0
    for action in outcome.all_actions():
        kind = type(action).__name__
        if kind in ("Keep", "FileInto"):
            folder = action.maildir_folder if kind == "FileInto" else target.folder
            # A keep goes where the target went, made as it would have been
            # (dovecot-lda's -m with lda_mailbox_autocreate).
            create = action.create if kind == "FileInto" else target.create_folder
            store = target.derive(folder=folder, info=action.maildir_info or None,
                                  create_folder=create,
                                  suffix=None if stores == 0 else f"#{folder or 'INBOX'}",
                                  keywords=action.keywords)
            derived.append(store)
            stores += 1
        elif kind == "Redirect":
            derived.append(Target(action.address, target.db_root, primary=False,
                                  lock_key=target.mailbox,
                                  key=f"redirect:{target.mailbox}:{action.address}"))
        elif getattr(action, "reply_bytes", None) is not None:  # vacation, reject...
            derived.append(Target(action.to, target.db_root, primary=False,
                                  lock_key=target.mailbox, reply=action.reply_bytes,
                                  key=f"{kind.lower()}:{target.mailbox}:{action.to}"))
    if not derived:
        log.info(f"{log_id}: to=<{target.address}>, status=discarded (by Sieve script)")
    return derived


def keyword_letters(box, target, timeout, log):
    """The info letters for target's keywords in the Maildir folder box
    (store/keywords.py): a keyword refused, or a dovecot-keywords that
    cannot be used, is logged and left out; the message is stored all the
    same, with the flags that fit."""
    from ..errors import KeywordsUnusable
    from ..store.keywords import assign

    try:
        letters, refused = assign(box.dir_fd, box.path, target.keywords, timeout)
    except KeywordsUnusable as e:
        log.warning(f"{target.address}: keywords {' '.join(target.keywords)} not stored: {e}")
        return ""
    for name, why in refused:
        log.warning(f"{target.address}: keyword {name} not stored in {box.path}: {why}")
    return letters


def filter_target(delivery, scripts, plan, target, info, staged):
    """The targets that the scripts at paths `scripts` (in order, see
    sievescripts.py) make of one mailbox target of plan, and what to commit
    once they are stored: (target, outcome, state), or None when no script
    ran (a resend, or the scripts are gone), and the target stands as it was."""
    outcome, state = run_scripts(delivery, scripts, plan, target, info, staged)
    if outcome is None:
        return [target], None
    refusal = next((a for a in outcome.actions if type(a).__name__ == "Ereject"), None)
    if refusal is not None and len(plan.targets) == 1 and not delivery.shared_status:
        # RFC 5429 section 2.1.1: refused in the protocol, nothing stored.
        # A mailbox among several of one recipient, or one recipient among
        # several that share a command's exit status, sends its MDN instead.
        raise Rejected(refusal.reason)
    derived = targets_for(outcome, target, delivery.log, info.log_id)
    if outcome.header is not None and delivery.writes:
        edit_copies(delivery, derived, outcome.header, info, staged)
    return derived, (target, outcome, state)


def edit_copies(delivery, targets, header, info, staged):
    """Give the targets that carry the message (its stores and redirects,
    not a vacation reply) one copy with the header a script edited (RFC
    5293 section 7): lda's prefix on top, the body byte for byte.  When
    that copy cannot be made they keep the message as it came, logged."""
    carriers = [t for t in targets if t.reply is None]
    if not carriers or [s for *_, s in header] == list(range(len(info.headers.fields))):
        return  # nothing left edited (addheader, then deleteheader of it)
    from ..store.maildir import stage_edited

    try:
        head, skip = edited_head(staged, header, info.headers.fields)
        copy = stage_edited(staged, head, skip, delivery.config.hostname)
    except (LdaError, OSError, HeaderMismatch) as e:
        delivery.log.warning(f"{info.log_id}: sieve: header edits not applied: "
                             f"{getattr(e, 'strerror', None) or e}")
        return
    for target in carriers:
        target.staged = copy


def edited_head(staged, header, fields):
    """(lda's prefix + the edited header block, the offset in the staged
    file where what follows the original header block begins)."""
    prefix, block, skip = read_header(staged)
    lead, chunks = raw_fields(block)
    where, j = {}, 0
    for i, (name, _) in enumerate(fields):
        if j < len(chunks) and chunks[j].partition(b":")[0].strip().lower() == name:
            where[i] = j
            j += 1
        elif name != b"return-path":  # a stale one lda dropped (message.py)
            raise HeaderMismatch(f"field {i + 1} ({name!r}) not found in the staged copy")
    if j != len(chunks):
        raise HeaderMismatch("the staged copy has more fields than the script saw")
    parts = [prefix, lead]
    for _, _, source in header:
        if isinstance(source, int) and source not in where:
            continue
        raw = chunks[where[source]] if isinstance(source, int) else source
        parts.append(raw if raw.endswith(b"\n") else raw + b"\n")
    return b"".join(parts), skip


def read_header(staged):
    """(lda's prefix, the header block with its last newline, the offset of
    the blank line or end that follows it) of a staged copy, found as
    message.Reader finds them."""
    fd = staged.open()
    try:
        data, searched = b"", 0
        while True:
            chunk = os.read(fd, 1 << 16)
            data += chunk
            head = data[staged.prefix_len:]
            if head[:1] == b"\n":
                return data[:staged.prefix_len], b"", staged.prefix_len
            end = head.find(b"\n\n", searched)
            if end >= 0:
                return data[:staged.prefix_len], head[:end + 1], staged.prefix_len + end + 1
            if not chunk:
                return data[:staged.prefix_len], head, len(data)
            if len(head) > MAX_HEADER_BYTES:
                raise HeaderMismatch("header block too large to edit")
            searched = max(0, len(head) - 1)
    finally:
        os.close(fd)


def raw_fields(block):
    """(lines before the first field, [each field's bytes with its folded
    lines]), split as message.Headers splits them, so that field i here is
    field i of Headers.fields; a line that is no field goes with the one
    before it."""
    lead, chunks = b"", []
    pieces = block.split(b"\n")
    for k, line in enumerate(pieces):
        raw = line + b"\n" if k < len(pieces) - 1 else line
        if line[:1] in (b" ", b"\t") and chunks:
            chunks[-1] += raw
        elif b":" in line:
            chunks.append(raw)
        elif chunks:
            chunks[-1] += raw
        else:
            lead += raw
    return lead, chunks


def run_scripts(delivery, scripts, plan, target, info, staged):
    """(outcome, state) of the target's scripts run in sequence, in
    delivery's envelope and database; (None, None) for a message that
    mailbox already has, or when no script could be found any more.

    Pigeonhole's sequence (its INSTALL, "Executing Multiple Scripts
    Sequentially", after draft-degener-sieve-multiscript): the next script
    runs only while a keep, explicit or implicit, is in effect when one
    ends, so `stop` ends only its own script and `discard; stop;` ends
    them all; an error ends the sequence with a keep, and what earlier
    scripts did stands.
    """
    from ..sieve import Envelope, evaluate

    db = delivery.database(target.db_root)
    key = target.delivered_to_key(info)
    row = db.lookup([key]).get(key)
    if row and row[0] == "delivered":
        return None, None  # a resend: a duplicate, not filtered again
    state = SieveState(db, target.mailbox, delivery.clock, target.maildir_path)
    config = delivery.config
    # extensions/include.py reads the mailbox's :personal directory and the
    # cache its included scripts are compiled into from the options.
    cache = delivery.sieve_cache()
    options = dict(config.sieve_options(), postmaster=config.postmaster,
                   sieve_dir=config.sieve_dir_for(target.maildir_path), sieve_cache_dir=cache)
    if delivery.sieve_trace is not None:
        options["trace"] = delivery.sieve_trace
    envelope = Envelope(delivery.sender or "", plan.canonical,
                        delivery.original_recipient or plan.canonical,
                        config.recipient_delimiter, environment=environment(delivery),
                        options=options)
    # The message as the MTA handed it, as the header tests see it: lda's
    # own Return-Path and Delivered-To on top of the copy are not counted.
    size = staged.size - staged.prefix_len
    message = Message(info.headers, size, staged)
    outcomes, flags = [], ()
    for path in scripts:
        # imap4flags' internal variable goes on from one script to the next,
        # as in Pigeonhole: a flag sieve_before adds reaches the implicit keep.
        outcome = evaluate(path, cache, message, envelope, state, flags)
        if outcome is None:
            continue  # removed since it was found
        for line in outcome.errors:
            delivery.log.warning(f"{info.log_id}: sieve: {line}")
        for line in outcome.log:
            delivery.log.info(f"{info.log_id}: {path}: {line}")
        outcomes.append(outcome)
        flags = outcome.flags
        if outcome.errors or not _keeps(outcome):
            break
        if outcome.header is not None:  # the next script sees the edits
            message = Message(EditedHeaders(outcome.header), size, staged)
    if not outcomes:
        return None, None
    return sequence_outcome(outcomes), state


def environment(delivery):
    """RFC 5183 items the delivery knows: this host, and the LMTP client
    (delivery.peer) when there is one; extensions/environment.py has the
    rest and the defaults."""
    hostname = delivery.config.hostname
    items = {"host": hostname, "domain": hostname.partition(".")[2] or hostname}
    address, name = delivery.peer or ("", "")
    if address:  # not over a Unix socket
        items["remote-ip"] = address
    if name:
        items["remote-host"] = name
    return items


def _keeps(outcome):
    """Whether a keep is in effect when the script ends: the next one runs."""
    from ..sieve import Keep

    return outcome.implicit_keep or any(isinstance(a, Keep) for a in outcome.actions)


def sequence_outcome(outcomes):
    """One Outcome for the scripts run in sequence.

    A keep in any script but the last that ran only let the next one run
    (Pigeonhole: the message goes to INBOX only if the last script keeps);
    every other action stands.  As in Pigeonhole (dovecot-lda side by
    side, tests/test_sieve_migration.py), the keep that stores is the last
    explicit one, and an implicit keep at the end stores with the flags of
    an earlier script's explicit keep when there is one; nothing is done
    twice: one store per folder, with the flags of the first script that
    stored there (Pigeonhole has stored it before the next script runs),
    one redirect per address, only the first vacation reply, and one
    notification per address.
    """
    from ..sieve import Keep, Outcome

    if len(outcomes) == 1:
        return outcomes[0]  # one script: its own outcome, exactly as it was
    actions, kept = [], None
    for i, outcome in enumerate(outcomes):
        last = i == len(outcomes) - 1
        for action in outcome.all_actions() if last else outcome.actions:
            if isinstance(action, Keep) and not last:
                kept = action
                continue
            if isinstance(action, Keep) and action.implicit and kept is not None:
                action = kept
            _merge(actions, action)
    records = [record for outcome in outcomes for record in outcome.records]
    # Each script began with the header its predecessor left: the last
    # edited one holds every edit.
    header = next((o.header for o in reversed(outcomes) if o.header is not None), None)
    return Outcome(actions, implicit_keep=False, records=records, header=header)


def _merge(actions, action):
    """Add action to actions unless one already does the same (a store
    into a folder stored into already: the first, with its flags)."""
    from ..sieve import Discard, FileInto, Keep, Redirect, Vacation

    kind = type(action)
    if kind is Discard:
        return  # it only cancelled a keep
    for i, done in enumerate(actions):
        if kind is Redirect and type(done) is Redirect and done.address == action.address:
            return
        if kind is Vacation and type(done) is Vacation:
            return
        if kind is type(done) and hasattr(done, "reply_bytes") \
                and done.to.lower() == action.to.lower():
            return  # a notification (enotify) to one address goes once
        if (kind in (Keep, FileInto) and type(done) in (Keep, FileInto)
                and done.maildir_folder == action.maildir_folder):
            return
    actions.append(action)


def commit_filters(filtered, result):
    """Record duplicate IDs and vacation replies only for a mailbox whose
    copies all landed (RFC 7352 section 3)."""
    for target, outcome, state in filtered:
        mine = [o for t, o in result.outcomes.items() if t.lock_key == target.mailbox]
        if any(isinstance(o, LdaError) for o in mine):
            continue
        with state.db.transaction():
            outcome.commit(state)

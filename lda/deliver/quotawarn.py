"""Quota warnings: a message into the mailbox when a delivery
takes its usage across a threshold, as Dovecot's quota_warning and
Courier's quotawarnmsg tell a user before the mailbox is full.

A threshold is lda.toml's quota_warnings entry ("storage 80%"), parsed by
config.parse_thresholds.  A delivery crosses it when the usage before the
message is below that share of the mailbox's limit and the usage after is
at or above it; only the highest threshold of each kind crossed at once
warns (as Dovecot runs only the first matching quota_warning).  Crossing
again, after the usage fell below, warns again.

The warning is a message like any other: it has a Message-ID derived from
the threshold and the triggering message's DeliveredTo key, so a retried
trigger finds it in the DeliveredTo table and no second warning is made;
it is staged in tmp/, linked into the INBOX's new/ and synced by the same
functions as every delivery (maildir.stage, Delivery._link,
maildir.sync_linked).  It is exempt from the quota check (a full mailbox
still gets told), not from the count: Delivery._link appends its size to
maildirsize as for any message, so lda's figures keep agreeing with
Dovecot's and Courier's recounts, which count every file.

Which thresholds were last sent is kept in the Maildir root, in
lda-quota-warnings: it moves with the mailbox (lda mailbox move renames or
copies the whole Maildir), per-user mode has it where Dovecot's own state
lives, and `lda quota show` reads it without opening a mailbox database.
It is replaced atomically (tmp/ then rename), never through a symlink.
Each warning also touches quotawarn there, Courier's mark: deliverquota -w
sends no warning while that file is less than a day old (maildirquota.c,
do_deliver_warning), so a Maildir shared with it is not warned twice.

This module is imported only by a delivery to a mailbox with a limit when
thresholds are configured (Delivery._warn_quota), and by `lda quota show`.
Nothing here may fail the triggering delivery: `warn` logs one line for
any error and returns.
"""

import os
import time

from ..store import maildir as md
from ..store.maildirsize import Rules, Usage, counts_towards_quota, read_usage
from .resolve import Target

RECORD = "lda-quota-warnings"
# Courier's once-a-day mark in the Maildir root: only its mtime is read.
COURIER_MARK = "quotawarn"
# The record holds a few lines per threshold; more is not ours.
RECORD_MAX = 65536
TEMPLATE_MAX = 65536
DEFAULT_SUBJECT = "Your mailbox is $percent% full"
DEFAULT_BODY = """\
Your mailbox $address has reached $percent% of its $kind quota:
$used of $limit.

When it is full, new messages for you are held back by the mail system
and, if no room is made, returned to their senders.  Please delete the
messages you no longer need, and empty your Trash folder.

This message was generated automatically when the mailbox passed
$threshold% of its $kind quota.
"""
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
          "Dec")


def crossed(thresholds, quota, before, after):
    """[(kind, percent)]: for each kind with a limit, the highest threshold
    that before < percent% of the limit <= after (integer arithmetic, so
    80% of 1,000 bytes is crossed at exactly 800).  thresholds come highest
    first per kind (config.parse_thresholds)."""
    found = []
    for kind, percent in thresholds:
        limit = getattr(quota, kind)
        if limit <= 0 or any(k == kind for k, _ in found):
            continue
        if getattr(before, kind) * 100 < percent * limit <= getattr(after, kind) * 100:
            found.append((kind, percent))
    return found


def warn(delivery, db, targets, keys, staged):
    """Delivery._warn_quota's work: targets are the local targets with a
    limit that this group delivered (keys, staged: Delivery's, per
    target).  One warning per threshold crossed, per mailbox; any error is
    one log line, and the delivery's result stands."""
    by_mailbox = {}
    for target in targets:
        by_mailbox.setdefault(target.maildir_path, []).append(target)
    for group in by_mailbox.values():
        try:
            _warn_mailbox(delivery, db, group, keys, staged)
        except Exception as e:  # a warning never fails the delivery that triggered it
            delivery.log.warning(f"{group[0].address}: quota warning not delivered: "
                                 f"{type(e).__name__ if not str(e) else e}")


def _warn_mailbox(delivery, db, targets, keys, staged):
    """The usage after this group's copies (maildirsize, read as a delivery
    reads it) and before them (minus the copies that count: a Trash copy
    does not), and a warning for each threshold crossed between."""
    rules = Rules.of(delivery.config)
    counted = [t for t in targets if counts_towards_quota(t.folder, t.info, rules)]
    if not counted:
        return
    first = counted[0]
    after = read_usage(first.maildir_path, first.quota, delivery.clock, rules=rules)
    before = Usage(after.storage - sum(staged[t].size for t in counted),
                   after.messages - len(counted))
    for kind, percent in crossed(delivery.config.quota_warnings, first.quota, before, after):
        deliver_warning(delivery, db, first, keys[first], (kind, percent), after)


def warning_id(threshold, trigger_key, hostname):
    """The warning's Message-ID (without <>): the same for a retried
    trigger, so DeliveredTo keeps it to one copy; another for another
    trigger, so crossing again warns again."""
    from ..startup.hashlib import sha256

    kind, percent = threshold
    digest = sha256("\0".join(trigger_key).encode("utf-8", "surrogateescape")).hexdigest()
    return f"quota-warning.{kind}-{percent}.{digest[:32]}@{hostname}"


def deliver_warning(delivery, db, target, trigger_key, threshold, usage):
    """Stage the warning in the mailbox's INBOX tmp/, store it (_store),
    then record it as sent.  Returns the path it was linked into, or None
    when DeliveredTo says it is there already."""
    config = delivery.config
    inbox = Target(target.address, target.db_root, target.mailbox, target.maildir_root,
                   target.maildir_relative, quota=target.quota)
    message_id = warning_id(threshold, trigger_key, config.hostname)
    now = delivery.clock()
    text = compose(config, mailbox_address(target, config.hostname), threshold, usage,
                   target.quota, now, message_id)
    box = delivery._open(inbox)
    try:
        copy = md.stage(box.tmp_fd, config.hostname, b"", [text], perms=box.permissions(),
                        origin=box.path)
        try:
            path = _store(delivery, db, inbox, (target.mailbox, message_id, ""), copy)
        finally:
            copy.unlink()
        if path is not None:
            try:
                write_record(box, config.hostname, threshold, now, usage, target.quota,
                             message_id)
            except OSError as e:  # delivered: only `lda quota show` misses it
                delivery.log.warning(f"{box.root_path}/{RECORD}: not updated: {e.strerror}")
            try:
                touch_courier_mark(box)
            except OSError as e:  # delivered: deliverquota -w may warn once more
                delivery.log.warning(f"{box.root_path}/{COURIER_MARK}: not updated: "
                                     f"{e.strerror}")
    finally:
        box.close()
    if path is not None:
        kind, percent = threshold
        delivery.log.target(f"<{message_id}>", inbox.address, None, "sent", "2.0.0",
                            f"quota warning ({kind} {percent}%) delivered to maildir {path}")
    return path


def _store(delivery, db, inbox, key, copy):
    """DeliveredTo as _claim_and_link and _record_synced keep it: a pending row (synced) naming
    the file, the link (maildirsize appended by Delivery._link), new/
    synced, the row delivered; a failure forgets the row.  No quota check:
    the warning is exempt from it."""
    with db.transaction():
        row = db.lookup([key]).get(key)
        if row and delivery._already_there(inbox, row):
            db.mark_delivered([key])
            return None
        name = copy.file_name(delivery.config.hostname)
        db.mark_pending([(key, name)])
    try:
        linked = [(inbox, *delivery._link(inbox, copy, name))]
        [(_, path, error)] = md.sync_linked(linked)
        if error is not None:
            raise OSError(error.errno, f"{path}: {error.strerror}")
    except BaseException:
        with db.transaction(durable=False):
            db.forget([key])
        raise
    with db.transaction(durable=False):  # as _record_synced: the synced row names the file
        db.mark_delivered([key])
    return path


def mailbox_address(target, hostname):
    """The mailbox's address for To: (managed: the mailbox; per-user mode:
    the recipient, or user@hostname for a bare user name)."""
    address = target.mailbox if "@" in target.mailbox else target.address
    return address if "@" in address else f"{address}@{hostname}"


def fields(address, threshold, usage, quota):
    """The template's $names: address, kind, threshold (the percentage
    crossed), percent (the usage now, rounded down), used and limit (sizes
    in KiB/MiB/GiB for storage, counts for messages)."""
    kind, percent = threshold
    used, limit = getattr(usage, kind), getattr(quota, kind)
    show = human_size if kind == "storage" else (lambda n: f"{n} messages")
    return {"address": address, "kind": kind, "threshold": str(percent),
            "percent": str(used * 100 // limit), "used": show(used), "limit": show(limit)}


def human_size(number):
    """1536 -> "1.5 KiB" (binary multiples, as lda.toml's sizes)."""
    if number < 1024:
        return f"{number} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        number /= 1024
        if number < 1024 or unit == "TiB":
            return f"{number:.1f} {unit}"


def compose(config, address, threshold, usage, quota, now, message_id):
    """The warning as bytes (LF line ends, as lda stores every message): an
    RFC 5322 message from the postmaster, Auto-Submitted: auto-generated
    (RFC 3834 section 5) so that no vacation script answers it, text/plain
    in UTF-8 (RFC 2045, RFC 2047 for a non-ASCII subject)."""
    from string import Template

    subject, body = read_template(config.quota_warning_template)
    names = fields(address, threshold, usage, quota)
    subject = " ".join(Template(subject).safe_substitute(names).split())
    body = Template(body).safe_substitute(names).replace("\r\n", "\n")
    data = (body if body.endswith("\n") else body + "\n").encode("utf-8", "surrogateescape")
    encoding = "7bit"
    if not data.isascii() or any(len(line) > 998 for line in data.split(b"\n")):
        import binascii

        data, encoding = binascii.b2a_qp(data), "quoted-printable"
    head = (f"Return-Path: <>\nDelivered-To: {address}\n"
            f"From: Mail Delivery System <{config.postmaster}>\nTo: <{address}>\n"
            f"Subject: {encoded_word(subject)}\nDate: {mail_date(now)}\n"
            f"Message-ID: <{message_id}>\nAuto-Submitted: auto-generated\n"
            f"MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n"
            f"Content-Transfer-Encoding: {encoding}\n"
            f"X-Lda-Quota-Warning: {threshold[0]} {threshold[1]}%\n\n")
    return head.encode("utf-8", "surrogateescape") + data


def read_template(path):
    """(subject, body) of the admin's template, or the built-in ones for an
    empty path.  A first line "Subject: ..." sets the subject (else the
    built-in one); the rest, after one blank line, is the body.  An
    unreadable file raises OSError (or UnicodeDecodeError): warn() logs it."""
    if not path:
        return DEFAULT_SUBJECT, DEFAULT_BODY
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        text = os.read(fd, TEMPLATE_MAX).decode("utf-8")
    finally:
        os.close(fd)
    if not text.lower().startswith("subject:"):
        return DEFAULT_SUBJECT, text
    first, _, rest = text.partition("\n")
    return first[len("subject:"):].strip(), rest.removeprefix("\n")


def encoded_word(text):
    """text as it goes into a header field: itself when ASCII, else RFC 2047
    encoded-words (base64, UTF-8) of at most 75 characters each, never
    splitting a character."""
    if text.isascii():
        return text
    import base64

    words, chunk = [], ""
    for char in text:
        if len((chunk + char).encode("utf-8", "surrogateescape")) > 45:
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return "\n ".join("=?UTF-8?B?" + base64.b64encode(
        w.encode("utf-8", "surrogateescape")).decode() + "?=" for w in words)


def mail_date(now):
    """RFC 5322 section 3.3 date-time in UTC; day and month names spelled
    out here, as strftime's %a and %b follow the locale."""
    t = time.gmtime(now)
    return (f"{DAYS[t.tm_wday]}, {t.tm_mday:02d} {MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000")


# --- The sent-record: lda-quota-warnings in the Maildir root ---------------------
# One line per threshold last sent: "kind percent sent_at used limit message_id".


def parse_record(data):
    """{(kind, percent): (sent_at, used, limit, message_id)}; a line that
    does not read is skipped (the record only informs `lda quota show`)."""
    found = {}
    for line in data.decode("utf-8", "replace").splitlines():
        words = line.split()
        try:
            kind, percent, sent_at, used, limit, message_id = words
            found[(kind, int(percent))] = (float(sent_at), int(used), int(limit), message_id)
        except ValueError:
            continue
    return found


def read_record(root_fd):
    """The record in the Maildir root open as root_fd ({} when there is
    none, or a symlink or other non-file stands in its place)."""
    try:
        fd = os.open(RECORD, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=root_fd)
    except OSError:
        return {}
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        return parse_record(os.read(fd, RECORD_MAX))
    finally:
        os.close(fd)


def write_record(box, hostname, threshold, now, usage, quota, message_id):
    """Add (or replace) threshold's line: a new file in tmp/ (O_EXCL, no
    symlink) with the root's file permissions (those of maildirsize
    beside it), fsynced, renamed over the old one in the root, which
    rename replaces rather than follows.  The root is tmp/'s parent, as
    opened already (no path is walked again); box is the INBOX.  Called
    under the mailbox lock."""
    root_fd = os.open("..", md.DIR_FLAGS, dir_fd=box.tmp_fd)
    try:
        record = read_record(root_fd)
        kind = threshold[0]
        record[threshold] = (now, getattr(usage, kind), getattr(quota, kind), message_id)
        data = "".join(f"{k} {p} {int(s)} {u} {lim} {m}\n"
                       for (k, p), (s, u, lim, m) in sorted(record.items())).encode()
        tmp = md.TmpFile(box.tmp_fd, hostname, f"{box.path}/tmp", box.permissions())
        try:
            md.write_all(tmp.fd, data)
            tmp.finish()
            os.rename(tmp.name, RECORD, src_dir_fd=box.tmp_fd, dst_dir_fd=root_fd)
        finally:
            tmp.discard()
    finally:
        os.close(root_fd)


def touch_courier_mark(box):
    """Set quotawarn's mtime to now, creating it (empty, with the root's
    file permissions, box being the INBOX) if need be, in the Maildir root
    that is tmp/'s parent; a symlink, FIFO or directory there is left
    alone (OSError, or nothing done)."""
    import stat

    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    root_fd = os.open("..", md.DIR_FLAGS, dir_fd=box.tmp_fd)
    try:
        try:
            fd = os.open(COURIER_MARK, flags | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=root_fd)
        except FileExistsError:
            fd = os.open(COURIER_MARK, flags, dir_fd=root_fd)
        else:
            try:
                md.give_file(fd, box.permissions())
            except BaseException:
                os.close(fd)
                raise
    finally:
        os.close(root_fd)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.utime(fd)
    finally:
        os.close(fd)


def describe(thresholds, maildir, quota):
    """For `lda quota show`: {"warning_storage_80%": "not sent", "last sent
    <ISO 8601 UTC time> at <used> of <limit> (<percent>%)", or "no storage limit"},
    one per configured threshold, highest first per kind."""
    try:
        root_fd = os.open(maildir, md.DIR_FLAGS)
    except OSError:
        record = {}
    else:
        try:
            record = read_record(root_fd)
        finally:
            os.close(root_fd)
    shown = {}
    for kind, percent in thresholds:
        sent = record.get((kind, percent))
        text = "not sent" if getattr(quota, kind) > 0 else f"no {kind} limit"
        if sent is not None:
            sent_at, used, limit, _ = sent
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sent_at))  # ISO 8601
            share = f" ({used * 100 // limit}%)" if limit else ""
            text = f"last sent {when} at {used} of {limit}{share}"
        shown[f"warning_{kind}_{percent}%"] = text
    return shown

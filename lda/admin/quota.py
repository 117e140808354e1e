"""Quota for the admin: a mailbox's limits and usage, changing the limits,
and recounting maildirsize.

Admin commands only.  A mailbox's own limits are its directory columns, or
the lda.toml defaults where a column is NULL, exactly as resolve.py reads
them for a delivery; usage is Maildir++ maildirsize, which Dovecot and
Courier read too, so every change rewrites that file's quota line at once.
A mailbox without limits of its own keeps the quota line it has (Dovecot's
or Courier's: lda never throws away a limit it did not set), except when
`set-quota` lifts the limit lda itself had written there.
"""

import os
import time

from ..deliver.resolve import current_user
from ..errors import LdaError
from ..store import maildirsize
from ..store.locks import MailboxLocks
from ..store.maildirsize import Quota, Rules
from .mailboxes import QUOTA_COLUMNS, get_mailbox, list_mailboxes, mailbox_path, set_mailbox_quota


def own_quota(config, row):
    """lda's own limits for a mailbox: its columns, else lda.toml's."""
    storage, messages = row["quota_storage"], row["quota_messages"]
    return Quota(config.quota_storage if storage is None else storage,
                 config.quota_messages if messages is None else messages)


def _percent(used, limit):
    return round(100 * used / limit, 1) if limit else None


def describe(config, row, quota, usage, maildir=None):
    """What `lda quota show` prints: each limit, where it comes from
    ("maildirsize" for a line lda kept but did not set), usage; given the
    Maildir, each quota_warnings threshold and when it was last sent."""
    from_file = own_quota(config, row).unlimited() and not quota.unlimited()
    result = {"address": row["address"]}
    for kind, column in zip(("storage", "messages"), QUOTA_COLUMNS):
        limit, used = getattr(quota, kind), getattr(usage, kind)
        result[f"{kind}_limit"] = limit   # 0: unlimited, as in lda.toml
        result[f"{kind}_limit_from"] = ("maildirsize" if from_file else
                                        "lda.toml" if row[column] is None else "mailbox")
        result[f"{kind}_used"] = used
        result[f"{kind}_percent"] = _percent(used, limit)
    if maildir is not None and config.quota_warnings:
        from ..deliver.quotawarn import describe as describe_warnings

        result.update(describe_warnings(config.quota_warnings, maildir, quota))
    return result


def show(db, config, address, clock=time.time):
    """Limits and usage of one mailbox.  read_usage() trusts maildirsize only
    as the spec allows, and rewrites it otherwise, as a delivery would."""
    row = get_mailbox(db, address)
    path = mailbox_path(db, row)
    quota = maildirsize.quota_for(own_quota(config, row), path)
    usage = maildirsize.read_usage(path, quota, clock, rules=Rules.of(config))
    return describe(config, row, quota, usage, maildir=path)


def show_user(config, clock=time.time):
    """Per-user mode's one Maildir as its deliveries see it: lda sets no
    limit there, and honours only the quota line of an existing maildirsize
    (Dovecot's or Courier's, UserResolver); without one it is counted and
    nothing is written, since no delivery there would write one either."""
    path = config.maildir
    quota = maildirsize.existing_quota(path)
    row = {"address": current_user(), "quota_storage": 0, "quota_messages": 0}
    if quota is not None:
        usage = maildirsize.read_usage(path, quota, clock, rules=Rules.of(config))
    elif os.path.isdir(path):
        quota, usage = Quota(), maildirsize.count_usage(path, rules=Rules.of(config))
    else:
        quota, usage = Quota(), maildirsize.Usage(0, 0)  # no mail delivered yet
    result = describe(config, row, quota, usage, maildir=path)
    for kind in ("storage", "messages"):
        result[f"{kind}_limit_from"] = "maildirsize" if getattr(quota, kind) else "none"
    return {**result, "maildir": path}


def set_quota(db, config, address, limits):
    """Change the limits in the directory, then rewrite maildirsize with the
    new quota line, so Dovecot enforces the new limit before the next
    delivery does.  limits as for directory_admin.set_mailbox_quota()."""
    lifted = own_quota(config, get_mailbox(db, address))
    row = set_mailbox_quota(db, address, limits)
    return describe(config, row, *recount(db, config, row, lifted))


def recount(db, config, row, lifted=None):
    """(quota, usage): rewrite a mailbox's maildirsize from its Maildir under
    the mailbox lock (a delivery between its link into new/ and its
    maildirsize line would otherwise be counted twice).

    lifted: lda's limits before set-quota removed them.  A quota line equal
    to them is the one lda wrote, and goes; any other is kept."""
    with MailboxLocks(os.path.join(config.state_dir, "locks"), [row["address"]],
                      config.lock_timeout_seconds):
        path = mailbox_path(db, row)
        own = own_quota(config, row)
        quota = maildirsize.quota_for(own, path)
        if own.unlimited() and quota == lifted:
            quota = own
        return quota, maildirsize.recalculate(path, quota, rules=Rules.of(config))


def recalc(db, config, address):
    """Recount one mailbox and rewrite its maildirsize."""
    row = get_mailbox(db, address)
    return describe(config, row, *recount(db, config, row))


def recalc_all(db, config, progress=None):
    """Recount every mailbox.  One that fails (its Maildir gone, say) does
    not stop the rest: it is listed under "failed" with the error.
    progress(done, total) is called after each mailbox."""
    summary = {"mailboxes": 0, "storage": 0, "messages": 0, "failed": []}
    start = time.monotonic()
    rows = list_mailboxes(db)
    for done, row in enumerate(rows, 1):
        try:
            _, usage = recount(db, config, row)
        except LdaError as e:
            summary["failed"].append({"address": row["address"], "error": str(e),
                                      "exit_code": e.exit_code})
        else:
            summary["mailboxes"] += 1
            summary["storage"] += usage.storage
            summary["messages"] += usage.messages
        if progress is not None:
            progress(done, len(rows))
    summary["seconds"] = round(time.monotonic() - start, 3)
    return summary

"""`lda explain`: the whole decision a delivery would make, and no write.

It runs Delivery's own code up to the first write: resolve_all() (aliases,
the directory, forwards) and _refuse_all() (one recipient refused for good
stops the others), read_lead() and prefix_for() (the size each copy
would have), loop_error(), check_current(), _filter() (the Sieve scripts,
through filtering.run_scripts), Target.delivered_to_key(), DeliveredTo.lookup()
and judge() (duplicate, quota), verdict() (failure, partial delivery) and
command.exit_status().  Explaining overrides only what would write: the
database is opened read-only (an empty one in memory when its file does
not exist yet), the quota is recounted without rewriting maildirsize,
compiled Sieve scripts are not cached, and header edits are not staged.
What it does not run: the locks, staging the message file, the pending
and delivered rows, the links, forwards, partial spooling, the Sieve
state commit, quota warnings and cleanup.
"""

import os
import time

from ..errors import EX_OK, LdaError, MailLoop
from ..log import Log, printable
from ..startup.sqlite3 import sqlite3
from ..store.aliases import member_sources
from ..store.deliveredto import DB_FILE, SCHEMA, DeliveredTo, database_failure
from .command import exit_status
from .delivery import (
    DUPLICATE,
    Delivery,
    Result,
    _has_quota,
    bounced_alone,
    loop_error,
    prefix_for,
    verdict,
)
from .envelope import domain_of, split_extension
from .message import Reader

WOULD_DELIVER = "deliver"
SUCCESS_REPLY = "250 2.0.0"


class Notes(Log):
    """The lines a delivery would log, kept for the explanation."""

    def __init__(self):
        super().__init__("stderr")
        self.lines = []

    def _write(self, severity, line):
        self.lines.append(printable(line))


class DeliveredToReader(DeliveredTo):
    """A DeliveredTo table read without writing: SQLite's read-only mode
    while a WAL is there (its -shm read marks are SQLite's own), else the
    file as it stands (immutable: a reader would create a WAL); a database
    no delivery has made yet is an empty one in memory."""

    def __init__(self, db_root, expiration_hours, clock):
        self.db_root, self.path = db_root, os.path.join(db_root, DB_FILE)
        self.expiration, self.clock, self._wal = expiration_hours * 3600, clock, None
        self.exists = os.path.exists(self.path)
        try:
            self.conn = _read_only(self.path) if self.exists else _in_memory()
            self.conn.execute("SELECT count(*) FROM delivered_to").fetchone()
        except sqlite3.Error as e:
            raise database_failure(e, self.path) from None

    def delivered_at(self, key):
        row = self.conn.execute(
            "SELECT delivered_at FROM delivered_to WHERE mailbox = ? AND message_id = ? "
            "AND submit_time = ?", key).fetchone()
        return row[0] if row else None

    def partial(self, target, key):
        """The pending partial-delivery record of target for this message."""
        row = self.conn.execute(
            "SELECT id, created, attempts, last_attempt, reason FROM partial_deliveries "
            "WHERE target = ? AND message_id = ? AND submit_time = ?",
            (target, key[1], key[2])).fetchone()
        if row is None:
            return None
        return dict(zip(("id", "created", "attempts", "last_attempt", "reason"), row))

    def close(self):
        self.conn.close()


def _read_only(path):
    quoted = os.path.abspath(path).replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    wal = os.path.exists(path + "-wal") and os.path.exists(path + "-shm")
    return sqlite3.connect(f"file://{quoted}?mode=ro" + ("" if wal else "&immutable=1"),
                           uri=True, isolation_level=None)


def _in_memory():
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    return conn


class MemoryCopy:
    """The message as a staged copy would hold it, in memory (a memfd, so
    that Sieve's body tests read it as they read a staged file)."""

    def __init__(self, head, chunks, lead):
        self.fd = os.memfd_create("lda-explain", os.MFD_CLOEXEC)
        self.lead, self.body = lead, 0
        for chunk in (head, *chunks):
            os.write(self.fd, chunk)
            self.body += len(chunk)

    def for_prefix(self, prefix):
        return _Copy(self, len(prefix))

    def close(self):
        os.close(self.fd)


class _Copy:
    """One recipient's copy: its prefix counts in its size (as staged)."""

    prefix_len = 0  # the memfd holds the message without lda's prefix

    def __init__(self, memory, prefix_len):
        self.memory, self.size, self.lead = memory, memory.body + prefix_len, memory.lead

    def open(self):
        return os.dup(self.memory.fd)

    def unlink(self):
        pass


class Explaining(Delivery):
    """A Delivery that decides and writes nothing (see the module's docstring)."""

    writes = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sieve_trace = []
        self.quota_seen = {}  # target -> (usage, recounted, failure)
        self.claimed_by = {}  # target -> the earlier recipient that gets its copy

    def database(self, db_root):
        if db_root not in self.databases:
            self.databases[db_root] = DeliveredToReader(db_root, self.config.expiration_hours,
                                                        self.clock)
        return self.databases[db_root]

    def sieve_cache(self):
        return None

    def _quota_failure(self, target, size):
        if not _has_quota(target) or target.quota.unlimited():
            return None
        from ..store.maildirsize import quota_judgement

        failure, usage, recounted = quota_judgement(self.config, target, size, self.clock,
                                                    write=False)
        self.quota_seen[target] = (usage, recounted, failure)
        return failure

    def explain(self, recipients, stream):
        """The explanation as a dict (lda(1), "lda explain", --json)."""
        results, plans = self.resolve_all(recipients)
        plans = self._refuse_all(results, plans)  # one exit status, as `lda deliver`
        self.shared_status = len(plans) > 1  # run(together=True)
        entries = [None] * len(recipients)
        memory = info = None
        if plans and stream is not None:
            reader = Reader(stream, self.config.verify_body)
            head, lead, chunks = self.read_lead(reader)
            memory = MemoryCopy(head, chunks, lead)
            info = reader.info()
        try:
            claimed = {}  # key -> the recipient whose delivery would write it first
            for index, plan in plans:
                results[index], entries[index] = self._explain_plan(plan, info, memory, claimed)
            if len(plans) > 1:
                self._store_none(plans, results, entries)
        finally:
            if memory is not None:
                memory.close()
            for db in self.databases.values():
                db.close()
        for index, result in enumerate(results):
            if entries[index] is None:
                entries[index] = {"recipient": result.recipient, "targets": [],
                                  "expansion": []}
            entries[index].update(_answer(result.error))
        alone = self._bounce_alone(results, entries) if len(plans) > 1 else []
        status, error = exit_status([r for i, r in enumerate(results) if i not in alone])
        return {"mode": "user" if self.config.per_user else "managed",
                "sender": self.sender, "message": _message(info, memory),
                "recipients": entries, **_answer(error), "exit_code": status,
                "log": self.log.lines}

    def _store_none(self, plans, results, entries):
        """A recipient refused for good once the message is read stops the
        others, as Delivery._refused_once_read does: one exit status
        answers for all."""
        refused = next(((i, results[i].error) for i, _ in plans
                        if results[i].error is not None and results[i].error.bounces), None)
        if refused is None:
            return
        index, error = refused
        plan = next(p for i, p in plans if i == index)
        if not isinstance(error, MailLoop) and any(
                self._may_have_scripts(t) for t in plan.targets if t.local):
            return  # judged under the locks, after others' copies: _bounce_alone
        for i, plan in plans:
            if i == index:
                continue
            results[i] = self._not_stored(plan, results[index].recipient, error, None)
            for row in entries[i]["targets"]:
                if row["outcome"] == "deliver":
                    row.update(outcome="fail", detail=f"not stored: {results[index].recipient} "
                               "was refused", reply=error.smtp_reply, reason=error.reason())

    def _bounce_alone(self, results, entries):
        """The recipients Delivery._bounce_alone would bounce alone, each
        entry saying so; assumes sendmail takes the DSN."""
        alone = bounced_alone(results)
        for i in alone:
            entries[i]["bounced_alone"] = (f"DSN to {self.sender}" if self._dsn_to()
                                           else "no DSN to the null sender")
        return alone

    def _explain_plan(self, plan, info, memory, claimed):
        result = Result(plan.recipient)
        entry = {"recipient": plan.recipient, "canonical": plan.canonical,
                 "expansion": self._expansion(plan), "sieve": [], "targets": []}
        targets = plan.targets
        try:
            if info is not None:
                result.error = loop_error(plan, info)
            if result.error is None:
                self.resolver.check_current(plan)
                copy = memory.for_prefix(prefix_for(plan, self.sender, memory.lead)) \
                    if memory is not None else None
                if info is not None:
                    del self.sieve_trace[:]
                    targets, _ = self._filter(plan, info, copy)
                    entry["sieve"] = [{"script": s, "line": n, "action": a}
                                      for s, n, a in self.sieve_trace]
                self._judge_all(plan, targets, info, copy, result, claimed)
                result.error, partial = verdict(plan, targets, result.outcomes)
                entry["targets"] = [self._target(plan, t, info, copy, result, partial)
                                    for t in targets]
        except LdaError as e:
            result.error = e
        return result, entry

    def _judge_all(self, plan, targets, info, copy, result, claimed):
        """result.outcomes as _claim_and_link would set them."""
        if info is None:  # no message: quota for an empty one, nothing else
            for target in targets:
                result.outcomes[target] = self._quota_failure(target, 0) or WOULD_DELIVER
            return
        keys = {t: t.delivered_to_key(info) for t in targets}
        self.keys = keys
        groups = {}
        for target in targets:
            groups.setdefault(target.db_root, []).append(target)
        for db_root, group in groups.items():
            db = self.database(db_root)
            found = db.lookup([keys[t] for t in group])
            for target in group:
                if keys[target] in claimed:  # an earlier recipient's copy gets there first
                    result.outcomes[target] = DUPLICATE
                    self.claimed_by[target] = claimed[keys[target]]
                    continue
                outcome = self.judge(db, target, keys, found, info, copy.size)
                if outcome is None:
                    outcome = WOULD_DELIVER
                    claimed[keys[target]] = plan.canonical
                result.outcomes[target] = outcome

    def _target(self, plan, target, info, copy, result, partial):
        outcome = result.outcomes.get(target)
        row = {"address": target.address, "kind": _kind(target), "primary": target.primary,
               "via": list(target.via), "mailbox": target.mailbox,
               "database": target.db_root if target.local else plan.home_db}
        if target.local:
            makes = _makes_folder(target)
            row.update(maildir=target.maildir_path, folder=_folder(target), makes_folder=makes,
                       subscribes=makes and self.config.subscribe_new_folders)
            row["quota"] = self._quota(target, copy)
        if info is not None:
            key = self.keys[target]
            at = self.database(target.db_root).delivered_at(key)
            row["key"] = {"mailbox": key[0], "message_id": key[1], "submit_time": key[2]}
            row["already_delivered_at"] = _iso(at) if outcome == DUPLICATE and at else None
            pending = self.database(row["database"]).partial(target.address, key)
            if pending:
                pending["created"] = _iso(pending["created"])
                pending["last_attempt"] = _iso(pending["last_attempt"])
            row["partial_pending"] = pending
        if outcome == DUPLICATE and target in self.claimed_by:
            row.update(outcome="duplicate", detail="duplicate, discarded (stored for "
                       f"{self.claimed_by[target]} earlier in this delivery)")
        elif outcome == DUPLICATE:
            row.update(outcome="duplicate", detail="duplicate, discarded")
        elif outcome == WOULD_DELIVER:
            host = self._other_host(target)
            row.update(outcome="deliver", detail=_would(target, row) if host is None else
                       f"would re-send with sendmail: host {host} holds the mailbox")
        else:
            row.update(outcome="partial" if target in partial else "fail",
                       detail=str(outcome), reply=outcome.smtp_reply, reason=outcome.reason())
        return row

    def _other_host(self, target):
        """The host that holds an outside target's mailbox (a member that
        resolve() re-sends for its host), else None."""
        directory = getattr(self.resolver, "directory", None)
        if target.local or target.reply is not None or directory is None:
            return None
        mailbox = directory.mailbox(target.address)
        if mailbox is None:
            base, _ = split_extension(target.address, self.config.recipient_delimiter)
            mailbox = directory.mailbox(base)
        host = mailbox.host if mailbox is not None else None
        return host if directory.on_other_host(host, self.config.host_name) else None

    def _quota(self, target, copy):
        if target.quota is None:
            return None
        limit = target.quota
        figures = {"storage_limit": limit.storage, "messages_limit": limit.messages,
                   "message_size": copy.size if copy is not None else 0}
        seen = self.quota_seen.get(target)
        if seen is not None:
            usage, recounted, failure = seen
            figures.update(storage_used=usage.storage, messages_used=usage.messages,
                           would_recount=recounted, fits=failure is None)
        return figures

    def _expansion(self, plan):
        """Each step from the recipient to a target: an alias (file, line,
        and the :include: file and line that named the member) or a
        mailbox's forward in the directory."""
        aliases = getattr(self.resolver, "aliases", None)
        if aliases is None and not hasattr(self.resolver, "directory"):
            return []
        sources = member_sources(self.config.aliases) if self.config.aliases else {}
        steps, seen = [], set()
        for target in plan.targets:
            chain = list(target.via)
            for parent, member in zip(chain, chain[1:]):
                if (parent, member) in seen:
                    continue
                seen.add((parent, member))
                steps.append(self._step(plan, parent, member, aliases, sources))
        return steps

    def _step(self, plan, parent, member, aliases, sources):
        step = {"from": parent, "to": member}
        local = domain_of(parent) in ("", domain_of(plan.canonical))
        key = aliases.key_for(parent, local) if aliases is not None else None
        if key is None and aliases is not None:
            base, extension = split_extension(parent, self.config.recipient_delimiter)
            if extension is not None:  # as ManagedResolver looks an alias up
                key = aliases.key_for(base, local)
        if key is not None and key in sources:
            line, members = sources[key]
            step.update(by="alias", file=self.config.aliases, line=line)
            bare = member.rpartition("@")[0] if domain_of(member) == domain_of(parent) else None
            for name, path, number in members:
                if name in (member, bare):
                    if path != self.config.aliases:
                        step.update(include_file=path, include_line=number)
                    else:
                        step["member_line"] = number
                    break
        else:  # a mailbox's forwards, its own address when it keeps a copy
            step["by"] = "keep-copy" if member == parent else "forward"
        return step


def _folder(target):
    """The folder the copy would land in: a folder that does not exist and
    is not to be made is INBOX (maildir.open_mailbox)."""
    folder = target.folder
    if folder and not target.create_folder and not os.path.isdir(
            os.path.join(target.maildir_path, folder)):
        return "INBOX"
    return folder[1:] if folder else "INBOX"


def _makes_folder(target):
    """Whether the delivery would make the target's folder: Sieve's
    :create (or -m with autocreate) and no folder with a new/ there
    (maildir.open_mailbox, which then subscribes it)."""
    return bool(target.folder and target.create_folder and not os.path.isdir(
        os.path.join(target.maildir_path, target.folder, "new")))


def _would(target, row):
    if target.local:
        folder = row["folder"]
        where = row["maildir"] if folder == "INBOX" else os.path.join(
            row["maildir"], "." + folder)
        if row["makes_folder"]:
            subscribed = ", subscribed," if row["subscribes"] else ""
            return f"would make folder {folder}{subscribed} and deliver to maildir {where}"
        return f"would deliver to maildir {where}"
    if target.reply is not None:
        return "would send a Sieve reply"
    return "would forward with sendmail"


def _kind(target):
    if target.local:
        return "mailbox"
    if target.reply is not None:
        return "reply"
    return "redirect" if (target.key or "").startswith("redirect:") else "forward"


def _answer(error):
    if error is None:
        return {"exit_code": EX_OK, "reply": SUCCESS_REPLY, "reason": None}
    return {"exit_code": error.exit_code, "reply": error.smtp_reply, "reason": error.reason()}


def _message(info, memory):
    if info is None:
        return None
    return {"message_id": info.message_id, "submit_time": info.submit_time,
            "key_id": info.key_id, "key_kind": "message-id" if info.message_id else "digest",
            "size": memory.body}


def _iso(when):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)) if when else None


def explain(config, recipients, stream, sender=None, original=None, environ=os.environ,
            clock=time.time):
    """The explanation of delivering the message on stream (None: no
    message) to recipients, as `lda deliver -f sender` would."""
    from .resolve import make_resolver

    log = Notes()
    resolver = make_resolver(config, environ, log, read_only=True)
    if not config.per_user:
        # A directory that cannot be read fails the explanation (75), not
        # each recipient's prediction.
        resolver.directory.mailbox("")
    if original is not None:
        from .envelope import original_recipient

        original, ignored = original_recipient(original, config.recipient_delimiter)
        if ignored:
            log.warning(f"original recipient ignored: {ignored}")
    delivery = Explaining(config, resolver, log, sender=sender, original_recipient=original,
                          clock=clock)
    return delivery.explain(recipients or ([None] if config.per_user else []), stream)


def text_lines(report):
    """The explanation for people: the message, then a tree per recipient."""
    message = report["message"]
    if message is None:
        yield "message: none given (no DeliveredTo key, no Sieve; quota for 0 bytes)"
    else:
        yield (f"message: {message['size']} bytes, Message-ID "
               f"{message['message_id'] and '<' + message['message_id'] + '>' or '(none)'}")
        what = ("Message-ID + submit time" if message["key_kind"] == "message-id"
                else "content digest (no Message-ID)")
        yield f"  DeliveredTo key: {message['key_id']} {message['submit_time']!r} ({what})"
    for entry in report["recipients"]:
        yield from _recipient_lines(entry)
    yield f"lda deliver would exit {report['exit_code']}: {_reply(report)}"
    for line in report["log"]:
        yield f"  log: {line}"


def _recipient_lines(entry):
    yield f"{entry['recipient']}"
    for step in entry["expansion"]:
        if step["by"] == "alias":
            where = f"{step['file']}:{step['line']}"
            if "include_file" in step:
                where += f", :include: {step['include_file']}:{step['include_line']}"
            yield f"  {step['from']} -> {step['to']}  (alias, {where})"
        elif step["by"] == "keep-copy":
            yield f"  {step['from']} -> {step['to']}  (the mailbox keeps a copy)"
        else:
            yield f"  {step['from']} -> {step['to']}  (forward of the mailbox)"
    for rule in entry.get("sieve", []):
        yield f"  sieve {rule['script']}:{rule['line']}: {rule['action']}"
    for target in entry["targets"]:
        yield f"  {target['address']}  [{target['kind']}]"
        if target["kind"] == "mailbox":
            yield f"    database {target['database']}"
            yield f"    maildir {target['maildir']}, folder {target['folder']}"
            quota = target.get("quota")
            if quota:
                yield "    " + _quota_line(quota)
        if "key" in target:
            key = target["key"]
            yield f"    DeliveredTo key ({key['mailbox']}, {key['message_id']}, " \
                  f"{key['submit_time']!r})"
            if target["already_delivered_at"]:
                yield f"    already delivered at {target['already_delivered_at']}"
            pending = target["partial_pending"]
            if pending:
                yield (f"    partial delivery pending since {pending['created']}, "
                       f"{pending['attempts']} attempt(s): {pending['reason']}")
        outcome = target["detail"]
        if target["outcome"] == "partial":
            outcome = f"{target['reason']}: partial delivery, kept for retry"
        elif target["outcome"] == "fail":
            outcome = f"fails: {target['reason']}"
        yield f"    => {outcome}"
    yield f"  => exit {entry['exit_code']}, {_reply(entry)}"
    if entry.get("bounced_alone"):
        yield (f"     bounced alone ({entry['bounced_alone']}): another recipient's copy "
               "is stored, and one exit status answers for all")


def _reply(answer):
    """"250 2.0.0 delivered", or the reply code and the one-line reason."""
    if answer["reason"] is None:
        return f"{answer['reply']} delivered"
    return f"{answer['reply'].split()[0]} {answer['reason']}"


def _quota_line(quota):
    def limit(value):
        return str(value) if value else "unlimited"

    if "storage_used" not in quota:
        return (f"quota {limit(quota['storage_limit'])} bytes, "
                f"{limit(quota['messages_limit'])} messages")
    verdict = "fits" if quota["fits"] else "does not fit"
    recount = " (maildirsize missing or not trusted: a delivery would recount it)" \
        if quota["would_recount"] else ""
    return (f"quota {quota['storage_used']} of {limit(quota['storage_limit'])} bytes, "
            f"{quota['messages_used']} of {limit(quota['messages_limit'])} messages; "
            f"this copy ({quota['message_size']} bytes) {verdict}{recount}")

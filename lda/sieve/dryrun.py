"""`lda sieve check` and `lda sieve test`: the library side (no click).

A dry run reads the message, runs the script against in-memory state and
reports the actions; it delivers nothing and records nothing.
"""

import os
from pathlib import Path

from . import Envelope, MemoryState, SieveError, compile_script, run


def check(path, extensions=()):
    """"PATH:LINE:COL: message" for every compile error; [] if it compiles.
    `extensions`: lda.toml's sieve_extensions_extra."""
    try:
        compile_script(Path(path), extensions=extensions)
    except SieveError as e:
        return e.lines(path)
    return []


def dry_run(path, stream, sender=None, recipient=None, delimiters="+", options=None,
            personal=None, original=None, as_json=False):
    """(action lines for stdout, lines for stderr, exit status 0 or 65);
    with as_json, stdout is one JSON object (outcome_record).
    options: Envelope.options, the site's sieve_* settings; personal: the
    directory of include :personal scripts (default: see personal_dir)."""
    options = options or {}
    try:
        script = compile_script(Path(path),
                                extensions=options.get("sieve_extensions_extra", ()))
    except SieveError as e:
        return ([json_line({"compiled": False, "errors": e.lines(path)})] if as_json else [],
                e.lines(path), 65)
    message = read_message(stream)
    envelope = Envelope(default_sender(message.headers) if sender is None else sender,
                        default_recipient(message.headers) if recipient is None else recipient,
                        original, delimiters=delimiters,
                        options=dict(options or {}, sieve_dir=personal or personal_dir(path)))
    notes = [f"envelope: from <{envelope.from_}> to <{envelope.to}>, "
             f"message size {message.size}"]
    outcome = run(script, message, envelope, MemoryState())
    notes += [f"{path}: {line}" for line in outcome.log]
    notes += [f"{path}: runtime error: {error} (implicit keep)" for error in outcome.errors]
    if outcome.header is not None:  # editheader: what the stored copy would differ in
        kept = {source for *_, source in outcome.header if isinstance(source, int)}
        notes += [f"{path}: header: deleted {name.decode('ascii', 'replace')}"
                  for i, (name, _) in enumerate(message.headers.fields) if i not in kept]
        notes += [f"{path}: header: added " + source.decode("ascii").replace("\n ", " ").strip()
                  for *_, source in outcome.header if isinstance(source, bytes)]
    if as_json:
        return [json_line(outcome_record(outcome))], notes, 0
    return outcome.describe(), notes, 0


def outcome_record(outcome):
    """The Outcome as JSON-ready data, for tools that compare runs (the
    differential test against Pigeonhole's sieve-test): every action with
    its name and its text and number fields (bytes, such as a vacation
    reply's, are left out), implicit keep included as in all_actions()."""
    actions = []
    for action in outcome.all_actions():
        record = {"action": type(action).__name__.lower()}
        for name in type(action).__slots__:
            value = getattr(action, name)
            if isinstance(value, tuple):
                value = list(value)
            if not isinstance(value, (bytes, bytearray)):
                record[name.rstrip("_")] = value
        actions.append(record)
    return {"compiled": True, "actions": actions, "implicit_keep": outcome.implicit_keep,
            "errors": list(outcome.errors), "log": list(outcome.log)}


def json_line(record):
    import json

    return json.dumps(record, ensure_ascii=False, sort_keys=True, default=str)


def personal_dir(path):
    """Where include :personal finds scripts for a script outside a
    delivery: sieve/ beside a managed mailbox's lda.sieve, else the
    script's own directory."""
    from ..config import SCRIPT_IN_MAILBOX, SCRIPTS_IN_MAILBOX

    real = os.path.realpath(path)
    if os.path.basename(real) == SCRIPT_IN_MAILBOX:
        return os.path.join(os.path.dirname(real), SCRIPTS_IN_MAILBOX)
    return os.path.dirname(real)


class Message:
    def __init__(self, headers, size, data=b""):
        self.headers, self.size, self.data = headers, size, data

    def raw(self, limit):
        return self.data[:limit]


def read_message(stream):
    from ..deliver.message import Reader

    reader = Reader(stream)
    data = b"".join(reader.chunks())
    reader.info()
    return Message(reader.headers, reader.size, data)


def _first_address(headers, names):
    from .fields import addresses

    for name in names:
        value = headers.first(name)
        if value is not None:
            found = addresses(value.decode("utf-8", "replace"))
            if found:
                return found[0]
    return ""


def default_sender(headers):
    """Return-Path, else the From address, as sieve-test(1) guesses."""
    return _first_address(headers, (b"return-path", b"from"))


def default_recipient(headers):
    return _first_address(headers, (b"delivered-to", b"x-original-to", b"to"))

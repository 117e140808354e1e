"""Sieve filtering (RFC 5228) for lda: per-mailbox scripts instead of procmail.

A pure library: it reads the script (and its compiled cache), decides, and
returns what to do; the delivery code does it.  No click, no sending, no
database, and on the per-message path no parser, json, re or email imports.

Supported: RFC 5228 (require, if/elsif/else, stop, keep, discard, redirect;
header, address, envelope, exists, size, allof, anyof, not, true, false;
comparators i;ascii-casemap and i;octet; :is, :contains, :matches;
encoded-character) and every extension Pigeonhole enables by default.

In the core (grammar.py, interpreter.py, match.py), because they change
how every test matches: variables (RFC 5229), relational (RFC 5231),
comparator-i;ascii-numeric (RFC 4790), regex (draft-ietf-sieve-regex-01:
POSIX ERE run by regex.py without backtracking but for back-references), index (RFC 5260 section
6), and fileinto, mailbox (fileinto :create, RFC 5490), envelope, copy (RFC
3894), imap4flags (RFC 5232), duplicate (RFC 7352), vacation (RFC 5230),
subaddress (RFC 5233, split at lda's recipient_delimiter).

In extensions/, one module each, loaded only by a script that uses it:
body (RFC 5173); mime, foreverypart, break, extracttext (RFC 5703; not
replace or enclose); include, return, global (RFC 6609; :personal scripts
from Envelope.options sieve_dir, :global from sieve_global_dir); enotify
with mailto (RFC 5435, RFC 5436); reject and ereject (RFC 5429); ihave and
error (RFC 5463); environment (RFC 5183); mailboxexists (RFC 5490); date and
currentdate (RFC 5260); vacation-seconds (RFC 6131); spamtest, spamtestplus
and virustest (RFC 5235, set up by lda.toml's sieve_spamtest_* and
sieve_virustest_* keys); editheader (RFC 5293) only where lda.toml's
sieve_extensions_extra enables it (script.OPTIONAL).

The API
-------
compile_script(source, extensions=()) -> Script
    `source` is a path (os.PathLike, e.g. pathlib.Path) or the script text
    (str or UTF-8 bytes).  Raises SieveError(line, column, message), whose
    .errors lists every (line, column, message) and .lines(name) formats
    them as "NAME:LINE:COL: message".  Compiled text is memoised in-process.

load_script(path, cache_dir=None, extensions=()) -> Script | None
    None when `path` does not exist.  With `cache_dir`, the AST is stored
    there as JSON keyed by (path, mtime_ns, size, inode), and an unchanged
    script is read back without importing the parser.  Raises SieveError
    (compile errors, unreadable file); an unwritable cache is not an error
    (see Script.cache_status).  `extensions` are the optional ones the
    site enables (sieve_extensions_extra); requiring another is a
    compile error, checked on every load (the cache does not hold it).

run(script, message, envelope, state=None) -> Outcome
    message: .headers (lda.deliver.message.Headers: .fields is [(lower-case name
      bytes, value bytes)]) and .size (int); lda.deliver.message.Reader after
      info() has both.  Body and mime tests call .raw(limit): the first
      `limit` bytes of the message, header and body, LF line ends (only
      when such a test runs; a message without raw() fails them).
    envelope: Envelope(from_, to, original_recipient); from_ "" is the
      null sender.
    state: the callbacks documented on MemoryState (now, duplicate_seen,
      duplicate_record, vacation_recently, vacation_record,
      mailbox_exists); None means a fresh MemoryState.  run() only reads
      state.
    Never raises for a script problem: a runtime error gives an Outcome
    with implicit_keep=True, no actions and the error in .errors.

evaluate(path, cache_dir, message, envelope, state) -> Outcome | None
    load_script + run for the delivery path: None when the user has no
    script; a script that does not compile gives implicit keep with the
    compile errors in .errors.

Outcome
    .actions          explicit actions in order: Keep(flags),
                      FileInto(folder, flags, create, copy),
                      Redirect(address, copy), Discard(),
                      Vacation(to, reply_bytes, handle, seconds), and the
                      extensions' own: Notify(to, reply_bytes, ...) of
                      extensions/enotify.py, Reject and Ereject(reason, to,
                      reply_bytes) of extensions/reject.py
    .implicit_keep    True unless keep, fileinto, redirect (without :copy)
                      or discard ran (RFC 5228 section 2.10.2)
    .implicit_flags   flags for the implicit keep (imap4flags)
    .flags            imap4flags' internal variable as the script left it
    .all_actions()    .actions plus Keep(implicit=True) when it applies
    .errors, .log     lines for the delivery log ("line N: ...")
    .header           None, or the header editheader left (actions.Outcome):
                      every store and redirect carries it
    .commit(state)    records duplicate IDs and vacation replies; call it
                      once the message is stored and any reply handed over
                      (RFC 7352 section 3: a failed delivery records nothing)

Keep and FileInto carry .maildir_folder (None for INBOX, ".Lists.Python"
for "Lists.Python", modified UTF-7 for non-ASCII) and .maildir_info ("FS"
for \\Seen \\Flagged: the Maildir info letters, in ASCII order) and
.keywords (the other flags, such as $Junk: the delivery stores them as
Dovecot's keyword letters, lda/store/keywords.py).  A message with info
letters belongs in cur/ as NAME:2,FSa (the Maildir spec), not in new/.

Decisions
---------
- fileinto without :create into a folder that does not exist: deliver to
  the inbox instead and log an error, as Dovecot does with
  lda_mailbox_autocreate=no.  The caller implements it (it owns the disk).
- :create needs require "mailbox" (RFC 5490), as in Dovecot.
- Folder names: "INBOX" (any case) is the inbox; a leading "INBOX." is
  dropped; "/", a leading, trailing or double ".", and control characters
  are refused when the fileinto runs (a runtime error: implicit keep), a
  constant name too, as in Pigeonhole: a script is never refused whole
  for one folder name.
- A runtime error drops every collected action: implicit keep only.
- include resolves its script when it runs (a missing one, a cycle, a
  compile error in it: a runtime error); extensions/include.py says why.
- An invalid header name in header, address or exists matches nothing
  (RFC 5228 section 2.4.2.2); address takes only fields that hold
  addresses (section 5.1: grammar.ADDRESS_HEADERS, a compile error for a
  constant other name, as in Pigeonhole, which allows fewer of them).
- address reads a field as Pigeonhole does (fields.address_values): an
  address that is not valid (no "@", an empty local part or domain label,
  an unterminated "<") is skipped, and a field with no valid address is
  one value, its text, which only :all sees (RFC 5228 section 2.7.4).
- redirect takes an RFC 5322 mailbox ("Bob <bob@example.org>") and nothing
  else, as Pigeonhole (address.py): a script that writes another does not
  compile, one that variables build is a runtime error; a local part that
  is no dot-atom ("roadrunner.") goes to sendmail quoted.  Two redirects
  are one when their local parts match exactly and their domains in any
  case (RFC 5321 section 2.4).
- address :count counts addresses, so an empty field adds none, nor does
  a field without a valid address to :localpart or :domain (Pigeonhole
  counts each as one); i;ascii-casemap orders as upper case (RFC 4790 section
  9.2.1; Pigeonhole sorts "a" after "_"); :quoteregex is supported.
- Storing twice into one folder stores once, with the later store's flags
  (as Pigeonhole; the earlier ones stay when the later store's script has
  no imap4flags).
- duplicate without :seconds tracks for 7 days; the tracking ID is
  '"HANDLE" UNIQUE-ID'.  A message without Message-ID is never a duplicate.
- envelope "to" is the address delivered to (its +detail included), not
  the original recipient that Pigeonhole tests (tests/sieve_corpus).
- vacation: the period (:days, or :seconds of RFC 6131) is at least a day,
  by default 7 days (Pigeonhole's sieve_vacation_*_period defaults, in
  vacation.py); no reply to the null sender, to
  Auto-Submitted (other than "no"), Precedence bulk/list/junk, List-*
  messages, owner-*/*-request/MAILER-DAEMON/LISTSERV/majordomo senders, to
  the user's own address, or when none of the user's addresses (recipient,
  original recipient, :from, :addresses; +detail ignored) is in
  To/Cc/Bcc/Resent-*.  Send the reply with the null envelope sender.
- body and mime read at most 16 MiB of a message, and a script sees at most
  200 MIME parts, 12 levels deep, 1 MiB decoded per part (mimeparts.py);
  where lda differs from Pigeonhole is in extensions/mime.py's docstring.
- notify (enotify): one Notify per recipient, sent as a vacation reply is
  (null sender, once per message); none for an Auto-Submitted message; a
  mailto URI may only name to, cc, subject and body.  See its docstring.
- reject/ereject: the refusal rules, and where lda differs from
  Pigeonhole, are in extensions/reject.py; ihave's in extensions/ihave.py.
- editheader: the header as the script ends goes with every copy; protected
  fields, encoding and caps are listed in extensions/editheader.py.
"""

from .actions import Discard, Envelope, FileInto, Keep, MemoryState, Outcome, Redirect, Vacation
from .errors import SieveError
from .script import Script, compile_script, load_script

__all__ = ["compile_script", "load_script", "run", "evaluate", "SieveError", "Script",
           "Outcome", "Envelope", "MemoryState", "Keep", "FileInto", "Redirect", "Discard",
           "Vacation"]


def run(script, message, envelope, state=None, flags=()):
    from .interpreter import run as interpret

    return interpret(script, message, envelope, state, flags)


def evaluate(path, cache_dir, message, envelope, state, flags=()):
    """The delivery path's one call: None without a script; a broken script
    is an implicit keep with its errors in Outcome.errors.  `flags`: what
    imap4flags' internal variable starts with (the previous script's
    Outcome.flags in a sequence)."""
    try:
        script = load_script(path, cache_dir,
                             envelope.options.get("sieve_extensions_extra", ()))
    except SieveError as e:
        return Outcome(errors=e.lines(str(path)))
    if script is None:
        return None
    return run(script, message, envelope, state, flags)

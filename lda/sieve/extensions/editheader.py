"""editheader (RFC 5293): addheader and deleteheader.

Off unless lda.toml's sieve_extensions_extra names it (script.py OPTIONAL).
The edits apply to a working copy of the header fields (Execution.header,
made on the first edit): later header, address and exists tests, vacation
and the next script of a sequence read it (RFC 5293 section 7).  Each entry
is (lower-case name, unfolded value, source): the index of an original
field, or the bytes of an added one as they will be written.  The delivery
writes one edited copy of the message from it (deliver/filtering.py).

Decisions
- Every copy the script stores or redirects carries the header as the
  script ends: Sieve's actions take effect when it ends (RFC 5228 section
  2.10), and one edited copy per mailbox keeps the delivery's one staged
  file per outcome.  Pigeonhole gives an action taken before an edit the
  header as it was then.
- Protected (RFC 5293 section 6: such an edit is silently ignored; lda
  logs it): Received, Auto-Submitted, and lda's trace fields Return-Path
  and Delivered-To (loop detection reads Delivered-To), for adding and
  deleting, plus sieve_editheader_protected; Subject never.  Pigeonhole
  protects only the deletion of Received and Auto-Submitted by default.
- lda's own Return-Path and Delivered-To are outside the header a script
  sees and stay on top; addheader without :last inserts below the MTA's
  leading Return-Path, Delivered-To and X-Original-To run, which stands in
  for them.
- A value's line breaks become spaces; a value with non-ASCII or control
  characters, "=?", or a word too long for a line is written with RFC 2047
  encoded-words (UTF-8, base64) for the run of words that needs them;
  lines fold at whitespace before 78 characters, continued with a space
  (Pigeonhole continues with a tab and keeps edge whitespace).  NUL is
  refused, as Pigeonhole refuses it.
- :index 0 is a compile error (Pigeonhole treats it as no :index).  The
  size cap (sieve_editheader_max_header_size) is checked when the script
  runs, since compiling does not read lda.toml.
"""

from ..spec import MATCH, MATCH_DEFAULTS, NUMBER, STRING, STRINGS, Spec, tag

CAPABILITIES = ("editheader",)
COMMANDS = {
    "addheader": Spec("editheader", {":last": tag("last")}, [("name", STRING), ("value", STRING)],
                      {"last": False}),
    "deleteheader": Spec("editheader", {**MATCH, ":index": tag("index", kind=NUMBER),
                                        ":last": tag("last")},
                         [("name", STRING), ("patterns", STRINGS)],
                         {**MATCH_DEFAULTS, "index": None, "last": False, "patterns": None},
                         optional_last=True),
}
TESTS = {}
TAGS = {}

MAX_EDITS = 64  # addheader and deleteheader commands one run may execute
MAX_HEADER_SIZE = 2048  # sieve_editheader_max_header_size's default, as Pigeonhole's
MAX_NAME_LENGTH = 256  # an added field's name; keeps its first line under 998
LINE = 78  # RFC 5322 section 2.1.1: SHOULD NOT be longer
PROTECTED = frozenset({"received", "auto-submitted", "return-path", "delivered-to"})
# The MTA's trace at the top of the message (deliver/message.PREPENDED_FIELDS).
TOP = frozenset({b"return-path", b"delivered-to", b"x-original-to"})
ENCODED_BYTES = 39  # UTF-8 bytes per encoded-word: 52 base64 characters, 64 in all


def valid_name(name):
    """RFC 5322 section 3.6.8: printable US-ASCII except ":"."""
    return bool(name) and all(33 <= ord(c) <= 126 and c != ":" for c in name)


# --- compile time ------------------------------------------------------------

def check_addheader(validator, node, built):
    _check_name(validator, node, built["name"])
    if len(built["name"]) > MAX_NAME_LENGTH:
        validator.error(node.line, node.col, f"addheader: field name longer than "
                                             f"{MAX_NAME_LENGTH} characters")
    if "\0" in built["value"]:
        validator.error(node.line, node.col, "addheader: the value contains a NUL character")


def check_deleteheader(validator, node, built):
    validator.check_comparator(node, built)
    _check_name(validator, node, built["name"])
    if built["last"] and built["index"] is None:
        validator.error(node.line, node.col, "deleteheader: :last needs :index")
    if built["index"] is not None and built["index"] < 1:
        validator.error(node.line, node.col, "deleteheader: :index counts from 1")


def _check_name(validator, node, name):
    if validator.constant(name) and not valid_name(name):
        validator.error(node.line, node.col, f'{node.name}: invalid field name "{name}"')


# --- run time ----------------------------------------------------------------

def cmd_addheader(execution, node):
    name, value = execution.string(node["name"]), execution.string(node["value"])
    if not valid_name(name) or len(name) > MAX_NAME_LENGTH:
        execution.fail(f'addheader: invalid field name "{name[:80]}"')
    if "\0" in value:
        execution.fail("addheader: the value contains a NUL character")
    limit = execution.envelope.options.get("sieve_editheader_max_header_size",
                                           MAX_HEADER_SIZE)
    size = len(value.encode("utf-8", "surrogateescape"))
    if size > limit:
        execution.fail(f"addheader: a value of {size} bytes, more than "
                       f"sieve_editheader_max_header_size ({limit})")
    header = _working(execution, node)
    if _protected(execution, name):
        return
    raw = field_bytes(name, value)
    entry = (name.lower().encode("ascii"), unfolded(raw), raw)
    if node["last"]:
        header.append(entry)
    else:
        top = 0
        while top < len(header) and header[top][0] in TOP and isinstance(header[top][2], int):
            top += 1
        header.insert(top, entry)
    execution._fields = None


def cmd_deleteheader(execution, node):
    from ..fields import text
    from ..match import compare

    name = execution.string(node["name"])
    if not valid_name(name):
        execution.fail(f'deleteheader: invalid field name "{name[:80]}"')
    header = _working(execution, node)
    if _protected(execution, name):
        return
    key = name.lower().encode("ascii")
    places = [i for i, entry in enumerate(header) if entry[0] == key]
    if node["index"] is not None:  # counted before the values are matched
        if node["index"] > len(places):
            return
        places = [places[-node["index"]] if node["last"] else places[node["index"] - 1]]
    if node["patterns"] is not None:
        patterns = execution.strings(node["patterns"])
        match, comparator = node["match"], node["comparator"]
        places = [i for i in places
                  if any(_matched(match, compare(match, comparator, text(header[i][1]), p))
                         for p in patterns)]
    for i in reversed(places):
        del header[i]
    execution._fields = None


def _matched(match, result):
    return result is not None if match == "matches" else bool(result)


def _working(execution, node):
    """The header being edited: made on the first edit, from the message
    (or from the edits of the script before this one in a sequence)."""
    count = getattr(execution, "editheader_count", 0) + 1
    if count > MAX_EDITS:
        execution.fail(f"{node['cmd']}: more than {MAX_EDITS} header edits")
    execution.editheader_count = count
    if execution.header is None:
        headers = execution.message.headers
        start = getattr(headers, "edited", None)
        execution.header = list(start) if start is not None else [
            (name, value, i) for i, (name, value) in enumerate(headers.as_written())]
    return execution.header


def _protected(execution, name):
    lower = name.lower()
    extra = {n.lower() for n in execution.envelope.options.get("sieve_editheader_protected",
                                                                ())}
    if lower != "subject" and (lower in PROTECTED or lower in extra):
        execution.log.append(f'line {execution.line}: {name} is a protected header field: '
                             "left as it is")
        return True
    return False


# --- the field as written ----------------------------------------------------

def field_bytes(name, value):
    """"Name: value\\n" as RFC 5322 and RFC 2047 want it written: line
    breaks in the value become spaces, what is not printable ASCII goes into
    encoded-words, and lines fold at whitespace before LINE characters."""
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    value = " ".join(part.strip(" \t") for part in lines if part.strip(" \t"))
    words = [w for w in value.replace("\t", " ").split(" ") if w]
    needs = [i for i, word in enumerate(words) if _needs_encoding(word)]
    if not needs and len(name) + 2 + len(value) <= LINE:
        return f"{name}: {value}\n".encode("ascii") if value else f"{name}:\n".encode("ascii")
    if needs:
        first, last = needs[0], needs[-1]
        words = words[:first] + encoded_words(" ".join(words[first:last + 1])) \
            + words[last + 1:]
    if not words:
        return f"{name}:\n".encode("ascii")
    lines = [f"{name}: {words[0]}"]
    for word in words[1:]:
        if len(lines[-1]) + 1 + len(word) > LINE:
            lines.append(" " + word)  # RFC 5322 section 2.2.3: folded before the space
        else:
            lines[-1] += " " + word
    return ("\n".join(lines) + "\n").encode("ascii")


def _needs_encoding(word):
    return (len(word) > LINE - 2 or "=?" in word
            or not all(32 < ord(c) < 127 for c in word))


def encoded_words(text):
    """text as RFC 2047 encoded-words (UTF-8, base64), each within 75
    characters and cut between characters; a decoder joins adjacent ones
    without the space between them (RFC 2047 section 6.2)."""
    from binascii import b2a_base64

    words, chunk = [], b""
    for char in text:
        data = char.encode("utf-8", "replace")
        if len(chunk) + len(data) > ENCODED_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += data
    words.append(chunk)
    return ["=?utf-8?b?" + b2a_base64(w, newline=False).decode("ascii") + "?=" for w in words]


def unfolded(raw):
    """The value of the written field as the delivery's Headers reads it
    (lda.deliver.message), so a test sees what a reader of the copy sees."""
    from ...deliver.message import Headers

    return Headers(raw.rstrip(b"\n")).as_written()[0][1]

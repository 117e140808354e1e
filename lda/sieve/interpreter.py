"""Running a compiled script against one message (RFC 5228 section 2.10).

The script only decides: actions are collected into an Outcome for the
caller to carry out, and state (duplicate IDs, vacation replies) is read
through the caller's callbacks and written only by Outcome.commit().  A
runtime error (an unsafe folder name, too many redirects, a second
vacation) discards every collected action and leaves the implicit keep, so
the message is never lost.
"""

from .actions import (
    STORES,
    Discard,
    FileInto,
    Keep,
    MemoryState,
    Outcome,
    Redirect,
    UnsafeFolder,
    check_folder,
)
from .address import InvalidAddress, smtp_address
from .extensions import load
from .fields import (
    address_part,
    address_values,
    same_address,
    text,
    valid_header_name,
)
from .match import compare, quote_wildcards
from .spec import NAMESPACES

MAX_ACTIONS = 32
MAX_REDIRECTS = 4  # Dovecot's sieve_max_redirects default
MAX_VARIABLE_LENGTH = 4096  # longer values are cut (RFC 5229 section 6 allows it)
DEFAULT_DUPLICATE_SECONDS = 7 * 86400  # lda's expiration_hours default
MODIFIERS = {
    "lower": str.lower, "upper": str.upper,
    "lowerfirst": lambda v: v[:1].lower() + v[1:],
    "upperfirst": lambda v: v[:1].upper() + v[1:],
    "quotewildcard": quote_wildcards, "length": lambda v: str(len(v)),
    "encodeurl": lambda v: load("enotify").encode_url(v),  # RFC 5435 section 7
    "quoteregex": lambda v: quote_regex(v),
}
NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
SYSTEM_FLAGS = ("\\answered", "\\flagged", "\\deleted", "\\seen", "\\draft")
ATOM_SPECIALS = frozenset('(){ %*"\\]')  # RFC 3501 section 9 (is_atom: CTL, 8-bit)


class RuntimeFailure(Exception):
    def __init__(self, line, message):
        super().__init__(message)
        self.line, self.message = line, message


class Stop(Exception):
    """The stop command: end the script, keep what was decided."""


def run(script, message, envelope, state=None, flags=()):
    """Outcome of `script` for one message; never raises for script problems.
    `flags` start the internal variable: Pigeonhole carries it from one
    script of a sequence to the next (sieve_before, the user's, sieve_after)."""
    execution = Execution(script, message, envelope, state or MemoryState())
    execution.flags = " ".join(flags)
    try:
        execution.block(script.commands)
    except Stop:
        pass
    except RuntimeFailure as e:
        return execution.failed(f"line {e.line}: {e.message}")
    except Exception as e:  # noqa: BLE001 - a bug here must not lose the message
        return execution.failed(f"line {execution.line}: internal error "
                                f"({type(e).__name__}: {e})")
    return execution.outcome()


class Execution:
    def __init__(self, script, message, envelope, state):
        self.script, self.message, self.envelope, self.state = script, message, envelope, state
        self.use_variables = "variables" in script.requires
        self.variables = {}
        if "include" in script.requires:  # RFC 6609 section 3.4: some names are shared
            self.variables = load("include").ScriptVariables()
        self.match_values = []
        self.flags = ""  # RFC 5232 internal variable, a space-separated flag list
        self.actions = []
        self.keep_cancelled = False
        self.redirects = 0
        self.vacation_done = False
        self.log = []
        self.records = []
        self.line = 0
        self._fields = None
        self.header = None  # [(name, value, source)] once editheader changed it
        # `lda explain`: a list that gets (script, line, what) for each if
        # branch taken and each action, None on a delivery (no cost there).
        self.trace = envelope.options.get("trace")

    def outcome(self):
        implicit = not self.keep_cancelled
        flags = flag_list(self.flags) if implicit else []
        outcome = Outcome(self.actions, implicit, flags, [], self.log, self.records,
                          self.header)
        outcome.flags = tuple(flag_list(self.flags))
        return outcome

    def failed(self, error):
        return Outcome([], True, [], [error], self.log, [])

    def fail(self, message):
        raise RuntimeFailure(self.line, message)

    # --- values --------------------------------------------------------------

    def string(self, value):
        """A string argument with its ${...} references replaced (RFC 5229
        section 3): unknown variables are empty, anything that is not a
        valid reference stays as written."""
        if not self.use_variables or "${" not in value:
            return value
        out, i = [], 0
        while True:
            start = value.find("${", i)
            if start < 0:
                out.append(value[i:])
                return "".join(out)
            out.append(value[i:start])
            end = value.find("}", start + 2)
            name = value[start + 2:end] if end >= 0 else ""
            if name.isdigit() and name.isascii():
                index = int(name)
                out.append(self.match_values[index] if index < len(self.match_values) else "")
                i = end + 1
            elif self.is_variable_name(name):
                out.append(self.variables.get(name.lower(), ""))
                i = end + 1
            else:
                out.append("$")
                i = start + 1

    def is_variable_name(self, name):
        """An identifier, or NAMESPACE.identifier for a namespace of
        spec.NAMESPACES; one whose extension the running script did not
        require is an error (RFC 6609 section 3.4.2)."""
        namespace, dot, rest = name.rpartition(".")
        if dot:
            extension = NAMESPACES.get(namespace.lower())
            if extension is None:
                return False
            if extension not in self.script.requires:
                self.fail(f'"${{{name}}}" needs require "{extension}"')
        return bool(rest) and rest[0] in NAME_START and rest.replace("_", "a").isalnum() \
            and rest.isascii()

    def strings(self, values):
        return [self.string(value) for value in values]

    def fields(self, name):
        """The raw values of every field called `name`, in order, as
        editheader left them (RFC 5293 section 7); none for a name no field
        can have (RFC 5228 section 2.4.2.2: not an error)."""
        if not valid_header_name(name):
            return []
        if self._fields is None:
            self._fields = {}
            fields = self.message.headers.as_written() if self.header is None else self.header
            for field, value, *_ in fields:
                self._fields.setdefault(field, []).append(value)
        return self._fields.get(name.lower().encode("utf-8", "surrogateescape"), [])

    # --- commands ------------------------------------------------------------

    def block(self, commands):
        for node in commands:
            self.line = node["line"]
            if "ext" in node:
                getattr(load(node["ext"]), "cmd_" + node["cmd"])(self, node)
            else:
                getattr(self, "cmd_" + node["cmd"])(node)

    def cmd_if(self, node):
        line = self.line
        for index, (test, block) in enumerate(node["branches"]):
            if self.test(test):
                if self.trace is not None:
                    what = "if" if index == 0 else f"elsif (branch {index + 1})"
                    self.trace.append((self.script.name, line, f"{what} matched"))
                return self.block(block)
        if node["else"] is not None:
            if self.trace is not None:
                self.trace.append((self.script.name, line, "else taken"))
            self.block(node["else"])

    def cmd_stop(self, node):
        raise Stop

    def cmd_keep(self, node):
        self.store(Keep(self.flags_for(node)))

    def cmd_discard(self, node):
        self.keep_cancelled = True
        if Discard() not in self.actions:
            self.add(Discard())

    def cmd_fileinto(self, node):
        try:
            folder = check_folder(self.string(node["folder"]))
        except UnsafeFolder as e:
            self.fail(f"fileinto: {e}")
        self.store(FileInto(folder, self.flags_for(node), node["create"], node["copy"]),
                   node["copy"])

    def cmd_redirect(self, node):
        written = self.string(node["address"])
        try:
            address = smtp_address(written)
        except InvalidAddress:
            # RFC 5228 section 2.4.2.3: no address, so no redirect; never
            # one to whatever address a reader could find in the damage.
            self.fail(f'redirect: invalid address "{written.strip()}"')
        if not node["copy"]:
            self.keep_cancelled = True
        if any(isinstance(a, Redirect) and same_address(a.address, address)
               for a in self.actions):
            return self.log.append(f"redirect to {address} given twice: sent once")
        self.redirects += 1
        if self.redirects > MAX_REDIRECTS:
            self.fail(f"more than {MAX_REDIRECTS} redirects")
        self.add(Redirect(address, node["copy"]))

    def cmd_vacation(self, node):
        if self.vacation_done:
            self.fail("vacation used more than once (RFC 5230 section 4.7)")
        self.vacation_done = True
        from .vacation import respond

        action, note = respond(self, node)
        self.log.append(note)
        if action is not None:
            self.add(action)
            self.records.append(("vacation", action.to, action.handle, action.seconds))

    def cmd_set(self, node):
        value = self.string(node["value"])
        for modifier in node["modifiers"]:
            value = MODIFIERS[modifier](value)
        self.variables[node["name"]] = value[:MAX_VARIABLE_LENGTH]

    def cmd_setflag(self, node):
        self.set_flags(node["variable"], flag_list(" ".join(self.strings(node["flags"]))))

    def cmd_addflag(self, node):
        flags = self.get_flags(node["variable"]) + self.strings(node["flags"])
        self.set_flags(node["variable"], flag_list(" ".join(flags)))

    def cmd_removeflag(self, node):
        gone = {f.lower() for f in flag_list(" ".join(self.strings(node["flags"])))}
        self.set_flags(node["variable"],
                       [f for f in self.get_flags(node["variable"]) if f.lower() not in gone])

    def get_flags(self, variable):
        return flag_list(self.flags if variable is None
                         else self.variables.get(variable.lower(), ""))

    def set_flags(self, variable, flags):
        if variable is None:
            self.flags = " ".join(flags)
        else:
            self.variables[variable.lower()] = " ".join(flags)[:MAX_VARIABLE_LENGTH]

    def flags_for(self, node):
        """:flags given: those; else the internal variable (RFC 5232 section 5)."""
        if node.get("flags") is None:
            return flag_list(self.flags)
        return flag_list(" ".join(self.strings(node["flags"])), any_keyword=True)

    def store(self, action, copy=False):
        """A second store into the same folder merges into the first one
        (RFC 5228 section 2.10.3: the message lands there once), with the
        later store's flags, as Pigeonhole's imap4flags merges them; a
        store from a script without imap4flags has none to give, and the
        earlier flags stay."""
        if not copy:
            self.keep_cancelled = True
        for index, earlier in enumerate(self.actions):
            if isinstance(earlier, STORES) and earlier.folder == action.folder:
                flags = (action.flags if "imap4flags" in self.script.requires
                         else earlier.flags)
                self.actions[index] = (Keep(flags) if isinstance(earlier, Keep) else
                                       FileInto(earlier.folder, flags,
                                                earlier.create or action.create,
                                                earlier.copy and copy))
                return self.log.append(f"{action.folder} named twice: stored once")
        self.add(action)

    def add(self, action):
        if len(self.actions) >= MAX_ACTIONS:
            self.fail(f"more than {MAX_ACTIONS} actions")
        for earlier in self.actions:
            problem = earlier.conflict(action) or action.conflict(earlier)
            if problem:
                self.fail(problem)
        self.actions.append(action)
        if self.trace is not None:
            self.trace.append((self.script.name, self.line, type(action).__name__.lower()))

    # --- tests ---------------------------------------------------------------

    def test(self, node):
        if "ext" in node:
            return getattr(load(node["ext"]), "test_" + node["test"])(self, node)
        return getattr(self, "test_" + node["test"])(node)

    def test_true(self, node):
        return True

    def test_false(self, node):
        return False

    def test_not(self, node):
        return not self.test(node["tests"][0])

    def test_allof(self, node):
        return all(self.test(t) for t in node["tests"])

    def test_anyof(self, node):
        return any(self.test(t) for t in node["tests"])

    def test_exists(self, node):
        return all(self.fields(name) for name in self.strings(node["headers"]))

    def test_size(self, node):
        if node["compare"] == "over":
            return self.message.size > node["limit"]
        return self.message.size < node["limit"]

    def test_header(self, node):
        raw = self.pick_index([v for name in self.strings(node["headers"])
                               for v in self.fields(name)], node)
        return self.matches(node, [text(v) for v in raw], self.strings(node["keys"]))

    def test_address(self, node):
        values = []
        raw = self.pick_index([v for name in self.strings(node["headers"])
                               for v in self.fields(name)], node)
        for field in raw:
            for address in address_values(field.decode("utf-8", "replace")):
                values.append(address_part(address, node["part"], self.envelope.delimiters))
        return self.matches(node, [v for v in values if v is not None],
                            self.strings(node["keys"]))

    def test_envelope(self, node):
        values = []
        for part in self.strings(node["parts"]):
            address = {"from": self.envelope.from_, "to": self.envelope.to}.get(part.lower())
            if address is not None:
                values.append(address_part(address, node["part"], self.envelope.delimiters))
        return self.matches(node, [v for v in values if v is not None],
                            self.strings(node["keys"]))

    def test_string(self, node):
        return self.matches(node, self.strings(node["source"]), self.strings(node["keys"]))

    def test_hasflag(self, node):
        if node["variables"] is None:
            flags = flag_list(self.flags)
        else:
            flags = [f for name in node["variables"]
                     for f in flag_list(self.variables.get(name.lower(), ""))]
        keys = self.strings(node["flags"])
        if node["match"] in ("is", "contains"):  # as Pigeonhole: other keys stay whole
            keys = flag_list(" ".join(keys))
        return self.matches(node, flags, keys)

    def test_duplicate(self, node):
        """RFC 7352: the ID is only recorded by Outcome.commit(), so a second
        test of one ID in the same run answers as the first did."""
        if node["uniqueid"] is not None:
            unique = self.string(node["uniqueid"])
        else:
            name = self.string(node["header"]) if node["header"] else "message-id"
            values = self.fields(name)
            if not values or not values[0].strip():
                self.log.append(f"duplicate: no {name} field, so not a duplicate")
                return False
            unique = text(values[0]).strip()
        seconds = node["seconds"] if node["seconds"] is not None else DEFAULT_DUPLICATE_SECONDS
        key = duplicate_key(self.string(node["handle"]), unique)
        seen = self.state.duplicate_seen(key, seconds, node["last"])
        record = ("duplicate", key, seconds, node["last"])
        if record not in self.records:
            self.records.append(record)
        if seen:
            self.log.append(f"duplicate: {key} seen before")
        return seen

    def pick_index(self, values, node):
        """RFC 5260 section 6: with :index N only the Nth value (from the end
        with :last), counting the fields of every name in the order the
        test lists the names, as Pigeonhole does; no :index, all of them.
        For any test that takes :index (the date extension's too)."""
        index = node.get("index")
        if index is None:
            return values
        if index > len(values):
            return []
        return [values[-index if node.get("last") else index - 1]]

    def matches(self, node, values, keys):
        """Whether any of the values (any iterable) matches any key under the
        node's match type and comparator.  :count compares their number (RFC
        5231 section 4.2); :matches and :regex set ${0}... for the variables
        extension."""
        match, comparator = node["match"], node["comparator"]
        relation = node.get("relation")
        if match == "count":
            count = str(sum(1 for _ in values))
            return any(compare("value", comparator, count, key, relation) for key in keys)
        for value in values:
            for key in keys:
                try:
                    result = compare(match, comparator, value, key, relation)
                except ValueError as e:  # regex.RegexError: a pattern built at run time
                    from .regex import RegexTooCostly

                    self.fail(str(e) if isinstance(e, RegexTooCostly)
                              else f'invalid regular expression "{key}": {e}')
                if match not in ("matches", "regex"):
                    if result:
                        return True
                elif result is not None:
                    # RFC 5229 section 3.2: ${0} is the whole value, ${1}... the wildcards
                    # (or the groups, draft-ietf-sieve-regex-01 section 3).
                    self.match_values = [value, *result] if match == "matches" else result
                    return True
        return False


def quote_regex(value):
    """:quoteregex (draft-ietf-sieve-regex-01 section 5); regex.py is loaded
    only by a script that uses it."""
    from .regex import quote_regex as quote

    return quote(value)


def flag_list(flags, any_keyword=False):
    """Space-separated flags as a list, duplicates (any case) and flags
    that are no valid IMAP flag dropped, as Pigeonhole drops them; with
    any_keyword (the :flags argument, as Pigeonhole's) only a system flag
    that is none of the five (RFC 5232 section 3): the store refuses the
    keyword that is no atom (lda/store/keywords.py)."""
    result, seen = [], set()
    for flag in flags.split(" "):
        if flag.startswith("\\"):
            if flag.lower() not in SYSTEM_FLAGS:
                continue
        elif not flag or not (any_keyword or is_atom(flag)):
            continue
        if flag.lower() not in seen:
            seen.add(flag.lower())
            result.append(flag)
    return result


def is_atom(text):
    """RFC 3501 section 9: an IMAP keyword is an atom, printable ASCII
    without atom-specials."""
    return all(" " < c < "\x7f" and c not in ATOM_SPECIALS for c in text)


def duplicate_key(handle, unique_id):
    """The tracking ID of RFC 7352 section 3.1: handle and unique ID, kept
    apart by quoting the handle, readable in a database row."""
    quoted = handle.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" {unique_id}'

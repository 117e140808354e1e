"""What each command and test accepts, checked at compile time.

A syntax tree from parser.py becomes the AST the interpreter runs (and the
cache stores as JSON): plain dicts and lists, every tagged argument resolved
to a named field with its default filled in.  Errors carry the line and
column of the offending token; all of them are collected before SieveError
is raised, so `lda sieve check` can list every problem at once.
"""

from .actions import UnsafeFolder, check_folder
from .address import InvalidAddress, smtp_address
from .errors import SieveError
from .extensions import MODULES, load
from .fields import addresses, valid_address, valid_header_name
from .spec import (
    COPY,
    FLAGS,
    INDEX,
    MATCH,
    MATCH_DEFAULTS,
    NAMESPACES,
    NUMBER,
    PARTS,
    STRING,
    STRINGS,
    Spec,
    tag,
)

CAPABILITIES = frozenset({
    "fileinto", "envelope", "copy", "imap4flags", "variables", "duplicate", "vacation",
    "subaddress", "mailbox", "comparator-i;octet", "comparator-i;ascii-casemap",
    "comparator-i;ascii-numeric", "relational", "regex", "encoded-character", "index"})
COMPARATORS = ("i;ascii-casemap", "i;octet", "i;ascii-numeric")
# RFC 5228 section 2.7.3: only these two may be used without a require.
BUILTIN_COMPARATORS = ("i;ascii-casemap", "i;octet")
RELATIONS = ("gt", "ge", "lt", "le", "eq", "ne")  # RFC 5231 section 4
SUBSTRING_MATCHES = ("contains", "matches", "regex")  # i;ascii-numeric has none
ENVELOPE_PARTS = ("from", "to")
# RFC 5228 section 5.1: "Implementations MUST restrict the address test to
# headers that contain addresses".  The address fields of RFC 5322 section
# 3.6 and the trace and list fields that carry addresses in practice; lda
# also allows Return-Path, Envelope-To and Disposition-Notification-To,
# which Pigeonhole refuses.
ADDRESS_HEADERS = frozenset({
    "from", "sender", "reply-to", "to", "cc", "bcc", "resent-from", "resent-sender",
    "resent-reply-to", "resent-to", "resent-cc", "resent-bcc", "return-path",
    "delivered-to", "x-original-to", "envelope-to", "errors-to", "apparently-to",
    "mail-followup-to", "mail-reply-to", "return-receipt-to", "disposition-notification-to",
    "x-beenthere"})
# RFC 5229 section 4: modifiers of one precedence exclude each other.
MODIFIER_PRECEDENCE = {"lower": 40, "upper": 40, "lowerfirst": 30, "upperfirst": 30,
                       "quotewildcard": 20, "quoteregex": 20, "encodeurl": 15, "length": 10}
MODIFIER_EXTENSIONS = {"quoteregex": "regex"}


COMMANDS = {
    "stop": Spec(), "discard": Spec(),
    "keep": Spec(tags=FLAGS, defaults={"flags": None}),
    "redirect": Spec(tags=COPY, positional=[("address", STRING)], defaults={"copy": False}),
    "fileinto": Spec("fileinto", {**COPY, **FLAGS, ":create": tag("create", extension="mailbox")},
                     [("folder", STRING)], {"copy": False, "flags": None, "create": False}),
    "setflag": Spec("imap4flags", positional=[("variable", STRING), ("flags", STRINGS)],
                    optional_first=True, defaults={"variable": None}),
    "set": Spec("variables", {f":{m}": tag("modifiers", m, extension=MODIFIER_EXTENSIONS.get(m))
                              for m in MODIFIER_PRECEDENCE},
                [("name", STRING), ("value", STRING)], {"modifiers": []}),
    "vacation": Spec("vacation", {
        ":days": tag("days", kind=NUMBER), ":subject": tag("subject", kind=STRING),
        ":from": tag("from", kind=STRING), ":addresses": tag("addresses", kind=STRINGS),
        ":mime": tag("mime"), ":handle": tag("handle", kind=STRING)},
        [("reason", STRING)], {"days": None, "subject": None, "from": None, "addresses": [],
                               "mime": False, "handle": None}),
}
COMMANDS["addflag"] = COMMANDS["removeflag"] = COMMANDS["setflag"]
CONTROLS = ("if", "elsif", "else", "require")

TESTS = {
    "true": Spec(), "false": Spec(),
    "header": Spec(tags={**MATCH, **INDEX}, positional=[("headers", STRINGS), ("keys", STRINGS)],
                   defaults=MATCH_DEFAULTS),
    "address": Spec(tags={**MATCH, **PARTS, **INDEX},
                    positional=[("headers", STRINGS), ("keys", STRINGS)], defaults={**MATCH_DEFAULTS, "part": "all"}),
    "envelope": Spec("envelope", {**MATCH, **PARTS}, [("parts", STRINGS), ("keys", STRINGS)],
                     {**MATCH_DEFAULTS, "part": "all"}),
    "exists": Spec(positional=[("headers", STRINGS)]),
    "size": Spec(tags={":over": tag("compare", "over"), ":under": tag("compare", "under")},
                 positional=[("limit", NUMBER)]),
    "hasflag": Spec("imap4flags", MATCH, [("variables", STRINGS), ("flags", STRINGS)],
                    {**MATCH_DEFAULTS, "variables": None}, optional_first=True),
    "string": Spec("variables", MATCH, [("source", STRINGS), ("keys", STRINGS)],
                   MATCH_DEFAULTS),
    "duplicate": Spec("duplicate", {
        ":handle": tag("handle", kind=STRING), ":header": tag("header", kind=STRING),
        ":uniqueid": tag("uniqueid", kind=STRING), ":seconds": tag("seconds", kind=NUMBER),
        ":last": tag("last")},
        defaults={"handle": "", "header": None, "uniqueid": None, "seconds": None,
                  "last": False}),
}
TEST_LISTS = ("allof", "anyof")
ROUTES = {}  # command or test defined here: [(fields, extension module that runs it)]


IMPLIES = {}  # capability: the capabilities that requiring it requires too


def _merge_extensions():
    """Each module under extensions/ adds its capabilities, commands, tests
    and the tags it gives to commands and tests defined elsewhere
    (extensions/__init__.py describes the protocol)."""
    global CAPABILITIES
    capabilities = set(CAPABILITIES)
    for name in MODULES:
        module = load(name)
        capabilities.update(module.CAPABILITIES)
        IMPLIES.update(getattr(module, "IMPLIES", {}))
        for table, specs in ((COMMANDS, module.COMMANDS), (TESTS, module.TESTS)):
            for key, spec in specs.items():
                spec.module = name
                table[key] = spec
        for target, tags in module.TAGS.items():
            spec = COMMANDS.get(target) or TESTS[target]
            spec.tags = {**spec.tags, **tags}
        for target, fields in getattr(module, "ROUTES", {}).items():
            ROUTES.setdefault(target, []).append((fields, name))
    CAPABILITIES = frozenset(capabilities)


_merge_extensions()


class Validator:
    def __init__(self, disabled=frozenset()):
        self.errors = []
        self.requires = set()
        self.granted = set()  # what ihave gave some block (extensions/ihave.py)
        self._match_checked = set()  # id() of the nodes check_match has seen
        self.disabled = disabled  # capabilities lda.toml has not enabled (script.py)
        self.decided = set()  # id() of the if chains with a branch constantly true

    def error(self, line, col, message):
        self.errors.append((line, col, message))

    def script(self, nodes):
        position = 0
        while position < len(nodes) and nodes[position].name == "require":
            self.require(nodes[position])
            position += 1
        return self.block(nodes[position:])

    def require(self, node):
        if node.block is not None or node.tests or len(node.args) != 1 \
                or node.args[0].kind != "strings":
            return self.error(node.line, node.col, "require takes a string list and ends "
                              'with ";"')
        arg = node.args[0]
        for name, (line, col) in zip(arg.value, arg.positions):
            if name in CAPABILITIES and name not in self.disabled:
                self.requires.add(name)
                self.requires.update(IMPLIES.get(name, ()))
            else:
                self.error(line, col, f'unsupported extension "{name}"')

    def block(self, nodes):
        result, previous = [], None
        for node in nodes:
            if node.name in ("elsif", "else"):
                if previous is None or previous["cmd"] != "if" or previous["else"] is not None:
                    self.error(node.line, node.col, f"{node.name} without a preceding if")
                    continue
                self.branch(previous, node)
                continue
            built = self.command(node)
            if built is not None:
                result.append(built)
            previous = built
        return result

    def branch(self, chain, node):
        """elsif and else join the if before them, as one node.  After a
        branch whose test is constantly true they never run: as in
        Pigeonhole, neither their test nor their block is validated."""
        decided = id(chain) in self.decided
        if node.name == "elsif":
            chain["branches"].append(self.guarded(chain, node, decided))
        else:
            if node.args or node.tests:
                self.error(node.line, node.col, "else takes no arguments or test")
            chain["else"] = self.body(node, decided)

    def guarded(self, chain, node, decided=False):
        """[test, block] of an if or elsif.  A block whose test is
        constantly false (constant()) is not validated and compiles empty,
        as Pigeonhole skips it: whatever it holds never runs.  RFC 5463
        section 4: the block an ihave test guards is compiled with its
        capabilities required, and not at all when one is unknown."""
        if decided:
            self.condition(node, validate=False)
            return [{"test": "false", "line": node.line}, self.body(node, skip=True)]
        errors = len(self.errors)
        test = self.condition(node)
        value = constant(test) if len(self.errors) == errors else None
        if value is False:
            return [test, self.body(node, skip=True)]
        if value:
            self.decided.add(id(chain))
        granted = set(granted_capabilities(test))
        if not granted:
            return [test, self.body(node)]
        if not granted <= CAPABILITIES and node.block is not None:
            return [test, []]
        before = self.requires
        self.requires = before | granted
        self.granted |= granted
        try:
            return [test, self.body(node)]
        finally:
            self.requires = before

    def body(self, node, skip=False):
        if node.block is None:
            self.error(node.line, node.col, f"{node.name} needs a block {{ ... }}")
            return []
        return [] if skip else self.block(node.block)

    def condition(self, node, validate=True):
        if node.args or len(node.tests) != 1 or node.test_list:
            self.error(node.line, node.col, f"{node.name} takes one test")
            return {"test": "false", "line": node.line}
        return self.test(node.tests[0]) if validate else None

    def command(self, node):
        if node.name == "require":
            return self.error(node.line, node.col,
                              "require must come before every other command")
        if node.name == "if":
            chain = {"cmd": "if", "line": node.line, "branches": [], "else": None}
            chain["branches"].append(self.guarded(chain, node))
            return chain
        spec = self.lookup(node, COMMANDS, "command")
        if spec is None:
            return None
        if node.tests:
            self.error(node.tests[0].line, node.tests[0].col,
                       f"{node.name} takes no test")
        if node.block is not None and not spec.block:
            self.error(node.line, node.col, f'{node.name} takes no block; missing ";"?')
        built = {"cmd": node.name, "line": node.line}
        if not self.arguments(node, spec, built):
            return None
        self.check(node, spec, built)
        return built

    def test(self, node):
        built = {"test": node.name, "line": node.line}
        if node.name in TEST_LISTS or node.name == "not":
            if node.args or not node.tests or (node.name == "not") == node.test_list:
                self.error(node.line, node.col, f"{node.name} takes "
                           + ("one test" if node.name == "not" else "a list of tests (...)"))
            built["tests"], errors = [], len(self.errors)
            for member in node.tests:
                built["tests"].append(self.test(member))
                if node.name in TEST_LISTS and len(self.errors) == errors \
                        and constant(built["tests"][-1]) is (node.name == "anyof"):
                    break  # it decides the list: the rest never runs (Pigeonhole)
            return built
        spec = self.lookup(node, TESTS, "test")
        if spec is not None and node.tests:
            self.error(node.tests[0].line, node.tests[0].col, f"{node.name} takes no test")
        if spec is None or not self.arguments(node, spec, built):
            return {"test": "false", "line": node.line}
        self.check(node, spec, built)
        return built

    def check(self, node, spec, built):
        """The command's or test's own checks: a check_NAME method here, or
        check_NAME(validator, node, built) in its extension module, which
        also runs it (the interpreter reads "ext").  Every test with a match
        type gets check_match, and one with :index check_index, first."""
        if "comparator" in built:
            self.check_match(node, built, spec)
        if "index" in built or (built.get("last") and ":index" in spec.tags):
            self.check_index(node, built)
        module = spec.module or next((name for fields, name in ROUTES.get(node.name, ())
                                      if any(field in built for field in fields)), None)
        if module is not None:
            built["ext"] = module
            check = getattr(load(module), "check_" + node.name, None)
            if check:
                check(self, node, built)
            return
        check = getattr(self, "check_" + node.name, None)
        if check:
            check(node, built)

    def lookup(self, node, table, kind):
        spec = table.get(node.name)
        if spec is None:
            self.error(node.line, node.col, f'unknown {kind} "{node.name}"')
        elif spec.extension and spec.extension not in self.requires:
            self.error(node.line, node.col, f'{kind} "{node.name}" needs '
                       f'require "{spec.extension}"')
            return None
        return spec

    def arguments(self, node, spec, built):
        """Tags first, then positionals, into named fields of `built`."""
        args = list(node.args)
        ok = True
        while args and args[0].kind == "tag":
            ok &= self.tagged(node, spec, args, built)
        for key, default in spec.defaults.items():
            built.setdefault(key, list(default) if isinstance(default, list) else default)
        positional = spec.positional
        if spec.optional_first and len(args) == len(positional) - 1:
            positional = positional[1:]
        elif spec.optional_last and len(args) == len(positional) - 1:
            positional = positional[:-1]
        if len(args) != len(positional):
            stray = next((a for a in args if a.kind == "tag"), None)
            if not ok:  # a bad tag was reported: what follows it is no sure guide
                return False
            if stray is not None:
                self.error(stray.line, stray.col,
                           f"tag {stray.value} must come before the other arguments")
            else:
                wanted = ", ".join(f"{key} ({kind})" for key, kind in positional)
                self.error(node.line, node.col,
                           f"{node.name} expects {len(positional)} argument"
                           f"{'s' if len(positional) != 1 else ''}"
                           + (f": {wanted}" if wanted else "") + f"; found {len(args)}")
            return False
        for arg, (key, kind) in zip(args, positional):
            built[key] = self.value(arg, kind, node.name)
            ok &= built[key] is not None
        return ok

    def tagged(self, node, spec, args, built):
        arg = args.pop(0)
        entry = spec.tags.get(arg.value)
        if entry is None:
            self.error(arg.line, arg.col, f"unknown tag {arg.value} for {node.name}")
            return False
        key, value, kind, extension = entry
        if extension and extension not in self.requires:
            self.error(arg.line, arg.col, f'tag {arg.value} needs require "{extension}"')
        relation = None
        if key == "match" and kind is not None:  # :value "gt", :count "gt"
            relation = self.relation(arg, args)
            if relation is None:
                return False
        elif kind is not None:
            if not args or args[0].kind == "tag":
                self.error(arg.line, arg.col, f"tag {arg.value} needs a {kind} after it")
                return False
            value = self.value(args.pop(0), kind, arg.value)
        if key == "modifiers":
            built.setdefault(key, []).append(value)
        elif key in built:
            problem = "given twice" if kind is not None or built[key] == value else \
                f'conflicts with an earlier tag ("{built[key]}")'
            self.error(arg.line, arg.col, f"tag {arg.value} {problem}")
            return False
        else:
            built[key] = value
            if relation is not None:
                built["relation"] = relation
        return value is not None

    def relation(self, tag_arg, args):
        """The relation after :value or :count (RFC 5231 section 4); one error
        when it is missing or unknown, and a following tag stays a tag."""
        arg = args.pop(0) if args and args[0].kind != "tag" else None
        text = arg.value[0] if arg is not None and arg.kind == "strings" and arg.single \
            else None
        if text is not None and text.lower() in RELATIONS:
            return text.lower()
        found = ("nothing" if arg is None and not args else "a tag" if arg is None
                 else f'"{text}"' if text is not None
                 else "a string list" if arg.kind == "strings" else f"a {arg.kind}")
        self.error(tag_arg.line, tag_arg.col, f"{tag_arg.value} needs a relation: "
                   '"gt", "ge", "lt", "le", "eq" or "ne" (found ' + found + ")")
        return None

    def value(self, arg, kind, where):
        if kind == NUMBER:
            if arg.kind != "number":
                return self.error(arg.line, arg.col, f"{where} expects a number")
            return arg.value
        if arg.kind != "strings" or (kind == STRING and not arg.single):
            return self.error(arg.line, arg.col, f"{where} expects a {kind}")
        values = arg.value
        if "encoded-character" in self.requires:
            values = [self.decoded(text, position)
                      for text, position in zip(values, arg.positions)]
        return values[0] if kind == STRING else list(values)

    def decoded(self, text, position):
        result, problem = decode_encoded(text)
        if problem:
            self.error(*position, problem)
        return result

    # Per-command checks on constant arguments (a string with "${" may be a
    # variable reference: it is checked when the script runs).

    def constant(self, text):
        return "variables" not in self.requires or "${" not in text

    def check_match(self, node, built, spec=None):
        """The comparator, and whether it fits the match type; a constant
        :regex key must compile.  Runs once per test (Validator.check calls
        it for every test with a comparator; an extension may call it too)."""
        if id(built) in self._match_checked:
            return
        self._match_checked.add(id(built))
        comparator, match = built["comparator"], built.get("match")
        if comparator not in COMPARATORS:
            self.error(node.line, node.col, f'comparator "{comparator}" is not supported '
                       f"({', '.join(COMPARATORS)})")
        elif comparator not in BUILTIN_COMPARATORS \
                and f"comparator-{comparator}" not in self.requires:
            self.error(node.line, node.col, f'comparator "{comparator}" needs require '
                       f'"comparator-{comparator}"')
        elif comparator == "i;ascii-numeric" and match in SUBSTRING_MATCHES:
            self.error(node.line, node.col, f'comparator "{comparator}" cannot be used '
                       f"with :{match} (it has no substring match)")
        elif match == "regex" and spec is not None and spec.positional:
            self.check_regex_keys(node, built[spec.positional[-1][0]],
                                  comparator == "i;ascii-casemap")

    check_comparator = check_match  # the name extension modules were given

    def check_regex_keys(self, node, keys, casemap):
        """The keys are the last argument of every test with a match type
        (`keys` as built: encoded characters already decoded)."""
        from .regex import RegexError, compile_regex

        for key, (line, col) in zip(keys, node.args[-1].positions):
            if self.constant(key):
                try:
                    compile_regex(key, casemap)
                except RegexError as e:
                    self.error(line, col, f'invalid regular expression "{key}": {e}')

    def check_index(self, node, built):
        """RFC 5260 section 6: indexes count from 1; :last only with :index."""
        if "index" not in built:
            self.error(node.line, node.col, f"{node.name}: :last needs :index")
        elif built["index"] == 0:
            self.error(node.line, node.col, f"{node.name}: :index counts from 1, not 0")

    def check_address(self, node, built):
        for name in built["headers"]:
            if (self.constant(name) and valid_header_name(name)
                    and name.lower() not in ADDRESS_HEADERS):
                self.error(node.line, node.col, f'address: "{name}" is no header field '
                           "that holds addresses (RFC 5228 section 5.1)")

    def check_envelope(self, node, built):
        for part in built["parts"]:
            if self.constant(part) and part.lower() not in ENVELOPE_PARTS:
                self.error(node.line, node.col, f'envelope part "{part}" is not supported '
                           "(from, to)")

    def check_size(self, node, built):
        if "compare" not in built:
            self.error(node.line, node.col, "size needs :over or :under")

    def check_hasflag(self, node, built):
        if built["variables"] is not None:
            self.check_variable_names(node, built["variables"])

    def check_setflag(self, node, built):
        if built["variable"] is not None:
            self.check_variable_names(node, [built["variable"]])

    check_addflag = check_removeflag = check_setflag

    def check_variable_names(self, node, names):
        if "variables" not in self.requires:
            return self.error(node.line, node.col,
                              f'a variable name in {node.name} needs require "variables"')
        for name in names:
            if not valid_identifier(name) and not self.namespaced(name):
                self.error(node.line, node.col, f'invalid variable name "{name}"')

    def namespaced(self, name):
        """NAMESPACE.identifier, in a namespace of a required extension."""
        namespace, _, rest = name.partition(".")
        return NAMESPACES.get(namespace.lower()) in self.requires and valid_identifier(rest)

    def check_set(self, node, built):
        self.check_variable_names(node, [built["name"]])
        seen = {}
        for modifier in built["modifiers"]:
            level = MODIFIER_PRECEDENCE[modifier]
            if level in seen:
                self.error(node.line, node.col, f":{modifier} conflicts with :{seen[level]}")
            seen[level] = modifier
        built["modifiers"].sort(key=MODIFIER_PRECEDENCE.get, reverse=True)
        built["name"] = built["name"].lower()

    def check_redirect(self, node, built):
        """An address the script writes is checked here, one variables
        build when the redirect runs (interpreter.py), as in Pigeonhole."""
        if self.constant(built["address"]):
            try:
                smtp_address(built["address"])
            except InvalidAddress:
                self.error(node.line, node.col,
                           f'redirect: invalid address "{built["address"]}"')

    def check_fileinto(self, node, built):
        """A constant name is normalised ("INBOX.x" is "x"); one that cannot
        be stored fails when the script runs, for that message only, as in
        Pigeonhole: RFC 5228 section 4.1 makes it a delivery failure."""
        if self.constant(built["folder"]):
            try:
                built["folder"] = check_folder(built["folder"])
            except UnsafeFolder:
                pass

    def check_vacation(self, node, built):
        if built["days"] is not None and built.get("seconds") is not None:
            self.error(node.line, node.col, "vacation: :days and :seconds exclude each other")
        sender = built["from"]
        if sender is not None and self.constant(sender):
            # RFC 5230 section 4.4: an address; a :from built from variables
            # is checked when it runs (vacation.py: the recipient instead).
            found = addresses(" ".join(sender.split()))
            if len(found) != 1 or not valid_address(found[0]):
                self.error(node.line, node.col, f'vacation: :from "{sender}" is not an address')

    def check_duplicate(self, node, built):
        # A :header no field can have is no error (Pigeonhole warns): the
        # test finds no such field when it runs, as header does.
        if built["header"] is not None and built["uniqueid"] is not None:
            self.error(node.line, node.col, "duplicate: :header and :uniqueid exclude "
                       "each other")


def constant(test):
    """A test's value when no message is needed to know it (True or False),
    else None: Pigeonhole's rule for the code it leaves unvalidated (its
    validator's validate_const): true and false, not of a constant, an
    allof with a false member or only true ones (anyof: the reverse), and
    an ihave of a capability lda does not have."""
    name = test["test"]
    if name in ("true", "false"):
        return name == "true"
    if name == "ihave":
        return None if test.get("available") else False
    if name == "not":
        value = constant(test["tests"][0]) if test["tests"] else None
        return None if value is None else not value
    if name in TEST_LISTS and test["tests"]:
        values = [constant(member) for member in test["tests"]]
        decisive = name == "anyof"
        if decisive in values:
            return decisive
        return None if None in values else not decisive
    return None


def granted_capabilities(test):
    """What an ihave test (alone or in an allof) grants the block it guards."""
    if test.get("test") == "allof":
        return [name for member in test["tests"] for name in granted_capabilities(member)]
    return test.get("grants", ())


ENCODED_BODY = frozenset(" \t\r\n0123456789abcdefABCDEF")  # hex digits and blanks


def decode_encoded(text):
    """RFC 5228 section 2.4.2.4: "${hex:40 41}" and "${unicode:1F600}" as the
    characters they name; anything not of that form stays as written.
    Returns (text, problem): a code point that is a surrogate or above
    10FFFF is a problem (a compile error, as in Pigeonhole).  Octets that
    are not UTF-8 become U+FFFD, as they do in a header value (fields.text),
    so "${hex:ff}" matches a raw 0xFF byte there."""
    out, i, problem = [], 0, None
    while True:
        start = text.find("${", i)
        end = text.find("}", start + 2) if start >= 0 else -1
        if end < 0:
            out.append(text[i:])
            return "".join(out), problem
        kind, colon, body = text[start + 2:end].partition(":")
        kind, items = kind.lower(), body.split()
        well_formed = colon and kind in ("hex", "unicode") and items \
            and set(body) <= ENCODED_BODY \
            and (kind == "unicode" or all(len(h) <= 2 for h in items))  # hex-pair: 1*2HEXDIG
        if not well_formed:
            out.append(text[i:start + 2])
            i = start + 2
            continue
        out.append(text[i:start])
        if kind == "hex":
            out.append(bytes(int(h, 16) for h in items).decode("utf-8", "replace"))
        else:
            for h in items:
                code = int(h, 16)
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                    problem = problem or (f"invalid unicode character U+{h.upper()} in "
                                          "${unicode:...}")
                    code = 0xFFFD
                out.append(chr(code))
        i = end + 1


def valid_identifier(name):
    return (bool(name) and name[0] in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
            and all(c.isascii() and (c.isalnum() or c == "_") for c in name))


def validate(nodes, disabled=frozenset()):
    validator = Validator(disabled)
    commands = validator.script(nodes)
    if validator.errors:
        validator.errors.sort(key=lambda e: (e[0], e[1]))
        (line, col, message), *more = validator.errors
        raise SieveError(line, col, message, more)
    return commands, sorted(validator.requires | validator.granted)

"""What each command and test accepts, checked at compile time.

A syntax tree from parser.py becomes the AST the interpreter runs (and the
cache stores as JSON): plain dicts and lists, every tagged argument resolved
to a named field with its default filled in.  Errors carry the line and
column of the offending token; all of them are collected before SieveError
is raised, so `lda sieve check` can list every problem at once.
"""

from .actions import UnsafeFolder, check_folder
from .errors import SieveError
from .extensions import MODULES, load
from .fields import valid_address
from .spec import COPY, FLAGS, MATCH, MATCH_DEFAULTS, NUMBER, PARTS, STRING, STRINGS, Spec, tag
from .spec import NAMESPACES

CAPABILITIES = frozenset({
    "fileinto", "envelope", "copy", "imap4flags", "variables", "duplicate", "vacation",
    "subaddress", "mailbox", "comparator-i;octet", "comparator-i;ascii-casemap"})
COMPARATORS = ("i;ascii-casemap", "i;octet")
ENVELOPE_PARTS = ("from", "to")
# RFC 5229 section 4: modifiers of one precedence exclude each other.
MODIFIER_PRECEDENCE = {"lower": 40, "upper": 40, "lowerfirst": 30, "upperfirst": 30,
                       "quotewildcard": 20, "encodeurl": 15, "length": 10}


COMMANDS = {
    "stop": Spec(), "discard": Spec(),
    "keep": Spec(tags=FLAGS, defaults={"flags": None}),
    "redirect": Spec(tags=COPY, positional=[("address", STRING)], defaults={"copy": False}),
    "fileinto": Spec("fileinto", {**COPY, **FLAGS, ":create": tag("create", extension="mailbox")},
                     [("folder", STRING)], {"copy": False, "flags": None, "create": False}),
    "setflag": Spec("imap4flags", positional=[("variable", STRING), ("flags", STRINGS)],
                    optional_first=True, defaults={"variable": None}),
    "set": Spec("variables", {f":{m}": tag("modifiers", m) for m in MODIFIER_PRECEDENCE},
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
    "header": Spec(tags=MATCH, positional=[("headers", STRINGS), ("keys", STRINGS)],
                   defaults=MATCH_DEFAULTS),
    "address": Spec(tags={**MATCH, **PARTS}, positional=[("headers", STRINGS), ("keys", STRINGS)],
                    defaults={**MATCH_DEFAULTS, "part": "all"}),
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
    def __init__(self):
        self.errors = []
        self.requires = set()
        self.granted = set()  # what ihave gave some block (extensions/ihave.py)

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
            if name in CAPABILITIES:
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
        """elsif and else join the if before them, as one node."""
        if node.name == "elsif":
            chain["branches"].append(self.guarded(node))
        else:
            if node.args or node.tests:
                self.error(node.line, node.col, "else takes no arguments or test")
            chain["else"] = self.body(node)

    def guarded(self, node):
        """[test, block] of an if or elsif.  RFC 5463 section 4: the block
        an ihave test guards is compiled with its capabilities required,
        and not at all when one is unknown (it never runs)."""
        test = self.condition(node)
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

    def body(self, node):
        if node.block is None:
            self.error(node.line, node.col, f"{node.name} needs a block {{ ... }}")
            return []
        return self.block(node.block)

    def condition(self, node):
        if node.args or len(node.tests) != 1 or node.test_list:
            self.error(node.line, node.col, f"{node.name} takes one test")
            return {"test": "false", "line": node.line}
        return self.test(node.tests[0])

    def command(self, node):
        if node.name == "require":
            return self.error(node.line, node.col,
                              "require must come before every other command")
        if node.name == "if":
            return {"cmd": "if", "line": node.line,
                    "branches": [self.guarded(node)], "else": None}
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
            built["tests"] = [self.test(t) for t in node.tests]
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
        also runs it (the interpreter reads "ext")."""
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
        if len(args) != len(positional):
            stray = next((a for a in args if a.kind == "tag"), None)
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
        if kind is not None:
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
        return value is not None

    def value(self, arg, kind, where):
        if kind == NUMBER:
            if arg.kind != "number":
                return self.error(arg.line, arg.col, f"{where} expects a number")
            return arg.value
        if arg.kind != "strings" or (kind == STRING and not arg.single):
            return self.error(arg.line, arg.col, f"{where} expects a {kind}")
        return arg.value[0] if kind == STRING else list(arg.value)

    # Per-command checks on constant arguments (a string with "${" may be a
    # variable reference: it is checked when the script runs).

    def constant(self, text):
        return "variables" not in self.requires or "${" not in text

    def check_comparator(self, node, built):
        if built.get("comparator") not in COMPARATORS:
            self.error(node.line, node.col, f'comparator "{built["comparator"]}" is not '
                       "supported (i;ascii-casemap, i;octet)")

    def check_headers(self, node, names):
        for name in names:
            if self.constant(name) and not valid_header_name(name):
                self.error(node.line, node.col, f'invalid header name "{name}"')

    def check_header(self, node, built):
        self.check_comparator(node, built)
        self.check_headers(node, built["headers"])

    check_address = check_header

    def check_string(self, node, built):
        self.check_comparator(node, built)

    def check_exists(self, node, built):
        self.check_headers(node, built["headers"])

    def check_envelope(self, node, built):
        self.check_comparator(node, built)
        for part in built["parts"]:
            if self.constant(part) and part.lower() not in ENVELOPE_PARTS:
                self.error(node.line, node.col, f'envelope part "{part}" is not supported '
                           "(from, to)")

    def check_size(self, node, built):
        if "compare" not in built:
            self.error(node.line, node.col, "size needs :over or :under")

    def check_hasflag(self, node, built):
        self.check_comparator(node, built)
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
        if self.constant(built["address"]) and not valid_address(built["address"]):
            self.error(node.line, node.col, f'redirect: invalid address "{built["address"]}"')

    def check_fileinto(self, node, built):
        if self.constant(built["folder"]):
            try:
                built["folder"] = check_folder(built["folder"])
            except UnsafeFolder as e:
                self.error(node.line, node.col, f"fileinto: {e}")

    def check_vacation(self, node, built):
        if built["days"] is not None and built.get("seconds") is not None:
            self.error(node.line, node.col, "vacation: :days and :seconds exclude each other")

    def check_duplicate(self, node, built):
        if built["header"] is not None and built["uniqueid"] is not None:
            self.error(node.line, node.col, "duplicate: :header and :uniqueid exclude "
                       "each other")
        if built["header"] is not None:
            self.check_headers(node, [built["header"]])


def granted_capabilities(test):
    """What an ihave test (alone or in an allof) grants the block it guards."""
    if test.get("test") == "allof":
        return [name for member in test["tests"] for name in granted_capabilities(member)]
    return test.get("grants", ())


def valid_header_name(name):
    """RFC 5322 section 3.6.8: printable US-ASCII except ":"."""
    return bool(name) and all(33 <= ord(c) <= 126 and c != ":" for c in name)


def valid_identifier(name):
    return (bool(name) and name[0] in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
            and all(c.isascii() and (c.isalnum() or c == "_") for c in name))


def validate(nodes):
    validator = Validator()
    commands = validator.script(nodes)
    if validator.errors:
        validator.errors.sort(key=lambda e: (e[0], e[1]))
        (line, col, message), *more = validator.errors
        raise SieveError(line, col, message, more)
    return commands, sorted(validator.requires | validator.granted)

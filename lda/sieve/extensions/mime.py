"""mime, foreverypart and extracttext (RFC 5703 sections 3, 4 and 7).

foreverypart [:name N] { ... } runs its block once per MIME part, depth
first: at the top level the message itself and every part under it (as
Pigeonhole does), inside another loop the parts under that loop's current
part.  break [:name N] ends the innermost loop, or the one named N and
those inside it.  header/address/exists :mime look at the current part's
header (the message's outside a loop), :anychild at that part and every
part under it; header's :type, :subtype, :contenttype and :param read the
field as a MIME field (Content-Type "text/plain" has type "text"; a
Content-Disposition's type is its disposition, its subtype "").
extracttext sets a variable to the current part's decoded text (text/html
without markup; a multipart or message/rfc822 gives "").

Where lda differs from Pigeonhole 0.5.19: a :param absent from the field
gives no value (Pigeonhole matches "" there); an RFC 2231 parameter in
another charset is converted to UTF-8 (Pigeonhole passes its bytes);
:type, :subtype and :contenttype are lower-case (RFC 2045 section 5.1:
case does not matter; Pigeonhole gives them as written); an outer loop
goes on after an inner loop ends (Pigeonhole ended the outer loop too);
:first counts characters (RFC 5703 section 7), not bytes.  Loops are bounded by
MAX_LOOP_STEPS iterations per run; the parts by mimeparts' bounds.
"""

from ..spec import NUMBER, STRING, STRINGS, Spec, tag

CAPABILITIES = ("mime", "foreverypart", "extracttext")
MAX_LOOP_STEPS = 2000
MODIFIERS = ("lower", "upper", "lowerfirst", "upperfirst", "quotewildcard", "length")
NAME = {":name": tag("name", kind=STRING)}
COMMANDS = {
    "foreverypart": Spec("foreverypart", NAME, defaults={"name": None}, block=True),
    "break": Spec("foreverypart", NAME, defaults={"name": None}),
    "extracttext": Spec("extracttext", {**{f":{m}": tag("modifiers", m) for m in MODIFIERS},
                                        ":first": tag("first", kind=NUMBER)},
                        [("name", STRING)], {"modifiers": [], "first": None}),
}
TESTS = {}
ANY = {":mime": tag("mime", extension="mime"), ":anychild": tag("anychild", extension="mime")}
TAGS = {
    "header": {**ANY, ":type": tag("mime_option", "type", extension="mime"),
               ":subtype": tag("mime_option", "subtype", extension="mime"),
               ":contenttype": tag("mime_option", "contenttype", extension="mime"),
               ":param": tag("mime_params", kind=STRINGS, extension="mime")},
    "address": ANY,
    "exists": ANY,
}
ROUTES = {"header": ("mime", "anychild", "mime_option", "mime_params"),
          "address": ("mime", "anychild"), "exists": ("mime", "anychild")}


class Break(Exception):
    """break: unwinds to the foreverypart it names (or the innermost)."""

    def __init__(self, name):
        super().__init__(name)
        self.name = name


# --- compile time --------------------------------------------------------------

def _loops(validator):
    """The names of the foreverypart loops around the node being checked."""
    if not hasattr(validator, "foreverypart_names"):
        validator.foreverypart_names = []
    return validator.foreverypart_names


def check_foreverypart(validator, node, built):
    loops = _loops(validator)
    loops.append(built["name"])
    try:
        built["block"] = validator.body(node)
    finally:
        loops.pop()


def check_break(validator, node, built):
    loops = _loops(validator)
    if not loops:
        validator.error(node.line, node.col, "break outside foreverypart")
    elif built["name"] is not None and built["name"] not in loops:
        validator.error(node.line, node.col,
                        f'break: no enclosing foreverypart is named "{built["name"]}"')


def check_extracttext(validator, node, built):
    if not _loops(validator):
        validator.error(node.line, node.col, "extracttext outside foreverypart")
    if "variables" not in validator.requires:
        return validator.error(node.line, node.col, 'extracttext needs require "variables"')
    validator.check_set(node, built)  # the variable name and the modifiers, as for set


def _check_mime(validator, node, built):
    if "mime" not in built:
        tag = ":anychild" if "anychild" in built else ":param" if "mime_params" in built \
            else f':{built["mime_option"]}'
        validator.error(node.line, node.col, f"{tag} needs :mime")
    if "mime_option" in built and "mime_params" in built:
        validator.error(node.line, node.col, f':{built["mime_option"]} conflicts with :param')


# The comparator and match type were checked by the validator already; a
# header name that is not valid matches nothing (RFC 5228 section 2.4.2.2).
check_header = check_address = check_exists = _check_mime


# --- run time ------------------------------------------------------------------

def cmd_foreverypart(execution, node):
    from ..mimeparts import message_tree

    current = getattr(execution, "mime_part", None)
    parts = list(message_tree(execution).walk()) if current is None \
        else list(current.walk())[1:]
    try:
        for part in parts:
            execution.mime_steps = getattr(execution, "mime_steps", 0) + 1
            if execution.mime_steps > MAX_LOOP_STEPS:
                execution.fail(f"foreverypart: more than {MAX_LOOP_STEPS} iterations")
            execution.mime_part = part
            execution.block(node["block"])
    except Break as e:
        if e.name is not None and e.name != node["name"]:
            raise
    finally:
        execution.mime_part = current


def cmd_break(execution, node):
    raise Break(node["name"])


def cmd_extracttext(execution, node):
    from ..interpreter import MAX_VARIABLE_LENGTH
    from ..interpreter import MODIFIERS as APPLY

    part = getattr(execution, "mime_part", None)
    if part is None:  # the validator allows extracttext only inside foreverypart
        execution.fail("extracttext outside foreverypart")
    value = "" if part.children or part.type == "multipart" else part.text()
    if node["first"] is not None:
        value = value[:node["first"]]
    for modifier in node["modifiers"]:
        value = APPLY[modifier](value)
    execution.variables[node["name"]] = value[:MAX_VARIABLE_LENGTH]


def _parts(execution, node):
    """The parts whose header a :mime test reads."""
    from ..mimeparts import message_tree

    part = getattr(execution, "mime_part", None) or message_tree(execution)
    return list(part.walk()) if node.get("anychild") else [part]


def _values(part, name):
    return part.values(name.lower().encode("utf-8", "surrogateescape"))


def test_header(execution, node):
    from ..fields import text

    names, keys = execution.strings(node["headers"]), execution.strings(node["keys"])
    params = execution.strings(node["mime_params"]) if "mime_params" in node else None
    for part in _parts(execution, node):
        values = []
        for name in names:
            for raw in _values(part, name):
                values += mime_values(text(raw), node.get("mime_option"), params)
        if execution.matches(node, values, keys):
            return True
    return False


def mime_values(value, option, params):
    """A MIME field's value as header :mime reads it (RFC 5703 section 4.2).

    With :param, the values of the parameters named, or "" when the field
    has none of them: Pigeonhole reads an absent parameter as empty."""
    if option is None and params is None:
        return [value]
    from ..mimeparts import split_parameters

    head, found = split_parameters(value)
    if params is not None:
        return [found[p.lower()] for p in params if p.lower() in found] or [""]
    kind, slash, subtype = head.partition("/")
    kind, subtype = kind.strip().lower(), subtype.strip().lower()
    if option == "type":
        return [kind]
    if option == "subtype":
        return [subtype]
    return [f"{kind}{slash}{subtype}"]


def test_address(execution, node):
    from ..fields import address_part, address_values

    names, keys = execution.strings(node["headers"]), execution.strings(node["keys"])
    for part in _parts(execution, node):
        values = []
        for name in names:
            for raw in _values(part, name):
                for address in address_values(raw.decode("utf-8", "replace")):
                    values.append(address_part(address, node["part"],
                                               execution.envelope.delimiters))
        if execution.matches(node, [v for v in values if v is not None], keys):
            return True
    return False


def test_exists(execution, node):
    """With :anychild each field may be in a different part, as in Pigeonhole."""
    parts = _parts(execution, node)
    return all(any(_values(part, name) for part in parts)
               for name in execution.strings(node["headers"]))

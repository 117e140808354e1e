"""How a command or test is described to the compiler: Spec and tag.

Shared by grammar.py (RFC 5228 and the extensions lda had first) and by
the modules under extensions/, which describe their own commands and tests
with the same two building blocks.  Plain data only: an extension module
imports this at run time too, so it must stay cheap.
"""

STRING, STRINGS, NUMBER = "string", "string list", "number"


def tag(key, value=True, kind=None, extension=None):
    """A tagged argument: it sets `key` to `value`, or to the argument that
    follows it (of `kind`); `extension` must be required to use it."""
    return (key, value, kind, extension)


MATCH = {":is": tag("match", "is"), ":contains": tag("match", "contains"),
         ":matches": tag("match", "matches"), ":comparator": tag("comparator", kind=STRING)}
PARTS = {":all": tag("part", "all"), ":localpart": tag("part", "localpart"),
         ":domain": tag("part", "domain"), ":user": tag("part", "user", extension="subaddress"),
         ":detail": tag("part", "detail", extension="subaddress")}
MATCH_DEFAULTS = {"match": "is", "comparator": "i;ascii-casemap"}
FLAGS = {":flags": tag("flags", kind=STRINGS, extension="imap4flags")}
COPY = {":copy": tag("copy", extension="copy")}
# RFC 5229 section 3 variable namespaces, each with the extension that
# defines it: "${global.x}" needs require "include" (RFC 6609 section 3.4.2).
NAMESPACES = {"global": "include"}


class Spec:
    """A command or test: the extension it belongs to, its tags, its
    positional arguments [(field, kind)], defaults, and whether the first
    positional may be left out (setflag's and hasflag's variable name).
    `module` names the extensions/ module that runs it (None: the
    interpreter's own cmd_/test_ method).  A command with `block` takes a
    block { ... }: its check_NAME builds it (validator.body(node))."""

    def __init__(self, extension=None, tags=None, positional=(), defaults=None,
                 optional_first=False, module=None, block=False):
        self.extension = extension
        self.tags = tags or {}
        self.positional = positional
        self.defaults = defaults or {}
        self.optional_first = optional_first
        self.module = module
        self.block = block

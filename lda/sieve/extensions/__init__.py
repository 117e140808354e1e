"""Sieve extensions that live in a module of their own.

The interpreter's core (interpreter.py, grammar.py) holds RFC 5228 and the
extensions that change how every test matches (variables, comparators,
match types, index).  Each module named in MODULES holds one extension, or
a family of them that share code, and both its halves:

Compile side, read by grammar.py when a script is compiled:
  CAPABILITIES   the names `require` accepts for it
  IMPLIES        optional {capability: (capabilities)}: requiring the one
                 requires the others too ("vacation-seconds" brings
                 "vacation", RFC 6131 section 2)
  COMMANDS       {name: spec.Spec} of its commands
  TESTS          {name: spec.Spec} of its tests
  TAGS           {command or test defined elsewhere: {":tag": spec.tag(...)}},
                 tags it adds to them (an extension tag gets no default:
                 the interpreter reads it with node.get())
  ROUTES         {command or test defined elsewhere: (field, ...)}: a node
                 that sets one of these fields (with a tag from TAGS) is
                 checked and run by this module's check_/cmd_/test_NAME
                 (which may call the validator's own check_NAME)
  check_NAME(validator, node, built)   optional compile-time checks, with
                 validator.error(line, col, message) and validator.requires;
                 a Spec with block=True builds its block here
                 (validator.body(node))

Run side, imported only when a script that uses it runs (the compiled AST
names the module under "ext", so a cached script never loads the others):
  cmd_NAME(execution, node)    a command
  test_NAME(execution, node) -> bool   a test

`execution` is interpreter.Execution: .string()/.strings() expand
variables, .fields(name) gives raw header values, .matches(node, values,
keys) applies the match type and comparator (relational, regex and
i;ascii-numeric included; validator.check_match runs for every test whose
built node has a "comparator"), .pick_index(values, node) keeps the value
that :index/:last select (RFC 5260; give a test those tags with
spec.INDEX, and Validator.check checks them), .add(action) records an
action, .fail(message) is a runtime error (implicit keep), .log a list of
lines for the delivery log, .envelope (with .environment and .options) and
.message the delivery's, .block(commands) runs a block.  The message's
bytes and MIME parts: mimeparts.message_tree(execution), read once per run.
.variables are the running script's (a dict, or include.ScriptVariables:
use .get(), `in` and item assignment only).
"""

MODULES = ("body", "mime", "enotify", "include", "date", "spamtest", "vacation_seconds",
           "reject", "ihave", "environment", "mailbox", "editheader", "debug")
_loaded = {}


def load(name):
    """The extension module `name` (imported once)."""
    module = _loaded.get(name)
    if module is None:
        module = __import__(f"{__name__}.{name}", fromlist=["_"])
        _loaded[name] = module
    return module

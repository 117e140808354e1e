"""ihave and error (RFC 5463).

    ihave <capabilities: string-list>     error <message: string>

ihave is true when lda supports every capability named (section 4).  The
block of an `if` or `elsif` whose test is ihave (alone, or inside allof) is
compiled as if those capabilities were required; when one is unknown the
test is false at compile time, so that block is parsed but not validated
(its commands may belong to an extension lda lacks) and never runs.  The
names are taken as written: variables are not expanded in them, as in
Pigeonhole.  error ends the script with a runtime error: implicit keep,
the message in the log (section 5).

Decision: what ihave grants holds in its own block only (RFC 5463 section
4); Pigeonhole 0.5.19 also lets the rest of the script use it (and the
else of an `if not ihave`).  A script
that gains "variables" through ihave expands ${...} wherever it runs.
"""

from ..spec import STRING, STRINGS, Spec

CAPABILITIES = ("ihave",)
COMMANDS = {"error": Spec("ihave", positional=[("message", STRING)])}
TESTS = {"ihave": Spec("ihave", positional=[("capabilities", STRINGS)])}
TAGS = {}
MAX_MESSAGE = 1024  # characters of error's message in the log


def check_ihave(validator, node, built):
    """The answer is known now: grammar.py's Validator reads "grants" to
    compile (or skip) the guarded block."""
    from ..grammar import CAPABILITIES as SUPPORTED

    built["available"] = all(name in SUPPORTED for name in built["capabilities"])
    built["grants"] = list(built["capabilities"])


def test_ihave(execution, node):
    return node["available"]


def cmd_error(execution, node):
    message = " ".join(execution.string(node["message"]).split())[:MAX_MESSAGE]
    execution.fail(f"error: {message}")

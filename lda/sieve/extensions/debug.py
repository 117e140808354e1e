"""vnd.dovecot.debug (Pigeonhole's spec-bosch-sieve-debug): one command.

    debug_log <message: string>

The message, variables expanded, goes to the delivery log as "DEBUG: " and
the text, as Pigeonhole's sieve_runtime_log writes it, and to `lda sieve
test`'s notes; it changes no action.  Pigeonhole enables the extension by
default, so a script written for it runs here unchanged.

Decision: the text is a user's and the log is the site's (the spec's
section 6 asks for care): control characters are shown as \\xNN escapes so
a line stays one line, a line is cut at MAX_MESSAGE characters, and one run
logs at most MAX_LINES of them (foreverypart can call it once a MIME part),
then one line that counts the rest.  Pigeonhole bounds neither.
"""

from ..spec import STRING, Spec

CAPABILITIES = ("vnd.dovecot.debug",)
COMMANDS = {"debug_log": Spec("vnd.dovecot.debug", positional=[("message", STRING)])}
TESTS = {}
TAGS = {}
MAX_MESSAGE = 1024  # characters of one line, after escaping
MAX_LINES = 32  # lines one run of a script logs
PREFIX = "DEBUG: "


def cmd_debug_log(execution, node):
    count = getattr(execution, "debug_lines", 0) + 1
    execution.debug_lines = count
    if count <= MAX_LINES:
        execution.log.append(PREFIX + shown(execution.string(node["message"])))
        return
    note = f"debug_log: {count - MAX_LINES} more lines not logged"
    if count == MAX_LINES + 1:
        execution.log.append(note)
    else:
        execution.log[execution.log.index(execution.debug_note)] = note
    execution.debug_note = note


def shown(text):
    """text as one printable line of at most MAX_MESSAGE characters."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else
                       (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
                       for c in text[:MAX_MESSAGE])
    return text[:MAX_MESSAGE]

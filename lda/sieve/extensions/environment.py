"""environment (RFC 5183): what a script may know of where it runs.

    environment [COMPARATOR] [MATCH-TYPE] <name: string> <key-list>

The items come from Envelope.environment, which the delivery fills (host
and domain from lda's hostname, remote-ip and remote-host from the LMTP
client), over DEFAULTS.  An item that is unknown, or not known for this
delivery (remote-ip outside LMTP), makes the test false (section 4), as
Pigeonhole does; names are case-sensitive, as in Pigeonhole.

Decision: remote-host is the LMTP client's LHLO name (no DNS lookup on the
delivery path); the LMTP client is the MTA, not the message's sender.
"""

import os

from ..spec import MATCH, MATCH_DEFAULTS, STRING, STRINGS, Spec

CAPABILITIES = ("environment",)
COMMANDS = {}
TESTS = {"environment": Spec("environment", MATCH, [("name", STRING), ("keys", STRINGS)],
                             MATCH_DEFAULTS)}
TAGS = {}

# Section 4's items whose value does not depend on the delivery.
DEFAULTS = {"location": "MDA", "name": "lda", "phase": "during"}


def check_environment(validator, node, built):
    validator.check_comparator(node, built)


def test_environment(execution, node):
    value = item(execution.envelope.environment, execution.string(node["name"]))
    if value is None:
        return False
    return execution.matches(node, [value], execution.strings(node["keys"]))


def item(environment, name):
    """The value of item `name`, or None when it is not known."""
    if name in environment:
        return environment[name]
    if name in DEFAULTS:
        return DEFAULTS[name]
    if name == "version":
        from ... import __version__

        return __version__
    if name == "host":
        return os.uname().nodename
    if name == "domain":
        host = item(environment, "host")
        return host.partition(".")[2] or host
    return None

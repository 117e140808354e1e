"""mailboxexists (RFC 5490 section 3.1): whether folders exist.

    mailboxexists <mailbox-names: string-list>

True when every named folder exists in the user's Maildir (INBOX always
does).  The interpreter does not touch the disk: it asks the caller's
state.mailbox_exists(name) (MemoryState documents it).  A name that is no
safe folder name exists nowhere: false, not an error.  fileinto :create,
the rest of the "mailbox" capability, is the core's (grammar.py).
"""

from ..actions import UnsafeFolder, check_folder
from ..spec import STRINGS, Spec

CAPABILITIES = ()  # "mailbox" is grammar.py's already, for fileinto :create
COMMANDS = {}
TESTS = {"mailboxexists": Spec("mailbox", positional=[("mailboxes", STRINGS)])}
TAGS = {}


def test_mailboxexists(execution, node):
    for name in execution.strings(node["mailboxes"]):
        try:
            folder = check_folder(name)
        except UnsafeFolder:
            execution.log.append(f"mailboxexists: {name!r} is no folder name: false")
            return False
        if not execution.state.mailbox_exists(folder):
            return False
    return True

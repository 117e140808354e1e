"""The `lda` console script.

A delivery runs once per message, so it is dispatched here before click
(and everything the admin commands need) is imported.  Three argvs are a
delivery: `lda deliver ...`; an argv that starts with an option and names
no admin command (dovecot-lda's and procmail's command lines with only the
program path changed: `lda -f SENDER -d USER`, `lda -a "$EXTENSION"`); and
a bare `lda` whose standard input is a pipe, socket or file (procmail's
`mailbox_command = /usr/bin/procmail`).  A bare `lda` on a terminal, or
with nothing to read, prints the admin help.  A first word that names no
command while a message waits is the MTA's line gone wrong: 78 (Postfix
defers), not the admin's "No such command" (64, a bounce).  lda(1) states
the same rule.
"""

import gc
import os
import sys

# The admin commands of lda/cli/; tests/test_docs.py checks the list
# against click's, which this module must not import.
ADMIN_COMMANDS = frozenset({"aliases", "config", "db", "dedup", "deliver", "directory",
                            "explain", "host", "lmtp", "mailbox", "partial", "policy",
                            "procmail-convert", "quota", "sieve", "socketmap"})
GLOBAL_WITH_VALUE = ("-c", "--config")
# delivery_argv's answer for a first word that names no command while a
# message waits (`mailbox_command = lda "$RECIPIENT"`): the MTA's line is
# wrong, and exit 64 would bounce the mail; 78 defers it.
NO_COMMAND = "--no-such-command"


def main(argv=None):
    """Dispatch a delivery before click is imported; everything else is an
    admin command for lda/cli/."""
    argv = sys.argv[1:] if argv is None else argv
    # Mail is private: 0600 files and 0700 directories, the SQLite database
    # and the directories created on the way included.  Set here, for the
    # process, not in the library (tests call it in-process).
    os.umask(0o077)
    delivery = delivery_argv(argv)
    if delivery is not None and delivery[:1] == [NO_COMMAND]:
        sys.stderr.write(f"4.3.5 {delivery[1][:80]!r} names no lda command, and a message "
                         "is waiting: deliver with 'lda deliver RECIPIENT...' or dovecot-lda's "
                         "options ('lda -d USER'); see lda(1)\n")
        sys.stderr.flush()
        os._exit(78)
    if delivery is not None:
        # One message, then exit: a cyclic GC pass would walk every module
        # just imported to free next to nothing, while reference counting
        # still frees each chunk and object as it goes
        # (bench/profiles/deliver-case1-startup.txt, section 6).
        gc.disable()
        from .deliver.command import run

        run(delivery)  # never returns
    from .cli import cli

    cli.main(args=argv, prog_name="lda")


def delivery_argv(argv, stdin_fd=0):
    """The options and operands of the delivery argv stands for, or None
    for an admin command.  `lda -c FILE COMMAND ...` stays an admin
    command: what follows the global -c is looked at, not -c itself."""
    if argv[:1] == ["deliver"]:
        return argv[1:]
    if not argv:
        from .deliver.stdin import message_waiting

        return [] if message_waiting(stdin_fd) else None
    if not argv[0].startswith("-"):
        if argv[0] not in ADMIN_COMMANDS:
            from .deliver.stdin import message_present

            if message_present(stdin_fd):
                return [NO_COMMAND, argv[0]]
        return None  # an admin command, or click's "No such command"
    rest = argv
    while rest and rest[0].startswith(("-c", "--config")):
        # -c FILE, --config FILE; -cFILE, --config=FILE (one word)
        rest = rest[2:] if rest[0] in GLOBAL_WITH_VALUE else rest[1:]
    if not rest:  # `lda -c FILE` alone
        from .deliver.stdin import message_waiting

        return argv if message_waiting(stdin_fd) else None
    if rest[0] in ("--help", "--version"):
        # An MTA's line with --help: a delivery, which refuses it (78)
        # rather than print and exit 0, which the MTA takes for delivered.
        from .deliver.stdin import message_present

        return argv if message_present(stdin_fd) else None
    if rest[0] in ADMIN_COMMANDS:
        return None
    return argv


if __name__ == "__main__":
    main()

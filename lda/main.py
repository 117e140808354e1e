"""The `lda` console script.

`lda deliver` runs once per message, so it is dispatched here before click
(and everything the admin commands need) is imported.
"""

import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "deliver":
        from .deliver_cmd import deliver

        sys.exit(deliver(argv[1:]))
    from .cli import cli

    cli.main(args=argv, prog_name="lda")


if __name__ == "__main__":
    main()

"""The `lda` console script.

`lda deliver` runs once per message, so it is dispatched here before click
(and everything the admin commands need) is imported.
"""

import gc
import os
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    # Mail is private: 0600 files and 0700 directories, the SQLite database
    # and the directories created on the way included.  Set here, for the
    # process, not in the library (tests call it in-process).
    os.umask(0o077)
    if argv and argv[0] == "deliver":
        # One message, then exit: a cyclic GC pass would walk every module
        # just imported to free next to nothing, while reference counting
        # still frees each chunk and object as it goes
        # (bench/profiles/deliver-case1-startup.txt, section 6).
        gc.disable()
        from .deliver.command import run

        run(argv[1:])  # never returns
    from .cli import cli

    cli.main(args=argv, prog_name="lda")


if __name__ == "__main__":
    main()

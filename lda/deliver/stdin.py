"""What standard input holds: a message an MTA hands a delivery command,
or a person at a shell.  lda/main.py asks before it dispatches (a bare
`lda`, `lda --help`), and lda/deliver/command.py before -h prints the
usage, so that a message is never taken for a request for help.
"""

import os
import stat


def message_waiting(fd):
    """Whether fd is what an MTA hands a delivery command: a pipe, a
    socket or a file (Postfix's local(8) and pipe(8) give a pipe).  A
    terminal, /dev/null or a closed descriptor is a person at a shell."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISREG(mode)


def message_present(fd, wait=1.0):
    """Whether a message is waiting on fd (message_waiting) with at least
    one byte in it, read without taking any.  A pipe still empty and open
    after `wait` seconds counts as a message: the MTA may not have written
    yet, and a message must never be taken for a request for help."""
    if not message_waiting(fd):
        return False
    info = os.fstat(fd)
    if stat.S_ISREG(info.st_mode):
        return info.st_size > os.lseek(fd, 0, os.SEEK_CUR)
    import select

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    events = poller.poll(wait * 1000)
    if not events:
        return True
    if not events[0][1] & select.POLLIN:
        return False  # POLLHUP alone: a pipe closed with nothing in it
    if stat.S_ISSOCK(info.st_mode):  # readable at its end too: look
        import socket

        with socket.socket(fileno=os.dup(fd)) as peer:
            try:
                return peer.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
            except OSError:
                return True
    return True

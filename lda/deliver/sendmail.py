"""Re-injecting a copy for an address outside the store, as Postfix local(8)
does for a forward: `sendmail -i -f SENDER -- RECIPIENT` with the message on
stdin.  The copy carries this hop's Delivered-To, so a loop back is seen,
but not the Return-Path on top of the stored copy (past_return_path)."""

import os
import subprocess

from ..errors import ForwardFailed
from .envelope import reverse_path

TIMEOUT_SECONDS = 300
EX_TEMPFAIL = 75


def sendmail(command, sender, recipient, message, timeout=TIMEOUT_SECONDS):
    """Run the configured sendmail command with `message` (an open fd, or
    bytes such as a vacation reply); raise ForwardFailed on failure.  The
    sender goes in RFC 5321's form, which sendmail parses (a local part with
    a space is quoted), whatever form the MTA handed lda."""
    argv = [*command, "-f", reverse_path(sender) if sender else "<>", "--", recipient]
    source = {"input": message} if isinstance(message, bytes) else {"stdin": message}
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False, **source)
    except subprocess.TimeoutExpired:
        raise ForwardFailed(f"{command[0]} timed out after {timeout}s") from None
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        # The copy was not handed over, whatever the reason (a missing
        # command, a NUL in an argument that execve cannot take): that
        # concerns this target alone, never the message's other recipients.
        raise ForwardFailed(f"cannot run {command[0]!r}: "
                            f"{getattr(e, 'strerror', None) or e}") from None
    if done.returncode != 0:
        output = done.stdout.decode("utf-8", "replace").strip().splitlines()
        detail = output[-1][:200] if output else ""
        raise ForwardFailed(f"{command[0]} exited {done.returncode} for {recipient}"
                            + (f": {detail}" if detail else ""))


def past_return_path(fd):
    """Move fd, a copy at its start, past the Return-Path field on top of
    it: RFC 5321 section 4.4, a message sent on SHOULD NOT contain one (the
    next final delivery writes its own; Pigeonhole's redirect and Postfix
    local(8)'s forward send none)."""
    try:
        head = os.pread(fd, 4096, 0)
    except OSError:
        return  # sendmail meets what cannot be read and says so
    if head[:12].lower() != b"return-path:":
        return
    end = head.find(b"\n")
    while end >= 0 and head[end + 1:end + 2] in (b" ", b"\t"):  # folded
        end = head.find(b"\n", end + 1)
    if end >= 0:
        os.lseek(fd, end + 1, os.SEEK_SET)

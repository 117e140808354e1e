"""Re-injecting a copy for an address outside the store, as Postfix local(8)
does for a forward: `sendmail -i -f SENDER -- RECIPIENT` with the message on
stdin.  The copy carries this hop's Delivered-To, so a loop back is seen."""

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

"""Which Sieve scripts a delivery runs for a mailbox, and in what order.

Pigeonhole's places, so that users and admins coming from Dovecot keep
their scripts where they are:
- sieve_before: the admin's scripts, run first for every mailbox;
- the mailbox's own script: in managed mode lda.sieve in the mailbox root
  (a copy that `lda sieve activate` wrote, or ManageSieve's symlink to
  sieve/NAME.sieve there);
  in per-user mode sieve_script (~/.lda.sieve), else ~/.dovecot.sieve, the
  file or symlink ManageSieve keeps active (a configured sieve_script is
  the only one);
- sieve_default when the mailbox has no script of its own;
- sieve_after: run last.
A path in sieve_before or sieve_after may be a directory: its *.sieve
files run in name order (byte order), as Pigeonhole runs them.

On the per-message path: stats only, no lda.sieve import.  A delivery with
no script anywhere pays one stat per configured path and per place above.
"""

import os
import stat

from ..config import SCRIPTS_IN_MAILBOX as SCRIPTS_DIR

DOVECOT_SCRIPT = ".dovecot.sieve"
SUFFIX = ".sieve"


def scripts_for(config, maildir_path, warn):
    """The paths of the scripts to run, in order; [] when none exists.
    warn(line) says why a script that is there was passed over."""
    own = personal_script(config, maildir_path, warn)
    if own is None and config.sieve_default and _is_file(config.sieve_default):
        own = config.sieve_default
    return (expand_paths(config.sieve_before) + ([own] if own else [])
            + expand_paths(config.sieve_after))


def personal_script(config, maildir_path, warn):
    """The mailbox's own script, or None."""
    path = config.sieve_script_for(maildir_path)
    if not config.per_user:
        return mailbox_script(maildir_path, path, warn)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    if mode is not None:
        if stat.S_ISREG(mode):
            return path
        # Something the user made there: no other script runs in its place.
        warn(f"{path} is {_kind(mode)}: not read, no script run")
        return None
    if os.path.islink(path):  # the user's own link, to a script since removed
        warn(f"{path} points to {os.path.realpath(path)}, which does not exist: "
             "no script run")
        return None
    if path == config.expand("~/.lda.sieve"):
        # Not configured: the user may be one of Pigeonhole's.
        return dovecot_script(config.home, warn)
    return None


def dovecot_script(home, warn):
    """~/.dovecot.sieve, following its symlink only into the user's home.

    ManageSieve makes it a symlink to sieve/NAME.sieve.  The user owns the
    home, so whatever it points to inside the home is the user's own doing
    (and per-user lda runs as that user); a link out of it could make lda
    read a file the user only pointed at (as root, anyone's), so it is
    refused.  The path returned is the resolved one: nothing follows the
    link again after this check.
    """
    root = os.path.realpath(home)
    return _script_at(os.path.join(home, DOVECOT_SCRIPT), home, warn,
                      lambda real: os.path.commonpath([real, root]) == root and real != root)


def mailbox_script(maildir_path, path, warn):
    """A managed mailbox's lda.sieve, following a symlink only to a regular
    file in that mailbox's own sieve/ directory.

    Pigeonhole's ManageSieve, with `sieve = file:~/sieve;active=~/lda.sieve`
    and the mailbox root as home, makes lda.sieve a symlink to
    sieve/NAME.sieve.  A link anywhere else (out of the mailbox, or to one
    of its messages) is not a script anyone installed: refused, as
    dovecot_script refuses one out of the home.  The resolved path is
    returned, so nothing follows the link again after this check.
    """
    scripts = os.path.join(os.path.realpath(maildir_path), SCRIPTS_DIR)
    return _script_at(path, os.path.join(scripts, "*" + SUFFIX), warn,
                      lambda real: os.path.dirname(real) == scripts and real.endswith(SUFFIX))


def _script_at(path, where, warn, allowed):
    """path when it is a regular file; when it is a symlink, the file it
    resolves to if allowed(that path) and it is a regular file; else None.
    Anything else there (a FIFO, a link that is not followed because it
    points outside `where`, one that leads to no file) is passed over with
    warn(line), a line naming the path and why, never a byte of the file:
    a delivery logs it, `lda config check` reports it."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISLNK(st.st_mode):
        if stat.S_ISREG(st.st_mode):
            return path
        warn(f"{path} is {_kind(st.st_mode)}: not read, no script run")
        return None
    real = os.path.realpath(path)
    if not allowed(real):
        warn(f"{path} points outside {where} (to {real}): not followed, no script run")
        return None
    try:
        mode = os.stat(real).st_mode
    except OSError:
        mode = None
    if mode is None or not stat.S_ISREG(mode):
        what = "does not exist" if mode is None else f"is {_kind(mode)}"
        warn(f"{path} points to {real}, which {what}: no script run")
        return None
    return real


def _kind(mode):
    """What a file that is not a regular one is, for a log line."""
    return next((kind for test, kind in ((stat.S_ISDIR, "a directory"),
                                         (stat.S_ISFIFO, "a FIFO"),
                                         (stat.S_ISSOCK, "a socket")) if test(mode)),
                "no regular file")


def expand_paths(paths):
    """Each configured path: a file as it is, a directory as its *.sieve
    files in byte order; missing ones left out (one stat each)."""
    found = []
    for path in paths:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISDIR(st.st_mode):
            names = sorted(os.fsencode(n) for n in os.listdir(path) if n.endswith(SUFFIX))
            found += [p for p in (os.path.join(path, os.fsdecode(n)) for n in names)
                      if _is_file(p)]
        elif stat.S_ISREG(st.st_mode):
            found.append(path)
    return found


def _is_file(path):
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False

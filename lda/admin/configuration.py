"""`lda config show` and `lda config check`: the effective configuration,
and everything a delivery will read, checked (as `doveconf -n` and
`postfix check` do for their programs).

show: every key with its effective value and where the value came from:
the default, lda.toml, the environment (HOME, XDG_STATE_HOME shape the
per-user paths) or derived from something else (the host name from uname,
lmtp_listen from state_dir).  Its text form is TOML that lda.toml takes
back, so an admin can paste it.

check: reads and never writes.  lda.toml; the aliases file, line by line,
and whether its compiled table is current; lda's state as `lda db check`
sees it (admin/check.py: state_dir, the directory, each database's
lda.sqlite, every mailbox's Maildir); who may write state_dir and the
databases; and every Sieve script a delivery may run: sieve_before,
sieve_after, sieve_default, each mailbox's lda.sieve and stored scripts
(sieve/), or in per-user mode the user's own.

Permissions, as decided for lda (lda(1), `lda config check`): state_dir,
its databases/ and each database directory must not be writable by group
or others (whoever can write there can forge DeliveredTo rows or replace a
database); everything lda keeps under them belongs to the owner of
state_dir, since deliveries run as that user and cannot write a file
another user (root, after an admin command run as root) left there.  A
check run as root compares owners with state_dir's, not with root.  A
state_dir that is a symlink is followed, as lda follows it (config.py,
state_base), and the directory it leads to is checked.
"""

import json
import os
import pwd
import stat

from ..config import (KEYS, SCRIPT_IN_MAILBOX, SCRIPTS_IN_MAILBOX, find_config_path,
                      load_config, read_values)
from ..deliver.sievescripts import (DOVECOT_SCRIPT, SUFFIX, expand_paths, mailbox_script,
                                    personal_script)
from ..errors import LdaError, NoPermission
from ..sieve.dryrun import check as compile_errors
from ..store.aliases import check_aliases, table_path, table_problem
from .check import Findings, inspect
from .state import check_access

# Keys Config turns into another type (bytes, seconds, tuples): show gives
# them as written, which lda.toml reads back to the same setting.
AS_WRITTEN = frozenset({"quota_storage", "quota_grace", "partial_expiration",
                        "lmtp_max_message_size", "sieve_editheader_max_header_size",
                        "quota_warnings", "quota_ignore_folders", "sieve_spamtest_text_values",
                        "sieve_virustest_text_values"})
# Defaults that Config derives from something else rather than KEYS.
DERIVED = {"hostname": "derived (uname)", "postmaster": "derived (hostname)",
           "lmtp_listen": "derived (state_dir)"}
NO_FILE = "no configuration file"
FIX_TOML = "correct it; lda.toml(5) lists every key with its type and default"
FIX_SCRIPT = ("correct it (`lda sieve check FILE` lists its errors); until it compiles, "
              "deliveries keep each message in INBOX unfiltered")


def show(option=None, environ=os.environ, changed=False):
    """{"config": the file's path or None, "config_source", "mode",
    "keys": [{key, value, source, default, changed}]}; with changed, only
    the keys lda.toml sets to another value than the default (and mode
    in per-user mode), as `doveconf -n`.  A bad lda.toml raises its
    ConfigError (78)."""
    path = find_config_path(option, environ)
    written = {} if path is None else read_values(path)
    config = load_config(option, environ)
    rows = [_row(key, config, written, path, environ) for key in KEYS]
    return {"config": path, "config_source": _file_source(option, environ, path),
            "mode": config.mode, "keys": [r for r in rows if r["changed"] or not changed]}


def _file_source(option, environ, path):
    if path is None:
        return "none: per-user mode"
    return "-c/LDA_CONFIG" if option or environ.get("LDA_CONFIG") else "default"


def _row(key, config, written, path, environ):
    default = KEYS[key][0]
    if key in written:
        raw, source = written[key], "lda.toml"
    else:
        raw = default
        source = NO_FILE if key == "mode" and path is None else _default_source(
            key, config, environ)
    value = raw if key in AS_WRITTEN else getattr(config, key)
    if key == "directory" and value:
        from .pgurl import public_url

        value = public_url(value)  # never a password on a terminal or in --json
    if isinstance(value, tuple):  # sieve_before: paths as lda.toml writes them
        value = list(value)
    changed = (source == "lda.toml" and raw != default) or source == NO_FILE
    return {"key": key, "value": value, "source": source, "default": default,
            "changed": changed}


def _default_source(key, config, environ):
    """Where a key that lda.toml does not set gets its effective value."""
    home = "environment (HOME)" if environ.get("HOME") else "derived (passwd)"
    if key in DERIVED:
        return DERIVED[key]
    if key == "state_dir":
        if not config.per_user:
            return "default"
        return "environment (XDG_STATE_HOME)" if environ.get("XDG_STATE_HOME") else home
    default = KEYS[key][0]
    if isinstance(default, str) and (default == "~" or default.startswith("~/")):
        return home
    return "default"


def as_toml(report):
    """show()'s report as lines of TOML, `key = value  # source`."""
    where = json.dumps(report["config"]) if report["config"] else "none"
    lines = [f"# configuration file: {where} ({report['config_source']}); "
             f"mode {report['mode']}"]
    lines += [f"{row['key']} = {toml_value(row['value'])}  # {row['source']}"
              for row in report["keys"]]
    return lines


def toml_value(value):
    """value as TOML: JSON's strings, numbers and arrays are TOML's, but
    for DEL, which a TOML string must escape and JSON need not."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)  # nan, inf: TOML's spellings too
    return json.dumps(value).replace("\x7f", "\\u007f")


def check(option=None, environ=os.environ, progress=None):
    """Everything a delivery will read, checked: {"config", "mailboxes",
    "scripts", "problems": [{file, problem, repair}], "exit_code"} (0
    clean, 78 something to repair, 77 only files this user may not read,
    75 only files unreadable for now).  progress(phase, done, total) as
    the work goes on."""
    progress = progress or (lambda phase, done, total: None)
    findings = Findings()
    summary = {"config": None, "mailboxes": 0, "scripts": 0,
               "problems": findings.problems}
    try:
        summary["config"] = find_config_path(option, environ)
        config = load_config(option, environ)
    except LdaError as e:
        _config_problem(summary["config"] or "lda.toml", e, findings)
    else:
        _check_site(config, findings, summary, progress)
    summary["exit_code"] = findings.exit_code()
    return summary


def _config_problem(path, error, findings):
    """lda.toml as one problem: a bad key, type or TOML, or an unreadable file."""
    problem = str(error).removeprefix(f"{path}: ")
    if error.exit_code == 78:
        findings.add(path, problem, FIX_TOML)
    else:
        findings.failed_to_open(path, error)


def _check_site(config, findings, summary, progress):
    if config.aliases:
        _check_aliases(config, findings)
    tables = None
    try:
        check_access(config)
    except NoPermission as e:
        findings.failed_to_open(config.state_dir, e)
    else:
        state = inspect(config, findings, progress=lambda done, total: progress(
            "checking state", done, total))
        tables = state["tables"]
        _check_permissions(config, tables, findings)
    extensions = config.sieve_extensions_extra
    summary["scripts"] = _check_site_scripts(config, findings, extensions)
    if config.per_user:
        own = personal_script(config, config.maildir, lambda line: _passed_over(
            findings, line, config.sieve_script_for(config.maildir),
            os.path.join(config.home, DOVECOT_SCRIPT)))
        summary["scripts"] += _compile(own, findings, extensions) if own else 0
    elif tables is not None:
        summary["mailboxes"] = len(tables[1])
        summary["scripts"] += _check_mailbox_scripts(tables, findings, extensions, progress)


def _passed_over(findings, line, script, link):
    """What a per-user delivery passes over (personal_script's warning
    line, which starts with the path), as a problem to repair."""
    path = script if line.startswith(f"{script} ") else link
    findings.add(path, line.removeprefix(f"{path} "),
                 "point the link at a script in the home" if path == link
                 else "make it a Sieve script, or remove it")


def _check_aliases(config, findings):
    """Every bad line with the aliases check's own line numbers; then
    whether the compiled table still answers for the file."""
    try:
        problems = check_aliases(config.aliases)
    except LdaError as e:
        return findings.failed_to_open(config.aliases, e)
    for p in problems:
        if p.line:
            findings.add(f"{p.path}:{p.line}", p.message, "correct the line: deliveries "
                         "skip it and defer mail to the alias it defines")
        else:
            findings.add(p.path, p.message, "create it, or set aliases = \"\" in lda.toml")
    table = table_path(config.state_dir)
    why = table_problem(config.aliases, table)
    if why is not None:
        findings.add(table, f"the compiled aliases table {why}: deliveries parse "
                     f"{config.aliases} for every message instead",
                     "`lda aliases compile` writes it again")


def _check_permissions(config, tables, findings):
    """state_dir and the databases: writable by their owner alone, and
    everything under them owned by state_dir's owner (see the docstring)."""
    try:
        owner = os.stat(config.state_dir).st_uid
    except OSError:
        return  # a new site, or no directory: inspect() said so
    places = [config.state_dir, os.path.join(config.state_dir, "databases")]
    files = [config.directory_path, table_path(config.state_dir)]
    for database in (tables or ([], []))[0]:
        places.append(database["path"])
        files.append(os.path.join(database["path"], "lda.sqlite"))
    if tables is not None:
        roots = {d["name"]: d["path"] for d in tables[0]}
        files += [os.path.join(roots[m["database"]], m["maildir"]) for m in tables[1]
                  if m["database"] in roots]
    for path in dict.fromkeys(places):
        st = _stat(path)
        if st is not None and st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            who = " and ".join(w for w, bit in (("group", 0o020), ("others", 0o002))
                               if st.st_mode & bit)
            findings.add(path, f"writable by {who} (mode {stat.S_IMODE(st.st_mode):04o}): "
                         "they could forge DeliveredTo rows or replace a database",
                         f"`chmod go-w {path}`")
    for path in dict.fromkeys(places + files):
        st = _stat(path)
        if st is not None and st.st_uid != owner:
            findings.add(path, f"owned by {_user(st.st_uid)}, not by {_user(owner)}, the "
                         "owner of state_dir: deliveries, which run as that user, "
                         "cannot write it", f"`chown -R {_user(owner)} {path}`")


def _stat(path):
    try:
        return os.stat(path)
    except OSError:
        return None  # missing: inspect() reports what must be there


def _user(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _check_site_scripts(config, findings, extensions):
    """sieve_before, sieve_after, sieve_default, sieve_global_dir: each
    configured path there, each script in it compiling; the count compiled."""
    count = 0
    for key in ("sieve_before", "sieve_after", "sieve_default"):
        paths = getattr(config, key)
        for path in [paths] if isinstance(paths, str) and paths else paths or ():
            if not os.path.exists(path):
                findings.add(path, f"{key} names it and it does not exist: no delivery "
                             "runs it", f"create it, or take it out of {key} in lda.toml")
                continue
            for script in expand_paths([path]):
                count += _compile(script, findings, extensions)
    if config.sieve_global_dir and not os.path.isdir(config.sieve_global_dir):
        findings.add(config.sieve_global_dir, "sieve_global_dir names it and it is no "
                     "directory: every include :global fails", "create it, or set "
                     "sieve_global_dir = \"\" in lda.toml")
    return count


def _check_mailbox_scripts(tables, findings, extensions, progress):
    """Each mailbox's lda.sieve and stored scripts (sieve/NAME.sieve, which
    include :personal reads); the count compiled.  An lda.sieve that a
    delivery passes over (a symlink it does not follow) is a problem: the
    mailbox's filter is off."""
    databases, mailboxes = tables
    roots = {d["name"]: d["path"] for d in databases}
    count = 0
    for done, mailbox in enumerate(mailboxes, 1):
        root = os.path.join(roots.get(mailbox["database"], ""), mailbox["maildir"])
        active = os.path.join(root, SCRIPT_IN_MAILBOX)
        mailbox_script(root, active, lambda line: findings.add(
            active, line.removeprefix(f"{active} "), _activate_hint(mailbox["address"])))
        for path in [active] + _stored(root):
            if _is_regular(path):
                count += _compile(path, findings, extensions)
        progress("compiling Sieve scripts", done, len(mailboxes))
    return count


def _activate_hint(address):
    return (f"`lda sieve activate {address} NAME` makes one of its stored scripts "
            f"(`lda sieve list {address}`) the active one; or remove it")


def _stored(root):
    try:
        names = sorted(os.listdir(os.path.join(root, SCRIPTS_IN_MAILBOX)))
    except OSError:
        return []
    return [os.path.join(root, SCRIPTS_IN_MAILBOX, n) for n in names
            if n.endswith(SUFFIX) and n != SUFFIX]  # ".x.sieve" too, as ManageSieve


def _is_regular(path):
    """A regular file, not through a symlink: the one link a delivery follows in
    a Maildir is ManageSieve's lda.sieve, whose target (sieve/NAME.sieve) is
    compiled as a stored script (and any other is reported: mailbox_script)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _compile(path, findings, extensions):
    """Compile the script at path, each error a problem at FILE:LINE:COL; 1."""
    try:
        errors = compile_errors(path, extensions)
    except UnicodeDecodeError:
        errors = [f"{path}: not UTF-8"]
    except OSError as e:
        findings.add(path, f"cannot read: {e.strerror}", "check its permissions")
        return 1
    for line in errors:
        where, _, problem = (line[len(path):] if line.startswith(path) else
                             ": " + line).partition(": ")
        findings.add(path + where, problem, FIX_SCRIPT.replace("FILE", path))
    return 1

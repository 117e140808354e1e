"""Hostile values at the admin commands' entry points: every parameter of
every command (walked from click's tree, so that a new command is in the
table the day it is added), the numbers they and lda.toml take, and -c.

A refusal is one line on stderr, led by "lda: ", with what is not printable
(bytes that were not UTF-8, line breaks, escapes, bidi overrides) escaped,
and a sysexits status (lda(1), EXIT STATUS); never a traceback, never
click's exit 2 and its Usage block.  The values are the kinds
/tmp/fuzz-hostile's harness found (fz.py's ATOMS)."""

import os
import stat

import click
import pytest

from conftest import Site, assert_no_traceback
from test_docs import LEAVES

HOSTILE_TEXT = {
    "not-utf-8": "\udcff@example.org",  # the argv byte 0xff
    "line-break": "alice\r\n@example.org",
    "escape-bidi-nel": "\x1b[31m\u202ealice\x85@example.org",
}
HUGE = "99999999999999999999999"
# `lda deliver`'s argv is the delivery's own border (test_hostile.py, test_dropin.py).
NOT_HERE = {"deliver"}
# A good value for each parameter a command requires, so that the hostile
# value given to another one is what the command meets.  A new required
# parameter needs one here: the table fails with its name until it has.
BENIGN = {"address": "alice@example.org", "name": "x", "old": "x", "new": "y",
          "message_id": "<m@example.org>", "transport": "lmtp:inet:10.0.0.2:24",
          "url": "postgresql://lda@127.0.0.1:1/lda"}
# Every status an admin command may answer a hostile value with: done (a
# lookup that finds nothing, `lda explain` refusing a recipient), usage,
# bad data, no such name, there already (the good address of `mailbox
# create` while another option's value passes), configuration (an aliases
# file given that is none).
ANSWERS = {0, 64, 65, 67, 73, 78}


def cases():
    for name, command in sorted(LEAVES.items()):
        if name in NOT_HERE:
            continue
        for param in command.params:
            if getattr(param, "is_flag", False) or param.name == "help":
                continue
            values = dict(HOSTILE_TEXT)
            if not isinstance(param.type, (click.types.StringParamType, click.Path)):
                values["huge"] = HUGE  # a parsed value: a number, a size, a time
            for kind, value in values.items():
                yield pytest.param(name, command, param, value,
                                   id=f"{name}-{param.name}-{kind}")


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory):
    site = Site(tmp_path_factory.mktemp("hostile"))
    site.create("alice@example.org")
    script = site.root / "keep.sieve"
    script.write_text("keep;\n")
    return site, str(script)


def argv(name, command, hostile, value, script):
    """The command line that gives `hostile` the value and every other
    required parameter a good one.  A hostile path is one in the site's
    directory: one accepted (`db create --path`) makes a directory there,
    not in the directory pytest runs in."""
    args = name.split()
    for param in command.params:
        if param is hostile:
            given = os.path.join(os.path.dirname(script), value) if isinstance(
                param.type, click.Path) or param.name == "path" else value
        elif param.required:
            given = script if isinstance(param.type, click.Path) else BENIGN[param.name]
        else:
            continue
        if isinstance(param, click.Argument):
            args.append(given)
        else:
            args += [max(param.opts, key=len), given]
    return args


def assert_one_clean_line(done, answers=ANSWERS):
    """A sysexits status; stderr valid UTF-8 with nothing unprintable on it;
    and for a refusal, exactly one line, led by "lda: "."""
    assert_no_traceback(done)
    text = done.stderr.decode("utf-8")  # an undecodable byte fails here
    lines = text.splitlines()
    assert all(line.isprintable() for line in lines), lines
    assert done.returncode in answers, (done.returncode, lines)
    if done.returncode:
        assert len(lines) == 1 and lines[0].startswith("lda: "), lines
        return lines[0]
    return None


@pytest.mark.parametrize("name, command, param, value", list(cases()))
def test_every_parameter_answers_a_hostile_value_in_one_line(hostile_site, name, command,
                                                             param, value):
    site, script = hostile_site
    done = site.run(*argv(name, command, param, value, script), timeout=30)
    assert_one_clean_line(done)


V = object()  # where the hostile value goes
NAMED = [
    ["mailbox", "show", V], ["mailbox", "delete", V],
    ["mailbox", "set-quota", V, "--messages", "5"],
    ["mailbox", "move", V, "--to", "default"], ["mailbox", "create", V], ["quota", "show", V],
    ["quota", "recalc", V], ["sieve", "list", V], ["sieve", "show", V],
    ["sieve", "deactivate", V], ["sieve", "activate", V, "x"], ["sieve", "delete", V, "x"],
    ["sieve", "rename", V, "x", "y"], ["sieve", "activate", "alice@example.org", V],
    ["dedup", "forget", "--message-id", "<m@x>", "--mailbox", V],
    ["dedup", "stats", "--db", V], ["dedup", "cleanup", "--db", V], ["mailbox", "list", "--db", V],
    ["mailbox", "create", "bob@example.org", "--db", V], ["db", "show", V], ["db", "create", V],
    ["host", "remove", V],
]


@pytest.mark.parametrize("value", HOSTILE_TEXT.values(), ids=HOSTILE_TEXT.keys())
@pytest.mark.parametrize("args", NAMED, ids=[" ".join("V" if w is V else w for w in a)
                                             for a in NAMED])
def test_a_name_nothing_can_have_is_a_usage_error(hostile_site, args, value):
    """An address, database or script name that holds what none lda
    stores can hold is refused by the command line's one check,
    64, the same for every command; before, SQLite's UnicodeEncodeError
    (75, a traceback) or "no mailbox" with the raw control characters (67)."""
    site, _ = hostile_site
    done = site.run(*[value if w is V else w for w in args])
    line = assert_one_clean_line(done, {64})
    assert "example.org" in line, line


NUMBERS = [
    (["mailbox", "set-quota", "alice@example.org", "--messages", HUGE], "at most"),
    (["mailbox", "set-quota", "alice@example.org", "--storage", HUGE + "T"], "at most"),
    (["mailbox", "set-quota", "alice@example.org", "--storage", "9223372036854775807"],
     "at most"),
    (["mailbox", "create", "bob@example.org", "--quota-messages", "9223372036854775808"],
     "at most"),
    (["mailbox", "create", "bob@example.org", "--quota-storage", HUGE], "at most"),
    (["dedup", "cleanup", "--older-than", "99999999999999999999d"], "at most"),
    (["dedup", "cleanup", "--dry-run", "--now", HUGE], "year"),
    (["partial", "bounce", "--older-than", HUGE + "w"], "at most"),
    (["partial", "bounce", "--all", "--dry-run", "--now", HUGE], "year"),
    (["lmtp", "--processes", HUGE], "1024"),
    (["lmtp", "--workers", HUGE], "1024"),
    (["lmtp", "--grace", HUGE], "86400"),
]


@pytest.mark.parametrize("args, words", NUMBERS, ids=[" ".join(a[:4]) for a, _ in NUMBERS])
def test_a_number_past_its_bound_is_a_usage_error(hostile_site, args, words):
    """Before: OverflowError tracebacks (75), "timestamp out of range", or
    an LMTP server started with 10**22 worker threads to make."""
    site, _ = hostile_site
    line = assert_one_clean_line(site.run(*args, timeout=30), {64})
    assert words in line, line


TOO_BIG = {
    "lmtp_processes": 9223372036854775807,
    "lmtp_workers": 9223372036854775807,
    "lmtp_max_sessions": 10**12,
    "lmtp_max_recipients": 10**12,
    "lmtp_idle_timeout": 10**12,
    "policy_idle_timeout": 10**12,
    "socketmap_idle_timeout": 10**12,
    "lock_timeout_seconds": 10**12,
    "cleanup_interval_seconds": 10**12,
    "expiration_hours": 10**12,
    "quota_messages": 10**12,
    "quota_storage": "99999999999999999999T",
    "quota_grace": "99999999999999999999%",
    "lmtp_max_message_size": "9223372036854775807",
    "sieve_editheader_max_header_size": "99999999999999T",
    "partial_expiration": "99999999999999999999d",
}


@pytest.mark.parametrize("key, value", TOO_BIG.items(), ids=TOO_BIG.keys())
def test_a_setting_past_its_bound_is_a_configuration_error(make_site, key, value):
    """`lda config check` says which key and its range (78), and every
    command stops on it with one line; before, config check passed and
    `lda lmtp` died of an OverflowError (75)."""
    site = make_site(**{key: value})
    check = site.run("config", "check")
    assert check.returncode == 78, check
    assert key in check.stdout.decode() + check.stderr.decode()
    line = assert_one_clean_line(site.run("mailbox", "list"), {78})
    assert key in line and "at most" in line, line


@pytest.mark.parametrize("value", [1024, 0])
def test_lmtp_processes_within_bounds_are_accepted(make_site, value):
    site = make_site(lmtp_processes=value)
    assert site.run("config", "check").returncode == 0


def config_paths(root):
    """-c values that name no readable lda.toml, each a configuration error."""
    fifo = root / "fifo.toml"
    os.mkfifo(fifo)
    unreadable = root / "unreadable.toml"
    unreadable.write_text("")
    unreadable.chmod(0)
    return {"directory": "/", "missing": str(root / "missing.toml"), "fifo": str(fifo),
            "unreadable": str(unreadable), "not-utf-8": str(root) + "/\udcff.toml",
            "line-break": str(root) + "/x\ny.toml", "escape": str(root) + "/\x1b[2J.toml",
            "nel": str(root) + "/x\x85y.toml", "control": str(root) + "/x\x01y.toml"}


KINDS = ["directory", "missing", "fifo", "unreadable", "not-utf-8", "line-break", "escape",
         "nel", "control"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_config_file_that_cannot_be_read_is_78_in_one_line(site, kind):
    """Before: `-c /` was click's exit 2 and four lines, a FIFO hung the
    command, and a line break in the name split the error in two."""
    if kind == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads a file of mode 0")
    path = config_paths(site.root)[kind]
    line = assert_one_clean_line(site.run("-c", path, "mailbox", "list", timeout=20), {78})
    assert ".toml" in line or kind == "directory", line


def test_a_config_file_with_a_name_not_utf_8_is_read(site):
    """A path is bytes: an lda.toml whose name is not UTF-8 is read as any."""
    odd = site.root / "\udcff.toml"
    odd.write_bytes(site.config.read_bytes())
    done = site.run("-c", str(odd), "mailbox", "list", "--json")
    assert done.returncode == 0, done.stderr
    assert stat.S_ISREG(os.stat(odd).st_mode)


@pytest.mark.parametrize("args", [
    ["mailbox", "list", "a", "b\x1bc"], ["mailbox", "show", "alice@example.org", "\r"],
    ["mailbox", "list", "--no\x85such"], ["no\x1bsuch"], ["mailbox", "no\rsuch"],
], ids=["extra-arguments", "extra-cr", "option-nel", "command-escape", "subcommand-cr"])
def test_click_usage_errors_are_escaped(hostile_site, args):
    """Click's own usage errors, printed by LdaGroup: one line, 64."""
    site, _ = hostile_site
    assert_one_clean_line(site.run(*args), {64})


@pytest.mark.parametrize("nesting", ["[" * 2000 + "]" * 2000, "{a = " * 2000 + "1" + "}" * 2000],
                         ids=["arrays", "inline-tables"])
def test_a_toml_file_nested_too_deep_is_78_in_one_line(site, nesting):
    """Found by fuzz_config.py: tomllib recurses once per level, and a
    file nested 2000 deep was a RecursionError traceback (75) in every
    command, lda deliver's included."""
    site.config.write_text(site.config.read_text() + f"quota_status_success = {nesting}\n")
    check = site.run("config", "check")  # its problems are lines on stdout
    assert_no_traceback(check)
    assert check.returncode == 78 and b"invalid TOML" in check.stdout, check
    line = assert_one_clean_line(site.run("mailbox", "list"), {78})
    assert "invalid TOML" in line, line
    done = site.deliver(b"Subject: x\n\nx\n", "alice@example.org")
    assert_no_traceback(done)
    assert done.returncode == 78, done.stderr


@pytest.mark.parametrize("value", HOSTILE_TEXT.values(), ids=HOSTILE_TEXT.keys())
def test_dedup_forget_echoes_a_hostile_message_id_escaped(hostile_site, value):
    """`lda dedup forget` found nothing and said so with the Message-ID as
    given: escapes, bidi overrides and line breaks reached the terminal."""
    site, _ = hostile_site
    done = site.run("dedup", "forget", "--message-id", value, check=0)
    out = done.stdout.decode("utf-8", "replace")
    assert out.endswith("\n") and out[:-1].isprintable(), out  # one line, escaped
    assert "forgot 0 DeliveredTo rows" in out

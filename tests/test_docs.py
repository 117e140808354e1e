"""The manual and contrib/ keep up with the code: every command, option and
lda.toml key is documented, the pages are clean roff, and the example
configuration is one lda accepts (as sqlite-utils' test_docs.py does for its
CLI reference)."""

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import click
import pytest

from lda.cli import cli
from lda.config import KEYS, Config
from lda.deliver.command import USAGE

ROOT = Path(__file__).resolve().parent.parent
MAN = ROOT / "man"
CONTRIB = ROOT / "contrib"
PAGES = ["lda.1", "lda.toml.5", "lda-aliases.5"]
DELIVER_OPTIONS = {"-f", "-a", "-c", "-d", "-e", "-k", "-m", "-o", "-p", "-r", "-t"}


def walk(command, path=()):
    """(path, command) for a click command and everything under it."""
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, path + (name,))


COMMANDS = {" ".join(path): command for path, command in walk(cli) if path}
LEAVES = {name: c for name, c in COMMANDS.items() if not isinstance(c, click.Group)}

ESCAPES = {r"\-": "-", r"\(aq": "'", r"\(dq": '"', r"\(em": "--", r"\(en": "-",
           r"\(mu": "x", r"\(ha": "^", r"\(lq": '"', r"\(rq": '"', r"\(bu": "*",
           r"\&": "", r"\|": "", r"\~": " ", r"\e": "\\"}
FONT = re.compile(r"\\f(\[[^]]*\]|\(..|.)")


def plain(roff):
    """Roff source as the words a reader sees: fonts dropped, escapes undone."""
    text = FONT.sub("", roff)
    for escape, char in ESCAPES.items():
        text = text.replace(escape, char)
    return text


def sections(page, macro):
    """{title: roff body} for each `.SH` or `.SS` heading of a page."""
    found, title, body = {}, None, []
    for line in (MAN / page).read_text().splitlines():
        if line.startswith(macro + " ") or (line.startswith(".SH ") and macro != ".SH"):
            if title is not None:
                found[title] = "\n".join(body)
            title = plain(line[4:]).strip().strip('"') if line.startswith(macro) else None
            body = []
        elif title is not None:
            body.append(line)
    if title is not None:
        found[title] = "\n".join(body)
    return found


def tags(roff):
    """The plain tag lines of a section's `.TP` entries: its option list."""
    return " ".join(plain(tag) for tag in re.findall(r"^\.TP\n(.*)$", roff, re.M))


COMMAND_SECTIONS = sections("lda.1", ".SS")
SHARED = tags(sections("lda.1", ".SH")["OPTIONS"])  # global and common options


def mentions(text, option):
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def long_options(command):
    return [opt for param in command.params if isinstance(param, click.Option)
            for opt in param.opts + param.secondary_opts if opt.startswith("--")]


@pytest.mark.parametrize("name", COMMANDS, ids=str)
def test_every_command_has_a_section_in_lda_1(name):
    assert f"lda {name}" in COMMAND_SECTIONS, f"man/lda.1 has no `.SS \"lda {name}\"`"


@pytest.mark.parametrize("name", LEAVES, ids=str)
def test_every_long_option_is_in_its_command_section(name):
    """Each option has a `.TP` entry in the command's section; the options
    that many commands share (--json) have theirs under OPTIONS and appear
    in the command's synopsis."""
    body = COMMAND_SECTIONS.get(f"lda {name}", "")
    listed = tags(body)
    missing = [o for o in long_options(LEAVES[name])
               if not mentions(listed, o)
               and not (mentions(SHARED, o) and mentions(plain(body), o))]
    assert not missing, f"lda {name}: {missing} not in its section of man/lda.1"


def test_global_options_are_in_options_section():
    options = [o for p in cli.params for o in p.opts + p.secondary_opts]
    assert options  # -c, --config, --version
    assert [o for o in options if not mentions(SHARED, o)] == []


def test_deliver_options_from_its_usage_are_documented():
    """`lda deliver` parses its own options; its USAGE is the reference."""
    documented = set(re.findall(r"^\s+(-\w)\b", USAGE, re.MULTILINE))
    assert DELIVER_OPTIONS <= documented, "deliver_cmd.USAGE lost an option"
    listed = tags(COMMAND_SECTIONS["lda deliver"])
    assert [o for o in sorted(documented) if not mentions(listed, o)] == []


@pytest.mark.parametrize("name", COMMANDS, ids=str)
def test_every_command_has_a_docstring(name):
    assert (COMMANDS[name].help or "").strip(), f"lda {name} has no docstring"


@pytest.mark.parametrize("name", LEAVES, ids=str)
def test_every_command_docstring_has_an_example_of_itself(name):
    """An unwrapped (\\b) "Example:" block whose lines run this command."""
    help_text = LEAVES[name].help or ""
    match = re.search(r"\x08\n\s*Examples?:\n((?:[ \t]+\S.*\n?)+)", help_text)
    assert match, f"lda {name}: no \\b Example: block in its docstring"
    for line in match.group(1).strip().splitlines():
        assert line.strip().startswith(f"lda {name}"), line


@pytest.mark.parametrize("name", LEAVES, ids=str)
def test_every_option_has_help_text(name):
    bare = [p.opts[0] for p in LEAVES[name].params
            if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert not bare, f"lda {name}: options without help: {bare}"


def toml_value(value):
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # a TOML basic string for these, or a number


def key_entries():
    """{key: plain text} of each `.TP` / `.B key` entry of lda.toml(5)."""
    text = (MAN / "lda.toml.5").read_text()
    pattern = re.compile(r"^\.TP\n\.B (\w+)\n(.*?)(?=^\.(?:TP|SH|SS)\b)", re.M | re.S)
    return {key: plain(body) for key, body in pattern.findall(text)}


@pytest.mark.parametrize("key", KEYS, ids=str)
def test_every_key_is_in_lda_toml_5_with_its_default(key):
    entries = key_entries()
    assert key in entries, f"man/lda.toml.5 has no entry for {key}"
    default = f"Default: {toml_value(KEYS[key][0])}"
    assert default in " ".join(entries[key].split()), f"{key}: no {default!r}"


def test_lda_toml_5_documents_no_unknown_key():
    assert set(key_entries()) - set(KEYS) == set()


def example_blocks(page):
    return [plain(b) for b in re.findall(r"^\.EX\n(.*?)^\.EE", (MAN / page).read_text(),
                                         re.M | re.S)]


def test_lda_toml_5_examples_are_accepted(tmp_path):
    blocks = [b for b in example_blocks("lda.toml.5") if " = " in b]
    assert blocks
    for block in blocks:
        Config(tomllib.loads(block), path="lda.toml.5", environ={"HOME": str(tmp_path)})


def linter():
    if shutil.which("groff"):
        return ["groff", "-man", "-ww", "-z"]
    if shutil.which("mandoc"):
        return ["mandoc", "-Tlint", "-Wwarning"]
    return None


@pytest.mark.parametrize("page", PAGES)
def test_man_page_has_no_roff_warnings(page):
    command = linter()
    if command is None:
        pytest.skip("neither groff nor mandoc is installed (Debian: groff-base)")
    done = subprocess.run([*command, str(MAN / page)], capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


EXAMPLE_CONFIG = CONTRIB / "lda.toml.example"
COMMENTED_KEY = re.compile(r"^# (?=\w+ = )", re.M)


def test_example_config_loads_as_it_is(tmp_path):
    values = tomllib.loads(EXAMPLE_CONFIG.read_text())
    Config(values, path=str(EXAMPLE_CONFIG), environ={"HOME": str(tmp_path)})


def test_example_config_lists_every_key_with_its_default(tmp_path):
    """Uncommented, the example sets every key, and changes nothing."""
    values = tomllib.loads(COMMENTED_KEY.sub("", EXAMPLE_CONFIG.read_text()))
    assert set(values) == set(KEYS)
    environ = {"HOME": str(tmp_path)}
    every = vars(Config(values, path="example", environ=environ))
    default = vars(Config({}, path="example", environ=environ))
    assert every == default


def test_systemd_lmtp_socket_matches_postfix_and_outlasts_the_grace():
    unit = (CONTRIB / "systemd" / "lda-lmtp.service").read_text()
    main_cf = (CONTRIB / "postfix" / "main.cf.lmtp").read_text()
    listen = re.search(r"^ExecStart=.* --listen unix:/var/spool/postfix/(\S+)", unit, re.M)
    transport = re.search(r"^virtual_transport = lmtp:unix:(\S+)", main_cf, re.M)
    assert listen and transport and listen.group(1) == transport.group(1)
    grace = int(re.search(r"--grace (\d+)", unit).group(1))
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M).group(1))
    assert stop > grace


def readme_set_up_blocks():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```\n(.*?)\n```", section, re.S)


def test_the_readme_first_delivery_works_in_a_root_shell_without_user(tmp_path):
    # As a new user meets it: a fresh HOME, USER and LOGNAME unset (su -,
    # a container's root shell), lda on PATH as the venv line puts it.
    from conftest import LDA

    first_delivery = readme_set_up_blocks()[1]
    assert "lda deliver" in first_delivery
    env = {"HOME": str(tmp_path), "PATH": f"{Path(LDA).parent}:/usr/bin:/bin"}
    done = subprocess.run(["sh", "-c", first_delivery], env=env, capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    [stored] = (tmp_path / "Maildir" / "new").iterdir()
    assert stored.name.encode() in done.stdout
    assert b"It works." in stored.read_bytes()


def test_the_readme_mail_host_install_names_the_system_python():
    assert any(block.startswith("/usr/bin/python3 -m venv /opt/lda")
               for block in readme_set_up_blocks())


def test_lmtp_help_shows_the_socket_the_readme_recommends():
    # Postfix's private/ is its own (mode 0700): the README says not to use it.
    help_text = cli.commands["lmtp"].help
    assert "private/" not in help_text and "unix:/var/spool/postfix/lda/lmtp" in help_text

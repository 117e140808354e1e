"""lda.store.aliases: the aliases(5) parser, its checker, and recursive expansion."""

import os
import subprocess
import sys
import time

import pytest

from lda.store.aliases import Aliases, Expansion, Problem, check_aliases, expand, load_aliases
from lda.errors import EX_CONFIG, ConfigError


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def aliases_file(tmp_path):
    """Write an alias file in tmp_path and return its path."""
    return lambda text, name="aliases": write(tmp_path / name, text)


def load(aliases_file, text):
    return load_aliases(aliases_file(text))


def error(aliases_file, text):
    path = aliases_file(text)
    with pytest.raises(ConfigError) as caught:
        load_aliases(path)
    return str(caught.value).replace(path, "FILE")


def problems(path, **kwargs):
    return [str(p).replace(path, "FILE") for p in check_aliases(path, **kwargs)]


def table(mapping):
    """A lookup callable over a plain dict, for expand()."""
    return lambda address: mapping.get(address)


# --- syntax ------------------------------------------------------------------


def test_basic_entries(aliases_file):
    aliases = load(aliases_file, "postmaster: root\nroot: alice, bob@example.com\n")
    assert isinstance(aliases, Aliases)
    assert len(aliases) == 2
    assert list(aliases) == ["postmaster", "root"]
    assert aliases.lookup("postmaster") == ["root"]
    assert aliases.lookup("root") == ["alice", "bob@example.com"]
    assert aliases.line_of("root") == 2


def test_comments_and_blank_lines(aliases_file):
    aliases = load(aliases_file, "# header\n\n   \n\t# indented comment\nroot: alice\n# end\n")
    assert aliases.lookup("root") == ["alice"]
    assert len(aliases) == 1


def test_continuation_lines(aliases_file):
    text = "staff: alice,\n  bob,\n\tcarol@example.com\nother: dave\n"
    aliases = load(aliases_file, text)
    assert aliases.lookup("staff") == ["alice", "bob", "carol@example.com"]
    assert aliases.lookup("other") == ["dave"]


def test_comment_inside_continuation_does_not_end_the_entry(aliases_file):
    # aliases(5): comment and blank lines are ignored, even between continuations.
    aliases = load(aliases_file, "staff: alice,\n# bob left\n\n  carol\n")
    assert aliases.lookup("staff") == ["alice", "carol"]


def test_line_end_separates_targets_like_a_comma(aliases_file):
    aliases = load(aliases_file, "staff: alice\n  bob\n")
    assert aliases.lookup("staff") == ["alice", "bob"]


def test_crlf_bom_and_no_final_newline(aliases_file):
    aliases = load(aliases_file, "\ufeffroot: alice,\r\n  bob\r\npm: root")
    assert aliases.lookup("root") == ["alice", "bob"]
    assert aliases.lookup("pm") == ["root"]


def test_empty_items_are_ignored(aliases_file):
    aliases = load(aliases_file, "root: alice, , bob,\n")
    assert aliases.lookup("root") == ["alice", "bob"]


def test_quoted_targets(aliases_file):
    aliases = load(aliases_file, 'root: "alice", "Bob@Example.com", carol\n')
    assert aliases.lookup("root") == ["alice", "bob@example.com", "carol"]


def test_quoted_key(aliases_file):
    aliases = load(aliases_file, '"Root": alice\n')
    assert aliases.lookup("root") == ["alice"]


def test_comma_and_colon_inside_quotes_do_not_split(aliases_file):
    # The quoted string is one target, so it fails as one (and says so).
    message = error(aliases_file, 'root: "a,b:c@example.com"\n')
    assert message.startswith('FILE:1: "a,b:c@example.com" is not a valid address')


def test_escaped_quote_inside_quotes(aliases_file):
    message = error(aliases_file, 'root: "a\\"b"\n')
    assert message == 'FILE:1: "a\\"b" is not a valid local name: contains "\\""'


def test_quoted_local_part_is_refused(aliases_file):
    message = error(aliases_file, 'root: "john doe"@example.com\n')
    assert message.startswith('FILE:1: "\\"john doe\\"@example.com" is not a valid address')


def test_keys_and_targets_are_lowercased(aliases_file):
    aliases = load(aliases_file, "PostMaster: ROOT, Alice@EXAMPLE.com\n")
    assert aliases.lookup("POSTMASTER") == ["root", "alice@example.com"]


def test_dotless_host_is_a_valid_target(aliases_file):
    aliases = load(aliases_file, "root: admin@mailhost\n")
    assert aliases.lookup("root") == ["admin@mailhost"]


def test_internationalised_addresses(aliases_file):
    aliases = load(aliases_file, "jürgen: Jürgen@Exämple.com\n")
    assert aliases.lookup("JÜRGEN") == ["jürgen@exämple.com"]


# --- :include: ---------------------------------------------------------------


def test_include(tmp_path, aliases_file):
    write(tmp_path / "staff.list", "# staff\nalice, bob\n\ncarol@example.com\n")
    aliases = load(aliases_file, f"staff: :include:{tmp_path}/staff.list, dave\n")
    assert aliases.lookup("staff") == ["alice", "bob", "carol@example.com", "dave"]


def test_include_relative_to_including_file_not_cwd(tmp_path, aliases_file, monkeypatch):
    (tmp_path / "lists").mkdir()
    write(tmp_path / "lists" / "a.list", "alice\n:include:sub/b.list\n")
    (tmp_path / "lists" / "sub").mkdir()
    write(tmp_path / "lists" / "sub" / "b.list", "bob\n")
    path = aliases_file("staff: :include:lists/a.list\n")
    monkeypatch.chdir("/")
    assert load_aliases(path).lookup("staff") == ["alice", "bob"]


def test_include_quoted_with_space_and_case(tmp_path, aliases_file):
    write(tmp_path / "my list", "alice\n")
    aliases = load(aliases_file, 'staff: ":Include: my list"\n')
    assert aliases.lookup("staff") == ["alice"]


def test_include_nested(tmp_path, aliases_file):
    write(tmp_path / "a.list", "alice, :include:b.list\n")
    write(tmp_path / "b.list", "bob\n:include:c.list\n")
    write(tmp_path / "c.list", "carol\n")
    aliases = load(aliases_file, "staff: :include:a.list\n")
    assert aliases.lookup("staff") == ["alice", "bob", "carol"]


def test_same_include_in_two_aliases_is_no_cycle(tmp_path, aliases_file):
    write(tmp_path / "a.list", "alice\n")
    aliases = load(aliases_file, "x: :include:a.list\ny: :include:a.list, :include:a.list\n")
    assert aliases.lookup("y") == ["alice", "alice"]


def test_include_cycle(tmp_path, aliases_file):
    write(tmp_path / "a.list", "alice\n:include:b.list\n")
    write(tmp_path / "b.list", "bob, :include:a.list\n")
    message = error(aliases_file, "staff: :include:a.list\n")
    real = os.path.realpath(tmp_path)
    cycle = f"{real}/a.list -> {real}/b.list -> {real}/a.list"
    assert message == f"{tmp_path}/b.list:1: include cycle: {cycle}"


def test_include_of_the_alias_file_itself(aliases_file):
    message = error(aliases_file, "staff: :include:aliases\n")
    assert message.startswith("FILE:1: include cycle: ")


def test_include_nesting_is_bounded(tmp_path, aliases_file):
    for i in range(30):
        write(tmp_path / f"{i}.list", f"user{i}, :include:{i + 1}.list\n")
    message = error(aliases_file, "staff: :include:0.list\n")
    assert message.endswith("includes nested deeper than 20")


def test_include_missing(tmp_path, aliases_file):
    message = error(aliases_file, "root: alice\nstaff: :include:nope.list\n")
    assert message == f'FILE:2: cannot read "{tmp_path}/nope.list": No such file or directory'


def test_include_directory_is_refused(tmp_path, aliases_file):
    (tmp_path / "dir").mkdir()
    message = error(aliases_file, "staff: :include:dir\n")
    assert message == f'FILE:1: "{tmp_path}/dir" is not a regular file'


def test_include_fifo_is_refused_without_hanging(tmp_path, aliases_file):
    os.mkfifo(tmp_path / "fifo")
    message = error(aliases_file, "staff: :include:fifo\n")
    assert message.endswith("is not a regular file")


@pytest.mark.parametrize("name", ["", "a\0b", "a\x1bb"], ids=["empty", "nul", "escape"])
def test_include_bad_name(aliases_file, name):
    with pytest.raises(ConfigError, match="bad :include: file name"):
        load(aliases_file, f'staff: ":include:{name}"\n')


def test_include_errors_name_the_included_file_and_line(tmp_path, aliases_file):
    write(tmp_path / "a.list", "alice\n# x\n|/bin/sh\n")
    message = error(aliases_file, "staff: :include:a.list\n")
    assert message == f'{tmp_path}/a.list:3: "|/bin/sh" command targets are not supported'


def test_include_empty_file_leaves_alias_without_targets(tmp_path, aliases_file):
    write(tmp_path / "a.list", "# everyone left\n")
    message = error(aliases_file, "staff: :include:a.list\n")
    assert message == 'FILE:1: alias "staff" has no targets'


# --- bad syntax and refused targets ------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("root alice\n", 'FILE:1: missing ":" after the alias name "root alice"'),
        ("root: alice\n: bob\n", "FILE:2: missing alias name before the colon"),
        ("  alice\nroot: bob\n", "FILE:1: continuation line without an alias before it"),
        ('root: "alice\n', "FILE:1: unterminated quote"),
        ('"root: alice\n', "FILE:1: unterminated quote"),
        ("root:\n", 'FILE:1: alias "root" has no targets'),
        ("root: ,\n", 'FILE:1: alias "root" has no targets'),
        ("root: alice bob\n", 'FILE:1: "alice bob" is not a valid local name: contains whitespace'
         " (targets are separated by commas)"),
        ("root: alice # note\n", 'FILE:1: "alice # note" is not a valid local name: contains'
         " whitespace (targets are separated by commas)"),
        ("a: x\n\n# c\nroot: b,\n  c d\n", 'FILE:5: "c d" is not a valid local name: contains'
         " whitespace (targets are separated by commas)"),
        ("root: :includ:x\n", 'FILE:1: ":includ:x" is not a valid local name: contains ":"'),
        ("root: ..\n", 'FILE:1: ".." is not a valid local name: starts or ends with "."'
         ' or contains ".."'),
        ("root: .hidden\n", 'FILE:1: ".hidden" is not a valid local name: starts or ends with "."'
         ' or contains ".."'),
    ],
    ids=["no-colon", "no-key", "orphan-continuation", "open-quote", "open-quote-key", "empty",
         "only-commas", "missing-comma", "inline-comment", "line-in-continuation", "bad-include",
         "dotdot", "leading-dot"],
)
def test_bad_syntax_names_the_line(aliases_file, text, expected):
    assert error(aliases_file, text) == expected


@pytest.mark.parametrize(
    "target, kind",
    [
        ("|/usr/bin/foo", "command"),
        ('"|/usr/bin/procmail -f-"', "command"),
        ("/var/mail/root", "file"),
        ('"/var/spool/mail box"', "file"),
        ("\\root", "backslash (no further aliasing)"),
    ],
    ids=["pipe", "quoted-pipe", "file", "quoted-file", "backslash"],
)
def test_command_file_and_backslash_targets_are_refused(aliases_file, target, kind):
    message = error(aliases_file, f"# c\nroot: alice, {target}\n")
    shown = target.strip('"').replace("\\", "\\\\")
    assert message == f'FILE:2: "{shown}" {kind} targets are not supported'


def test_message_format_from_the_spec(tmp_path):
    path = write(tmp_path / "aliases", "\n" * 11 + "foo: |/usr/bin/foo\n")
    with pytest.raises(ConfigError) as caught:
        load_aliases(path)
    assert str(caught.value) == f'{path}:12: "|/usr/bin/foo" command targets are not supported'
    assert caught.value.exit_code == EX_CONFIG


def test_duplicate_keys(aliases_file):
    message = error(aliases_file, "root: a\nx: b\nroot: c\n")
    assert message == 'FILE:3: duplicate alias "root" (first at line 1)'


def test_duplicate_keys_differing_in_case(aliases_file):
    message = error(aliases_file, "root: a\nROOT: c\n")
    assert message == 'FILE:2: duplicate alias "root" (first at line 1)'


def test_duplicate_full_address_keys_after_normalisation(aliases_file):
    text = "bob@example.com: a\nBOB@EXAMPLE.COM: b\n"
    message = error(aliases_file, text)
    assert message == 'FILE:2: duplicate alias "bob@example.com" (first at line 1)'


@pytest.mark.parametrize(
    "address",
    ["a@@example.com", "a@", "@example.com", "a..b@example.com", "a@exa mple.com", "a@-x.com",
     "a@[127.0.0.1]", "a@localhost", "a\u202eb@example.com", "a@" + "x" * 300 + ".com"],
    ids=["two-ats", "no-domain", "no-local", "dotdot", "space", "hyphen", "literal",
         "special-use", "rtl-override", "too-long"],
)
def test_invalid_addresses_are_refused(aliases_file, address):
    message = error(aliases_file, f'root: "{address}"\n')
    assert message.startswith("FILE:1: ")
    assert " is not a valid address: " in message


def test_invalid_address_key(aliases_file):
    message = error(aliases_file, "bob@@example.com: alice\n")
    assert message.startswith('FILE:1: alias name "bob@@example.com" is not a valid address: ')


@pytest.mark.parametrize(
    "name, reason",
    [
        ("../x", 'contains "/"'),
        ("/etc/passwd", None),  # a file target, refused as such
        ("a\0b", "contains NUL"),
        ("a\x1bb", "contains a control character"),
        ("a\x7f", "contains a control character"),
        ("a\u200bb", "contains a control character"),  # zero-width space: hides in logs
        ("a\\b", 'contains "\\\\"'),
        ("x" * 10240, "longer than 254 characters"),
    ],
    ids=["dotdot-slash", "absolute", "nul", "escape", "del", "zero-width", "backslash", "10k"],
)
def test_hostile_target_names(aliases_file, name, reason):
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    message = error(aliases_file, f'root: "{quoted}"\n')
    if reason is None:
        assert message == 'FILE:1: "/etc/passwd" file targets are not supported'
    else:
        assert message.endswith(f"is not a valid local name: {reason}")
    assert len(message) < 200  # a 10 KB name is cut in the message
    assert "\0" not in message and "\x1b" not in message


@pytest.mark.parametrize(
    "key",
    ["../x", "a/b", "a\0b", "x" * 10240, "a\x01"],
    ids=["dotdot-slash", "slash", "nul", "10k", "control"],
)
def test_hostile_keys(aliases_file, key):
    message = error(aliases_file, f'"{key}": alice\n')
    assert message.startswith("FILE:1: alias name ")
    assert "is not a valid local name" in message
    assert len(message) < 200


def test_254_character_name_is_accepted(aliases_file):
    aliases = load(aliases_file, f"{'x' * 254}: alice\nroot: {'y' * 254}\n")
    assert aliases.lookup("x" * 254) == ["alice"]
    assert aliases.lookup("root") == ["y" * 254]


def test_nul_byte_in_the_file(aliases_file):
    message = error(aliases_file, "root: alice\nbob: a\0b\n")
    assert message == 'FILE:2: "a\\0b" is not a valid local name: contains NUL'


def test_invalid_utf8(tmp_path):
    path = tmp_path / "aliases"
    path.write_bytes(b"root: alice\n\nbob: caf\xe9\n")
    with pytest.raises(ConfigError, match=r":3: not valid UTF-8$"):
        load_aliases(str(path))


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope")
    with pytest.raises(ConfigError) as caught:
        load_aliases(path)
    assert str(caught.value) == f"{path}: cannot read: No such file or directory"


def test_alias_file_must_be_a_regular_file(tmp_path):
    with pytest.raises(ConfigError, match="it is not a regular file"):
        load_aliases(str(tmp_path))


def test_empty_file(aliases_file):
    assert len(load(aliases_file, "")) == 0
    assert problems(aliases_file("# nothing\n\n")) == []


# --- lookup ------------------------------------------------------------------


def test_lookup_full_address_before_local_part(aliases_file):
    text = "bob: local-bob\nbob@example.com: example-bob\n"
    aliases = load(aliases_file, text)
    assert aliases.lookup("bob@example.com") == ["example-bob"]
    assert aliases.lookup("BOB@Example.COM") == ["example-bob"]
    assert aliases.lookup("bob@other.org") == ["local-bob"]
    assert aliases.lookup("Bob") == ["local-bob"]
    assert aliases.lookup("alice@example.com") is None
    assert aliases.lookup("alice") is None


def test_full_address_key_does_not_answer_bare_name(aliases_file):
    aliases = load(aliases_file, "bob@example.com: robert\n")
    assert aliases.lookup("bob") is None
    assert aliases.lookup("bob@example.org") is None


def test_lookup_result_is_a_copy(aliases_file):
    aliases = load(aliases_file, "root: alice\n")
    aliases.lookup("root").append("mallory")
    assert aliases.lookup("root") == ["alice"]


def test_lookup_hostile_input_is_just_a_miss(aliases_file):
    aliases = load(aliases_file, "root: alice\n")
    for address in ["", "@", "a\0b@x", "x" * 100000, "../root"]:
        assert aliases.lookup(address) is None
    assert aliases.lookup("root@") == ["alice"]  # local part "root", empty domain


# --- expansion ---------------------------------------------------------------


def test_expand_unaliased_address_is_its_own_leaf():
    result = expand("Alice@Example.com", table({}))
    address = "alice@example.com"
    assert result == Expansion([address], [], {address: [address]})


def test_expand_fan_out_keeps_first_seen_order():
    lookup = table({"staff": ["alice", "devs", "bob"], "devs": ["carol", "dave"]})
    result = expand("staff", lookup)
    assert result.leaves == ["alice", "carol", "dave", "bob"]
    assert result.cycles == []
    assert result.via["dave"] == ["staff", "devs", "dave"]
    assert result.via["bob"] == ["staff", "bob"]


def test_expand_deduplicates_leaves():
    lookup = table(
        {"all": ["devs", "ops", "Alice"], "devs": ["alice", "bob"], "ops": ["bob", "carol"]}
    )
    result = expand("all", lookup)
    assert result.leaves == ["alice", "bob", "carol"]
    assert result.via["bob"] == ["all", "devs", "bob"]  # the first chain


def test_expand_case_insensitive():
    lookup = table({"staff": ["Alice@Example.COM", "alice@example.com", "ALICE@example.com"]})
    assert expand("STAFF", lookup).leaves == ["alice@example.com"]


def test_expand_self_reference_is_a_leaf():
    result = expand("alice", table({"alice": ["alice", "bob"]}))
    assert result.leaves == ["alice", "bob"]
    assert result.cycles == [["alice", "alice"]]
    assert result.via["alice"] == ["alice", "alice"]


def test_expand_two_cycle():
    result = expand("a", table({"a": ["b"], "b": ["a"]}))
    assert result.leaves == ["a"]
    assert result.cycles == [["a", "b", "a"]]


def test_expand_three_cycle_with_exit():
    result = expand("a", table({"a": ["b"], "b": ["c", "x"], "c": ["a"]}))
    assert result.leaves == ["a", "x"]
    assert result.cycles == [["a", "b", "c", "a"]]
    assert result.via["x"] == ["a", "b", "x"]


def test_expand_cycle_entered_from_outside():
    result = expand("list", table({"list": ["a"], "a": ["b"], "b": ["a"]}))
    assert result.leaves == ["a"]
    assert result.cycles == [["list", "a", "b", "a"]]


def test_expand_alias_to_nothing():
    assert expand("void", table({"void": []})).leaves == []


def test_expand_depth_limit():
    chain = {f"a{i}": [f"a{i + 1}"] for i in range(30)}
    with pytest.raises(ConfigError) as caught:
        expand("a0", table(chain), max_depth=5)
    chain = "a0 -> a1 -> a2 -> a3 -> a4 -> a5"
    assert str(caught.value) == f"alias expansion deeper than 5 levels: {chain}"
    assert caught.value.chain == ["a0", "a1", "a2", "a3", "a4", "a5"]


def test_expand_depth_limit_is_inclusive():
    chain = {f"a{i}": [f"a{i + 1}"] for i in range(20)}  # a0 .. a19 are aliases, a20 a leaf
    assert expand("a0", table(chain)).leaves == ["a20"]
    chain["a20"] = ["a21"]
    with pytest.raises(ConfigError, match="deeper than 20 levels"):
        expand("a0", table(chain))


def test_expand_diamonds_stay_linear():
    # Each level names the next twice: 2**40 paths if shared aliases were re-expanded.
    levels = {f"l{i}": [f"l{i + 1}", f"l{i + 1}", f"x{i}"] for i in range(40)}
    calls = []

    def lookup(address):
        calls.append(address)
        return levels.get(address)

    result = expand("l0", lookup, max_depth=50)
    assert result.leaves[0] == "l40"
    assert len(result.leaves) == 41
    assert len(calls) == 81


def test_expand_with_parsed_aliases(aliases_file):
    text = "postmaster: root\nroot: alice, bob@example.com\nalice: alice, carol\n"
    aliases = load(aliases_file, text)
    result = expand("postmaster@example.org", aliases.lookup)
    assert result.leaves == ["alice", "carol", "bob@example.com"]  # depth first
    assert result.via["carol"] == ["postmaster@example.org", "root", "alice", "carol"]
    assert result.cycles == [["postmaster@example.org", "root", "alice", "alice"]]


# --- check_aliases -----------------------------------------------------------


def test_check_collects_every_problem(tmp_path, aliases_file):
    write(tmp_path / "a.list", "ok\n/dev/null\n")
    path = aliases_file(
        "root: alice\n"
        "bad: |cmd, /file\n"
        "root: again\n"
        "inc: :include:a.list\n"
        "addr: a@@b\n"
        "  nope nope\n"
    )
    assert problems(path) == [
        'FILE:2: "|cmd" command targets are not supported',
        'FILE:2: "/file" file targets are not supported',
        'FILE:3: duplicate alias "root" (first at line 1)',
        f'{tmp_path}/a.list:2: "/dev/null" file targets are not supported',
        'FILE:5: "a@@b" is not a valid address: The part after the @-sign contains invalid'
        " characters: '@'.",
        'FILE:6: "nope nope" is not a valid local name: contains whitespace (targets are'
        " separated by commas)",
    ]
    assert all(isinstance(p, Problem) for p in check_aliases(path))


def test_check_clean_file(aliases_file):
    assert problems(aliases_file("postmaster: root\nroot: alice, alice@example.com\n")) == []


def test_check_reports_each_loop_once_at_the_closing_alias(aliases_file):
    path = aliases_file("list: a\na: b\nb: c\nc: a, x\nd: e\ne: d\n")
    assert problems(path) == [
        'FILE:4: alias loop a -> b -> c -> a: "a" is delivered as a mailbox, not expanded again',
        'FILE:6: alias loop d -> e -> d: "d" is delivered as a mailbox, not expanded again',
    ]


def test_check_accepts_self_reference(aliases_file):
    assert problems(aliases_file("alice: alice, bob\n")) == []


def test_check_bare_key_and_remote_forward(aliases_file):
    # bob: bob@gmail.com forwards; only if gmail.com were local would it loop.
    path = aliases_file("bob: bob@gmail.com\nx: y@local.example\ny: x@local.example\n")
    assert problems(path) == []
    assert problems(path, local_domains=["Local.Example"]) == [
        # Found expanding x: x -> y@ -> x@ -> y@, closed by x's member y@ (line 2).
        'FILE:2: alias loop y@local.example -> x@local.example -> y@local.example: '
        '"y@local.example" is delivered as a mailbox, not expanded again'
    ]


def test_check_reports_too_deep_chain_once(aliases_file):
    lines = [f"a{i}: a{i + 1}" for i in range(25)]
    found = problems(aliases_file("\n".join(lines) + "\n"))
    assert len(found) == 1
    assert found[0].startswith("FILE:1: alias expansion deeper than 20 levels: a0 -> a1 -> ")


def test_check_missing_file(tmp_path):
    path = str(tmp_path / "nope")
    assert problems(path) == ["FILE: cannot read: No such file or directory"]


# --- cost --------------------------------------------------------------------


def test_module_imports_no_heavy_modules():
    code = (
        "import sys, lda.store.aliases\n"
        "print(sorted(m for m in sys.modules if m.startswith(('email', 'click'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_ten_thousand_lines_parse_quickly(tmp_path):
    lines = []
    for i in range(2500):
        lines += [
            f"# list {i}",
            f"list{i}: user{i}, user{i + 1}@example.com,",
            f"  other{i}",
            f"u{i}@example.org: x{i}",
        ]
    path = write(tmp_path / "aliases", "\n".join(lines) + "\n")
    load_aliases(path)  # warm up email-validator's import
    start = time.perf_counter()
    aliases = load_aliases(path)
    elapsed = time.perf_counter() - start
    assert len(aliases) == 5000
    assert elapsed < 1.0, f"{elapsed:.3f} s for 10,000 lines"


# --- lenient reading (deliveries, compile): bad lines skipped ----------------


@pytest.mark.parametrize("line, key", [
    ("team alice@example.org", "team"),
    ('team: "unterminated', "team"),
    ("team: alice, |/bin/true", "team"),
    ("Team@Example.org bob", "team@example.org"),
    ('"my team" alice', None),  # no colon, and a name with a space is no key
    ("a/b alice", None),
], ids=["no colon", "open quote", "bad target", "address key", "quoted", "bad name"])
def test_lenient_read_skips_bad_lines_and_defers_their_keys(aliases_file, line, key):
    from lda.store.aliases import AliasLineBad

    aliases = load_aliases(aliases_file(f"ok: alice\n{line}\nlast: bob\n"), strict=False)
    assert aliases.lookup("ok") == ["alice"] and aliases.lookup("last") == ["bob"]
    assert [p.line for p in aliases.problems] == [2]
    assert list(aliases.bad) == ([key] if key else [])
    if key:
        with pytest.raises(AliasLineBad) as caught:
            aliases.lookup(key)
        assert caught.value.smtp_reply == "451 4.3.5" and caught.value.exit_code == 75


def test_a_bad_definition_of_a_key_defers_it_even_beside_a_good_one(aliases_file):
    from lda.store.aliases import AliasLineBad

    path = aliases_file("team: alice\nteam: bob, |cmd\nother: carol\nother: dave\n")
    aliases = load_aliases(path, strict=False)
    with pytest.raises(AliasLineBad):
        aliases.lookup("team@example.org")
    assert aliases.lookup("other") == ["carol"]  # a plain duplicate keeps the first
    assert [p.line for p in aliases.problems] == [2, 4]


def test_lenient_read_of_an_unreadable_file_still_fails(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_aliases(str(tmp_path / "nope"), strict=False)


def test_invalid_utf8_is_one_bad_line(tmp_path):
    path = tmp_path / "aliases"
    path.write_bytes(b"root: alice\nbob: caf\xe9\ncarol: dave\n")
    aliases = load_aliases(str(path), strict=False)
    assert [str(p).split(":", 1)[1] for p in aliases.problems] == ["2: not valid UTF-8"]
    assert aliases.lookup("carol") == ["dave"] and list(aliases.bad) == ["bob"]

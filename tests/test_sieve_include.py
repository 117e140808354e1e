"""The include extension (RFC 6609): include, return, global, and where
included scripts are found (:personal, :global), in unit runs and in a
real delivery."""

import pytest

from conftest import maildir_files, message, write_lda_toml
from lda.sieve import Envelope, MemoryState, SieveError, compile_script, load_script, run
from lda.sieve.extensions.include import MAX_INCLUDES, MAX_NESTING_DEPTH
from sieve_helpers import RECIPIENT, parse

INCLUDE = 'require "include";\n'


@pytest.fixture
def places(tmp_path):
    """The personal and the global script directories of a run."""
    personal, shared = tmp_path / "personal", tmp_path / "global"
    personal.mkdir()
    shared.mkdir()
    return personal, shared


def write(directory, name, text):
    path = directory / f"{name}.sieve"
    path.write_text(text)
    path.chmod(0o644)
    return path


def outcome_of(places, text, main=None, cache=None):
    """The outcome of `text` (or of the script file `main`) with includes
    from `places`."""
    personal, shared = places
    script = load_script(main) if main else compile_script(text)
    options = {"sieve_dir": str(personal), "sieve_global_dir": str(shared),
               "sieve_cache_dir": str(cache) if cache else ""}
    envelope = Envelope("coyote@desert.example.org", RECIPIENT, options=options)
    return run(script, parse("From: a@example.org\nSubject: present\n\nx\n"), envelope,
               MemoryState())


def actions_of(places, text, **kwargs):
    outcome = outcome_of(places, text, **kwargs)
    assert outcome.errors == []
    return outcome.describe()


def error_of(places, text, **kwargs):
    outcome = outcome_of(places, text, **kwargs)
    assert outcome.describe() == ["keep (implicit)"]  # an error keeps, and only keeps
    [error] = outcome.errors
    return error


def compile_errors(text):
    with pytest.raises(SieveError) as caught:
        compile_script(text)
    return caught.value.lines("main.sieve")


# --- compile time --------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ('include "x";\n', 'main.sieve:1:1: command "include" needs require "include"'),
    (INCLUDE + 'include :personal :global "x";\n',
     "main.sieve:2:19: tag :global conflicts with an earlier tag"),
    (INCLUDE + 'include :once :once "x";\n', "main.sieve:2:15: tag :once given twice"),
    (INCLUDE + 'include ["a", "b"];\n', "main.sieve:2:9: include expects a string"),
    (INCLUDE + "return 1;\n", "main.sieve:2:1: return expects 0 arguments"),
    (INCLUDE + 'global "x";\n', 'main.sieve:2:1: global needs require "variables" as well'),
    ('require ["include", "variables"];\nglobal ["ok", "1x", "a.b"];\n',
     'main.sieve:2:15: global: invalid variable name "1x"'),
    ('require "variables";\nset "global.x" "1";\n', 'main.sieve:2:1: invalid variable name'),
    ('require ["variables", "include"];\nset "global.a.b" "1";\n',
     'main.sieve:2:1: invalid variable name "global.a.b"'),
], ids=["no require", "two locations", ":once twice", "a list", "return with an argument",
        "global without variables", "global of a bad name", "global. without include",
        "global. with a sub-namespace"])
def test_compile_errors_have_file_line_and_column(text, expected):
    assert compile_errors(text)[0].startswith(expected)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "", "a\0b", "x\u2028y",
                                  "n" * 228],
                         ids=["dot-dot", "absolute", "a path", "empty", "NUL", "line separator",
                              "too long"])
def test_hostile_names_are_refused_at_compile_time(name):
    text = INCLUDE + f'include :optional\n  "{name}";\n'
    [error] = compile_errors(text)
    assert error.startswith("main.sieve:3:3: include: bad script name")


def test_a_stored_script_named_with_a_leading_dot_is_included(places):
    """ManageSieve stores ".common" as .common.sieve, and Pigeonhole's
    include reads it: so does lda's (the name is one file name, the suffix
    appended; ".." is the file "...sieve", never the parent)."""
    personal, _ = places
    write(personal, ".common", 'require "fileinto";\nfileinto "Common";\n')
    write(personal, "..", 'require "fileinto";\nfileinto "Dots";\n')
    assert actions_of(places, INCLUDE + 'include ".common";\ninclude "..";\n') == [
        'fileinto "Common"', 'fileinto "Dots"']


def test_a_name_with_variables_is_not_expanded(places):
    """RFC 6609 section 3.2: the name is a constant string."""
    personal, _ = places
    write(personal, "${x}", 'require "fileinto";\nfileinto "Literal";\n')
    assert actions_of(places, 'require ["include", "variables"];\nset "x" "other";\n'
                              'include "${x}";\n') == ['fileinto "Literal"']


def test_missing_scripts_are_no_compile_error():
    """RFC 6609 section 3.1: never an error at upload time."""
    compile_script(INCLUDE + 'include "not-there";\ninclude :global "neither";\n')


# --- what runs -----------------------------------------------------------------


def test_personal_and_global_scripts_join_the_outcome(places):
    personal, shared = places
    write(personal, "lists", 'require "fileinto";\nfileinto "Lists";\n')
    write(shared, "lists", 'require "fileinto";\nfileinto "Global";\n')
    assert actions_of(places, INCLUDE + 'include "lists";\ninclude :global "lists";\n'
                                        'include :personal "lists";\n') == [
        'fileinto "Lists"', 'fileinto "Global"']  # the second store into Lists: merged


def test_actions_count_across_scripts(places):
    personal, _ = places
    write(personal, "many", "".join(f'redirect "r{i}@example.org";\n' for i in range(3)))
    error = error_of(places, INCLUDE + 'redirect "a@example.org";\nredirect "b@example.org";\n'
                                       'include "many";\n')
    assert error == 'line 4: include "many": line 3: more than 4 redirects'


def test_included_script_keeps_its_own_requires(places):
    """RFC 6609 section 3.2: require does not pass into included scripts."""
    personal, _ = places
    write(personal, "bad", 'fileinto "x";\n')
    error = error_of(places, 'require ["include", "fileinto"];\nkeep;\ninclude "bad";\n')
    assert error == (f'line 3: include "bad": {personal}/bad.sieve:1:1: '
                     'command "fileinto" needs require "fileinto"')


def test_compile_error_in_an_included_script_names_its_file_line_and_column(places):
    personal, _ = places
    write(personal, "broken", 'require "fileinto";\n\nif true {\n  fileinto "x"\n}\n')
    write(personal, "middle", INCLUDE + 'include "broken";\n')
    error = error_of(places, INCLUDE + 'keep;\ninclude "middle";\n')
    assert error.startswith(f'line 3: include "middle": line 2: include "broken": '
                            f"{personal}/broken.sieve:5:1: ")


def test_missing_script_is_a_runtime_error_and_optional_a_no_op(places):
    assert error_of(places, INCLUDE + 'discard;\ninclude "gone";\n') == \
        'line 3: include: personal script "gone" does not exist'
    assert actions_of(places, INCLUDE + 'discard;\ninclude :optional "gone";\n') == ["discard"]
    outcome = outcome_of(places, INCLUDE + 'include :optional :global "gone";\n')
    assert outcome.log == ['include: global script "gone" not found, :optional: skipped']


def test_no_global_directory_is_an_error_even_with_optional(places):
    """As Pigeonhole: an unconfigured location is no missing script."""
    personal, _ = places
    script = compile_script(INCLUDE + 'include :global :optional "x";\n')
    outcome = run(script, parse("Subject: x\n\n"), Envelope("a@b", RECIPIENT,
                  options={"sieve_dir": str(personal)}))
    assert outcome.errors == ["line 2: include: no global script directory "
                              "(sieve_global_dir is not set)"]


def test_return_ends_only_the_included_script(places):
    personal, _ = places
    write(personal, "early", 'require ["include", "fileinto"];\nfileinto "A";\nreturn;\n'
                             'fileinto "B";\n')
    assert actions_of(places, 'require ["include", "fileinto"];\ninclude "early";\n'
                              'fileinto "C";\n') == ['fileinto "A"', 'fileinto "C"']


def test_return_in_the_main_script_is_stop(places):
    assert actions_of(places, 'require ["include", "fileinto"];\nfileinto "A";\n'
                              'if true { return; }\nfileinto "B";\n') == ['fileinto "A"']
    assert actions_of(places, INCLUDE + "return;\ndiscard;\n") == ["keep (implicit)"]


def test_stop_in_an_included_script_ends_everything(places):
    personal, _ = places
    write(personal, "halt", 'require "fileinto";\nfileinto "A";\nstop;\n')
    assert actions_of(places, 'require ["include", "fileinto"];\ninclude "halt";\n'
                              'fileinto "C";\n') == ['fileinto "A"']


def test_once_includes_a_script_once(places):
    personal, _ = places
    write(personal, "counter", 'require ["include", "variables"];\nglobal "n";\n'
                               'set "n" "${n}x";\n')
    text = ('require ["include", "variables", "fileinto"];\nglobal "n";\n'
            'include :once "counter";\ninclude :once "counter";\ninclude "counter";\n'
            'fileinto "n-${n}";\n')
    assert actions_of(places, text) == ['fileinto "n-xx"']
    text = text.replace('include "counter";\n', "")
    assert actions_of(places, text) == ['fileinto "n-x"']


def test_a_cycle_is_an_error_and_once_breaks_it(places):
    personal, _ = places
    write(personal, "a", INCLUDE + 'include "b";\n')
    write(personal, "b", INCLUDE + 'include "a";\n')
    assert error_of(places, INCLUDE + 'include "a";\n') == (
        'line 2: include "a": line 2: include "b": line 2: '
        'include: personal script "a" includes itself (a cycle)')
    write(personal, "b", 'require ["include", "fileinto"];\ninclude :once "a";\n'
                         'fileinto "B";\n')
    assert actions_of(places, INCLUDE + 'include "a";\n') == ['fileinto "B"']


def test_the_main_script_including_itself_is_a_cycle(places):
    personal, _ = places
    main = write(personal, "main", INCLUDE + 'include "main";\n')
    assert error_of(places, None, main=main) == \
        'line 2: include: personal script "main" includes itself (a cycle)'


def test_nesting_depth_is_limited(places):
    """Pigeonhole's limit: MAX_NESTING_DEPTH scripts below the main one."""
    personal, _ = places
    for level in range(1, MAX_NESTING_DEPTH + 2):
        write(personal, f"d{level}", INCLUDE + f'include "d{level + 1}";\n')
    write(personal, f"d{MAX_NESTING_DEPTH + 2}", 'require "fileinto";\nfileinto "Deep";\n')
    assert actions_of(places, INCLUDE + 'include "d3";\n') == ['fileinto "Deep"']
    error = error_of(places, INCLUDE + 'include "d2";\n')
    assert error.endswith(f"include: nested more than {MAX_NESTING_DEPTH} levels deep")


def test_include_count_is_limited(places):
    """A tree that includes one script many times over ends, with an error."""
    personal, _ = places
    write(personal, "leaf", "keep;\n")
    write(personal, "fan", INCLUDE + 'include "leaf";\n' * 20)
    error = error_of(places, INCLUDE + 'include "fan";\n' * 20)
    assert error.endswith(f"include: more than {MAX_INCLUDES} includes")


def test_symlink_out_of_the_directory_is_refused(places, tmp_path):
    personal, _ = places
    outside = write(tmp_path, "outside", "discard;\n")
    (personal / "link.sieve").symlink_to(outside)
    assert "leads out of" in error_of(places, INCLUDE + 'include "link";\n')
    (personal / "inside.sieve").symlink_to(write(personal, "real", "discard;\n"))
    assert actions_of(places, INCLUDE + 'include "inside";\n') == ["discard"]


def test_script_writable_by_others_is_refused(places):
    personal, _ = places
    write(personal, "open", "discard;\n").chmod(0o666)
    assert "writable by group or others" in error_of(places, INCLUDE + 'include "open";\n')


def test_included_scripts_are_cached_by_their_own_stamp(places, tmp_path):
    personal, _ = places
    cache = tmp_path / "cache"
    path = write(personal, "sub", 'require "fileinto";\nfileinto "One";\n')
    text = INCLUDE + 'include "sub";\n'
    assert actions_of(places, text, cache=cache) == ['fileinto "One"']
    assert len(list(cache.glob("sub.sieve-*.json"))) == 1
    path.write_text('require "fileinto";\nfileinto "Two, a longer name";\n')
    assert actions_of(places, text, cache=cache) == ['fileinto "Two, a longer name"']


# --- variables -------------------------------------------------------------------


def test_each_script_has_its_own_variables_and_shares_globals(places):
    """RFC 6609 section 3.4, as sieve-test runs it."""
    personal, _ = places
    write(personal, "gv", 'require ["include", "variables", "fileinto"];\nglobal "g";\n'
                          'fileinto "in-${g}-${local}-${global.g}-${global.h}";\n'
                          'set "g" "changed";\nset "global.h" "hh";\nset "local" "L2";\n')
    text = ('require ["include", "variables", "fileinto"];\nset "local" "L1";\n'
            'set "g" "notglobal";\nset "global.g" "G";\ninclude "gv";\n'
            'fileinto "main-${g}-${global.g}-${global.h}-${local}";\n')
    assert actions_of(places, text) == ['fileinto "in-G--G-"',
                                        'fileinto "main-notglobal-changed-hh-L1"']


def test_match_variables_are_per_script(places):
    personal, _ = places
    write(personal, "m", 'require ["variables", "fileinto"];\nfileinto "in-${1}";\n'
                         'if header :matches "subject" "pre*" { fileinto "m-${1}"; }\n')
    text = ('require ["include", "variables", "fileinto"];\n'
            'if header :matches "from" "*@*" { include "m"; fileinto "after-${1}"; }\n')
    assert actions_of(places, text) == ['fileinto "in-"', 'fileinto "m-sent"',
                                        'fileinto "after-a"']


def test_global_after_a_local_set_is_an_error(places):
    text = 'require ["include", "variables"];\nset "x" "1";\nglobal "x";\n'
    assert error_of(places, text).startswith('line 3: global "x": already set')


def test_global_namespace_needs_include_in_the_script_that_reads_it(places):
    """RFC 6609 section 3.4.2: an error (Pigeonhole's at compile time)."""
    personal, _ = places
    write(personal, "plain", 'require ["variables", "fileinto"];\nfileinto "${global.x}";\n')
    error = error_of(places, 'require ["include", "variables"];\nset "global.x" "G";\n'
                             'include "plain";\n')
    assert error == 'line 3: include "plain": line 2: "${global.x}" needs require "include"'


# --- a delivery ------------------------------------------------------------------


def test_delivery_includes_personal_and_global_scripts(make_site, tmp_path):
    """A managed mailbox's lda.sieve includes a script installed beside it
    (sieve/NAME.sieve) and one from sieve_global_dir."""
    shared = tmp_path / "global"
    shared.mkdir()
    write(shared, "spam", 'require ["fileinto", "mailbox", "include", "variables"];\n'
                          'global "verdict";\nif header :contains "subject" "money" {\n'
                          '  set "verdict" "spam";\n  fileinto :create "Junk";\n}\n')
    site = make_site(sieve_global_dir=str(shared))
    box = site.create("alice@example.org")
    lists = tmp_path / "lists.sieve"
    lists.write_text('require ["fileinto", "mailbox"];\n'
                     'if exists "list-id" { fileinto :create "Lists"; }\n')
    site.run("sieve", "install", "alice@example.org", str(lists), "--no-activate", check=0)
    (box / "lda.sieve").write_text(
        'require ["include", "variables", "fileinto"];\nglobal "verdict";\n'
        'include :global "spam";\nif string "${verdict}" "spam" { stop; }\n'
        'include :personal "lists";\ninclude :optional "not-there";\n')
    site.deliver(message(subject="make money fast"), "alice@example.org", check=0)
    site.deliver(message(message_id="<l@x>", extra=b"List-Id: <x.example.org>\n"),
                 "alice@example.org", check=0)
    done = site.deliver(message(message_id="<p@x>"), "alice@example.org", check=0)
    assert len(maildir_files(box / ".Junk")) == 1
    assert len(maildir_files(box / ".Lists")) == 1
    assert len(maildir_files(box)) == 1 and done.returncode == 0
    cached = sorted(p.name.split("-")[0] for p in (site.state / "sieve-cache").glob("*.json"))
    assert cached == ["lda.sieve", "lists.sieve", "spam.sieve"]  # each its own entry


def test_delivery_with_a_broken_include_keeps_the_message(user, tmp_path):
    """Per-user mode: :personal is sieve_dir (~/sieve); an error keeps."""
    config = write_lda_toml(tmp_path / "lda-user.toml", {"mode": "user", "log": "stderr"})
    user.env = dict(user.env, LDA_CONFIG=str(config))
    (user.home / "sieve").mkdir()
    write(user.home / "sieve", "broken", 'discard\n')
    (user.home / ".lda.sieve").write_text(INCLUDE + 'discard;\ninclude "broken";\n')
    done = user.deliver(message(), "a@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 1
    assert b'include "broken": ' + str(user.home).encode() + b"/sieve/broken.sieve:2:1:" \
        in done.stderr


def test_cli_test_includes_from_where_a_delivery_would(user, site):
    """`lda sieve test`: per-user mode's sieve_dir (~/sieve); a managed
    mailbox's sieve/ for its lda.sieve."""
    scripts = user.home / "sieve"
    scripts.mkdir()
    write(scripts, "lists", 'require "fileinto";\nfileinto "Lists";\n')
    (user.home / ".lda.sieve").write_text(INCLUDE + 'include "lists";\n')
    done = user.run("sieve", "test", str(user.home / ".lda.sieve"), input=message(), check=0)
    assert done.stdout.decode().splitlines() == ['fileinto "Lists"']
    box = site.create("alice@example.org")
    (box / "sieve").mkdir()
    write(box / "sieve", "lists", 'require "fileinto";\nfileinto "Box";\n')
    (box / "lda.sieve").write_text(INCLUDE + 'include "lists";\n')
    done = site.run("sieve", "test", str(box / "lda.sieve"), input=message(), check=0)
    assert done.stdout.decode().splitlines() == ['fileinto "Box"']


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "a\0b"])
def test_hostile_name_in_a_hand_made_ast_is_refused_at_run_time(places, tmp_path, name):
    """A cached AST is lda's own file, but the directory stays shut even so."""
    from lda.sieve import Script

    write(tmp_path, "x", "discard;\n")
    node = {"cmd": "include", "ext": "include", "line": 1, "name": name,
            "location": "personal", "once": False, "optional": True}
    personal, shared = places
    outcome = run(Script([node], ["include"]), parse("Subject: x\n\n"),
                  Envelope("a@b", RECIPIENT, options={"sieve_dir": str(personal)}))
    assert outcome.describe() == ["keep (implicit)"]
    assert outcome.errors[0].startswith("line 1: include: bad script name")

"""lda.sieve: the compiled-script cache (load_script, evaluate) and what a
cached delivery imports."""

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lda.sieve import (Envelope, MemoryState, SieveError, compile_script, evaluate,
                       load_script, run)
from lda.startup.json import dumps, loads
from sieve_helpers import KEEP, PLAIN, RECIPIENT, SCRIPT, SENDERS, cached_run_probe, parse


@pytest.fixture
def fresh_memo():
    from lda.sieve import script

    script._memo.clear()
    yield
    script._memo.clear()


def test_load_script_missing_is_none(tmp_path):
    assert load_script(tmp_path / "none.sieve", tmp_path / "cache") is None


def test_load_script_writes_then_reads_the_cache(tmp_path, fresh_memo):
    path = tmp_path / "s.sieve"
    path.write_text(SCRIPT)
    cache = tmp_path / "cache"
    first = load_script(path, cache)
    assert first.cache_status == "cache written"
    [cache_file] = cache.iterdir()
    assert cache_file.name.startswith("s.sieve-") and cache_file.suffix == ".json"
    assert oct(cache_file.stat().st_mode & 0o777) == "0o600"
    assert load_script(path, cache).cache_status == "memory"
    from lda.sieve import script

    script._memo.clear()
    second = load_script(path, cache)
    assert second.cache_status == "cache"
    assert second.commands == first.commands and second.requires == first.requires


def test_changed_script_is_compiled_again(tmp_path, fresh_memo):
    path, cache = tmp_path / "s.sieve", tmp_path / "cache"
    path.write_text(SCRIPT)
    load_script(path, cache)
    path.write_text(SCRIPT.replace("Gifts", "Presents"))
    script = load_script(path, cache)
    assert script.cache_status == "cache written"
    assert actions_of(script) == ['fileinto "Presents"']


def actions_of(script):
    return run(script, parse(PLAIN), Envelope(SENDERS["plain"], RECIPIENT)).describe()


@pytest.mark.parametrize("damage", ["", "{", '{"format": 1}', "not json", '{"format": 99}'])
def test_damaged_cache_is_ignored(tmp_path, fresh_memo, damage):
    path, cache = tmp_path / "s.sieve", tmp_path / "cache"
    path.write_text(SCRIPT)
    load_script(path, cache)
    [cache_file] = cache.iterdir()
    cache_file.write_text(damage)
    from lda.sieve import script as module

    module._memo.clear()
    script = load_script(path, cache)
    assert script.cache_status == "cache written"
    assert actions_of(script) == ['fileinto "Gifts"']


def test_unwritable_cache_is_not_an_error(tmp_path, fresh_memo):
    path = tmp_path / "s.sieve"
    path.write_text(SCRIPT)
    blocker = tmp_path / "file"
    blocker.write_text("")
    script = load_script(path, blocker / "cache")
    assert script.cache_status.startswith("cache not written: ")
    assert actions_of(script) == ['fileinto "Gifts"']


def test_broken_script_raises_and_evaluate_keeps(tmp_path, fresh_memo):
    path = tmp_path / "s.sieve"
    path.write_text("keep;\nfileinto \"x\";\n")
    with pytest.raises(SieveError):
        load_script(path, tmp_path / "cache")
    outcome = evaluate(path, tmp_path / "cache", parse(PLAIN), Envelope("", RECIPIENT),
                       MemoryState())
    assert outcome.describe() == KEEP
    assert outcome.errors == [f'{path}:2:1: command "fileinto" needs require "fileinto"']


def test_evaluate_without_a_script_is_none(tmp_path):
    assert evaluate(tmp_path / "none", None, parse(PLAIN), Envelope(), MemoryState()) is None


def test_unreadable_script_is_a_sieve_error(tmp_path, fresh_memo):
    with pytest.raises(SieveError, match="cannot read"):
        load_script(tmp_path, None)  # a directory


def test_compile_script_from_path_and_bytes(tmp_path):
    path = tmp_path / "s.sieve"
    path.write_text(SCRIPT)
    from_path = compile_script(path)
    assert from_path.name == str(path)
    assert from_path.commands == compile_script(SCRIPT.encode()).commands


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
                    max_leaves=20))
def test_cache_reader_reads_what_json_dumps_writes(value):
    assert loads(dumps(value)) == value


def test_cache_reader_refuses_what_it_does_not_know():
    for text in ("1.5", "[1,]", '{"a" 1}', '"abc', "[1] x", "nul"):
        with pytest.raises(ValueError):
            loads(text)


def test_a_cached_delivery_imports_neither_parser_nor_json(tmp_path, user):
    """The per-message path: load_script from the cache, run, nothing heavy."""
    path, cache = tmp_path / "s.sieve", tmp_path / "cache"
    path.write_text('require ["fileinto", "variables", "envelope", "imap4flags", "duplicate",'
                    ' "subaddress"];\nif header :matches "subject" "* present *" {'
                    ' setflag "\\\\Seen"; fileinto "${1}"; }\nif duplicate { discard; }\n'
                    'if envelope :detail "to" "x" { keep; }\n')
    load_script(path, cache)
    probe = cached_run_probe(path, cache, PLAIN)
    done = subprocess.run([sys.executable, "-c", probe], env=user.env, capture_output=True,
                          check=True)
    assert done.stderr.decode().startswith("cache ['fileinto \"I have a\" :flags \"\\\\Seen\"']")
    loaded = set(done.stdout.decode().split())
    for heavy in ("lda.sieve.parser", "lda.sieve.grammar", "lda.sieve.vacation", "json",
                  "email", "hashlib", "click"):
        assert heavy not in loaded, heavy

"""The differential test of issue 20: every case of tests/sieve_corpus/manifest.toml
runs through Pigeonhole 0.5.19's sieve-test and through `lda sieve test --json`;
the outcomes (tests/pigeonhole.py Result) must be equal, or, for a case the
manifest marks "differs: <reason>", differ in exactly the fields it names.

`python tests/test_sieve_pigeonhole.py` prints the agreement count (it runs
pytest on this file and counts).
"""

import sys
import tomllib
from pathlib import Path

import pytest

import pigeonhole
from conftest import write_lda_toml

CORPUS = Path(__file__).parent / "sieve_corpus"

needs_sieve_test = pytest.mark.skipif(pigeonhole.skip_reason() is not None,
                                      reason=pigeonhole.skip_reason() or "")


class Case:
    def __init__(self, entry, message, defaults):
        self.script = entry["script"]
        self.message = message
        self.sender = entry.get("from", defaults["from"])
        self.recipient = entry.get("to", defaults["to"])
        self.original = entry.get("original")
        self.needs = entry.get("needs", [])
        self.includes = entry.get("includes", [])
        self.pigeonhole_x = entry.get("pigeonhole_x", "")
        self.pigeonhole_settings = entry.get("pigeonhole_settings", {})
        self.lda_config = entry.get("lda_config", {})
        self.expect = entry.get("expect", "same")
        self.differs_in = set(entry.get("differs_in", []))
        envelope = [f"{k}={v or '<>'}" for k, v, default in (
            ("from", self.sender, defaults["from"]), ("to", self.recipient, defaults["to"]),
            ("original", self.original, None)) if v != default]
        self.id = f"{self.script}@{message}" + "".join(f"~{e}" for e in envelope)

    def missing(self):
        """The needs lda's grammar does not offer (capability, command or test)."""
        from lda.sieve import grammar

        return [n for n in self.needs
                if n not in grammar.CAPABILITIES and n not in grammar.COMMANDS
                and n not in grammar.TESTS]


def load_cases():
    manifest = tomllib.loads((CORPUS / "manifest.toml").read_text(encoding="utf-8"))
    return [Case(entry, message, manifest["defaults"])
            for entry in manifest["case"] for message in entry["messages"]]


CASES = load_cases()


def test_manifest_ids_are_unique_and_files_exist():
    assert len({case.id for case in CASES}) == len(CASES)
    for case in CASES:
        for name in [case.script, *case.includes]:
            assert (CORPUS / f"{name}.sieve").is_file(), name
        assert (CORPUS / f"{case.message}.eml").is_file(), case.message
        assert case.expect == "same" or (case.expect.startswith("differs: ")
                                         and case.differs_in), case.id


def run_both(case, tmp_path, run):
    """(Pigeonhole's Result, lda's Result) for the case."""
    script = CORPUS / f"{case.script}.sieve"
    message = CORPUS / f"{case.message}.eml"
    ours_dir = tmp_path / "lda"
    ours_dir.mkdir()
    theirs = pigeonhole.pigeonhole(script, message, case.sender, case.recipient, case.original,
                                   case.pigeonhole_x, case.pigeonhole_settings,
                                   [CORPUS / f"{name}.sieve" for name in case.includes])
    # lda reads include :personal scripts from sieve_dir (per-user mode).
    ours_script = ours_dir / script.name
    for path in [script, *(CORPUS / f"{name}.sieve" for name in case.includes)]:
        (ours_dir / path.name).write_bytes(path.read_bytes())
    lda_config = dict(case.lda_config, **({"sieve_dir": str(ours_dir)} if case.includes else {}))
    env = None
    if lda_config:
        config = write_lda_toml(tmp_path / "lda.toml", {"mode": "user", **lda_config})
        env = {"LDA_CONFIG": str(config)}
    ours = pigeonhole.lda(run, ours_script, message, case.sender, case.recipient,
                          case.original, env)
    return theirs, ours


PLAN = """
Performed actions:

 * store message in folder: Lists.Caf\u00e9
        + add IMAP flags: \\seen $Junk
        + create mailbox if it does not exist
 * redirect message to: <bob@example.org>
        + preserve implicit keep
 * send vacation message:
    => seconds : 604800
    => handle  : hi<default-subject><default-from><NO-MIME>

START MESSAGE
 * store message in folder: NotAnAction
END MESSAGE
 * track duplicate with handle: x
 * send notification with method 'mailto:':
    => importance   : 2
    => recipients   :
       + To: Pager@Example.org

 * something new

Implicit keep:

 * store message in folder: inbox
"""


def test_plan_parser_reads_every_kind_of_action():
    assert pigeonhole.parse_plan(PLAN) == pigeonhole.Result(
        stores=(("INBOX", ()), ("Lists.Caf\u00e9", ("$junk", "\\seen"))), implicit_keep=True,
        redirects=("bob@example.org",), vacation=True, notify=("pager@example.org",),
        other=("something new",))


def test_lda_record_reduces_to_the_same_shape():
    record = {"compiled": True, "implicit_keep": True, "errors": [], "log": [], "actions": [
        {"action": "fileinto", "folder": "Lists.Caf\u00e9", "flags": ["\\Seen", "$Junk"],
         "copy": True, "create": True},
        {"action": "redirect", "address": "bob@example.org", "copy": True},
        {"action": "vacation", "to": "x@example.org", "handle": "h", "days": 7},
        {"action": "notify", "method": "mailto:Pager@Example.org?subject=hi"},
        {"action": "keep", "flags": [], "implicit": True}]}
    assert pigeonhole.lda_result(record) == pigeonhole.parse_plan(PLAN)._replace(other=())
    assert pigeonhole.lda_result({"compiled": False, "errors": ["x"]}).error == "compile"


@needs_sieve_test
def test_a_sieve_test_that_does_not_run_is_an_error_not_a_result():
    """sieve-test refuses an envelope sender it cannot parse (exit 89, no
    compile error): the case must fail, not compare an empty result."""
    with pytest.raises(pigeonhole.PigeonholeFailed, match="Invalid -f parameter"):
        pigeonhole.pigeonhole(CORPUS / "core_keep.sieve", CORPUS / "plain.eml",
                              "not an address", "b@example.org")


@needs_sieve_test
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_lda_agrees_with_pigeonhole(case, user, tmp_path):
    missing = case.missing()
    if missing:
        pytest.skip(f"needs {', '.join(missing)}, not in this build")
    theirs, ours = run_both(case, tmp_path, user.run)
    if case.expect == "same":
        assert ours.show() == theirs.show()
    else:
        differing = {field for field in pigeonhole.Result._fields
                     if getattr(ours, field) != getattr(theirs, field)}
        assert differing == case.differs_in, (case.expect, ours.show(), theirs.show())


def main():
    """Run this file's cases and print the agreement count."""
    import collections

    class Count:
        def __init__(self):
            self.outcomes = collections.Counter()
            self.failed = []

        def pytest_runtest_logreport(self, report):
            if report.when == "call" or report.skipped:
                case = next((c for c in CASES if f"[{c.id}]" in report.nodeid), None)
                if case is None:
                    return
                kind = "skipped" if report.skipped else (
                    "failed" if report.failed else
                    "same" if case.expect == "same" else "documented difference")
                self.outcomes[kind] += 1
                if report.failed:
                    self.failed.append(case.id)

    count = Count()
    pytest.main(["-q", "-rN", "--no-header", "-p", "no:cacheprovider", __file__, "-k", "agrees"],
                plugins=[count])
    o = count.outcomes
    print(f"{len(CASES)} cases: {o['same']} same, {o['documented difference']} documented "
          f"differences, {o['failed']} disagreements, {o['skipped']} skipped "
          "(extensions not in this build)")
    for name in count.failed:
        print(f"  disagree: {name}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()


# The capability names of Pigeonhole 0.5's extensions and of Dovecot's own
# plugins for it, whether or not Pigeonhole's defaults enable them.
PIGEONHOLE_CAPABILITIES = [
    "fileinto", "reject", "ereject", "envelope", "encoded-character", "vacation",
    "vacation-seconds", "subaddress", "comparator-i;octet", "comparator-i;ascii-casemap",
    "comparator-i;ascii-numeric", "comparator-i;unicode-casemap", "relational", "regex",
    "imap4flags", "imapflags", "copy", "include", "body", "variables", "enotify", "notify",
    "environment", "mailbox", "mailboxid", "special-use", "date", "index", "ihave",
    "duplicate", "mime", "foreverypart", "extracttext", "editheader", "spamtest",
    "spamtestplus", "virustest", "imapsieve", "vnd.dovecot.debug", "vnd.dovecot.duplicate",
    "vnd.dovecot.environment", "vnd.dovecot.report", "vnd.dovecot.pipe",
    "vnd.dovecot.filter", "vnd.dovecot.execute"]


@needs_sieve_test
def test_every_capability_pigeonhole_enables_by_default_is_lda_s(tmp_path):
    """DESIGN.md's promise: a script that compiles under Pigeonhole's
    defaults (sieve-test with no sieve_extensions) compiles under lda's."""
    from lda.sieve import grammar

    script = tmp_path / "require.sieve"
    accepted = []
    for name in PIGEONHOLE_CAPABILITIES:
        script.write_text(f'require "{name}";\nkeep;\n')
        if pigeonhole.pigeonhole(script, CORPUS / "plain.eml", "a@example.org",
                                 "b@example.org").error is None:
            accepted.append(name)
    assert {"fileinto", "variables", "vnd.dovecot.debug"} <= set(accepted)  # the probe works
    assert [name for name in accepted if name not in grammar.CAPABILITIES] == []

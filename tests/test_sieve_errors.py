"""lda.sieve: compile errors with their line and column, and runtime errors,
which keep the message and do nothing else."""

import pytest

from lda.sieve import Envelope, SieveError, compile_script, run
from sieve_helpers import KEEP, RECIPIENT, outcome_of

# --- compile errors ---------------------------------------------------------------

ERRORS = [
    ("missing-semicolon-at-end", "keep",
     [(1, 5, 'missing ";" after keep at the end of the script')]),
    ("missing-semicolon", "if true { keep }", [(1, 16, "missing \";\" after keep (found '}')")]),
    ("unclosed-block", "if true {\n  keep;\n",
     [(3, 1, "expected a command or \"}\", found nothing at the end of the script")]),
    ("unterminated-string", 'keep;\nredirect "abc', [(2, 10, "unterminated string")]),
    ("unterminated-comment", "keep; /* abc", [(1, 7, 'unterminated comment: "/*" without "*/"')]),
    ("unexpected-character", "keep; @", [(1, 7, "unexpected character '@'")]),
    ("bad-number", "if size :over 10X { keep; }",
     [(1, 15, "invalid number '10X' (a number may end in K, M or G)")]),
    ("text-colon-needs-line-end", "vacation text: x\n.\n;",
     [(1, 16, 'expected the end of the line after "text:"')]),
    ("unterminated-text", 'require "vacation";\nvacation text:\nabc\n',
     [(2, 10, 'unterminated multi-line string: no line with only "."')]),
    ("unclosed-string-list", 'if header :is ["a", "b" "c" { keep; }',
     [(1, 25, "expected \",\" or \"]\" in the string list, found 'c'")]),
    ("test-where-a-command-belongs", 'if header :is "a" "b" keep;',
     [(1, 1, "if needs a block { ... }"), (1, 23, "header takes no test")]),
    ("missing-require-fileinto", 'fileinto "x";',
     [(1, 1, 'command "fileinto" needs require "fileinto"')]),
    ("missing-require-envelope", 'if envelope :is "from" "a" { keep; }',
     [(1, 4, 'test "envelope" needs require "envelope"')]),
    ("missing-require-copy", 'redirect :copy "a@example.org";',
     [(1, 10, 'tag :copy needs require "copy"')]),
    ("missing-require-imap4flags", r'keep :flags "\\Seen";',
     [(1, 6, 'tag :flags needs require "imap4flags"')]),
    ("missing-require-mailbox", 'require "fileinto"; fileinto :create "x";',
     [(1, 30, 'tag :create needs require "mailbox"')]),
    ("missing-require-subaddress", 'if address :user "to" "x" { keep; }',
     [(1, 12, 'tag :user needs require "subaddress"')]),
    ("missing-require-variables", 'set "a" "b";',
     [(1, 1, 'command "set" needs require "variables"')]),
    ("missing-require-duplicate", "if duplicate { discard; }",
     [(1, 4, 'test "duplicate" needs require "duplicate"')]),
    ("missing-require-vacation", 'vacation "away";',
     [(1, 1, 'command "vacation" needs require "vacation"')]),
    ("flag-variable-needs-variables", 'require "imap4flags"; setflag "v" "x";',
     [(1, 23, 'a variable name in setflag needs require "variables"')]),
    ("unknown-extension-rfc5228-3.2", 'require ["fileinto", "x-unknown"];',
     [(1, 22, 'unsupported extension "x-unknown"')]),
    ("unknown-command", "frobnicate;", [(1, 1, 'unknown command "frobnicate"')]),
    ("unknown-test", "if frob { keep; }", [(1, 4, 'unknown test "frob"')]),
    ("unknown-tag", "if header :frob \"a\" \"b\" { keep; }",
     [(1, 11, "unknown tag :frob for header")]),
    ("require-after-command", 'keep;\nrequire "fileinto";',
     [(2, 1, "require must come before every other command")]),
    ("elsif-without-if", "elsif true { keep; }", [(1, 1, "elsif without a preceding if")]),
    ("else-after-else", "if true {} else {} else {}", [(1, 20, "else without a preceding if")]),
    ("unsupported-comparator", 'if header :comparator "i;unknown" :is "a" "1" {}',
     [(1, 4, 'comparator "i;unknown" is not supported (i;ascii-casemap, i;octet, '
       'i;ascii-numeric)')]),
    ("conflicting-match-types", 'if header :is :contains "a" "b" {}',
     [(1, 15, 'tag :contains conflicts with an earlier tag ("is")')]),
    ("tag-given-twice", 'if header :is :is "a" "b" {}', [(1, 15, "tag :is given twice")]),
    ("tag-with-value-given-twice", 'if header :comparator "i;octet" :comparator "i;octet"'
     ' "a" "b" {}', [(1, 33, "tag :comparator given twice")]),
    ("tag-after-positional", 'require ["fileinto", "copy"]; fileinto "x" :copy;',
     [(1, 44, "tag :copy must come before the other arguments")]),
    ("wrong-argument-count", 'if header :is "a" {}',
     [(1, 4, "header expects 2 arguments: headers (string list), keys (string list); found 1")]),
    ("string-where-number", 'if size :over "1" {}', [(1, 15, "size expects a number")]),
    ("list-where-string", 'redirect ["a@example.org"];', [(1, 10, "redirect expects a string")]),
    ("size-needs-over-or-under", "if size 10 {}", [(1, 4, "size needs :over or :under")]),
    ("not-takes-one-test", "if not (true, false) {}", [(1, 4, "not takes one test")]),
    ("allof-takes-a-list", "if allof true {}", [(1, 4, "allof takes a list of tests (...)")]),
    ("unsupported-envelope-part", 'require "envelope"; if envelope "auth" "x" {}',
     [(1, 24, 'envelope part "auth" is not supported (from, to)')]),
    ("invalid-redirect-address", 'redirect "bob";', [(1, 1, 'redirect: invalid address "bob"')]),
    ("invalid-variable-name", 'require "variables"; set "1x" "y";',
     [(1, 22, 'invalid variable name "1x"')]),
    ("conflicting-modifiers", 'require "variables"; set :lower :upper "a" "b";',
     [(1, 22, ":upper conflicts with :lower")]),
    ("duplicate-header-and-uniqueid", 'require "duplicate"; if duplicate :header "a" :uniqueid'
     ' "b" {}', [(1, 25, "duplicate: :header and :uniqueid exclude each other")]),
    ("stop-takes-nothing", 'stop "now";', [(1, 1, "stop expects 0 arguments; found 1")]),
    ("command-with-block", "keep { }", [(1, 1, 'keep takes no block; missing ";"?')]),
    ("several-errors-collected", 'frob;\nkeep :bad;\nif foo {}\n',
     [(1, 1, 'unknown command "frob"'), (2, 6, "unknown tag :bad for keep"),
      (3, 4, 'unknown test "foo"')]),
]


@pytest.mark.parametrize("script, expected", [pytest.param(s, e, id=i) for i, s, e in ERRORS])
def test_compile_errors_have_line_and_column(script, expected):
    with pytest.raises(SieveError) as caught:
        compile_script(script)
    assert caught.value.errors == expected
    assert (caught.value.line, caught.value.column) == expected[0][:2]


def test_nesting_is_limited():
    with pytest.raises(SieveError, match="nested more than 32 deep"):
        compile_script("if true {" * 40 + "}" * 40)
    with pytest.raises(SieveError, match="nested more than 32 deep"):
        compile_script("if " + "not " * 40 + "true {}")


def test_a_string_must_be_utf8():
    with pytest.raises(SieveError) as caught:
        compile_script(b'require "fileinto";\nfileinto "caf\xe9";\n')
    assert caught.value.errors == [(2, 10, "a string that is not valid UTF-8")]
    with pytest.raises(SieveError) as caught:
        compile_script(b'keep;\nif header :is "x" text:\ncaf\xe9\n.\n{ stop; }\n')
    assert caught.value.errors[0][2] == "a string that is not valid UTF-8"


@pytest.mark.parametrize("comment", [b"# caf\xe9\n", b"/* caf\xe9\n \xff\xfe */\n",
                                     b"# \xe9\r\n"], ids=["hash", "bracket", "crlf"])
def test_a_comment_may_hold_any_octet(comment):
    """RFC 5228 section 8.1: a comment is any octets but CRLF (and */),
    as Pigeonhole reads it; an old ~/.dovecot.sieve commented in Latin-1
    keeps filtering after the switch."""
    script = compile_script(b'require "fileinto";\n' + comment + b'fileinto "Latin";\n')
    assert script is not None


def test_error_lines_name_the_file():
    with pytest.raises(SieveError) as caught:
        compile_script("keep;\nfrob;")
    assert caught.value.lines("x.sieve") == ['x.sieve:2:1: unknown command "frob"']
    assert str(caught.value) == 'line 2, column 1: unknown command "frob"'


# --- runtime errors: implicit keep, nothing else -----------------------------------

RUNTIME = [
    # A constant folder name that cannot be stored fails for this message
    # only (RFC 5228 section 4.1; Pigeonhole does the same): the script compiles.
    ("unsafe-constant-folder", 'require "fileinto";\nfileinto "../etc";',
     'line 2: fileinto: "/" in folder name "../etc" (the hierarchy separator is ".")'),
    ("leading-dot-folder", 'require "fileinto";\nfileinto ".x";',
     'line 2: fileinto: folder name ".x" has a leading, trailing or double "."'),
    ("unsafe-folder-from-variable", 'require ["fileinto", "variables"];\nset "f" "../etc";\n'
     'discard;\nfileinto "${f}";', 'line 4: fileinto: "/" in folder name "../etc" '
     '(the hierarchy separator is ".")'),
    ("empty-folder-from-variable", 'require ["fileinto", "variables"];\nfileinto "${nothing}";',
     "line 2: fileinto: empty folder name"),
    ("invalid-redirect-from-variable", 'require "variables";\nredirect "${x}bob";',
     'line 2: redirect: invalid address "bob"'),
    ("too-many-redirects", "\n".join(f'redirect "r{i}@example.org";' for i in range(5)),
     "line 5: more than 4 redirects"),
    ("vacation-twice", 'require "vacation";\nvacation "a";\nvacation "b";',
     "line 3: vacation used more than once (RFC 5230 section 4.7)"),
]


@pytest.mark.parametrize("script, error", [pytest.param(s, e, id=i) for i, s, e in RUNTIME])
def test_runtime_errors_keep_the_message(script, error):
    outcome = outcome_of(script)
    assert outcome.errors == [error]
    assert outcome.actions == []
    assert outcome.describe() == KEEP
    assert outcome.records == []


def test_an_internal_error_still_keeps_the_message():
    class Broken:
        size = 10

        @property
        def headers(self):
            raise RuntimeError("no headers")

    outcome = run(compile_script('discard; if exists "x" { discard; }'), Broken(),
                  Envelope("a@example.org", RECIPIENT))
    assert outcome.describe() == KEEP
    assert outcome.errors == ["line 1: internal error (RuntimeError: no headers)"]

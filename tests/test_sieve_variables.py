"""lda.sieve: the variables extension (RFC 5229): set and its modifiers,
match variables, references and their limits."""

import pytest

from lda.sieve import Envelope, MemoryState, compile_script
from lda.sieve.interpreter import Execution
from sieve_helpers import MESSAGES, RECIPIENT, SENDERS, parse


def variables(script, msg="plain"):
    """The variables after running `script` (white-box: Execution)."""
    execution = Execution(compile_script(script), parse(MESSAGES.get(msg, msg)),
                          Envelope(SENDERS["plain"], RECIPIENT), MemoryState())
    execution.block(execution.script.commands)
    return dict(execution.variables, **{str(i): v for i, v in
                                         enumerate(execution.match_values)})


# --- variables (RFC 5229) ---------------------------------------------------

@pytest.mark.parametrize("modifiers, value, expected", [
    ("", "juMBlEd lETteRS", "juMBlEd lETteRS"),
    (":length", "juMBlEd lETteRS", "15"),
    (":lower", "juMBlEd lETteRS", "jumbled letters"),
    (":upper", "juMBlEd lETteRS", "JUMBLED LETTERS"),
    (":upperfirst", "juMBlEd lETteRS", "JuMBlEd lETteRS"),
    (":upperfirst :lower", "juMBlEd lETteRS", "Jumbled letters"),
    (":lower :upperfirst", "juMBlEd lETteRS", "Jumbled letters"),
    (":upper :lowerfirst", "VaLuE", "vALUE"),
    (":quotewildcard", "Rock*", "Rock\\*"),
    (":quotewildcard", "^^***??**^^", "^^\\*\\*\\*\\?\\?\\*\\*^^"),
    (":length :quotewildcard", "^^***??**^^", "18"),
    (":length", "Das ist überhaupt nicht möglich.", "32"),
], ids=lambda v: v if v else "none")
def test_set_modifiers(modifiers, value, expected):
    """RFC 5229 section 4 examples and precedence."""
    quoted = value.replace("\\", "\\\\")
    assert variables(f'require "variables"; set {modifiers} "v" "{quoted}";')["v"] == expected


@pytest.mark.parametrize("value, pattern, groups", [
    ("frop.......frop.........frop....", "?*frop*", ["f", "rop.......", ".........frop...."]),
    ("frop:frup:frop", "*:*:*", ["frop", "frup", "frop"]),
    ("klopfropstroptop", "*fr??*top", ["klop", "o", "p", "strop"]),
    ("klopfropstroptop", "*?op", ["klopfropstrop", "t"]),
    ("klopfropstroptop", "*?op*", ["k", "l", "fropstroptop"]),
    ("toptoptop", "*top", ["toptop"]),
    ("beter van niet?", "*\\\\?", ["beter van niet"]),
    ("coyote@ACME.Example.COM", "coyote@**.com", ["", "ACME.Example"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_match_variables_are_shortest_first(value, pattern, groups):
    """RFC 5229 section 3.2: ${0} is the value, ${1}... each wildcard, the
    earlier "*" as short as possible."""
    found = variables(f'require "variables"; if string :matches "{value}" "{pattern}"'
                      " { set \"ok\" \"yes\"; }")
    assert found["ok"] == "yes"
    assert [found[str(i)] for i in range(len(groups) + 1)] == [value, *groups]


def test_variable_references():
    found = variables(r'''require "variables";
        set "company" "ACME";
        set "a" "${full}|${company}|${BAD${Company}|${President, ${Company} Inc.}";
        set "b" "$|${|${a|${0.s}|&%${}!|${doh!}";
        set "c" "${20}|${company";
        set "s" "$"; set "one_pass" "${s}{company}";
        if string :matches "frop" "?rop" {}
        set "d" "${0000000}|${1}|${2}";''')
    assert found["a"] == "|ACME|${BADACME|${President, ACME Inc.}"
    assert found["b"] == "$|${|${a|${0.s}|&%${}!|${doh!}"
    assert found["c"] == "|${company"
    assert found["one_pass"] == "${company}"
    assert found["d"] == "frop|f|"


def test_match_values_survive_a_failed_match_and_are_replaced_by_the_next():
    found = variables('''require "variables";
        set "s1" "the cat jumps off the table";
        set "s2" "the dog barks at the cat in the alley";
        if string :matches "${s1}" "the * jumps off the *" { set "first" "${1}:${2}"; }
        if string :matches "${s2}" "the * barks at the * in the store" { set "x" "y"; }
        set "kept" "${1}:${2}";
        if string :matches "${s2}" "the * barks at the * in the alley" {}
        set "new" "${1}:${2}";''')
    assert (found["first"], found["kept"], found["new"]) == ("cat:table", "cat:table",
                                                              "dog:cat")
    assert "x" not in found


def test_multiline_string_with_dot_stuffing_and_variables():
    found = variables('require "variables";\nset "honorific" "Mr";\nset "last_name" "Coyote";\n'
                      'set "vacation" text: # a comment\n'
                      "Dear ${HONORIFIC} ${last_name},\n..signed\n.\n;\n")
    assert found["vacation"] == "Dear Mr Coyote,\n.signed\n"


def test_variable_values_are_cut_at_4096_characters():
    found = variables('require "variables"; set "a" "0123456789abcdef";'
                      + ' set "a" "${a}${a}";' * 9)
    assert len(found["a"]) == 4096

"""Header and address values as Sieve tests see them (lda/sieve/fields.py),
each case as Pigeonhole 0.5.19's sieve-test reads it."""

import pytest

from lda.sieve.fields import address_part, addresses, text


@pytest.mark.parametrize("value, found", [
    ('"quoted local"@b.c', ['"quoted local"@b.c']),
    ('"a  b"@c.d, e@f.g', ['"a  b"@c.d', "e@f.g"]),
    ('Name <"q x"@c.d>', ['"q x"@c.d']),
    ('"a\\" b"@c.d', ['"a\\" b"@c.d']),
], ids=["space", "two-spaces-and-another", "in-angle-brackets", "escaped-quote"])
def test_white_space_inside_a_quoted_local_part_is_kept(value, found):
    # RFC 5322 3.2.4: within a quoted-string, white space is content.
    assert addresses(value) == found


@pytest.mark.parametrize("value, found", [
    ("<pete(his account)@silly.test>", ["pete@silly.test"]),
    ("Pete(A nice \\) chap) <pete(his account)@silly(his host).test>", ["pete@silly.test"]),
    ("<pete @ silly . test>", ["pete@silly.test"]),
    ('<"q x" (c) @ silly.test>', ['"q x"@silly.test']),
    ("<@relay.test:pete(c)@silly.test>", ["pete@silly.test"]),
], ids=["comment-before-at", "rfc5322-a.5", "spaces", "quoted", "source-route"])
def test_comments_and_spaces_inside_angle_brackets_are_dropped(value, found):
    # RFC 5322 3.4.1 and A.5: CFWS around the parts of an addr-spec is no
    # part of it.
    assert addresses(value) == found


@pytest.mark.parametrize("address, part, value", [
    ('"quoted local"@b.c', "localpart", "quoted local"),
    ('"a@b"@c.d', "localpart", "a@b"),
    ('"a\\"b"@c.d', "localpart", 'a"b'),
    ('"a\\ b"@c.d', "localpart", "a b"),
    ('"q+x y"@c.d', "user", "q"),
    ('"q+x y"@c.d', "detail", "x y"),
    ('"plain"@c.d', "all", "plain@c.d"),
    ('"a.b"@c.d', "all", "a.b@c.d"),
    ('"quoted local"@b.c', "all", '"quoted local"@b.c'),
    ('"a\\ b"@c.d', "all", '"a b"@c.d'),
    ('"a\\"b"@c.d', "all", '"a\\"b"@c.d'),
    ('"a@b"@c.d', "all", '"a@b"@c.d'),
    ('".a"@c.d', "all", '".a"@c.d'),
    ('"a..b"@c.d', "all", '"a..b"@c.d'),
    ('"quoted local"@b.c', "domain", "b.c"),
], ids=["space", "at", "escaped-quote", "escaped-space", "user", "detail", "all-plain",
        "all-dot-atom", "all-space", "all-escaped-space", "all-escaped-quote", "all-at",
        "all-leading-dot", "all-two-dots", "domain"])
def test_parts_of_a_quoted_local_part(address, part, value):
    # As Pigeonhole: the parts are the local part's content (RFC 5322
    # 3.2.4: the quotes and the quoted-pair backslashes are not part of it);
    # :all quotes it again only where a dot-atom cannot hold it.
    assert address_part(address, part) == value


@pytest.mark.parametrize("raw, value", [
    (b"x ", "x"),
    (b"x \t ", "x"),
    (b" ", ""),
    (b" a", " a"),
    (b"=?utf-8?q?x_?=", "x"),
    (b"=?utf-8?q?_x?=", " x"),
    (b"a\tb", "a\tb"),
], ids=["space", "space-and-tab", "only-space", "leading-space-kept", "encoded-space",
        "encoded-leading-space", "inner-tab"])
def test_a_value_ends_at_its_last_character_that_is_no_space_or_tab(raw, value):
    # A whitespace-only continuation line leaves a space at the end of the
    # unfolded value ("Subject: x" + "\n\t"): Pigeonhole trims spaces and
    # tabs at the end, after decoding, and keeps those at the start.
    assert text(raw) == value

"""lda lmtp's fast MAIL/RCPT address parser against aiosmtpd's own.

LdaLMTP._getaddr takes plain <local@domain> itself and leaves everything
else to aiosmtpd's parser (the email package's).  For any argument the two
must give the same (address, rest): the fast path is a shortcut, never a
different reading of an address.  The two cases where lda is stricter than
the email parser on purpose (a "<" without ">", a control character) are
tested apart.

Then the recipient as each border reads it: `lda lmtp`'s RCPT and `lda
deliver`'s argv must agree on which mailbox an address is (or that it is
none), whatever form the MTA writes it in.
"""

import re

import pytest
from aiosmtpd.lmtp import LMTP
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from conftest import maildir_files, message, stored_by_folder
from lda.lmtp.protocol import _CONTROL, _PLAIN_ADDRESS, LdaLMTP
from statuscodes import S250_DELIVERED, S501_BAD_RCPT, S550_UNKNOWN


def parsers(limit=0):
    server = LdaLMTP.__new__(LdaLMTP)  # _getaddr reads nothing but the limit
    server.local_part_limit = limit
    return (lambda arg: outcome(LdaLMTP._getaddr, server, arg),
            lambda arg: outcome(LMTP._getaddr, server, arg))


def outcome(parse, server, arg):
    """What parsing gives, an exception included: aiosmtpd's parser raises
    IndexError on some input ('"'), and the fast path must not hide that."""
    try:
        return parse(server, arg)
    except Exception as e:  # noqa: BLE001 - compared, not handled
        return type(e)


ODD = " \t()<>@,:;.\"[]\\é\x00"
ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
atoms = st.text(ATEXT + ".", min_size=0, max_size=12)
labels = st.text("abz09-_." + "é", min_size=0, max_size=12)
rests = st.sampled_from(["", " SIZE=100", "  BODY=8BITMIME", "\tX", " (comment) SIZE=1",
                         "(c)", " ", "> x", "SIZE=1"])


@settings(max_examples=3000, deadline=None, derandomize=True, database=None)
@given(local=atoms, domain=labels, rest=rests, limit=st.sampled_from([0, 3, 64]))
@example(local="a", domain="b.c", rest=" SIZE=100", limit=0)
@example(local="first.last", domain="example.org", rest="", limit=0)
def test_address_like_arguments_parse_as_aiosmtpd_parses_them(local, domain, rest, limit):
    fast, reference = parsers(limit)
    arg = f"<{local}@{domain}>{rest}"
    if domain.endswith(".") and _PLAIN_ADDRESS.match(arg):
        # The root's dot after a plain domain: read without it, as Dovecot's
        # lmtp takes the address (aiosmtpd's parser refuses it).
        assert fast(arg) == reference(f"<{local}@{domain[:-1]}>{rest}")
        return
    assert fast(arg) == reference(arg)


@settings(max_examples=3000, deadline=None, derandomize=True, database=None)
@given(arg=st.text(ATEXT + ODD + "abc", max_size=30))
@example(arg="<>")
@example(arg="<a@b> (x)")
@example(arg='<"a b"@c>')
@example(arg="<@relay:a@b>")
@example(arg="a@b")
def test_any_argument_parses_as_aiosmtpd_parses_it(arg):
    assume(not _CONTROL.search(arg) and not unterminated(arg))
    fast, reference = parsers()
    assert fast(arg) == reference(arg)


def unterminated(arg):
    return arg.strip().startswith("<") and ">" not in arg


def test_a_bracket_never_closed_is_malformed():
    """A bare LF ends aiosmtpd's command line: "MAIL FROM:<a\nX@b>" leaves
    "<a", which the email parser reads as the address "a"."""
    fast, reference = parsers()
    assert reference("<a")[0] == "a"
    assert fast("<a") == (None, None) and fast("<a@b.c SIZE=1") == (None, None)


def test_a_control_character_is_left_in_the_address_for_the_checks():
    fast, _ = parsers()
    assert fast("<a\rX-Injected: yes@example.net> SIZE=1") == (
        "a\rX-Injected: yes@example.net", " SIZE=1")
    assert fast("<a\0b@example.net>") == ("a\0b@example.net", "")


def test_what_mtas_send_takes_the_fast_path():
    """The shortcut must actually be taken for ordinary addresses, or the
    tests above would pass with it never used."""
    for arg in ("<user@example.org>", "<first.last+tag@mail.example.org> SIZE=3072",
                "<bounce-123=x@lists.example.org> BODY=8BITMIME"):
        assert _PLAIN_ADDRESS.match(arg), arg
    for arg in ("<>", '<"a b"@c>', "<a@b> (comment)", "<üser@example.org>"):
        assert not _PLAIN_ADDRESS.match(arg), arg


# --- The recipient at both borders ----------------------------------------------------

# (RCPT's address, as Postfix's lmtp(8) quotes a local part that needs it;
# pipe(8)'s ${recipient}, Postfix's internal form, unquoted; the mailbox it
# is delivered to, or the LMTP reply and `lda deliver`'s enhanced code).
QUOTED = {
    # Dovecot's lmtp splits the content of a quoted local part at the first
    # recipient delimiter (smtp_address_detail_parse) and looks up the user
    # before it: what follows is the extension, whatever it holds.
    "extension-with-a-space": ('"a+x y"@example.org', "a+x y@example.org", "a@example.org"),
    "extension-with-specials": ('"a+x@y \\"z\\""@example.org', 'a+x@y "z"@example.org',
                                "a@example.org"),
    "extension-of-a-space": ('"b+ "@example.org', "b+ @example.org", "b@example.org"),
    # A user with a space is nobody's mailbox, as today and as in Dovecot.
    "space-before-the-extension": ('"a b+x"@example.org', "a b+x@example.org",
                                   (S550_UNKNOWN, "5.1.3")),
    "space-and-no-extension": ('"a b"@example.org', "a b@example.org",
                               (S550_UNKNOWN, "5.1.3")),
}


def lmtp_delivers(server, address):
    """The reply to RCPT, or after DATA when RCPT took the address."""
    client = server.client()
    rcpt_replies, replies = client.send("s@example.org", [address],
                                        message(message_id=f"<{hash(address)}@lmtp>"))
    client.close()
    return replies[0] if replies else rcpt_replies[address]


def deliver_status(site, *args):
    done = site.run("deliver", "-f", "s@example.org", *args,
                    input=message(message_id=f"<{hash(args)}@deliver>"))
    if done.returncode == 0:
        return "2.0.0"
    return re.search(r"^([245]\.\d{1,3}\.\d{1,3}) ", done.stderr.decode(), re.M)[1]


@pytest.mark.parametrize("case", list(QUOTED))
def test_a_quoted_local_part_is_one_mailbox_at_both_borders(lmtp, case):
    """RCPT with the quoted form, `lda deliver` with pipe(8)'s unquoted one
    and with the quoted one too: the same mailbox, or the same refusal."""
    quoted, internal, expected = QUOTED[case]
    server = lmtp("--processes", "1")
    site = server.site
    reply = lmtp_delivers(server, quoted)
    if isinstance(expected, tuple):
        assert " ".join(reply.split()[:2]) == expected[0], reply
        assert deliver_status(site, "--", internal) == expected[1]
        assert deliver_status(site, "--", quoted) == expected[1]
        return
    assert reply.startswith(f"{S250_DELIVERED} <{quoted}>"), reply  # named as given
    assert len(maildir_files(site.maildir(expected))) == 1
    assert deliver_status(site, "--", internal) == "2.0.0"
    assert deliver_status(site, "--", quoted) == "2.0.0"
    assert len(maildir_files(site.maildir(expected))) == 3


def padded(local, domain="@example.org", octets=0, fill="x"):
    """local + fill... + domain, `octets` octets of UTF-8 in all."""
    room = octets - len((local + domain).encode())
    return local + fill * (room // len(fill.encode())) + domain


# The longest recipient: its Delivered-To field (14 octets of name) on one
# line of RFC 5322's 998; its user (what is looked up) at most 320 octets.
LONG = {
    "extension-to-984-octets": (padded("a+", octets=984), "a@example.org"),
    "extension-past-984-octets": (padded("a+", octets=985), (S501_BAD_RCPT, "5.1.3")),
    "extension-of-3000-octets": (padded("a+", octets=3000), (S501_BAD_RCPT, "5.1.3")),
    "utf8-extension-past-984-octets": (padded("a+", octets=986, fill="\u00e9"),
                                       (S501_BAD_RCPT, "5.1.3")),
    "user-of-320-octets-and-an-extension": (padded("", "@example.org", 320, "u")
                                            .replace("@", "+ext@"), (S550_UNKNOWN, "5.1.1")),
    "user-past-320-octets": (padded("", "@example.org", 321, "u").replace("@", "+ext@"),
                             (S501_BAD_RCPT, "5.1.3")),
    # Nobody's, as "a b"@ is (QUOTED), however long its extension.
    "space-in-the-user-and-a-long-extension": (padded('"a b+', '"@example.org', 600),
                                               (S550_UNKNOWN, "5.1.3")),
}


@pytest.mark.parametrize("case", list(LONG))
def test_a_long_extension_is_one_mailbox_at_every_border(lmtp, case):
    """What Dovecot's lmtp delivers (a user that fits and a long
    extension) is delivered over RCPT, from `lda deliver`'s argv and -d;
    past the line, each refuses it with 5.1.3, and `-a` drops it alone."""
    address, expected = LONG[case]
    server = lmtp("--processes", "1")
    site = server.site
    reply = lmtp_delivers(server, address)
    if isinstance(expected, tuple):
        assert " ".join(reply.split()[:2]) == expected[0], reply
        assert deliver_status(site, "--", address) == expected[1]
        assert deliver_status(site, "-d", address) == expected[1]
        return
    assert reply.startswith(f"{S250_DELIVERED} <{address}>"), reply[:80]
    assert deliver_status(site, "--", address) == "2.0.0"
    assert deliver_status(site, "-d", address) == "2.0.0"
    assert len(maildir_files(site.maildir(expected))) == 3


def test_the_original_recipient_follows_the_recipient_rule(lmtp):
    """-a only names the recipient (the log's orig_to=): one with a long
    extension is named, one past the line is dropped with a warning."""
    site = lmtp("--processes", "1").site
    fits, past = LONG["extension-to-984-octets"][0], LONG["extension-past-984-octets"][0]
    for original, named in ((fits, True), (past, False)):
        done = site.run("deliver", "-f", "s@example.org", "-a", original, "b@example.org",
                        input=message(message_id=f"<{len(original)}@orig>"))
        log = done.stderr.decode()
        assert done.returncode == 0, log
        assert (f"orig_to=<{original}>" in log) is named, log
        assert ("original recipient ignored: more than" in log) is not named, log


def test_sieve_reads_the_extension_of_a_long_or_quoted_recipient(lmtp, tmp_path):
    """envelope :detail is the extension as Dovecot's lmtp splits it."""
    server = lmtp("--processes", "1")
    site = server.site
    long = LONG["extension-to-984-octets"][0]
    detail = long[len("a+"):-len("@example.org")]
    script = tmp_path / "detail.sieve"
    script.write_text('require ["envelope", "subaddress", "fileinto", "mailbox"];\n'
                      f'if envelope :detail "to" "{detail}" {{ fileinto :create "Long"; }}\n'
                      'elsif envelope :detail "to" "x y" { fileinto :create "Spaced"; }\n')
    site.run("sieve", "install", "a@example.org", str(script), check=0)
    for address in (long, '"a+x y"@example.org'):
        assert lmtp_delivers(server, address).startswith(S250_DELIVERED)
    assert {folder: len(files) for folder, files in
            stored_by_folder(site.maildir("a@example.org")).items()} == {".Long": 1,
                                                                       ".Spaced": 1}

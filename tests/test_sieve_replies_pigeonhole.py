"""The messages Sieve sends on a user's behalf, lda next to Pigeonhole 0.5.19.

tests/test_sieve_pigeonhole.py compares what a script decides; this file
compares what goes out: vacation replies (RFC 5230, RFC 3834), reject's
MDN (RFC 5429 section 2.2.1), enotify's mailto notifications (RFC 5436)
and redirected copies.  Each case runs one script on one message through
dovecot-lda (Pigeonhole's sieve plugin, its own dovecot.conf in a fresh
directory, `sendmail_path` a script that keeps each message and its argv)
and through a real `lda deliver` on a managed site whose sendmail stand-in
does the same (conftest's Site.sent()).

Both sides are reduced to one comparable shape (shape()): the envelope
(sendmail's -f and recipients) and the message's header fields, decoded
(RFC 2047) and with addresses parsed, MIME structure, charset and body
text; Date, Message-ID and boundaries are normalised, and so are CRLF line
ends (Pigeonhole hands sendmail CRLF, lda LF; sendmail -i takes both).
A case passes when the two shapes differ in exactly the keys of the named
expected differences it lists (EXPECTED, each with its reason).

dovecot-lda runs without a Dovecot master: as nobody (Dovecot refuses mail
access as uid 0), HOME and USER set, `-c` its own dovecot.conf.
"""

import email
import email.policy
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from email.header import decode_header, make_header
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path

import pytest

from conftest import Site, maildir_files

DOVECOT_LDA = next((p for p in ("/usr/lib/dovecot/dovecot-lda",
                                "/usr/libexec/dovecot/dovecot-lda") if os.access(p, os.X_OK)),
                   None)
SIEVE_PLUGIN = any(Path(d, "lib90_sieve_plugin.so").exists()
                   for d in ("/usr/lib/dovecot/modules", "/usr/lib64/dovecot/modules"))
TIMEOUT = 30
USER = "alice@example.org"
HOST = "mx.example.org"
POSTMASTER = "postmaster@example.org"

CONF = """\
# Written by tests/test_sieve_replies_pigeonhole.py; nothing here reads /etc/dovecot.
base_dir = {root}/run
log_path = /dev/stderr
mail_location = maildir:{root}/Maildir
postmaster_address = {postmaster}
hostname = {host}
sendmail_path = {root}/sendmail
mail_plugins = sieve
plugin {{
  sieve = file:{root}/sieve;active={root}/script.sieve
}}
"""
CAPTURE = """\
#!/bin/sh
# argv: -i -f SENDER -- RCPT... ; keep the message and the arguments
f="{root}/out/$(date +%s%N).$$"
cat > "$f.eml" && echo "$*" > "$f.args"
"""


def skip_reason():
    if DOVECOT_LDA is None or not SIEVE_PLUGIN:
        return "dovecot-lda with Pigeonhole is not installed (apt-get install dovecot-sieve)"
    return None


pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


# --- the two sides ---------------------------------------------------------

class Run:
    """One delivery's exit status, stderr and sent messages [(argv, bytes)]."""

    def __init__(self, code, stderr, sent):
        self.code, self.stderr, self.sent = code, stderr, sent


class Pigeonhole:
    """dovecot-lda in a fresh directory: one case, one or more deliveries
    (vacation state stays between them, as a user's does)."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="replies-"))
        self.root.chmod(0o755)
        self.owner = None
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self.owner = (nobody.pw_uid, nobody.pw_gid)
        (self.root / "dovecot.conf").write_text(
            CONF.format(root=self.root, host=HOST, postmaster=POSTMASTER))
        sendmail = self.root / "sendmail"
        sendmail.write_text(CAPTURE.format(root=self.root))
        sendmail.chmod(0o755)
        for sub in ("run", "out", "sieve", "Maildir/cur", "Maildir/new", "Maildir/tmp"):
            (self.root / sub).mkdir(parents=True)
        self._own()

    def _own(self):
        if self.owner is not None:
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, *self.owner)

    def _drop(self):
        if self.owner is not None:
            os.setgid(self.owner[1])
            os.setuid(self.owner[0])

    def deliver(self, script, msg, sender, recipient=USER, refuse_in_protocol=False):
        (self.root / "script.svbin").unlink(missing_ok=True)  # a changed script recompiles
        (self.root / "script.sieve").write_text(script)
        for old in (self.root / "out").iterdir():
            old.unlink()
        self._own()
        args = [DOVECOT_LDA, "-c", str(self.root / "dovecot.conf"), "-f", sender or "<>",
                "-a", recipient] + (["-e"] if refuse_in_protocol else [])
        env = {"HOME": str(self.root), "USER": "nobody", "PATH": "/usr/bin:/bin"}
        done = subprocess.run(args, input=msg, env=env, capture_output=True,
                              preexec_fn=self._drop, timeout=TIMEOUT)
        out = self.root / "out"
        sent = [(p.with_suffix(".args").read_text().split(), p.read_bytes())
                for p in sorted(out.glob("*.eml"))]
        return Run(done.returncode, done.stderr.decode("utf-8", "replace"), sent)

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


class Lda:
    """`lda deliver` on the module's site, into alice's mailbox."""

    def __init__(self, site):
        self.site = site
        self.box = site.maildir(USER)

    def deliver(self, script, msg, sender, recipient=USER, refuse_in_protocol=False):
        (self.box / "lda.sieve").write_text(script)
        for old in self.site.outbox.iterdir():
            old.unlink()
        done = self.site.deliver(msg, recipient, sender=sender)
        return Run(done.returncode, done.stderr.decode("utf-8", "replace"), self.site.sent())


@pytest.fixture(scope="module")
def lda_side(tmp_path_factory):
    site = Site(tmp_path_factory.mktemp("replies"), hostname=HOST, postmaster=POSTMASTER)
    site.create(USER)
    return Lda(site)


@pytest.fixture
def pigeonhole():
    peer = Pigeonhole()
    yield peer
    peer.close()


def message(case, subject="hello", extra=b"", body=b"Hello there.\n"):
    """A message from the case's own sender (vacation remembers senders
    across the module's deliveries) with a Message-ID of its own."""
    lines = [f"From: Sender <{sender_of(case)}>", f"To: {USER}",
             f"Message-ID: <{case}.{os.getpid()}@example.net>",
             "Date: Tue, 24 Nov 2026 10:00:00 +0000"]
    if subject is not None:
        lines.append(f"Subject: {subject}")
    return "\n".join(lines).encode() + b"\n" + extra + b"\n" + body


def sender_of(case):
    return f"{case}@example.net"


# --- one comparable shape ----------------------------------------------------

ADDRESS_FIELDS = ("from", "to", "cc", "sender", "reply-to")
PRESENT = "<present>"


def decoded(value):
    """A header value with RFC 2047 words decoded and whitespace collapsed."""
    try:
        value = str(make_header(decode_header(value)))
    except (ValueError, LookupError):  # not decodable: compare it as it came
        pass
    return " ".join(value.split())


def field_value(name, value):
    value = decoded(value)
    if name in ADDRESS_FIELDS:
        return tuple((n, a.lower()) for n, a in getaddresses([value]))
    if name == "date":
        return PRESENT if parsedate_to_datetime(value) else value
    if name == "message-id":
        return PRESENT if re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", value) else value
    if name == "auto-submitted":  # RFC 3834 section 5: the comment only informs
        return re.sub(r"\s*\([^)]*\)", "", value).lower()
    if name == "importance":  # RFC 2156: low / normal / high, in any case
        return value.lower()
    if name == "reporting-ua":  # the product after the host is each one's own name
        return value.split(";")[0].strip()
    if name in ("content-type", "content-transfer-encoding"):
        return None  # shape() writes the MIME fields itself
    return value


def text_of(part):
    """A text part's content as str, its last line ends ignored."""
    payload = part.get_payload(decode=True) or b""
    charset = part.get_content_charset() or "us-ascii"
    return payload.decode(charset, "replace").replace("\r\n", "\n").rstrip("\n")


def mime_of(part, prefix, out):
    """Content-Type (no boundary; an ASCII text's charset as utf-8: either
    names it), Content-Transfer-Encoding and the content of part and its
    subparts, keys under prefix."""
    ctype = part.get_content_type()
    charset = part.get_content_charset()
    if ctype.startswith("text/") and charset in ("us-ascii", None, "utf-8"):
        charset = "utf-8" if text_of(part).isascii() else charset
    out[prefix + "content-type"] = ctype + (f"; charset={charset}" if charset else "")
    if part.get("content-transfer-encoding"):
        out[prefix + "content-transfer-encoding"] = part["content-transfer-encoding"].lower()
    if ctype == "message/disposition-notification":  # parsed as one header block
        for name, value in part.get_payload()[0].items():
            out[f"{prefix}report:{name.lower()}"] = field_value(name.lower(), value)
    elif ctype in ("message/rfc822", "text/rfc822-headers"):
        original = part.get_payload()
        original = (original[0] if isinstance(original, list)
                    else email.message_from_string(original, policy=email.policy.compat32))
        out[prefix + "original-header"] = tuple(f"{n}: {v}" for n, v in original.items())
    elif part.is_multipart():
        for n, sub in enumerate(part.get_payload(), 1):
            sub_prefix = f"{prefix}part{n}:"
            for name, value in sub.items():
                name = name.lower()
                if name not in ("content-type", "content-transfer-encoding"):
                    out[sub_prefix + name] = decoded(value)
            mime_of(sub, sub_prefix, out)
    else:
        out[prefix + "body"] = text_of(part)


def shape(argv, data):
    """{key: value}: "envelope-from", "recipients", "h:NAME" for each
    header field, and the MIME structure's keys (mime_of)."""
    out = {"envelope-from": argv[argv.index("-f") + 1],
           "recipients": tuple(argv[argv.index("--") + 1:])}
    msg = email.message_from_bytes(data.replace(b"\r\n", b"\n"),
                                   policy=email.policy.compat32)
    for name, value in msg.items():
        name = name.lower()
        value = field_value(name, value)
        if value is not None:
            key = "h:" + name
            out[key] = value if key not in out else (*out[key], value)
    mime_of(msg, "", out)
    return out


def differences(peer, mine):
    """{key: (Pigeonhole's value, lda's)} where the two shapes differ."""
    return {key: (peer.get(key), mine.get(key)) for key in sorted(set(peer) | set(mine))
            if peer.get(key) != mine.get(key)}


# --- the named expected differences ----------------------------------------

EXPECTED = {
    "x-sieve": ({"h:x-sieve"}, "Pigeonhole names itself in X-Sieve on what it sends; "
                "lda names no product in mail it sends for a user"),
    "cte-7bit": ({"content-transfer-encoding"},
                 "Pigeonhole labels every vacation text 8bit; lda says 7bit for ASCII "
                 "text, the exact label (RFC 2045 section 2.7)"),
    "notify-envelope": ({"envelope-from"},
                        "lda sends a notification from the null sender (RFC 5436 section "
                        "2.7, and bounces never go to :from); Pigeonhole from :from or the "
                        "postmaster"),
    "notify-from": ({"h:from"}, "without :from lda's From is the recipient, the owner "
                    "(RFC 5436 section 2.7); Pigeonhole's is the postmaster"),
    "notify-priority": ({"h:x-priority", "h:importance"},
                        "lda writes X-Priority/Importance only for :importance 1 or 3; "
                        "Pigeonhole writes Normal for the default 2"),
    "notify-body": ({"body"}, "lda's default body names the recipient and the message's "
                    "From, Subject and Date; Pigeonhole's is one fixed sentence"),
    "mdn-from-name": ({"h:from"}, "the MDN's From is lda.toml's postmaster as written; "
                      "Pigeonhole adds the display name Postmaster (same address)"),
    "mdn-subject": ({"h:subject"}, "wording: lda's \"Refused: \" and Pigeonhole's "
                    "\"Rejected: \" before the original subject"),
    "mdn-threading": ({"h:in-reply-to", "h:references"},
                      "lda's MDN names the refused message in In-Reply-To/References, so "
                      "a client threads it with the sent message (RFC 5322 section 3.6.4)"),
    "mdn-text": ({"part1:body", "part1:content-disposition",
                  "part1:content-transfer-encoding"},
                 "the human-readable part's wording (both carry the reason); Pigeonhole "
                 "adds Content-Disposition: inline and labels ASCII 8bit"),
    "mdn-original-recipient": ({"part2:report:original-recipient"},
                               "lda reports Original-Recipient, as RFC 3798 section 3.2.3 "
                               "asks when it is known"),
    "mdn-third-part": ({"part3:content-type"},
                       "the third part holds the original header only: lda labels it "
                       "text/rfc822-headers (RFC 3798 section 3, RFC 6522), Pigeonhole "
                       "message/rfc822, which claims a whole message"),
    "redirect-trace": ({"h:x-sieve", "h:x-sieve-redirected-from", "h:delivered-to"},
                       "each one's loop marker on a redirected copy: Pigeonhole's "
                       "X-Sieve-Redirected-From, lda's Delivered-To of this hop (as "
                       "Postfix local(8) forwards; lda's loop check reads it)"),
    "vacation-from-alias": ({"h:from"},
                            "with :addresses and no :from, Pigeonhole answers from the "
                            "address of the user's that the message's To named, lda from "
                            "the envelope recipient, the script owner's address (RFC 5230 "
                            "section 5.2: SHOULD be the owner's address)"),
    "subject-cut": ({"h:subject"}, "both cut a long original subject and end it with "
                    "\"\u2026\": lda the original at 256 characters, Pigeonhole the whole "
                    "reply subject; no RFC sets a length, and both fit in a header line"),
    "ereject": ({"exit"}, "Pigeonhole 0.5.19 has no ereject (its script does not compile, "
                "so the message is kept); lda refuses in the protocol, exit 77 "
                "(RFC 5429 section 2.1.1)"),
}
VACATION = ("x-sieve", "cte-7bit")


def assert_same_but(peer, mine, *names):
    """The shapes differ in exactly the keys of the named differences."""
    allowed = set().union(*(EXPECTED[n][0] for n in names)) if names else set()
    found = differences(peer, mine)
    unexpected = {k: v for k, v in found.items() if k not in allowed}
    assert set(found) == allowed, unexpected or f"no longer differ: {allowed - set(found)}"


def one_each(pigeonhole, lda_side, case, script, msg=None, sender=None, **kwargs):
    msg = message(case) if msg is None else msg
    sender = sender or sender_of(case)
    peer = pigeonhole.deliver(script, msg, sender, **kwargs)
    mine = lda_side.deliver(script, msg, sender, **kwargs)
    assert (peer.code, mine.code) == (0, 0), (peer.stderr, mine.stderr)
    assert (len(peer.sent), len(mine.sent)) == (1, 1), (peer.stderr, mine.stderr)
    return shape(*peer.sent[0]), shape(*mine.sent[0])


# --- vacation (RFC 5230, RFC 3834) --------------------------------------------

VACATION_CASES = {
    "plain": ('require "vacation"; vacation "I am away.";', {}),
    "subject": ('require "vacation"; vacation :subject "Away" "I am away.";', {}),
    "from": ('require "vacation"; vacation :from "Alice A <alice@example.org>" '
             '"I am away.";', {}),
    "non-ascii": ('require "vacation"; vacation :subject "Abwesend \u2013 Gr\u00fc\u00dfe" '
                  '"Ich bin weg. Gr\u00fc\u00dfe, J\u00fcrgen";', {}),  # both 8bit
    "encoded-subject": ('require "vacation"; vacation "I am away.";',
                        {"subject": "=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?="}),
    "long-encoded-subject": ('require "vacation"; vacation "I am away.";',
                             {"subject": "=?iso-8859-1?q?R=E9union?= de l'=?iso-8859-1?q?"
                                         "=E9quipe?= du lundi"}),
    "no-subject": ('require "vacation"; vacation "I am away.";', {"subject": None}),
    "long-subject": ('require "vacation"; vacation "I am away.";',
                     {"subject": "Re: " + "x" * 300}),
    # a thread's References go on; the envelope sender is not the From
    "references-other-sender": (
        'require "vacation"; vacation "I am away.";',
        {"extra": b"References: <a@x.example> <b@x.example>\nIn-Reply-To: <b@x.example>\n"
                  b"Reply-To: Other <other@example.net>\n",
         "envelope": "bounce-7@lists.example.net"}),
    "mime": ('require "vacation"; vacation :mime text:\r\n'
             'Content-Type: text/plain; charset=iso-8859-1\r\n'
             'Content-Transfer-Encoding: quoted-printable\r\n\r\n'
             'Absent jusqu\'=E0 lundi.\r\n.\r\n;', {}),
}


@pytest.mark.parametrize("name", VACATION_CASES)
def test_vacation_reply(pigeonhole, lda_side, name):
    script, kwargs = VACATION_CASES[name]
    kwargs = dict(kwargs)
    case = f"vacation-{name}"
    sender = kwargs.pop("envelope", sender_of(case))
    peer, mine = one_each(pigeonhole, lda_side, case, script, message(case, **kwargs), sender)
    assert mine["envelope-from"] == "<>" and mine["recipients"] == (sender,)
    assert mine["h:auto-submitted"] == "auto-replied"
    ascii_text = name not in ("non-ascii", "mime")  # mime: the script's own encoding
    expected = [*(VACATION if ascii_text else ["x-sieve"])]
    if name == "long-subject":
        expected.append("subject-cut")
        assert peer["h:subject"] == "Auto: Re: " + "x" * 245 + "\u2026"
        assert mine["h:subject"] == "Auto: Re: " + "x" * 252 + "\u2026"
    assert_same_but(peer, mine, *expected)


def test_vacation_addresses(pigeonhole, lda_side):
    """:addresses: the message reached an alias of the user's."""
    case = "vacation-addresses"
    script = 'require "vacation"; vacation :addresses ["al@example.org"] "I am away.";'
    msg = message(case).replace(f"To: {USER}".encode(), b"To: Al <al@example.org>")
    peer, mine = one_each(pigeonhole, lda_side, case, script, msg)
    assert peer["h:from"] == (("", "al@example.org"),)
    assert mine["h:from"] == (("", USER),)
    assert_same_but(peer, mine, *VACATION, "vacation-from-alias")


@pytest.mark.parametrize("extra", [b"List-Id: <friends.example.net>\n",
                                   b"Precedence: list\n",
                                   b"Auto-Submitted: auto-generated\n"],
                         ids=["list-id", "precedence", "auto-submitted"])
def test_vacation_none_to_lists_or_automatic_mail(pigeonhole, lda_side, extra):
    case = "vacation-list-" + extra.split(b":")[0].decode().lower()
    script = 'require "vacation"; vacation "I am away.";'
    msg = message(case, extra=extra)
    peer = pigeonhole.deliver(script, msg, sender_of(case))
    mine = lda_side.deliver(script, msg, sender_of(case))
    assert (peer.code, peer.sent, mine.code, mine.sent) == (0, [], 0, [])


def test_vacation_handle(pigeonhole, lda_side):
    """:handle: two vacations with one handle answer a sender once within
    the period; without it, another reason is another vacation."""
    case = "vacation-handle"
    scripts = ['require "vacation"; vacation :handle "away" "First reason.";',
               'require "vacation"; vacation :handle "away" "Second reason.";',
               'require "vacation"; vacation "Third reason.";']
    counts = []
    for side in (pigeonhole, lda_side):
        counts.append([len(side.deliver(script, message(f"{case}-{n}"), sender_of(case)).sent)
                       for n, script in enumerate(scripts)])
    assert counts[0] == counts[1] == [1, 0, 1]


# --- reject and ereject (RFC 5429) ---------------------------------------------

REJECT = 'require "reject"; reject "Not here, sorry.";'
EREJECT = 'require "ereject"; ereject "Not here, sorry.";'
MDN = ("mdn-from-name", "mdn-subject", "mdn-threading", "mdn-text",
       "mdn-original-recipient", "mdn-third-part")


def test_reject_mdn(pigeonhole, lda_side):
    case = "reject"
    msg = message(case, extra=b"X-mixed-Case: folded\n\tline\n")  # comes back as it came
    peer, mine = one_each(pigeonhole, lda_side, case, REJECT, msg)
    assert "X-mixed-Case: folded\n\tline" in mine["part3:original-header"]
    assert mine["envelope-from"] == "<>" and mine["recipients"] == (sender_of(case),)
    assert mine["content-type"] == "multipart/report"
    for side in (peer, mine):
        assert "Not here, sorry." in side["part1:body"]
    assert mine["part2:report:disposition"] == peer["part2:report:disposition"] == (
        "automatic-action/MDN-sent-automatically; deleted")
    assert_same_but(peer, mine, *MDN)


def test_reject_with_dash_e_still_mails_the_mdn(pigeonhole, lda_side):
    """dovecot-lda -e (an MTA that bounces what is refused runs it so)
    still answers reject with its MDN and exit 0, as lda deliver does."""
    case = "reject-e"
    peer = pigeonhole.deliver(REJECT, message(case), sender_of(case), refuse_in_protocol=True)
    mine = lda_side.deliver(REJECT, message(case), sender_of(case))
    assert (peer.code, len(peer.sent)) == (mine.code, len(mine.sent)) == (0, 1)


def test_ereject(pigeonhole, lda_side):
    """Named difference "ereject": lda exits 77 (EX_NOPERM) with the reason,
    nothing sent or stored; Pigeonhole refuses the script and keeps."""
    case = "ereject"
    peer = pigeonhole.deliver(EREJECT, message(case), sender_of(case), refuse_in_protocol=True)
    before = len(maildir_files(lda_side.box))
    mine = lda_side.deliver(EREJECT, message(case), sender_of(case))
    assert (peer.code, peer.sent, len(maildir_files(pigeonhole.root / "Maildir"))) == (0, [], 1)
    assert "Failed to compile" in peer.stderr
    assert (mine.code, mine.sent) == (77, [])
    assert mine.stderr.splitlines()[0] == "5.7.1 Not here, sorry."
    assert len(maildir_files(lda_side.box)) == before


# --- enotify mailto (RFC 5435, RFC 5436) ----------------------------------------

NOTIFY_CASES = {
    "message-from-importance": (
        'require "enotify"; notify :message "New mail" :importance "1" '
        ':from "alice@example.org" "mailto:bob@example.net";',
        ("notify-envelope", "notify-body")),
    "low-importance": (
        'require "enotify"; notify :importance "3" :from "Alice <alice@example.org>" '
        '"mailto:bob@example.net?subject=Mail%20came";',
        ("notify-envelope", "notify-body")),
    "non-ascii": ('require "enotify"; notify :message "Neue Nachricht f\u00fcr J\u00fcrgen" '
                  ':from "alice@example.org" "mailto:bob@example.net";',
                  ("notify-envelope", "notify-priority", "notify-body")),
    "defaults": ('require "enotify"; notify "mailto:bob@example.net";',
                 ("notify-envelope", "notify-from", "notify-priority", "notify-body")),
}


@pytest.mark.parametrize("name", NOTIFY_CASES)
def test_notify_mailto(pigeonhole, lda_side, name):
    script, expected = NOTIFY_CASES[name]
    case = f"notify-{name}"
    peer, mine = one_each(pigeonhole, lda_side, case, script)
    assert mine["envelope-from"] == "<>" and mine["recipients"] == ("bob@example.net",)
    assert mine["h:auto-submitted"] == 'auto-notified; owner-email="alice@example.org"'
    assert_same_but(peer, mine, "x-sieve", *expected)


# --- redirect ----------------------------------------------------------------

@pytest.mark.parametrize("script", ['redirect "bob@example.net";',
                                    'require "copy"; redirect :copy "bob@example.net";'],
                         ids=["redirect", "redirect-copy"])
def test_redirected_copy(pigeonhole, lda_side, script):
    """The copy goes from the original envelope sender, the message as it
    came plus each one's trace fields; :copy keeps it in both."""
    case = "redirect-copy" if ":copy" in script else "redirect"
    before = len(maildir_files(lda_side.box))
    peer, mine = one_each(pigeonhole, lda_side, case, script)
    assert mine["envelope-from"] == sender_of(case)
    assert mine["recipients"] == ("bob@example.net",)
    assert mine["h:delivered-to"] == USER
    kept = len(maildir_files(pigeonhole.root / "Maildir")), \
        len(maildir_files(lda_side.box)) - before
    assert kept == ((1, 1) if ":copy" in script else (0, 0))
    assert_same_but(peer, mine, "redirect-trace")

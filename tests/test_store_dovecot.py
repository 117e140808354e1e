"""What lda stores, next to what dovecot-lda stores, for the same awkward input.

A site replaces dovecot-lda with lda by changing the program path, and its
Dovecot keeps reading the same Maildirs.  Each message of the corpus goes
once through dovecot-lda (Dovecot 2.3) to one user and once through the
installed `lda deliver` (per-user mode, as the mail owner) to another whose
Maildir the same Dovecot reads; then the stored bytes, the file names' S=
and W=, the exit statuses and what `doveadm fetch` reports (hdr, body, both
sizes, the IMAP envelope and body structure, INTERNALDATE) are compared.

What each agent prepends, its trace fields:
- dovecot-lda: nothing.  It leaves Return-Path and Delivered-To to the MTA
  (Postfix pipe(8) flags R and D) and adds no Received field.
- lda: `Return-Path: <SENDER>` when it knows the sender and
  `Delivered-To: RECIPIENT`, unless the MTA's own fields at the very top
  already say the same (lda_trace below); a Return-Path there that names
  another address is replaced (RFC 5321 4.4).

Every other difference is named in DIFFERENCES with its reason; anything
else is a failure.  The last part sends part of the corpus to Dovecot's lmtp
and to `lda lmtp` and compares what each stores below its own trace fields.
Run with -s to see each case's figures.
"""

import calendar
import os
import re
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from dovecot import LMTP_CONF, private_dovecot
from postfix import SBIN_PATH, UnixUser
from conftest import assert_no_traceback, mailbox_paths, write_lda_toml

SENDER = "sender@example.org"
FROM_LINE = b"From bounce@example.net  Wed Jan  3 01:05:34 1996\n"
MIB = 1 << 20


def head(*extra, message_id=b"<corpus@example.org>"):
    """A header block (its blank line not included): From, To, Subject, the
    extra lines, Message-ID (None: none)."""
    lines = [b"From: Sender <sender@example.org>", b"To: user@example.org",
             b"Subject: corpus", *extra]
    if message_id is not None:
        lines.append(b"Message-ID: " + message_id)
    return b"".join(line + b"\n" for line in lines)


FOLDED = b"X-Long: " + b"\n ".join([b"w" * 70] * 2900)       # ~ 200 KB, folded
UNFOLDED = b"X-Long: " + b"w " * 100_000                       # 200 KB on one line


@dataclass
class Case:
    id: str
    message: bytes
    sender: str | None = SENDER            # -f, or none at all
    # The envelope sender each agent takes: -f's, else the From_ line's.
    envelope: str | None = SENDER
    # Given with -p FILE rather than on standard input.
    from_file: bool = False


CORPUS = [
    Case("plain-lf", head(message_id=b"<plain@x>") + b"\nHello.\n"),
    Case("crlf", (head(message_id=b"<crlf@x>") + b"\nHello.\nBye.\n").replace(b"\n", b"\r\n")),
    Case("bare-cr", head(b"X-Cr: a\rb", message_id=b"<cr@x>") + b"\nbo\rdy\n"),
    Case("cr-crlf", head(message_id=b"<crcrlf@x>") + b"\nline\r\r\nnext\r\n"),
    Case("bare-cr-last", head(message_id=b"<crlast@x>") + b"\nbody\r"),
    Case("nul", head(b"X-Nul: a\0b", message_id=b"<nul@x>") + b"\nbo\0dy\n\0\n"),
    Case("8bit-no-mime", head(b"X-Name: J\xf6rg \xe9t\xe9", message_id=b"<8bit@x>")
         + b"\nGr\xfc\xdfe, \xe7a va\n\xff\xfe\n"),
    Case("no-trailing-newline", head(message_id=b"<notrail@x>") + b"\nlast line"),
    Case("empty-body", head(message_id=b"<emptybody@x>") + b"\n"),
    Case("headers-only", head(message_id=b"<hdronly@x>")),
    Case("body-only", b"just a body line\nand another\n"),
    Case("body-only-indented", b"  indented first line\nsecond\n"),
    Case("1mb-line", head(message_id=b"<mbline@x>") + b"\n" + b"x" * MIB + b"\n"),
    Case("200k-header-folded", head(FOLDED, message_id=b"<folded@x>") + b"\nbody\n"),
    Case("200k-header-unfolded", head(UNFOLDED, message_id=b"<unfolded@x>") + b"\nbody\n"),
    Case("no-message-id", head(message_id=None) + b"\nno id\n"),
    Case("mbox-from-line", FROM_LINE + head(message_id=b"<fromline@x>") + b"\nbody\n"),
    Case("mbox-from-line-no-f", FROM_LINE + head(message_id=b"<fromnof@x>") + b"\nbody\n",
         sender=None, envelope="bounce@example.net"),
    Case("obsolete-from-field-no-f", b"From : Sender <sender@example.org>\n"
         + head(message_id=b"<obsfrom@x>")[len(b"From: Sender <sender@example.org>\n"):]
         + b"\nbody\n", sender=None, envelope=None),
    Case("from-line-only", FROM_LINE[:-1]),
    Case("mbox-from-line-p", FROM_LINE + head(message_id=b"<fromlinep@x>") + b"\nbody\n",
         from_file=True),
    Case("trace-fields-other", b"Return-Path: <old@example.net>\nDelivered-To: old@example.net\n"
         + head(message_id=b"<traceother@x>") + b"\nbody\n"),
    Case("trace-fields-ours", b"Return-Path: <sender@example.org>\nDelivered-To: {rcpt}\n"
         + head(message_id=b"<traceours@x>") + b"\nbody\n"),
    Case("delivered-to-loop", head(b"Delivered-To: {rcpt}", message_id=b"<loop@x>")
         + b"\nbody\n"),
    Case("gt-from-body", head(message_id=b"<gtfrom@x>")
         + b"\n>From quoted\nFrom unquoted\n>>From twice\n"),
    Case("only-newline", b"\n"),
    Case("empty", b""),
]


def user_of(case, agent):
    return f"{agent[0]}-{case.id}"


def recipient(case):
    return f"{user_of(case, 'lda')}@example.org"


def message_for(case):
    """The message as piped: "{rcpt}" stands for lda's recipient, the same
    bytes to both agents."""
    return case.message.replace(b"{rcpt}", recipient(case).encode())


def lda_trace(case):
    """The fields lda prepends for this case (see the module docstring)."""
    if case.id == "trace-fields-ours":  # the MTA's fields on top say it already
        return b""
    trace = b""
    if case.envelope is not None:
        trace += b"Return-Path: <" + case.envelope.encode() + b">\n"
    return trace + b"Delivered-To: " + recipient(case).encode() + b"\n"


def virtual_size(data):
    """RFC 3501's size with CRLF line ends: a bare LF counts two bytes."""
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


# --- The differences lda keeps on purpose --------------------------------------

def without_stale_return_path(data):
    return data.replace(b"Return-Path: <old@example.net>\n", b"", 1)


def without_from_line(data):
    return data.partition(b"\n")[2] if data.startswith(b"From ") else data


@dataclass
class Difference:
    reason: str
    # How lda's stored message (its trace removed) follows from dovecot-lda's.
    stored: object = None
    # Bytes at the end of the message that lda keeps and dovecot-lda drops.
    tail: bytes = b""
    # lda's exit status, when it is not 0 (and it then stores nothing).
    exit: int = 0
    # Fields of doveadm fetch that differ, beyond what the trace explains:
    # {field: its value in lda's copy ("{rcpt}": lda's recipient)}.
    fields: dict = field(default_factory=dict)


DIFFERENCES = {
    "trace-fields-other": Difference(
        "a Return-Path on top that names another address than the envelope "
        "sender is stale: lda replaces it with its own (RFC 5321 4.4 lets final "
        "delivery remove it), dovecot-lda keeps it and adds none",
        stored=without_stale_return_path),
    "delivered-to-loop": Difference(
        "a Delivered-To naming the recipient below the MTA's own fields on top is "
        "a mail loop: lda refuses it (65, 5.4.6), as Postfix's local(8) does; "
        "dovecot-lda has no loop check and stores it",
        exit=65),
    "body-only-indented": Difference(
        "a message whose first line is a folded line with no field before it: "
        "the Delivered-To lda puts on top takes that line as its continuation, "
        "as pipe(8)'s D flag and Dovecot's LMTP take it for theirs; lda stores "
        "the bytes as they came rather than rewrite the sender's first line "
        "(Postfix's cleanup(8) never passes such a message on)",
        fields={"hdr.delivered-to": b"{rcpt}\n  indented first line"}),
    "mbox-from-line-p": Difference(
        "a From_ line at the top of -p's file: lda leaves it out, as from "
        "standard input (it is no header field); dovecot-lda reads the file as "
        "it is and stores the line as the first header line",
        stored=without_from_line),
    "bare-cr-last": Difference(
        "a bare CR as the last byte: lda stores the bytes as they came (S= and "
        "W= count it, and Dovecot reads it back), dovecot-lda's line-end "
        "conversion drops the CR it still holds at the end",
        tail=b"\r",
        fields={"body": b"body\r", "imap.bodystructure":
                b'"text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0 NIL NIL NIL NIL'}),
}


# --- Delivering the corpus -------------------------------------------------------

FIELDS = ("hdr", "body", "size.physical", "size.virtual", "imap.envelope",
          "imap.bodystructure", "date.received", "hdr.return-path", "hdr.delivered-to")


@dataclass
class Stored:
    run: object          # the CompletedProcess
    files: list          # [(name, bytes)] in new/, before Dovecot reads the Maildir
    fields: dict         # doveadm fetch's answers
    delivered_at: float


def sizes_in_name(name):
    return {key: int(value) for key, value in re.findall(r",([SW])=(\d+)", name)}


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """{case id: {"dovecot": Stored, "lda": Stored}} for the whole corpus,
    delivered into one private Dovecot's users (all of them made before the
    first delivery: Dovecot's passwd-file userdb may not see a line added
    within the same second as its last read)."""
    keep = tmp_path_factory.mktemp("store-dovecot")
    with private_dovecot(keep, quota_rule=None) as server:
        config = write_lda_toml(server.root / "lda.toml", {"mode": "user", "log": "stderr"})
        maildirs = {(case.id, agent): server.add_user(user_of(case, agent))
                    for case in CORPUS for agent in ("dovecot", "lda")}
        results = {}
        for case in CORPUS:
            results[case.id] = {}
            for agent in ("dovecot", "lda"):
                started = time.time()
                options = ("-f", case.sender) if case.sender else ()
                piped, path = message_for(case), ()
                if case.from_file:  # readable by the mail owner, as both read it
                    given = server.root / f"{case.id}.eml"
                    given.write_bytes(piped)
                    given.chmod(0o644)
                    piped, path = b"", ("-p", str(given))
                if agent == "dovecot":
                    done = server.deliver(user_of(case, agent), piped, case.sender, *path)
                else:
                    done = server.lda("deliver", *options, *path, recipient(case),
                                      home=server.home(user_of(case, agent)),
                                      input=piped, env={"LDA_CONFIG": str(config)})
                new = maildirs[case.id, agent] / "new"
                files = [(p.name, p.read_bytes()) for p in sorted(new.iterdir())]
                fields = {name: server.fetch(user_of(case, agent), name) for name in FIELDS}
                results[case.id][agent] = Stored(done, files, fields, started)
        errors = [line for line in server.log.read_text(errors="replace").splitlines()
                  if "Error:" in line or "Panic:" in line or "Warning:" in line]
        results["dovecot.log"] = errors
    return results


def test_dovecot_logs_no_complaint_about_either_maildir(stored):
    """Dovecot found nothing wrong reading either agent's files (a wrong S=
    or W= shows here as 'Cached message size smaller than expected')."""
    assert stored["dovecot.log"] == []


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_lda_stores_what_dovecot_lda_stores(stored, case):
    dove, ours = stored[case.id]["dovecot"], stored[case.id]["lda"]
    expected = DIFFERENCES.get(case.id, Difference(""))
    print(f"\n{case.id}: dovecot-lda exit {dove.run.returncode}, "
          f"lda exit {ours.run.returncode}")

    # Both deliver, exactly one file each (or lda refuses, as named).
    assert dove.run.returncode == 0, dove.run.stderr
    assert_no_traceback(ours.run)
    assert ours.run.returncode == expected.exit, ours.run.stderr
    if expected.exit:
        assert len(dove.files) == 1 and ours.files == []
        assert ours.fields["hdr"] is None
        return
    assert len(dove.files) == 1 and len(ours.files) == 1, (dove.files, ours.files)
    (dove_name, dove_data), (lda_name, lda_data) = dove.files[0], ours.files[0]
    print(f"  dovecot-lda {dove_name}: {len(dove_data)} bytes")
    print(f"  lda         {lda_name}: {len(lda_data)} bytes")

    # The stored bytes: lda's trace, then what dovecot-lda stores.
    trace = lda_trace(case)
    assert lda_data.startswith(trace)
    want = expected.stored(dove_data) if expected.stored else dove_data
    assert lda_data[len(trace):] == want + expected.tail

    # Both end a file name with ,S=SIZE,W=VSIZE: Dovecot takes W= for the
    # RFC822.SIZE without reading the file (a 100 MB message too).
    for name, data in ((dove_name, dove_data), (lda_name, lda_data)):
        assert sizes_in_name(name) == {"S": len(data), "W": virtual_size(data)}, name

    # What Dovecot sees.
    for agent, data, seen in (("dovecot-lda", dove_data, dove.fields),
                              ("lda", lda_data, ours.fields)):
        assert int(seen["size.physical"]) == len(data), agent
        assert int(seen["size.virtual"]) == virtual_size(data), agent
    assert ours.fields["hdr"] == trace + (expected.stored(dove.fields["hdr"])
                                          if expected.stored else dove.fields["hdr"])
    for name in ("body", "imap.envelope", "imap.bodystructure"):
        print(f"  {name}: {ours.fields[name]!r}")
        assert ours.fields[name] == expected.fields.get(name, dove.fields[name]), name
    # The trace fields as Dovecot reads them: lda's own above the message's.
    for name in ("return-path", "delivered-to"):
        fetched = f"hdr.{name}"
        if fetched in expected.fields:
            named = expected.fields[fetched].replace(b"{rcpt}", recipient(case).encode())
            assert ours.fields[fetched] == named
            continue
        mine = [value.strip() for line in trace.splitlines()
                if line.lower().startswith(name.encode() + b":")
                for value in [line.partition(b":")[2]]]
        theirs = expected.stored(dove.fields["hdr"]) if expected.stored else dove.fields["hdr"]
        theirs = [value.strip() for line in theirs.splitlines()
                  if line.lower().startswith(name.encode() + b":")
                  for value in [line.partition(b":")[2]]]
        print(f"  {name}: {ours.fields[fetched]!r}")
        assert ours.fields[fetched] == b"\n".join(mine + theirs)
    # INTERNALDATE: the time of delivery for both, even with a From_ line
    # (dovecot-lda reads its date, but saves with the time of delivery).
    received = {agent: calendar.timegm(time.strptime(stored_.fields["date.received"].decode(),
                                                     "%Y-%m-%d %H:%M:%S"))
                for agent, stored_ in (("dovecot", dove), ("lda", ours))}
    print(f"  date.received: {received}")
    assert abs(received["lda"] - ours.delivered_at) < 5
    assert abs(received["dovecot"] - dove.delivered_at) < 5



# --- The envelope sender of a From_ line, as Sieve sees it ------------------------

SIEVE_WITH_LDA = """\
protocol lda {
  mail_plugins = $mail_plugins sieve
}
"""
ENVELOPE_SCRIPT = """\
require ["envelope", "fileinto", "mailbox"];
if envelope :is "from" "bounce@example.net" { fileinto :create "FromLine"; }
elsif envelope :is "from" "other@example.org" { fileinto :create "MinusF"; }
else { fileinto :create "Other"; }
"""


@pytest.fixture
def dovecot_sieve(tmp_path):
    """A private Dovecot whose dovecot-lda runs Pigeonhole (~/.dovecot.sieve)."""
    with private_dovecot(tmp_path, quota_rule=None, extra=SIEVE_WITH_LDA) as server:
        yield server


@pytest.mark.parametrize("sender, folder", [
    (None, ".FromLine"),
    ("other@example.org", ".MinusF"),
], ids=["no-f", "f-wins"])
def test_the_from_line_is_the_envelope_sender_without_f(dovecot_sieve, sender, folder):
    """dovecot-lda takes the envelope sender from a leading From_ line when
    no -f names one (src/lda/main.c, create_raw_stream), as procmail does;
    so does lda, and a Sieve script's envelope test sees it in both."""
    server = dovecot_sieve
    config = write_lda_toml(server.root / "lda.toml", {"mode": "user", "log": "stderr"})
    maildirs = {agent: server.add_user(agent) for agent in ("dove", "lda")}
    for agent in maildirs:
        script = server.home(agent) / ".dovecot.sieve"
        script.write_text(ENVELOPE_SCRIPT)
        os.chown(script, server.owner.uid, server.owner.gid)
        script.chmod(0o600)
    msg = FROM_LINE + head(message_id=b"<sieve@x>") + b"\nbody\n"
    options = ("-f", sender) if sender else ()
    done = server.deliver("dove", msg, sender)
    assert done.returncode == 0, done.stderr
    done = server.lda("deliver", *options, "lda@example.org", home=server.home("lda"),
                      input=msg, env={"LDA_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr
    filed = {agent: sorted(p.name for p in maildir.iterdir() if p.name.startswith(".")
                           and (p / "new").is_dir() and any((p / "new").iterdir()))
             for agent, maildir in maildirs.items()}
    assert filed == {"dove": [folder], "lda": [folder]}


# --- The same over LMTP: Dovecot's lmtp next to `lda lmtp` --------------------------

LMTP_CASES = ["plain-lf", "crlf", "bare-cr", "cr-crlf", "nul", "8bit-no-mime",
              "no-trailing-newline", "empty-body", "1mb-line", "200k-header-folded",
              "gt-from-body", "trace-fields-other", "dot-lines"]
LMTP_CORPUS = [case for case in CORPUS if case.id in LMTP_CASES] + [
    Case("dot-lines", head(message_id=b"<dots@x>") + b"\n.\n..\n.x\n. \nend\n")]
# Over LMTP, lda differs on purpose here: RFC 5321 section 2.3.8 makes CRLF
# the only line end, so a dot after a bare LF is data, not a line's leading
# dot.  lda un-stuffs (and ends DATA) only after CRLF, as aiosmtpd does;
# Dovecot's lmtp also takes a bare LF as a line end.  smtplib, given bytes,
# doubles a dot after a bare LF, so lda keeps those dots doubled.  Postfix's
# LMTP client ends every line with CRLF: no bare LF reaches lda from it.
LMTP_DIFFERENCES = {"dot-lines": lambda dovecot: dovecot.replace(b"\n.", b"\n..")}
# The trace fields each server prepends, in order, over LMTP: Dovecot's lmtp
# (lmtp_hdr_delivery_address = final, its default) and lda's (without
# lmtp_add_received_header, its default).
LMTP_TRACE = {"dovecot": [b"return-path", b"delivered-to", b"received"],
              "lda": [b"return-path", b"delivered-to"]}


def split_trace(data, names):
    """(the fields named, in that order, on top of data, each with its
    continuation lines; the rest)."""
    fields, position = [], 0
    for name in names:
        end = data.index(b"\n", position) + 1
        while data[end:end + 1] in (b" ", b"\t"):
            end = data.index(b"\n", end) + 1
        line = data[position:end]
        assert line.lower().startswith(name + b":"), (name, line[:200])
        fields.append(line)
        position = end
    return fields, data[position:]


@pytest.fixture(scope="module")
def stored_lmtp(tmp_path_factory):
    """{case id: {"dovecot": (reply, [(name, bytes)]), "lda": ...}} for
    LMTP_CORPUS sent to Dovecot's lmtp and to `lda lmtp` (managed mode, its
    mailboxes Dovecot users too), one transaction each, the same bytes."""
    import smtplib

    from conftest import LDA, poll

    keep = tmp_path_factory.mktemp("store-dovecot-lmtp")
    with private_dovecot(keep, quota_rule=None, extra=LMTP_CONF) as server:
        state = server.root / "lda-state"
        run_dir = server.root / "lda-run"
        for directory in (state, run_dir):
            directory.mkdir()
            server.owner.chown_tree(directory)
        config = write_lda_toml(server.root / "lda.toml", {"state_dir": str(state),
                                                           "log": "stderr"})
        env = {"LDA_CONFIG": str(config)}
        maildirs = {}
        for case in LMTP_CORPUS:
            address = f"m-{case.id}@example.org"
            done = server.lda("mailbox", "create", address, env=env)
            assert done.returncode == 0, done.stderr
            maildirs[case.id, "lda"] = server.add_user(
                f"m-{case.id}", maildir=str(mailbox_paths(state, address)[1]))
            maildirs[case.id, "dovecot"] = server.add_user(f"v-{case.id}")
        socket_path = run_dir / "lmtp"
        log = (keep / "lda-lmtp.log").open("wb")
        lda_lmtp = subprocess.Popen(
            [str(LDA), "lmtp", "--listen", f"unix:{socket_path}", "--processes", "1"],
            user=server.owner.uid, group=server.owner.gid, extra_groups=[], cwd="/",
            env={"PATH": "/usr/bin:/bin", "HOME": str(server.owner.home), **env},
            stdout=subprocess.DEVNULL, stderr=log)
        try:
            assert poll(socket_path.exists, 20), "lda lmtp did not listen"
            sockets = {"dovecot": str(server.root / "run" / "lmtp"), "lda": str(socket_path)}
            results = {}
            for case in LMTP_CORPUS:
                results[case.id] = {}
                for agent, user in (("dovecot", f"v-{case.id}"), ("lda", f"m-{case.id}")):
                    with smtplib.LMTP(sockets[agent], local_hostname="client.example.org") \
                            as client:  # LMTP's ehlo() says LHLO
                        refused = client.sendmail(SENDER, [f"{user}@example.org"],
                                                  message_for(case))
                    new = maildirs[case.id, agent] / "new"
                    results[case.id][agent] = (refused, [(p.name, p.read_bytes())
                                                         for p in sorted(new.iterdir())])
        finally:
            lda_lmtp.terminate()
            lda_lmtp.wait(30)
            log.close()
    return results


@pytest.mark.parametrize("case", LMTP_CORPUS, ids=[case.id for case in LMTP_CORPUS])
def test_lda_lmtp_stores_what_dovecot_lmtp_stores(stored_lmtp, case):
    """The same bytes in one LMTP transaction each: below each server's own
    trace fields (LMTP_TRACE), the same message."""
    dove, ours = stored_lmtp[case.id]["dovecot"], stored_lmtp[case.id]["lda"]
    assert dove[0] == {} and ours[0] == {}
    assert len(dove[1]) == 1 and len(ours[1]) == 1, (dove[1], ours[1])
    (dove_name, dove_data), (lda_name, lda_data) = dove[1][0], ours[1][0]
    dove_trace, dove_rest = split_trace(dove_data, LMTP_TRACE["dovecot"])
    lda_trace_, lda_rest = split_trace(lda_data, LMTP_TRACE["lda"])
    print(f"\n{case.id}: dovecot lmtp's trace {b''.join(dove_trace)!r}\n"
          f"  lda lmtp's {b''.join(lda_trace_)!r}")
    assert dove_trace[0] == lda_trace_[0] == b"Return-Path: <" + SENDER.encode() + b">\n"
    if case.id == "trace-fields-other":
        # Dovecot's lmtp puts its Return-Path above the stale one; lda
        # replaces it (DIFFERENCES["trace-fields-other"]).
        assert lda_rest == without_stale_return_path(dove_rest)
    elif case.id in LMTP_DIFFERENCES:
        assert dove_rest != lda_rest == LMTP_DIFFERENCES[case.id](dove_rest)
    else:
        assert lda_rest == dove_rest
    for name, data in ((dove_name, dove_data), (lda_name, lda_data)):
        assert sizes_in_name(name) == {"S": len(data), "W": virtual_size(data)}, name


# --- The permissions of what each agent makes, from the Maildir's root --------------

# A Maildir whose root lets a group in (a backup or webmail group, say):
# Dovecot gives what it makes there the root's permissions (lib-storage's
# mailbox_list_get_permissions): a directory the root's mode, 0700 at
# least; a file its read and write bits, 0600 at least; the root's group
# as a setgid root hands it down, or given when it is not the process's
# and the group's bits differ from the others'.  The kinds of root:
# {kind: (its mode, its group: the mail owner's or another, whether the
# mail owner is in that group)}.
ROOTS = {
    "0750": (0o750, "owner", False),
    "0750-other-group": (0o750, "other", True),   # the group given with chown
    "2750-other-group-setgid": (0o2750, "other", False),  # handed down by the kernel
}
# What Dovecot makes in each: (a directory's st_mode, a file's, its group).
EXPECTED_MODES = {
    "0750": (0o40750, 0o100640, "owner"),
    "0750-other-group": (0o40750, 0o100640, "other"),
    "2750-other-group-setgid": (0o42750, 0o100640, "other"),
}
FILING_SCRIPT = """\
require ["fileinto", "mailbox"];
if header :contains "subject" "[sieve]" { fileinto :create "Filtered"; }
"""
AUTOCREATE = ("-o", "lda_mailbox_autocreate=yes")
# The deliveries into each Maildir, in order: (Subject, options); the last
# with ~/.dovecot.sieve FILING_SCRIPT, the others with no script (-m alone
# decides).
FILING_RUNS = [("inbox", ()),
               ("made", ("-m", "Made", *AUTOCREATE)),
               ("made below", ("-m", "Made.Sub", *AUTOCREATE)),
               ("[sieve]", ())]
# The folders they make ("" the inbox), each with one message in new/.
FILED = ["", ".Made", ".Filtered", ".Made.Sub"]


def permissions_made(maildir, groups):
    """{path in the Maildir: (st_mode, whose group)} of what the deliveries
    made: each folder with its cur/, new/, tmp/ and maildirfolder, and the
    message in each new/."""
    seen = {}
    for folder in FILED:
        box = maildir / folder
        names = [".", "cur", "new", "tmp", "maildirfolder"] if folder else []
        [message] = (box / "new").iterdir()
        for name, path in [*((n, box / n) for n in names), ("new/message", message)]:
            st = path.lstat()
            seen[f"{folder or 'INBOX'}/{name}"] = (st.st_mode, groups.get(st.st_gid, st.st_gid))
    return seen


@pytest.fixture(scope="module")
def permissions(tmp_path_factory):
    """{kind: {"dovecot": permissions_made, "lda": ..., "renames": {(old,
    new): (doveadm's exit, its stderr)}}}: for each kind of root, FILING_RUNS
    through dovecot-lda to one user and through the installed lda (per-user
    mode, umask 077 as Postfix runs delivery and lda/main.py sets) to
    another; then doveadm renames, in lda's Maildir, folders lda made and
    folders Dovecot made under each other."""
    keep = tmp_path_factory.mktemp("store-dovecot-permissions")
    with private_dovecot(keep, quota_rule=None, extra=SIEVE_WITH_LDA) as server:
        other = UnixUser.create("ldagrp", server.root)  # for its group alone
        try:
            subprocess.run(["usermod", "-aG", other.name, server.owner.name], check=True,
                           capture_output=True, env={"PATH": SBIN_PATH})
            groups = {server.owner.gid: "owner", other.gid: "other"}
            gids = {"owner": server.owner.gid, "other": other.gid}
            config = write_lda_toml(server.root / "lda.toml", {"mode": "user", "log": "stderr"})
            users = {}
            for kind, (mode, group, member) in ROOTS.items():
                for agent in ("dovecot", "lda"):
                    user = f"{agent[0]}-perm-{kind}"
                    fields = [f"userdb_mail_access_groups={other.name}"] if member else []
                    maildir = server.add_user(user, fields=fields)
                    for path in (maildir, *(maildir / sub for sub in ("cur", "new", "tmp"))):
                        os.chown(path, server.owner.uid, gids[group])
                        path.chmod(mode)
                    users[kind, agent] = (user, maildir)
            time.sleep(1.2)  # Dovecot's passwd-file userdb rereads a changed file a second on
            results = {}
            for kind, (_, _, member) in ROOTS.items():
                results[kind] = {}
                for agent in ("dovecot", "lda"):
                    user, maildir = users[kind, agent]
                    for subject, options in FILING_RUNS:
                        if (subject, options) == FILING_RUNS[-1]:
                            script = server.home(user) / ".dovecot.sieve"
                            script.write_text(FILING_SCRIPT)
                            os.chown(script, server.owner.uid, server.owner.gid)
                            script.chmod(0o600)
                        msg = head(b"Subject: " + subject.encode(),
                                   message_id=f"<{subject}@perm>".encode()) + b"\nbody\n"
                        if agent == "dovecot":
                            done = server.deliver(user, msg, SENDER, *options)
                        else:
                            done = server.lda("deliver", "-f", SENDER, *options,
                                              home=server.home(user), input=msg,
                                              env={"LDA_CONFIG": str(config)},
                                              groups=[other.gid] if member else [])
                        assert done.returncode == 0, (kind, agent, subject, done.stderr)
                    results[kind][agent] = permissions_made(maildir, groups)
                user = users[kind, "lda"][0]
                for folder in ("ByDovecot", "ByDovecot2"):
                    server.doveadm("mailbox", "create", "-u", user, folder)
                renames = {}
                for old, new in (("Made", "ByDovecot.Made"),
                                 ("ByDovecot2", "Filtered.ByDovecot2")):
                    done = server.doveadm("mailbox", "rename", "-u", user, old, new,
                                          check=False)
                    renames[old, new] = (done.returncode, done.stderr.strip())
                results[kind]["renames"] = renames
        finally:
            other.delete()
    return results


@pytest.mark.parametrize("kind", ROOTS)
def test_what_lda_makes_has_the_permissions_dovecot_gives_it(permissions, kind):
    """A folder made by -m with lda_mailbox_autocreate or by Sieve's
    fileinto :create (its directory, cur/, new/, tmp/ and maildirfolder),
    and each message, in the inbox too, has the mode and group that
    dovecot-lda gives it in a Maildir of the same root."""
    dovecot, lda = permissions[kind]["dovecot"], permissions[kind]["lda"]
    print(f"\n{kind}\n  {'':<24} {'dovecot-lda':<17} lda")
    for path in dovecot:
        print(f"  {path:<24}" + "".join(f" {oct(mode):>9} {group:<7}"
                                        for mode, group in (dovecot[path], lda[path])))
    directory, file, group = EXPECTED_MODES[kind]
    assert dovecot == {path: ((directory if path.endswith(("/.", "/cur", "/new", "/tmp"))
                               else file), group) for path in dovecot}
    assert lda == dovecot


@pytest.mark.parametrize("kind", ROOTS)
def test_dovecot_renames_folders_lda_made_under_its_own_and_back(permissions, kind):
    """Dovecot renames a folder under another only when both have the same
    permissions ("Renaming not supported across conflicting directory
    permissions"): one lda made under one Dovecot made, and back."""
    assert permissions[kind]["renames"] == {
        ("Made", "ByDovecot.Made"): (0, ""), ("ByDovecot2", "Filtered.ByDovecot2"): (0, "")}


# --- The permissions of the files around the messages -----------------------------

# Besides folders and messages, both agents write files of their own in a
# Maildir: maildirsize (the quota), dovecot-keywords (in the root for the
# inbox, in a folder for its messages) and subscriptions.  Dovecot gives
# each the file permissions of the directory it lies in, as it gives a
# message (dovecot-lda and doveadm, seen in each kind of root below).  lda's
# quota-warning state (lda-quota-warnings, Courier's quotawarn mark) has no
# Dovecot counterpart (its quota_warning runs a command) and follows the
# same rule: it lies beside maildirsize, which a group the root lets in reads.
AUX_ROOTS = {
    "0750": (0o750, "owner", False),
    "0750-other-group": (0o750, "other", True),
    "2770-other-group-setgid": (0o2770, "other", False),
}
# A file's st_mode and group in each.
AUX_EXPECTED = {
    "0750": (0o100640, "owner"),
    "0750-other-group": (0o100640, "other"),
    "2770-other-group-setgid": (0o100660, "other"),
}
KEYWORDS_SCRIPT = """\
require ["fileinto", "mailbox", "imap4flags"];
if header :contains "subject" "[folder]" { addflag "$Label1"; fileinto :create "Filtered"; }
elsif header :contains "subject" "[inbox]" { addflag "$Label2"; keep; }
"""
AUX_FILES = ["maildirsize", "dovecot-keywords", ".Filtered/dovecot-keywords", "subscriptions"]
LDA_ONLY_FILES = ["lda-quota-warnings", "quotawarn"]


@pytest.fixture(scope="module")
def aux_permissions(tmp_path_factory):
    """{kind: {"dovecot": {file: (st_mode, whose group)}, "lda": ...}}:
    three deliveries into each kind of root, through dovecot-lda (with a
    quota, so it writes maildirsize) and through lda (per-user mode, umask
    077, a maildirsize with a quota line but no usage, so it recounts and
    writes its own, and a quota warning due): a plain one, one a Sieve
    script files into a new folder with a keyword (subscribed), one it
    keeps in the inbox with another keyword."""
    keep = tmp_path_factory.mktemp("store-dovecot-aux-permissions")
    with private_dovecot(keep, quota_rule="*:storage=10M",
                         extra=SIEVE_WITH_LDA + "lda_mailbox_autosubscribe = yes\n") as server:
        other = UnixUser.create("ldagrp", server.root)
        try:
            subprocess.run(["usermod", "-aG", other.name, server.owner.name], check=True,
                           capture_output=True, env={"PATH": SBIN_PATH})
            groups = {server.owner.gid: "owner", other.gid: "other"}
            gids = {"owner": server.owner.gid, "other": other.gid}
            config = write_lda_toml(server.root / "lda.toml", {
                "mode": "user", "log": "stderr", "quota_warnings": ["messages 50%"]})
            users = {}
            for kind, (mode, group, member) in AUX_ROOTS.items():
                for agent in ("dovecot", "lda"):
                    user = f"{agent[0]}-aux-{kind}"
                    fields = [f"userdb_mail_access_groups={other.name}"] if member else []
                    maildir = server.add_user(user, fields=fields)
                    for path in (maildir, *(maildir / sub for sub in ("cur", "new", "tmp"))):
                        os.chown(path, server.owner.uid, gids[group])
                        path.chmod(mode)
                    script = server.home(user) / ".dovecot.sieve"
                    script.write_text(KEYWORDS_SCRIPT)
                    os.chown(script, server.owner.uid, server.owner.gid)
                    if agent == "lda":
                        (maildir / "maildirsize").write_text("0S,4C\n")
                        os.chown(maildir / "maildirsize", server.owner.uid, server.owner.gid)
                    users[kind, agent] = (user, maildir, member)
            time.sleep(1.2)  # Dovecot's passwd-file userdb rereads a changed file a second on
            results = {}
            for (kind, agent), (user, maildir, member) in users.items():
                for subject in ("plain", "[folder]", "[inbox]"):
                    msg = head(b"Subject: " + subject.encode(),
                               message_id=f"<{subject}@aux>".encode()) + b"\nbody\n"
                    if agent == "dovecot":
                        done = server.deliver(user, msg, SENDER)
                    else:
                        done = server.lda("deliver", "-f", SENDER, home=server.home(user),
                                          input=msg, env={"LDA_CONFIG": str(config)},
                                          groups=[other.gid] if member else [])
                    assert done.returncode == 0, (kind, agent, subject, done.stderr)
                seen = {}
                for name in AUX_FILES + (LDA_ONLY_FILES if agent == "lda" else []):
                    st = (maildir / name).lstat()
                    seen[name] = (st.st_mode, groups.get(st.st_gid, st.st_gid))
                results.setdefault(kind, {})[agent] = seen
        finally:
            other.delete()
    return results


@pytest.mark.parametrize("kind", AUX_ROOTS)
def test_the_files_beside_the_messages_have_the_permissions_dovecot_gives_them(
        aux_permissions, kind):
    """maildirsize, dovecot-keywords (the inbox's and a folder's) and
    subscriptions have the mode and group that Dovecot gives them in a
    Maildir of the same root; lda's quota-warning files the same."""
    dovecot, lda = aux_permissions[kind]["dovecot"], aux_permissions[kind]["lda"]
    print(f"\n{kind}\n  {'':<28} {'dovecot-lda':<17} lda")
    for path in lda:
        print(f"  {path:<28}" + "".join(f" {oct(mode):>9} {group:<7}" for mode, group in
                                        (dovecot.get(path, (0, "-")), lda[path])))
    assert dovecot == {path: AUX_EXPECTED[kind] for path in AUX_FILES}
    assert lda == {path: AUX_EXPECTED[kind] for path in AUX_FILES + LDA_ONLY_FILES}

"""Hostile input: malformed messages and addresses get a byte-exact delivery
or a clear refusal (65 bad message, 67 bad or unknown recipient), never a
traceback, never exit 1, never a file outside the mailbox root."""

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import assert_no_traceback, maildir_files, message

SENDER = "sender@example.org"
PREFIX = b"Return-Path: <sender@example.org>\nDelivered-To: alice@example.org\n"
MIB = 1 << 20


def converted(data):
    """What lda must store after its prefix: CRLF as LF, no mbox "From " line."""
    data = data.replace(b"\r\n", b"\n")
    if data.startswith(b"From "):
        end = data.find(b"\n")
        data = data[end + 1:] if end != -1 else b""
    return data


def tree(root, skip=()):
    """Every file and directory below root, relative, minus the skipped ones."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            relative = os.path.relpath(os.path.join(dirpath, name), root)
            if not any(rule(relative) for rule in skip):
                found.add(relative)
    return found


ALLOWED_IN_HOME = ("Maildir", ".local/state/lda")


def outside_mailbox(home):
    """Paths under HOME that are neither in ~/Maildir nor in lda's state dir
    (nor one of the directories leading to them)."""
    def allowed(path):
        return any(path == top or path.startswith(top + "/") or top.startswith(path + "/")
                   for top in ALLOWED_IN_HOME)
    return {p for p in tree(home) if not allowed(p)}


def assert_delivered_exactly(user, raw, done):
    assert_no_traceback(done)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    [path] = maildir_files(user.maildir)
    content = path.read_bytes()
    expected = PREFIX + converted(raw)
    assert len(content) == len(expected)
    assert content == expected
    assert list((user.maildir / "tmp").iterdir()) == []
    assert outside_mailbox(user.home) == set()


# --- messages, per-user mode ------------------------------------------------

DATE = b"Date: Tue, 24 Nov 2026 10:00:00 +0000\n"
FROM_LINE = b"From sender@example.org  Tue Nov 24 10:00:00 2026"

HOSTILE_MESSAGES = {
    "no-header-at-all": b"Just a body, no header field.\nSecond line\n",
    "empty-header-block": b"\nThe body after an empty header block.\n",
    "header-only-no-body-no-final-newline":
        b"From: s@example.org\nSubject: only a header\nMessage-ID: <hdr-only@x>",
    "nul-in-headers-and-body":
        message(message_id="<n\x00ul@x>", subject="a\x00b") + b"x\x00y\n\x00",
    "nul-in-header-name": b"Sub\x00ject: x\nMessage-ID: <nn@x>\n\nbody\n",
    "8bit-and-invalid-utf8-headers":
        b"From: s@example.org\nSubject: caf\xc3\xa9 \xff\xfe\x80 \xed\xa0\x80\n"
        b"Message-ID: <\xff\xfe\x80\xc3@x>\nDate: Tue, 24 Nov 2026 \xff\xc3 10:00:00 +0000\n"
        b"\nbody \xff\n",
    "bare-cr-in-headers":
        b"Subject: a\rb\nX-Cr: \r\nMessage-ID: <c\rr@x>\r\rX-After: 1\r\n" + DATE
        + b"\nbody\rline\n",
    "header-ends-in-cr": b"Subject: x\nMessage-ID: <cr-end@x>\r",
    "one-mb-header-line-first":
        b"X-Long: " + b"a" * MIB + b"\n" + message(message_id="<long@x>"),
    "one-mb-header-line-folded":
        b"Subject: s\nX-Long: " + (b"b" * 999 + b"\n ") * 1100 + b"end\n\nbody\n",
    "ten-thousand-header-fields":
        b"".join(b"X-Field-%d: value %d\n" % (i, i) for i in range(10_000))
        + message(message_id="<fields@x>"),
    "hundred-kb-message-id": message(message_id="<" + "i" * 100_000 + "@x>"),
    "message-id-without-brackets": message(message_id="no-brackets-at-all"),
    "message-id-empty": message(message_id=""),
    "message-id-empty-brackets": message(message_id="<>"),
    "empty-input": b"",
    "only-a-newline": b"\n",
    "from-line-only": FROM_LINE + b"\n",
    "from-line-only-no-newline": FROM_LINE,
    "from-line-only-crlf": FROM_LINE + b"\r\n",
    "from-line-then-crlf-message": FROM_LINE + b"\r\n" + message().replace(b"\n", b"\r\n"),
    "from-colon-header-is-kept": message(),  # begins "From: Sender ..."
    "fromage-is-kept": b"Fromage: brie\n" + message(),
    "short-from-at-end-is-kept": b"From",
    "from-space-only": b"From ",
    "second-from-line-is-kept": FROM_LINE + b"\n" + FROM_LINE + b"\n" + message(),
    "from-line-longer-than-a-chunk":
        b"From " + b"x" * (MIB + 100) + b"\n" + message(message_id="<longfrom@x>"),
}


@pytest.mark.parametrize("raw", HOSTILE_MESSAGES.values(), ids=HOSTILE_MESSAGES.keys())
def test_hostile_message_is_delivered_byte_exact(user, raw):
    done = user.deliver(raw, "alice@example.org")
    assert_delivered_exactly(user, raw, done)


def with_headers(*fields, body=b"Hello.\n"):
    return b"".join(f + b"\n" for f in fields) + b"\n" + body


@pytest.mark.usefixtures("user_log_on_stderr")
def test_first_message_id_and_date_win_when_duplicated(user):
    def variant(second_id, second_date, first_id=b"<first@x>"):
        return with_headers(b"From: s@example.org", b"Message-ID: " + first_id,
                            b"Date: Tue, 24 Nov 2026 10:00:00 +0000",
                            b"Message-ID: " + second_id, b"Date: " + second_date)

    first = variant(b"<second-a@x>", b"Wed, 25 Nov 2026 10:00:00 +0000")
    assert_delivered_exactly(user, first, user.deliver(first, "alice@example.org"))
    for resend in (variant(b"<second-b@x>", b"Wed, 25 Nov 2026 10:00:00 +0000"),
                   variant(b"<second-a@x>", b"Thu, 26 Nov 2026 10:00:00 +0000")):
        done = user.deliver(resend, "alice@example.org", check=0)
        assert b"status=duplicate" in done.stderr
    assert len(maildir_files(user.maildir)) == 1
    other = variant(b"<second-a@x>", b"Wed, 25 Nov 2026 10:00:00 +0000",
                    first_id=b"<another@x>")
    user.deliver(other, "alice@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 2


@pytest.mark.usefixtures("user_log_on_stderr")
@pytest.mark.parametrize("date", [
    b"Date: garbage",
    b"Date: Tue, 24 Nov 99999 10:00:00 +0000",
    b"Date: Tue, 24 Nov 99999999999999999999999 10:00:00 +0000",
    b"Date: Tue, 24 Nov 2026 99:99:99 +9999",
    b"Date:",
    b"Date: \xff\xfe",
], ids=["garbage", "year-99999", "year-overflow", "out-of-range-time", "empty",
        "invalid-utf8"])
def test_invalid_date_delivers_and_dedupes_by_message_id(user, date):
    msg = with_headers(b"From: s@example.org", b"Message-ID: <bad-date@x>", date)
    assert_delivered_exactly(user, msg, user.deliver(msg, "alice@example.org"))
    again = user.deliver(msg, "alice@example.org", check=0)
    assert b"status=duplicate" in again.stderr
    assert len(maildir_files(user.maildir)) == 1
    other = msg.replace(b"<bad-date@x>", b"<bad-date-2@x>")
    user.deliver(other, "alice@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 2


@pytest.mark.parametrize("first, second, files", [
    ("<n\x00ul@x>", "<n\x00ul@x>", 1),
    ("<n\x00a@x>", "<n\x00b@x>", 2),
    ("<" + "k" * 100_000 + "@x>", "<" + "k" * 100_000 + "@x>", 1),
    ("<" + "k" * 100_000 + "a@x>", "<" + "k" * 100_000 + "b@x>", 2),
], ids=["nul-same", "nul-differs-after-nul", "100kb-same", "100kb-differs-at-end"])
def test_hostile_message_ids_still_deduplicate(user, first, second, files):
    user.deliver(message(message_id=first), "alice@example.org", check=0)
    done = user.deliver(message(message_id=second), "alice@example.org", check=0)
    assert_no_traceback(done)
    assert len(maildir_files(user.maildir)) == files


def test_invalid_utf8_message_id_deduplicates(user):
    msg = with_headers(b"Message-ID: <\xff\xfe@x>", DATE.rstrip(b"\n"))
    user.deliver(msg, "alice@example.org", check=0)
    user.deliver(msg, "alice@example.org", check=0)
    user.deliver(msg.replace(b"\xfe", b"\xfd"), "alice@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 2


@pytest.mark.parametrize("sender, return_path", [
    ("", b"<>"),
    ("<>", b"<>"),
    (" <bounce@example.org> ", b"<bounce@example.org>"),
], ids=["null-sender", "null-sender-brackets", "spaces-and-brackets"])
def test_sender_forms_give_one_return_path(user, sender, return_path):
    done = user.deliver(message(), "alice@example.org", sender=sender, check=0)
    [path] = maildir_files(user.maildir)
    assert path.read_bytes() == (b"Return-Path: " + return_path + b"\n"
                                 b"Delivered-To: alice@example.org\n" + message())
    assert_no_traceback(done)


@pytest.mark.parametrize("sender", [
    "evil@example.org\nX-Injected: yes",
    "evil@example.org\r\nX-Injected: yes",
    "evil@example.org>\n\nX-Injected: yes",
], ids=["lf", "crlf", "close-bracket-and-blank-line"])
def test_sender_cannot_inject_header_lines(user, sender):
    done = user.deliver(message(), "alice@example.org", sender=sender)
    assert_no_traceback(done)
    assert done.returncode in (0, 64, 65), done.stderr.decode(errors="replace")
    if done.returncode != 0:
        assert maildir_files(user.maildir) == []
        return
    [path] = maildir_files(user.maildir)
    content = path.read_bytes()
    assert content.endswith(b"\nDelivered-To: alice@example.org\n" + message())
    assert content.count(b"\n") == message().count(b"\n") + 2  # two prefix lines
    assert b"\nX-Injected" not in content


# --- recipients, managed mode ------------------------------------------------

def ignorable(relative):
    """Lock stripes and SQLite files may appear; nothing else may."""
    return (relative == os.path.join("state", "locks")
            or relative.startswith(os.path.join("state", "locks") + os.sep)
            or ".sqlite" in os.path.basename(relative))


HOSTILE_RECIPIENTS = {
    "dotdot-prefix": "../alice@example.org",
    "absolute-path": "/etc/passwd",
    "path-after-domain": "alice@example.org/../../x",
    "ten-kb-local-part": "a" * 10_240 + "@example.org",
    "space-in-local-part": "ali ce@example.org",
    "trailing-newline": "alice@example.org\n",
    "cyrillic-lookalike": "\u0430lice@example.org",
    "empty": "",
    "no-local-part": "@example.org",
    "no-domain": "alice@",
    "backslash-zero": "alice\\0@example.org",
    "tab-inside": "alice\t@example.org",
    "dotdot-domain": "alice@../../example.org",
    "invalid-utf8": "alice\udcff@example.org",  # argv byte 0xff
}


@pytest.mark.parametrize("recipient", HOSTILE_RECIPIENTS.values(),
                         ids=HOSTILE_RECIPIENTS.keys())
def test_hostile_recipient_is_refused_with_67_and_touches_nothing(site, recipient):
    alice = site.create("alice@example.org")
    before = tree(site.root, skip=[ignorable])
    done = site.deliver(message(), recipient)
    assert_no_traceback(done)
    assert done.returncode == 67, done.stderr.decode(errors="replace")
    last = done.stderr.decode(errors="replace").strip().splitlines()[0]
    assert last.startswith("5.1."), last
    assert tree(site.root, skip=[ignorable]) == before
    for sub in ("new", "cur", "tmp"):
        assert list((alice / sub).iterdir()) == []


@pytest.mark.parametrize("address", [
    "../x@example.org", "a/b@example.org", ".hidden@example.org", "x@../example.org",
    "a/../../b@example.org", "%2e%2e@example.org", "x@example.org/..",
    "\u0430lice@example.org",
], ids=["dotdot-local", "slash-local", "dot-file-local", "dotdot-domain",
        "dotdot-inside-local", "percent-encoded-dotdot", "dotdot-after-domain",
        "cyrillic-local"])
def test_mailbox_create_refuses_or_stays_inside_the_database(site, address):
    site.create("alice@example.org")  # the directory and default database exist
    default = os.path.realpath(site.state / "databases" / "default")
    before = tree(site.root, skip=[ignorable])
    done = site.run("mailbox", "create", address, "--json")
    assert_no_traceback(done)
    after = tree(site.root, skip=[ignorable])
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        assert len(lines) == 1, lines
        assert after == before
        return
    [row] = json.loads(done.stdout)
    assert row["database"] == "default"
    assert ".." not in Path(row["maildir"]).parts
    path = site.state / "databases" / row["database"] / row["maildir"]
    assert os.path.realpath(path).startswith(default + os.sep)
    assert (path / "new").is_dir() and not (path / "new").is_symlink()
    for created in after - before:
        assert os.path.realpath(site.root / created).startswith(default + os.sep), created


def test_managed_extension_with_path_goes_to_the_inbox(site):
    alice = site.create("alice@example.org")
    before = tree(site.root, skip=[ignorable])
    for i, extension in enumerate(["../../x", "a/b", "..", ".cur", "/etc"]):
        site.deliver(message(message_id=f"<ext{i}@x>"), f"alice+{extension}@example.org",
                     check=0)
    new = {os.path.join("state", os.path.relpath(p, site.state))
           for p in maildir_files(alice)}
    assert len(new) == 5
    assert tree(site.root, skip=[ignorable]) - before == new


# --- extensions, per-user mode ------------------------------------------------

def plant_maildir(path):
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("recipient, extension", [
    ("alice+../../outside@example.org", None),
    ("alice+../outside@example.org", None),
    ("alice+a/b@example.org", None),
    ("alice+/etc@example.org", None),
    ("alice+..@example.org", None),
    ("alice+.@example.org", None),
    ("alice+.evil@example.org", None),
    ("alice+evil@example.org", None),
    ("alice+x@example.org", "../../outside"),
    ("alice+x@example.org", "/abs/outside"),
    ("alice+x@example.org", "evil"),
], ids=["dotdot-twice", "dotdot-once", "slash-inside", "leading-slash", "dotdot-alone",
        "single-dot", "dot-name", "symlinked-folder", "env-dotdot", "env-absolute",
        "env-symlinked-folder"])
def test_extension_never_selects_a_folder_outside_the_maildir(user, tmp_path, recipient,
                                                              extension):
    plant_maildir(user.maildir)
    outside = plant_maildir(tmp_path / "outside")
    plant_maildir(user.home / "outside")
    (user.maildir / ".evil").symlink_to(outside)
    env = {"EXTENSION": extension} if extension is not None else None
    done = user.deliver(message(), recipient, env=env)
    assert_no_traceback(done)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert len(maildir_files(user.maildir)) == 1  # INBOX, the only safe choice
    for sub in ("tmp", "new", "cur"):
        assert list((outside / sub).iterdir()) == []
        assert list((user.home / "outside" / sub).iterdir()) == []
    assert not (user.maildir / ".." / "outside" / "maildirfolder").exists()
    assert {p for p in tree(user.maildir) if not p.startswith("new/")} == {
        "tmp", "new", "cur", ".evil"}


# --- property: arbitrary bytes ---------------------------------------------------

FRAGMENTS = [b"\r", b"\n", b"\x00", b"From ", b":", b"\r\n", b"\n\n", b" ", b"\t",
             b"\xff", b"\xc3\xa9", b"Subject: ", b"Message-ID: <p@x>", b"Message-ID:",
             b"Date: "]
chunks = st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=200))


class Trickle:
    """A stream that returns at most `step` bytes per read, as a socket may."""

    def __init__(self, data, step):
        self.data, self.step, self.pos = data, step, 0

    def read(self, size=-1):
        n = self.step if size is None or size < 0 else min(size, self.step)
        piece = self.data[self.pos:self.pos + n]
        self.pos += len(piece)
        return piece


# derandomize: the same examples on every run, so a failure is reproducible
# and the test never turns red by luck; database=None writes no .hypothesis/.
@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(parts=st.lists(chunks, max_size=60), step=st.integers(min_value=1, max_value=5000))
@example(parts=[b"Return-Path:"], step=5)
@example(parts=[b"Delivered-To: alice@example.org\n", b"Subject: x\n\nb"], step=3)
def test_arbitrary_bytes_are_delivered_byte_exact(parts, step):
    """Stored as converted, after lda's prefix (less a Return-Path or
    Delivered-To the input already starts with), and the same however the
    input is chunked: it once depended on whether the first read held all
    of a leading "Return-Path:"."""
    data = b"".join(parts)[:4096]
    stored = deliver_bytes(data, step)
    assert stored == deliver_bytes(data, len(data) + 1)
    body = converted(data)
    assert stored.endswith(body)
    prefix = stored[:len(stored) - len(body)]
    assert prefix == PREFIX or (prefix in PREFIX.splitlines(keepends=True) + [b""]
                                and body.lower().startswith((b"return-path", b"delivered-to")))


def deliver_bytes(data, step):
    from lda.deliver.command import deliver

    with tempfile.TemporaryDirectory() as home:
        status = deliver(["-f", SENDER, "alice@example.org"], stdin=Trickle(data, step),
                         environ={"HOME": home})
        assert status == 0
        maildir = Path(home) / "Maildir"
        [path] = maildir_files(maildir)
        assert list((maildir / "tmp").iterdir()) == []
        assert outside_mailbox(home) == set()
        return path.read_bytes()


# -- property: any recipient string is refused or stays inside the store ----

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

RECIPIENT_PARTS = st.sampled_from(["../", "/", "\x00", ".", "..", "@", "+", "alice",
                                   "example.org", "\u0430", "%2e", " ", "\n", "A" * 300])


@settings(max_examples=300, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=400),
                 st.lists(RECIPIENT_PARTS, max_size=12).map("".join)))
def test_any_recipient_is_refused_or_resolved_inside_the_store(site, recipient):
    """Through the resolver every delivery uses: an LdaError (67 for a bad
    or unknown address), or local targets whose Maildir lies under their
    database root with no '..' in the stored path."""
    from lda.config import load_config
    from lda.deliver.resolve import make_resolver
    from lda.errors import LdaError

    if not hasattr(site, "_made"):
        site.create("alice@example.org")
        site._made = True
    config = load_config(str(site.config))
    try:
        plan = make_resolver(config, site.env).resolve(recipient)
    except LdaError as e:
        assert e.exit_code in (64, 65, 67, 78), (recipient, e)
        return
    for target in plan.targets:
        if target.local:
            assert ".." not in target.maildir_relative.split("/")
            root = os.path.realpath(target.maildir_root)
            assert os.path.realpath(target.maildir_path).startswith(root + os.sep)

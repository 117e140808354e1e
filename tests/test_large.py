"""Large messages stream through a fixed buffer: a 100 MB message is delivered
by the installed command in bounded memory, byte for byte; CRLF line ends are
converted across the read-chunk boundaries.  Neither the messages nor their
expected contents are ever held whole in memory by the test either."""

import hashlib
import time

import pytest

from conftest import LDA, maildir_files, python_peak_rss_kib
from lda.deliver.message import CHUNK  # lda reads stdin in pieces of this size

MIB = 1 << 20
PEAK_RSS_LIMIT_KIB = 80 * 1024
PREFIX = b"Return-Path: <sender@example.org>\nDelivered-To: alice@example.org\n"
ARGV = [LDA, "deliver", "-f", "sender@example.org", "alice@example.org"]


def lines(n, end):
    """Exactly n bytes of body lines ending in `end` (CRLF or LF); n >= len(end)."""
    width = 78 + len(end)
    count, rest = divmod(n, width)
    if 0 < rest < len(end):  # too short for a line of its own: lengthen one
        count, rest = count - 1, rest + width
    line = b"=" * 78 + end
    return line * count + (b"-" * (rest - len(end)) + end if rest else b"")


class Writer:
    """Writes input pieces to a file and hashes what lda must store for them."""

    def __init__(self, path):
        self.file = open(path, "wb")
        self.size = 0
        self.expected = hashlib.sha256(PREFIX)
        self.expected_size = len(PREFIX)

    def write(self, data, stored):
        self.file.write(data)
        self.size += len(data)
        self.expected.update(stored)
        self.expected_size += len(stored)

    def close(self):
        self.file.close()


def write_lf_message(path, size):
    """A message of `size` bytes with LF line ends, written 1 MiB at a time."""
    out = Writer(path)
    header = (b"From: Sender <sender@example.org>\nTo: alice@example.org\n"
              b"Message-ID: <large@example.org>\nDate: Tue, 24 Nov 2026 10:00:00 +0000\n"
              b"Subject: large\n\n")
    out.write(header, header)
    block = lines(MIB, b"\n")
    number = 0
    while out.size < size:
        piece = b"%010d" % number + block[10:min(MIB, size - out.size)]
        piece = piece[:-1] + b"\n" if out.size + len(piece) == size else piece
        out.write(piece, piece)
        number += 1
    out.close()
    return out


def write_crlf_message(path, size):
    """A CRLF message (no Message-ID, so lda digests the whole body) arranged so
    that at every multiple of CHUNK lda's read ends between a CR and its LF,
    between "\\r\\r" and "\\n", or on a bare CR."""
    out = Writer(path)
    header = (b"From: Sender <sender@example.org>\r\nTo: alice@example.org\r\n"
              b"Subject: crlf \rbare cr\r\n\r\nbody with a\rbare CR\r\n")
    out.write(header, header.replace(b"\r\n", b"\n"))
    boundary = CHUNK
    while boundary < size:
        gap = boundary - out.size  # bytes left before the byte at `boundary`
        kind = (boundary // CHUNK) % 3
        if kind == 0:  # CR | LF
            piece = lines(gap - 1, b"\r\n") + b"\r\n"
        elif kind == 1:  # CR CR | LF: only the second CR belongs to the line end
            piece = lines(gap - 2, b"\r\n") + b"\r\r\n"
        else:  # a bare CR | another byte
            piece = lines(gap - 1, b"\r\n") + b"\rafter a bare CR\r\n"
        out.write(piece, piece.replace(b"\r\n", b"\n"))
        boundary += CHUNK
    tail = lines(size - out.size, b"\r\n")
    out.write(tail, tail.replace(b"\r\n", b"\n"))
    out.close()
    return out


def stored_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def deliver_measured(user, path):
    start = time.monotonic()
    rc, peak_kib = python_peak_rss_kib(ARGV, path, user.env)
    return rc, peak_kib, time.monotonic() - start


@pytest.mark.slow
def test_100_mb_message_is_delivered_whole_in_bounded_memory(user, tmp_path):
    source = tmp_path / "large.eml"
    written = write_lf_message(source, 100 * MIB)
    assert source.stat().st_size == written.size == 100 * MIB
    rc, peak_kib, seconds = deliver_measured(user, source)
    print(f"100 MiB LF message: peak RSS {peak_kib} KiB, {seconds:.2f} s")
    assert rc == 0
    assert peak_kib < PEAK_RSS_LIMIT_KIB, f"peak RSS {peak_kib} KiB"
    [stored] = maildir_files(user.maildir)
    assert stored.stat().st_size == written.size + len(PREFIX) == written.expected_size
    assert f",S={stored.stat().st_size},W=" in stored.name
    assert stored_digest(stored) == written.expected.hexdigest()
    assert list((user.maildir / "tmp").iterdir()) == []


def test_10_mb_crlf_message_is_converted_across_chunk_boundaries(user, tmp_path):
    source = tmp_path / "crlf.eml"
    written = write_crlf_message(source, 10 * MIB)
    assert written.size == 10 * MIB
    rc, peak_kib, seconds = deliver_measured(user, source)
    print(f"10 MiB CRLF message: peak RSS {peak_kib} KiB, {seconds:.2f} s")
    assert rc == 0
    assert peak_kib < PEAK_RSS_LIMIT_KIB, f"peak RSS {peak_kib} KiB"
    [stored] = maildir_files(user.maildir)
    assert stored.stat().st_size == written.expected_size
    assert stored_digest(stored) == written.expected.hexdigest()
    # W= (Dovecot's RFC822.SIZE) counted right across every chunk boundary.
    data = stored.read_bytes()
    vsize = len(data) + data.count(b"\n") - data.count(b"\r\n")
    assert stored.name.endswith(f",S={len(data)},W={vsize}")
    # Without a Message-ID the key is a digest of the streamed body: a resend
    # of the same 10 MB is recognised.
    rc, _, _ = deliver_measured(user, source)
    assert rc == 0
    assert maildir_files(user.maildir) == [stored]

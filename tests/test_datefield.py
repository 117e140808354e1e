"""The Date: parser agrees with the standard library's on valid dates and
answers "" (not an exception) on everything else."""

from datetime import timezone
from email.utils import parsedate_to_datetime

import pytest

from lda.datefield import parse_date

AGREES = [
    "Tue, 24 Nov 2026 10:00:00 +0000",
    "24 Nov 2026 11:00 +0100",
    "Tue, 1 Jan 30 10:00:00 -0230",
    "Mon, 2 Feb 99 23:59:59 EST",
    "Thu, 13 Feb 1969 23:32:54 -0330",
    "Fri, 21 Nov 1997 09:55:06 -0600 (CST)",
    "Nov 24 2026 10:00:00 GMT",
    "Sat, 29 Feb 2020 00:00:00 +1400",
    "Tue,  24   Nov  2026  10:00:00 PDT",
]


@pytest.mark.parametrize("value", AGREES, ids=range(len(AGREES)))
def test_agrees_with_the_standard_library(value):
    expected = parsedate_to_datetime(value).astimezone(timezone.utc)
    assert parse_date(value) == expected.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("value", [
    "", "garbage", "Tue, 31 Feb 2026 10:00:00 +0000", "Tue, 24 Nov 99999 10:00:00 +0000",
    "24 Foo 2026 10:00:00 +0000", "24 Nov 2026 25:00:00 +0000", "24 Nov 2026",
    "24 Nov 2026 1o:00:00", "\x00\x00 Nov 2026 10:00:00", "24 Nov 2026 10:00:00:00 +0000",
], ids=["empty", "garbage", "feb-31", "year-99999", "bad-month", "hour-25", "no-time",
        "letter-o", "nul", "too-many-colons"])
def test_invalid_dates_give_empty(value):
    assert parse_date(value) == ""


def test_missing_zone_is_read_as_utc():
    assert parse_date("24 Nov 2026 10:00") == "2026-11-24T10:00:00Z"
    assert parse_date("24 Nov 2026 10:00:00") == "2026-11-24T10:00:00Z"

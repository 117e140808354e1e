"""The date and currentdate tests (RFC 5260), with :index and :last.

A date-part of a header field's date-time (`date`) or of the delivery's
clock (`currentdate`, the state's now()) is matched like any other value.
The date-time is the text after the field's last ";" (so Received works),
read by lda/deliver/datefield.py; a field that is missing or holds no valid
date-time makes the test false (RFC 5260 section 5), and is 0 values to
:count (RFC 5231), as in Pigeonhole.  Without :zone or
:originalzone the date-time is shifted to the delivery's local zone
(section 4.1; time.localtime's offset at that instant).  Without :index,
the first occurrence of the field is used, as Pigeonhole does.

An unknown date-part makes the test false and a :zone that is not
"+hhmm"/"-hhmm" means the local zone, written out or from a variable, as
in Pigeonhole (which warns at compile time); lda logs a line each time.
"""

import time

from ..spec import INDEX, MATCH, MATCH_DEFAULTS, STRING, STRINGS, Spec, tag

CAPABILITIES = ("date",)
DATE_PARTS = ("year", "month", "day", "date", "julian", "hour", "minute", "second", "time",
              "iso8601", "std11", "zone", "weekday")
ZONE_TAG = {":zone": tag("zone", kind=STRING)}
MJD_EPOCH = 40587  # 1970-01-01 as a Modified Julian Day (days since 1858-11-17)
MAX_FIELD = 1000  # a date-time is ~40 characters; longer values are cut first
WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

COMMANDS = {}
TESTS = {
    "date": Spec("date", {**MATCH, **ZONE_TAG, **INDEX,
                          ":originalzone": tag("originalzone")},
                 [("header", STRING), ("part", STRING), ("keys", STRINGS)], MATCH_DEFAULTS),
    "currentdate": Spec("date", {**MATCH, **ZONE_TAG}, [("part", STRING), ("keys", STRINGS)],
                        MATCH_DEFAULTS),
}
TAGS = {}


# --- compile side --------------------------------------------------------------

def check_date(validator, node, built):
    # A header name no field can have is no error either (Pigeonhole
    # warns): execution.fields finds no value, as for header.
    check_currentdate(validator, node, built)
    if built.get("zone") is not None and built.get("originalzone"):
        validator.error(node.line, node.col, "date: :zone and :originalzone exclude each other")


def check_currentdate(validator, node, built):
    """An unknown date-part or a :zone that is no "+hhmm" is no compile
    error, even written out: Pigeonhole only warns, so a script its
    ManageSieve took would otherwise stop filtering.  It is judged when the
    test runs (match_part), with a line in the log."""
    validator.check_comparator(node, built)
    part = built["part"]
    if validator.constant(part):
        built["part"] = part.lower()


def zone_minutes(zone):
    """Minutes east of UTC for "+hhmm" / "-hhmm", else None."""
    if len(zone) != 5 or zone[0] not in "+-" or not (zone[1:].isascii() and zone[1:].isdigit()):
        return None
    hours, minutes = int(zone[1:3]), int(zone[3:])
    if hours > 23 or minutes > 59:
        return None
    return (hours * 60 + minutes) * (-1 if zone[0] == "-" else 1)


# --- run side ------------------------------------------------------------------

def test_date(execution, node):
    from ...deliver.datefield import date_time
    from ..fields import text

    values = execution.pick_index(execution.fields(execution.string(node["header"])), node)
    found = date_time(text(values[0][:MAX_FIELD]).rpartition(";")[2]) if values else None
    if found is None:  # no value: false, but 0 for :count
        return execution.matches(node, [], execution.strings(node["keys"]))
    seconds, original = found
    return match_part(execution, node, seconds, original if node.get("originalzone") else None)


def test_currentdate(execution, node):
    return match_part(execution, node, int(execution.state.now()), None)


def match_part(execution, node, seconds, original):
    """Match the date-part of the instant `seconds`, shown in :zone, else
    in the `original` zone (:originalzone), else in the local zone."""
    part = execution.string(node["part"]).lower()
    if part not in DATE_PARTS:
        execution.log.append(f'{node["test"]}: unknown date-part "{part}": false')
        return False
    offset = original
    if node.get("zone") is not None:
        zone = execution.string(node["zone"])
        offset = zone_minutes(zone)
        if offset is None:
            execution.log.append(f'{node["test"]}: :zone "{zone}" is not like "+hhmm": '
                                 "the local zone is used")
    if offset is None:
        offset = local_offset(seconds)
    value = date_part(part, seconds, offset)
    return execution.matches(node, [value], execution.strings(node["keys"]))


def local_offset(seconds):
    """The delivery's local zone at that instant, in minutes east of UTC."""
    try:
        return time.localtime(seconds).tm_gmtoff // 60
    except (OverflowError, OSError, ValueError):
        return time.localtime().tm_gmtoff // 60


def date_part(part, seconds, offset):
    """The text of one date-part (RFC 5260 section 4.2) of the instant
    `seconds` seen in the zone `offset` minutes east of UTC."""
    from ...deliver.datefield import civil_from_days

    days, clock = divmod(seconds + offset * 60, 86400)
    year, month, day = civil_from_days(days)
    hour, minute, second = clock // 3600, clock // 60 % 60, clock % 60
    sign = "-" if offset < 0 else "+"
    zone = f"{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
    date, clock_text = f"{year:04d}-{month:02d}-{day:02d}", f"{hour:02d}:{minute:02d}:{second:02d}"
    weekday = (days + 4) % 7  # 1970-01-01 was a Thursday; 0 is Sunday
    if part == "iso8601":
        # RFC 3339 section 5.6, as Pigeonhole writes it: "Z" for UTC.
        return f"{date}T{clock_text}" + ("Z" if offset == 0 else f"{zone[:3]}:{zone[3:]}")
    if part == "std11":
        return (f"{WEEKDAYS[weekday]}, {day:02d} {MONTHS[month - 1]} {year:04d} "
                f"{clock_text} {zone}")
    return {"year": f"{year:04d}", "month": f"{month:02d}", "day": f"{day:02d}", "date": date,
            "julian": str(days + MJD_EPOCH), "hour": f"{hour:02d}", "minute": f"{minute:02d}",
            "second": f"{second:02d}", "time": clock_text, "zone": zone,
            "weekday": str(weekday)}[part]

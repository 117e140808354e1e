"""The Date: field (RFC 5322 section 3.3, with the obsolete forms of 4.3)
normalised to UTC, without email._parseaddr (it drags in calendar, locale
and re on every delivery) and without datetime: the calendar arithmetic
below is a few lines (bench/profiles/startup-figures.txt).

Two readers share it.  The DeliveredTo key (parse_date) reads a value as
lda always has, so the key of a message resent after an upgrade stays the
same.  The Sieve date extension (lda/sieve/extensions/date.py, date_time)
reads it as Pigeonhole does: comments and folding white space skipped
(RFC 5322 3.3 allows CFWS between the parts), minutes and seconds of two
digits."""

MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
# RFC 5322 4.3: obsolete zone names; military letters mean "-0000" (unknown).
ZONES = {"ut": 0, "gmt": 0, "utc": 0, "z": 0, "edt": -4, "est": -5, "cdt": -5, "cst": -6,
         "mdt": -6, "mst": -7, "pdt": -7, "pst": -8}


def _zone_minutes(token):
    if token[:1] in "+-" and token[1:].isdigit() and len(token) == 5:
        minutes = int(token[1:3]) * 60 + int(token[3:5])
        return -minutes if token[0] == "-" else minutes
    return ZONES.get(token.lower(), 0) * 60


def _year(token):
    year = int(token)
    if len(token) == 2:  # RFC 5322 4.3: 00-49 is 20xx, 50-99 is 19xx
        return year + (2000 if year < 50 else 1900)
    return year + 1900 if len(token) == 3 else year


def _fields(text):
    """[day, month, year, hh:mm[:ss], zone] from the tokens of a Date value."""
    tokens = text.replace(",", " ").split()
    if tokens and tokens[0][:3].lower() in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
        tokens = tokens[1:]
    if len(tokens) >= 2 and tokens[0][:3].lower() in MONTHS and tokens[1].isdigit():
        tokens[0], tokens[1] = tokens[1], tokens[0]  # "Nov 24 2026", seen in the wild
    if len(tokens) < 4:
        return None
    return tokens[:4] + [tokens[4] if len(tokens) > 4 else "-0000"]


def parse_date(value):
    """"2026-11-24T10:00:00Z" for a valid Date value, else ""."""
    found = _instant(_fields(value))
    if found is None:
        return ""
    seconds = found[0]
    days, seconds = divmod(seconds, 86400)
    year, month, day = civil_from_days(days)
    if not 1 <= year <= 9999:
        return ""
    return (f"{year:04d}-{month:02d}-{day:02d}T"
            f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z")


def date_time(value):
    """(seconds since the epoch, the zone's offset in minutes east of UTC)
    for a valid Date value as the Sieve date test (RFC 5260) reads it, else
    None.  The test needs the writer's zone as well as the instant."""
    fields = _fields(_without_cfws(value))
    if fields is None or not all(len(p) == 2 for p in fields[3].split(":")[1:]):
        return None
    return _instant(fields)


def _without_cfws(value):
    """value with each comment a space and no white space around ":"."""
    kept, depth, i = [], 0, 0
    while i < len(value):
        c = value[i]
        if depth and c == "\\":
            i += 2
            continue
        if c == "(":
            depth += 1
        elif depth and c == ")":
            depth -= 1
            kept.append(" ")
        elif not depth:
            kept.append(c)
        i += 1
    if depth:  # an unclosed comment: no date
        return ""
    return ":".join(part.strip() for part in "".join(kept).split(":"))


def _instant(fields):
    """(seconds since the epoch, zone offset in minutes) of _fields(), or None."""
    if fields is None:
        return None
    day, month, year, clock, zone = fields
    clock_parts = clock.split(":")
    month_number = MONTHS.get(month[:3].lower())
    numbers = [day, year, *clock_parts]
    if month_number is None or not all(p.isdigit() for p in numbers) \
            or len(clock_parts) not in (2, 3):
        return None
    # str.isdigit() also says yes to digits that int() refuses (superscripts,
    # "\u00b2"): such a value is no date, not an error that fails the delivery.
    try:
        year, day = _year(year), int(day)
        hour, minute = int(clock_parts[0]), int(clock_parts[1])
        second = min(int(clock_parts[2]) if len(clock_parts) == 3 else 0, 59)  # leap second
        offset = _zone_minutes(zone)
    except ValueError:
        return None
    if not (1 <= year <= 9999 and 1 <= day <= _days_in_month(year, month_number)
            and hour < 24 and minute < 60 and abs(offset) < 24 * 60):
        return None
    minutes = days_from_civil(year, month_number, day) * 1440 + hour * 60 + minute - offset
    return minutes * 60 + second, offset


def _days_in_month(year, month):
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


# Days since 1970-01-01 and back, proleptic Gregorian (H. Hinnant's algorithms,
# "chrono-Compatible Low-Level Date Algorithms").
def days_from_civil(year, month, day):
    year -= month <= 2
    era, year_of_era = divmod(year, 400)
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def civil_from_days(days):
    era, day_of_era = divmod(days + 719468, 146097)
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524
                   - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + (3 if shifted_month < 10 else -9)
    return era * 400 + year_of_era + (month <= 2), month, day

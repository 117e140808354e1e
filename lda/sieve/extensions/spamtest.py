"""spamtest, spamtestplus and virustest (RFC 5235).

The scanner's verdict is read from a header field that the site names in
lda.toml, with the settings of Pigeonhole (sieve_spamtest_status_type,
_status_header, _max_header, _max_value, _text_values; the same for
virustest), which lda/config.py checks at load.  A script sees:

  spamtest             "0" not tested, "1" (surely not spam) to "10" (spam)
  spamtest :percent    "0" to "100" (spamtestplus; "0" also when not tested)
  virustest            "0" not tested, "1" (no virus) to "5" (infected)

as Pigeonhole computes them from the ratio r = value / maximum, held
between 0 and 1: 1 + floor(9 r) (virustest 1 + floor(4 r)), :percent
floor(100 r); a text value N is the ratio N / 10 (virustest N / 5), so
it reads as N, but 0 as 1.  No
header, a value that does not match the pattern or does not parse, or a
test that is not configured: "0".

The header pattern is the admin's (trusted, from lda.toml) and runs with
Python's re on at most MAX_STATUS_LENGTH characters of the field; POSIX
classes ([[:digit:]], as Pigeonhole's documentation writes them) are
translated.  A pattern that does not compile gives "0" and a log line.
"""

from ..spec import MATCH, MATCH_DEFAULTS, STRING, Spec, tag

CAPABILITIES = ("spamtest", "spamtestplus", "virustest")
IMPLIES = {"spamtestplus": ("spamtest",)}  # RFC 5235 section 3.2
TOP = {"spamtest": 10, "virustest": 5}
MAX_STATUS_LENGTH = 1024
POSIX_CLASSES = {"[:alnum:]": "a-zA-Z0-9", "[:alpha:]": "a-zA-Z", "[:digit:]": "0-9",
                 "[:xdigit:]": "0-9A-Fa-f", "[:upper:]": "A-Z", "[:lower:]": "a-z",
                 "[:space:]": r" \t\n\r\f\v", "[:blank:]": r" \t"}

COMMANDS = {}
TESTS = {
    "spamtest": Spec("spamtest", {**MATCH, ":percent": tag("percent", extension="spamtestplus")},
                     [("value", STRING)], MATCH_DEFAULTS),
    "virustest": Spec("virustest", MATCH, [("value", STRING)], MATCH_DEFAULTS),
}
TAGS = {}


def check_spamtest(validator, node, built):
    validator.check_comparator(node, built)


check_virustest = check_spamtest


def test_spamtest(execution, node):
    value = verdict(execution, "spamtest", node.get("percent", False))
    return execution.matches(node, [value], [execution.string(node["value"])])


def test_virustest(execution, node):
    value = verdict(execution, "virustest", False)
    return execution.matches(node, [value], [execution.string(node["value"])])


def verdict(execution, kind, percent):
    """The test's value as a string (the module docstring says how)."""
    options = execution.envelope.options
    setting = f"sieve_{kind}_"
    status = field_value(execution, options.get(setting + "status_header", ""))
    if status is None:
        return "0"
    if options.get(setting + "status_type", "score") == "text":
        found, highest = options.get(setting + "text_values", {}).get(status), TOP[kind]
        if found is None:
            return "0"
    else:
        found = measure(status, options.get(setting + "status_type", "score"))
        highest = maximum(execution, options, setting)
        if found is None or not highest:
            return "0"
        found = min(highest, max(0, found))
    # Scaled before the division, as Pigeonhole: 0.7 of 5 is 14 %, not 13.
    if percent:
        return str(int(100 * found / highest))
    return str(1 + int((TOP[kind] - 1) * found / highest))


def measure(status, status_type):
    """A score as a number; a strlen status ("*****") as its length; None
    when it is neither (a strlen status must repeat one character)."""
    if status_type == "strlen":
        return len(status) if len(set(status)) <= 1 else None
    return number(status)


def maximum(execution, options, setting):
    """max_value, or the number max_header finds in the message (0: none)."""
    header = options.get(setting + "max_header", "")
    if not header:
        return options.get(setting + "max_value", 0)
    found = number(field_value(execution, header) or "")
    return found if found and found > 0 else 0


def number(text):
    """A decimal number such as "-3.2", else None (no exponents, no "inf")."""
    digits = text.lstrip("+-").replace(".", "", 1)
    if not (digits.isascii() and digits.isdigit()) or text[1:].count("-") + text[1:].count("+"):
        return None
    return float(text)


def field_value(execution, setting):
    """The first field that setting ("NAME" or "NAME: PATTERN") names: its
    value, or what the pattern's first group captures; None when absent or
    not matching."""
    name, colon, pattern = setting.partition(":")
    name, pattern = name.strip(), pattern.lstrip()
    if not name:
        return None
    from ..fields import text

    raws = execution.fields(name)
    if not raws:
        return None
    value = text(raws[0][:MAX_STATUS_LENGTH]).replace("\r", "").replace("\n", "").strip()
    if not colon or not pattern:
        return value
    import re

    for posix, characters in POSIX_CLASSES.items():
        pattern = pattern.replace(posix, characters)
    try:
        found = re.search(pattern, value)
    except re.error as e:
        execution.log.append(f"{name}: the configured pattern does not compile ({e}): "
                             "not tested")
        return None
    captured = None if found is None else found.group(1 if found.re.groups else 0)
    return None if captured is None else captured.strip()

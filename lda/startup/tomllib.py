"""lda.toml's plain lines as tomllib reads them, without tomllib.

Importing tomllib costs more than the rest of lda.toml's handling (see
bench/profiles/startup-figures.txt), and lda.toml is nearly always
`key = value` lines.  flat_toml() reads those: a bare key, then a string
without escapes, a decimal integer, a boolean or a one-line array of such
strings (sendmail), each line perhaps with a comment.  Left out, for the
real tomllib to read and judge: tables, dotted and quoted keys, escapes,
multi-line strings and arrays, floats, dates, inline tables, a repeated key,
control characters and anything that is not UTF-8.
"""


def flat_toml(data):
    """What tomllib.loads would read from data (lda.toml's bytes) when it
    is plain lines, or None for tomllib to read (and judge) it."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    values = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if any(c < " " and c != "\t" or c == "\x7f" for c in line):
            return None  # control characters: tomllib says what is wrong
        body = line.strip(" \t")
        if not body or body[0] == "#":
            continue
        key, equals, rest = body.partition("=")
        key, rest = key.rstrip(" \t"), rest.lstrip(" \t")
        if not equals or not key or not set(key) <= _BARE_KEY or key in values:
            return None
        value, rest = _flat_value(rest)
        rest = rest.lstrip(" \t")
        if value is None or rest and rest[0] != "#":
            return None
        values[key] = value
    return values


_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _flat_value(text):
    """(value, what follows it) for a string without escapes, a decimal
    integer, a boolean or an array of strings at the start of text; (None, "")
    for anything else."""
    if text[:1] == "[":
        return _flat_strings(text[1:])
    if text[:1] in ("'", '"'):
        end = text.find(text[0], 1)
        value = text[1:end]
        if end < 0 or text[0] == '"' and "\\" in value:
            return None, ""
        return value, text[end + 1:]
    size = len(text)
    for stop in (" ", "\t", "#"):
        found = text.find(stop)
        if 0 <= found < size:
            size = found
    word, rest = text[:size], text[size:]
    if word in ("true", "false"):
        return word == "true", rest
    digits = word[1:] if word[:1] == "-" else word
    if digits.isascii() and digits.isdigit() and (digits == "0" or digits[0] != "0"):
        return int(word), rest
    return None, ""


def _flat_strings(text):
    """(list, what follows the "]") for the rest of a one-line array of
    strings without escapes, a trailing comma allowed; (None, "") otherwise."""
    items, rest = [], text.lstrip(" \t")
    while rest[:1] != "]":
        item, rest = _flat_value(rest) if rest[:1] in ("'", '"') else (None, "")
        if item is None:
            return None, ""
        items.append(item)
        rest = rest.lstrip(" \t")
        if rest[:1] == ",":
            rest = rest[1:].lstrip(" \t")
        elif rest[:1] != "]":
            return None, ""
    return items, rest[1:]

"""The compiled Sieve cache's JSON, read without the json module.

`import json` brings in `re` (json.decoder), which a delivery with a cached
script would otherwise pay for; the delivery path imports neither (see
tests/test_deliver.py).  loads() reads what json.dumps(...,
ensure_ascii=False, separators=(",", ":")) writes for objects, arrays,
strings, integers, true, false and null; anything else raises ValueError,
and the caller recompiles the script.  Left out: floats, white space
between tokens, and the checks json makes on what it does not write.
dumps() is json.dumps itself, on the compile path where its import does
not matter, kept here so the format's writer and reader stand together.
"""

ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
           "t": "\t"}
DIGITS = frozenset("0123456789")


def dumps(value):
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads(text):
    try:
        value, end = _value(text, 0)
    except (IndexError, KeyError):
        raise ValueError("truncated or malformed cache") from None
    if end != len(text):
        raise ValueError("trailing data in cache")
    return value


def _value(s, i):
    c = s[i]
    if c == '"':
        return _string(s, i + 1)
    if c == "{":
        return _object(s, i + 1)
    if c == "[":
        return _array(s, i + 1)
    if c == "-" or c in DIGITS:
        j = i + 1
        while j < len(s) and s[j] in DIGITS:
            j += 1
        return int(s[i:j]), j
    for word, value in (("true", True), ("false", False), ("null", None)):
        if s.startswith(word, i):
            return value, i + len(word)
    raise ValueError(f"unexpected {c!r} at {i}")


def _object(s, i):
    result = {}
    if s[i] == "}":
        return result, i + 1
    while True:
        if s[i] != '"':
            raise ValueError(f"expected a key at {i}")
        key, i = _string(s, i + 1)
        if s[i] != ":":
            raise ValueError(f"expected ':' at {i}")
        result[key], i = _value(s, i + 1)
        if s[i] == "}":
            return result, i + 1
        if s[i] != ",":
            raise ValueError(f"expected ',' or '}}' at {i}")
        i += 1


def _array(s, i):
    result = []
    if s[i] == "]":
        return result, i + 1
    while True:
        item, i = _value(s, i)
        result.append(item)
        if s[i] == "]":
            return result, i + 1
        if s[i] != ",":
            raise ValueError(f"expected ',' or ']' at {i}")
        i += 1


def _string(s, i):
    parts = []
    while True:
        quote = s.find('"', i)
        if quote < 0:
            raise ValueError("unterminated string")
        backslash = s.find("\\", i, quote)
        if backslash < 0:
            parts.append(s[i:quote])
            return "".join(parts), quote + 1
        parts.append(s[i:backslash])
        escape = s[backslash + 1]
        if escape != "u":
            parts.append(ESCAPES[escape])
            i = backslash + 2
            continue
        code, i = int(s[backslash + 2:backslash + 6], 16), backslash + 6
        if 0xD800 <= code < 0xDC00 and s.startswith("\\u", i):
            low = int(s[i + 2:i + 6], 16)
            if 0xDC00 <= low < 0xE000:
                code, i = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00), i + 6
        parts.append(chr(code))

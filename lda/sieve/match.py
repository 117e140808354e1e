"""Comparators and match types (RFC 5228 sections 2.7.1 and 2.7.3).

i;ascii-casemap folds only A-Z (a non-ASCII letter is compared as it is),
i;octet compares exactly.  :matches wildcards are "*" (any run) and "?" (one
character); a backslash makes the next character literal.  The matcher is
iterative and O(len(value) * len(pattern)), so a hostile header cannot make
it backtrack exponentially, and it returns the text each wildcard matched
(RFC 5229 section 3.2: every "*" as short as possible, left to right).

Relational match types (RFC 5231) order values with the comparator: i;octet
by code point (the order of the UTF-8 bytes), i;ascii-casemap the same after
mapping a-z to A-Z (RFC 4790 section 9.2.1: upper case, so "_" sorts after
"A"), i;ascii-numeric by the leading digits' value, a value without one
being positive infinity (RFC 4790 section 9.1.1).  :regex is regex.py's.
"""

ASCII_FOLD = {c: c + 32 for c in range(65, 91)}
ASCII_UPPER = {c: c - 32 for c in range(97, 123)}
RELATIONS = {"gt": lambda o: o > 0, "ge": lambda o: o >= 0, "lt": lambda o: o < 0,
             "le": lambda o: o <= 0, "eq": lambda o: o == 0, "ne": lambda o: o != 0}
STAR, QMARK = object(), object()
_patterns = {}  # (pattern, fold) -> tokens


def fold(text):
    return text.translate(ASCII_FOLD)


def compare(match, comparator, value, key, relation=None):
    """True or False for :is, :contains and :value (`relation` "gt", ...);
    for :matches and :regex, the list of captures on success, else None.
    :regex raises regex.RegexError for a pattern it cannot run."""
    casemap = comparator == "i;ascii-casemap"
    if match == "matches":
        return glob(key, value, casemap)
    if match == "regex":
        from .regex import compile_regex

        return compile_regex(key, casemap).search(value)
    if match == "value":
        return RELATIONS[relation](order(comparator, value, key))
    if comparator == "i;ascii-numeric":
        return order(comparator, value, key) == 0
    if casemap:
        value, key = fold(value), fold(key)
    if match == "contains":
        return key in value
    return value == key


def order(comparator, value, key):
    """-1, 0 or 1 as `value` sorts before, with or after `key`."""
    if comparator == "i;ascii-numeric":
        value, key = numeric(value), numeric(key)
    elif comparator == "i;ascii-casemap":
        value, key = value.translate(ASCII_UPPER), key.translate(ASCII_UPPER)
    return (value > key) - (value < key)


def numeric(text):
    """RFC 4790 section 9.1.1: the value of the leading digits, or INFINITY
    (above every number, equal to itself) when there are none."""
    end = 0
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    if not end:
        return INFINITY
    digits = text[:end].lstrip("0")  # compared as (length, digits): no int() size limit
    return len(digits), digits


class _Infinity:
    """Greater than every number, equal only to itself."""

    def __gt__(self, other):
        return other is not self

    def __lt__(self, other):
        return False


INFINITY = _Infinity()


def compile_pattern(pattern, casemap):
    tokens = _patterns.get((pattern, casemap))
    if tokens is None:
        tokens, escaped = [], False
        for char in pattern:
            if escaped:
                tokens.append(fold(char) if casemap else char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == "*":
                tokens.append(STAR)
            elif char == "?":
                tokens.append(QMARK)
            else:
                tokens.append(fold(char) if casemap else char)
        if escaped:
            tokens.append("\\")
        if len(_patterns) > 1024:
            _patterns.clear()
        _patterns[(pattern, casemap)] = tokens
    return tokens


def glob(pattern, value, casemap):
    """The wildcard captures of `value` against `pattern`, or None.

    On a mismatch only the most recent "*" grows by one character; the
    earlier ones keep the shortest extent that let the rest match so far,
    which is both correct for matching and the leftmost-shortest captures."""
    tokens = compile_pattern(pattern, casemap)
    text = fold(value) if casemap else value
    n, m = len(text), len(tokens)
    spans = []
    p = i = 0
    star = None  # (token index, span index, start in text, current end)
    while i < n:
        token = tokens[p] if p < m else None
        if token is STAR:
            if p == m - 1:  # a final "*" takes the rest at once
                spans.append((i, n))
                return [value[a:b] for a, b in spans]
            star = (p, len(spans), i, i)
            spans.append((i, i))
            p += 1
        elif token is not None and (token is QMARK or token == text[i]):
            if token is QMARK:
                spans.append((i, i + 1))
            p += 1
            i += 1
        elif star is not None:
            star_p, index, start, end = star
            star = (star_p, index, start, end + 1)
            del spans[index:]
            spans.append((start, end + 1))
            p, i = star_p + 1, end + 1
        else:
            return None
    while p < m and tokens[p] is STAR:
        spans.append((n, n))
        p += 1
    if p != m:
        return None
    return [value[a:b] for a, b in spans]


def quote_wildcards(text):
    """RFC 5229 :quotewildcard: "*", "?" and "\\" lose their meaning."""
    return "".join("\\" + c if c in "*?\\" else c for c in text)

"""POSIX extended regular expressions for the Sieve :regex match type
(draft-ietf-sieve-regex-01), matched without backtracking unless the
pattern holds a back-reference.

A pattern is parsed into a tree, compiled into a small NFA program and run
by a Pike VM (Thompson's simulation carrying capture positions): every
thread advances one character at a time and two threads at the same
instruction merge, so a match costs at most len(value) x len(program)
steps whatever the pattern.  A pattern such as "(a+)+$" that makes a
backtracking engine (Python's re, PCRE) take exponential time is linear
here.  Caps: MAX_PATTERN_LENGTH and MAX_PROGRAM bound the program,
MAX_VALUE_LENGTH the text looked at (a longer value is matched on its first
MAX_VALUE_LENGTH characters), MAX_STEPS the work of one search.

A back-reference ("\\1", which glibc's ERE has, so Pigeonhole runs it) is
what no automaton can follow: such a pattern is searched depth first over
the same program (Regex._backtrack), each state entered once, and gives up
after MAX_BACKTRACK_STEPS.  Giving up is a runtime error of that test (the
message is kept), never a stalled delivery.

Syntax (POSIX ERE): "." (any character, newline too: no REG_NEWLINE, as in
Pigeonhole), bracket expressions with ranges and the classes [:alpha:]
[:digit:] [:alnum:] [:upper:] [:lower:] [:space:] [:blank:] [:punct:]
[:print:] [:graph:] [:cntrl:] [:xdigit:] (ASCII, the C locale), "^" and
"$" (the ends of the value), groups, "|", and "*" "+" "?" "{m}" "{m,}"
"{m,n}" ("{,n}" is "{0,n}", as in glibc).  A backslash makes the next
character literal, but for "\\1" to "\\9", a back-reference to a group closed
before it (glibc refuses any other, and so does lda); with i;ascii-casemap
it matches in either case.  [=x=] and [.x.] name one character (no locale's
collating elements).  Matching is by character (code point), not by byte.

Which match is reported: the overall match is POSIX's leftmost-longest.
The groups inside it follow the priority of a leftmost-first engine among
the ways to reach that longest match (earlier alternatives and greedier
repetitions first), which is not always POSIX's rule of the longest
leftmost subexpression: "(a|ab)(c|bcd)" on "abcd" gives ${1} "a" and ${2}
"bcd" here, where POSIX gives "ab" and "cd".  A repeated group takes no
extra empty turn at the end: "(a*)*" on "a" gives ${1} "a", as POSIX says
(Python's re and PCRE give "").
"""

MAX_PATTERN_LENGTH = 1024
MAX_PROGRAM = 4096  # instructions, after {m,n} is expanded
MAX_VALUE_LENGTH = 16384
MAX_STEPS = 1_000_000  # thread steps of one search (about a second)
MAX_BACKTRACK_STEPS = 250_000  # states of one search with back-references, each remembered
MAX_REPEAT = 32767  # glibc's RE_DUP_MAX; MAX_PROGRAM is the real bound
MAX_CACHED = 256

CLASSES = {
    "alpha": lambda c: c.isascii() and c.isalpha(),
    "digit": lambda c: "0" <= c <= "9",
    "alnum": lambda c: c.isascii() and c.isalnum(),
    "upper": lambda c: "A" <= c <= "Z",
    "lower": lambda c: "a" <= c <= "z",
    "space": lambda c: c in " \t\n\r\f\v",
    "blank": lambda c: c in " \t",
    "punct": lambda c: c.isascii() and c.isprintable() and not c.isalnum() and c != " ",
    "print": lambda c: " " <= c <= "~",
    "graph": lambda c: "!" <= c <= "~",
    "cntrl": lambda c: c < " " or c == "\x7f",
    "xdigit": lambda c: c in "0123456789abcdefABCDEF",
}
SPECIAL = frozenset("\\.[]()*+?{}|^$")
# match.fold's table: match imports this module, so it is not imported back.
ASCII_FOLD = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}

# Instructions: [opcode, a, b].
CHAR, ANY, SET, SPLIT, JMP, SAVE, BOL, EOL, MATCH, BACKREF = range(10)
_cache = {}


class RegexError(ValueError):
    """The pattern is not a regular expression lda can run."""


class RegexTooCostly(RegexError):
    """A search went past MAX_STEPS."""


def compile_regex(pattern, casemap):
    """The compiled Regex for `pattern` (cached); raises RegexError."""
    regex = _cache.get((pattern, casemap))
    if regex is None:
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise RegexError(f"regular expression longer than {MAX_PATTERN_LENGTH} "
                             "characters")
        parser = _Parser(pattern)
        tree = parser.parse()
        regex = Regex(_Compiler(casemap).program(tree), parser.groups, casemap)
        if len(_cache) >= MAX_CACHED:
            _cache.clear()
        _cache[(pattern, casemap)] = regex
    return regex


def quote_regex(text):
    """The set modifier :quoteregex: every ERE special character escaped."""
    return "".join("\\" + c if c in SPECIAL else c for c in text)


def ascii_swapcase(c):
    if "a" <= c <= "z" or "A" <= c <= "Z":
        return chr(ord(c) ^ 32)
    return c


class _Parser:
    """Recursive descent over the ERE grammar; nesting is bounded by the
    pattern length cap."""

    def __init__(self, pattern):
        self.p, self.i, self.groups = pattern, 0, 0
        self.closed = set()  # the groups a back-reference may name (glibc: completed ones)

    def error(self, message):
        raise RegexError(message)

    def peek(self):
        return self.p[self.i] if self.i < len(self.p) else None

    def parse(self):
        tree = self.alternation()
        if self.i < len(self.p):  # only an unmatched ")" stops alternation early
            self.error('unmatched ")"')
        return tree

    def alternation(self):
        branches = [self.concat()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.concat())
        return ("alt", branches) if len(branches) > 1 else branches[0]

    def concat(self):
        items = []
        while self.peek() is not None and self.peek() not in "|)":
            items.append(self.repeat())
        return ("cat", items)

    def repeat(self):
        atom = self.atom()
        while self.peek() is not None and self.peek() in "*+?{":
            c = self.p[self.i]
            self.i += 1
            if atom[0] in ("bol", "eol"):
                self.error(f'nothing to repeat before "{c}"')
            lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}.get(c) or self.bound()
            atom = ("repeat", atom, lo, hi)
        return atom

    def bound(self):
        end = self.p.find("}", self.i)
        text = self.p[self.i:end] if end >= 0 else ""
        lo, comma, hi = text.partition(",")
        if (lo and not (lo.isdigit() and lo.isascii())) or (not lo and not comma) \
                or (hi and not (hi.isdigit() and hi.isascii())) or len(text) > 12:
            self.error("invalid repetition {...}")
        self.i = end + 1
        lo = int(lo or "0")
        hi = lo if not comma else (int(hi) if hi else None)
        if lo > MAX_REPEAT or (hi is not None and (hi > MAX_REPEAT or hi < lo)):
            self.error(f"invalid repetition count {{{text}}} (at most {MAX_REPEAT}, "
                       "minimum first)")
        return lo, hi

    def atom(self):
        c = self.p[self.i]
        self.i += 1
        if c == "(":
            self.groups += 1
            index = self.groups
            inner = self.alternation()
            if self.peek() != ")":
                self.error('unmatched "("')
            self.i += 1
            self.closed.add(index)
            return ("group", index, inner)
        if c in "*+?{":
            self.error(f'nothing to repeat before "{c}"')
        if c == "[":
            return self.bracket()
        if c == ".":
            return ("any",)
        if c == "^":
            return ("bol",)
        if c == "$":
            return ("eol",)
        if c == "\\":
            if self.i >= len(self.p):
                self.error("trailing backslash")
            c = self.p[self.i]
            self.i += 1
            if "1" <= c <= "9":
                if int(c) not in self.closed:
                    self.error(f"back-reference \\{c} names no group closed before it")
                return ("backref", int(c))
        return ("char", c)

    def bracket(self):
        """[...]: (negated, characters, ranges, class names)."""
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        chars, ranges, classes = set(), [], []
        first = True
        while True:
            c = self.peek()
            if c is None:
                self.error('unmatched "["')
            if c == "]" and not first:
                self.i += 1
                return ("set", negated, frozenset(chars), tuple(ranges), tuple(classes))
            first = False
            if self.p.startswith("[:", self.i):
                end = self.p.find(":]", self.i + 2)
                name = self.p[self.i + 2:end] if end >= 0 else None
                if name not in CLASSES:
                    self.error(f'unknown character class "[:{name or ""}"')
                classes.append(name)
                self.i = end + 2
                continue
            if self.p[self.i:self.i + 2] in ("[=", "[."):
                closing = self.p[self.i + 1] + "]"
                if self.p[self.i + 3:self.i + 5] != closing:
                    self.error(f"only one character in {self.p[self.i:self.i + 2]} "
                               f"{closing}")
                c = self.p[self.i + 2]
                self.i += 4  # with the += 1 below: past the closing pair
            self.i += 1
            if self.peek() == "-" and self.i + 1 < len(self.p) and self.p[self.i + 1] != "]":
                high = self.p[self.i + 1]
                if high < c:
                    self.error(f'invalid range "{c}-{high}"')
                ranges.append((c, high))
                self.i += 2
            else:
                chars.add(c)


class _Compiler:
    def __init__(self, casemap):
        self.casemap = casemap
        self.code = []

    def program(self, tree):
        self.emit(SAVE, 0)
        self.node(tree)
        self.emit(SAVE, 1)
        self.emit(MATCH)
        return self.code

    def emit(self, op, a=None, b=None):
        if len(self.code) >= MAX_PROGRAM:
            raise RegexError(f"regular expression too large (over {MAX_PROGRAM} "
                             "instructions once repetitions are expanded)")
        self.code.append([op, a, b])
        return len(self.code) - 1

    def node(self, tree):
        kind = tree[0]
        if kind == "char":
            c = tree[1]
            self.emit(CHAR, fold(c) if self.casemap else c)
        elif kind == "any":
            self.emit(ANY)
        elif kind == "bol":
            self.emit(BOL)
        elif kind == "eol":
            self.emit(EOL)
        elif kind == "set":
            self.emit(SET, tree[1:])
        elif kind == "cat":
            for item in tree[1]:
                self.node(item)
        elif kind == "group":
            self.emit(SAVE, 2 * tree[1])
            self.node(tree[2])
            self.emit(SAVE, 2 * tree[1] + 1)
        elif kind == "alt":
            self.alternatives(tree[1])
        elif kind == "backref":
            self.emit(BACKREF, tree[1])
        else:
            self.repeat(*tree[1:])

    def alternatives(self, branches):
        jumps = []
        for branch in branches[:-1]:
            split = self.emit(SPLIT, len(self.code) + 1)
            self.node(branch)
            jumps.append(self.emit(JMP))
            self.code[split][2] = len(self.code)
        self.node(branches[-1])
        for jump in jumps:
            self.code[jump][1] = len(self.code)

    def repeat(self, body, lo, hi):
        for _ in range(lo - 1 if hi is None and lo else lo):
            self.node(body)
        if hi is None:
            if lo:  # the last required copy loops: body; SPLIT body, next
                start = len(self.code)
                self.node(body)
                self.emit(SPLIT, start, len(self.code) + 1)
            else:  # L: SPLIT body, next; body; JMP L
                split = self.emit(SPLIT, len(self.code) + 1)
                self.node(body)
                self.emit(JMP, split)
                self.code[split][2] = len(self.code)
            return
        splits = []
        for _ in range(hi - lo):  # each optional copy only after the one before
            splits.append(self.emit(SPLIT, len(self.code) + 1))
            self.node(body)
        for split in splits:
            self.code[split][2] = len(self.code)


def _in_set(spec, c, casemap):
    """Whether `c` matches a bracket expression; with casemap either case of
    an ASCII letter counts as a member, before any "^" negates."""
    negated, chars, ranges, classes = spec
    for candidate in (c, ascii_swapcase(c)) if casemap else (c,):
        if candidate in chars or any(low <= candidate <= high for low, high in ranges) \
                or any(CLASSES[name](candidate) for name in classes):
            return not negated
    return negated


class Regex:
    def __init__(self, code, groups, casemap):
        self.code, self.groups, self.casemap = code, groups, casemap
        # The capture slots a back-reference reads: all that a state's
        # future depends on besides its instruction and position.
        self.echoed = sorted({slot for op, a, _ in code if op == BACKREF
                              for slot in (2 * a, 2 * a + 1)})
        self.backtracks = bool(self.echoed)

    def search(self, value):
        """[whole match, group 1, ...] ("" for a group that took no part) for
        the leftmost-longest match in `value`, or None."""
        text = value[:MAX_VALUE_LENGTH]
        best = self._backtrack(text) if self.backtracks else self._pike(text)
        if best is None:
            return None
        return [text[best[2 * k]:best[2 * k + 1]] if best[2 * k] is not None else ""
                for k in range(self.groups + 1)]

    def _too_costly(self, n, limit=MAX_STEPS):
        return RegexTooCostly(f":regex gave up after {limit} steps (a {len(self.code)}"
                              f"-instruction pattern on {n} characters)")

    def _backtrack(self, text):
        """The captures of the leftmost-longest match of a pattern with
        back-references, which no automaton can follow: a depth-first
        search over the program, each start position in turn, every way
        from the first that matches tried for the longest end (the groups
        of the first way, in priority order, to reach it, as _pike gives).
        A state is entered once per start: its instruction, position and
        the captures a back-reference reads, which decide all that can
        follow (a later way there has lower priority and the same ends).
        That ends empty loops; MAX_BACKTRACK_STEPS bounds the rest."""
        code, casemap, n, echoed = self.code, self.casemap, len(text), self.echoed
        empty = (None,) * (2 * self.groups + 2)
        steps = 0
        for start in range(n + 1):
            best, seen, stack = None, set(), [(0, start, empty)]
            while stack:
                pc, i, caps = stack.pop()
                while (state := (pc, i, *[caps[slot] for slot in echoed])) not in seen:
                    seen.add(state)
                    steps += 1
                    if steps > MAX_BACKTRACK_STEPS:
                        raise self._too_costly(n, MAX_BACKTRACK_STEPS)
                    op, a, b = code[pc]
                    if op == MATCH:
                        if best is None or caps[1] > best[1]:
                            best = caps
                        break
                    if op in (JMP, SPLIT):
                        if op == SPLIT:
                            stack.append((b, i, caps))
                        pc = a
                        continue
                    if op == SAVE:
                        caps = caps[:a] + (i,) + caps[a + 1:]
                    elif op == BOL or op == EOL:
                        if i != (0 if op == BOL else n):
                            break
                    elif op == BACKREF:
                        i = _echo(text, i, caps[2 * a], caps[2 * a + 1], casemap)
                        if i is None:
                            break
                    elif i < n and (op == ANY or (a == (fold(text[i]) if casemap else text[i])
                                                  if op == CHAR else _in_set(a, text[i], casemap))):
                        i += 1
                    else:
                        break
                    pc += 1
            if best is not None:
                return best
        return None

    def _pike(self, text):
        """The captures of the leftmost-longest match, in linear time."""
        code, casemap, n = self.code, self.casemap, len(text)
        empty = (None,) * (2 * self.groups + 2)
        threads, seen = [], set()
        best = None
        steps = 0
        for i in range(n + 1):
            if best is None:  # a new start, below every earlier one in priority
                self._add(threads, seen, 0, empty, i, n)
            c = text[i] if i < n else None
            if casemap and c is not None:
                folded = fold(c)
            following, next_seen = [], set()
            steps += len(threads)
            if steps > MAX_STEPS:
                raise self._too_costly(n)
            for pc, caps in threads:
                op, a, _ = code[pc]
                if op == MATCH:
                    if best is None or caps[0] < best[0] or \
                            (caps[0] == best[0] and caps[1] > best[1]):
                        best = caps
                    continue
                if c is None:
                    continue
                if op == CHAR:
                    ok = a == (folded if casemap else c)
                elif op == ANY:
                    ok = True
                else:
                    ok = _in_set(a, c, casemap)
                if ok:
                    self._add(following, next_seen, pc + 1, caps, i + 1, n)
            if best is not None:  # a later start can no longer win
                following = [t for t in following if t[1][0] <= best[0]]
            threads, seen = following, next_seen
            if best is not None and not threads:
                break
        return best

    def _add(self, threads, seen, pc, caps, i, n):
        """Follow the empty moves from `pc` depth first, so `threads` stays
        in priority order; an instruction already reached at this position
        is not entered twice (this is what keeps the VM linear)."""
        code = self.code
        stack = [(pc, caps)]
        while stack:
            pc, caps = stack.pop()
            if pc in seen:
                continue
            seen.add(pc)
            op, a, b = code[pc]
            if op == JMP:
                stack.append((a, caps))
            elif op == SPLIT:
                stack.append((b, caps))
                stack.append((a, caps))
            elif op == SAVE:
                stack.append((pc + 1, caps[:a] + (i,) + caps[a + 1:]))
            elif op == BOL:
                if i == 0:
                    stack.append((pc + 1, caps))
            elif op == EOL:
                if i == n:
                    stack.append((pc + 1, caps))
            else:
                threads.append((pc, caps))


def _echo(text, i, start, end, casemap):
    """Where a back-reference to text[start:end] ends when it matches at
    i, else None; a group that took no part matches nothing (glibc)."""
    if start is None:
        return None
    group = text[start:end]
    found = text[i:i + len(group)]
    if casemap:
        group, found = fold(group), fold(found)
    return i + len(group) if found == group else None


def fold(text):
    """ASCII letters in lower case, as i;ascii-casemap compares them."""
    return text.translate(ASCII_FOLD)


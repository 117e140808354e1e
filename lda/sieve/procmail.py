"""`lda procmail-convert`: the common recipes of a .procmailrc as Sieve.

What is translated (procmailrc(5), procmailex(5)):
- `:0` / `:0:` recipes, flags c (copy), D (case-sensitive: i;octet), H, W/w;
- conditions `^Header:.*text` (:contains), `^Header: text` (:matches
  "text*"), `^Header: text$` (:is), `.` and `.*` inside (? and *; a first
  one may be the space after the colon: `^Header:.* text` -> :matches
  ["* text*", "text*"]), `^TO_x` and `^TO` (header :matches over
  procmail's destination fields, with one key per boundary character),
  `!` (not), `< N` / `> N` (size);
- actions: a Maildir++ folder of the Maildir (`.Lists/` with MAILDIR set to
  it, `$MAILDIR/.Lists/`) -> fileinto :create "Lists"; the Maildir -> keep;
  /dev/null -> discard; `! address` -> redirect; `{ ... }` nested recipes;
  `:0 Wh: msgid.lock` + `| formail -D N msgid.cache` -> duplicate;
- assignments (MAILDIR, DEFAULT, others for $VAR in paths); a DEFAULT in
  the Maildir ends the script with its fileinto.
What Sieve does differently (an mbox, MH or non-Maildir++ target, a MAILDIR
or DEFAULT outside the Maildir, flag D, `^Header:text` or other white space
than one space there, white space before `$`, non-ASCII text or an encoded
word's =? in a condition, a folder stored into again after a :0c copy,
a forward of the header or the body alone (flag h or b), an address
forwarded to again after a :0c forward, assignments in blocks) is
translated with a CHANGED MEANING comment; what has no Sieve equivalent
(pipes, formail -D that never ends the delivery (flag b, c or f), body
conditions, other regular expressions, A/a/E/e chaining, scoring,
INCLUDERC) is left out as a NOT TRANSLATED comment.  Each is a Problem
with its line number: the CLI's exit status says whether there was any.
"""

import os
import re
from collections import namedtuple

from .actions import UnsafeFolder, check_folder
from .fields import same_address, valid_address

# procmailrc(5): ^TO_ and ^TO stand for
# (^((Original-)?(Resent-)?(To|Cc|Bcc)|(X-Envelope|Apparently(-Resent)?)-To):
# followed by (.*[^-a-zA-Z0-9_.])? for ^TO_ and (.*[^a-zA-Z])? for ^TO: the
# fields below, and the text either first in the value or after a character
# that cannot be part of an address (^TO_) or of a word (^TO).
TO_FIELDS = tuple(f"{original}{resent}{kind}" for original in ("", "original-")
                  for resent in ("", "resent-") for kind in ("to", "cc", "bcc")) + (
    "x-envelope-to", "apparently-to", "apparently-resent-to")
PRINTABLE = "\t" + "".join(chr(c) for c in range(0x20, 0x7f))
NOT_IN_ADDRESS = [c for c in PRINTABLE if not (c.isalnum() or c in "-_.")]
NOT_IN_WORD = [c for c in PRINTABLE if not c.isalpha()]
IGNORED_FLAGS = set("HWwfir")  # defaults, or meaningful only for pipes (f on "!" is refused)
RECIPE = re.compile(r"^:(\d*)\s*([A-Za-z\s]*?)\s*(?::\s*(\S*))?\s*$")
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
BLANKS = (("lit", " "), ("lit", "\t"))  # tokens no Sieve value starts or ends with
HEADER_REGEX = re.compile(r"^\^([A-Za-z0-9_-]+):(.*)$")
VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
FORMAIL_DEDUP = re.compile(r"^formail\s+-D\s+\d+\s+\S+\s*$")
INDENT = "    "


NOT_TRANSLATED = "not translated"
CHANGED = "changed meaning"
# Assignments that steer logging, locking or programs, not where mail goes.
HARMLESS = {"LOG", "LOGFILE", "VERBOSE", "LOGABSTRACT", "COMSAT", "LOCKFILE", "LOCKEXT",
            "LOCKTIMEOUT", "LOCKSLEEP", "UMASK", "SHELL", "SHELLMETAS", "PATH", "TIMEOUT",
            "SUSPEND", "NORESRETRY", "LINEBUF", "SENDMAIL", "SENDMAILFLAGS"}
# What lda does with a problem: (line, kind, reason), kind NOT_TRANSLATED
# (left out as a comment) or CHANGED (translated, but not to the same thing).
Problem = namedtuple("Problem", "line kind reason")


class Untranslated(Exception):
    """A recipe (or line) with no faithful Sieve equivalent; args[0] says why."""


class Line:
    """One logical rcfile line and the number it starts on, for messages."""

    __slots__ = ("number", "text")

    def __init__(self, number, text):
        self.number, self.text = number, text


def logical_lines(text):
    """Lines with backslash-newline continuations joined, with the number
    of the line each one starts on."""
    result, pending, start = [], None, 0
    for number, raw in enumerate(text.splitlines(), 1):
        if pending is None:
            pending, start = "", number
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        result.append(Line(start, pending + raw))
        pending = None
    if pending is not None:
        result.append(Line(start, pending))
    return result


class Converter:
    """One rcfile's conversion: procmail's variables as they stand at each
    line, the requires the script needs, and the problems met."""

    def __init__(self, name, home, maildir=None):
        self.name = name
        # procmail's MAILDIR starts as $HOME; DEFAULT, unset, is the system
        # mailbox, which no rcfile line names.
        self.variables = {"HOME": home, "MAILDIR": home, "DEFAULT": None}
        # procmail chdirs to MAILDIR; a relative one is taken from the last.
        self.directory = home
        self.maildir = os.path.normpath(maildir or os.path.join(home, "Maildir"))
        self.default_line = None
        self.requires = set()
        self.problems = []
        self.changes = []  # reasons the recipe being translated changes meaning
        self.copies = {}  # folder -> line of the first :0c recipe storing into it
        self.forwards = []  # (address, line) of each :0c recipe's forward

    def convert(self, text):
        """The script for text: its recipes in order, then DEFAULT's
        delivery, under the heading and requires they need."""
        lines = []
        for line in logical_lines(text):
            stripped = line.text.strip()
            if stripped.startswith("{") and stripped[1:].strip() not in ("", "}"):
                # "{ :0 ..." starts a block and its first line at once
                lines += [Line(line.number, "{"), Line(line.number, stripped[1:].strip())]
            else:
                lines.append(line)
        body = self.items(lines, 0, top=True)[0] + self.default_delivery()
        head = [f"# Sieve script converted from {self.name} by lda procmail-convert.",
                "# Check it with `lda sieve check`; try it with `lda sieve test`."]
        if self.requires:
            names = ", ".join(f'"{r}"' for r in sorted(self.requires))
            head.append(f"require [{names}];")
        return "\n".join(head + body) + "\n"

    def items(self, lines, i, top=False):
        """Sieve lines for the recipes from lines[i] up to a closing "}"
        (or the end); returns (output, index after it)."""
        out = []
        while i < len(lines):
            line = lines[i]
            stripped = line.text.strip()
            if not stripped or stripped.startswith("#"):
                i += 1
            elif stripped == "}":
                if top:
                    self.note(out, [line], 'a "}" without its "{"')
                    i += 1
                    continue
                return out, i + 1
            elif stripped.startswith(":"):
                i = self.recipe(lines, i, out)
            elif ASSIGNMENT.match(stripped):
                self.assign(line, stripped, out, top)
                i += 1
            else:
                self.note(out, [line], "neither a recipe nor an assignment")
                i += 1
        return out, i

    def note(self, out, lines, reason):
        """Leave lines out of the script, as a comment saying why."""
        self.problems.append(Problem(lines[0].number, NOT_TRANSLATED, reason))
        out.append("")
        out.append(f"# NOT TRANSLATED ({self.name} line {lines[0].number}): {reason}")
        out.extend("#   " + line.text.strip() for line in lines)

    def note_change(self, out, number, reason):
        """Say, above the Sieve that stands for line `number`, how it differs
        from what procmail does: a user reading the script sees it there,
        one reading stderr sees the line."""
        self.problems.append(Problem(number, CHANGED, reason))
        out.append(f"# CHANGED MEANING ({self.name} line {number}): {reason}")

    def assign(self, line, text, out, top=True):
        """Keep a variable for later paths; one set inside a block holds in
        procmail only when the block runs, here for every later line."""
        name, value = ASSIGNMENT.match(text).groups()
        if name in ("INCLUDERC", "SWITCHRC"):
            self.note(out, [line], f"{name} reads another rc file: convert it and "
                      "paste it in")
            return
        if not top and name not in HARMLESS:
            out.append("")
            self.note_change(out, line.number, f"{name} is set inside a block: procmail "
                             "sets it only when the block runs, the conversion uses it "
                             "for every later recipe")
        self.variables[name] = self.value(value)
        if name == "MAILDIR":
            known = self.variables[name] is not None and self.directory is not None
            self.directory = os.path.normpath(os.path.join(self.directory,
                                                           self.variables[name])) \
                if known else None
        if name == "DEFAULT":
            self.default_line = line.number

    def value(self, value):
        """An assigned value with quotes removed and $VARs expanded; None when
        it cannot be known here (a backquoted command, an unknown variable)."""
        value = value.strip()
        if "`" in value:
            return None
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            if value[0] == "'":
                return value[1:-1]
            value = value[1:-1]
        try:
            return self.expand(value)
        except Untranslated:
            return None

    def expand(self, text):
        """text with $NAME and ${NAME} replaced; any other $ form (${X:-y},
        $$, $#) raises rather than staying in a folder name."""
        def substitute(match):
            name = match.group(1) or match.group(2)
            value = self.variables.get(name)
            if value is None:
                raise Untranslated(f"${name} is not known here")
            return value

        if "$" in VARIABLE.sub("", text):
            raise Untranslated(f"{text.strip()!r} has a $ form other than $NAME or ${{NAME}}")
        return VARIABLE.sub(substitute, text)

    def recipe(self, lines, i, out):
        """One recipe: header, conditions, then an action line or a block."""
        header = lines[i]
        conditions, j = [], i + 1
        while j < len(lines) and (lines[j].text.strip().startswith(("*", "#"))
                                  or not lines[j].text.strip()):
            if lines[j].text.strip().startswith("*"):
                conditions.append(lines[j])
            j += 1
        if j >= len(lines):
            self.note(out, [header, *conditions], "recipe without an action")
            return j
        action = lines[j]
        block = action.text.strip().startswith("{")
        inner, after = [], j + 1
        if block and action.text.strip()[1:].strip() != "}":
            inner, after = self.items(lines, j + 1)
        source = [header, *conditions, action]
        try:
            self.changes = []
            translated = self.translate(header, conditions, action, block, inner)
            changes = self.changes
        except Untranslated as e:
            self.note(out, source, str(e))
            if block:  # the block's own recipes, as they would read, stay visible
                out.extend(f"#   {INDENT}{text}" for text in "\n".join(inner).split("\n")
                           if text)
                out.append("#   }")
            return after
        out.append("")
        out.append(f"# {self.name} line {header.number}: {header.text.strip()}")
        for reason in changes:
            self.note_change(out, header.number, reason)
        out.extend(translated)
        return after

    def translate(self, header, conditions, action, block, inner):
        """Sieve lines for one recipe; raises Untranslated for flags and
        shapes Sieve cannot carry."""
        match = RECIPE.match(header.text.strip())
        if not match or match.group(1) not in ("", "0"):
            raise Untranslated("not a :0 recipe header")
        flags = set(match.group(2).replace(" ", "").replace("\t", ""))
        unsupported = flags - IGNORED_FLAGS - set("cDhb")
        if unsupported:
            raise Untranslated(f"flag{'s' if len(unsupported) > 1 else ''} "
                               f"{''.join(sorted(unsupported))} (chaining, body or "
                               "scoring) not translatable")
        tests = [self.condition(c.text.strip()[1:].strip(), "D" in flags)
                 for c in conditions]
        copy = "c" in flags
        if block:
            if copy:
                raise Untranslated("a cloned block (:0c {...}) is not translatable")
            body = inner[1:] if inner[:1] == [""] else inner
        else:
            body = self.action(action.text.strip(), flags, copy, header.number)
        if not tests:
            return body
        test = tests[0] if len(tests) == 1 else "allof(" + ", ".join(tests) + ")"
        return [f"if {test} {{", *(indented(line) for line in body), "}"]

    def condition(self, text, case_sensitive):
        """A Sieve test for one `*` line: `!` negates, `<`/`>` compare the
        size, anything else is a regular expression."""
        negate = text.startswith("!")
        if negate:
            text = text[1:].strip()
        if text[:1] in ("<", ">"):
            size = text[1:].strip()
            if not size.isdigit():
                raise Untranslated(f"size condition {text!r}")
            # Both count the message as the MTA handed it (a delivery's
            # Sieve size leaves out the Return-Path and Delivered-To lda puts
            # on top); tests/test_procmail_convert.py checks a byte either side.
            test = f"size :{'under' if text[0] == '<' else 'over'} {size}"
        else:
            test = self.regex_condition(text, case_sensitive)
        return f"not {test}" if negate else test

    def regex_condition(self, text, case_sensitive):
        """A header test for ^TO_/^TO or ^Field:regex; procmail matches
        case-insensitively unless flag D, as Sieve's default comparator."""
        if text[:1] in ("$", "?") or re.match(r"^-?\d+\s*\^", text) or "??" in text:
            raise Untranslated(f"condition {text!r} (variables, programs, scoring)")
        comparator = ' :comparator "i;octet"' if case_sensitive else ""
        if case_sensitive:
            self.changes.append("flag D: procmail compares the field names case-"
                                "sensitively too (Subject: but not SUBJECT:); Sieve "
                                "field names ignore case")
        for prefix, boundary in (("^TO_", NOT_IN_ADDRESS), ("^TO", NOT_IN_WORD)):
            if text.startswith(prefix):
                tokens = self.trailing(text, regex_tokens(text[len(prefix):]))
                keys = destination_keys(tokens, boundary)
                self.decoded(text, keys[:1])
                return (f"header :matches{comparator}\n{INDENT}{string_list(TO_FIELDS)}\n"
                        f"{INDENT}{string_list(keys)}")
        found = HEADER_REGEX.match(text)
        if not found:
            raise Untranslated(f"condition {text!r} is not ^Header:... or ^TO_...")
        name, rest = found.groups()
        patterns = self.value_patterns(text, name, rest)
        if ["*"] in patterns:
            return f"exists {quote(name.lower())}"
        if len(patterns) == 1:
            match, key = keyed(patterns[0])
            keys, shown = [key], quote(key)
        else:  # a key for each way a first ".*" may take the space
            keys = [glob(p) for p in patterns]
            match, shown = "matches", string_list(keys)
        self.decoded(text, keys)
        return f"header :{match}{comparator} {quote(name.lower())} {shown}"

    def value_patterns(self, text, name, rest):
        """Token lists for the value Sieve compares, which has no white space
        at either end, where procmail matches rest after the colon of the
        field as sent.  A field has one space there: a first " " or "." is
        that space and a first ".*" may take it, so the two agree on every
        field written so.  A rest that wants other white space there, or
        none, matches only unusual fields: it is translated without that
        white space, and said."""
        tokens = self.trailing(text, regex_tokens(rest))
        patterns = [p for p in after_space(tokens) if not (p and p[0] in BLANKS)]
        if patterns:
            return patterns
        blank = next((i for i, t in enumerate(tokens) if t not in BLANKS), len(tokens))
        if blank:
            spaces = "".join(t[1] for t in tokens[:blank])
            self.changes.append(f"^{name}: with {spaces!r} after the colon: procmail wants "
                                "that white space, not the one space a field has; Sieve "
                                "compares the value without its leading white space")
        else:
            self.changes.append(f"^{name}:{rest[:1]}...: procmail wants no space after "
                                "the colon; Sieve compares the value without its "
                                "leading white space")
        return [tokens[blank:]]

    def trailing(self, text, tokens):
        """Tokens without white space before a final $, which procmail
        wants and Sieve's value never ends with (white space alone is the
        space after the colon: ^Subject: $)."""
        end = len(tokens)
        while end and tokens[end - 1] in BLANKS:
            end -= 1
        if end in (0, len(tokens)):
            return tokens
        self.changes.append(f"{text}: procmail wants white space at the end of the field; "
                            "Sieve compares the value without its trailing white space")
        return tokens[:end]

    def decoded(self, text, keys):
        """Sieve compares a field's RFC 2047 decoded text (RFC 5228 section
        2.7.2), procmail the field as sent.  Said where the condition is
        about the difference: text outside ASCII, which mail sends encoded,
        or the marks =? and ?= of an encoded word (in keys, a "?" either the
        character or any one).  For ASCII words the decoding finds what the
        condition was written for, in encoded fields too: lda(1) says so
        once, rather than a note on every recipe."""
        if not text.isascii():
            effect = "so non-ASCII text, which mail sends encoded, matches only here"
        elif any(mark in key.replace("\\", "") for key in keys for mark in ("=?", "?=")):
            effect = "which has no =? or ?= of an encoded word"
        else:
            return
        self.changes.append(f"{text}: procmail matches the field as sent, RFC 2047 encoded "
                            f"words undecoded; Sieve compares the decoded text, {effect}")

    def action(self, text, flags, copy, number):
        """Sieve lines for the action line of the recipe on line number; a
        delivering one ends with stop, as procmail stops at its first
        delivery (unless flag c)."""
        copy_tag = " :copy" if copy else ""
        stop = [] if copy else ["stop;"]
        if text.startswith("|"):
            return self.deduplicate(text[1:].strip(), flags, copy)
        if text.startswith("!"):
            return self.forward(text[1:], flags, copy, number)
        if "h" in flags and "b" not in flags:
            raise Untranslated("only the header would be stored (flag h)")
        if "b" in flags and "h" not in flags:  # either flag leaves out the other's default
            raise Untranslated("only the body would be stored (flag b)")
        target = self.folder(text)
        if target is None:
            if copy:
                raise Untranslated("a copy to /dev/null does nothing")
            return ["discard;", *stop]
        self.stored(target, copy, number)
        if target == "INBOX":
            return ["keep;", *stop]
        self.requires.update(("fileinto", "mailbox"))
        if copy:
            self.requires.add("copy")
        return [f"fileinto{copy_tag} :create {quote(target)};", *stop]

    def deduplicate(self, command, flags, copy):
        """The duplicate test for procmailex(5)'s `| formail -D N cache`,
        which ends the delivery when formail finds the header's Message-ID
        in its cache; with flag b, c or f formail never ends it, and
        procmail keeps every copy (tests/test_procmail_convert.py runs it)."""
        if not FORMAIL_DEDUP.match(command):
            raise Untranslated("a pipe to a program")
        if "b" in flags and "h" not in flags:
            raise Untranslated("only the body would be fed to formail -D (flag b), which "
                               "looks for the Message-ID there")
        if copy:
            raise Untranslated("formail -D on a copy (flag c): procmail goes on with the "
                               "message, duplicate or not")
        if "f" in flags:
            raise Untranslated("formail -D as a filter (flag f): procmail goes on with "
                               "the message, duplicate or not")
        self.requires.add("duplicate")
        return ["if duplicate {", INDENT + "discard;", INDENT + "stop;", "}"]

    def forward(self, text, flags, copy, number):
        """A redirect for each address of `! addresses`.  Sieve's redirect
        sends the message as it came, and to an address once
        (lda/sieve/interpreter.py), where procmail with flag b or h alone
        forwards that part of it, and forwards again after a :0c forward:
        said, as the nearest Sieve has."""
        if "f" in flags:  # procmail feeds the message through the forward and goes on
            raise Untranslated("a forward with flag f (used as a filter)")
        targets = self.expand(text).split()
        if not targets or not all(valid_address(t) for t in targets):
            raise Untranslated("forward to something that is not a full address")
        for flag, part, other in (("b", "body", "header"), ("h", "header", "body")):
            if flag in flags and other[0] not in flags:
                self.changes.append(f"flag {flag}: procmail forwards only the {part}, "
                                    f"without the {other}; Sieve's redirect sends the "
                                    "whole message")
        for target in dict.fromkeys(targets):
            first = next((line for address, line in self.forwards
                          if same_address(address, target)), None)
            if first is not None:
                self.changes.append(f"procmail forwards another copy to {target}, where "
                                    f"the :0c recipe on line {first} forwarded one; Sieve "
                                    "redirects a message to an address once")
            elif copy:
                self.forwards.append((target, number))
        if not copy:
            return [f"redirect {quote(t)};" for t in targets] + ["stop;"]
        self.requires.add("copy")
        return [f"redirect :copy {quote(t)};" for t in targets]

    def folder(self, text):
        """"INBOX", a folder name, or None for /dev/null.  What procmail
        would write differently (an mbox, an MH folder, a Maildir that is
        not a Maildir++ folder, a MAILDIR outside) goes to self.changes."""
        if len(text.split()) != 1:
            raise Untranslated("more than one folder on the action line")
        written = self.expand(text).strip()
        if written == "/dev/null":
            return None
        path = os.path.normpath(os.path.join(self.current_directory(written), written))
        relative = self.inside(path)
        target = self.folder_name(relative) if relative else "INBOX"
        kind = ("an MH folder (/.)" if written.endswith("/.") else
                "a Maildir" if written.endswith("/") else "an mbox file (no trailing /)")
        plus = not relative or ("/" not in relative and relative.startswith("."))
        shown = described(target)
        if relative and target == "INBOX" and kind == "a Maildir":  # .INBOX/, INBOX/
            self.changes.append(f"procmail writes the Maildir {path}/, a folder an IMAP "
                                "client cannot tell from the INBOX: it becomes the INBOX")
        elif kind != "a Maildir":
            self.changes.append(f"{path} is {kind}: it becomes {shown} "
                                f"of {self.maildir}")
        elif not plus:
            self.changes.append(f"procmail writes the Maildir {path}/, which is not a "
                                f"Maildir++ folder: it becomes {shown} "
                                f"({self.maildir}/.{target}/)")
        return target

    def stored(self, target, copy, number):
        """Keep the line of a :0c copy into target; say when a later
        delivery names the same folder, which procmail stores a copy into
        each time and Sieve once (RFC 5228 section 2.10.3)."""
        if target in self.copies:
            self.changes.append(f"procmail stores another copy in {described(target)}, "
                                f"where the :0c recipe on line {self.copies[target]} stored "
                                "one; Sieve stores a message into a folder once")
        elif copy:
            self.copies[target] = number

    def current_directory(self, path):
        """procmail's directory, which a relative path is taken from."""
        if self.directory is None and not path.startswith("/"):
            raise Untranslated(f"{path} is relative to MAILDIR, which is not known here")
        return self.directory or "/"

    def inside(self, path):
        """path relative to the Maildir ("" for its root); one under a
        MAILDIR set outside it is taken relative to that, and said so."""
        for root in (self.maildir, self.directory):
            root = os.path.normpath(root) if root else None
            if root and within(path, root):
                if root != self.maildir:
                    self.changes.append(f"MAILDIR is {root}, outside the Maildir "
                                        f"{self.maildir}: procmail writes {path}, the "
                                        f"script a folder of {self.maildir}")
                return path[len(root):].strip("/")
        raise Untranslated(f"{path} is outside the Maildir")

    def default_delivery(self):
        """What procmail does with mail no recipe delivered: DEFAULT, when
        the rcfile sets it.  Sieve's implicit keep is the INBOX, so another
        folder of the Maildir is an explicit fileinto at the end."""
        if self.default_line is None:
            return []
        out = ["", f"# {self.name} line {self.default_line}: DEFAULT, for what no "
               "recipe delivered"]
        try:
            self.changes = []
            default = self.expand("$DEFAULT")
            path = os.path.join(self.current_directory(default), default)
            if os.path.normpath(path) != "/dev/null" and not within(path, self.maildir):
                raise Untranslated(f"{os.path.normpath(path)} is outside the Maildir")
            target = self.folder("$DEFAULT")
        except Untranslated as e:
            self.note_change(out, self.default_line, f"DEFAULT: {e}; what no recipe "
                             f"delivers is kept in the INBOX of {self.maildir}")
            return out
        if target is not None:
            self.stored(target, False, self.default_line)
        for reason in self.changes:
            self.note_change(out, self.default_line, f"DEFAULT: {reason}")
        if target is None:
            return out + ["discard;"]
        if target == "INBOX":
            return out if self.changes else []
        self.requires.update(("fileinto", "mailbox"))
        return out + [f"fileinto :create {quote(target)};"]

    def folder_name(self, relative):
        """A path below the Maildir as a Maildir++ folder name (Lists/lda
        and .Lists.lda both give Lists.lda), refused if lda would refuse it."""
        name = ".".join(part.lstrip(".") for part in relative.split("/") if part)
        try:
            return check_folder(name)
        except UnsafeFolder as e:
            raise Untranslated(f"folder {relative!r}: {e}") from None


def described(target):
    """A folder name as the notes name it."""
    return "the INBOX" if target == "INBOX" else f"the Maildir++ folder {target}"


def within(path, root):
    """Whether path is root or below it."""
    path, root = os.path.normpath(path), os.path.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def indented(line):
    """A line of a block one level in; a test written over several lines
    moves as a whole."""
    return "\n".join(INDENT + part if part else part for part in line.split("\n"))


def regex_tokens(regex):
    """A procmail regex made of literals, "." and ".*", with an optional
    final "$", as the text it matches from the start: ("lit", c), "?" (any
    one character) and "*" (any text, added at an open end); raises
    Untranslated for anything else."""
    end_anchored = regex.endswith("$") and not regex.endswith("\\$")
    if end_anchored:
        regex = regex[:-1]
    tokens, i = [], 0
    while i < len(regex):
        c = regex[i]
        if c == "\\" and regex[i + 1:i + 2] in ("<", ">"):
            raise Untranslated(f"word boundary in {regex!r}")
        if c == "\\" and regex[i + 1:i + 2] == "/":
            raise Untranslated(f"\\/ (the start of procmail's $MATCH) in {regex!r}")
        if c == "\\" and i + 1 < len(regex) and not regex[i + 1].isalnum():
            tokens.append(("lit", regex[i + 1]))
            i += 2
        elif c == "." and regex[i + 1:i + 2] == "*":
            tokens += [] if tokens[-1:] == ["*"] else ["*"]
            i += 2
        elif c == ".":
            tokens.append("?")
            i += 1
        elif c in "[]()|+?*^$\\{}":
            raise Untranslated(f"regular expression {regex!r} has more than literals "
                               "and .*")
        else:
            tokens.append(("lit", c))
            i += 1
    if not end_anchored and tokens[-1:] != ["*"]:
        tokens.append("*")
    return tokens


def after_space(tokens):
    """Token lists that match a value where tokens matches a space and
    then the value: the field after its colon, as procmail reads it."""
    if tokens[:1] in (["?"], [("lit", " ")]):
        return [tokens[1:]]
    if tokens[:1] == ["*"]:  # it takes the space, or leaves it to the rest
        return [tokens] + after_space(tokens[1:])
    return []


def keyed(tokens):
    """(match type, key) for tokens: exists, is, contains or matches."""
    wildcard = [t for t in tokens if not isinstance(t, tuple)]
    literal = "".join(t[1] for t in tokens if isinstance(t, tuple))
    if tokens == ["*"]:
        return "exists", None
    if not wildcard:
        return "is", literal
    if (tokens[0] == tokens[-1] == "*" and len(wildcard) == 2 and len(tokens) > 2):
        return "contains", literal
    return "matches", glob(tokens)


def glob(tokens):
    """Tokens as a :matches key."""
    return "".join(matches_key(t[1]) if isinstance(t, tuple) else t for t in tokens)


def destination_keys(tokens, boundary):
    """:matches keys for the tokens after ^TO_ or ^TO: the text first in
    the value, or anywhere after one of the boundary characters.  Sieve has
    no character classes, so the boundary is spelled out, one key each."""
    key = glob(tokens)
    if key.startswith("*"):
        return [key]
    return [key] + ["*" + matches_key(c) + key for c in boundary]


def matches_key(literal):
    """A literal as a :matches key: its wildcard characters escaped."""
    return literal.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")


def string_list(strings, width=88):
    """A Sieve string list to go one level in, wrapped so that a long key
    list stays readable."""
    rows, row = [], []
    for text in map(quote, strings):
        if row and len(", ".join(row + [text])) > width:
            rows.append(", ".join(row))
            row = []
        row.append(text)
    return "[" + f",\n{INDENT} ".join(rows + [", ".join(row)]) + "]"


def quote(text):
    """text as a Sieve quoted string (RFC 5228 section 2.4.2)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def convert(text, name=".procmailrc", home=None, maildir=None):
    """(Sieve script text, [Problem]) for a script that delivers into
    maildir (default ~/Maildir, per-user mode's): folders are judged
    against it."""
    converter = Converter(name, home or os.environ.get("HOME", "/home/user"), maildir)
    return converter.convert(text), converter.problems

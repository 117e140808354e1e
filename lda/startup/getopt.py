"""Command-line options as getopt.gnu_getopt parses them, without getopt.

`import getopt` imports gettext for its messages, and gettext imports re.
This does the part `lda deliver` uses: single-letter options, clustered
flags (-ek), a value attached (-fSENDER, -efSENDER) or in the next
argument; -h and --help; "--" ending the options; operands anywhere (as
gnu_getopt permutes them).  Left out: long options other than --help, and
error messages translated through gettext.
"""


class GetoptError(ValueError):
    """An unknown option, or one without its value."""


def getopt(args, shortopts, repeatable=""):
    """({option: value}, operands) for shortopts in getopt's notation
    ("f:a:c:eh": a letter followed by ":" takes a value); a flag's value is
    "", --help stands for -h, the last of a repeated option counts, except
    for the letters in `repeatable`, whose values are kept as a list in
    order (dovecot-lda's -o key=value, given once per setting)."""
    with_value = {letter for letter, after in zip(shortopts, shortopts[1:])
                  if letter != ":" and after == ":"}
    flags = {letter for letter in shortopts if letter != ":"} - with_value
    options, operands, args = {}, [], iter(args)
    for arg in args:
        if arg == "--":
            operands.extend(args)
        elif arg == "--help" and "h" in flags:
            options["-h"] = ""
        elif arg.startswith("-") and arg not in ("-", "--help"):
            for letter, value in _letters(arg, args, flags, with_value):
                if letter in repeatable:
                    options.setdefault("-" + letter, []).append(value)
                else:
                    options["-" + letter] = value
        else:
            operands.append(arg)
    return options, operands


def _letters(arg, args, flags, with_value):
    """(letter, value) for each option of one argument: "-ek" is -e and -k,
    "-efSENDER" -e and -f SENDER; a value may be the next argument."""
    found = []
    for i, letter in enumerate(arg[1:], 1):
        if letter in flags:
            found.append((letter, ""))
        elif letter in with_value:
            value = arg[i + 1:] or next(args, None)
            if value is None:
                raise GetoptError(f"option -{letter} requires an argument")
            found.append((letter, value))
            break
        else:
            name = arg if i == 1 and len(arg) > 2 and arg[1] == "-" else "-" + letter
            raise GetoptError(f"unknown option {name[:40]}")
    return found

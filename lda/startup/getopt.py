"""Command-line options as getopt.gnu_getopt parses them, without getopt.

`import getopt` imports gettext for its messages, and gettext imports re.
This does the part `lda deliver` uses: single-letter options, each alone in
its argument, with a value attached (-fSENDER) or in the next argument; -h
and --help; "--" ending the options; operands anywhere (as gnu_getopt
permutes them).  Left out: clustered flags (-eh), long options other than
--help, and error messages translated through gettext.
"""


class GetoptError(ValueError):
    """An unknown option, or one without its value."""


def getopt(args, shortopts):
    """({option: value}, operands) for shortopts in getopt's notation
    ("f:a:c:eh": a letter followed by ":" takes a value); a flag's value is
    "", --help stands for -h, the last of a repeated option counts."""
    with_value = {"-" + letter for letter, after in zip(shortopts, shortopts[1:])
                  if letter != ":" and after == ":"}
    flags = {"-" + letter for letter in shortopts if letter != ":"} - with_value
    options, operands, args = {}, [], iter(args)
    for arg in args:
        if arg == "--":
            operands.extend(args)
        elif arg in ("-h", "--help") and "-h" in flags:
            options["-h"] = ""
        elif arg in flags:
            options[arg] = ""
        elif arg[:2] in with_value:
            value = arg[2:] or next(args, None)
            if value is None:
                raise GetoptError(f"option {arg} requires an argument")
            options[arg[:2]] = value
        elif arg.startswith("-") and arg != "-":
            raise GetoptError(f"unknown option {arg}")
        else:
            operands.append(arg)
    return options, operands


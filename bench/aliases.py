"""`lda deliver` with a 10,000-line aliases file: parsed per delivery, or
looked up in the table `lda aliases compile` writes.

    python bench/aliases.py [--runs 40] [--lines 10000]

Builds a managed site in a temporary directory with the installed `lda`
command (the one beside this interpreter, else on PATH): two mailboxes, an
aliases file of --lines lines (comments, continuation lines, bare and
full-address keys, addresses that need checking, two :include: files).
Then, for each way of reading the aliases, it times `lda deliver` of a
3 KB message to a mailbox no alias names (the common case) and to an alias
of both mailboxes, and totals `python -X importtime` for one delivery.
Prints medians and 90th percentiles.

Modes: "no aliases" (aliases = "" in lda.toml, the floor), "source" (no
compiled table: every delivery parses the file) and "table" (after
`lda aliases compile`).
"""

import argparse
import os
import subprocess
import tempfile

# bench/ is on sys.path
from deliver_latency import import_total_ms, installed_lda, summary, timed

DOMAIN = "example.org"


def message(i, size=3072):
    head = (f"From: a@example.net\nTo: x@{DOMAIN}\nMessage-ID: <alias{i}@example.net>\n"
            f"Date: Tue, 24 Nov 2026 10:00:00 +0000\nSubject: bench {i}\n\n").encode()
    return head + b"x" * (size - len(head) - 1) + b"\n"


def write_aliases(root, lines):
    """An aliases file of about `lines` lines, 4 per group, ending with `team`."""
    includes = []
    for n in range(2):
        path = os.path.join(root, f"list{n}.inc")
        with open(path, "w") as f:
            f.write("".join(f"member{n}-{i}@example.com\n" for i in range(50)))
        includes.append(path)
    out = [f"inc{n}: :include:{path}" for n, path in enumerate(includes)]
    for i in range((lines - len(out) - 1) // 4):
        out += [f"# list {i}", f"list{i}: user{i}, user{i + 1}@example.com,",
                f"  other{i}", f"u{i}@{DOMAIN}: x{i}"]
    out.append(f"team: alice@{DOMAIN}, bob")
    path = os.path.join(root, "aliases")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return path, len(out)


def write_config(root, aliases):
    path = os.path.join(root, "lda.toml")
    with open(path, "w") as f:
        f.write(f'state_dir = "{root}/state"\naliases = "{aliases}"\n')
    return path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--lines", type=int, default=10_000)
    args = parser.parse_args()
    lda = installed_lda()
    with tempfile.TemporaryDirectory() as root:
        aliases, count = write_aliases(root, args.lines)
        env = {"HOME": root, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "LDA_CONFIG": write_config(root, aliases)}
        for name in ("alice", "bob"):
            subprocess.run([lda, "mailbox", "create", f"{name}@{DOMAIN}"], env=env,
                           check=True, stdout=subprocess.DEVNULL)
        table = os.path.join(root, "state", "aliases.sqlite")
        print(f"{lda}; aliases file of {count} lines, {args.runs} runs per row")
        serial = 0
        for mode in ("no aliases", "source", "table"):
            if mode == "no aliases":
                write_config(root, "")
            else:
                write_config(root, aliases)
            if mode == "table":
                subprocess.run([lda, "aliases", "compile"], env=env, check=True,
                               stdout=subprocess.DEVNULL)
            elif os.path.exists(table):
                os.unlink(table)
            for rcpt in (f"alice@{DOMAIN}", f"team@{DOMAIN}"):
                if mode == "no aliases" and rcpt.startswith("team"):
                    continue
                argv = [lda, "deliver", "-f", "a@example.net", rcpt]
                timed(argv, message(serial := serial + 1), env)  # warm the page cache
                times = [timed(argv, message(serial := serial + 1), env)
                         for _ in range(args.runs)]
                imports = import_total_ms(argv, message(serial := serial + 1), env)
                print(f"{mode:10} to {rcpt:18} {summary(times)}   "
                      f"imports {imports:5.1f} ms")


if __name__ == "__main__":
    main()

"""Wall time of one `lda deliver` of a 3 KB message, and its import cost.

    python bench/deliver_latency.py [--runs 50]

Prints the median and 90th percentile wall time of the installed `lda`
command in per-user mode (fresh HOME under a temporary directory, real
fsyncs), the same for `python -c pass` (the interpreter's own start-up) and
the `-X importtime` total of everything a delivery imports after `site`.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time


def message(i, size=3072):
    head = (f"From: a@example.org\nTo: b@example.org\nMessage-ID: <bench{i}@example.org>\n"
            f"Date: Tue, 24 Nov 2026 10:00:00 +0000\nSubject: bench {i}\n\n").encode()
    return head + b"x" * (size - len(head) - 1) + b"\n"


def installed_lda():
    """The `lda` script pip installed for this interpreter (its scripts
    directory: not a shim, pyenv's adds ~70 ms), else the one on PATH."""
    script = os.path.join(sysconfig.get_path("scripts"), "lda")
    return script if os.path.isfile(script) else shutil.which("lda")


def summary(times):
    """Median and 90th percentile of seconds, in ms."""
    times = sorted(times)
    return (f"median {statistics.median(times) * 1000:6.1f} ms   "
            f"p90 {times[int(len(times) * 0.9)] * 1000:6.1f} ms")


def timed(argv, data, env):
    start = time.perf_counter()
    subprocess.run(argv, input=data, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def import_total_ms(argv, data, env):
    """Cumulative milliseconds of every top-level import after site, when
    the Python script argv[0] runs with argv[1:] and data on stdin."""
    done = subprocess.run([sys.executable, "-X", "importtime", *argv], input=data, env=env,
                          capture_output=True, check=True)
    total, after_site = 0, False
    for line in done.stderr.decode().splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if name.strip() == "site":
            after_site = True
            continue
        if after_site and not name.startswith("  ") and cumulative.strip().isdigit():
            total += int(cumulative)
    return total / 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    lda = installed_lda()
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items()
               if k not in ("LDA_CONFIG", "SENDER", "RECIPIENT", "EXTENSION")}
        env["HOME"] = home
        timed([lda, "deliver", "b@example.org"], message(-2), env)  # create the store
        lda_times, py_times = [], []
        for i in range(args.runs):
            lda_times.append(timed([lda, "deliver", "-f", "a@example.org",
                                    "b@example.org"], message(i), env))
            py_times.append(timed([sys.executable, "-c", "pass"], b"", env))
        imports = import_total_ms([lda, "deliver", "-f", "a@example.org", "b@example.org"],
                                  message(-1), env)
    for name, times in (("lda deliver (3 KB)", lda_times), ("python -c pass", py_times)):
        print(f"{name:22} {summary(times)}   n={len(times)}")
    print(f"{'imports after site':22} {imports:6.1f} ms (python -X importtime)")
    ratio = statistics.median(lda_times) / statistics.median(py_times)
    print(f"lda / bare interpreter: {ratio:.2f}x")


if __name__ == "__main__":
    main()

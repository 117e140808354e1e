"""Messages per second through `lda lmtp`, and through `lda deliver` run once
per message and recipient (as mailbox_command or a pipe(8) transport with
a recipient limit of 1 would run it).

    python bench/lmtp_throughput.py [--sessions 16] [--messages 5] [--workers N]
                                    [--processes N]

A managed site in a temporary directory (real fsyncs, real SQLite), ten
mailboxes, 3 KB messages with 1 and with 10 recipients.  LMTP: `lda lmtp`
on loopback TCP; --sessions sessions each send --messages messages (one
session reused for all of them, no pipelining), 1, 4 and 16 sessions at a
time.  deliver: the same messages, one `lda deliver` process per message
and recipient, 1, 4 and 16 processes at a time.  Every message has its own
Message-ID, so nothing is discarded as a duplicate.
"""

import argparse
import os
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deliver_latency import installed_lda  # bench/ is on sys.path

DOMAIN = "bench.example.org"
SENDER = "sender@example.org"
CONCURRENCY = (1, 4, 16)
RECIPIENTS = (1, 10)


def message(tag, size=3072):
    head = (f"From: {SENDER}\r\nTo: team@{DOMAIN}\r\nMessage-ID: <{tag}@bench.example.org>\r\n"
            f"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nSubject: bench {tag}\r\n\r\n").encode()
    line = b"x" * 76 + b"\r\n"  # RFC 5321 4.5.3.1.6: lines of at most 1000 octets
    body = line * ((size - len(head)) // len(line))
    return head + body + b"y" * (size - len(head) - len(body) - 2) + b"\r\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Site:
    """A managed lda site with `count` mailboxes and its `lda lmtp`."""

    def __init__(self, root, lda, count=10):
        self.root, self.lda = root, lda
        config = root / "lda.toml"
        config.write_text(f'state_dir = "{root / "state"}"\n')
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("SENDER", "RECIPIENT", "ORIGINAL_RECIPIENT", "EXTENSION")}
        self.env.update(LDA_CONFIG=str(config), HOME=str(root))
        self.addresses = [f"box{i}@{DOMAIN}" for i in range(count)]
        for address in self.addresses:
            subprocess.run([lda, "mailbox", "create", address], env=self.env, check=True,
                           capture_output=True)
        self.server = None

    def start_lmtp(self, workers=None, processes=None):
        self.port = free_port()
        extra = ["--processes", str(processes)] if processes is not None else []
        extra += ["--workers", str(workers)] if workers is not None else []
        self.server = subprocess.Popen(
            [self.lda, "lmtp", "--listen", f"127.0.0.1:{self.port}", *extra], env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.server.poll() is not None:
                    raise SystemExit("lda lmtp did not start") from None
                time.sleep(0.05)

    def stop_lmtp(self):
        self.server.send_signal(signal.SIGTERM)
        if self.server.wait(timeout=60) != 0:
            raise SystemExit(f"lda lmtp exited {self.server.returncode}")

    def delivered(self):
        return sum(1 for _ in (self.root / "state").glob("databases/*/*/*/new/*"))


def lmtp_session(port, messages, recipients):
    """One session: LHLO, then MAIL, RCPT..., DATA per message; every
    recipient must get its own 250 after DATA (RFC 2033 section 4.2)."""
    with smtplib.LMTP("127.0.0.1", port, timeout=120) as lmtp:
        lmtp.ehlo_or_helo_if_needed()
        for tag in messages:
            code, reply = lmtp.mail(SENDER)
            assert code == 250, reply
            for recipient in recipients:
                code, reply = lmtp.rcpt(recipient)
                assert code == 250, reply
            # smtplib reads the first reply after DATA; LMTP sends one each
            replies = [lmtp.data(message(tag))] + [lmtp.getreply() for _ in recipients[1:]]
            assert all(code == 250 for code, _ in replies), replies


def deliver_once(site, tag, recipient):
    subprocess.run([site.lda, "deliver", "-f", SENDER, recipient], input=message(tag),
                   env=site.env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def run_lmtp(site, label, sessions, per_session, recipients, concurrency):
    jobs = [[f"{label}-s{s}-m{m}" for m in range(per_session)] for s in range(sessions)]
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda tags: lmtp_session(site.port, tags, recipients), jobs))


def run_deliver(site, label, sessions, per_session, recipients, concurrency):
    jobs = [(f"{label}-s{s}-m{m}", r) for s in range(sessions) for m in range(per_session)
            for r in recipients]
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda job: deliver_once(site, *job), jobs))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--messages", type=int, default=5, help="per session")
    parser.add_argument("--workers", type=int, default=None,
                        help="lda lmtp --workers (default: lmtp_workers, none)")
    parser.add_argument("--processes", type=int, default=None,
                        help="lda lmtp --processes (default: lmtp_processes, four per CPU)")
    args = parser.parse_args()
    if args.sessions < max(CONCURRENCY):
        parser.error(f"--sessions must be at least {max(CONCURRENCY)}, the most concurrent")
    lda = installed_lda()
    if lda is None:
        raise SystemExit("the lda command is not installed (pip install .)")
    messages = args.sessions * args.messages
    given = {"--workers": args.workers, "--processes": args.processes}
    options = " ".join(f"{k} {'default' if v is None else v}" for k, v in given.items())
    print(f"3 KB messages, {args.sessions} sessions x {args.messages} messages = {messages} "
          f"per row; lda lmtp {options}; {os.cpu_count()} CPUs")
    print(f"{'path':8} {'rcpts':>5} {'concurrent':>10} {'messages':>8} {'deliveries':>10} "
          f"{'seconds':>8} {'msg/s':>8} {'deliv/s':>8}")
    with tempfile.TemporaryDirectory(prefix="lda-bench-lmtp-") as tmp:
        site = Site(Path(tmp), lda)
        site.start_lmtp(args.workers, args.processes)
        try:
            for path, run in (("lmtp", run_lmtp), ("deliver", run_deliver)):
                for count in RECIPIENTS:
                    for concurrency in CONCURRENCY:
                        label = f"{path}-{count}-{concurrency}"
                        before = site.delivered()
                        start = time.perf_counter()
                        run(site, label, args.sessions, args.messages,
                            site.addresses[:count], concurrency)
                        seconds = time.perf_counter() - start
                        deliveries = site.delivered() - before
                        assert deliveries == messages * count, (deliveries, messages * count)
                        print(f"{path:8} {count:5} {concurrency:10} {messages:8} "
                              f"{deliveries:10} {seconds:8.2f} {messages / seconds:8.1f} "
                              f"{deliveries / seconds:8.1f}", flush=True)
        finally:
            site.stop_lmtp()


if __name__ == "__main__":
    main()

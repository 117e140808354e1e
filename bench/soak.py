"""Soak: the crash, race and fault drivers of tests/test_crash.py,
tests/test_races.py and tests/test_faults.py with bigger counts.

    python bench/soak.py [--kills 2000] [--races 3] [--power-cuts 10]
                         [--seed N] [--keep]

--kills SIGKILLs in all, spread over the four crash cases (per-user and an
alias to three mailboxes, small and 1-5 MB messages); --races multiplies the
race counts of the tests (processes, rounds, messages, moves); --power-cuts
ext4 shutdowns mid-delivery, and a disk-full run (both as root only).
Prints the figures of each part, then every finding; exits 1 if there is
one.  Nothing is asserted along the way, so one finding does not hide the
next.
"""

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

import pytest  # noqa: E402 - the drivers skip with pytest.skip

import test_crash  # noqa: E402
import test_faults  # noqa: E402
import test_races  # noqa: E402
from conftest import Lda, Site, clean_env  # noqa: E402


class Soak:
    def __init__(self, root, seed):
        self.root = root
        self.seed = seed
        self.rng = random.Random(seed)
        self.findings = []
        self.figures = {}
        self.counter = 0

    def fresh(self, name):
        self.counter += 1
        path = self.root / f"{self.counter:03d}-{name}"
        path.mkdir()
        return path

    def user(self, name):
        home = self.fresh(name) / "home"
        home.mkdir()
        lda = Lda(clean_env(home))
        lda.home, lda.maildir = home, home / "Maildir"
        lda.state = home / ".local" / "state" / "lda"
        return lda

    def site(self, name, **settings):
        return Site(self.fresh(name), **settings)

    def part(self, title, run):
        start = time.monotonic()
        try:
            line, findings = run()
        except pytest.skip.Exception as e:
            line, findings = f"skipped: {e}", []
        seconds = time.monotonic() - start
        print(f"{title}: {line} [{seconds:.0f}s]", flush=True)
        self.findings += [f"{title}: {f}" for f in findings]


def crash(soak, kills):
    total = test_crash.CrashStats()
    cases = [("user", False), ("user", True), ("site", False), ("site", True),
             ("recipients", False), ("lmtp", False)]
    for n, (mode, big) in enumerate(cases):
        share = kills // len(cases) + (n < kills % len(cases))

        def run(mode=mode, big=big, share=share):
            stats = test_crash.run_case(mode, big, share, soak.fresh(f"crash-{mode}"),
                                        seed=soak.rng.randrange(1 << 32))
            total.add(stats)
            return stats.summary(), stats.findings

        soak.part(f"crash {mode} {'1-5 MB' if big else 'small'}", run)
    soak.figures["crash"] = total
    print(f"crash, all cases: {total.summary()}", flush=True)


def races(soak, scale):
    seed = soak.rng.randrange(1 << 30)
    figures = soak.figures.setdefault("races", [])

    def record(race, extra=""):
        figures.append(race)
        return race.summary() + extra, race.findings

    def same():
        site = soak.site("same")
        for address in test_races.TEAM:
            site.create(address)
        return record(test_races.same_message_race(site, site.root / "msgs",
                                                   rounds=3 * scale, processes=50))

    def fresh():
        results = [test_races.fresh_user_race(soak.user("fresh"), soak.fresh("fresh-msgs"),
                                              processes=50)
                   for _ in range(scale)]
        race = test_races.Race(f"{scale} x 50 processes x fresh per-user state")
        for r in results:
            race.deliveries += r.deliveries
            race.attempts += r.attempts
            race.findings += r.findings
        return record(race)

    def cleanup():
        race = test_races.cleanup_race(
            lambda **settings: soak.site("cleanup", **settings), soak.fresh("cleanup-msgs"),
            distinct=50 * scale, repeated=15 * scale, expired=15 * scale, workers=6,
            seed=seed)
        return record(race, f"; {race.deleted} expired rows deleted meanwhile")

    def quota():
        return record(test_races.quota_race(soak.site("quota"), soak.fresh("quota-msgs"),
                                            distinct=60 * scale, repeated=15 * scale,
                                            workers=6, seed=seed))

    def sampled():
        return record(test_races.quota_sample_race(
            soak.site("sampled"), soak.fresh("sampled-msgs"), rounds=15 * scale,
            per_round=8, seed=seed))

    def move():
        return record(test_races.move_race(soak.site("move"), soak.fresh("move-msgs"),
                                           processes=50, messages_per_process=4 * scale,
                                           copies=2, moves=6 * scale, seed=seed))

    for title, run in [("race same message", same), ("race fresh state", fresh),
                       ("race dedup cleanup", cleanup), ("race quota recalc", quota),
                       ("race quota sampled", sampled), ("race mailbox move", move)]:
        soak.part(title, run)


def faults(soak, power_cuts):
    figures = soak.figures.setdefault("faults", {})

    def disk_full():
        user = soak.user("disk-full")
        with test_faults.tmpfs(user.home, "2m"):
            ledger, deferred = test_faults.disk_full_run(
                user.home, user.env, soak.fresh("disk-full-msgs"), soak.rng)
        figures["disk full deliveries"] = len(ledger.outcome)
        return (f"{len(ledger.outcome)} deliveries, {len(deferred)} deferred and "
                f"retried, reasons {sorted(ledger.reasons)}",
                ledger.findings + ledger.tracebacks)

    def power_cut():
        user = soak.user("power-cut")
        ledger = test_faults.Ledger(user.maildir, soak.fresh("power-cut-msgs"))
        return cuts(soak.root / "ext4.img", user.home, ledger, user.env,
                    test_faults.USER_DATABASES)

    def power_cut_team():
        image, mount = soak.root / "ext4-team.img", soak.root / "team-mnt"
        site, boxes = test_faults.team_on_image(soak.root / "team-site", image, mount)
        ledger = test_faults.TeamLedger(boxes, soak.fresh("power-cut-team-msgs"))
        return cuts(image, mount, ledger, site.env, test_faults.SITE_DATABASES)

    def cuts(image, home, ledger, env, databases):
        deferred = []
        for cycle in range(power_cuts):
            deferred += test_faults.shutdown_cycle(image, home, ledger, env, soak.rng,
                                                   cycle, databases)
        figures["power cuts"] = figures.get("power cuts", 0) + power_cuts
        acknowledged = len(ledger.messages) - len(deferred)
        return (f"{power_cuts} shutdowns, {len(ledger.messages)} messages, "
                f"{acknowledged} acknowledged before a cut and intact after it, "
                f"{len(deferred)} deferred and delivered once on retry, "
                f"{len(ledger.tracebacks)} stderr with a traceback",
                ledger.findings + ledger.tracebacks)

    soak.part("fault disk full", disk_full)
    if power_cuts:
        soak.part("fault ext4 shutdown", power_cut)
        soak.part("fault ext4 shutdown, three recipients", power_cut_team)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=2000)
    parser.add_argument("--races", type=int, default=3, help="scale of the race counts")
    parser.add_argument("--power-cuts", type=int, default=10)
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 32))
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lda-soak-"))
    print(f"seed {args.seed}, work directory {root}", flush=True)
    soak = Soak(root, args.seed)
    start = time.monotonic()
    try:
        if args.kills:
            crash(soak, args.kills)
        if args.races:
            races(soak, args.races)
        faults(soak, args.power_cuts)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    total = soak.figures.get("crash")
    races_run = soak.figures.get("races", [])
    print(f"\nin {time.monotonic() - start:.0f}s: "
          f"{total.kills if total else 0} SIGKILLs over {total.messages if total else 0} "
          f"messages; {len(races_run)} races with "
          f"{sum(r.attempts for r in races_run)} delivery attempts and "
          f"{sum(r.admin_runs for r in races_run)} admin runs alongside; fault cases: "
          f"{soak.figures.get('faults', {})}; {len(soak.findings)} findings")
    for finding in soak.findings:
        print(f"  - {finding}")
    return 1 if soak.findings else 0


if __name__ == "__main__":
    sys.exit(main())

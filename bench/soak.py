"""Soak: the chaos e2e test (tests/test_chaos.py) over many seeds and fault rates, with figures.

For every seed and rate profile: both simulators reset to the demo data, faults on both
(tests/e2e.py `chaos_faults`: random 429/500/503/drop/stall/drop_after/stall_after at the
profile's rates, one of every kind and faults on the exactly-once writes at seed-chosen
requests, an outage that fails a run, Basware tokens expiring every few calls), then
master-data, invoices and the answering invoices run, each run again until it succeeds.
With --kills the first run of every step is also SIGKILLed after a seed-chosen number of
requests. The end state is compared with a fault-free run of the same data.

One line per seed and profile: runs needed per step, requests made, fault responses seen
(each one a retry, a re-read or a failed run for the connector), token expiries (401s),
duplicates, records lost, hidden rejections (a record Basware's P2P refused that the ledger
does not call failed, so `audit failures` and replay never show it; the demo data holds
records P2P refuses), other differences from the fault-free end state (the ledger's failures
included), and files or logs holding a planted secret (run logs, Meltano state, the ledger,
both request logs). Exits 1 if any seed has a duplicate, a loss, a hidden rejection, a
difference, a secret, or a step that did not succeed within --max-attempts runs.

    .venv/bin/python bench/soak.py --seeds 50 --start-seed 1 --rates default
    .venv/bin/python bench/soak.py --seeds 10 --rates light,heavy --kills

Not part of `make test` (about a minute and a half per seed and profile on 2 cores).
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from e2e import (  # noqa: E402  (the shared e2e harness)
    CHAOS_RATES,
    JOBS,
    REQUESTS_PER_STEP,
    SEQUENCE,
    Project,
    Snapshot,
    chaos_env,
    chaos_faults,
    differences,
    duplicates,
    hidden_rejections,
    in_flight_env,
    injected_faults,
    missing,
    outputs,
    planted_secrets,
    request_log,
    requests_served,
    reset_sandbox,
    secrets_in,
    set_faults,
    snapshot,
)

from mlc_sandbox.serve import Sandbox, start_sandbox  # noqa: E402


@dataclass
class SeedResult:
    seed: int
    profile: str
    runs: list[int] = field(default_factory=list)  # runs per step of SEQUENCE
    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    token_expiries: int = 0
    duplicates: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # refused by Basware, not failed in the ledger
    other: list[str] = field(default_factory=list)  # differences beyond the above
    secrets: list[str] = field(default_factory=list)
    error: str = ""  # a step that never succeeded
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost or self.hidden or self.other or self.secrets
                    or self.error)


def baseline_of(sandbox: Sandbox, data_seed: int, workdir: Path) -> Snapshot:
    """The end state of a fault-free sequence on this data seed."""
    reset_sandbox(sandbox, data_seed)
    project = Project.create(sandbox, workdir / "baseline")
    for job in SEQUENCE:
        run = project.run(job, name=f"baseline-{job}")
        if not run.ok:
            raise SystemExit(f"the fault-free {job} run failed; see {workdir / 'baseline'}")
    return snapshot(sandbox, project.ledger_url)


def soak_one(sandbox: Sandbox, baseline: Snapshot, seed: int, profile: str, data_seed: int,
             jobs: tuple[str, ...], max_attempts: int, kills: bool, workdir: Path,
             in_flight: int | None = None) -> SeedResult:
    result = SeedResult(seed, profile)
    started = time.monotonic()
    reset_sandbox(sandbox, data_seed)
    servers = (sandbox.sage300.base_url, sandbox.basware.base_url)
    served_before = sum(requests_served(url) for url in servers)
    set_faults(sandbox, *chaos_faults(seed, profile))
    project = Project.create(sandbox, workdir, {**chaos_env(), **in_flight_env(in_flight)})
    kill_points = random.Random(f"kills-{seed}")
    try:
        for step, job in enumerate(SEQUENCE):
            if job not in jobs:
                continue
            runs = 0
            if kills:
                project.run_killed_after(job, kill_points.randint(1, REQUESTS_PER_STEP[step]))
                runs += 1
            runs += len(project.run_until_success(job, max_attempts))
            result.runs.append(runs)
    except (AssertionError, subprocess.TimeoutExpired) as exc:
        result.error = str(exc).splitlines()[0]
    fired = injected_faults(sandbox)
    set_faults(sandbox, None, None)
    result.faults = fired["sage300"] + fired["basware"]
    result.requests = sum(requests_served(url) for url in servers) - served_before
    result.token_expiries = sum(1 for r in request_log(sandbox.basware.base_url)
                                if r["status"] == 401)
    end, baseline = snapshot(sandbox, project.ledger_url).only(jobs), baseline.only(jobs)
    result.duplicates = duplicates(end)
    result.lost = missing(baseline, end)
    result.hidden = hidden_rejections(end)
    known = set(result.duplicates) | set(result.lost) | set(result.hidden)
    result.other = [d for d in differences(baseline, end, limit=1000) if d not in known]
    result.secrets = secrets_in(outputs(project), planted_secrets(sandbox))
    result.seconds = time.monotonic() - started
    return result


HEADER = (f"{'seed':>5} {'rates':<8} {'runs':<8} {'requests':>8} {'faults':>6} {'401s':>5} "
          f"{'dups':>4} {'lost':>4} {'hidden':>6} {'diffs':>5} {'secrets':>7} {'seconds':>7}  "
          "faults by kind")


def line(r: SeedResult) -> str:
    kinds = " ".join(f"{k}:{n}" for k, n in sorted(r.faults.items()))
    runs = "/".join(map(str, r.runs)) + ("!" if r.error else "")
    return (f"{r.seed:>5} {r.profile:<8} {runs:<8} {r.requests:>8} {sum(r.faults.values()):>6} "
            f"{r.token_expiries:>5} {len(r.duplicates):>4} {len(r.lost):>4} "
            f"{len(r.hidden):>6} {len(r.other):>5} {len(r.secrets):>7} {r.seconds:>7.0f}  "
            f"{kinds}")


def totals(results: list[SeedResult]) -> str:
    rows = [HEADER.split("  faults by kind")[0], "-" * 85]
    for profile in dict.fromkeys(r.profile for r in results):
        group = [r for r in results if r.profile == profile]
        runs = [sum(r.runs) for r in group]
        rows.append(
            f"{len(group):>5} {profile:<8} {min(runs)}-{max(runs):<6} "
            f"{sum(r.requests for r in group):>8} "
            f"{sum(sum(r.faults.values()) for r in group):>6} "
            f"{sum(r.token_expiries for r in group):>5} "
            f"{sum(len(r.duplicates) for r in group):>4} {sum(len(r.lost) for r in group):>4} "
            f"{sum(len(r.hidden) for r in group):>6} "
            f"{sum(len(r.other) for r in group):>5} {sum(len(r.secrets) for r in group):>7} "
            f"{sum(r.seconds for r in group):>7.0f}")
    failed_runs = sum(sum(r.runs) - len(r.runs) for r in results)
    rows.append(f"seeds: {len(results)} (first column of the totals); runs beyond one per "
                f"step: {failed_runs}; steps that never succeeded: "
                f"{sum(1 for r in results if r.error)}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=50, help="how many fault seeds")
    parser.add_argument("--start-seed", type=int, default=1)
    parser.add_argument("--rates", default="default",
                        help=f"comma-separated rate profiles: {', '.join(CHAOS_RATES)}")
    parser.add_argument("--jobs", default=",".join(JOBS),
                        help="comma-separated jobs to soak (invoices runs twice: create, "
                             "then answer); only what they write is compared")
    parser.add_argument("--data-seed", type=int, default=0, help="the demo data's seed")
    parser.add_argument("--max-attempts", type=int, default=8, help="runs per step at most")
    parser.add_argument("--kills", action="store_true",
                        help="also SIGKILL the first run of every step at a random point")
    parser.add_argument("--keep", action="store_true", help="keep every seed's files")
    parser.add_argument("--in-flight", type=int, default=None,
                        help="requests in flight per system for every plugin that has "
                             "max_requests_in_flight (default: the plugins' own default)")
    args = parser.parse_args(argv)
    profiles = args.rates.split(",")
    if unknown := [p for p in profiles if p not in CHAOS_RATES]:
        parser.error(f"unknown rate profile(s) {unknown}; known: {list(CHAOS_RATES)}")
    jobs = tuple(args.jobs.split(","))
    if unknown := [j for j in jobs if j not in JOBS]:
        parser.error(f"unknown job(s) {unknown}; known: {list(JOBS)}")

    # SIGTERM unwinds like Ctrl-C, so the run in flight is killed with its process group.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="mlc-soak-"))
    sandbox = start_sandbox(data="demo", seed=args.data_seed)
    print(f"soak: seeds {args.start_seed}..{args.start_seed + args.seeds - 1}, jobs "
          f"{list(jobs)}, rates {profiles}, kills {'on' if args.kills else 'off'}, in flight "
          f"{args.in_flight or 'default'}, data seed {args.data_seed}, "
          f"files under {root}", flush=True)
    results: list[SeedResult] = []
    try:
        baseline = baseline_of(sandbox, args.data_seed, root)
        print(f"baseline: {baseline.counts()}\n{HEADER}", flush=True)
        for seed in range(args.start_seed, args.start_seed + args.seeds):
            for profile in profiles:
                workdir = root / f"seed-{seed}-{profile}"
                result = soak_one(sandbox, baseline, seed, profile, args.data_seed, jobs,
                                  args.max_attempts, args.kills, workdir, args.in_flight)
                results.append(result)
                print(line(result), flush=True)
                for problem in [result.error, *result.duplicates, *result.lost,
                                *result.hidden, *result.other[:5], *result.secrets]:
                    if problem:
                        print(f"      {problem}", flush=True)
                if result.ok and not args.keep:
                    shutil.rmtree(workdir, ignore_errors=True)
    finally:
        sandbox.stop()
    print(totals(results))
    bad = [r for r in results if not r.ok]
    print(f"{'FAILED' if bad else 'OK'}: {len(bad)} of {len(results)} seed runs with a "
          f"duplicate, loss, hidden rejection, difference, secret or unfinished step; files "
          f"under {root}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

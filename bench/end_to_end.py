"""End to end at real-world latency (issue 19, item 3): `meltano run master-data` and
`meltano run invoices` with every Sage 300 request 250 ms slower and every Basware request
300 ms slower (the sandbox's `slow` fault), at 2,000 and 10,000 vendors and 1,000 invoices;
each table sets the requests per system, the sequential bound (requests x latency), the
concurrency bound (/ C, the plugins' requests in flight) and the measured wall time side by
side (bench/latency.py says how). Then tap-sage300's extract against tap-rest-api-msdk at the
same Sage latency.

    .venv/bin/python bench/end_to_end.py                      # 250/300 ms, 2k and 10k vendors, 1k invoices
    .venv/bin/python bench/end_to_end.py --vendors 100000 --jobs master-data --no-peer
    .venv/bin/python bench/end_to_end.py --sage-latency-ms 0 --basware-latency-ms 0  # loopback

`measure` and `print_table` are the loopback table of `meltano run master-data` on the large
data (records per second, where the CPU time went: simulators, tap, target, Meltano), timed
from request_economy.py's runs. Per-process CPU comes from /proc while the run goes
(ProcessSampler), the simulators' from their own process, Meltano's as the rest of what
`meltano run` and its children used.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import peer
from _common import (
    MeltanoProject,
    ProcessSampler,
    Sandbox,
    alternate,
    machine,
    median,
    run_measured,
    say,
    table,
)
from latency import (
    JOB_PLUGINS,
    LatencyRow,
    add_latency_args,
    count_requests,
    job_limits,
    latency_table,
    marks,
    set_latency,
)

from mlc_sandbox.sage300 import DEFAULT_SETTINGS

SAGE_PAGE_SIZE = int(DEFAULT_SETTINGS["page_size"])  # the simulator's, as web.config's
TAP_RECORDS = 221_293  # what tap-sage300 reads from the large data for job master-data


def plugin_of(cmdline: str) -> str:
    for name in ("tap-sage300", "target-basware"):
        if f"bin/{name}" in cmdline:
            return name
    return "meltano"


def measure(project: MeltanoProject, sandbox: Sandbox, label: str, *args: str
            ) -> list[Any]:
    sampler = ProcessSampler(plugin_of)
    simulators_before = sandbox.cpu_seconds()
    measured = project.run(*args, sampler=sampler)
    simulators = sandbox.cpu_seconds() - simulators_before
    cpu = sampler.by_name()
    tap, target = cpu.get("tap-sage300", 0.0), cpu.get("target-basware", 0.0)
    meltano = max(0.0, measured.cpu - tap - target)
    total = simulators + tap + target + meltano
    share = {name: f"{100 * seconds / total:.0f}% ({seconds:.1f} s)" for name, seconds in
             (("sim", simulators), ("tap", tap), ("target", target), ("meltano", meltano))}
    return [label, measured.wall, f"{TAP_RECORDS / measured.wall:,.0f}", share["sim"],
            share["tap"], share["target"], share["meltano"]]


def print_table(rows: list[list[Any]]) -> None:
    table("End to end: meltano run master-data, large data",
          ["run", "wall s", "tap records/s", "simulators CPU", "tap-sage300 CPU",
           "target-basware CPU", "Meltano CPU"], rows,
          [f"{TAP_RECORDS:,} records read by the tap in a full read (vendors, POs, PO lines, "
           "accounts, cost centers, terms of both companies), with the audit ledger on "
           "(SQLite) for both plugins. Shares are of the CPU time all four used (2 cores). "
           "An incremental re-run reads only the boundary day, so its records/s is "
           "nominal."])


def latency_run(project: MeltanoProject, sandbox: Sandbox, label: str, data: str,
                latency_ms: dict[str, int], job: str, *args: str) -> LatencyRow:
    """One `meltano run` at latency: its requests per system, wall time and CPU (Meltano and
    the plugins, from the child's rusage, plus the simulators')."""
    since = marks(sandbox)
    simulators_before = sandbox.cpu_seconds()
    say(f"latency: {job}, {data}, {label} ...")
    measured = project.run("run", *args, job)
    row = LatencyRow(label, data, count_requests(sandbox, since), measured.wall, latency_ms,
                     job_limits(job))
    row.cpu = measured.cpu + sandbox.cpu_seconds() - simulators_before
    return row


def peer_at_latency(sandbox: Sandbox, work: Path, data: str, sage_ms: int, repeats: int
                    ) -> list[list[Any]]:
    """tap-sage300 and tap-rest-api-msdk reading the same vendors and POs at Sage's latency:
    set-up and warm-ups on loopback (untimed), then `repeats` alternating timed runs each."""
    set_latency(sandbox, 0, 0)
    both = peer.setup(sandbox, work)
    set_latency(sandbox, sage_ms, 0)
    runs: dict[str, list[tuple[float, float, int]]] = {"ours": [], "peer": []}
    kinds: dict[str, Counter[str]] = {}

    def timed(name: str, command: list[str]) -> float:
        since = marks(sandbox)
        measured = run_measured(command)
        kinds[name] = count_requests(sandbox, since)["sage300"]
        runs[name].append((measured.wall, measured.cpu, sum(kinds[name].values())))
        return measured.wall

    say(f"latency: peer comparison, {data}, {repeats} run(s) each ...")
    alternate({"ours": lambda: timed("ours", both.ours),
               "peer": lambda: timed("peer", both.peer)}, repeats)
    rows = []
    ours_wall = median(wall for wall, _, _ in runs["ours"])
    for name, tap, records in (("ours", "tap-sage300", both.ours_records),
                               ("peer", "tap-rest-api-msdk 1.4.2", both.peer_records)):
        wall = median(w for w, _, _ in runs[name])
        requests = runs[name][0][2]
        bound = requests * sage_ms / 1000
        rows.append([tap, data, requests, records, f"{bound:,.1f}", f"{wall:,.1f}",
                     f"{wall - bound:+,.1f}", f"{median(c for _, c, _ in runs[name]):,.1f}",
                     f"{wall / ours_wall:.2f}"])
        PEER_KINDS.append(f"- {tap}, {data}: " + ", ".join(
            f"{kind} {n:,}" for kind, n in sorted(kinds[name].items(), key=lambda kv: -kv[1])))
    return rows


PEER_KINDS: list[str] = []  # the peer table's requests by kind, one line per tap and size


def run_latency(sage_ms: int, basware_ms: int, jobs: list[str], vendor_sizes: list[str],
                invoice_sizes: list[int], with_peer: bool, peer_repeats: int = 1,
                sage_page_size: int | None = None) -> dict[str, list[Any]]:
    """The latency tables: each job at each size (first run and an unchanged re-run), and
    the extract against tap-rest-api-msdk at the same Sage latency. `sage_page_size`: the
    Sage simulator's PageSize (web.config's cap on a page; None: its default, 100)."""
    latency = {"sage300": sage_ms, "basware": basware_ms}
    results: dict[str, list[Any]] = {}
    say(f"latency: Sage +{sage_ms} ms, Basware +{basware_ms} ms per request; "
        f"{machine()}")

    def reset(data: str) -> None:
        sandbox.reset(data)
        if sage_page_size:
            sandbox.admin("PATCH", "sage300", "settings", json={"page_size": sage_page_size})

    with Sandbox("demo") as sandbox, tempfile.TemporaryDirectory() as tmp:
        if "master-data" in jobs:
            rows = []
            for size in vendor_sizes:
                reset(size)
                set_latency(sandbox, sage_ms, basware_ms)
                workdir = Path(tmp) / f"master-data-{size}"
                workdir.mkdir()
                project = MeltanoProject(sandbox, workdir)
                rows.append(latency_run(project, sandbox, "first full sync", size, latency,
                                        "master-data"))
                rows.append(latency_run(project, sandbox, "re-run, nothing changed", size,
                                        latency, "master-data"))
            results["master-data"] = rows
            print_latency("master-data", rows, sage_page_size)
        if "invoices" in jobs:
            rows = []
            for count in invoice_sizes:
                data = f"invoices-{count}"
                reset(data)
                set_latency(sandbox, sage_ms, basware_ms)
                workdir = Path(tmp) / data
                workdir.mkdir()
                project = MeltanoProject(sandbox, workdir)
                rows.append(latency_run(project, sandbox, f"{count + DEMO_INVOICES:,} waiting",
                                        data, latency, "invoices"))
                rows.append(latency_run(project, sandbox, "re-run, nothing waiting", data,
                                        latency, "invoices"))
            results["invoices"] = rows
            print_latency("invoices", rows, sage_page_size)
        if with_peer:
            peer.require_peer()
            rows = []
            for size in vendor_sizes:
                reset(size)
                workdir = Path(tmp) / f"peer-{size}"
                workdir.mkdir()
                rows += peer_at_latency(sandbox, workdir, size, sage_ms, peer_repeats)
            results["peer"] = rows
            table(f"Latency: the extract, tap-sage300 vs tap-rest-api-msdk, Sage +{sage_ms} ms, "
                  f"Sage PageSize {sage_page_size or SAGE_PAGE_SIZE}",
                  ["tap", "data", "Sage requests", "records", "bound s (requests x latency)",
                   "wall s", "wall - bound s", "CPU s", "wall vs ours"], rows,
                  ["Both read vendors and POs of both companies with the same $select, one "
                   "request at a time (C = 1; ours asks for the next page before it decodes "
                   "the current one); ours also emits the PO lines as records, and checks the "
                   "install's $metadata first. Set-up, discovery and warm-ups on loopback, "
                   f"untimed; {peer_repeats} timed run(s) each, alternating (median).",
                   "", "Requests by kind:", "", *PEER_KINDS])
    return results


DEMO_INVOICES = 28  # the demo data's own approved invoices, added to every invoices-N


def print_latency(job: str, rows: list[LatencyRow], sage_page_size: int | None = None
                  ) -> None:
    page = f"Sage PageSize {sage_page_size or SAGE_PAGE_SIZE}"
    latency_table(f"Latency: meltano run {job}, {page}", rows, JOB_PLUGINS[job], [
        "", "CPU s per run (Meltano, both plugins and both simulators): " + ", ".join(
            f"{row.label} {row.data} {row.cpu:,.1f}" for row in rows) + "."])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_latency_args(parser)
    parser.add_argument("--jobs", default="master-data,invoices",
                        help="comma-separated: master-data, invoices (default both)")
    parser.add_argument("--vendors", default="2000,10000",
                        help="sandbox data for master-data: vendor counts or `large` "
                             "(default 2000,10000)")
    parser.add_argument("--invoices", default="1000",
                        help="invoices waiting in Basware for job invoices (default 1000)")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True,
                        help="also the extract against tap-rest-api-msdk (default on)")
    parser.add_argument("--peer-repeats", type=int, default=1)
    parser.add_argument("--sage-page-size", type=int, default=None, metavar="N",
                        help="the Sage simulator's PageSize, web.config's cap per page "
                             f"(default {SAGE_PAGE_SIZE}, Sage's own default)")
    args = parser.parse_args(argv)
    run_latency(args.sage_latency_ms, args.basware_latency_ms, args.jobs.split(","),
                [v for v in args.vendors.split(",") if v],
                [int(n) for n in args.invoices.split(",") if n], args.peer, args.peer_repeats,
                args.sage_page_size)


if __name__ == "__main__":
    main()

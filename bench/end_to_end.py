"""End to end: `meltano run master-data` on the large data, first full sync and an unchanged
re-run, with records per second and where the CPU time went (simulators, tap, target,
Meltano).

Per-process CPU comes from /proc while the run goes (ProcessSampler), the simulators' from
their own process, Meltano's as the rest of what `meltano run` and its children used.

    .venv/bin/python bench/end_to_end.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from _common import MeltanoProject, ProcessSampler, Sandbox, say, table

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


def main() -> None:
    say("end to end: starting the sandbox with the large data ...")
    with Sandbox("large") as sandbox, tempfile.TemporaryDirectory() as tmp:
        project = MeltanoProject(sandbox, Path(tmp))
        rows = [measure(project, sandbox, "first full sync", "run", "master-data")]
        say("end to end: the unchanged re-run ...")
        rows.append(measure(project, sandbox, "re-run, nothing changed", "run", "master-data"))
    print_table(rows)


if __name__ == "__main__":
    main()

"""What tap-sage300's `read` entries cost (issue 17: they are on by default, so
`ml-connector audit trace` follows a record from its read in Sage): `meltano run master-data`
with the tap's ledger on (the default) and off (`TAP_SAGE300_LEDGER_URL=off`), on one data set,
alternating. Per mode: wall time, the tap's CPU, the ledger's size on disk (after a checkpoint)
and its rows, ledger_refs' rows and bytes; then the difference per record read.

    .venv/bin/python bench/ledger_reads.py --data demo --repeats 3
    .venv/bin/python bench/ledger_reads.py --data 20000 --repeats 2
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from _common import (
    BIN,
    MeltanoProject,
    ProcessSampler,
    Sandbox,
    median,
    run_measured,
    say,
    table,
    tap_config,
    write_json,
)


def plugin_of(cmdline: str) -> str:
    for name in ("tap-sage300", "target-basware"):
        if f"bin/{name}" in cmdline:
            return name
    return "meltano"


def ledger_figures(path: Path) -> dict[str, Any]:
    """Size on disk after a checkpoint (the WAL folded in), rows, and ledger_refs' share."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        entries = conn.execute("SELECT count(*) FROM ledger_entries").fetchone()[0]
        reads = conn.execute("SELECT count(*) FROM ledger_entries WHERE plugin = 'tap-sage300'"
                             ).fetchone()[0]
        refs = conn.execute("SELECT count(*) FROM ledger_refs").fetchone()[0]
        try:  # dbstat: bytes per table and index (SQLite built with SQLITE_ENABLE_DBSTAT_VTAB)
            refs_bytes = conn.execute("SELECT sum(pgsize) FROM dbstat WHERE name = 'ledger_refs'"
                                      ).fetchone()[0]
        except sqlite3.OperationalError:
            refs_bytes = None
    return {"bytes": path.stat().st_size, "entries": entries, "reads": reads, "refs": refs,
            "refs_bytes": refs_bytes}


def tap_alone(sandbox: Sandbox, reads: bool) -> tuple[float, float, int]:
    """tap-sage300's full read on its own, output to /dev/null: (wall s, CPU s, ledger bytes).
    The cost of the read entries without the target and Meltano around them."""
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Path(tmp) / "ledger.sqlite"
        config = write_json(Path(tmp), "config.json", tap_config(
            sandbox, ledger_url=f"sqlite:///{ledger}" if reads else "off"))
        measured = run_measured([str(BIN / "tap-sage300"), "--config", str(config)])
        size = ledger_figures(ledger)["bytes"] if reads else 0
    return measured.wall, measured.cpu, size


def one_run(sandbox: Sandbox, data: str, reads: bool) -> dict[str, Any]:
    """A first full sync of master-data in a new project, then an unchanged re-run."""
    with tempfile.TemporaryDirectory() as tmp:
        project = MeltanoProject(sandbox, Path(tmp))
        if not reads:
            project.env["TAP_SAGE300_LEDGER_URL"] = "off"
        result: dict[str, Any] = {}
        for label in ("first", "again"):
            sampler = ProcessSampler(plugin_of)
            measured = project.run("run", "master-data", sampler=sampler)
            cpu = sampler.by_name()
            result[label] = {"wall": measured.wall, "tap": cpu.get("tap-sage300", 0.0),
                             "target": cpu.get("target-basware", 0.0)}
            if label == "first":  # the ledger a full sync leaves
                result["ledger"] = ledger_figures(
                    Path(project.ledger_url.removeprefix("sqlite:///")))
        # The next full sync starts from the same simulator state (Basware empty again).
        sandbox.reset(data)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="demo")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    say(f"ledger reads: sandbox --data {args.data} ...")
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    alone: dict[bool, list[tuple[float, float, int]]] = {True: [], False: []}
    with Sandbox(args.data) as sandbox:
        for repeat in range(args.repeats):
            for reads in (True, False) if repeat % 2 == 0 else (False, True):
                say(f"  repeat {repeat + 1}, tap-sage300 alone, ledger {'on' if reads else 'off'}")
                alone[reads].append(tap_alone(sandbox, reads))
        for repeat in range(args.repeats):
            for reads in (True, False) if repeat % 2 == 0 else (False, True):
                say(f"  repeat {repeat + 1}, tap-sage300 ledger {'on' if reads else 'off'}")
                runs[reads].append(one_run(sandbox, args.data, reads))
    on, off = runs[True], runs[False]
    ledger_on, ledger_off = on[-1]["ledger"], off[-1]["ledger"]
    records = ledger_on["reads"]

    def med(found: list[dict[str, Any]], run: str, what: str) -> float:
        return median(r[run][what] for r in found)

    rows = []
    for label, found, ledger in (("on (default)", on, ledger_on), ("off", off, ledger_off)):
        rows.append([label, f"{med(found, 'first', 'wall'):.2f}",
                     f"{med(found, 'first', 'tap'):.2f}", f"{med(found, 'again', 'wall'):.2f}",
                     f"{med(found, 'again', 'tap'):.2f}", f"{ledger['bytes'] / 2**20:.1f}",
                     f"{ledger['entries']:,}", f"{ledger['refs']:,}",
                     "" if ledger["refs_bytes"] is None
                     else f"{ledger['refs_bytes'] / 2**20:.1f}"])
    alone_rows = []
    for label, reads in (("on (default)", True), ("off", False)):
        alone_rows.append([label, f"{median(w for w, _, _ in alone[reads]):.2f}",
                           f"{median(c for _, c, _ in alone[reads]):.2f}",
                           f"{alone[reads][-1][2] / 2**20:.1f}"])
    cpu_per = (median(c for _, c, _ in alone[True]) - median(c for _, c, _ in alone[False])
               ) / records * 1e6
    wall_per = (median(w for w, _, _ in alone[True]) - median(w for w, _, _ in alone[False])
                ) / records * 1e6
    table(f"tap-sage300 alone, full read to /dev/null, --data {args.data}",
          ["tap ledger", "wall s", "CPU s", "ledger MiB"], alone_rows,
          [f"Medians of {args.repeats} alternating runs per mode; CPU from the tap's own "
           f"rusage. Per record read: {wall_per:+.0f} µs wall, {cpu_per:+.0f} µs CPU."])
    per = {what: (med(on, "first", what) - med(off, "first", what)) / records * 1e6
           for what in ("wall", "tap")}
    size = (ledger_on["bytes"] - ledger_off["bytes"]) / records
    table(f"tap-sage300's read entries: meltano run master-data, --data {args.data}",
          ["tap ledger", "first sync wall s", "tap CPU s", "unchanged re-run wall s",
           "tap CPU s", "ledger MiB", "entries", "ledger_refs rows", "ledger_refs MiB"], rows,
          [f"{records:,} records read (and recorded) by tap-sage300 in the first sync, its "
           "ledger as that sync leaves it (after a checkpoint); "
           f"medians of {args.repeats} alternating runs per mode. Per record read: "
           f"{per['wall']:+.0f} µs wall, {per['tap']:+.0f} µs tap CPU, {size:+,.0f} bytes "
           "of ledger."])


if __name__ == "__main__":
    main()

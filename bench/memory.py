"""Memory: peak RSS of each plugin at 1,000, 10,000 and 100,000 records.

One process per measurement, its peak from its own /proc VmHWM (see _common.PeakRss).

Master data (job master-data): the sandbox is reseeded with N bulk vendors (and N/5 POs with
five lines each) for each size.

- tap-sage300: job master-data's streams of both companies, output discarded.
- target-basware: fed from a file of the tap's vendors and payment terms at that size (N
  vendors, written by an untimed tap run), with meltano.yml's config (stream maps included),
  posting to the Basware simulator, with its ledger.

Invoices (job invoices): the sandbox is reseeded with the demo plus N approved invoices
waiting in Basware's export queue (data ``invoices-N``, both companies) for each size.

- tap-basware: the accounting_documents stream of both company codes with acknowledge on, as
  job invoices runs it (every invoice is acknowledged after its record is written), output
  to a file.
- target-sage300: fed from that file, with meltano.yml's config (stream maps included),
  creating the AP batches in the Sage 300 simulator, with its ledger.

Flat means the 100,000 figure is within 1.5x of the 1,000 figure: no whole-table buffering.
main() returns {plugin: flat} for all four plugins (bench/run_all.py). About 20 minutes on 2
cores, most of it the invoice plugins at 100,000 (every invoice acknowledged one by one).

    .venv/bin/python bench/memory.py
    .venv/bin/python bench/memory.py --jobs invoices --sizes 1000,30000   # a part of it
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from _common import (
    BIN,
    MASTER_DATA_STREAMS,
    ROOT,
    Measured,
    Sandbox,
    basware_tap_config,
    discovered_catalog,
    run_measured,
    say,
    table,
    tap_catalog,
    tap_config,
    write_json,
)

SIZES = [1_000, 10_000, 100_000]
FLAT = 1.5
PLUGINS = ["tap-sage300", "target-basware", "tap-basware", "target-sage300"]
INVOICE_STREAM = "accounting_documents"  # what meltano.yml selects for job invoices

Row = list[Any]


def target_config(sandbox: Sandbox, ledger_url: str, plugin: str = "target-basware") -> dict:
    """meltano.yml's config of a target in the sandbox environment (stream maps included),
    pointed at this sandbox, with its own ledger."""
    sage = sandbox.info["sage300"]
    env = {**os.environ, "MELTANO_ENVIRONMENT": "sandbox",
           "TARGET_BASWARE_BASE_URL": sandbox.basware_url,
           "TARGET_SAGE300_BASE_URL": sage["base_url"],
           "TARGET_SAGE300_USERNAME": sage["username"],
           "TARGET_SAGE300_PASSWORD": sage["password"]}
    config = json.loads(subprocess.run(
        [str(BIN / "meltano"), "invoke", "--dump=config", plugin], cwd=ROOT, env=env,
        capture_output=True, text=True, check=True).stdout)
    return {**config, "ledger_url": ledger_url}


def count_records(path: Path) -> int:
    with path.open("rb") as lines:
        return sum(1 for line in lines if line.startswith(b'{"type":"RECORD"'))


def note(peaks: dict[str, list[float]], rows: list[Row], plugin: str, data: str,
         records: int, measured: Measured) -> None:
    """One measurement: its peak for the flatness check, its row for the table."""
    peaks[plugin].append(measured.max_rss_mb)
    rows.append([plugin, data, f"{records:,}", measured.max_rss_mb, measured.wall])


def master_data(sandbox: Sandbox, work: Path, peaks: dict[str, list[float]],
                rows: list[Row], sizes: list[int]) -> None:
    config = write_json(work, "tap.json", tap_config(sandbox))
    full = write_json(work, "full.json", tap_catalog(config, MASTER_DATA_STREAMS))
    vendors = write_json(work, "vendors.json", tap_catalog(config, ["payment_terms", "vendors"]))
    for size in sizes:
        say(f"memory: {size:,} vendors ...")
        sandbox.reset(str(size))
        tap = [str(BIN / "tap-sage300"), "--config", str(config)]
        output = work / "full.singer"
        with output.open("wb") as out:
            measured = run_measured([*tap, "--catalog", str(full)], stdout=out)
        note(peaks, rows, "tap-sage300", f"{size:,} vendors", count_records(output), measured)
        with output.open("wb") as out:
            run_measured([*tap, "--catalog", str(vendors)], stdout=out)
        ledger = work / f"ledger-{size}.sqlite"
        target = write_json(work, "target.json", target_config(sandbox, f"sqlite:///{ledger}"))
        with output.open("rb") as records:
            measured = run_measured([str(BIN / "target-basware"), "--config", str(target)],
                                    stdin=records)
        note(peaks, rows, "target-basware", f"{size:,} vendors", count_records(output),
             measured)


def invoices(sandbox: Sandbox, work: Path, peaks: dict[str, list[float]],
             rows: list[Row], sizes: list[int]) -> None:
    probe = write_json(work, "basware-probe.json", basware_tap_config(sandbox))
    catalog = write_json(work, "invoices-catalog.json",
                         discovered_catalog("tap-basware", probe, [INVOICE_STREAM]))
    for size in sizes:
        say(f"memory: {size:,} invoices ...")
        sandbox.reset(f"invoices-{size}")
        # One ledger per size for both plugins, as the pipeline shares one.
        ledger_url = f"sqlite:///{work / f'invoices-ledger-{size}.sqlite'}"
        tap = write_json(work, "basware.json", basware_tap_config(
            sandbox, acknowledge=True, ledger_url=ledger_url))
        output = work / "invoices.singer"
        with output.open("wb") as out:
            measured = run_measured([str(BIN / "tap-basware"), "--config", str(tap),
                                     "--catalog", str(catalog)], stdout=out)
        records = count_records(output)
        note(peaks, rows, "tap-basware", f"{size:,} invoices", records, measured)
        target = write_json(work, "sage.json",
                            target_config(sandbox, ledger_url, "target-sage300"))
        with output.open("rb") as stdin:
            measured = run_measured([str(BIN / "target-sage300"), "--config", str(target)],
                                    stdin=stdin)
        note(peaks, rows, "target-sage300", f"{size:,} invoices", records, measured)


JOBS = {"master-data": (master_data, PLUGINS[:2]), "invoices": (invoices, PLUGINS[2:])}


def main(sizes: list[int] = SIZES, jobs: tuple[str, ...] = tuple(JOBS)) -> dict[str, bool]:
    say("memory: starting the sandbox ...")
    rows: list[Row] = []
    plugins = [plugin for job in jobs for plugin in JOBS[job][1]]
    peaks: dict[str, list[float]] = {plugin: [] for plugin in plugins}
    with Sandbox(str(sizes[0])) as sandbox, tempfile.TemporaryDirectory() as tmp:
        for job in jobs:
            JOBS[job][0](sandbox, Path(tmp), peaks, rows, sizes)
    flat = {plugin: values[-1] <= FLAT * values[0] for plugin, values in peaks.items()}
    rows.sort(key=lambda row: PLUGINS.index(row[0]))  # stable: sizes stay in order
    table("Memory: peak RSS per plugin process", ["plugin", "sandbox data", "records",
                                                   "peak RSS MB", "wall s"], rows,
          ["Records: RECORD messages the tap wrote and the target read. tap-basware "
           "acknowledges every invoice it emits, as job invoices does; the demo data adds 28 "
           "invoices to each size.",
           f"Flat = peak at {sizes[-1]:,} within {FLAT}x of the peak at {sizes[0]:,}: "
           + "; ".join(f"{plugin} {values[-1] / values[0]:.2f}x "
                       f"({'flat' if flat[plugin] else 'NOT flat'})"
                       for plugin, values in peaks.items())])
    return flat


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="records per measurement, comma-separated (flat: last vs first)")
    parser.add_argument("--jobs", default=",".join(JOBS),
                        help=f"which plugins: {', '.join(JOBS)} (comma-separated)")
    arguments = parser.parse_args()
    main([int(size) for size in arguments.sizes.split(",")], tuple(arguments.jobs.split(",")))

"""Memory: peak RSS of each master-data plugin at 1,000, 10,000 and 100,000 records.

One process per measurement, its peak from its own rusage (os.wait4). The sandbox is reseeded
with N bulk vendors (and N/5 POs with five lines each) for each size.

- tap-sage300: job master-data's streams of both companies, output discarded.
- target-basware: fed from a file of the tap's vendors and payment terms at that size (N
  vendors, written by an untimed tap run), with meltano.yml's config (stream maps included),
  posting to the Basware simulator, with its ledger.

Flat means the 100,000 figure is within 1.5x of the 1,000 figure: no whole-table buffering.

    .venv/bin/python bench/memory.py
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from _common import (
    BIN,
    MASTER_DATA_STREAMS,
    ROOT,
    Sandbox,
    run_measured,
    say,
    table,
    tap_catalog,
    tap_config,
    write_json,
)

SIZES = [1_000, 10_000, 100_000]
FLAT = 1.5


def target_config(sandbox: Sandbox, ledger_url: str) -> dict:
    env = {**os.environ, "MELTANO_ENVIRONMENT": "sandbox",
           "TARGET_BASWARE_BASE_URL": sandbox.basware_url}
    config = json.loads(subprocess.run(
        [str(BIN / "meltano"), "invoke", "--dump=config", "target-basware"], cwd=ROOT, env=env,
        capture_output=True, text=True, check=True).stdout)
    return {**config, "ledger_url": ledger_url}


def count_records(path: Path) -> int:
    with path.open("rb") as lines:
        return sum(1 for line in lines if line.startswith(b'{"type":"RECORD"'))


def main() -> dict[str, bool]:
    say("memory: starting the sandbox ...")
    rows, peaks = [], {"tap-sage300": [], "target-basware": []}
    with Sandbox(str(SIZES[0])) as sandbox, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = write_json(work, "tap.json", tap_config(sandbox))
        full = write_json(work, "full.json", tap_catalog(config, MASTER_DATA_STREAMS))
        vendors = write_json(work, "vendors.json", tap_catalog(config, ["payment_terms",
                                                                         "vendors"]))
        for size in SIZES:
            say(f"memory: {size:,} vendors ...")
            sandbox.reset(str(size))
            tap = [str(BIN / "tap-sage300"), "--config", str(config)]
            output = work / "full.singer"
            with output.open("wb") as out:
                measured = run_measured([*tap, "--catalog", str(full)], stdout=out)
            peaks["tap-sage300"].append(measured.max_rss_mb)
            rows.append(["tap-sage300", f"{size:,}", f"{count_records(output):,}",
                         measured.max_rss_mb, measured.wall])
            with output.open("wb") as out:
                run_measured([*tap, "--catalog", str(vendors)], stdout=out)
            ledger = work / f"ledger-{size}.sqlite"
            target = write_json(work, "target.json", target_config(sandbox,
                                                                   f"sqlite:///{ledger}"))
            with output.open("rb") as records:
                measured = run_measured([str(BIN / "target-basware"), "--config", str(target)],
                                        stdin=records)
            peaks["target-basware"].append(measured.max_rss_mb)
            rows.append(["target-basware", f"{size:,}", f"{count_records(output):,}",
                         measured.max_rss_mb, measured.wall])
    flat = {plugin: values[-1] <= FLAT * values[0] for plugin, values in peaks.items()}
    rows.sort(key=lambda row: row[0], reverse=True)
    table("Memory: peak RSS per plugin process", ["plugin", "vendors in Sage", "records",
                                                   "peak RSS MB", "wall s"], rows,
          [f"Flat = peak at 100,000 within {FLAT}x of the peak at 1,000: "
           + "; ".join(f"{plugin} {values[-1] / values[0]:.2f}x "
                       f"({'flat' if flat[plugin] else 'NOT flat'})"
                       for plugin, values in peaks.items())])
    return flat


if __name__ == "__main__":
    main()

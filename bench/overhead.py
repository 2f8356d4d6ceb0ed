"""Overhead ratio: tap-sage300's full extract against a bare requests loop over the same pages.

The extract is job master-data's selection (GL accounts, cost centers, terms, vendors, POs with
their lines) of both companies on the large data: 100,032 vendors, 20,160 POs, 100,3xx lines.
The bare loop GETs exactly the URLs the tap requested (taken from the simulator's request log
of an untimed warm-up run) and discards the bodies, so the difference is what the tap adds:
parsing, shaping, the SDK, Singer output. Both run as child processes, output to /dev/null,
alternating, BENCH_REPEATS times (default 5); the ratio is of the medians.

    .venv/bin/python bench/overhead.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

from _common import (
    BIN,
    MASTER_DATA_STREAMS,
    REPEATS,
    SAGE_PATH,
    Sandbox,
    alternate,
    median,
    run_measured,
    say,
    table,
    tap_catalog,
    tap_config,
    write_json,
)

TARGET_RATIO = 1.3


def extract_setup(sandbox: Sandbox, work: Path, streams: list[str] = MASTER_DATA_STREAMS
                  ) -> tuple[list[str], Counter[str], list[str]]:
    """Config and catalog files, one untimed warm-up run (fills the simulator's query cache)
    that yields the URLs the tap requested and its record counts; returns the tap command."""
    config = write_json(work, "tap.json", tap_config(sandbox))
    catalog = write_json(work, "catalog.json", tap_catalog(config, streams))
    command = [str(BIN / "tap-sage300"), "--config", str(config), "--catalog", str(catalog)]
    seq = sandbox.last_seq("sage300")
    output = work / "warmup.singer"
    with output.open("wb") as out:
        run_measured(command, stdout=out)
    counts: Counter[str] = Counter()
    with output.open("rb") as lines:
        for line in lines:
            if line.startswith(b'{"type":"RECORD"'):
                counts[json.loads(line)["stream"]] += 1
    output.unlink()
    urls = [f"{sandbox.sage_root}{r['path']}?{r['query']}"
            for r in sandbox.requests_since("sage300", seq)
            if r["method"] == "GET" and r["path"].startswith(SAGE_PATH)]
    return command, counts, urls


def main() -> dict[str, float]:
    say("overhead: starting the sandbox with the large data ...")
    with Sandbox("large") as sandbox, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        command, counts, urls = extract_setup(sandbox, work)
        urls_file = work / "urls.txt"
        urls_file.write_text("\n".join(urls))
        sage = sandbox.info["sage300"]
        bare = [sys.executable, str(Path(__file__).with_name("bare_loop.py")), str(urls_file),
                sage["username"].upper(), sage["password"].upper()]
        runs: dict[str, list] = {"bare": [], "tap": []}

        def timed(name: str, cmd: list[str]) -> float:
            measured = run_measured(cmd)
            runs[name].append(measured)
            return measured.wall

        say(f"overhead: {len(urls)} requests, {sum(counts.values()):,} records; "
            f"{REPEATS} alternating runs each ...")
        walls = alternate({"bare": lambda: timed("bare", bare),
                           "tap": lambda: timed("tap", command)})
        bare_wall, tap_wall = median(walls["bare"]), median(walls["tap"])
        ratio = tap_wall / bare_wall
        records = sum(counts.values())
        rows = [
            ["bare requests loop (GET, discard)", f"{len(urls):,}", "-", bare_wall,
             f"{min(walls['bare']):.2f}-{max(walls['bare']):.2f}",
             median(m.cpu for m in runs["bare"]), "1.00"],
            ["tap-sage300 (Singer to /dev/null)", f"{len(urls):,}", f"{records:,}", tap_wall,
             f"{min(walls['tap']):.2f}-{max(walls['tap']):.2f}",
             median(m.cpu for m in runs["tap"]), f"{ratio:.2f}"],
        ]
        table("Overhead ratio: tap-sage300 vs a bare requests loop (same pages)",
              ["program", "requests", "records", "median wall s", "range s", "median CPU s",
               "ratio"], rows,
              ["Large data, both companies, job master-data's streams ("
               + ", ".join(f"{s} {n:,}" for s, n in counts.items())
               + f"); Sage PageSize 100, tap page_size 1000; {REPEATS} alternating runs. "
               f"Target: ratio <= {TARGET_RATIO} -> "
               f"{'met' if ratio <= TARGET_RATIO else 'NOT MET'}."])
        return {"ratio": ratio, "tap_wall": tap_wall, "bare_wall": bare_wall}


if __name__ == "__main__":
    main()

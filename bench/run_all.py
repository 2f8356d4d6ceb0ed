"""`make bench`: every benchmark in turn, each table printed as soon as it is done, then the
issue's done-when checks in one place. Figures, not tests: it exits 0 whatever they say.

    .venv/bin/python bench/run_all.py            # BENCH_REPEATS=3 for quicker, noisier runs
"""

from __future__ import annotations

import time

import end_to_end  # noqa: F401 - printed by request_economy, from the same runs
import memory
import overhead
import peer
import request_economy
from _common import REPEATS, machine, table


def main() -> None:
    started = time.monotonic()
    print(f"Machine: {machine()}; BENCH_REPEATS={REPEATS}\n", flush=True)
    economy = request_economy.main()
    ratio = overhead.main()
    versus = peer.main()
    flat = memory.main()
    table("Done when", ["check", "result"], [
        ["request economy at the minimum on every line",
         "yes" if all(economy.values()) else
         "NO: " + ", ".join(label for label, ok in economy.items() if not ok)],
        [f"overhead ratio <= {overhead.TARGET_RATIO}",
         f"{'yes' if ratio['ratio'] <= overhead.TARGET_RATIO else 'NO'} "
         f"({ratio['ratio']:.2f})"],
        ["tap-sage300 faster than tap-rest-api-msdk",
         f"{'yes' if versus['ours'] < versus['peer'] else 'NO'} "
         f"({versus['peer'] / versus['ours']:.2f}x)"],
        [f"memory flat (100k within {memory.FLAT}x of 1k)",
         "yes" if all(flat.values()) else
         "NO: " + ", ".join(plugin for plugin, ok in flat.items() if not ok)],
    ], [f"All benchmarks took {(time.monotonic() - started) / 60:.1f} min."])


if __name__ == "__main__":
    main()

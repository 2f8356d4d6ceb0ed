"""`make bench`: every benchmark in turn, each table printed as soon as it is done, then the
issue's done-when checks in one place. Figures, not tests: it exits 0 whatever they say.

First the loopback benchmarks (request economy against the minimum, the CPU overhead against
a bare loop, the peer tap, memory), then the latency tables (end_to_end.py's latency mode:
both jobs at 2,000 and 10,000 vendors and 1,000 invoices, Sage +250 ms and Basware +300 ms
per request, and the extract against tap-rest-api-msdk at the same latency; about 20 more
minutes on 2 cores).

    .venv/bin/python bench/run_all.py            # BENCH_REPEATS=3 for quicker, noisier runs
    .venv/bin/python bench/run_all.py --no-latency               # the loopback part only
    .venv/bin/python bench/run_all.py --sage-latency-ms 100 --basware-latency-ms 400
"""

from __future__ import annotations

import argparse
import time

import end_to_end
import latency
import memory
import overhead
import peer
import request_economy
from _common import REPEATS, machine, table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    latency.add_latency_args(parser)
    parser.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True,
                        help="the latency tables after the loopback ones (default on)")
    parser.add_argument("--latency-vendors", default="2000,10000")
    parser.add_argument("--latency-invoices", default="1000")
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(f"Machine: {machine()}; BENCH_REPEATS={REPEATS}\n", flush=True)
    economy = request_economy.main()
    ratio = overhead.main()
    versus = peer.main()
    flat = memory.main()
    if args.latency:
        end_to_end.run_latency(args.sage_latency_ms, args.basware_latency_ms,
                               ["master-data", "invoices"],
                               args.latency_vendors.split(","),
                               [int(n) for n in args.latency_invoices.split(",")], True)
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

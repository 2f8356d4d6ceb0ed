"""The last line of every target run: where each record it received went.

Both targets end their log with the same line, so an operator (and a script) reads any run
the same way:

    target-basware success: 120 received, 100 written, 15 unchanged, 5 rejected, 0 failed; ledger run 4f0c... (rejected and failed records: ml-connector audit failures)

- *received*: records that arrived on the target's input, bad ones included;
- *written*: created or updated in the destination by this run;
- *unchanged*: already there as sent (or deliberately not sent), so nothing was written;
- *rejected*: bad input, each recorded alone in the ledger with its key and reason; the run
  still exits 0;
- *failed*: caught in a technical failure (the run exits non-zero; sent again next run);
- extra outcomes a target has (e.g. a record superseded by a later one with the same key)
  follow, when non-zero.

On a successful run received = written + unchanged + rejected + failed + the extras, less
what a target sends on its own, not having received it: target-basware's `deactivated`, records
the source deleted, sent inactive (its README, "Deletions").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

#: Parses the line back (tests, scripts): plugin, status, and each "<n> <outcome>" pair.
SUMMARY_LINE = re.compile(r"(?P<plugin>[\w-]+) (?P<status>success|failed): "
                          r"(?P<counts>\d+ received(?:, \d+ [a-z ]+)*)"
                          r"(?:; ledger run (?P<run_id>[\w-]+))?")


@dataclass(frozen=True)
class RunCounts:
    received: int
    written: int
    unchanged: int
    rejected: int
    failed: int
    extra: Mapping[str, int] = field(default_factory=dict)

    def line(self, plugin: str, status: str, run_id: str | None) -> str:
        """The summary line; without a ledger run (nothing received) it says so."""
        parts = [f"{self.received} received", f"{self.written} written",
                 f"{self.unchanged} unchanged", f"{self.rejected} rejected",
                 f"{self.failed} failed"]
        parts += [f"{n} {outcome}" for outcome, n in self.extra.items() if n]
        where = (f"; ledger run {run_id} (rejected and failed records: ml-connector audit "
                 "failures)") if run_id else ""
        return f"{plugin} {status}: {', '.join(parts)}{where}"


def parse_summary_line(text: str) -> dict[str, int | str] | None:
    """The last summary line in ``text`` as {"plugin", "status", "run_id", <outcome>: n}."""
    matches = list(SUMMARY_LINE.finditer(text))
    if not matches:
        return None
    match = matches[-1]
    parsed: dict[str, int | str] = {"plugin": match["plugin"], "status": match["status"],
                                    "run_id": match["run_id"] or ""}
    for part in match["counts"].split(", "):
        number, outcome = part.split(" ", 1)
        parsed[outcome] = int(number)
    return parsed

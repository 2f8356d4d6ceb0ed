"""Dry runs of the targets (`dry_run: true`): what a run would do, with no write anywhere.

A target in dry run does everything a real run does up to the first write: the stream maps,
its contract check, the ledger comparison and the read-only look-ups in the destination. Then,
instead of writing, it gives every record one verdict:

- ``create``: the destination does not have it yet (never delivered);
- ``update``: delivered before, with another payload;
- ``skip``: nothing to do (delivered with this exact payload, already there, closed and never
  sent), with the reason;
- ``reject``: the run would reject it, with the reason a real run would record.

A record a run sends inside other records (a goods receipt, in the order lines it received)
gets the verdict of those records once they have theirs (:meth:`DryRunReport.carried`): new
in Basware when one of them is sent, skipped when all are, rejected when one is.

Verdicts go to the log (one INFO line each) and, when ``dry_run_report`` names a file, to that
file as JSON lines, which `ml-connector plan` reads. Never to stdout: Meltano stores every
line a target prints there as state.

The dry run writes nothing to the ledger either (:class:`ReadOnlyLedger`) and emits no STATE,
so a dry-run target put into `meltano run` by mistake cannot advance a bookmark past records
it never delivered.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ml_connector_core.ledger import Entry, Ledger, Run

CREATE, UPDATE, SKIP, REJECT = "create", "update", "skip", "reject"
VERDICTS = (CREATE, UPDATE, SKIP, REJECT)

@dataclass(frozen=True)
class Verdict:
    """What a target would do with one record."""

    stream: str
    key: str  # the record's key in the destination (externalCode, Basware invoice id)
    verdict: str  # one of VERDICTS
    reason: str | None = None
    source_key: str | None = None  # the ledger key, when it differs from `key`
    plugin: str | None = None


class DryRunReport:
    """Collects a dry run's verdicts: logged, counted, and appended to the report file."""

    def __init__(self, plugin: str, path: str | None, logger: logging.Logger) -> None:
        self.plugin = plugin
        self.logger = logger
        self.counts: dict[str, int] = dict.fromkeys(VERDICTS, 0)
        self._given: dict[tuple[str, str], tuple[str, str | None]] = {}  # (stream, key)
        self._carried: list[tuple[str, str, str | None, str, list[str]]] = []
        # Open for the whole run (closed by close()), line-buffered: verdicts already given
        # survive a crash later in the run.
        self._file: IO[str] | None = (
            Path(path).open("a", buffering=1, encoding="utf-8")  # noqa: SIM115
            if path else None)

    def add(self, stream: str, key: str, verdict: str, reason: str | None = None,
            source_key: str | None = None) -> None:
        if verdict not in VERDICTS:
            raise ValueError(f"unknown dry-run verdict {verdict!r}")
        self.counts[verdict] += 1
        self._given[(stream, key)] = (verdict, reason)
        self.logger.info("dry run: %s %s would be %s%s", stream, key,
                         {CREATE: "created", UPDATE: "updated", SKIP: "skipped",
                          REJECT: "rejected"}[verdict], f": {reason}" if reason else "")
        if self._file is not None:
            line = Verdict(stream, key, verdict, reason,
                           source_key if source_key != key else None, self.plugin)
            self._file.write(json.dumps(asdict(line), sort_keys=True) + "\n")

    def carried(self, stream: str, key: str, source_key: str | None, into_stream: str,
                into_keys: list[str]) -> None:
        """`key` of `stream` goes inside the records `into_keys` of `into_stream`: its verdict
        is theirs, given when the run has judged them (at the summary or the close)."""
        self._carried.append((stream, key, source_key, into_stream, list(into_keys)))

    def _settle_carried(self) -> None:
        carried, self._carried = self._carried, []
        for stream, key, source_key, into_stream, into_keys in carried:
            given = [self._given.get((into_stream, into)) for into in into_keys]
            named = ", ".join(into_keys)
            rejected = [(into, g[1]) for into, g in zip(into_keys, given, strict=True)
                        if g and g[0] == REJECT]
            if rejected:
                into, reason = rejected[0]
                self.add(stream, key, REJECT, f"{into_stream} {into} is rejected: {reason}",
                         source_key)
            elif given and all(g and g[0] == SKIP for g in given):
                # Worded so `plan` counts skips by cause: the keys go in brackets.
                self.add(stream, key, SKIP, f"already in Basware on {into_stream} ({named})",
                         source_key)
            else:
                self.add(stream, key, CREATE, f"sent on {into_stream} ({named})", source_key)

    def summary_line(self) -> str:
        self._settle_carried()
        return (f"{self.plugin} dry run: nothing written; "
                + ", ".join(f"{n} {verdict}" for verdict, n in self.counts.items()))

    def close(self) -> None:
        self._settle_carried()
        if self._file is not None:
            self._file.close()
            self._file = None


def read_verdicts(path: str | Path) -> list[Verdict]:
    """The verdicts a dry run appended to `path` (none if the file does not exist)."""
    file = Path(path)
    if not file.exists():
        return []
    return [Verdict(**json.loads(line)) for line in file.read_text(encoding="utf-8").splitlines()
            if line.strip()]


class ReadOnlyLedger(Ledger):
    """The ledger for a dry run: every query answers from the real ledger; runs and entries
    are accepted and dropped, so a dry run leaves no trace in the audit trail."""

    def start_run(self, plugin: str, job_id: str | None = None,
                  state_id: str | None = None) -> Run:
        return Run(run_id=str(uuid.uuid4()), plugin=plugin, started_at=datetime.now(UTC),
                   job_id=job_id, state_id=state_id, status="dry run")

    def finish_run(self, run_id: str, status: str, summary: Any = None) -> None:
        return None

    def record_many(self, batch: Iterable[Entry]) -> int:
        return len(list(batch))

    def claim_unassigned(self, plugin: str, system: Any) -> int:
        return 0  # a write: the next real run claims them


def ledger_class(dry_run: bool) -> type[Ledger]:
    """The ledger a target opens: read-only in a dry run."""
    return ReadOnlyLedger if dry_run else Ledger

"""Code run in spawned processes by the concurrency tests (importable by module name)."""

from __future__ import annotations

from ml_connector_core.ledger import Action, Entry, Ledger


def write_entries(url: str, worker: int, count: int) -> int:
    """Open the ledger (racing the other workers to migrate it) and record `count` entries,
    one transaction each, the way a RecordSink does."""
    with Ledger.open(url) as ledger:
        run = ledger.start_run(f"worker-{worker}")
        for i in range(count):
            ledger.record(Entry(run.run_id, "vendors", f"W{worker}-{i}", Action.CREATED,
                                payload={"worker": worker, "i": i}))
        ledger.finish_run(run.run_id, "success", {"written": count})
    return count

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


def record_the_same_vendors(url: str, worker: int, rounds: int) -> int:
    """Record the same vendors as every other worker (a tap's read and a target's outcome of
    one record), in batches of 100, each worker in its own order: their ids (ledger_refs) are
    inserted by several transactions at once."""
    keys = [f"SAMINC/{1000 + i}" for i in range(300)]
    if worker % 2:
        keys.reverse()
    with Ledger.open(url) as ledger:
        run = ledger.start_run(f"worker-{worker}")
        for _ in range(rounds):
            for start in range(0, len(keys), 100):
                ledger._refs_stored.clear()  # as a new process would: insert them again
                ledger.record_many(
                    Entry(run.run_id, "vendors", key, Action.READ,
                          payload={"VendorNumber": key.split("/")[1], "company_id": "SAMINC"})
                    for key in keys[start:start + 100])
        ledger.finish_run(run.run_id, "success")
    return rounds

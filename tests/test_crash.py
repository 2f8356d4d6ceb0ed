"""The pipeline process SIGKILLed mid-run, then run again (`meltano run --force`, as after any
crash) until it succeeds: both simulators must end as a fault-free run leaves them (the
session's baseline), with nothing twice and nothing missing.

Kill points:
- deterministic, where exactly-once is decided: between a Basware bulk POST (vendors, then
  matching order lines) and its requestStatus check; between Sage's batch create and the
  target's state checkpoint; between Basware taking a transfer response and the state that
  records it. The simulator does the write and holds the answer (stall_after) while the
  test waits until the write shows in the simulator's state, then kills the process group.
- random per seed: in each run of the sequence, after a seed-chosen number of requests to
  either simulator.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from e2e import (
    REQUESTS_PER_STEP,
    SEQUENCE,
    Project,
    Snapshot,
    basware_tenant,
    connector_batches,
    differences,
    kill,
    request_log,
    set_faults,
    snapshot,
    wait_until,
)

from ml_connector_core.outcome_handover import RUNS_KEY
from mlc_sandbox.serve import Sandbox

SEEDS = [1]  # more seeds (and kills under faults): bench/soak.py --kills
HOLD = 300  # stall_after seconds: the answer never comes before the kill


def held_answer(method: str, path: str) -> dict[str, Any]:
    """A fault config: the first matching request is processed, its answer never sent."""
    return {"stall_seconds": HOLD,
            "schedule": [{"nth": 1, "fault": "stall_after", "method": method, "path": path}]}


def basware_imports(sandbox: Sandbox, entity_type: str) -> list[dict[str, Any]]:
    return [entry for entry in basware_tenant(sandbox)["request_status"]
            if entry["entityType"] == entity_type]


def test_master_data_killed_between_bulk_post_and_request_status(
        fresh_sandbox: Sandbox, tmp_path: Path, baseline: Snapshot) -> None:
    """Basware stores the vendors bulk POST but its answer is held; the run is killed while it
    waits, before any requestStatus check or checkpoint. The re-run is killed the same way
    at the matching order lines POST. The next re-run completes."""
    project = Project.create(fresh_sandbox, tmp_path)
    for endpoint, entity_type in (("vendors", "Vendor"),
                                  ("matchingOrderLines", "MatchingOrderLine")):
        set_faults(fresh_sandbox, None, held_answer("POST", f"^/v1/{endpoint}$"))
        running = project.start("master-data", force=True, name=f"killed-at-{endpoint}")
        try:
            wait_until(lambda e=entity_type: basware_imports(fresh_sandbox, e), running,
                       f"Basware stored the {endpoint} POST")
        finally:
            kill(running)
        project.finish(running)
        (held,) = basware_imports(fresh_sandbox, entity_type)
        assert not [r for r in request_log(fresh_sandbox.basware.base_url)
                    if r["path"] == f"/v1/requestStatus/{held['requestId']}"]
    set_faults(fresh_sandbox, None, None)

    final = project.run("master-data", force=True, name="complete")

    assert final.ok, final.output[-4000:]
    assert differences(baseline.only(("master-data",)),
                       snapshot(fresh_sandbox, project.ledger_url).only(("master-data",))) == []


def test_invoices_killed_after_sage_create_and_after_a_transfer_response(
        fresh_sandbox: Sandbox, tmp_path: Path, baseline: Snapshot) -> None:
    """Sage creates the first batch and holds the answer; the run is killed, so no checkpoint
    records the batch. The re-run finds its invoices by BWINVID ("already there") and creates
    the rest; its answering task is killed once Basware took its first transfer response, so
    the state still holds that outcome; the next run finds the invoice answered already."""
    sandbox = fresh_sandbox
    project = Project.create(sandbox, tmp_path)

    set_faults(sandbox, held_answer("POST", "APInvoiceBatches$"), None)
    running = project.start("invoices", name="killed-after-create")
    try:
        wait_until(lambda: connector_batches(sandbox), running, "Sage created a batch")
    finally:
        kill(running)
    project.finish(running)
    (killed_batch,) = connector_batches(sandbox)
    assert RUNS_KEY not in project.state("invoices")
    set_faults(sandbox, None, held_answer("POST", "/transferResponses$"))

    running = project.start("invoices", force=True, name="recover-killed-after-response")
    try:
        wait_until(lambda: [i for i in basware_tenant(sandbox)["invoices"]
                            if i["transferResponses"]], running,
                   "Basware took a transfer response")
    finally:
        kill(running)
    recover = project.finish(running)
    assert f"{len(killed_batch['Invoices'])} already there" in recover.output
    assert RUNS_KEY in project.state("invoices")
    set_faults(sandbox, None, None)

    answer = project.run("invoices", force=True, name="answer")
    assert answer.ok, answer.output[-4000:]
    assert "'already_answered': 1" in answer.output

    assert differences(baseline.only(("invoices",)),
                       snapshot(sandbox, project.ledger_url).only(("invoices",))) == []
    # The invoices of the killed run's batch are answered with that batch's number.
    killed_ids = {o["Value"] for e in killed_batch["Invoices"]
                  for o in e["InvoiceOptionalFields"] if o["OptionalField"] == "BWINVID"}
    for invoice in basware_tenant(sandbox)["invoices"]:
        if invoice["invoiceId"] in killed_ids:
            last = invoice["transferResponses"][-1]
            assert str(last["voucherNumber1"]) == str(killed_batch["BatchNumber"])


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_at_random_points(seed: int, fresh_sandbox: Sandbox, tmp_path: Path,
                                 baseline: Snapshot) -> None:
    """Each run of the sequence is killed after a seed-chosen number of requests to either
    simulator, then run again until it succeeds."""
    rng = random.Random(seed)
    project = Project.create(fresh_sandbox, tmp_path)
    for step, job in enumerate(SEQUENCE):
        project.run_killed_after(job, rng.randint(1, REQUESTS_PER_STEP[step]))
        project.run_until_success(job, max_attempts=3)

    assert differences(baseline, snapshot(fresh_sandbox, project.ledger_url)) == []

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
- issue 18's writes: master-data killed once Basware stored the order line that carries a
  receipt cancelled in Sage (before its requestStatus was read, before any STATE); the
  payments job killed once Basware stored a paymentResponse whose answer it holds, first
  before any STATE, then after one response was answered. Each re-run must leave every
  receipt on its line once and one paymentResponse per payment state, and a run with
  nothing changed writes nothing.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e import (
    PAYMENT_RESPONSE_POST,
    REQUESTS_PER_STEP,
    SEQUENCE,
    Project,
    Snapshot,
    basware_tenant,
    connector_batches,
    differences,
    kill,
    log_marks,
    misplaced_receipts,
    pay,
    payment_problems,
    post_connector_batches,
    request_log,
    sandbox_get,
    set_faults,
    snapshot,
    wait_until,
    write_requests,
)
from sqlalchemy import create_engine, text

from ml_connector_core.outcome_handover import RUNS_KEY
from mlc_sandbox.serve import Sandbox

SEEDS = [1]  # more seeds (and kills under faults): bench/soak.py --kills
HOLD = 300  # stall_after seconds: the answer never comes before the kill


def held_answer(method: str, path: str, nth: int = 1) -> dict[str, Any]:
    """A fault config: the `nth` matching request is processed, its answer never sent."""
    return {"stall_seconds": HOLD,
            "schedule": [{"nth": nth, "fault": "stall_after", "method": method, "path": path}]}


def basware_imports(sandbox: Sandbox, entity_type: str) -> list[dict[str, Any]]:
    return [entry for entry in basware_tenant(sandbox)["request_status"]
            if entry["entityType"] == entity_type]


def test_master_data_killed_between_bulk_post_and_request_status(
        fresh_sandbox: Sandbox, tmp_path: Path, baseline: Snapshot) -> None:
    """Basware stores the vendors bulk POST but its answer is held; the run is killed while it
    waits, before any requestStatus check or checkpoint. The re-run is killed the same way
    at the matching order lines POST. The next re-run completes. Then the same kill while a
    goods receipt goes to Basware (kill_while_sending_a_receipt)."""
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
        # The held POST and the others of its stream already on the wire beside it
        # (max_requests_in_flight): Basware stored them all, the run asked about none.
        stored = {entry["requestId"] for entry in basware_imports(fresh_sandbox, entity_type)}
        assert stored
        assert not [r for r in request_log(fresh_sandbox.basware.base_url)
                    if r["path"].removeprefix("/v1/requestStatus/") in stored]
    set_faults(fresh_sandbox, None, None)

    final = project.run("master-data", force=True, name="complete")

    assert final.ok, final.output[-4000:]
    assert differences(baseline.only(("master-data",)),
                       snapshot(fresh_sandbox, project.ledger_url).only(("master-data",))) == []
    assert misplaced_receipts(fresh_sandbox) == []
    kill_while_sending_a_receipt(project)


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
    # tap-basware has several responses in flight (max_in_flight): each one Basware took
    # before the kill is found answered already, one or more depending on timing.
    already = re.search(r"'already_answered': (\d+)", answer.output)
    assert already and int(already[1]) >= 1, answer.output[-4000:]

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
    assert misplaced_receipts(fresh_sandbox) == []


def receipt_codes(sandbox: Sandbox) -> dict[str, list[str]]:
    """Basware's matching order lines that carry goods receipts: line -> entry codes."""
    return {line["externalCode"]: [e["externalCode"] for e in line["goodsReceipts"]]
            for line in basware_tenant(sandbox)["master_data"]["matchingOrderLines"]
            if line.get("goodsReceipts")}


def receipts_bookmark(project: Project) -> Any:
    """tap-sage300's po_receipts bookmarks in the master-data job's stored state."""
    stored = project.state("master-data")
    return json.loads(stored)["singer_state"]["bookmarks"].get("po_receipts") if stored \
        else None


def kill_while_sending_a_receipt(project: Project) -> None:
    """After a complete master-data run: a receipt cancelled in Sage goes as its order line,
    posted again with the receipt and the entry that cancels it. Basware stores that POST and
    holds the answer; the run is killed before it reads the requestStatus or emits a STATE.
    The re-run sends the same line (Basware holds it: NotProcessed) and settles it from
    Basware's requestStatus history; the receipt is on its line once; an unchanged run then
    writes nothing."""
    sandbox = project.sandbox
    receipt = next(r for r in sandbox_get(sandbox.sage300.base_url, "state")["companies"]
                   ["SAMINC"]["PO/POGetReceipts"] if r["Cancelled"] == "No")
    line = (f"SAMINC-{receipt['PurchaseOrderNumber']}-"
            f"{receipt['ReceiptLine2s'][0]['PurchaseOrderLineNumber']}")
    entry = f"SAMINC-{receipt['ReceiptNumber']}-{receipt['ReceiptLine2s'][0]['LineNumber']}"
    assert receipt_codes(sandbox)[line] == [entry]
    done = requests.post(f"{sandbox.sage300.base_url}/_sandbox/touch", timeout=30, json={
        "company": "SAMINC", "resource": "PO/POGetReceipts",
        "key": receipt["ReceiptSequenceKey"], "changes": {"Cancelled": "Yes"}})
    assert done.status_code == 200, done.text
    bookmark = receipts_bookmark(project)

    set_faults(sandbox, None, held_answer("POST", "^/v1/matchingOrderLines$"))
    running = project.start("master-data", force=True, name="killed-at-receipt")
    try:
        wait_until(lambda: receipt_codes(sandbox)[line] == [entry, f"{entry}-C"], running,
                   "Basware stored the line with the cancelled receipt")
    finally:
        kill(running)
    project.finish(running)
    set_faults(sandbox, None, None)
    assert receipts_bookmark(project) == bookmark  # no STATE passed the receipt

    final = project.run("master-data", force=True, name="after-the-kill")
    assert final.ok, final.output[-4000:]
    assert "settled from Basware's requestStatus history" in final.output
    assert receipts_bookmark(project) != bookmark  # the receipt was read again, and confirmed
    assert receipt_codes(sandbox)[line] == [entry, f"{entry}-C"]
    assert misplaced_receipts(sandbox) == []
    marks = log_marks(sandbox)
    unchanged = project.run("master-data", force=True, name="unchanged")  # a killed run's record
    assert unchanged.ok, unchanged.output[-4000:]
    assert write_requests(sandbox, marks) == []


def lookups_after_lost_answers(ledger_url: str) -> int:
    """How many paymentResponses the ledger says were found in Basware after their answer
    was lost."""
    engine = create_engine(ledger_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT count(*) FROM ledger_entries WHERE stream = 'payment_responses' "
                "AND error = 'answer lost; found in Basware'")).scalar_one()
    finally:
        engine.dispose()


def responses_stored(sandbox: Sandbox) -> int:
    return sum(len(i.get("paymentResponses") or []) for i in basware_tenant(sandbox)["invoices"])


def test_payments_killed_after_basware_stored_a_payment_response(fresh_sandbox: Sandbox,
                                                                 tmp_path: Path) -> None:
    """Four documents paid (two in full, two half); Basware stores the first paymentResponse
    and holds the answer; the job is killed before any STATE. The re-run sends it again,
    hears 409 and finds it in the invoice's history. Then the rest of the two is paid, and the
    run is killed at the second response (the first answered, no STATE yet); the re-run
    again sends nothing twice and loses nothing."""
    sandbox = fresh_sandbox
    project = Project.create(sandbox, tmp_path)
    invoices = project.run("invoices", name="invoices")
    assert invoices.ok, invoices.output[-4000:]
    documents = [d for d in post_connector_batches(sandbox) if d["total"] > 0][:4]
    assert len(documents) == 4
    states: dict[str, list[float]] = {}
    rounds = [[(d, None if n < 2 else round(d["total"] / 2, 2))
               for n, d in enumerate(documents)], [(d, None) for d in documents[2:]]]

    for number, payments in enumerate(rounds, start=1):
        for document, amount in payments:
            paid = pay(sandbox, document, **({"amount": amount} if amount else {}))
            states.setdefault(document["invoice_id"], []).append(paid)
        expected = responses_stored(sandbox) + number  # the held one is the number-th
        set_faults(sandbox, None, held_answer("POST", PAYMENT_RESPONSE_POST, nth=number))
        running = project.start("payments", force=True, name=f"killed-at-response-{number}")
        try:
            wait_until(lambda n=expected: responses_stored(sandbox) == n, running,
                       f"Basware stored paymentResponse {number} of the run")
        finally:
            kill(running)
        project.finish(running)
        set_faults(sandbox, None, None)
        if number == 1:
            assert "ap_payments" not in project.state("payments")

        rerun = project.run("payments", force=True, name=f"after-kill-{number}")
        assert rerun.ok, rerun.output[-4000:]
        assert payment_problems(sandbox, states) == []
        # The held response was found, not sent twice (in round 2 the one answered before
        # the kill may be too, if the kill beat its ledger entry).
        assert lookups_after_lost_answers(project.ledger_url) >= number

    assert [len(paid) for paid in states.values()] == [1, 1, 2, 2]
    # (A re-run with nothing paid sends nothing: test_chaos.py, after faults.)

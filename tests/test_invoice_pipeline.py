"""The invoice pipeline end to end: `meltano run invoices` (tap-basware -> target-sage300)
against both simulators on free ports, in a Meltano project of its own per test (tests/e2e.py).

What must hold (the exactly-once invariants):
- every PO-matched and non-PO invoice is exactly one AP invoice in a ReadyToPost batch in
  Sage 300, coded from its PO line (or, without PO, from its own coding);
- the invoice coded to a GL account Sage does not have is rejected with that reason;
- every invoice in Basware ends Transferred or TransferFailed with the matching message;
- a batch response lost on the way back is reconciled within the run.
Killing the pipeline between Sage's create and the state checkpoint: test_crash.py.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e import (
    Project,
    basware_tenant,
    connector_batches,
    request_log,
    sage_entries,
    sandbox_get,
)

from ml_connector_core.outcome_handover import RUNS_KEY
from mlc_sandbox.data import UNKNOWN_ACCOUNT
from mlc_sandbox.serve import Sandbox

COMPANIES = {"US01": "SAMINC", "CA01": "SAMLTD"}
UNKNOWN_ACCOUNT_REASON = f"GL account {UNKNOWN_ACCOUNT} does not exist in Sage 300 company SAMINC"


@pytest.fixture
def pipeline(fresh_sandbox: Sandbox, tmp_path: Path) -> Project:
    return Project.create(fresh_sandbox, tmp_path)


# -- what the simulators hold ----------------------------------------------------------------

def basware_invoices(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {invoice["invoiceId"]: invoice for invoice in basware_tenant(sandbox)["invoices"]}


def purchase_order_lines(sandbox: Sandbox) -> dict[tuple[str, str, int], dict[str, Any]]:
    lines = {}
    for company, tables in sandbox_get(sandbox.sage300.base_url, "state")["companies"].items():
        for order in tables["PO/POPurchaseOrders"]:
            for line in order["PurchaseOrderLines"]:
                lines[(company, order["PurchaseOrderNumber"], int(line["LineNumber"]))] = line
    return lines


# -- the invariants --------------------------------------------------------------------------

def assert_exactly_once_and_answered(sandbox: Sandbox,
                                     initial: dict[str, dict[str, Any]]) -> None:
    entries = sage_entries(sandbox)
    po_lines = purchase_order_lines(sandbox)
    now = basware_invoices(sandbox)
    unknown = [i for i in initial.values()
               if any(r["accountCode"] == UNKNOWN_ACCOUNT for r in i["codingRows"])]
    assert len(unknown) == 1
    assert unknown[0]["invoiceId"] not in entries

    for invoice_id, invoice in initial.items():
        answered = now[invoice_id]
        responses = answered["transferResponses"]
        assert responses, f"invoice {invoice_id} has no transfer response"
        last = responses[-1]
        if invoice_id == unknown[0]["invoiceId"]:
            assert answered["processingStatus"] == "TransferFailed"
            assert last["success"] is False
            assert last["responseMessage"] == UNKNOWN_ACCOUNT_REASON
            continue

        company = COMPANIES[invoice["companyCode"]]
        copies = entries.get(invoice_id, [])
        assert len(copies) == 1, f"invoice {invoice_id} is in Sage {len(copies)} times"
        entry = copies[0]
        assert entry["company"] == company
        assert entry["batch"]["BatchStatus"] == "ReadyToPost"
        assert entry["VendorNumber"] == invoice["supplierCode"]
        assert entry["DocumentNumber"] == invoice["invoiceNumber"]
        # The amounts give the sign (Basware's credit notes are negative), checked against the
        # type code; Sage enters every document with positive totals.
        credit = invoice["grossSum"] < 0
        assert entry["DocumentType"] == ("CreditNote" if credit else "Invoice")
        assert credit == (invoice["invoiceTypeCode"] == "381")
        assert entry["DocumentTotalIncludingTax"] == pytest.approx(abs(invoice["grossSum"]))
        rows = invoice["codingRows"]
        assert len(entry["InvoiceDetails"]) == len(rows)
        for row, detail in zip(rows, entry["InvoiceDetails"], strict=True):
            if row.get("orderNumber"):  # coded from the PO line it was matched to
                line = po_lines[(company, row["orderNumber"], int(row["orderLineNumber"]))]
                assert detail["GLAccount"] == line["ExpenseAccount"]
            else:  # its own coding, separators removed
                assert detail["GLAccount"] == row["accountCode"].replace("-", "")
            # Signed relative to the document: a credit note's lines are negated with it.
            assert detail["DistributedAmount"] == pytest.approx(
                -row["netTotal"] if credit else row["netTotal"])

        assert answered["processingStatus"] == "Transferred", invoice_id
        assert last["success"] is True
        assert str(last["voucherNumber1"]) == str(entry["BatchNumber"])
        assert str(last["voucherNumber2"]) == str(entry["EntryNumber"])
        assert last["responseMessage"] == (
            f"Created in Sage 300 company {company}, batch {entry['BatchNumber']} entry "
            f"{entry['EntryNumber']} (ready to post)")

    statuses = Counter(invoice["processingStatus"] for invoice in now.values())
    assert set(statuses) <= {"Transferred", "TransferFailed"}, statuses


def test_one_run_brings_every_invoice_exactly_once_and_answers_basware(
        pipeline: Project) -> None:
    initial = basware_invoices(pipeline.sandbox)
    assert {i["processingStatus"] for i in initial.values()} == {"WaitingForTransfer"}
    assert any(r.get("orderNumber") for i in initial.values() for r in i["codingRows"])
    assert any(not r.get("orderNumber") for i in initial.values() for r in i["codingRows"])

    first = pipeline.run("invoices", name="first")
    assert first.ok, first.output[-3000:]
    assert "ap_invoices: 27 created, 1 rejected" in first.output
    # The job's second task answers Basware with the outcomes of the first, in the same run.
    assert "'responded': 28" in first.output
    assert_exactly_once_and_answered(pipeline.sandbox, initial)
    assert len(connector_batches(pipeline.sandbox)) == 2  # one per company
    assert RUNS_KEY not in pipeline.state("invoices")  # every outcome was answered
    # Vendors and POs are looked up in bulk: at least 15 per request (an `or` filter as long
    # as IIS takes a query string), per company, not one request each.
    lookups = Counter((r["path"].split("/")[-3], r["path"].rsplit("/", 1)[-1])
                      for r in request_log(pipeline.sandbox.sage300.base_url)
                      if r["method"] == "GET" and r["path"].endswith(
                          ("/AP/APVendors", "/PO/POPurchaseOrders")))
    for code, company in COMPANIES.items():
        mine = [i for i in initial.values() if i["companyCode"] == code]
        vendors = {i["supplierCode"] for i in mine}
        orders = {r["orderNumber"] for i in mine for r in i["codingRows"] if r.get("orderNumber")}
        assert 1 <= lookups[(company, "APVendors")] <= -(-len(vendors) // 15), lookups
        assert 1 <= lookups[(company, "POPurchaseOrders")] <= -(-len(orders) // 15), lookups

    again = pipeline.run("invoices", name="again")
    assert again.ok, again.output[-3000:]
    assert "'responded'" not in again.output  # nothing left to answer
    assert_exactly_once_and_answered(pipeline.sandbox, initial)
    assert len(connector_batches(pipeline.sandbox)) == 2


def test_a_lost_batch_response_in_the_pipeline(pipeline: Project) -> None:
    """drop_after on the first batch POST: Sage created it, the target never got the answer
    and reconciles by the batch description within the same run."""
    sandbox = pipeline.sandbox
    initial = basware_invoices(sandbox)
    requests.put(f"{sandbox.sage300.base_url}/_sandbox/faults", timeout=10, json={
        "schedule": [{"nth": 1, "fault": "drop_after", "method": "POST",
                      "path": "APInvoiceBatches$"}]}).raise_for_status()
    first = pipeline.run("invoices", name="first")
    assert first.ok, first.output[-3000:]
    assert "was created after all" in first.output
    assert_exactly_once_and_answered(sandbox, initial)

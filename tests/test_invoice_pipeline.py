"""The invoice pipeline end to end: `meltano run invoices` (tap-basware -> target-sage300)
against both simulators on free ports, with Meltano pointed at them through environment
variables and given its own system database, state backend and ledger per test.

What must hold (the exactly-once invariants):
- every PO-matched and non-PO invoice is exactly one AP invoice in a ReadyToPost batch in
  Sage 300, coded from its PO line (or, without PO, from its own coding);
- the invoice coded to a GL account Sage does not have is rejected with that reason;
- every invoice in Basware ends Transferred or TransferFailed with the matching message;
- killing the pipeline between Sage's create and the state checkpoint, then running again,
  leaves no duplicate and no invoice without a response.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from mlc_sandbox.data import BASWARE_CLIENT_ID, UNKNOWN_ACCOUNT
from mlc_sandbox.serve import Sandbox

ROOT = Path(__file__).resolve().parent.parent
MELTANO = str(Path(sys.executable).with_name("meltano"))
STATE_ID = "sandbox:tap-basware-to-target-sage300"
COMPANIES = {"US01": "SAMINC", "CA01": "SAMLTD"}
UNKNOWN_ACCOUNT_REASON = f"GL account {UNKNOWN_ACCOUNT} does not exist in Sage 300 company SAMINC"
RUN_TIMEOUT = 600  # a bound for a hung run, never a pass/fail criterion


@dataclass
class Pipeline:
    sandbox: Sandbox
    env: dict[str, str]
    logs: Path

    def run(self, *extra: str, name: str = "run") -> subprocess.CompletedProcess[str]:
        result = subprocess.run([MELTANO, "run", *extra, "invoices"], cwd=ROOT, env=self.env,
                                capture_output=True, text=True, timeout=RUN_TIMEOUT,
                                check=False)
        (self.logs / f"{name}.log").write_text(result.stdout + result.stderr)
        return result

    def start(self) -> subprocess.Popen[str]:
        """`meltano run invoices` in its own process group, so it can be killed whole."""
        log = (self.logs / "killed.log").open("w")
        return subprocess.Popen([MELTANO, "run", "invoices"], cwd=ROOT, env=self.env,
                                stdout=log, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)

    def state(self) -> str:
        result = subprocess.run([MELTANO, "state", "get", STATE_ID], cwd=ROOT, env=self.env,
                                capture_output=True, text=True, timeout=RUN_TIMEOUT,
                                check=True)
        return result.stdout


@pytest.fixture
def pipeline(fresh_sandbox: Sandbox, tmp_path: Path) -> Pipeline:
    info = fresh_sandbox.info()
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    # Meltano's own directory per test (run files, system database), sharing the installed
    # plugin environments: meltano runs elsewhere in the project cannot collide with ours.
    system_dir = tmp_path / "meltano"
    system_dir.mkdir()
    for kind in ("extractors", "loaders", "mappers", "utilities"):
        if (ROOT / ".meltano" / kind).is_dir():
            (system_dir / kind).symlink_to(ROOT / ".meltano" / kind)
    env = {
        **os.environ,
        "MELTANO_SYS_DIR_ROOT": str(system_dir),
        "MELTANO_ENVIRONMENT": "sandbox",
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "MELTANO_STATE_BACKEND_URI": f"file://{tmp_path / 'state'}",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "TAP_BASWARE_BASE_URL": info["basware"]["base_url"],
        "TAP_BASWARE_LEDGER_URL": ledger,
        "TARGET_SAGE300_BASE_URL": info["sage300"]["base_url"],
        "TARGET_SAGE300_LEDGER_URL": ledger,
    }
    return Pipeline(fresh_sandbox, env, tmp_path)


# -- what the simulators hold ----------------------------------------------------------------

def _state(base_url: str) -> dict[str, Any]:
    response = requests.get(f"{base_url}/_sandbox/state", timeout=60)
    response.raise_for_status()
    return response.json()


def basware_invoices(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    tenant = _state(sandbox.basware.base_url)["tenants"][BASWARE_CLIENT_ID]
    return {invoice["invoiceId"]: invoice for invoice in tenant["invoices"]}


def sage_entries(sandbox: Sandbox) -> dict[str, list[dict[str, Any]]]:
    """Every AP invoice entry in both companies, by BWINVID (a list: a duplicate shows)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for company, tables in _state(sandbox.sage300.base_url)["companies"].items():
        for batch in tables["AP/APInvoiceBatches"]:
            for entry in batch["Invoices"]:
                for optional in entry["InvoiceOptionalFields"]:
                    if optional["OptionalField"] == "BWINVID":
                        found.setdefault(optional["Value"], []).append(
                            {**entry, "company": company, "batch": batch})
    return found


def purchase_order_lines(sandbox: Sandbox) -> dict[tuple[str, str, int], dict[str, Any]]:
    lines = {}
    for company, tables in _state(sandbox.sage300.base_url)["companies"].items():
        for order in tables["PO/POPurchaseOrders"]:
            for line in order["PurchaseOrderLines"]:
                lines[(company, order["PurchaseOrderNumber"], int(line["LineNumber"]))] = line
    return lines


def connector_batches(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [batch for tables in _state(sandbox.sage300.base_url)["companies"].values()
            for batch in tables["AP/APInvoiceBatches"]
            if batch["Description"].startswith("ml-connector")]


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
        assert entry["DocumentType"] == ("CreditNote" if invoice["invoiceTypeCode"] == "381"
                                         else "Invoice")
        assert entry["DocumentTotalIncludingTax"] == pytest.approx(abs(invoice["grossSum"]))
        rows = invoice["codingRows"]
        assert len(entry["InvoiceDetails"]) == len(rows)
        for row, detail in zip(rows, entry["InvoiceDetails"], strict=True):
            if row.get("orderNumber"):  # coded from the PO line it was matched to
                line = po_lines[(company, row["orderNumber"], int(row["orderLineNumber"]))]
                assert detail["GLAccount"] == line["ExpenseAccount"]
            else:  # its own coding, separators removed
                assert detail["GLAccount"] == row["accountCode"].replace("-", "")
            assert detail["DistributedAmount"] == pytest.approx(abs(row["netTotal"]))

        assert answered["processingStatus"] == "Transferred", invoice_id
        assert last["success"] is True
        assert str(last["voucherNumber1"]) == str(entry["BatchNumber"])
        assert str(last["voucherNumber2"]) == str(entry["EntryNumber"])
        assert last["responseMessage"] == (f"Posted to Sage 300 company {company}, batch "
                                           f"{entry['BatchNumber']} entry {entry['EntryNumber']}")

    statuses = Counter(invoice["processingStatus"] for invoice in now.values())
    assert set(statuses) <= {"Transferred", "TransferFailed"}, statuses


def test_two_runs_bring_every_invoice_exactly_once_and_answer_basware(
        pipeline: Pipeline) -> None:
    initial = basware_invoices(pipeline.sandbox)
    assert {i["processingStatus"] for i in initial.values()} == {"WaitingForTransfer"}
    assert any(r.get("orderNumber") for i in initial.values() for r in i["codingRows"])
    assert any(not r.get("orderNumber") for i in initial.values() for r in i["codingRows"])

    first = pipeline.run(name="first")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "ap_invoices: 27 created, 1 rejected" in first.stderr
    # After the first run Sage has the invoices; Basware hears about them at the next start.
    assert len(sage_entries(pipeline.sandbox)) == 27
    assert {i["processingStatus"] for i in basware_invoices(pipeline.sandbox).values()} == \
        {"TransferInProgress"}

    second = pipeline.run(name="second")
    assert second.returncode == 0, second.stderr[-3000:]
    assert_exactly_once_and_answered(pipeline.sandbox, initial)
    assert len(connector_batches(pipeline.sandbox)) == 2  # one per company
    assert "transfer_outcomes" not in pipeline.state()  # every outcome was answered


def test_killed_between_create_and_checkpoint_then_rerun(pipeline: Pipeline) -> None:
    """Sage creates the first batch, then holds the answer (stall_after); meanwhile the whole
    pipeline is SIGKILLed, so no checkpoint records it. Two more runs: the first finds the
    batch by BWINVID and creates the rest, the second answers Basware."""
    sandbox = pipeline.sandbox
    initial = basware_invoices(sandbox)
    requests.put(f"{sandbox.sage300.base_url}/_sandbox/faults", timeout=10, json={
        "stall_seconds": 120, "schedule": [
            {"nth": 1, "fault": "stall_after", "method": "POST", "path": "APInvoiceBatches$"}],
    }).raise_for_status()

    process = pipeline.start()
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not connector_batches(sandbox):  # Sage has created the batch...
            assert process.poll() is None, "the pipeline ended before Sage created a batch"
            assert time.monotonic() < deadline, "no batch was created"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # ...and the target never hears of it
        process.wait(timeout=60)
    killed_batch = connector_batches(sandbox)[0]
    assert len(connector_batches(sandbox)) == 1
    assert "transfer_outcomes" not in pipeline.state()
    requests.delete(f"{sandbox.sage300.base_url}/_sandbox/faults", timeout=10)

    # The killed run left a running job behind in Meltano's system database.
    recover = pipeline.run("--force", name="recover")
    assert recover.returncode == 0, recover.stderr[-3000:]
    assert f"{len(killed_batch['Invoices'])} already there" in recover.stderr
    answer = pipeline.run("--force", name="answer")
    assert answer.returncode == 0, answer.stderr[-3000:]

    assert_exactly_once_and_answered(sandbox, initial)
    assert len(connector_batches(sandbox)) == 2
    killed_ids = {o["Value"] for e in killed_batch["Invoices"]
                  for o in e["InvoiceOptionalFields"]}
    for invoice_id in killed_ids:  # answered with the batch the killed run created
        last = basware_invoices(sandbox)[invoice_id]["transferResponses"][-1]
        assert str(last["voucherNumber1"]) == str(killed_batch["BatchNumber"])


def test_a_lost_batch_response_in_the_pipeline(pipeline: Pipeline) -> None:
    """drop_after on the first batch POST: Sage created it, the target never got the answer
    and reconciles by the batch description within the same run."""
    sandbox = pipeline.sandbox
    initial = basware_invoices(sandbox)
    requests.put(f"{sandbox.sage300.base_url}/_sandbox/faults", timeout=10, json={
        "schedule": [{"nth": 1, "fault": "drop_after", "method": "POST",
                      "path": "APInvoiceBatches$"}]}).raise_for_status()
    first = pipeline.run(name="first")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "was created after all" in first.stderr
    second = pipeline.run(name="second")
    assert second.returncode == 0, second.stderr[-3000:]
    assert_exactly_once_and_answered(sandbox, initial)

"""End to end: PO receipts in Sage 300 reach Basware as the goodsReceipts[] of their matching
order lines (`meltano run tap-sage300 target-basware`, the master-data job), against both
simulators over HTTP.

The demo has three receipts per company (mlc_sandbox.data.receipt_plan): the first open PO
received in full, the second partially, the third received and cancelled. Checked: each line
carries its receipts with Sage's quantities, a cancelled receipt is followed by an entry that
cancels it (referenceGRExternalCode); a line re-posted because its PO changed keeps its
receipts (Basware replaces the line's whole record); a receipt changed in Sage re-posts only
its line, with the receipts it had; an unchanged run posts nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e import ROOT, Project, basware_tenant, request_log

from ml_connector_core.ledger import Action, Ledger
from mlc_sandbox.data import build_dataset, receipt_plan
from mlc_sandbox.serve import Sandbox

CLI = str(Path(sys.executable).with_name("ml-connector"))


@pytest.fixture
def project(fresh_sandbox: Sandbox, tmp_path: Path) -> Project:
    return Project.create(fresh_sandbox, tmp_path)


def line_posts(sandbox: Sandbox) -> list[dict[str, Any]]:
    """Every matching order line POSTed to Basware since the log was cleared."""
    return [line for r in request_log(sandbox.basware.base_url)
            if r["method"] == "POST" and r["path"] == "/v1/matchingOrderLines"
            for line in r["body"]]


def writes(sandbox: Sandbox) -> list[str]:
    return [r["path"] for r in request_log(sandbox.basware.base_url)
            if r["method"] in ("POST", "PUT", "PATCH") and r["path"] != "/v1/tokens"]


def lines_in_basware(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    tenant = basware_tenant(sandbox)
    return {r["externalCode"]: r for r in tenant["master_data"]["matchingOrderLines"]}


def clear_logs(sandbox: Sandbox) -> None:
    requests.delete(f"{sandbox.basware.base_url}/_sandbox/requests", timeout=30)


def touch(sandbox: Sandbox, resource: str, key: Any, changes: dict[str, Any]) -> None:
    done = requests.post(f"{sandbox.sage300.base_url}/_sandbox/touch", json={
        "company": "SAMINC", "resource": resource, "key": key, "changes": changes}, timeout=30)
    assert done.status_code == 200, done.text


def test_goods_receipts_reach_basware_on_their_order_lines(fresh_sandbox: Sandbox,
                                                          project: Project) -> None:
    sage = build_dataset("demo", seed=0).sage["SAMINC"]
    receipts = {r["PurchaseOrderNumber"]: r for r in sage["PO/POGetReceipts"]}
    (full, full_po), (partial, partial_po), (cancelled, cancelled_po) = [
        (kind, order) for kind, order in receipt_plan(sage["PO/POPurchaseOrders"])]
    assert (full, partial, cancelled) == ("full", "partial", "cancelled")

    # -- first run: every receipt on its line -------------------------------------------------
    first = project.run("tap-sage300", "target-basware")
    assert first.ok, first.output[-5000:]
    lines = lines_in_basware(fresh_sandbox)

    # Inventory items need a receipt and match what was received; supplies do not.
    for order in (full_po, partial_po, cancelled_po):
        for po_line in order["PurchaseOrderLines"]:
            line = lines[f"SAMINC-{order['PurchaseOrderNumber']}-{po_line['LineNumber']}"]
            stock = po_line["StockItem"] == "Yes"
            assert (line["isReceiptRequired"], line["isReceiptBasedMatching"]) == (stock, stock)
    assert {po_line["StockItem"] for order in (full_po, partial_po, cancelled_po)
            for po_line in order["PurchaseOrderLines"]} == {"Yes", "No"}

    receipt = receipts[full_po["PurchaseOrderNumber"]]
    for po_line, received in zip(full_po["PurchaseOrderLines"], receipt["ReceiptLine2s"],
                                 strict=True):
        line = lines[f"SAMINC-{full_po['PurchaseOrderNumber']}-{po_line['LineNumber']}"]
        assert line["goodsReceipts"] == [{
            "externalCode": f"SAMINC-{receipt['ReceiptNumber']}-{received['LineNumber']}",
            "goodsReceiptNumber": receipt["ReceiptNumber"],
            "quantity": po_line["QuantityOrdered"]}]

    # A partial receipt: half the first line, nothing on the others.
    receipt = receipts[partial_po["PurchaseOrderNumber"]]
    first_line, *others = partial_po["PurchaseOrderLines"]
    line = lines[f"SAMINC-{partial_po['PurchaseOrderNumber']}-{first_line['LineNumber']}"]
    (entry,) = line["goodsReceipts"]
    assert entry["quantity"] == receipt["ReceiptLine2s"][0]["QuantityReceived"] \
        < first_line["QuantityOrdered"]
    for other in others:
        assert "goodsReceipts" not in lines[
            f"SAMINC-{partial_po['PurchaseOrderNumber']}-{other['LineNumber']}"]

    # A cancelled receipt: its entry, and the entry that cancels it.
    receipt = receipts[cancelled_po["PurchaseOrderNumber"]]
    code = f"SAMINC-{receipt['ReceiptNumber']}-1000"
    line = lines[f"SAMINC-{cancelled_po['PurchaseOrderNumber']}-"
                 f"{cancelled_po['PurchaseOrderLines'][0]['LineNumber']}"]
    quantity = receipt["ReceiptLine2s"][0]["QuantityReceived"]
    assert line["goodsReceipts"] == [
        {"externalCode": code, "goodsReceiptNumber": receipt["ReceiptNumber"],
         "quantity": quantity},
        {"externalCode": f"{code}-C", "goodsReceiptNumber": receipt["ReceiptNumber"],
         "quantity": quantity, "referenceGRExternalCode": code}]
    statuses = {item["externalCode"]: item["status"]
                for entry in basware_tenant(fresh_sandbox)["request_status"]
                for system in entry["systems"] for item in system["items"]}
    assert statuses[line["externalCode"]] == "Success"

    # -- the PO changes in Sage: its line is posted again, with its receipts ------------------
    changed = [{**line, "ItemDescription": "Renamed in PO Entry"}
               for line in full_po["PurchaseOrderLines"]]
    touch(fresh_sandbox, "PO/POPurchaseOrders", full_po["PurchaseOrderSequenceKey"],
          {"PurchaseOrderLines": changed})
    clear_logs(fresh_sandbox)
    second = project.run("master-data")
    assert second.ok, second.output[-5000:]
    posted = line_posts(fresh_sandbox)
    assert sorted(p["externalCode"] for p in posted) == sorted(
        f"SAMINC-{full_po['PurchaseOrderNumber']}-{po_line['LineNumber']}"
        for po_line in full_po["PurchaseOrderLines"])
    for post in posted:
        assert post["productName"] == "Renamed in PO Entry"
        assert len(post["goodsReceipts"]) == 1  # the receipt of the first run, kept
    assert all(len(line["goodsReceipts"]) == 1 for code, line in
               lines_in_basware(fresh_sandbox).items()
               if code.startswith(f"SAMINC-{full_po['PurchaseOrderNumber']}-"))

    # -- the partial receipt is cancelled in Sage: only its line, receipts kept ---------------
    receipt = receipts[partial_po["PurchaseOrderNumber"]]
    touch(fresh_sandbox, "PO/POGetReceipts", receipt["ReceiptSequenceKey"],
          {"Cancelled": "Yes"})
    clear_logs(fresh_sandbox)
    third = project.run("master-data")
    assert third.ok, third.output[-5000:]
    (post,) = line_posts(fresh_sandbox)
    code = f"SAMINC-{receipt['ReceiptNumber']}-1000"
    assert post["externalCode"] == \
        f"SAMINC-{partial_po['PurchaseOrderNumber']}-{first_line['LineNumber']}"
    assert [(e["externalCode"], e.get("referenceGRExternalCode"))
            for e in post["goodsReceipts"]] == [(code, None), (f"{code}-C", code)]
    assert writes(fresh_sandbox) == ["/v1/matchingOrderLines"]

    # -- a receipt against a line Basware never got (a closed PO): rejected alone ------------
    closed_po = next(o for o in sage["PO/POPurchaseOrders"] if o["Completed"] == "Yes")
    receipt = receipts[cancelled_po["PurchaseOrderNumber"]]
    touch(fresh_sandbox, "PO/POGetReceipts", receipt["ReceiptSequenceKey"], {
        "PurchaseOrderNumber": closed_po["PurchaseOrderNumber"],
        "PurchaseOrderSequenceKey": closed_po["PurchaseOrderSequenceKey"]})
    clear_logs(fresh_sandbox)
    rejected = project.run("master-data")
    assert rejected.ok, rejected.output[-5000:]
    assert writes(fresh_sandbox) == []
    with Ledger.open(project.ledger_url) as ledger:
        trail = [e for e in ledger.trace(f"SAMINC/{receipt['ReceiptSequenceKey']}")
                 if e.plugin == "target-basware"]
    # Sent with its line in the first run; now rejected, with the line it cannot find.
    assert trail[0].action == Action.UNCHANGED
    assert trail[0].error == ("sent as goodsReceipts of order line(s) "
                              f"SAMINC-{cancelled_po['PurchaseOrderNumber']}-1000")
    entry = trail[-1]
    assert entry.action == Action.REJECTED
    assert entry.error.startswith(
        f"order line(s) SAMINC-{closed_po['PurchaseOrderNumber']}-1000 not in Basware")

    # -- fixed in Sage (back on its PO): `ml-connector retry` sends it, the failure resolved --
    touch(fresh_sandbox, "PO/POGetReceipts", receipt["ReceiptSequenceKey"], {
        "PurchaseOrderNumber": cancelled_po["PurchaseOrderNumber"],
        "PurchaseOrderSequenceKey": cancelled_po["PurchaseOrderSequenceKey"]})
    clear_logs(fresh_sandbox)
    retried = subprocess.run(
        [CLI, "retry", f"SAMINC/{receipt['ReceiptSequenceKey']}"], cwd=project.workdir,
        env={**project.env, "MELTANO_PROJECT_ROOT": str(ROOT)}, capture_output=True,
        text=True, timeout=600, check=False)
    assert retried.returncode == 0, retried.stdout + retried.stderr[-3000:]
    # The line had the receipt already (from the first run): an identical line, no POST.
    assert writes(fresh_sandbox) == []
    with Ledger.open(project.ledger_url) as ledger:
        assert not [f for f in ledger.open_failures() if f.stream == "goods_receipts"]

    # -- nothing changed: no write at all (receipts read again on their bookmark day) --------
    clear_logs(fresh_sandbox)
    fourth = project.run("master-data")
    assert fourth.ok, fourth.output[-5000:]
    assert writes(fresh_sandbox) == []


def test_basware_matches_invoices_three_ways_against_the_receipts(fresh_sandbox: Sandbox,
                                                                 project: Project) -> None:
    """After master-data, PO invoices in Basware match their lines' receipts: the PO received
    in full matches, the partial receipt's stock line shows the invoice over what arrived, a
    cancelled receipt leaves nothing received, and a supplies line matches two ways only."""
    sage = build_dataset("demo", seed=0).sage["SAMINC"]
    (_, full_po), (_, partial_po), (_, cancelled_po) = receipt_plan(sage["PO/POPurchaseOrders"])
    run = project.run("tap-sage300", "target-basware")
    assert run.ok, run.output[-5000:]

    numbers = {}
    for order in (full_po, partial_po, cancelled_po):
        created = requests.post(f"{fresh_sandbox.basware.base_url}/_sandbox/invoices",
                                json={"orderNumber": order["PurchaseOrderNumber"],
                                      "invoiceNumber": f"INV-3WAY-{order['PurchaseOrderNumber']}"},
                                timeout=30)
        assert created.status_code == 201, created.text
        numbers[order["PurchaseOrderNumber"]] = created.json()["invoiceNumber"]

    results = {(r["invoiceNumber"], r["orderLineExternalCode"]): r
               for r in basware_tenant(fresh_sandbox)["matching"]}

    def result(order: dict[str, Any], po_line: dict[str, Any]) -> dict[str, Any] | None:
        code = f"SAMINC-{order['PurchaseOrderNumber']}-{po_line['LineNumber']}"
        return results.get((numbers[order["PurchaseOrderNumber"]], code))

    for po_line in full_po["PurchaseOrderLines"]:
        found = result(full_po, po_line)
        if po_line["StockItem"] == "Yes":
            assert found is not None and found["status"] == "Matched", found
        else:
            assert found is None  # two-way matching: no receipt needed
    first, *_ = partial_po["PurchaseOrderLines"]
    if first["StockItem"] == "Yes":
        found = result(partial_po, first)
        assert found is not None and found["status"] == "QuantityExceedsReceived", found
        assert found["receivedQuantity"] < found["invoicedQuantity"] == first["QuantityOrdered"]
    cancelled_line = cancelled_po["PurchaseOrderLines"][0]
    if cancelled_line["StockItem"] == "Yes":
        found = result(cancelled_po, cancelled_line)
        assert found is not None and found["status"] == "NotReceived", found
    # The demo data has each kind at least once (else the test would prove nothing).
    statuses = {r["status"] for r in results.values()
                if r["invoiceNumber"].startswith("INV-3WAY-")}
    assert {"Matched", "QuantityExceedsReceived", "NotReceived"} <= statuses, statuses

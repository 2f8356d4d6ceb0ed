"""End to end: `meltano run tap-sage300 target-basware` (and the `master-data` job) against both
simulators on free ports. Needs `make test`'s set-up (`meltano install`).

Checks the done-when of the master-data pipeline: every active Sage vendor, GL account, cost
center, payment term and open PO line is in Basware with the right fields and requestStatus
Success, but for the demo's records P2P refuses (mlc_sandbox.data.P2P_REFUSALS), which are
rejected in the ledger with Basware's reason; inactive vendors arrive with active:false; one
vendor changed in Sage means exactly one vendor re-posted; nothing changed means no POST at
all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from e2e import Project, basware_tenant, request_log

from ml_connector_core.ledger import Action, Ledger
from mlc_sandbox.data import P2P_REFUSALS, build_dataset
from mlc_sandbox.serve import Sandbox

COMPANY_CODES = {"SAMINC": "US01", "SAMLTD": "CA01"}
COUNTRIES = {"USA": "US", "Canada": "CA"}


@pytest.fixture
def project(fresh_sandbox: Sandbox, tmp_path: Path) -> Project:
    """The sandbox environment of meltano.yml, pointed at this test's simulators and files."""
    return Project.create(fresh_sandbox, tmp_path)


def basware_posts(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [r for r in request_log(sandbox.basware.base_url)
            if r["method"] == "POST" and r["path"] not in ("/v1/tokens",)]


def by_code(tenant: dict[str, Any], endpoint: str) -> dict[str, dict[str, Any]]:
    return {r["externalCode"]: r for r in tenant["master_data"].get(endpoint, [])}


def test_master_data_pipeline(fresh_sandbox: Sandbox, project: Project) -> None:
    # -- first run: everything arrives -----------------------------------------------------
    first = project.run("tap-sage300", "target-basware")
    assert first.ok, first.output[-5000:]

    sage = build_dataset("demo", seed=0).sage  # what the Sage simulator serves
    tenant = basware_tenant(fresh_sandbox)
    vendors, accounts = by_code(tenant, "vendors"), by_code(tenant, "accounts")
    cost_centers, terms = by_code(tenant, "costCenters"), by_code(tenant, "paymentTerms")
    orders, lines = by_code(tenant, "matchingOrders"), by_code(tenant, "matchingOrderLines")

    for company, records in sage.items():
        code = COMPANY_CODES[company]
        for vendor in records["AP/APVendors"]:
            sent = vendors[f"{company}-{vendor['VendorNumber']}"]
            assert sent["vendorCode"] == vendor["VendorNumber"]
            assert sent["name"] == vendor["VendorName"]
            assert sent["companies"] == [{"companyCode": code, "inheritToChildUnits": False}]
            assert sent["processingStatus"] == {
                "active": vendor["Status"] == "Active",  # inactive vendors: active false
                "paymentDenied": vendor["OnHold"] == "OnHold"}
            assert sent["paymentTerms"] == {"paymentTermCode": vendor["Terms"]}
            (address,) = sent["addresses"]
            assert (address["addressLine1"], address["cityName"], address["postalZone"],
                    address["countryId"]) == (vendor["AddressLine1"], vendor["City"],
                                              vendor["ZipPostalCode"],
                                              COUNTRIES[vendor["Country"]])
            assert sent["contacts"][0]["email"] == vendor["Email"]
        for account in records["GL/GLAccounts"]:
            sent = accounts[f"{company}-{account['UnformattedAccount']}"]
            assert sent["accountCode"] == account["AccountNumber"]
            assert sent["accountNames"] == [{"language": "en-US",
                                             "translation": account["Description"]}]
            assert sent["companies"] == [{"companyCode": code, "inherit": False,
                                          "active": account["Status"] == "Active"}]
        for segment in records["GL/GLSegmentCodes"]:
            if segment["SegmentNumber"] == "000002":
                sent = cost_centers[f"{company}-{segment['SegmentCodeKey']}"]
                assert sent["costCenterNames"][0]["translation"] == \
                    segment["SegmentCodeDescription"]
                assert sent["companies"] == [{"companyCode": code, "active": True}]
        for term in records["AP/APTerms"]:
            sent = terms[f"{company}-{term['TermsCode']}"]
            assert sent["paymentTermNames"][0]["translation"] == term["Description"]
            assert sent["dueDateDays"] == term["TermsPaymentSchedule"][0]["DueNumberOfDays"]
        for order in records["PO/POPurchaseOrders"]:
            number = order["PurchaseOrderNumber"]
            if order["Completed"] == "Yes":
                assert f"{company}-{number}" not in orders  # closed: Basware never needs it
                continue
            sent = orders[f"{company}-{number}"]
            assert (sent["orderNumber"], sent["companyCode"], sent["supplierCode"],
                    sent["currencyCode"]) == (number, code, order["Vendor"],
                                              order["CurrencyCode"])
            for line in order["PurchaseOrderLines"]:
                key = f"{company}-{number}-{line['LineNumber']}"
                if line["Completed"] == "Yes":
                    assert key not in lines
                    continue
                sent = lines[key]
                assert (sent["orderExternalCode"], sent["lineNumber"], sent["quantity"],
                        sent["netSum"], sent["productCode"]) == (
                    f"{company}-{number}", str(line["LineNumber"]), line["QuantityOrdered"],
                    line["ExtendedCost"], line["ItemNumber"])
                coding = sent["orderLineCoding"][0]
                account = line["ExpenseAccount"]
                assert coding["accountCode"] == f"{account[:4]}-{account[4:]}"
                assert coding["costCenterCode"] == account[4:]

    items = {(entry["entityType"], item["externalCode"]): (
        item["status"], [error["message"] for error in item["errors"]])
        for entry in tenant["request_status"] for system in entry["systems"]
        for item in system["items"]}
    assert len(items) == sum(len(by_code(tenant, e)) for e in tenant["master_data"])
    # P2P took every record but the demo's refusals, and refused those with their reasons.
    assert {key: item for key, item in items.items() if item[0] != "Success"} == {
        key: ("Error", reasons) for key, reasons in P2P_REFUSALS.items()}
    assert "5 rejected, 0 failed" in first.output

    # Each refusal is rejected in the ledger with Basware's reason: `audit failures` lists
    # it, `audit replay --failed` offers it.
    streams = {"Vendor": "vendors", "MatchingOrder": "matching_orders",
               "MatchingOrderLine": "matching_order_lines"}
    with Ledger.open(project.ledger_url) as ledger:
        failed = {(e.stream, e.target_key): (e.action, e.error)
                  for e in ledger.replayable(failed_only=True).entries}
        grouped = sum(group.keys for group in ledger.failures())
    assert failed == {(streams[kind], code): (Action.REJECTED, "Basware: " + "; ".join(reasons))
                      for (kind, code), reasons in P2P_REFUSALS.items()}
    assert grouped == len(P2P_REFUSALS)

    # One key traces a record from its read in Sage to its outcome in Basware.
    with Ledger.open(project.ledger_url) as ledger:
        trail = [(e.plugin, e.action, e.target_key) for e in ledger.trace("SAMINC/1210")]
    assert trail == [("tap-sage300", Action.READ, None),
                     ("target-basware", Action.CREATED, "SAMINC-1210")]

    # -- a user changes one vendor in Sage: exactly that vendor is posted again ---------------
    touched = requests.post(f"{fresh_sandbox.sage300.base_url}/_sandbox/touch", json={
        "company": "SAMINC", "resource": "AP/APVendors", "key": "1210",
        "changes": {"PhoneNumber": "5550001111"}}, timeout=30)
    assert touched.status_code == 200, touched.text
    requests.delete(f"{fresh_sandbox.basware.base_url}/_sandbox/requests", timeout=30)

    second = project.run("master-data")

    assert second.ok, second.output[-5000:]
    (post,) = basware_posts(fresh_sandbox)
    assert post["path"] == "/v1/vendors"
    assert [(v["externalCode"], v["contacts"][0]["telephone"]) for v in post["body"]] == [
        ("SAMINC-1210", "5550001111")]

    # -- nothing changed: nothing posted, one Sage read per stream and company --------------
    requests.delete(f"{fresh_sandbox.basware.base_url}/_sandbox/requests", timeout=30)
    sage_log = f"{fresh_sandbox.sage300.base_url}/_sandbox/requests"
    requests.delete(sage_log, timeout=30)

    third = project.run("master-data")

    assert third.ok, third.output[-5000:]
    assert basware_posts(fresh_sandbox) == []
    # A first page that reaches Sage's @odata.count ends the read: 7 streams x 2 companies,
    # each company's vendor count (the first page of vendor_keys: nothing was deleted, so no
    # vendor list is sent; tests/test_deletions.py) and tax_codes' authority names and
    # purchase rates (two small GETs per company).
    reads = [f"{r['path']}?{r['query']}" for r in requests.get(sage_log, timeout=30).json()[
        "requests"] if r["method"] == "GET" and not r["path"].endswith("$metadata")]
    assert len(reads) == len(set(reads)) == 20, reads
    assert sum("$select=VendorNumber&" in read for read in reads) == 2

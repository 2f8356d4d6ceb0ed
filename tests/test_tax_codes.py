"""Tax codes both ways, against both simulators over HTTP.

Sage -> Basware (the master-data job): every purchase tax group of each company becomes one
Basware tax code per combination of item classes per authority (``WATAX-1.2``), with the
total rate for a taxable vendor; an unchanged re-run posts no tax code.

Basware -> Sage (the invoices job): an invoice line's tax code becomes the entry's TaxGroup
and the detail's TaxClass1..n, its tax is split per authority as Sage computes it; an invoice
whose tax code Sage does not have, or whose tax is not what Sage's rates give, is rejected
alone with the reason, in the ledger and in Basware's transfer response.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e import Project, basware_tenant, request_log, sage_entries

from mlc_sandbox.data import TAX_SETUP, build_dataset
from mlc_sandbox.serve import Sandbox

CLI = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "ml-connector"

@pytest.fixture
def project(fresh_sandbox: Sandbox, tmp_path: Path) -> Project:
    return Project.create(fresh_sandbox, tmp_path)


def tax_codes_in_basware(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {r["externalCode"]: r for r in basware_tenant(sandbox)["master_data"]["taxCodes"]}


def test_sage_tax_groups_reach_basware_as_flat_tax_codes(fresh_sandbox: Sandbox,
                                                         project: Project) -> None:
    first = project.run("tap-sage300", "target-basware")
    assert first.ok, first.output[-5000:]

    codes = tax_codes_in_basware(fresh_sandbox)
    # Two authorities, item classes 1 and 2 each: four codes per company.
    assert sorted(codes) == sorted(f"{company}-{group}-{a}.{b}"
                                   for company, (group, _, _) in TAX_SETUP.items()
                                   for a in (1, 2) for b in (1, 2))
    bc = codes["SAMLTD-BCTAX-1.2"]
    assert bc["taxCode"] == "BCTAX-1.2"
    assert bc["taxPercentage"] == 5.0  # GST 5% at class 1, PST exempt at class 2
    assert bc["companies"] == [{"companyCode": "CA01", "inherit": False, "active": True}]
    names = {n["language"]: n["translation"] for n in bc["taxCodeNames"]}
    assert names["en-US"] == ("British Columbia GST and PST: GST 5% (class 1), "
                              "BCPST 0% (class 2)")
    assert codes["SAMINC-WATAX-1.1"]["taxPercentage"] == pytest.approx(10.1)
    assert codes["SAMINC-WATAX-2.2"]["taxPercentage"] == 0.0

    # Every tax code the vendors and the waiting invoices use is in Basware.
    dataset = build_dataset("demo", seed=0)
    vendor_groups = {(company, vendor["TaxGroup"]) for company, tables in dataset.sage.items()
                     for vendor in tables["AP/APVendors"]}
    held = {(code.split("-")[0], record["taxCode"]) for code, record in codes.items()}
    assert vendor_groups <= {(company, code.rsplit("-", 1)[0]) for company, code in held}
    companies = {"US01": "SAMINC", "CA01": "SAMLTD"}
    used = {(companies[invoice["companyCode"]], row["taxCode"])
            for invoice in dataset.basware_invoices for row in invoice["codingRows"]}
    assert used <= held

    # A tax code is traced by its Sage key from the read in Sage to its outcome in Basware.
    trace = subprocess.run([str(CLI), "audit", "trace", "SAMLTD/BCTAX-1.2"], cwd=project.root,
                           env=project.env, capture_output=True, text=True, timeout=120,
                           check=False)
    assert trace.returncode == 0, trace.stderr
    assert "tap-sage300" in trace.stdout and "target-basware" in trace.stdout, trace.stdout
    assert "created" in trace.stdout, trace.stdout

    # Unchanged: no tax code is posted again.
    requests.delete(f"{fresh_sandbox.basware.base_url}/_sandbox/requests", timeout=30)
    again = project.run("tap-sage300", "target-basware")
    assert again.ok, again.output[-5000:]
    assert [r for r in request_log(fresh_sandbox.basware.base_url)
            if r["method"] == "POST" and r["path"] == "/v1/taxCodes"] == []


def admin_invoice(sandbox: Sandbox, **body: Any) -> dict[str, Any]:
    created = requests.post(f"{sandbox.basware.base_url}/_sandbox/invoices", json=body,
                            timeout=30)
    assert created.status_code == 201, created.text
    return created.json()


def test_invoice_lines_post_with_sage_tax_fields_and_bad_codes_are_rejected_alone(
        fresh_sandbox: Sandbox, project: Project) -> None:
    dataset = build_dataset("demo", seed=0)
    orders = {o["PurchaseOrderNumber"]: o for o in dataset.sage["SAMLTD"]["PO/POPurchaseOrders"]}
    order = next(o for o in orders.values() if o["Completed"] == "No"
                 and len(o["PurchaseOrderLines"]) > 1)
    # A PO invoice of goods for resale (BCTAX-1.2: GST only), one whose code Sage does not
    # have, and one whose code exists but whose tax is not what Sage's rate gives.
    resale = admin_invoice(fresh_sandbox, companyCode="CA01", invoiceNumber="INV-TAX-OK",
                           orderNumber=order["PurchaseOrderNumber"])
    unknown = admin_invoice(fresh_sandbox, companyCode="CA01", invoiceNumber="INV-TAX-GST5",
                            taxCode="GST5")
    wrong = admin_invoice(fresh_sandbox, companyCode="CA01", invoiceNumber="INV-TAX-RATE",
                          orderNumber=order["PurchaseOrderNumber"], taxCode="BCTAX-1.1")

    run = project.run("invoices")
    assert run.ok, run.output[-5000:]

    entries = sage_entries(fresh_sandbox)
    [entry] = entries[resale["invoiceId"]]
    assert entry["TaxGroup"] == "BCTAX"
    assert (entry["TaxAuthority1"], entry["TaxAuthority2"]) == ("GST", "BCPST")
    gst = round(sum(round(line["ExtendedCost"] * 0.05, 2)
                    for line in order["PurchaseOrderLines"]), 2)
    assert entry["TaxAmount1"] == pytest.approx(gst)  # GST
    assert entry["TaxAmount2"] == 0.0  # PST: goods for resale are exempt
    assert entry["DocumentTotalIncludingTax"] == pytest.approx(resale["grossSum"])
    for detail, line in zip(entry["InvoiceDetails"], order["PurchaseOrderLines"], strict=True):
        assert (detail["TaxClass1"], detail["TaxClass2"]) == (1, 2)
        assert detail["TaxAmount1"] == pytest.approx(round(line["ExtendedCost"] * 0.05, 2))
        assert detail["TaxAmount2"] == 0.0

    # The bad ones: nothing in Sage, Basware told why, the good invoices of the run went on.
    assert unknown["invoiceId"] not in entries and wrong["invoiceId"] not in entries
    invoices = {i["invoiceId"]: i for i in basware_tenant(fresh_sandbox)["invoices"]}
    assert invoices[resale["invoiceId"]]["processingStatus"] == "Transferred"
    for bad, words in ((unknown, ["tax code GST5 is not a tax code of Sage 300 company SAMLTD",
                                  "BCTAX"]),
                       (wrong, ["differs from Sage's", "for tax code BCTAX-1.1",
                                "GST 5% (class 1), BCPST 7% (class 1)"])):
        invoice = invoices[bad["invoiceId"]]
        assert invoice["processingStatus"] == "TransferFailed"
        message = invoice["transferResponses"][-1]["responseMessage"]
        for text in words:
            assert text in message, message
    transferred = [i for i in invoices.values() if i["processingStatus"] == "Transferred"]
    assert len(transferred) > 20  # the demo's good invoices, all with tax codes, went in

    # The AP team sees the invoice and the reason among the open failures.
    failures = subprocess.run([str(CLI), "audit", "failures"], cwd=project.root,
                              env=project.env, capture_output=True, text=True, timeout=120,
                              check=False)
    assert failures.returncode == 0, failures.stderr
    assert "INV-TAX-GST5" in failures.stdout and "tax code GST5" in failures.stdout, \
        failures.stdout

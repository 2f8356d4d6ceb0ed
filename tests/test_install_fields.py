"""Runs against an install that does not offer every field the connector uses by default.

The Sage simulator's ``version: older`` (sage300_schema.py, "Versions") lacks the vendors' fax
number and web site and the invoice lines' description, and calls the PO line's expense
account ``GLExpenseAccount``. Both jobs must stop before they write anything, naming what is
missing and its fix; once the fixes `ml-connector check` names are set (field_names, two
fields deselected), both jobs end exactly where a run against a current install ends.
"""

from __future__ import annotations

import json
from pathlib import Path

import requests
from e2e import SEQUENCE, Project, Snapshot, differences, request_log, snapshot

from mlc_sandbox.serve import Sandbox

FIELD_NAMES = json.dumps({"PO/POPurchaseOrders/PurchaseOrderLines/ExpenseAccount":
                          "GLExpenseAccount"})
SELECT = json.dumps(["gl_accounts.*", "cost_centers.*", "payment_terms.*", "vendors.*",
                     "!vendors.FaxNumber", "!vendors.WebSite", "purchase_orders.*",
                     "purchase_order_lines.*"])


def writes(base_url: str, since: int = 0) -> list[str]:
    """Every request that could change a record (token requests aside)."""
    return [f"{r['method']} {r['path']}" for r in request_log(base_url, since)
            if r["method"] != "GET" and not r["path"].endswith("/tokens")]


def test_an_older_install_stops_both_jobs_before_they_write_until_its_names_are_set(
        fresh_sandbox: Sandbox, tmp_path: Path, baseline: Snapshot) -> None:
    sage, basware = fresh_sandbox.sage300.base_url, fresh_sandbox.basware.base_url
    requests.patch(f"{sage}/_sandbox/settings", json={"version": "older"},
                   timeout=10).raise_for_status()
    project = Project.create(fresh_sandbox, tmp_path)

    master = project.run("master-data", name="older-master-data")
    assert not master.ok
    for missing in ("vendors: AP/APVendors has no property FaxNumber",
                    "has no property WebSite",
                    "PurchaseOrderLines has no property ExpenseAccount",
                    "nothing was read or written"):
        assert missing in master.output, master.output[-3000:]
    assert "(similar names in this install: GLExpenseAccount)" in master.output
    assert writes(basware) == []
    # Sage was asked for its $metadata and for nothing else.
    assert {r["path"].rsplit("/", 1)[-1] for r in request_log(sage)} == {"$metadata"}

    invoices = project.run("invoices", name="older-invoices")
    assert not invoices.ok
    assert ("target-sage300, PO look-up (coding from the PO line)" in invoices.output
            and "has no property ExpenseAccount" in invoices.output)
    assert writes(sage) == []

    # The fixes the check names: the install's name of the expense account, and the two
    # vendor fields deselected (here as Meltano reads them from the environment).
    project.env.update({"TAP_SAGE300_FIELD_NAMES": FIELD_NAMES,
                        "TARGET_SAGE300_FIELD_NAMES": FIELD_NAMES,
                        "TAP_SAGE300__SELECT": SELECT})
    for job in SEQUENCE:
        run = project.run(job, name=f"mapped-{job}")
        assert run.ok, run.output[-4000:]
    assert "DistributionDescription in this install's $metadata. The connector goes on " \
           "without it" in project.runs[-1].output
    assert differences(baseline, snapshot(fresh_sandbox)) == []
    state = requests.get(f"{sage}/_sandbox/state", timeout=60).json()
    details = [detail for company in state["companies"].values()
               for batch in company["AP/APInvoiceBatches"] for entry in batch["Invoices"]
               for detail in entry["InvoiceDetails"]]
    assert details and all(not detail.get("DistributionDescription") for detail in details)

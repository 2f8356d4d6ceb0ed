"""`.singer` fixtures pushed through target-basware; assertions on what Basware received.

Each test starts from a reseeded sandbox and an empty ledger (see conftest.py).
"""

from __future__ import annotations

from typing import Any

from ml_connector_core.ledger import Action, Ledger
from mlc_sandbox.data import BASWARE_CLIENT_SECRET

ORDER = ["paymentTerms", "accounts", "costCenters", "vendors", "matchingOrders",
         "matchingOrderLines"]


def _bodies(posts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {record["externalCode"]: record for post in posts for record in post["body"]}


def test_master_data_arrives_nested_in_dependency_order(run_target, basware, ledger_entries):
    run = run_target("master_data.singer")

    assert run.returncode == 0, run.stderr
    posts = basware.posts()
    # The fixture sends vendors, orders and lines before the reference data they point at;
    # Basware must still receive terms, accounts and cost centers first, then vendors, orders,
    # lines: one POST each.
    assert [p["path"].removeprefix("/v1/") for p in posts] == ORDER
    assert all(p["status"] == 200 for p in posts)

    vendors = _bodies(basware.posts("vendors"))
    assert vendors["FIX-V100"] == {
        "externalCode": "FIX-V100", "vendorCode": "V100", "name": "Fixture Supplies Inc.",
        "sourceSystem": "SAGE300",
        "companies": [{"companyCode": "US01", "inheritToChildUnits": False}],
        "processingStatus": {"active": True, "paymentDenied": False},
        "paymentTerms": {"paymentTermCode": "FX30"},
        "identifiers": [{"id": "123456789", "schemeId": "VAT"}],
        "addresses": [{"externalCode": "FIX-V100-ADDR", "name": "Fixture Supplies Inc.",
                       "addressType": "PostalAddress", "default": True,
                       "addressLine1": "1 Main St", "cityName": "Seattle",
                       "countrySubEntity": "WA", "postalZone": "98101", "countryId": "US"}],
        "contacts": [{"name": "Ana Ortiz", "role": "PrimaryContact", "telephone": "5551234567",
                      "email": "ap@fixture.example.com"}],
    }
    # Inactive and on hold: still sent, switched off; empty address/contact not sent at all.
    assert vendors["FIX-V200"]["processingStatus"] == {"active": False, "paymentDenied": True}
    assert "addresses" not in vendors["FIX-V200"] and "contacts" not in vendors["FIX-V200"]

    accounts = _bodies(basware.posts("accounts"))
    assert accounts["FIX-6100100"] == {
        "externalCode": "FIX-6100100", "accountCode": "6100-100",
        "accountNames": [{"language": "en-US",
                          "translation": "Office supplies - Administration"}],
        "companies": [{"companyCode": "US01", "inherit": False, "active": True}]}
    assert accounts["FIX-6100900"]["companies"][0]["active"] is False
    assert _bodies(basware.posts("costCenters"))["FIX-CC200"] == {
        "externalCode": "FIX-CC200", "costCenterCode": "200",
        "costCenterNames": [{"language": "en-US", "translation": "Warehouse East"}],
        "companies": [{"companyCode": "US01", "active": True}]}
    terms = _bodies(basware.posts("paymentTerms"))
    assert terms["FIX-CA01-FX30"] == {
        "externalCode": "FIX-CA01-FX30", "paymentTermCode": "FX30",
        "paymentTermNames": [{"language": "en-US", "translation": "2% 10, net 30"}],
        "validFrom": "2000-01-01T00:00:00Z", "validTo": "9999-12-31T00:00:00Z",
        "companies": [{"companyCode": "CA01", "inherit": False, "active": True}],
        "dueDateDays": 30, "cashDiscount": 2, "cashDueDateDays": 10}

    orders = _bodies(basware.posts("matchingOrders"))
    assert orders == {"FIX-PO1": {
        "externalCode": "FIX-PO1", "orderNumber": "PO1", "sourceSystem": "SAGE300",
        "companyCode": "US01", "organizationElementCode": "US01", "currencyCode": "USD",
        "supplierCode": "V100", "paymentTermCode": "FX30", "created": "2026-02-03T00:00:00Z",
        "description": "Replenishment PO1", "isClosed": False}}  # FIX-PO2 is closed: not sent
    lines = _bodies(basware.posts("matchingOrderLines"))
    assert lines["FIX-PO1-1000"] == {
        "externalCode": "FIX-PO1-1000", "orderExternalCode": "FIX-PO1", "lineNumber": "1000",
        "quantity": 12, "matchingMode": "Standard", "netPrice": 2.5, "netSum": 30,
        "productCode": "FR-1020", "productName": "Stretch film 18in", "uom": "Each",
        "isClosed": False, "isDeleted": False,
        "orderLineCoding": [{"externalCode": "FIX-PO1-1000-C1", "rowIndex": 1,
                             "allocatedQuantity": 12, "netTotal": 30,
                             "accountCode": "6100-100", "costCenterCode": "100"}]}

    # Basware processed every item successfully, and stored what was sent.
    statuses = basware.item_statuses()
    assert len(statuses) == 12 and set(statuses.values()) == {"Success"}
    assert basware.records("vendors")["FIX-V100"] == vendors["FIX-V100"]

    # The ledger has each outcome with both request ids; the STATE came after confirmation.
    vendor_post = basware.posts("vendors")[0]
    (entry,) = [e for e in ledger_entries("FIX-V100") if e.action == Action.CREATED]
    assert entry.target_key == "FIX-V100"
    assert entry.bw_request_id == vendor_post["headers"]["X-BW-REQUEST-ID"]
    assert entry.basware_request_id in {e["requestId"] for e in
                                        basware.tenant()["request_status"]}
    assert [e.action for e in ledger_entries("FIX-PO2")] == [Action.UNCHANGED]
    assert run.states[-1]["bookmarks"]["payment_terms"] == {}

    # The run summary is on stderr.
    assert "vendors: 2 created" in run.stderr
    assert "6 POST(s) to Basware; 0 record(s) rejected" in run.stderr


def test_unchanged_rerun_posts_nothing_and_one_changed_vendor_posts_one(run_target, basware,
                                                                        ledger_entries):
    assert run_target("master_data.singer").returncode == 0
    basware.clear_log()

    again = run_target("master_data.singer")

    assert again.returncode == 0, again.stderr
    assert basware.posts() == []
    assert [e.action for e in ledger_entries("FIX-V100")] == [Action.CREATED,
                                                               Action.UNCHANGED]
    # Nothing was waiting, so every STATE is confirmed at once.
    assert len(again.states) == 3

    changed = run_target("changed_vendor.singer")

    assert changed.returncode == 0, changed.stderr
    (post,) = basware.posts()
    assert post["path"] == "/v1/vendors"
    assert [(r["externalCode"], r["contacts"][0]["telephone"]) for r in post["body"]] == [
        ("FIX-V100", "5559990000")]
    assert basware.records("vendors")["FIX-V100"]["contacts"][0]["telephone"] == "5559990000"
    assert ledger_entries("FIX-V100")[-1].action == Action.UPDATED


def test_contract_violations_are_rejected_alone_with_key_and_field(run_target, basware,
                                                                   ledger_entries):
    run = run_target("contract_violations.singer")

    assert run.returncode == 0, run.stderr  # bad records are business problems, not a crash
    rejected = {key: ledger_entries(key)[-1] for key in
                ("CV-V301", "CV-V302", "CV-V303", "CV-PO1-2000")}
    assert all(e.action == Action.REJECTED for e in rejected.values())
    assert rejected["CV-V301"].error == "field 'name': must be string (got None)"
    assert "field 'countryCode'" in rejected["CV-V302"].error
    assert "'USA'" in rejected["CV-V302"].error
    assert "field 'companyCode'" in rejected["CV-V303"].error
    assert rejected["CV-PO1-2000"].error == "field 'quantity': must be number (got 'ten')"
    assert rejected["CV-V301"].payload["vendorCode"] == "V301"  # kept for replay
    # The log names record and field too.
    assert "vendors record CV-V301 rejected: field 'name'" in run.stderr

    # The good records arrived.
    assert set(_bodies(basware.posts("vendors"))) == {"CV-V300"}
    assert set(_bodies(basware.posts("matchingOrderLines"))) == {"CV-PO1-1000"}
    statuses = basware.item_statuses()
    assert statuses[("Vendor", "CV-V300")] == "Success"
    assert statuses[("MatchingOrderLine", "CV-PO1-1000")] == "Success"
    assert "4 record(s) rejected" in run.stderr
    assert run.states == [{"bookmarks": {"vendors": {"replication_key_value":
                                                     "2026-03-02T00:00:00Z"}}}]


def test_basware_rejections_are_reported_and_the_run_succeeds(run_target, basware,
                                                             ledger_entries):
    run = run_target("basware_rejections.singer")

    assert run.returncode == 0, run.stderr
    outcome = {key: ledger_entries(key)[-1] for key in
               ("BR-V400", "BR-V401", "BR-PO4", "BR-PO5", "BR-PO6")}
    assert outcome["BR-V400"].action == Action.CREATED
    assert outcome["BR-PO4"].action == Action.CREATED
    # A business error from the asynchronous processing (requestStatus item Error).
    assert outcome["BR-V401"].action == Action.REJECTED
    assert outcome["BR-V401"].error == ("Basware: Record skipped due to wrong or missing "
                                        "CompanyCode 'ZZ01'")
    assert outcome["BR-V401"].basware_request_id
    assert outcome["BR-PO6"].error == ("Basware: Supplier V999 does not exist for company "
                                       "US01")
    # Basware refused the whole POST (400) for one record: that record is rejected with
    # Basware's words, and the others of its batch are sent again and arrive.
    assert outcome["BR-PO5"].action == Action.REJECTED
    assert "organizationElementCode" in outcome["BR-PO5"].error
    assert outcome["BR-PO5"].error.startswith("Basware refused the record (HTTP 400)")
    order_posts = [(p["status"], sorted(r["externalCode"] for r in p["body"]))
                   for p in basware.posts("matchingOrders")]
    assert order_posts == [(400, ["BR-PO4", "BR-PO5", "BR-PO6"]), (200, ["BR-PO4", "BR-PO6"])]
    assert basware.item_statuses()[("MatchingOrder", "BR-PO4")] == "Success"
    assert "3 record(s) rejected" in run.stderr


def test_unknown_stream_fails_loudly(run_target, basware):
    run = run_target("unknown_stream.singer")

    assert run.returncode != 0
    assert "target-basware has no stream 'customers'" in run.stderr
    assert basware.posts() == []


def test_bad_credentials_fail_the_run_without_showing_the_secret(run_target, basware):
    run = run_target("master_data.singer", client_secret="wrong-" + BASWARE_CLIENT_SECRET)

    assert run.returncode != 0
    assert "refused the client credentials" in run.stderr
    assert BASWARE_CLIENT_SECRET not in run.stderr
    assert run.states == []  # nothing confirmed, nothing checkpointed
    assert basware.posts() == []


def test_secret_is_never_in_logs_state_or_ledger(run_target, ledger: Ledger, ledger_url):
    run = run_target("master_data.singer")

    assert run.returncode == 0
    assert BASWARE_CLIENT_SECRET not in run.stderr
    assert BASWARE_CLIENT_SECRET not in str(run.states)
    dump = "\n".join(str(e) for key in ("FIX-V100", "FIX-PO1-1000") for e in ledger.trace(key))
    assert dump and BASWARE_CLIENT_SECRET not in dump

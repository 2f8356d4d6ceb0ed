"""tap-sage300 against the Sage 300 simulator: what it extracts, what it asks for, and state.

Each test runs the tap CLI against a reseeded simulator and checks the records against the
simulator's own state (/_sandbox/state) and the queries against its request log
(/_sandbox/requests).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from tap_sage300_testkit import SageSandbox, ap_batch

COMPANIES = ("SAMINC", "SAMLTD")
VENDOR_SELECT = (
    "VendorNumber,ShortName,VendorName,GroupCode,Status,InactiveDate,OnHold,DateLastMaintained,"
    "StartDate,AddressLine1,AddressLine2,AddressLine3,AddressLine4,City,StateProvince,"
    "ZipPostalCode,Country,ContactName,PhoneNumber,FaxNumber,Email,WebSite,CurrencyCode,"
    "AccountSet,RateType,Terms,TaxGroup,TaxRegistrationCode1,TaxRegistrationCode2,"
    "TaxRegistrationCode3,TaxRegistrationCode4,TaxRegistrationCode5,TaxClassCode1,"
    "TaxClassCode2,TaxClassCode3,TaxClassCode4,TaxClassCode5,BankCode,PaymentCode,"
    "DistributionSet,DistributionCode,DuplicateAmountCode,DuplicateDateCode"
)
PO_SELECT = ("PurchaseOrderSequenceKey,PurchaseOrderNumber,Vendor,VendorName,PurchaseOrderDate,"
             "DateLastMaintained,Description,Reference,Comment,CurrencyCode,TermsCode,Completed,"
             "ExtendedCostTotal,PurchaseOrderLines")


def bookmark(state: dict[str, Any], stream: str, company: str) -> str | None:
    for partition in state["bookmarks"][stream]["partitions"]:
        if partition["context"] == {"company_id": company}:
            return partition.get("replication_key_value")
    return None


def vendor_keys(run: Any, company: str | None = None) -> list[str]:
    return sorted(r["VendorNumber"] for r in run.of("vendors", company))


def test_every_stream_for_both_companies_matches_sage(sage: SageSandbox) -> None:
    for company, vendor, account in (("SAMINC", "1200", "6100100"), ("SAMLTD", "1210",
                                                                      "6200200")):
        sage.post(company, "AP/APInvoiceBatches", ap_batch(vendor, f"INV-{company}", account, 50))
    sage.clear_requests()

    run = sage.run()

    assert run.returncode == 0, run.stderr
    tables = sage.state()["companies"]
    for company in COMPANIES:
        sage_data = tables[company]
        expected = {
            "vendors": len(sage_data["AP/APVendors"]),
            "customers": len(sage_data["AR/ARCustomers"]),
            "payment_terms": len(sage_data["AP/APTerms"]),
            "gl_accounts": len(sage_data["GL/GLAccounts"]),
            "cost_centers": sum(1 for s in sage_data["GL/GLSegmentCodes"]
                                if s["SegmentNumber"] == "000002"),
            "purchase_orders": len(sage_data["PO/POPurchaseOrders"]),
            "purchase_order_lines": sum(len(po["PurchaseOrderLines"])
                                        for po in sage_data["PO/POPurchaseOrders"]),
            "ap_invoice_batches": 1,
        }
        got = {stream: len(run.of(stream, company)) for stream in expected}
        assert got == expected, company
        assert vendor_keys(run, company) == sorted(v["VendorNumber"]
                                                   for v in sage_data["AP/APVendors"])
    # Every record carries its company, and the key (which includes it) is unique.
    key_properties = {m["stream"]: m["key_properties"] for m in run.messages
                      if m["type"] == "SCHEMA"}
    for stream, records in run.records.items():
        assert all(r["company_id"] in COMPANIES for r in records), stream
        keys = Counter(tuple(r[k] for k in key_properties[stream]) for r in records)
        assert key_properties[stream][0] == "company_id"
        assert keys.most_common(1)[0][1] == 1, stream
    # One request per company and stream page, lines included in the PO request: no refetch.
    po_reads = [r for r in sage.requests() if "POPurchaseOrders" in r["path"]]
    assert len(po_reads) == 2 * 2  # 160 POs per company, Sage's PageSize 100: two pages each


def test_queries_carry_the_declared_select_and_no_filter_on_first_run(sage: SageSandbox) -> None:
    run = sage.run()
    assert run.returncode == 0, run.stderr

    vendors = sage.reads("SAMINC/AP/APVendors")
    assert vendors == [{"$select": [VENDOR_SELECT], "$top": ["1000"], "$count": ["true"]}]
    orders = sage.reads("SAMLTD/PO/POPurchaseOrders")
    assert orders[0] == {"$select": [PO_SELECT], "$top": ["1000"], "$count": ["true"]}
    # 161 POs in pages of 100 (Sage's PageSize): the rest is a window, the first request
    # again without $count (known already), from the first page's end, as many as are left.
    assert orders[1:] == [{"$select": [PO_SELECT], "$top": ["61"], "$skip": ["100"]}]
    assert sage.reads("SAMINC/GL/GLSegmentCodes") == [{
        "$select": ["SegmentNumber,SegmentCodeKey,SegmentCodeDescription"],
        "$filter": ["SegmentNumber eq '000002'"], "$top": ["1000"], "$count": ["true"]}]
    # Streams without a date are full table: never a $filter on a date.
    for resource in ("GL/GLAccounts", "AP/APTerms"):
        for query in sage.reads(f"SAMINC/{resource}"):
            assert "$filter" not in query
    # The raw query is readable OData (%20 for spaces, $ and quotes unescaped), as Sage logs it.
    raw = [r["query"] for r in sage.requests() if r["path"].endswith("GL/GLSegmentCodes")]
    assert "$filter=SegmentNumber%20eq%20'000002'" in raw[0]


def test_records_are_typed_trimmed_and_dated_consistently(sage: SageSandbox) -> None:
    sage.touch("SAMINC", "AP/APVendors", "1200", VendorName="Padded Name Inc.   ")
    run = sage.run()
    assert run.returncode == 0, run.stderr

    vendor = next(r for r in run.of("vendors", "SAMINC") if r["VendorNumber"] == "1200")
    assert vendor["VendorName"] == "Padded Name Inc."
    for record in run.of("vendors") + run.of("purchase_orders") + run.of("customers"):
        assert record["DateLastMaintained"].endswith("T00:00:00Z")
        assert len(record["DateLastMaintained"]) == 20
    order = run.of("purchase_orders", "SAMINC")[0]
    assert isinstance(order["PurchaseOrderSequenceKey"], int)
    assert order["Completed"] in ("Yes", "No")
    schemas = {m["stream"]: m["schema"] for m in run.messages if m["type"] == "SCHEMA"}
    assert schemas["vendors"]["properties"]["Status"]["enum"] == ["Active", "Inactive"]
    assert "number" in schemas["purchase_order_lines"]["properties"]["UnitCost"]["type"]
    assert schemas["vendors"]["properties"]["DateLastMaintained"]["format"] == "date-time"
    schema_streams = [m["stream"] for m in run.messages if m["type"] == "SCHEMA"]
    assert len(schema_streams) == len(set(schema_streams))  # once per stream
    assert set(run.records) <= set(schema_streams)


def test_dates_rendered_with_a_server_offset_keep_their_calendar_day(sage: SageSandbox) -> None:
    sage.settings(offset="-04:00")  # Sage renders dates at local midnight: ...T00:00:00-04:00
    run = sage.run()
    assert run.returncode == 0, run.stderr

    sage_vendors = {v["VendorNumber"]: v for v in sage.table("SAMINC", "AP/APVendors")}
    for record in run.of("vendors", "SAMINC"):
        written = sage_vendors[record["VendorNumber"]]["DateLastMaintained"]
        assert written.endswith("T00:00:00-04:00")
        assert record["DateLastMaintained"] == written[:10] + "T00:00:00Z"


def test_purchase_order_lines_carry_po_key_gl_account_and_cost_center(sage: SageSandbox) -> None:
    run = sage.run()
    assert run.returncode == 0, run.stderr

    for company in COMPANIES:
        accounts = {a["UnformattedAccount"]: a for a in sage.table(company, "GL/GLAccounts")}
        expected = {}
        for po in sage.table(company, "PO/POPurchaseOrders"):
            for line in po["PurchaseOrderLines"]:
                account = accounts[line["ExpenseAccount"]]
                expected[(po["PurchaseOrderSequenceKey"], line["LineNumber"])] = {
                    "PurchaseOrderNumber": po["PurchaseOrderNumber"], "Vendor": po["Vendor"],
                    "gl_account": line["ExpenseAccount"],
                    "gl_account_formatted": account["AccountNumber"],
                    "cost_center": account["AccountSegmentCode2"],
                    "completed": line["Completed"] == "Yes",
                    "QuantityOrdered": line["QuantityOrdered"], "UnitCost": line["UnitCost"],
                    "ExtendedCost": line["ExtendedCost"], "ItemNumber": line["ItemNumber"],
                }
        got = {(r["PurchaseOrderSequenceKey"], r["LineNumber"]): {k: r[k] for k in
                                                                   next(iter(expected.values()))}
               for r in run.of("purchase_order_lines", company)}
        assert got == expected, company
    # The cost center came from GLAccounts as the gl_accounts stream read it in this run: no
    # look-up request of its own, no refetch of POs (without that stream, see the deselection
    # test).
    for company in COMPANIES:
        (read,) = sage.reads(f"{company}/GL/GLAccounts")
        assert "Description" in read["$select"][0].split(",")


def test_line_with_an_account_sage_does_not_have_is_emitted_and_reported(
        sage: SageSandbox, tmp_path: Any) -> None:
    created = sage.post("SAMINC", "PO/POPurchaseOrders", {
        "Vendor": "1200", "Description": "bad coding",
        "PurchaseOrderLines": [
            {"ItemNumber": "FR-1020", "QuantityOrdered": 2, "UnitCost": 5,
             "ExpenseAccount": "6999200"},
            {"ItemNumber": "FR-1020", "QuantityOrdered": 1, "UnitCost": 5,
             "ExpenseAccount": "6100100"}]})
    key = created["PurchaseOrderSequenceKey"]
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"

    run = sage.run(sage.config(ledger_url=ledger))

    assert run.returncode == 0, run.stderr
    lines = {r["LineNumber"]: r for r in run.of("purchase_order_lines", "SAMINC")
             if r["PurchaseOrderSequenceKey"] == key}
    assert lines[1000]["gl_account"] == "6999200" and lines[1000]["cost_center"] is None
    assert lines[2000]["cost_center"] == "100"
    message = (f"purchase_order_lines SAMINC/{key}/1000: field gl_account='6999200' is not an "
               "account in GLAccounts; cost_center emitted as null")
    assert message in run.stderr

    from ml_connector_core.ledger import Ledger

    with Ledger.open(ledger) as book:
        entries = book.trace(f"SAMINC/{key}/1000")
    assert [(e.stream, e.action, e.error) for e in entries] == [
        ("purchase_order_lines", "read", message)]


def test_cost_center_segment_setting_picks_another_segment(sage: SageSandbox) -> None:
    run = sage.run(sage.config(cost_center_segment=1))
    assert run.returncode == 0, run.stderr

    assert sage.reads("SAMINC/GL/GLSegmentCodes")[0]["$filter"] == ["SegmentNumber eq '000001'"]
    assert {r["SegmentNumber"] for r in run.of("cost_centers")} == {"000001"}
    line = run.of("purchase_order_lines", "SAMINC")[0]
    assert line["cost_center"] == line["gl_account"][:4]  # ACCT(4)+DEPT(3) in the demo chart
    account = run.of("gl_accounts", "SAMINC")[0]
    assert account["cost_center"] == account["AccountSegmentCode1"]


def test_rerun_with_state_reads_only_the_boundary_day_and_the_changed_vendor(
        sage: SageSandbox) -> None:
    first = sage.run()
    assert first.returncode == 0, first.stderr
    state = first.final_state
    boundary = {c: bookmark(state, "vendors", c) for c in COMPANIES}
    assert all(boundary.values())

    touched = sage.touch("SAMLTD", "AP/APVendors", "1200", VendorName="Renamed Vendor Ltd.")
    sage.clear_requests()
    second = sage.run(state=state)

    assert second.returncode == 0, second.stderr
    for company in COMPANIES:
        on_boundary = sorted(v["VendorNumber"] for v in sage.table(company, "AP/APVendors")
                             if v["DateLastMaintained"] == boundary[company]
                             or (company == "SAMLTD" and v["VendorNumber"] == "1200"))
        assert vendor_keys(second, company) == on_boundary
        # Then the vendor numbers (vendor_keys), sent whole every run without a ledger.
        assert sage.reads(f"{company}/AP/APVendors") == [{
            "$select": [VENDOR_SELECT], "$top": ["1000"], "$count": ["true"],
            "$filter": [f"DateLastMaintained ge {boundary[company]}"]}, {
            "$select": ["VendorNumber"], "$top": ["1000"], "$count": ["true"]}]
        assert sorted(r["VendorNumber"] for r in second.of("vendor_keys", company)) == \
            sorted(v["VendorNumber"] for v in sage.table(company, "AP/APVendors"))
    assert len(vendor_keys(second, "SAMLTD")) < len(first.of("vendors", "SAMLTD"))
    changed = next(r for r in second.of("vendors", "SAMLTD") if r["VendorNumber"] == "1200")
    assert changed["VendorName"] == "Renamed Vendor Ltd."
    assert bookmark(second.final_state, "vendors", "SAMLTD") == touched["DateLastMaintained"]
    assert bookmark(second.final_state, "vendors", "SAMINC") == boundary["SAMINC"]
    # The full-table streams are read whole again; downstream dedups them by payload hash.
    assert len(second.of("gl_accounts")) == len(first.of("gl_accounts"))


def test_start_date_filters_the_first_run(sage: SageSandbox) -> None:
    run = sage.run(sage.config(start_date="2026-09-01T15:30:00Z"))
    assert run.returncode == 0, run.stderr

    assert sage.reads("SAMINC/AP/APVendors")[0]["$filter"] == [
        "DateLastMaintained ge 2026-09-01T00:00:00Z"]
    expected = sorted(v["VendorNumber"] for v in sage.table("SAMINC", "AP/APVendors")
                      if v["DateLastMaintained"] >= "2026-09-01")
    assert vendor_keys(run, "SAMINC") == expected


@pytest.mark.parametrize("in_flight", [1, 4])
def test_pages_follow_next_links_inside_top_windows(sage: SageSandbox, in_flight: int) -> None:
    sage.settings(page_size=7)  # Sage's web.config PageSize
    run = sage.run(sage.config(page_size=10, max_requests_in_flight=in_flight))  # $top 10
    assert run.returncode == 0, run.stderr

    assert vendor_keys(run, "SAMINC") == sorted(v["VendorNumber"]
                                                for v in sage.table("SAMINC", "AP/APVendors"))
    windows = [(q.get("$top"), q.get("$skip")) for q in sage.reads("SAMINC/AP/APVendors")]
    if in_flight == 1:
        # 32 vendors one page at a time: window 0-9 (7 + nextLink 3), 10-19, 20-29, 30-31
        # (short: the end).
        assert windows == [(["10"], None), (["3"], ["7"]), (["10"], ["10"]), (["3"], ["17"]),
                           (["10"], ["20"]), (["3"], ["27"]), (["10"], ["30"])]
    else:
        # In flight: after the first page's 7 (the server's cap), windows of 7 up to the count
        # (logged as they were answered: in any order).
        assert windows[0] == (["10"], None)
        assert sorted(windows[1:], key=lambda w: int(w[1][0])) == [
            (["7"], ["7"]), (["7"], ["14"]), (["7"], ["21"]), (["4"], ["28"])]
    keys = [(r["company_id"], r["VendorNumber"]) for r in run.of("vendors")]
    assert len(keys) == len(set(keys))


def test_a_server_capping_pages_without_next_links_is_read_whole(sage: SageSandbox) -> None:
    # Sage's PageSize 100 under the tap's page_size 1000, over several pages: once with
    # nextLinks, once without (a server that caps without links); the same read either way.
    sage.reset("1000")  # 1,032 vendors and 360 POs in SAMINC
    linked = sage.run()
    linked_gets = [r["query"] for r in sage.requests() if r["method"] == "GET"]
    sage.clear_requests()
    sage.settings(next_link=False)
    unlinked = sage.run()
    unlinked_gets = [r["query"] for r in sage.requests() if r["method"] == "GET"]

    assert linked.returncode == unlinked.returncode == 0, unlinked.stderr
    assert unlinked.records == linked.records
    assert unlinked.final_state == linked.final_state
    assert vendor_keys(unlinked, "SAMINC") == sorted(
        v["VendorNumber"] for v in sage.table("SAMINC", "AP/APVendors"))
    assert len(unlinked.of("vendors", "SAMINC")) == 1032
    assert len(unlinked.of("purchase_orders", "SAMINC")) == 360
    # As many requests either way (11 for the vendors of SAMINC): the count says when a read
    # is done, and only a read's first request asks for it.
    assert len(unlinked_gets) == len(linked_gets)
    # (The log has the windows in the order they were answered.)
    vendors = sorted(sage.reads("SAMINC/AP/APVendors"), key=lambda q: int(q.get("$skip", [0])[0]))
    assert [(q.get("$skip", ["0"])[0], q.get("$count")) for q in vendors] == [
        ("0", ["true"])] + [(str(100 * i), None) for i in range(1, 11)]
    # The first request asks page_size; the windows after it what the server gave (its
    # PageSize), the last one what is left of the count.
    assert [q["$top"][0] for q in vendors] == ["1000"] + ["100"] * 9 + ["32"]


def test_a_server_ignoring_count_is_read_to_an_empty_page(sage: SageSandbox) -> None:
    sage.settings(page_size=7, next_link=False, odata_count=False)
    run = sage.run(sage.config(page_size=10, company_ids=["SAMINC"]))

    assert run.returncode == 0, run.stderr
    assert vendor_keys(run, "SAMINC") == sorted(v["VendorNumber"]
                                                for v in sage.table("SAMINC", "AP/APVendors"))
    # 32 vendors in pages of 7; with no total to reach, only the empty page ends the read.
    skips = [q.get("$skip", ["0"])[0] for q in sage.reads("SAMINC/AP/APVendors")]
    assert skips == ["0", "7", "14", "21", "28", "32"]


def test_interrupted_run_keeps_committed_bookmarks_and_resumes(sage: SageSandbox) -> None:
    first = sage.run()
    old_state = first.final_state
    sage.touch("SAMINC", "AP/APVendors", "1200", VendorName="Changed Before Crash Inc.")
    sage.touch("SAMLTD", "AP/APVendors", "1210", VendorName="Changed Before Crash Ltd.")
    # SAMLTD vendors fail for good (429 with Retry-After: 0, so the retries are quick).
    sage.faults(retry_after=0, rates={"429": 1.0}, path="SAMLTD/AP/APVendors")

    crashed = sage.run(state=old_state)

    assert crashed.returncode != 0
    assert "SAMLTD/AP/APVendors" in crashed.stderr and "429" in crashed.stderr
    last = crashed.final_state
    today = sage.state()["today"] + "T00:00:00Z"
    assert bookmark(last, "vendors", "SAMINC") == today  # company done: committed
    assert bookmark(last, "vendors", "SAMLTD") == bookmark(old_state, "vendors", "SAMLTD")
    assert "progress_markers" not in str(last["bookmarks"]["vendors"])

    sage.faults()
    sage.clear_requests()
    resumed = sage.run(state=last)
    assert resumed.returncode == 0, resumed.stderr
    assert sage.reads("SAMINC/AP/APVendors")[0]["$filter"] == [f"DateLastMaintained ge {today}"]
    assert sage.reads("SAMLTD/AP/APVendors")[0]["$filter"] == [
        f"DateLastMaintained ge {bookmark(old_state, 'vendors', 'SAMLTD')}"]
    assert "1210" in vendor_keys(resumed, "SAMLTD")


def test_ap_invoice_batches_are_incremental_on_date_last_edited(sage: SageSandbox) -> None:
    batch = sage.post("SAMINC", "AP/APInvoiceBatches",
                      ap_batch("1200", "INV-100", "6100100", 80))
    first = sage.run()
    assert first.returncode == 0, first.stderr
    (record,) = first.of("ap_invoice_batches", "SAMINC")
    assert record["BatchNumber"] == batch["BatchNumber"]
    assert record["BatchStatus"] == "Open"
    (entry,) = record["Invoices"]
    assert (entry["VendorNumber"], entry["DocumentNumber"]) == ("1200", "INV-100")
    assert entry["InvoiceDetails"][0]["GLAccount"] == "6100100"
    assert {"OptionalField": "BWINVID", "Value": "inv-100"} in entry["InvoiceOptionalFields"]

    sage.clear_requests()
    second = sage.run(state=first.final_state)
    assert second.returncode == 0, second.stderr
    (query,) = sage.reads("SAMINC/AP/APInvoiceBatches")
    assert query["$filter"] == [f"DateLastEdited ge {record['DateLastEdited']}"]


def test_catalog_deselection_shrinks_select_and_records(sage: SageSandbox) -> None:
    discovered = sage.run_discover()
    for stream in discovered["streams"]:
        for entry in stream["metadata"]:
            crumb = entry["breadcrumb"]
            if crumb == []:
                entry["metadata"]["selected"] = stream["tap_stream_id"] in (
                    "vendors", "purchase_orders", "purchase_order_lines")
            elif crumb in (["properties", "Email"], ["properties", "cost_center"],
                           ["properties", "ItemDescription"]):
                entry["metadata"]["selected"] = False

    run = sage.run(catalog=discovered)

    assert run.returncode == 0, run.stderr
    assert set(run.records) == {"vendors", "purchase_orders", "purchase_order_lines"}
    (query,) = sage.reads("SAMINC/AP/APVendors")
    assert "Email" not in query["$select"][0].split(",")
    assert all("Email" not in r and "VendorName" in r for r in run.of("vendors"))
    line = run.of("purchase_order_lines")[0]
    assert "cost_center" not in line and "ItemDescription" not in line
    assert line["gl_account"]
    assert not sage.reads("SAMINC/GL/GLSegmentCodes")  # deselected streams cost no request
    # gl_account_formatted is still wanted: without the gl_accounts stream, one small look-up.
    assert sage.reads("SAMINC/GL/GLAccounts") == [
        {"$select": ["UnformattedAccount,AccountNumber,AccountSegmentCode2"],
         "$count": ["true"]}]


def test_po_receipts_are_read_with_their_lines_and_incrementally(sage: SageSandbox) -> None:
    first = sage.run()
    assert first.returncode == 0, first.stderr
    for company in COMPANIES:
        in_sage = sage.table(company, "PO/POGetReceipts")
        got = {r["ReceiptSequenceKey"]: r for r in first.of("po_receipts", company)}
        assert sorted(got) == sorted(r["ReceiptSequenceKey"] for r in in_sage)
        for receipt in in_sage:
            record = got[receipt["ReceiptSequenceKey"]]
            assert (record["ReceiptNumber"], record["PurchaseOrderNumber"],
                    record["Cancelled"]) == (receipt["ReceiptNumber"],
                                             receipt["PurchaseOrderNumber"],
                                             receipt["Cancelled"])
            assert [(line["PurchaseOrderLineNumber"], line["QuantityReceived"])
                    for line in record["ReceiptLine2s"]] == [
                (line["PurchaseOrderLineNumber"], line["QuantityReceived"])
                for line in receipt["ReceiptLine2s"]]
            assert isinstance(record["ReceiptLine2s"][0]["PurchaseOrderLineNumber"], int)
    # The demo has one receipt cancelled per company.
    assert sorted(r["Cancelled"] for r in first.of("po_receipts", "SAMINC")) == ["No", "No",
                                                                                 "Yes"]
    (query,) = sage.reads("SAMINC/PO/POGetReceipts")
    assert query["$select"] == [
        "ReceiptSequenceKey,ReceiptNumber,ReceiptDate,Vendor,PurchaseOrderNumber,"
        "PurchaseOrderSequenceKey,Description,Reference,Cancelled,DateLastMaintained,"
        "ReceiptLine2s"]

    # Cancelling a receipt in Sage maintains it: the next run reads it again, from its bookmark.
    receipt = sage.table("SAMINC", "PO/POGetReceipts")[0]
    sage.touch("SAMINC", "PO/POGetReceipts", receipt["ReceiptSequenceKey"], Cancelled="Yes")
    sage.clear_requests()
    second = sage.run(state=first.final_state)
    assert second.returncode == 0, second.stderr
    (query,) = sage.reads("SAMINC/PO/POGetReceipts")
    assert query["$filter"] == [
        f"DateLastMaintained ge {bookmark(first.final_state, 'po_receipts', 'SAMINC')}"]
    again = {r["ReceiptSequenceKey"]: r for r in second.of("po_receipts", "SAMINC")}
    assert again[receipt["ReceiptSequenceKey"]]["Cancelled"] == "Yes"


def test_an_install_before_2022_2_has_no_po_receipts_and_the_check_says_so(
        sage: SageSandbox) -> None:
    # PO/POGetReceipts came with the 2022.2 SDK; the `older` simulated install lacks it.
    sage.settings(version="older")
    config = sage.config(field_names={
        "PO/POPurchaseOrders/PurchaseOrderLines/ExpenseAccount": "GLExpenseAccount"})
    run = sage.run(config=config)
    assert run.returncode != 0
    assert "PO/POGetReceipts" in run.stderr
    assert "--rm po_receipts" in run.stderr  # the fix: turn the stream off
    assert not sage.reads("SAMINC/PO/POGetReceipts")

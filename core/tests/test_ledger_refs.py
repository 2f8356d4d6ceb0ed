"""Business ids in the ledger: `resolve` finds records by what people call them, and
`open_failures` lists the records whose latest outcome is a failure (SQLite and PostgreSQL).

The payloads have the shapes the plugins record (the demo's INV-18825, SAMLTD/1600, PO200161).
"""

from __future__ import annotations

import multiprocessing

import mlc_core_workers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from ml_connector_core.ledger import (
    BASWARE_TO_SAGE,
    SAGE_TO_BASWARE,
    Action,
    Entry,
    Ledger,
)
from ml_connector_core.ledger._schema import refs

INVOICE_ID = "e00e7ef4de3b68b89314f8c4c31c6dae"
READ_INVOICE = {"invoiceId": INVOICE_ID, "invoiceNumber": "INV-18825", "supplierCode": "1400",
                "supplierName": "Polaris Office Group", "grossSum": 454.16,
                "currencyCode": "USD", "orderNumbers": []}
AP_INVOICE = {"company": "SAMINC", "document_number": "INV-18825", "source_id": INVOICE_ID,
              "vendor_number": "1400", "gross_total": 454.16, "currency": "USD", "lines": []}
GL_MISSING = "GL account 6999-200 does not exist in Sage 300 company SAMINC"


@pytest.fixture
def ledger(ledger_url: str):
    with Ledger.open(ledger_url) as opened:
        yield opened


def invoice_pipeline(ledger: Ledger, *, created: bool) -> None:
    tap = ledger.start_run("tap-basware").run_id
    target = ledger.start_run("target-sage300").run_id
    ledger.record(Entry(tap, "accounting_documents", INVOICE_ID, Action.READ,
                        direction=BASWARE_TO_SAGE, payload=READ_INVOICE))
    ledger.record(Entry(tap, "accounting_documents", INVOICE_ID, Action.ACKNOWLEDGED,
                        direction=BASWARE_TO_SAGE))
    if created:
        ledger.record(Entry(target, "ap_invoices", INVOICE_ID, Action.CREATED,
                            direction=BASWARE_TO_SAGE, payload=AP_INVOICE,
                            target_key="SAMINC/5/14", sage_batch="5", sage_entry="14",
                            sage_document="INV-18825"))
    else:
        ledger.record(Entry(target, "ap_invoices", INVOICE_ID, Action.REJECTED,
                            direction=BASWARE_TO_SAGE, payload=AP_INVOICE, error=GL_MISSING))
    ledger.record(Entry(tap, "transfer_responses", INVOICE_ID, Action.RESPONDED,
                        direction=SAGE_TO_BASWARE, target_key="bddd036b",
                        payload={"externalCode": "bddd036b", "success": created}))


def vendor(ledger: Ledger, company: str, number: str, action: Action,
           error: str | None = None) -> None:
    key = f"{company}/{number}"
    tap = ledger.start_run("tap-sage300").run_id
    ledger.record(Entry(tap, "vendors", key, Action.READ, direction=SAGE_TO_BASWARE,
                        payload={"VendorNumber": number, "company_id": company}))
    target = ledger.start_run("target-basware").run_id
    ledger.record(Entry(target, "vendors", key, action, direction=SAGE_TO_BASWARE,
                        target_key=f"{company}-{number}", error=error,
                        payload={"vendorCode": number, "externalCode": f"{company}-{number}",
                                 "currencyCode": "EUR"}))


def test_an_invoice_is_found_by_any_of_its_ids(ledger: Ledger) -> None:
    invoice_pipeline(ledger, created=True)
    every_stream = [("accounting_documents", True), ("ap_invoices", True),
                    ("transfer_responses", False)]
    for ref in ("INV-18825", " inv-18825 ", INVOICE_ID, "SAMINC/5/14", "5/14", "bddd036b"):
        found = ledger.resolve(ref)
        assert {r.stream for r in found} == {s for s, _ in every_stream}, ref
        assert {r.business_id for r in found} == {"INV-18825"}
        assert {r.subject for r in found} == {f"invoice {INVOICE_ID}"}
    [ap] = [r for r in ledger.resolve("INV-18825") if r.stream == "ap_invoices"]
    assert (ap.plugin, ap.latest_action, ap.direction) == (
        "target-sage300", Action.CREATED, BASWARE_TO_SAGE)
    # The read's ids complete the Sage outcome's, and the other way round.
    assert ap.business_ids["sage entry"] == "SAMINC/5/14"
    assert ap.business_ids["name"] == "Polaris Office Group"
    history = ledger.history((r.stream, r.source_key) for r in ledger.resolve("INV-18825"))
    assert [e.action for e in history] == [Action.READ, Action.ACKNOWLEDGED, Action.CREATED,
                                           Action.RESPONDED]
    assert ledger.resolve("INV-99999") == []


def test_a_bare_vendor_number_names_every_company_that_has_it(ledger: Ledger) -> None:
    vendor(ledger, "SAMLTD", "1600", Action.REJECTED, "Basware: Currency EUR is not active")
    vendor(ledger, "SAMINC", "1200", Action.CREATED)
    vendor(ledger, "SAMLTD", "1200", Action.CREATED)
    [only] = ledger.resolve("1600")
    assert (only.source_key, only.plugins, only.business_id) == (
        "SAMLTD/1600", ("tap-sage300", "target-basware"), "SAMLTD/1600")
    assert [r.source_key for r in ledger.resolve("samltd-1600")] == ["SAMLTD/1600"]
    ambiguous = ledger.resolve("1200")
    assert sorted(r.subject for r in ambiguous) == ["vendor SAMINC/1200", "vendor SAMLTD/1200"]


def test_a_po_number_names_the_order_and_its_lines(ledger: Ledger) -> None:
    run = ledger.start_run("target-basware").run_id
    ledger.record_many([
        Entry(run, "matching_orders", "SAMLTD/10161", Action.REJECTED,
              payload={"orderNumber": "PO200161", "externalCode": "SAMLTD-PO200161",
                       "supplierCode": "1600"}, error="Basware: Supplier 1600 does not exist"),
        Entry(run, "matching_order_lines", "SAMLTD/10161/1000", Action.REJECTED,
              payload={"orderExternalCode": "SAMLTD-PO200161", "lineNumber": 1000},
              error="Basware: Matching order with externalCode SAMLTD-PO200161 does not exist"),
    ])
    for ref in ("PO200161", "SAMLTD/PO200161"):
        assert {(r.stream, r.business_id) for r in ledger.resolve(ref)} == {
            ("matching_orders", "SAMLTD/PO200161"),
            ("matching_order_lines", "SAMLTD/PO200161/1000")}
        assert {r.subject for r in ledger.resolve(ref)} == {"order SAMLTD/10161"}
    # A vendor number is not an id of the orders that point at it.
    assert ledger.resolve("1600") == []


def test_open_failures_are_records_whose_latest_outcome_failed(ledger: Ledger) -> None:
    invoice_pipeline(ledger, created=False)
    vendor(ledger, "SAMLTD", "1600", Action.REJECTED, "Basware: Currency EUR is not active")
    vendor(ledger, "SAMLTD", "1600", Action.REJECTED, "Basware: Currency EUR is not active")
    vendor(ledger, "SAMLTD", "1610", Action.REJECTED, "Basware: Payment term N90 missing")
    vendor(ledger, "SAMLTD", "1610", Action.CREATED)  # fixed: resolved

    found = {f.business_id: f for f in ledger.open_failures()}
    assert set(found) == {"INV-18825", "SAMLTD/1600"}
    invoice = found["INV-18825"]
    assert (invoice.stream, invoice.plugin, invoice.error, invoice.failures) == (
        "ap_invoices", "target-sage300", GL_MISSING, 1)
    assert {k: invoice.business_ids[k] for k in ("invoice", "vendor", "amount", "currency",
                                                 "company")} == {
        "invoice": "INV-18825", "vendor": "1400", "amount": "454.16", "currency": "USD",
        "company": "SAMINC"}
    rejected = found["SAMLTD/1600"]
    assert rejected.failures == 2 and rejected.first_failed_at < rejected.last_failed_at
    assert ledger.open_failures(since=rejected.last_failed_at) == [rejected]

    invoice_pipeline(ledger, created=True)  # recoded in Basware and sent again
    assert [f.business_id for f in ledger.open_failures()] == ["SAMLTD/1600"]


def test_writers_recording_the_same_records_at_once_neither_fail_nor_duplicate(
        ledger_url: str) -> None:
    """Two plugins name the same record at the same moment (tap-sage300 reads a vendor while
    target-basware records its outcome): on PostgreSQL their inserts of the same ids wait for
    each other (taken in one order), and each id is stored once."""
    workers, rounds = 4, 5
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        done = pool.starmap(mlc_core_workers.record_the_same_vendors,
                            [(ledger_url, w, rounds) for w in range(workers)])
    assert done == [rounds] * workers
    with Ledger.open(ledger_url) as ledger:
        [vendor] = ledger.resolve("SAMINC/1042")
        assert sorted(vendor.plugins) == [f"worker-{w}" for w in range(workers)]
        with ledger.engine.connect() as conn:
            # Each of the 300 vendors: its key and its number, once each.
            assert conn.execute(select(func.count()).select_from(refs)).scalar() == 600


def test_failing_keys_with_the_payload_of_their_failure(ledger: Ledger) -> None:
    vendor(ledger, "SAMLTD", "1600", Action.REJECTED, "Basware: Currency EUR is not active")
    vendor(ledger, "SAMLTD", "1610", Action.REJECTED, "Basware: Payment term N90 missing")
    vendor(ledger, "SAMLTD", "1610", Action.CREATED)
    assert ledger.failing("vendors") == {"SAMLTD/1600": {
        "vendorCode": "1600", "externalCode": "SAMLTD-1600", "currencyCode": "EUR"}}
    assert ledger.failing("vendors", system="another tenant") == {}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=12), children, max_size=4), max_leaves=12)
FIELDS = st.sampled_from(["invoiceNumber", "invoiceId", "lines", "codingRows", "orderNumbers",
                          "company", "company_id", "supplierCode", "VendorNumber", "vendorCode",
                          "orderNumber", "orderExternalCode", "externalCode", "LineNumber",
                          "AccountNumber", "grossSum", "currencyCode", "document_number"])


@given(stream=st.sampled_from(["ap_invoices", "accounting_documents", "vendors",
                               "matching_orders", "matching_order_lines", "accounts", "other"]),
       payload=JSON | st.dictionaries(FIELDS, JSON, max_size=6))
def test_ids_of_any_payload_never_raise(stream: str, payload: object) -> None:
    """A rejected record is often malformed: any field of any JSON type (codingRows a number,
    an invoice number a list) still gives its ids, and never an error."""
    from ml_connector_core.ledger._refs import business_ids, primary_id, refs

    ids = business_ids(stream, "SAMINC/1", payload, target_key="T", sage_batch=5, sage_entry=9)
    assert all(isinstance(value, str) for value in ids.values())
    assert "SAMINC/1" in refs(stream, "SAMINC/1", payload)
    assert isinstance(primary_id(stream, "SAMINC/1", ids), str)

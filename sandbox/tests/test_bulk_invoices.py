"""The ``invoices-N`` seed data (the demo plus N approved invoices waiting in Basware), checked
as data against the Sage side of the same dataset, and its queue drained over real HTTP."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from mlc_sandbox.basware import BaswareSimulator
from mlc_sandbox.data import (
    BASWARE_CLIENT_ID,
    BASWARE_CLIENT_SECRET,
    BULK_DOCUMENT_PREFIX,
    Dataset,
    build_dataset,
)
from mlc_sandbox.http import SimulatorServer

COUNT = 1_000


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return build_dataset(f"invoices-{COUNT}", seed=3)


def test_demo_part_unchanged_and_count(dataset: Dataset) -> None:
    demo = build_dataset("demo", seed=3)
    assert dataset.sage == demo.sage
    assert dataset.basware_invoices[:len(demo.basware_invoices)] == demo.basware_invoices
    assert len(dataset.basware_invoices) == len(demo.basware_invoices) + COUNT


def test_deterministic_per_seed(dataset: Dataset) -> None:
    assert build_dataset(f"invoices-{COUNT}", seed=3).basware_invoices == dataset.basware_invoices
    other = build_dataset(f"invoices-{COUNT}", seed=4).basware_invoices
    assert [i["invoiceId"] for i in other] != [i["invoiceId"] for i in dataset.basware_invoices]


@pytest.mark.parametrize("name", ["invoices-", "invoices-x", "invoices--5", "-3", "huge"])
def test_bad_data_names_say_what_is_valid(name: str) -> None:
    with pytest.raises(ValueError, match="invoices-N"):
        build_dataset(name)


def _bulk(dataset: Dataset) -> list[dict[str, Any]]:
    return [i for i in dataset.basware_invoices
            if i["invoiceNumber"].startswith(BULK_DOCUMENT_PREFIX)]


def test_bulk_invoices_are_valid_for_sage(dataset: Dataset) -> None:
    bulk = _bulk(dataset)
    assert len(bulk) == COUNT
    codes = {c.basware_code: c.sage_id for c in dataset.companies}
    assert Counter(i["companyCode"] for i in bulk) == {"US01": COUNT // 2, "CA01": COUNT // 2}
    every = dataset.basware_invoices
    assert len({i["invoiceId"] for i in every}) == len(every)
    documents = Counter((i["companyCode"], i["supplierCode"], i["invoiceNumber"].upper())
                        for i in every)
    assert max(documents.values()) == 1
    po_matched = 0
    for invoice in bulk:
        company = codes[invoice["companyCode"]]
        records = dataset.sage[company]
        posted = {(d["VendorNumber"], d["DocumentNumber"].upper())
                  for d in records["AP/APPostedDocuments"]}
        assert (invoice["supplierCode"], invoice["invoiceNumber"]) not in posted
        vendor = next(v for v in records["AP/APVendors"]
                      if v["VendorNumber"] == invoice["supplierCode"])
        assert vendor["Status"] == "Active"
        assert vendor["CurrencyCode"] == invoice["currencyCode"]
        assert invoice["processingStatus"] == "WaitingForTransfer"
        assert invoice["invoiceTypeCode"] == "380" and len(invoice["invoiceNumber"]) <= 22
        accounts = {a["AccountNumber"]: a for a in records["GL/GLAccounts"]}
        rows = invoice["codingRows"]
        assert rows
        for row in rows:
            account = accounts[row["accountCode"]]
            assert account["Status"] == "Active"
            assert row["costCenterCode"] == account["AccountSegmentCode2"]
            if invoice["orderNumbers"]:
                order = next(o for o in records["PO/POPurchaseOrders"]
                             if o["PurchaseOrderNumber"] == row["orderNumber"])
                assert order["Vendor"] == invoice["supplierCode"]
                assert order["Completed"] == "No"
                line = next(li for li in order["PurchaseOrderLines"]
                            if str(li["LineNumber"]) == row["orderLineNumber"])
                assert line["ExpenseAccount"] == account["UnformattedAccount"]
        po_matched += bool(invoice["orderNumbers"])
        net = sum(Decimal(str(r["netTotal"])) for r in rows)
        tax = sum(Decimal(str(r["taxSum"])) for r in rows)
        assert Decimal(str(invoice["netSum"])) == net and net > 0
        assert Decimal(str(invoice["grossSum"])) == net + Decimal(str(invoice["taxSum1"])) \
            and Decimal(str(invoice["taxSum1"])) == tax
    assert COUNT // 2 < po_matched < COUNT  # both kinds: PO-matched and coded without PO


# -- the queue over HTTP: pages found through the index, drained while acknowledging ---------

@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    running = SimulatorServer(BaswareSimulator(data="demo", seed=0)).start()
    yield running
    running.stop()


def _token(base: str) -> str:
    response = requests.post(f"{base}/v1/tokens", auth=(BASWARE_CLIENT_ID, BASWARE_CLIENT_SECRET),
                             data={"grant_type": "client_credentials",
                                   "scope": "accountingDocuments.read accountingDocuments.write"},
                             timeout=10)
    response.raise_for_status()
    return response.json()["access_token"]


def _page(session: requests.Session, base: str, params: dict[str, Any],
          token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    headers = {"x-amz-meta-continuationtoken": token} if token else {}
    response = session.get(f"{base}/v1/accountingDocuments", params=params, headers=headers,
                           allow_redirects=False, timeout=10)
    if response.status_code == 404:
        return [], None
    assert response.status_code == 302, response.text
    # The pre-signed export URL refuses Authorization, as S3 does.
    export = requests.get(response.headers["Location"], timeout=10)
    assert export.status_code == 200, export.text
    return (export.json()["accountingDocuments"],
            export.headers.get("x-amz-meta-continuationtoken"))


def test_queue_of_bulk_invoices_drains_page_by_page(server: SimulatorServer) -> None:
    base = server.base_url
    requests.post(f"{base}/_sandbox/reset", json={"seed": 5, "data": "invoices-450"},
                  timeout=60).raise_for_status()
    expected = [i for i in build_dataset("invoices-450", seed=5).basware_invoices
                if i["companyCode"] == "CA01"]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {_token(base)}"
    params = {"ProcessingStatus": "WaitingForTransfer", "companyCode": "CA01", "pageSize": 100}

    # Paging with continuation tokens: every CA01 invoice once, in (lastUpdated, id) order.
    seen: list[dict[str, Any]] = []
    page, token = _page(session, base, params)
    while True:
        seen += page
        if token is None:
            break
        page, token = _page(session, base, params, token)
    assert sorted(i["invoiceId"] for i in seen) == sorted(i["invoiceId"] for i in expected)
    keys = [(i["lastUpdated"], i["invoiceId"]) for i in seen]
    assert keys == sorted(keys) and {i["companyCode"] for i in seen} == {"CA01"}

    # Draining: acknowledge each first page until the queue answers 404; nothing is missed.
    drained: list[str] = []
    while page := _page(session, base, params)[0]:
        for invoice in page:
            ack = session.post(f"{base}/v1/accountingDocuments/{invoice['invoiceId']}/acknowledge",
                               headers={"Content-Type": "application/json"}, timeout=10)
            assert ack.status_code == 200, ack.text
            drained.append(invoice["invoiceId"])
    assert sorted(drained) == sorted(i["invoiceId"] for i in expected)
    in_progress = {**params, "ProcessingStatus": "TransferInProgress"}
    moved, token = _page(session, base, in_progress)
    while token:
        more, token = _page(session, base, in_progress, token)
        moved += more
    assert sorted(i["invoiceId"] for i in moved) == sorted(drained)
    assert _page(session, base, {**params, "companyCode": "US01", "pageSize": 1})[0]

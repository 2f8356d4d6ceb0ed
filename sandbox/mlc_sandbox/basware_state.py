"""Per-tenant state and the asynchronous "P2P" side of the Basware simulator.

A POST or PATCH is stored in the API layer at once; its business processing in P2P happens
later (ref §4 "Two-stage processing"). Each write becomes a :class:`StatusEntry` that reads
``InProgress`` until ``processing_delay`` seconds have passed. It is then processed, in the
order the writes arrived, against :class:`P2PRegistry` — what P2P has accepted so far — and
every item ends ``Success``, ``NotProcessed`` (identical re-post: nothing is sent to P2P),
``RecordExpired`` (a newer version was posted meanwhile) or ``Error`` with a business
reason. Deleting a record from the API does not remove it from P2P (ref §4 DELETE).
"""

from __future__ import annotations

import heapq
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from .basware_common import Clock, Pager
from .data import COMPANIES

KNOWN_COMPANIES = frozenset(company.basware_code for company in COMPANIES)
SYSTEM = "P2P"
MODULE = "IA"  # P2P Invoice Automation, as in the reference's example


class P2PRegistry:
    """Business keys P2P knows, per entity type, each remembered with the record it came from."""

    def __init__(self) -> None:
        self._by_record: dict[str, dict[str, set[tuple[str, ...]]]] = {}
        self._index: dict[str, dict[tuple[str, ...], set[str]]] = {}

    def put(self, kind: str, external_code: str, keys: Iterable[tuple[str, ...]]) -> None:
        records = self._by_record.setdefault(kind, {})
        index = self._index.setdefault(kind, {})
        for key in records.pop(external_code, set()):
            index.get(key, set()).discard(external_code)
        records[external_code] = set(keys)
        for key in records[external_code]:
            index.setdefault(key, set()).add(external_code)

    def has(self, kind: str, key: tuple[str, ...]) -> bool:
        return bool(self._index.get(kind, {}).get(key))

    def counts(self) -> dict[str, int]:
        return {kind: len(records) for kind, records in self._by_record.items()}


@dataclass
class PendingItem:
    external_code: str
    record: dict[str, Any]
    version: int
    unchanged: bool
    parent: str | None = None


@dataclass
class StatusEntry:
    request_id: str
    entity_type: str
    operation: str
    changed_by: str
    created: str
    ready_at: float  # time.monotonic() when P2P has processed it
    items: list[PendingItem]
    endpoint: str | None = None  # master-data endpoint whose versions decide RecordExpired
    status: str = "InProgress"
    last_updated: str = ""
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    def view(self, ignore_successful: bool = False, system: str | None = None) -> dict[str, Any]:
        """The entry as ``GET /v1/requestStatus`` shows it (ref §6)."""
        if self.status == "InProgress":
            items = [_item(i.external_code, i.parent, "InProgress", []) for i in self.items]
        else:
            items = list(self.outcomes)
        if ignore_successful:
            items = [item for item in items if item["status"] != "Success"]
        last_updated = self.last_updated or self.created
        systems = [] if system not in (None, "", SYSTEM) else [
            {"system": SYSTEM, "module": MODULE, "systemStatus": self.status,
             "lastUpdated": last_updated, "items": items}]
        return {"requestId": self.request_id, "entityType": self.entity_type,
                "entityVersion": f"{self.entity_type}V1", "requestStatus": self.status,
                "changedBy": self.changed_by, "operationType": self.operation,
                "lastUpdated": last_updated, "systems": systems}


def _item(external_code: str, parent: str | None, status: str,
          errors: list[dict[str, str]]) -> dict[str, Any]:
    return {"externalCode": external_code, "parentExternalCode": parent, "status": status,
            "errors": errors}


InvoiceKey = tuple[str, str]  # (lastUpdated, invoiceId): the export queue's list order


class InvoiceIndex:
    """Invoice list keys per (processingStatus, companyCode), each list kept sorted.

    A page of ``GET /v1/accountingDocuments`` is then found by bisection from the cursor
    instead of filtering and sorting every invoice on every request, which made draining a
    queue of 100,000 invoices (1,000 pages, each acknowledged) quadratic. Every change of an
    invoice's status, company or lastUpdated must go through :meth:`remove` / :meth:`add`.
    """

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], list[InvoiceKey]] = {}

    @staticmethod
    def _slot(invoice: dict[str, Any]) -> tuple[str, str]:
        return invoice["processingStatus"], invoice["companyCode"]

    @staticmethod
    def key(invoice: dict[str, Any]) -> InvoiceKey:
        return invoice["lastUpdated"], invoice["invoiceId"]

    def add(self, invoice: dict[str, Any]) -> None:
        insort(self._keys.setdefault(self._slot(invoice), []), self.key(invoice))

    def add_many(self, invoices: Iterable[dict[str, Any]]) -> None:
        """Seeding: append, then sort each list once (insort per invoice moves the list)."""
        touched = set()
        for invoice in invoices:
            self._keys.setdefault(self._slot(invoice), []).append(self.key(invoice))
            touched.add(self._slot(invoice))
        for slot in touched:
            self._keys[slot].sort()

    def remove(self, invoice: dict[str, Any]) -> None:
        keys = self._keys.get(self._slot(invoice), [])
        key = self.key(invoice)
        position = bisect_left(keys, key)
        if position < len(keys) and keys[position] == key:
            del keys[position]

    def after(self, status: str | None, company: str | None,
              start: tuple[str, ...] | None) -> Iterator[InvoiceKey]:
        """The keys of the matching lists after ``start`` (None: all), in list order."""
        lists = [keys for (slot_status, slot_company), keys in self._keys.items()
                 if status in (None, slot_status) and company in (None, slot_company)]
        runs = [islice(keys, bisect_right(keys, start) if start else 0, None) for keys in lists]
        return runs[0] if len(runs) == 1 else heapq.merge(*runs)


@dataclass
class Tenant:
    """Everything one API account (client id) owns; externalCodes are unique per tenant."""

    client_id: str
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    versions: dict[str, dict[str, int]] = field(default_factory=dict)
    p2p: P2PRegistry = field(default_factory=P2PRegistry)
    statuses: dict[str, StatusEntry] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoice_index: InvoiceIndex = field(default_factory=InvoiceIndex)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    delete_tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    pager: Pager = field(default_factory=Pager)

    def store(self, endpoint: str) -> dict[str, dict[str, Any]]:
        return self.records.setdefault(endpoint, {})

    def bump_version(self, endpoint: str, external_code: str) -> int:
        versions = self.versions.setdefault(endpoint, {})
        versions[external_code] = versions.get(external_code, 0) + 1
        return versions[external_code]

    def version(self, endpoint: str, external_code: str) -> int:
        return self.versions.get(endpoint, {}).get(external_code, 0)

    def process_due(self, clock: Clock, currencies: Iterable[str]) -> list[StatusEntry]:
        """Run P2P processing for every entry whose delay has passed, oldest first."""
        now = time.monotonic()
        due = [e for e in self.statuses.values() if e.status == "InProgress" and e.ready_at <= now]
        due.sort(key=lambda e: e.ready_at)
        for entry in due:
            self._process(entry, clock, frozenset(currencies))
        return due

    def _process(self, entry: StatusEntry, clock: Clock, currencies: frozenset[str]) -> None:
        outcomes = []
        for item in entry.items:
            status, errors = self._outcome(entry, item, currencies)
            outcomes.append(_item(item.external_code, item.parent, status, errors))
        entry.outcomes = outcomes
        entry.status = "Error" if any(o["status"] == "Error" for o in outcomes) else "Success"
        entry.last_updated = clock.stamp()

    def _outcome(self, entry: StatusEntry, item: PendingItem,
                 currencies: frozenset[str]) -> tuple[str, list[dict[str, str]]]:
        if entry.endpoint and self.version(entry.endpoint, item.external_code) > item.version:
            return "RecordExpired", [_error("A newer version of the record was posted before "
                                            "this one was processed", "RecordExpired",
                                            "Unknown")]
        if item.unchanged:
            return "NotProcessed", []
        rule = RULES.get(entry.entity_type)
        problems = rule(item.record, self.p2p, currencies) if rule else []
        if problems:
            return "Error", [_error(message) for message in problems]
        register = REGISTER.get(entry.entity_type)
        if register:
            self.p2p.put(entry.entity_type, item.external_code, register(item.record))
        return "Success", []


def _error(message: str, type_: str = "Error", category: str = "DataValidation") -> dict:
    return {"type": type_, "message": message, "category": category}


# -- business rules: what P2P checks when it processes a record --------------------------------

def _company_codes(record: dict[str, Any]) -> list[str]:
    if "companies" in record:
        return [c.get("companyCode", "") for c in record.get("companies") or []]
    return [record.get("companyCode", "")]


def _active_companies(record: dict[str, Any]) -> list[str]:
    return [c["companyCode"] for c in record.get("companies") or [] if c.get("active", True)]


def _unknown_companies(record: dict[str, Any]) -> list[str]:
    return [f"Record skipped due to wrong or missing CompanyCode '{code}'"
            for code in _company_codes(record) if code not in KNOWN_COMPANIES]


def _inactive_currencies(codes: Iterable[Any], currencies: frozenset[str]) -> list[str]:
    return [f"Currency {code} is not active in P2P" for code in dict.fromkeys(codes)
            if code and code not in currencies]


def _check_companies(record: dict[str, Any], _: P2PRegistry, __: frozenset[str]) -> list[str]:
    return _unknown_companies(record)


def _check_vendor(record: dict[str, Any], p2p: P2PRegistry,
                  currencies: frozenset[str]) -> list[str]:
    problems = _unknown_companies(record)
    term = (record.get("paymentTerms") or {}).get("paymentTermCode")
    if term:
        problems += [f"Payment term {term} does not exist for company {company}"
                     for company in _company_codes(record)
                     if company in KNOWN_COMPANIES and not p2p.has("PaymentTerm", (company, term))]
    means = record.get("paymentMeans") or []
    return problems + _inactive_currencies((m.get("currencyCode") for m in means), currencies)


def _check_order(record: dict[str, Any], p2p: P2PRegistry,
                 currencies: frozenset[str]) -> list[str]:
    problems = _unknown_companies(record)
    company, supplier = record["companyCode"], record["supplierCode"]
    if record["organizationElementCode"] not in KNOWN_COMPANIES:
        problems.append(f"Organization element {record['organizationElementCode']} does not "
                        "exist")
    if company in KNOWN_COMPANIES and not p2p.has("Vendor", (company, supplier)):
        problems.append(f"Supplier {supplier} does not exist for company {company}")
    return problems + _inactive_currencies([record["currencyCode"]], currencies)


def _check_order_line(record: dict[str, Any], p2p: P2PRegistry, _: frozenset[str]) -> list[str]:
    order = record["orderExternalCode"]
    problems = [] if p2p.has("MatchingOrder", (order,)) else [
        f"Matching order with externalCode {order} does not exist"]
    return problems + _check_goods_receipts(record)


def _check_goods_receipts(record: dict[str, Any]) -> list[str]:
    """A line's goodsReceipts[] (the required fields are checked by the schema): codes unique
    on the line, and a cancelling entry (referenceGRExternalCode) names another entry of the
    same line. An upsert replaces the line's whole record, receipts included, so a receipt
    cancelled must be sent together with the cancellation."""
    receipts = record.get("goodsReceipts") or []
    codes = [r.get("externalCode") for r in receipts]
    problems = [f"Goods receipt externalCode {code} appears more than once on line "
                f"{record['externalCode']}" for code in sorted({c for c in codes
                                                                 if codes.count(c) > 1})]
    for receipt in receipts:
        reference = receipt.get("referenceGRExternalCode")
        if reference is not None and (reference == receipt.get("externalCode")
                                      or reference not in codes):
            problems.append(f"Goods receipt {receipt.get('externalCode')} cancels "
                            f"{reference}, which is not a goods receipt of line "
                            f"{record['externalCode']}")
    return problems


RULES: dict[str, Callable[[dict[str, Any], P2PRegistry, frozenset[str]], list[str]]] = {
    "Vendor": _check_vendor,
    "Account": _check_companies,
    "CostCenter": _check_companies,
    "PaymentTerm": _check_companies,
    "TaxCode": _check_companies,
    "MatchingOrder": _check_order,
    "MatchingOrderLine": _check_order_line,
}

REGISTER: dict[str, Callable[[dict[str, Any]], set[tuple[str, ...]]]] = {
    "Vendor": lambda r: {(c, r["vendorCode"]) for c in _company_codes(r)},
    "Account": lambda r: {(c, r["accountCode"]) for c in _active_companies(r)},
    "CostCenter": lambda r: {(c, r["costCenterCode"]) for c in _active_companies(r)},
    "PaymentTerm": lambda r: {(c, r["paymentTermCode"]) for c in _active_companies(r)},
    "TaxCode": lambda r: {(c, r["taxCode"]) for c in _active_companies(r)},
    "MatchingOrder": lambda r: {(r["externalCode"],)},
    "MatchingOrderLine": lambda r: {(r["externalCode"],)},
}

"""Business ids: what a person calls a record (an invoice number, a vendor number, a PO number,
a Sage batch and entry), computed in this one place from what an entry holds.

Two uses, both in the ledger:

- `refs()`: the ids that name the record itself, stored in `ledger_refs` when an entry is
  recorded, so `Ledger.resolve` finds a record by any of them without reading payloads;
- `business_ids()`: the labelled ids shown to a person (`audit failures`, `audit trace`), the
  record's own and those it points at (an invoice's vendor and POs, amount and currency).

A *family* is one kind of record across the streams it flows through: tap-sage300's
`purchase_orders` are target-basware's `matching_orders` (stream maps rename), and
tap-basware's `accounting_documents`, target-sage300's `ap_invoices` and the
`transfer_responses` are one invoice. Within a family the source key is the same record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: stream -> family. Streams not listed are a family of their own.
FAMILIES: dict[str, str] = {
    "vendors": "vendor",
    "purchase_orders": "order",
    "matching_orders": "order",
    "purchase_order_lines": "order line",
    "matching_order_lines": "order line",
    "gl_accounts": "account",
    "accounts": "account",
    "cost_centers": "cost center",
    "payment_terms": "payment term",
    "tax_codes": "tax code",  # tap-sage300's read and target-basware's outcome: one name
    "po_receipts": "goods receipt",  # tap-sage300's read of a receipt ...
    "goods_receipts": "goods receipt",  # ... and target-basware's outcome of it
    "accounting_documents": "invoice",
    "ap_invoices": "invoice",
    "transfer_responses": "invoice",
    "invoice_responses": "invoice",
    "payment_responses": "invoice",  # target-basware's answers of Sage's payments
    "transfer_outcomes": "invoice",  # outcomes an older release kept in the STATE, adopted
}

#: The longest ref stored (the column's size); longer values are not ids anyone types.
MAX_REF = 500


def family(stream: str) -> str:
    return FAMILIES.get(stream, stream)


def family_streams(stream: str) -> list[str]:
    """Every stream of `stream`'s family (itself alone when it has none)."""
    kind = FAMILIES.get(stream)
    if kind is None:
        return [stream]
    return [name for name, other in FAMILIES.items() if other == kind]


def normalize_ref(ref: str) -> str:
    """How refs are stored and looked up: trimmed, upper case (people type `inv-18825`)."""
    return " ".join(str(ref).split()).upper()


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    return text or None


def _first(payload: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        found = _text(payload.get(name))
        if found:
            return found
    return None


def _company(stream: str, source_key: str, payload: Mapping[str, Any]) -> str | None:
    """The Sage 300 company: master data keys start with it; an AP invoice names it."""
    if family(stream) == "invoice":
        return _first(payload, "company")
    found = _first(payload, "company_id")
    if found:
        return found
    return source_key.split("/", 1)[0] if "/" in source_key else None


def _order_number(payload: Mapping[str, Any], company: str | None) -> str | None:
    found = _first(payload, "orderNumber", "PurchaseOrderNumber")
    if found:
        return found
    # target-basware's order lines name their order by its externalCode, `<company>-<PO>`.
    code = _first(payload, "orderExternalCode")
    if code and company and code.startswith(f"{company}-"):
        return code.removeprefix(f"{company}-")
    return None


def _sage_entry(payload: Mapping[str, Any], company: str | None, sage_batch: Any,
                sage_entry: Any) -> str | None:
    batch, entry = _text(sage_batch), _text(sage_entry)
    if batch is None or entry is None:
        return None
    return f"{company}/{batch}/{entry}" if company else f"{batch}/{entry}"


def business_ids(stream: str, source_key: str, payload: Any = None, *,
                 target_key: str | None = None, sage_batch: Any = None,
                 sage_entry: Any = None) -> dict[str, str]:
    """Labelled ids of a record, for people: its own first, then what it points at.

    Labels: company, vendor, invoice, invoice id, po, line, account, cost center, payment
    term, tax code, sage entry (`COMPANY/BATCH/ENTRY`), external code, name, amount,
    currency. Only the labels the entry has are present.
    """
    data: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
    kind = family(stream)
    company = _company(stream, source_key, data)
    ids: dict[str, str] = {}

    def put(label: str, value: str | None) -> None:
        if value and label not in ids:
            ids[label] = value

    if kind == "invoice":
        put("invoice", _first(data, "invoiceNumber", "document_number"))
        put("invoice id", _first(data, "invoiceId", "source_id") or source_key)
        put("company", company)
        put("vendor", _first(data, "supplierCode", "vendor_number"))
        put("name", _first(data, "supplierName"))
        # Payloads are whatever the source sent (a rejected record is often malformed): any
        # field may have any JSON type, and an id that is not text is no id.
        orders = data.get("orderNumbers")
        if not isinstance(orders, list):
            lines = data.get("lines") or data.get("codingRows")
            orders = [line.get("orderNumber") for line in lines if isinstance(line, Mapping)] \
                if isinstance(lines, list) else []
        put("po", ", ".join(dict.fromkeys(o for o in map(_text, orders) if o)) or None)
        put("amount", _first(data, "grossSum", "gross_total"))
        put("currency", _first(data, "currencyCode", "currency"))
        put("sage entry", _sage_entry(data, company, sage_batch, sage_entry)
            or (target_key if stream == "ap_invoices" else None))
        return ids
    put("company", company)
    if kind == "vendor":
        put("vendor", _first(data, "VendorNumber", "vendorCode")
            or source_key.split("/", 1)[-1])
        put("name", _first(data, "VendorName", "name"))
        put("currency", _first(data, "CurrencyCode", "currencyCode"))
    elif kind in ("order", "order line"):
        put("po", _order_number(data, company))
        if kind == "order line":
            put("line", _first(data, "LineNumber", "lineNumber")
                or source_key.rsplit("/", 1)[-1])
        put("vendor", _first(data, "Vendor", "supplierCode"))
        put("currency", _first(data, "CurrencyCode", "currencyCode"))
    elif kind == "account":
        put("account", _first(data, "AccountNumber", "accountCode"))
    elif kind == "cost center":
        put("cost center", _first(data, "SegmentCodeKey", "costCenterCode"))
    elif kind == "payment term":
        put("payment term", _first(data, "TermsCode", "paymentTermCode"))
    elif kind == "tax code":
        put("tax code", _first(data, "tax_code", "taxCode"))
    put("external code", _first(data, "externalCode"))
    return ids


def primary_id(stream: str, source_key: str, ids: Mapping[str, str]) -> str:
    """The one id a person would type for the record (and that `resolve` finds): an invoice
    by its number, a vendor as COMPANY/VENDOR, a PO as COMPANY/PO (its lines COMPANY/PO/LINE),
    an account as COMPANY/ACCOUNT; the source key otherwise."""
    kind, company = family(stream), ids.get("company")
    if kind == "invoice":
        return ids.get("invoice") or source_key
    if company and kind == "vendor" and ids.get("vendor"):
        return f"{company}/{ids['vendor']}"
    if company and kind == "order" and ids.get("po"):
        return f"{company}/{ids['po']}"
    if company and kind == "order line" and ids.get("po") and ids.get("line"):
        return f"{company}/{ids['po']}/{ids['line']}"
    if company and kind == "account" and ids.get("account"):
        return f"{company}/{ids['account']}"
    return source_key


def refs(stream: str, source_key: str, payload: Any = None, *, target_key: str | None = None,
         sage_batch: Any = None, sage_entry: Any = None) -> set[str]:
    """The ids that name the record itself (normalized), as stored in `ledger_refs`.

    Every record is named by its source key and target key. Besides: an invoice by its number,
    Basware id and Sage entry (`COMPANY/BATCH/ENTRY`, and `BATCH/ENTRY` alone); a vendor by its
    number (alone and as COMPANY/VENDOR); a PO and its lines by the PO number (alone and as
    COMPANY/PO; a line also as COMPANY/PO/LINE); an account by its formatted number (alone and
    as COMPANY/ACCOUNT); anything by its Basware externalCode. What a record points at (an
    invoice's vendor or PO) is not a ref of it: tracing a vendor shows the vendor.
    """
    ids = business_ids(stream, source_key, payload, target_key=target_key,
                       sage_batch=sage_batch, sage_entry=sage_entry)
    kind, company = family(stream), ids.get("company")
    found: list[str | None] = [source_key, target_key, ids.get("external code")]
    if kind == "invoice":
        found += [ids.get("invoice"), ids.get("invoice id")]
        entry = ids.get("sage entry")
        if entry:
            found += [entry, entry.split("/", 1)[1] if entry.count("/") == 2 else None]
    elif kind in ("vendor", "order", "order line", "account"):
        own = {"vendor": "vendor", "order": "po", "order line": "po", "account": "account"}[kind]
        value = ids.get(own)
        found += [value, f"{company}/{value}" if company and value else None]
        if kind == "order line" and value and company and ids.get("line"):
            found.append(f"{company}/{value}/{ids['line']}")
    return {normalize_ref(ref) for ref in found if ref and len(ref) <= MAX_REF}


def subject(stream: str, source_key: str) -> str:
    """What a record is part of, for telling an ambiguous id from a record and its parts: an
    invoice is its own subject; a PO line belongs to its PO (COMPANY/SEQUENCE); other master
    data is its own subject."""
    kind = family(stream)
    if kind == "order line" and source_key.count("/") >= 2:
        return f"order {source_key.rsplit('/', 1)[0]}"
    if kind == "order line" or kind == "order":
        return f"order {source_key}"
    return f"{kind} {source_key}"


def unique_refs(rows: Iterable[tuple[str, str, set[str]]]) -> list[tuple[str, str, str]]:
    """(ref, stream, source_key) triples, each once, from (stream, source_key, refs) rows."""
    seen: dict[tuple[str, str, str], None] = {}
    for stream, source_key, found in rows:
        for ref in found:
            seen[(ref, stream, source_key)] = None
    return list(seen)

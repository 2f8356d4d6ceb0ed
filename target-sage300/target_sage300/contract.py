"""The ap_invoices input contract: a source-neutral AP invoice, checked with jsonschema.

Pure code (no I/O): :func:`parse_invoice` turns one incoming record into an :class:`APInvoice`
or raises :class:`ContractViolation` naming the field. The README documents the same contract.

Amounts are positive; ``document_type`` carries the sign (a credit note of 100 is ``amount:
100, document_type: credit_note``), which is how Sage 300 wants AP documents entered.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from ml_connector_core.ledger import to_jsonable

STREAM = "ap_invoices"

# Keys end up in OData filters and URL paths. They are always escaped, but Sage 300 codes never
# hold quotes, slashes or percent signs, so such a value is a mapping mistake worth rejecting.
_CODE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
# Document numbers are free text in Sage, but without the characters that change a query/URL.
_DOCUMENT_NUMBER = r"^[^\x00-\x1f\x7f'\"/\\%?#&]+$"
# Free text: printable, tabs/newlines excluded too (Sage views store single-line text).
_TEXT = r"^[^\x00-\x1f\x7f]*$"
_CURRENCY = r"^[A-Z]{3}$"
_COMPANY = r"^[A-Z0-9]+$"
_DATE = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?$"

#: Larger than any plausible AP document; a bigger value is a unit or parsing mistake.
MAX_AMOUNT = 9_999_999_999.99
#: Sage keeps amounts to the cent in the document currency; totals must agree to that.
TOLERANCE = Decimal("0.01")
EARLIEST_DATE, LATEST_DATE = date(1980, 1, 1), date(2099, 12, 31)

#: How many broken fields one rejection message lists.
MAX_REPORTED = 3

DOCUMENT_TYPES = {"invoice": "Invoice", "credit_note": "CreditNote", "debit_note": "DebitNote"}


def _amount(description: str) -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": MAX_AMOUNT, "description": description}


def _code(max_length: int, description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": _CODE,
            "description": description}


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def _text(max_length: int, description: str) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, "pattern": _TEXT,
            "description": description}


def _date(description: str) -> dict[str, Any]:
    return {"type": "string", "maxLength": 35, "pattern": _DATE, "description": description}


# Unknown fields are refused, so a misspelled stream map shows instead of dropping a value
# quietly; the SDK's own _sdc_ metadata columns are let through.
_CLOSED = {"additionalProperties": False, "patternProperties": {"^_sdc_": {}}}

LINE_SCHEMA: dict[str, Any] = {
    "type": "object",
    **_CLOSED,
    "required": ["amount"],
    "properties": {
        "amount": _amount("Line amount before tax, positive."),
        "description": _optional(_text(250, "Line text (Sage keeps the first 60 characters).")),
        "po_number": _optional(_code(22, "Sage 300 purchase order number the line was matched "
                                         "to; the line then takes that PO line's coding.")),
        "po_line": {"type": ["string", "integer", "null"], "pattern": r"^[0-9]{1,9}$",
                    "minimum": 0, "maximum": 999_999_999,
                    "description": "PO line number (LineNumber in Sage), required with "
                                   "po_number."},
        "gl_account": _optional(_code(45, "GL account for a line without PO: looked up in "
                                          "account_map, else used with the segment "
                                          "separators removed (6300-100 -> 6300100).")),
        "cost_center": _optional(_code(20, "Cost center of a line without PO; must be the "
                                           "account's cost center segment when given.")),
        "tax_amount": _optional(_amount("Tax on this line, positive.")),
        "tax_code": _optional(_text(20, "Tax code as the source knows it (informational).")),
        "line_ref": _optional(_text(64, "The source's id of the line (informational).")),
    },
}

AP_INVOICE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": STREAM,
    "type": "object",
    **_CLOSED,
    "required": ["source_id", "company", "vendor_number", "document_number", "document_type",
                 "document_date", "currency", "net_total", "gross_total", "lines"],
    "properties": {
        "source_id": _code(60, "The source system's id of the invoice (Basware invoiceId): "
                               "the idempotency key, stored with the Sage document."),
        "company": {"type": "string", "minLength": 1, "maxLength": 6, "pattern": _COMPANY,
                    "description": "Sage 300 company (org) id, e.g. SAMINC."},
        "vendor_number": _code(12, "Sage 300 vendor number."),
        "document_number": {"type": "string", "minLength": 1, "maxLength": 22,
                            "pattern": _DOCUMENT_NUMBER,
                            "description": "The vendor's invoice number; unique per vendor."},
        "document_type": {"enum": sorted(DOCUMENT_TYPES),
                          "description": "invoice | credit_note | debit_note: carries the sign."},
        "document_date": _date("Invoice date (YYYY-MM-DD; a date-time's date part is used)."),
        "due_date": _optional(_date("Due date; Sage computes it from the vendor's terms when "
                                    "absent.")),
        "posting_date": _optional(_date("Posting date; defaults to the document date.")),
        "currency": {"type": "string", "pattern": _CURRENCY,
                     "description": "ISO currency code; must be the vendor's currency."},
        "net_total": _amount("Total before tax, positive; equals the sum of line amounts."),
        "tax_total": _optional(_amount("Total tax, positive (0 when absent).")),
        "gross_total": _amount("Total including tax, positive; equals net_total + tax_total."),
        "description": _optional(_text(250, "Invoice text (Sage keeps the first 60 characters).")),
        "lines": {"type": "array", "minItems": 1, "maxItems": 500, "items": LINE_SCHEMA,
                  "description": "Distribution lines; at least one."},
    },
}

_VALIDATOR = Draft202012Validator(AP_INVOICE_SCHEMA)


class ContractViolation(ValueError):
    """The record breaks the contract; ``field`` names where (``lines[1].amount``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class InvoiceLine:
    number: int  # 1-based, as a person counts the lines
    amount: Decimal
    description: str | None
    po_number: str | None
    po_line: str | None
    gl_account: str | None
    cost_center: str | None
    tax_amount: Decimal | None


@dataclass(frozen=True)
class APInvoice:
    source_id: str
    company: str
    vendor_number: str
    document_number: str
    document_type: str  # invoice | credit_note | debit_note
    document_date: date
    due_date: date | None
    posting_date: date | None
    currency: str
    net_total: Decimal
    tax_total: Decimal
    gross_total: Decimal
    description: str | None
    lines: tuple[InvoiceLine, ...]

    @property
    def sage_document_type(self) -> str:
        return DOCUMENT_TYPES[self.document_type]


def show(value: Any, limit: int = 40) -> str:
    """A value for a message: repr-escaped (control characters visible) and shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def field_path(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(record)"


def _describe(error: ValidationError) -> tuple[str, str]:
    """(field, problem) for a jsonschema error, in words a person can act on."""
    path = list(error.absolute_path)
    value = error.instance
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in (value or {})]
        return field_path([*path, missing[0] if missing else "?"]), "is required"
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return field_path(path), f"must be {expected}, got {show(value)}"
    if error.validator == "pattern":
        why = {
            _CODE: "may hold only letters, digits, '.', '_' and '-' (no quotes, slashes, "
                   "spaces or %)",
            _DOCUMENT_NUMBER: "may not hold control characters, quotes, / \\ % ? # or &",
            _TEXT: "may not hold control characters (tabs, newlines...)",
            _DATE: "must be a date YYYY-MM-DD",
            _CURRENCY: "must be a 3-letter ISO currency code in capitals (USD)",
            _COMPANY: "must be a Sage 300 company id: capital letters and digits (SAMINC)",
        }.get(error.validator_value, f"must match {error.validator_value}")
        return field_path(path), f"{show(value)} {why}"
    if error.validator in ("maxLength", "minLength"):
        length = len(value) if isinstance(value, str) else "?"
        limit = error.validator_value
        relation = "at most" if error.validator == "maxLength" else "at least"
        return field_path(path), f"has {length} characters, {relation} {limit} allowed"
    if error.validator in ("minimum", "maximum"):
        relation = "below the minimum" if error.validator == "minimum" else "above the maximum"
        return field_path(path), f"{show(value)} is {relation} of {error.validator_value}"
    if error.validator in ("minItems", "maxItems"):
        count = len(value) if isinstance(value, list) else "?"
        relation = "at least" if error.validator == "minItems" else "at most"
        return field_path(path), f"has {count} entries, {relation} {error.validator_value} allowed"
    if error.validator == "additionalProperties":
        extra = sorted(set(value or {}) - set(error.schema.get("properties", {})))
        extra = [name for name in extra if not str(name).startswith("_sdc_")]
        name = str(extra[0]) if extra else "?"
        return field_path([*path, name]), "is not part of the ap_invoices contract (misspelled?)"
    if error.validator == "enum":
        allowed = " | ".join(str(v) for v in error.validator_value)
        return field_path(path), f"{show(value)} is not one of {allowed}"
    return field_path(path), error.message[:200]


def _finite(value: Any, field: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ContractViolation(field, f"{show(value)} is not a number") from exc
    if not number.is_finite():
        raise ContractViolation(field, f"{show(value)} is not a finite number")
    return number


def _date_value(value: str | None, field: str) -> date | None:
    if value is None:
        return None
    try:
        day = date.fromisoformat(value[:10])  # the date part as written, no time-zone shift
    except ValueError as exc:
        raise ContractViolation(field, f"{show(value)} is not a calendar date") from exc
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        raise ContractViolation(field, f"{day.isoformat()} is outside {EARLIEST_DATE.year}-"
                                       f"{LATEST_DATE.year}")
    return day


def _text_value(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def parse_invoice(record: dict[str, Any]) -> APInvoice:
    """Check one record against the contract and return it typed, or raise ContractViolation.
    """
    _check_non_finite(record, [])
    try:
        data = to_jsonable(record)  # Decimal/datetime from the SDK reader -> JSON values
    except TypeError as exc:
        raise ContractViolation("(record)", f"holds a value that is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractViolation("(record)", "must be an object")
    errors = sorted(_VALIDATOR.iter_errors(data), key=lambda e: (len(e.absolute_path),
                                                                 list(map(str, e.absolute_path))))
    if errors:
        described = list(dict.fromkeys(_describe(error) for error in errors))
        field, problem = described[0]
        # A person fixing the record wants every broken field at once (a few, not hundreds).
        more = "; ".join(f"field {f}: {p}" for f, p in described[1:MAX_REPORTED])
        raise ContractViolation(field, problem + (f"; {more}" if more else ""))

    lines = []
    for index, line in enumerate(data["lines"]):
        po_number = line.get("po_number")
        po_line = line.get("po_line")
        if po_number and po_line in (None, ""):
            raise ContractViolation(f"lines[{index}].po_line", f"is required with po_number "
                                                               f"{po_number}")
        if not po_number and not line.get("gl_account"):
            raise ContractViolation(f"lines[{index}]", "needs either po_number and po_line, or "
                                                       "gl_account")
        lines.append(InvoiceLine(
            number=index + 1,
            amount=_finite(line["amount"], f"lines[{index}].amount"),
            description=_text_value(line.get("description")),
            po_number=po_number.upper() if po_number else None,
            po_line=str(int(po_line)) if po_number else None,
            gl_account=line.get("gl_account") or None,
            cost_center=line.get("cost_center") or None,
            tax_amount=None if line.get("tax_amount") is None
            else _finite(line["tax_amount"], f"lines[{index}].tax_amount"),
        ))

    net = _finite(data["net_total"], "net_total")
    tax = _finite(data.get("tax_total") or 0, "tax_total")
    gross = _finite(data["gross_total"], "gross_total")
    line_sum = sum((line.amount for line in lines), Decimal(0))
    if abs(line_sum - net) > TOLERANCE:
        raise ContractViolation("net_total", f"is {net:.2f} but the line amounts add up to "
                                             f"{line_sum:.2f}")
    if abs(net + tax - gross) > TOLERANCE:
        raise ContractViolation("gross_total", f"is {gross:.2f} but net_total {net:.2f} + "
                                               f"tax_total {tax:.2f} = {net + tax:.2f}")
    document_number = data["document_number"].strip()
    if not document_number:
        raise ContractViolation("document_number", "is blank")
    document_date = _date_value(data["document_date"], "document_date")
    assert document_date is not None  # required by the schema
    return APInvoice(
        source_id=data["source_id"],
        company=data["company"],
        vendor_number=data["vendor_number"].upper(),  # Sage 300 keeps codes in capitals
        document_number=document_number,
        document_type=data["document_type"],
        document_date=document_date,
        due_date=_date_value(data.get("due_date"), "due_date"),
        posting_date=_date_value(data.get("posting_date"), "posting_date"),
        currency=data["currency"],
        net_total=net,
        tax_total=tax,
        gross_total=gross,
        description=_text_value(data.get("description")),
        lines=tuple(lines),
    )


_AMOUNTS = ("amount", "tax_amount", "net_total", "tax_total", "gross_total")


def _check_non_finite(value: Any, path: list[Any]) -> None:
    """NaN/Infinity pass jsonschema's range checks (every comparison is false): catch them."""
    if (isinstance(value, float) and not math.isfinite(value)) or (
            isinstance(value, Decimal) and not value.is_finite()):
        raise ContractViolation(field_path(path), f"{value!r} is not a finite number")
    if isinstance(value, str) and path and path[-1] in _AMOUNTS \
            and value.strip().lower().lstrip("+-") in ("nan", "snan", "inf", "infinity"):
        raise ContractViolation(field_path(path), f"{value!r} is not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_non_finite(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_non_finite(item, [*path, index])


def source_id_of(record: Any) -> str | None:
    """The record's source_id if it is a usable key (to answer the source system), else None."""
    value = record.get("source_id") if isinstance(record, dict) else None
    if isinstance(value, str) and 0 < len(value) <= 60 and re.fullmatch(_CODE, value):
        return value
    return None

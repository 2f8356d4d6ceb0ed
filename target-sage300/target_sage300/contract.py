"""The ap_invoices input contract: a source-neutral AP invoice, checked with jsonschema.

Pure code (no I/O): :func:`parse_invoice` turns one incoming record into an :class:`APInvoice`
or raises :class:`ContractViolation` naming the field. The README documents the same contract.

Everything that can fail on a record's content is decided here, where a bad record is
rejected alone, and not in the stream maps (an expression that fails there stops the whole
run): the source's line fields are renamed (``line_fields``), the type code is mapped
(``document_type_codes``), the taxes are added and the signs are resolved.

**Signs.** Amounts come as the source has them: an invoice positive, a credit note negative or
positive, a discount line negative. The document's direction comes from its amounts (gross
total, else net total), checked against the type: negative amounts are a credit note whatever
the type code says; a credit-note code is a credit note with either sign; positive amounts are
the code's invoice or debit note (an invoice when the code is unknown). :class:`APInvoice`
holds the amounts as Sage 300 enters the document: totals positive, ``document_type`` carrying
the sign (a credit note of 100 is ``CreditNote`` with ``100``), lines signed relative to the
document (a discount line on an invoice stays negative).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
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

INVOICE, CREDIT_NOTE, DEBIT_NOTE = "invoice", "credit_note", "debit_note"
DOCUMENT_TYPES = {INVOICE: "Invoice", CREDIT_NOTE: "CreditNote", DEBIT_NOTE: "DebitNote"}
#: The ``document_type_codes`` default: UN/CEFACT 1001 (EN 16931) document type codes.
DEFAULT_TYPE_CODES = {"380": INVOICE, "381": CREDIT_NOTE, "383": DEBIT_NOTE}
_WORDS = {INVOICE: "an invoice", CREDIT_NOTE: "a credit note", DEBIT_NOTE: "a debit note"}


def _amount(description: str) -> dict[str, Any]:
    return {"type": "number", "minimum": -MAX_AMOUNT, "maximum": MAX_AMOUNT,
            "description": description}


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
        "amount": _amount("Line amount before tax, with the source's sign (a discount line "
                          "on an invoice is negative)."),
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
        "tax_amount": _optional(_amount("Tax on this line, with the source's sign; checked "
                                        "against Sage's tax for the line's tax_code.")),
        "tax_code": _optional(_text(25, "The line's tax code: a code tap-sage300's tax_codes "
                                        "stream made (BCTAX-1.2: tax group, then the item "
                                        "class per authority); see tax_mapping.")),
        "line_ref": _optional(_text(64, "The source's id of the line (informational).")),
    },
}
LINE_FIELDS = tuple(LINE_SCHEMA["properties"])
# Optional line codes where an empty string means "none" (sources write "" for no PO).
_BLANK_IS_NONE = ("po_number", "po_line", "gl_account", "cost_center")

AP_INVOICE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": STREAM,
    "type": "object",
    **_CLOSED,
    "required": ["source_id", "company", "vendor_number", "document_number",
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
        "document_type_code": {"type": ["string", "integer", "null"], "maxLength": 20,
                               "pattern": _TEXT, "minimum": 0, "maximum": 999_999,
                               "description": "The source's document type code (Basware "
                                              "invoiceTypeCode), mapped through the "
                                              "document_type_codes setting."},
        "document_type": {"enum": [*sorted(DOCUMENT_TYPES), None],
                          "description": "invoice | credit_note | debit_note, for a source "
                                         "that knows it (wins over document_type_code)."},
        "document_date": _date("Invoice date (YYYY-MM-DD; a date-time's date part is used)."),
        "due_date": _optional(_date("Due date; Sage computes it from the vendor's terms when "
                                    "absent.")),
        "posting_date": _optional(_date("Posting date; defaults to the document date.")),
        "currency": {"type": "string", "pattern": _CURRENCY,
                     "description": "ISO currency code; must be the vendor's currency."},
        "net_total": _amount("Total before tax, with the source's sign; equals the sum of "
                             "line amounts."),
        "tax_total": _optional(_amount("Total tax, with the source's sign (0 when absent).")),
        "tax_total_2": _optional(_amount("A second tax total (Basware taxSum2), added to "
                                         "tax_total.")),
        "gross_total": _amount("Total including tax, with the source's sign; equals net_total "
                               "+ tax_total + tax_total_2."),
        "description": _optional(_text(250, "Invoice text (Sage keeps the first 60 characters).")),
        "lines": {"type": "array", "minItems": 1, "maxItems": 500, "items": LINE_SCHEMA,
                  "description": "Distribution lines; at least one."},
    },
}

_VALIDATOR = Draft202012Validator(AP_INVOICE_SCHEMA)


class ContractViolation(ValueError):
    """The record breaks the contract; ``field`` names where (``lines[1].amount``)."""

    def __init__(self, field: str, problem: str, label: str | None = None) -> None:
        """``label``: the field as the message shows it (with the source's own name)."""
        super().__init__(f"field {label or field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class ContractSettings:
    """How one target run reads the contract (from its settings; no I/O).

    ``line_fields``: contract line field -> the source line's field (empty: the contract's own
    names). ``type_codes``: the source's document type code -> invoice | credit_note |
    debit_note. ``source_fields``: contract field -> the source's field, for messages only
    (read from the stream maps: ``net_total (netSum)``).
    """

    line_fields: Mapping[str, str] = field(default_factory=dict)
    type_codes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_TYPE_CODES))
    source_fields: Mapping[str, str] = field(default_factory=dict)

    def label(self, path: str) -> str:
        """A contract field path with the source's names, when they differ and are known:
        ``lines[0].amount (codingRows[0].netTotal)``."""
        match = re.fullmatch(r"lines\[(\d+)\](?:\.(\w+))?", path)
        if match:
            lines = self.source_fields.get("lines", "lines")
            name = match.group(2)
            source = f"{lines}[{match.group(1)}]" + (
                f".{self.line_fields.get(name, name)}" if name else "")
        else:
            source = self.source_fields.get(path, path)
        return path if source == path else f"{path} ({source})"


DEFAULT_SETTINGS = ContractSettings()


@dataclass(frozen=True)
class InvoiceLine:
    number: int  # 1-based, as a person counts the lines
    amount: Decimal  # relative to the document, as Sage enters it (negative: a discount)
    description: str | None
    po_number: str | None
    po_line: str | None
    gl_account: str | None
    cost_center: str | None
    tax_amount: Decimal | None
    tax_code: str | None = None


@dataclass(frozen=True)
class APInvoice:
    """An invoice as Sage 300 enters it: totals positive, the type carrying the sign."""

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
    #: How the type was decided when not by the type code alone (told to the source).
    type_note: str | None = None

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
        allowed = " | ".join(str(v) for v in error.validator_value if v is not None)
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


def _read_line(line: Any, line_fields: Mapping[str, str]) -> Any:
    """One line in the contract's names: with ``line_fields``, the named fields of the
    source's line (its other fields are ignored: they are the source's, as it sends them; a
    contract name is read where the source's name is absent, as in records an earlier version
    stored); without, the line as it came (unknown fields are then refused by name)."""
    if not isinstance(line, dict):
        return line  # the schema names it: lines[i] must be object
    if line_fields:
        picked = {}
        for name in LINE_FIELDS:
            source = line_fields.get(name, name)
            if source in line:
                picked[name] = line[source]
            elif name in line:
                picked[name] = line[name]
        line = picked
    else:
        line = dict(line)
    for name in _BLANK_IS_NONE:
        value = line.get(name)
        if isinstance(value, str) and not value.strip():
            line[name] = None
    return line


def _contract_view(record: dict[str, Any], settings: ContractSettings) -> dict[str, Any]:
    lines = record.get("lines")
    if isinstance(lines, list):
        return {**record, "lines": [_read_line(line, settings.line_fields) for line in lines]}
    return dict(record)


def _type_code(value: Any) -> str | None:
    """A type code as the setting's keys are written ('381' for 381 or ' 381 ')."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON Schema's integer 381.0
    text = str(value).strip()
    return text or None


def _sign(value: Decimal) -> int:
    return (value > 0) - (value < 0)


def _decide_type(data: dict[str, Any], direction: int, settings: ContractSettings
                 ) -> tuple[str, str | None]:
    """(document type, a note when the amounts decided it or overrode the code).

    Negative amounts are a credit note whatever the code says (never a payable for a credit);
    a credit-note code is a credit note with either sign (UN/CEFACT credit notes carry positive
    amounts, Basware's carry negative ones); positive or zero amounts are the code's invoice or
    debit note; without a known code the amounts decide (an invoice when positive or zero)."""
    code = _type_code(data.get("document_type_code"))
    given = data.get("document_type")
    claimed = given or (settings.type_codes.get(code) if code is not None else None)
    said = (f"document type {given}" if given else f"type code {show(code)}"
            if code is not None else "no type code")
    if direction < 0:
        if claimed == CREDIT_NOTE:
            return CREDIT_NOTE, None
        if claimed is None and code is not None:
            return CREDIT_NOTE, f"a credit note: {said} is not mapped and the amounts are " \
                                "negative"
        if claimed is None:
            return CREDIT_NOTE, "a credit note: no type code and the amounts are negative"
        return CREDIT_NOTE, f"a credit note: {said} ({_WORDS[claimed]}) with negative amounts"
    if claimed is None:
        note = f"an invoice: {said} is not mapped" if code is not None else None
        return INVOICE, note
    return claimed, None


def parse_invoice(record: Any, settings: ContractSettings = DEFAULT_SETTINGS) -> APInvoice:
    """Check one record against the contract and return it as Sage 300 enters it, or raise
    ContractViolation naming the field (with the source's name where known)."""
    label = settings.label
    if isinstance(record, dict):
        record = _contract_view(record, settings)
    try:
        _check_non_finite(record, [])
        try:
            data = to_jsonable(record)  # Decimal/datetime from the SDK reader -> JSON values
        except TypeError as exc:
            raise ContractViolation("(record)", f"holds a value that is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ContractViolation("(record)", "must be an object")
        errors = sorted(_VALIDATOR.iter_errors(data),
                        key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
        if errors:
            described = list(dict.fromkeys(_describe(error) for error in errors))
            field_name, problem = described[0]
            # A person fixing the record wants every broken field at once (a few, not hundreds).
            more = "; ".join(f"field {label(f)}: {p}" for f, p in described[1:MAX_REPORTED])
            raise ContractViolation(field_name, problem + (f"; {more}" if more else ""))
        return _typed(data, settings)
    except ContractViolation as violation:
        if violation.field == "(record)" or label(violation.field) == violation.field:
            raise
        raise ContractViolation(violation.field, violation.problem,
                                label(violation.field)) from None


def _typed(data: dict[str, Any], settings: ContractSettings) -> APInvoice:
    raw_lines = []
    for index, line in enumerate(data["lines"]):
        po_number = line.get("po_number")
        po_line = line.get("po_line")
        if po_number and po_line is None:
            raise ContractViolation(f"lines[{index}].po_line", f"is required with po_number "
                                                               f"{po_number}")
        if not po_number and not line.get("gl_account"):
            raise ContractViolation(f"lines[{index}]", "needs either po_number and po_line, or "
                                                       "gl_account")
        raw_lines.append((index, line, _finite(line["amount"], f"lines[{index}].amount"),
                          None if line.get("tax_amount") is None
                          else _finite(line["tax_amount"], f"lines[{index}].tax_amount")))

    net = _finite(data["net_total"], "net_total")
    tax = _finite(data.get("tax_total") or 0, "tax_total")
    tax_2 = _finite(data.get("tax_total_2") or 0, "tax_total_2")
    gross = _finite(data["gross_total"], "gross_total")
    line_sum = sum((amount for _, _, amount, _ in raw_lines), Decimal(0))
    if abs(line_sum - net) > TOLERANCE:
        raise ContractViolation("net_total", f"is {net:.2f} but the line amounts add up to "
                                             f"{line_sum:.2f}")
    taxes = tax + tax_2
    if abs(net + taxes - gross) > TOLERANCE:
        added = f"tax_total {tax:.2f}" + (f" + tax_total_2 {tax_2:.2f}" if tax_2 else "")
        raise ContractViolation("gross_total", f"is {gross:.2f} but net_total {net:.2f} + "
                                               f"{added} = {net + taxes:.2f}")
    # The document's direction: its gross total's sign, else its net total's (0: all zero).
    direction = _sign(gross) or _sign(net)
    if _sign(net) * direction < 0:
        raise ContractViolation("net_total", f"is {net:.2f} but gross_total is {gross:.2f}: "
                                             "a document's totals have one sign")
    for name, value in (("tax_total", tax), ("tax_total_2", tax_2)):
        if _sign(value) * direction < 0:
            raise ContractViolation(name, f"is {value:.2f}, against the sign of the document "
                                          f"(gross_total {gross:.2f}): a tax that reduces a "
                                          "document is not taken")
    document_type, note = _decide_type(data, direction, settings)
    factor = -1 if direction < 0 else 1  # Sage enters every document with positive totals

    lines = tuple(InvoiceLine(
        number=index + 1,
        amount=amount * factor,
        description=_text_value(line.get("description")),
        po_number=line["po_number"].upper() if line.get("po_number") else None,
        po_line=str(int(line["po_line"])) if line.get("po_number") else None,
        gl_account=line.get("gl_account") or None,
        cost_center=line.get("cost_center") or None,
        tax_amount=None if tax_amount is None else tax_amount * factor,
        tax_code=_text_value(line.get("tax_code")),
    ) for index, line, amount, tax_amount in raw_lines)

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
        document_type=document_type,
        document_date=document_date,
        due_date=_date_value(data.get("due_date"), "due_date"),
        posting_date=_date_value(data.get("posting_date"), "posting_date"),
        currency=data["currency"],
        net_total=net * factor,
        tax_total=taxes * factor,
        gross_total=gross * factor,
        description=_text_value(data.get("description")),
        lines=lines,
        type_note=note,
    )


_AMOUNTS = ("amount", "tax_amount", "net_total", "tax_total", "tax_total_2", "gross_total")


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


_GET = re.compile(r"""record\.get\(\s*['"]([^'"]+)['"]""")


def source_fields_of(stream_maps: Any) -> dict[str, str]:
    """Contract field -> the source field its stream-map expression reads
    (``record.get('netSum')`` or a bare name), for messages; an expression that reads several
    fields, or none, is left out."""
    found: dict[str, str] = {}
    if not isinstance(stream_maps, dict):
        return found
    for stream_map in stream_maps.values():
        if not isinstance(stream_map, dict) or stream_map.get("__alias__") != STREAM:
            continue
        for name, expression in stream_map.items():
            if name.startswith("__") or not isinstance(expression, str):
                continue
            read = set(_GET.findall(expression))
            if not read and re.fullmatch(r"[A-Za-z_]\w*", expression.strip()):
                read = {expression.strip()}
            if len(read) == 1:
                found[name] = read.pop()
    return found


def settings_problems(line_fields: Any, type_codes: Any) -> list[str]:
    """What is wrong with the line_fields and document_type_codes settings (a wrong setting
    fails the run at its start, before any record is read)."""
    problems = []
    if not isinstance(line_fields, dict):
        problems.append("line_fields must be an object {contract line field: source field}")
    else:
        for name, source in line_fields.items():
            if name not in LINE_FIELDS:
                problems.append(f"line_fields: {name!r} is not a line field of the contract "
                                f"({', '.join(LINE_FIELDS)})")
            if not isinstance(source, str) or not source:
                problems.append(f"line_fields: {name!r} must name the source's field")
    if not isinstance(type_codes, dict):
        problems.append("document_type_codes must be an object {code: invoice | credit_note "
                        "| debit_note}")
    else:
        for code, kind in type_codes.items():
            if kind not in DOCUMENT_TYPES:
                problems.append(f"document_type_codes: {code!r} maps to {kind!r}, not to one "
                                f"of {' | '.join(DOCUMENT_TYPES)}")
    return problems


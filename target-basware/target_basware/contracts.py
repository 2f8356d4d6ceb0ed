"""The input contract of each stream: flat, source-neutral records, checked with jsonschema.

Whoever feeds target-basware (stream maps over tap-sage300 in meltano.yml, or any other tap)
sends one flat record per Basware entity with these fields. The target builds Basware's nested
payload itself (companies[], processingStatus{}, accountNames[]...), because SDK stream maps
type every computed nested value as a string (singer-meltano.md §2.7).

A record that breaks its contract is rejected alone: the ledger gets a `rejected` entry naming
the record key and the field, and the run goes on. Unknown fields are refused
(`additionalProperties: false`) so a typo in a stream map shows up instead of being ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

# Sage 300 text fields are single-line; a control character (NUL, ESC, a newline) in a name or
# code is corrupted data, and Basware would show it to AP clerks and suppliers as it is.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
#: Larger than any plausible order line; a bigger value is a unit or parsing mistake.
MAX_AMOUNT = 9_999_999_999.99


def _text(max_length: int, description: str, min_length: int = 1) -> dict[str, Any]:
    return {"type": "string", "minLength": min_length, "maxLength": max_length,
            "pattern": NO_CONTROL_CHARACTERS, "description": description}


def _amount(description: str) -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": MAX_AMOUNT, "description": description}


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


SOURCE_KEY = _optional(_text(500, "Key of the record in the source system (e.g. SAMINC/1200), "
                                  "the ledger's source_key so one record can be traced from "
                                  "read to delivery; default externalCode."))
EXTERNAL_CODE = _text(36, "Basware key of the record, unique per endpoint; built from company + "
                          "source key (e.g. SAMINC-1200). Upserts overwrite by this key.")
COMPANY_CODE = _text(25, "Basware company code (e.g. US01), not the source company id.", 2)
ACTIVE = {"type": "boolean", "description": "false deactivates the record in Basware (soft "
                                           "delete); it is still sent."}
NAME = _text(250, "Display name.")
# Basware's translations (accountNames[] etc.) need at least 2 characters.
TRANSLATED_NAME = _text(250, "Display name, sent as the en-US translation.", 2)
SOURCE_SYSTEM = _optional(_text(36, "Source system tag; default: the `source_system` setting."))

VENDORS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["externalCode", "vendorCode", "name", "companyCode", "active"],
    "properties": {
        "externalCode": EXTERNAL_CODE,
        "sourceKey": SOURCE_KEY,
        "vendorCode": _text(25, "The vendor number invoices and POs refer to (supplierCode)."),
        "name": NAME,
        "companyCode": COMPANY_CODE,
        "active": ACTIVE,
        "paymentDenied": _optional({"type": "boolean",
                                    "description": "Vendor on hold: Basware blocks payment."}),
        "paymentTermCode": _optional(_text(25, "Default payment term; must exist in Basware "
                                               "(payment_terms are sent first).")),
        "currencyCode": _optional({"type": "string", "pattern": "^[A-Z]{3}$",
                                   "description": "ISO 4217 currency the vendor is paid in; "
                                                  "sent in paymentMeans[] with "
                                                  "paymentMeansCode."}),
        "paymentMeansCode": _optional(_text(25, "How the vendor is paid (e.g. CHECK); without "
                                                "it no paymentMeans[] is sent.")),
        "taxRegistrationNumber": _optional(_text(36, "Tax registration id, sent as identifier "
                                                     "scheme VAT.", 0)),
        "addressLine1": _optional(_text(200, "Street address, first line.", 0)),
        "addressLine2": _optional(_text(200, "Street address, second line.", 0)),
        "city": _optional(_text(50, "City.", 0)),
        "region": _optional(_text(50, "State or province.", 0)),
        "postalCode": _optional(_text(50, "ZIP or postal code.", 0)),
        "countryCode": _optional({"type": "string", "pattern": "^([A-Z]{2})?$",
                                  "description": "ISO 3166 alpha-2 country (US, CA)."}),
        "contactName": _optional(_text(200, "AP contact person.", 0)),
        "phone": _optional(_text(50, "AP contact phone.", 0)),
        "email": _optional({"type": "string", "maxLength": 200,
                            "pattern": "^$|^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$",
                            "description": "AP contact e-mail."}),
        "sourceSystem": SOURCE_SYSTEM,
    },
}

ACCOUNTS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["externalCode", "accountCode", "name", "companyCode", "active"],
    "properties": {
        "externalCode": EXTERNAL_CODE,
        "sourceKey": SOURCE_KEY,
        "accountCode": _text(25, "GL account as invoices are coded with it (e.g. 6100-100)."),
        "name": TRANSLATED_NAME,
        "companyCode": COMPANY_CODE,
        "active": ACTIVE,
    },
}

COST_CENTERS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["externalCode", "costCenterCode", "name", "companyCode", "active"],
    "properties": {
        "externalCode": EXTERNAL_CODE,
        "sourceKey": SOURCE_KEY,
        "costCenterCode": _text(25, "Cost center code (e.g. the GL department segment 100)."),
        "name": TRANSLATED_NAME,
        "companyCode": COMPANY_CODE,
        "active": ACTIVE,
    },
}

PAYMENT_TERMS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["externalCode", "paymentTermCode", "name", "companyCode", "active"],
    "properties": {
        "externalCode": EXTERNAL_CODE,
        "sourceKey": SOURCE_KEY,
        "paymentTermCode": _text(25, "Payment term code vendors and orders refer to (N30)."),
        "name": TRANSLATED_NAME,
        "companyCode": COMPANY_CODE,
        "active": ACTIVE,
        "dueDays": _optional({"type": "integer", "minimum": 0, "maximum": 999,
                              "description": "Days from the base date to the due date."}),
        "cashDiscountDays": _optional({"type": "integer", "minimum": 0, "maximum": 999,
                                       "description": "Days in which the discount applies."}),
        "cashDiscountPercent": _optional({"type": "number", "minimum": 0, "maximum": 100,
                                          "description": "Early-payment discount, percent."}),
        "validFrom": _optional({"type": "string", "format": "date",
                                "description": "Default 2000-01-01."}),
        "validTo": _optional({"type": "string", "format": "date",
                              "description": "Default 9999-12-31."}),
    },
}

TAX_CODES: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["externalCode", "taxCode", "name", "taxPercentage", "companyCode", "active"],
    "properties": {
        "externalCode": EXTERNAL_CODE,
        "sourceKey": SOURCE_KEY,
        "taxCode": _text(25, "The code invoice lines carry (tap-sage300: the tax group and "
                             "the item class per authority, BCTAX-1.2)."),
        "name": TRANSLATED_NAME,
        "taxPercentage": {"type": "number", "minimum": 0, "maximum": 100,
                          "description": "The total rate, percent."},
        "companyCode": COMPANY_CODE,
        "active": ACTIVE,
    },
}

MATCHING_ORDERS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["externalCode", "orderNumber", "companyCode", "supplierCode", "currencyCode"],
    "properties": {
        "externalCode": EXTERNAL_CODE,
        "sourceKey": SOURCE_KEY,
        "orderNumber": _text(100, "The PO number invoices quote."),
        "companyCode": COMPANY_CODE,
        "organizationElementCode": _optional(_text(25, "Default: companyCode.")),
        "supplierCode": _text(25, "vendorCode of the vendor (sent before orders)."),
        "currencyCode": {"type": "string", "pattern": "^[A-Z]{3}$",
                         "description": "ISO 4217 order currency."},
        "paymentTermCode": _optional(_text(25, "Payment term of the order.")),
        "orderDate": _optional({"type": "string", "format": "date",
                                "description": "Order date, sent as `created`."}),
        "description": _optional(_text(1000, "Order description.", 0)),
        "isClosed": _optional({"type": "boolean",
                               "description": "Closed in the source. A closed order Basware "
                                              "never received is not sent; one it has is "
                                              "sent closed. Default false."}),
        "sourceSystem": SOURCE_SYSTEM,
        "lineKeys": _optional({
            "type": "array", "items": _text(500, "A line's key."),
            "description": "The keys (sourceKey, else externalCode) of every line the order "
                           "has in the source now. When given, a line this target delivered "
                           "whose key an earlier version of the order listed, and that is not "
                           "listed now, was removed in the source: it is sent closed, once. "
                           "Not sent to Basware."}),
    },
}

MATCHING_ORDER_LINES: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["externalCode", "orderExternalCode", "lineNumber", "quantity"],
    "properties": {
        "externalCode": EXTERNAL_CODE,
        "sourceKey": SOURCE_KEY,
        "orderExternalCode": _text(36, "externalCode of the order header (sent first)."),
        "lineNumber": {"type": ["string", "integer"], "minLength": 1, "maxLength": 100,
                       "minimum": 0, "description": "Line number as invoices quote it "
                                                     "(orderLineNumber); sent as a string."},
        "quantity": _amount("Ordered quantity."),
        "netPrice": _optional(_amount("Net unit price.")),
        "netSum": _optional(_amount("Net line total.")),
        "productCode": _optional(_text(250, "Item number.", 0)),
        "productName": _optional(_text(250, "Item description.", 0)),
        "uom": _optional(_text(25, "Unit of measure.", 0)),
        "accountCode": _optional(_text(50, "Default GL account of the invoice coding "
                                           "(accounts are sent first).")),
        "costCenterCode": _optional(_text(200, "Default cost center of the invoice coding.")),
        "matchingMode": _optional({"type": "string",
                                   "enum": ["Standard", "Blanket", "Return", "Service"],
                                   "description": "Default Standard (three-way matching)."}),
        "isReceiptRequired": _optional({"type": "boolean",
                                        "description": "Goods receipt needed before matching; "
                                                       "not sent when null (Basware decides)."}),
        "isReceiptBasedMatching": _optional({
            "type": "boolean", "description": "Invoices match the received quantities (goods "
                                              "receipts), not the ordered ones; not sent when "
                                              "null."}),
        "isClosed": _optional({"type": "boolean",
                               "description": "Closed/received in full in the source; same "
                                              "rule as orders. Default false."}),
        "goodsReceipts": _optional({
            "type": "array", "items": {
                "type": "object", "additionalProperties": False,
                "required": ["externalCode", "goodsReceiptNumber", "quantity"],
                "properties": {
                    "externalCode": EXTERNAL_CODE,
                    "goodsReceiptNumber": _text(100, "The receipt number."),
                    "quantity": _amount("Quantity received."),
                    "referenceGRExternalCode": _optional(_text(
                        36, "externalCode of the receipt entry this one cancels.")),
                }},
            "description": "Every goods receipt of the line. Normally not given: this target "
                           "adds the receipts of the `goods_receipts` stream, and keeps those "
                           "sent before (Basware replaces the line's whole record)."}),
    },
}

#: A goods receipt (tap-sage300 po_receipts): not posted itself; each of its lines becomes a
#: goodsReceipts[] entry of the matching order line it received (target_basware.receipts).
GOODS_RECEIPTS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["externalCode", "goodsReceiptNumber", "orderExternalCode", "lines"],
    "properties": {
        "externalCode": EXTERNAL_CODE,
        "sourceKey": SOURCE_KEY,
        "goodsReceiptNumber": _text(100, "The receipt number (Sage ReceiptNumber)."),
        "orderExternalCode": _text(36, "externalCode of the matching order received against; "
                                       "a line's code is <orderExternalCode>-<orderLineNumber>."),
        "orderSourceKey": _optional(_text(500, "sourceKey of that order; a line's ledger key is "
                                               "<orderSourceKey>/<orderLineNumber>. Default: "
                                               "the line's externalCode.")),
        "receiveDate": _optional({"type": "string", "format": "date",
                                  "description": "Date received (kept in the ledger only)."}),
        "isCancelled": _optional({"type": "boolean",
                                  "description": "Undone in the source: each of its entries "
                                                 "gets a cancelling one "
                                                 "(referenceGRExternalCode)."}),
        "lines": {
            "type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False,
                "required": ["lineNumber", "orderLineNumber", "quantity"],
                "properties": {
                    "lineNumber": {"type": "integer", "minimum": 0,
                                   "description": "The receipt's line number."},
                    "orderLineNumber": {"type": "integer", "minimum": 0,
                                        "description": "lineNumber of the order line received."},
                    "quantity": _amount("Quantity received."),
                }},
            "description": "The receipt's lines, in the names of the `receipt_line_fields` "
                           "setting (stream maps cannot rename inside a list)."},
    },
}

#: A key list: every record of a stream the source has now, one record per key, followed by
#: ACTIVATE_VERSION. What this target delivered for the companies listed and is not in the
#: list was deleted in the source (target_basware.deletions). Nothing is sent for the list
#: itself. `vendor_keys` lists `vendors`.
VENDOR_KEYS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["externalCode", "companyCode"],
    "properties": {
        "externalCode": EXTERNAL_CODE,
        "sourceKey": SOURCE_KEY,
        "companyCode": COMPANY_CODE,
    },
}
KEY_LISTS: dict[str, str] = {"vendor_keys": "vendors"}

CONTRACTS: dict[str, dict[str, Any]] = {
    "payment_terms": PAYMENT_TERMS,
    "tax_codes": TAX_CODES,
    "accounts": ACCOUNTS,
    "cost_centers": COST_CENTERS,
    "vendors": VENDORS,
    "matching_orders": MATCHING_ORDERS,
    "matching_order_lines": MATCHING_ORDER_LINES,
    "goods_receipts": GOODS_RECEIPTS,
    "vendor_keys": VENDOR_KEYS,
}

_VALIDATORS = {
    stream: Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for stream, schema in CONTRACTS.items()
}

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)  # jsonschema's own "date" check


class QuickCheck:
    """A flat contract compiled into plain Python checks, for the common case of a valid
    record: jsonschema's iter_errors costs ~0.3 ms per record, this ~15 us.

    Conservative: `passes` is True only when every keyword of every field is met; anything
    else (a failure, or a keyword it does not know) says False, and jsonschema then judges
    and names the problems. So it can never accept what the contract refuses.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self.required = frozenset(schema.get("required", ()))
        properties = schema.get("properties", {})
        self.closed = schema.get("additionalProperties") is False
        self.known = frozenset(properties)
        self.checks = {name: self._compile(prop) for name, prop in properties.items()}
        handled = {"type", "properties", "required", "additionalProperties", "description"}
        if set(schema) - handled or schema.get("type") != "object":
            self.checks = None  # not a flat object contract: always ask jsonschema

    @classmethod
    def _compile(cls, prop: dict[str, Any]) -> Callable[[Any], bool] | None:
        kinds = prop.get("type")
        if kinds == ["array", "null"] and set(prop) <= {"type", "items", "description"}:
            item = cls._compile(prop.get("items") or {})  # a list of plain values, or null
            if item is None:
                return None
            return lambda value: value is None or (
                isinstance(value, list) and all(map(item, value)))
        known = {"type", "minLength", "maxLength", "pattern", "enum", "minimum", "maximum",
                 "format", "description"}
        if set(prop) - known or prop.get("format", "date") != "date":
            return None
        kinds = prop.get("type")
        kinds = {kinds} if isinstance(kinds, str) else set(kinds or ())
        if not kinds or kinds - {"string", "number", "integer", "boolean", "null"}:
            return None
        pattern = re.compile(prop["pattern"]) if "pattern" in prop else None
        enum = prop.get("enum")
        low, high = prop.get("minimum"), prop.get("maximum")
        shortest, longest = prop.get("minLength", 0), prop.get("maxLength")
        is_date = "format" in prop

        def check(value: Any) -> bool:
            if value is None:
                return "null" in kinds and (enum is None or None in enum)
            if isinstance(value, str):
                if "string" not in kinds or len(value) < shortest or (
                        longest is not None and len(value) > longest):
                    return False
                if pattern is not None and pattern.search(value) is None:
                    return False
                if is_date and not _is_iso_date(value):
                    return False
            elif isinstance(value, bool):
                if "boolean" not in kinds:
                    return False
            elif isinstance(value, int | float):
                if not ("number" in kinds or "integer" in kinds and (
                        isinstance(value, int) or value.is_integer())):
                    return False
                if not math.isfinite(value) or (low is not None and value < low) or (
                        high is not None and value > high):
                    return False
            else:
                return False
            # jsonschema's enum tells 1 from True; only text is compared here.
            return enum is None or (isinstance(value, str) and value in enum)

        return check

    def passes(self, record: dict[str, Any]) -> bool:
        checks = self.checks
        if checks is None or not self.required <= record.keys():
            return False
        if self.closed and not record.keys() <= self.known:
            return False
        for name, value in record.items():
            check = checks.get(name)
            if check is None or not check(value):
                return False
        return True


def _is_iso_date(value: str) -> bool:
    if not _ISO_DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


_QUICK = {stream: QuickCheck(schema) for stream, schema in CONTRACTS.items()}


def contract_errors(stream: str, record: dict[str, Any]) -> list[str]:
    """Every contract violation of `record`, each naming the field: `field 'x': why`."""
    if _QUICK[stream].passes(record):
        return []
    problems = []
    errors = sorted(_VALIDATORS[stream].iter_errors(record), key=lambda e: list(e.absolute_path))
    for error in errors:
        problems.append(_describe(error))
    return problems


def non_finite_numbers(record: Any, path: str = "") -> list[str]:
    """NaN and Infinity, which JSON cannot carry (the Singer reader accepts them), named by
    field: checked on the raw record, before they become the strings "NaN"/"Infinity"."""
    if isinstance(record, float | Decimal) and not (
            math.isfinite(record) if isinstance(record, float) else record.is_finite()):
        return [f"field '{path or '(record)'}': {record} is not a finite number"]
    if isinstance(record, dict):
        return [problem for key, value in record.items()
                for problem in non_finite_numbers(value, f"{path}.{key}" if path else str(key))]
    if isinstance(record, list):
        return [problem for index, value in enumerate(record)
                for problem in non_finite_numbers(value, f"{path}.{index}")]
    return []


def _describe(error: ValidationError) -> str:
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"field '{missing}': required but missing"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"field(s) {', '.join(repr(f) for f in extra)}: not in the contract"
    field = ".".join(str(part) for part in error.absolute_path) or "(record)"
    value = error.instance
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return f"field '{field}': {_reason(error)} (got {shown})"


def _reason(error: ValidationError) -> str:
    schema = error.schema
    match error.validator:
        case "type":
            return f"must be {error.validator_value}"
        case "minLength":
            return "must not be empty" if schema["minLength"] == 1 else error.message
        case "maxLength":
            return f"longer than {schema['maxLength']} characters"
        case "pattern" if schema["pattern"] == NO_CONTROL_CHARACTERS:
            return "may not hold control characters (tabs, newlines, NUL...)"
        case "pattern":
            return f"does not match {schema['pattern']}"
        case "enum":
            return f"must be one of {schema['enum']}"
        case "format":
            return f"is not a valid {schema['format']}"
        case _:
            return error.message

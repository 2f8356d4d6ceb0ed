"""Request-body validation for the Basware simulator, as JSON Schema.

Transcribed from Basware's own P2P OpenAPI document (the copy ``basware_swagger_august2022.json``
in ``Basware/bw-mulesoft-connector``, file version 22.08.13.61): required fields, max/min
lengths, types, enums, number ranges and ``additionalProperties: false`` on every entity, so a
misspelt field is rejected as the real API layer rejects it. Later additions from the 2026 spec
quoted in ref §7 are merged in (``matchingMode: Service``). The subscription schema comes from
Basware's push-notification OpenAPI (``Subscription-Input``).

Conventions of the real API kept here: ``null`` counts as "not sent", so every optional field
also accepts ``null``; required fields do not. Dates accept ``CCYY-MM-DD`` or a full ISO 8601
date-time. Deeply nested blocks the connector never sends (order-line coding dimensions, bank
account details) are checked for their required keys only.
"""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from .basware_common import error_entity, parse_datetime

_FORMATS = FormatChecker(formats=())


@_FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or parse_datetime(value) is not None


@_FORMATS.checks("uri")
def _is_http_uri(value: object) -> bool:
    return not isinstance(value, str) or re.match(r"^https?://[^\s/]+", value) is not None


# -- building blocks -------------------------------------------------------------------------

def text(max_length: int, min_length: int = 0, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, "minLength": min_length, **extra}


def number(**extra: Any) -> dict[str, Any]:
    return {"type": "number", **extra}


def integer(**extra: Any) -> dict[str, Any]:
    return {"type": "integer", **extra}


BOOL: dict[str, Any] = {"type": "boolean"}
DATE_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
ANY_STRING: dict[str, Any] = {"type": "string"}
LOOSE_OBJECT: dict[str, Any] = {"type": "object"}
EMAIL = r"^\w+([-+.']\w+)*@\w+([-.]\w+)*\.\w+([-.]\w+)*$"


def enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def entity(required: dict[str, dict[str, Any]], optional: dict[str, dict[str, Any]],
           closed: bool = True) -> dict[str, Any]:
    """An object schema; optional properties also accept null (null means "not sent")."""
    properties = dict(required)
    for name, schema in optional.items():
        properties[name] = _nullable(schema)
    return {"type": "object", "required": list(required), "properties": properties,
            "additionalProperties": not closed}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    schema = dict(schema)
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


def numbered(prefix: str, count: int, schema: dict[str, Any], start: int = 1) -> dict[str, Any]:
    return {f"{prefix}{n}": schema for n in range(start, start + count)}


LAST_UPDATED = {"lastUpdated": DATE_TIME}
TRANSLATION = entity({"translation": text(2000, 2), "language": text(10, 2)}, {})
EXTERNAL_CODE_36 = text(36, 1)

# -- master data (ref §5) --------------------------------------------------------------------

ACCOUNT = entity(
    {"externalCode": EXTERNAL_CODE_36, "accountCode": text(25, 1),
     "accountNames": array(TRANSLATION),
     "companies": array(entity({"companyCode": text(32, 2), "inherit": BOOL, "active": BOOL},
                               {}))},
    {"taxCode": text(25), **numbered("text", 5, text(250)), **LAST_UPDATED},
)

COST_CENTER = entity(
    {"externalCode": EXTERNAL_CODE_36, "costCenterCode": text(25, 1),
     "costCenterNames": array(TRANSLATION),
     "companies": array(entity({"companyCode": text(32, 2), "active": BOOL}, {}))},
    {**numbered("text", 10, text(250)), **numbered("date", 5, DATE_TIME),
     **numbered("int", 5, integer()), **LAST_UPDATED},
)

TAX_CODE = entity(
    {"externalCode": EXTERNAL_CODE_36, "taxCode": text(25, 1),
     "taxCodeNames": array(TRANSLATION), "taxPercentage": number(minimum=0, maximum=100),
     "companies": array(entity({"companyCode": text(32, 2), "inherit": BOOL, "active": BOOL},
                               {}))},
    {"taxPercentage2": number(minimum=0, maximum=100), "taxGroup": text(25),
     "additionalData": array(entity({}, {"key": text(250), "value": text(250)})),
     **LAST_UPDATED},
)

_NON_NEGATIVE_INT = integer(minimum=0, maximum=2147483647)
PAYMENT_TERM = entity(
    {"externalCode": EXTERNAL_CODE_36, "paymentTermCode": text(25, 1),
     "paymentTermNames": array(TRANSLATION), "validFrom": DATE_TIME, "validTo": DATE_TIME,
     "companies": array(entity({"companyCode": text(32, 2), "inherit": BOOL, "active": BOOL},
                               {}))},
    {"sortOrder": _NON_NEGATIVE_INT, "moveDueDatesTo": {"type": "string", "pattern": "0|1|2"},
     "dueDateCalc": integer(), "dueDateDays": _NON_NEGATIVE_INT,
     "dueDateDays2": _NON_NEGATIVE_INT, "dueDateEom": _NON_NEGATIVE_INT,
     "cashDueDateCalc": integer(), "cashDueDateDays": _NON_NEGATIVE_INT,
     "cashDueDateDays2": _NON_NEGATIVE_INT, "cashDueDateEom": _NON_NEGATIVE_INT,
     "cashDiscount": number(minimum=0, maximum=1000000000),
     "paymentTermDiscountRules": array(entity(
         {"externalCode": EXTERNAL_CODE_36, "active": BOOL},
         {"discountDays": _NON_NEGATIVE_INT,
          "discountPercent": number(minimum=0, maximum=1000000000)})),
     **LAST_UPDATED},
)

_VENDOR_ADDRESS = entity(
    {"externalCode": EXTERNAL_CODE_36, "name": text(200, 1)},
    {"description": text(200),
     "addressType": enum("AdditionalAddress", "VisitingAddress", "RemittanceAddress",
                         "DeliveryAddress", "PostalAddress", "RegistrationAddress"),
     "addressLine1": text(200), "addressLine2": text(200), "addressLine3": text(200),
     "cityName": text(50), "postalZone": text(50), "poBox": text(50), "streetName": text(50),
     "locality": text(50), "countrySubEntity": text(50), "countrySubEntityDescription": text(50),
     "countryId": text(2, 2), "default": BOOL,
     "additionalAddressFields": array(entity({}, {"key": ANY_STRING, "value": text(200)}))},
)
_VENDOR_CONTACT = entity(
    {"name": text(200, 1)},
    {"description": text(200), "telephone": text(50), "telefax": text(50), "email": text(200),
     "website": text(200), "role": enum("AdditionalContact", "PrimaryContact",
                                        "SecondaryContact")},
)
_VENDOR_PAYMENT_MEANS = entity(
    {"paymentMeansCode": text(25, 1)},
    {"description": text(200), "currencyCode": text(3, 3),
     "financialAccounts": array(LOOSE_OBJECT), "default": BOOL},
)
_VENDOR_ORDERING = entity(
    {},
    {"orderingFormat": enum("UBL", "EHFXML21", "email", "other", "none", "BaswareNetwork"),
     "orderingMessageLanguage": text(8), "orderingLanguage": text(8),
     "orderEmail": text(320, 3, pattern=EMAIL), "orderProcessType": text(50),
     "minimumOrderAllowed": number(),
     **{flag: BOOL for flag in ("isTaxable", "automaticallyReceiveOnInvoice",
                                "automaticallyReceiveOnOrder", "hasActiveCatalog",
                                "createOrderAutomatically", "deliverOrderAutomatically",
                                "noFreeformItems", "sendToNetwork")}},
)
VENDOR = entity(
    {"externalCode": EXTERNAL_CODE_36, "vendorCode": text(25, 1), "name": text(250, 1),
     "companies": array(entity({"companyCode": text(32, 2)}, {"inheritToChildUnits": BOOL}))},
    {"vendorParent": ANY_STRING, "buvid": text(36), "sourceSystem": text(36),
     "description": text(250), "supplierAssignedAccountId": text(128),
     "eligibleForSourcing": BOOL, "vendorClass": text(100),
     "identifiers": array(entity({"id": text(36, 1), "schemeId": text(32, 1)},
                                 {"defaultPartyId": BOOL})),
     "addresses": array(_VENDOR_ADDRESS), "contacts": array(_VENDOR_CONTACT),
     "deliveryTerm": entity({"deliveryTermCode": text(25, 1)},
                            {"deliveryLocation": text(100), "description": text(200)}),
     "paymentMeans": array(_VENDOR_PAYMENT_MEANS),
     "paymentTerms": entity({"paymentTermCode": text(25, 1)}, {"description": text(200)}),
     "orderingDetails": _VENDOR_ORDERING,
     "processingStatus": entity({}, {"active": BOOL, "paymentDenied": BOOL}),
     "tags": array(entity({"name": text(50, 1), "value": text(250, 1)},
                          {"tagGroup": text(50)})),
     "customFields": array(entity({"name": text(25, 1), "value": text(250, 1)},
                                  {"groupName": text(500)})),
     **LAST_UPDATED},
)

# -- purchase orders for matching (ref §7) ---------------------------------------------------

_CUSTOM_FIELDS = {**numbered("text", 10, text(250)), **numbered("numeric", 5, number()),
                  **numbered("date", 5, DATE_TIME)}
MATCHING_ORDER = entity(
    {"externalCode": EXTERNAL_CODE_36, "orderNumber": text(100, 1),
     "sourceSystem": text(36, 1), "companyCode": text(25, 1),
     "organizationElementCode": text(25, 2), "currencyCode": text(3, 2),
     "supplierCode": text(25, 1)},
    {"companyName": text(250), "organizationElementName": text(250),
     "orderTypeCode": text(25), "created": DATE_TIME, "isClosed": BOOL,
     "description": text(1000), "purchaseOrganizationCode": text(25),
     "purchaseOrganizationName": text(250), "supplierName": text(250),
     "invoicingSupplierCode": text(25), "invoicingSupplierName": text(250),
     "requestedDeliveryDate": DATE_TIME, "actualDeliveryDate": DATE_TIME,
     "validFrom": DATE_TIME, "validTo": DATE_TIME, "paymentTermCode": text(25),
     "paymentTermName": text(250), **_CUSTOM_FIELDS, "isInvoiced": BOOL, "isDelivered": BOOL,
     "orderReference": text(100), **LAST_UPDATED},
)

_GOODS_RECEIPT = entity(
    {"externalCode": EXTERNAL_CODE_36, "goodsReceiptNumber": text(100, 1),
     "quantity": number()},
    {"goodsReceiptLineNumber": text(25), "referenceGRExternalCode": text(36),
     "deliveryNoteNumber": text(250), "bestFitGrouping": text(250), "netSum": number(),
     "grossSum": number(), "netPrice": number(), "grossPrice": number(), "isDeleted": BOOL,
     "invoicedQuantity": number(), "invoicedNetSum": number(), "invoicedGrossSum": number(),
     "unitOfMeasure": text(25), "subUnitOfMeasure": text(250), "goodsReceiptType": integer(),
     "receiveMethod": integer(), "voucherNumber": text(100), "goodsReceiptNote": text(250),
     "fiscalYear": DATE_TIME, "deliveryDate": DATE_TIME, "productSerialNumber": text(250),
     **_CUSTOM_FIELDS},
)
_ORDER_LINE_CODING = entity(
    {"externalCode": EXTERNAL_CODE_36, "rowIndex": integer(minimum=0, maximum=100000),
     "allocatedQuantity": number()},
    {"netTotal": number(), "grossTotal": number(), "accountCode": text(50),
     "accountName": text(250), "costCenterCode": text(200)},
    closed=False,  # ~90 optional coding dimensions, not transcribed
)
_ORDER_LINE_USER = entity(
    {}, {"userExternalCode": text(36), "userEmail": text(250),
         "userRole": enum("Buyer", "Owner", "ReferencePerson", "Other"), **LAST_UPDATED})
MATCHING_ORDER_LINE = entity(
    {"externalCode": EXTERNAL_CODE_36, "orderExternalCode": EXTERNAL_CODE_36,
     "lineNumber": text(100, 1), "quantity": number(),
     "matchingMode": enum("Standard", "Blanket", "Return", "Service")},
    {"sortNumber": integer(), "netSum": number(), "grossSum": number(),
     "currencyCode": text(3, 2), "isReceiptRequired": BOOL, "isReceiptBasedMatching": BOOL,
     "isOverreceivalAllowed": BOOL, "isClosed": BOOL, "isDeleted": BOOL,
     "isSelfApproved": BOOL, "uom": text(25), "subUOM": text(250), "netPrice": number(),
     "grossPrice": number(), "priceUnit": text(25), "priceUnitDescription": text(250),
     "taxCode": text(25), "taxPercent": number(minimum=0, maximum=1000000000),
     "taxPercent2": number(), "taxSum": number(), "taxSum2": number(),
     "invoicedQuantity": number(), "invoicedNetSum": number(), "invoicedGrossSum": number(),
     "validFrom": DATE_TIME, "validTo": DATE_TIME, "productCode": text(250),
     "productName": text(250), "materialGroup": text(250),
     "globalTradeItemNumber": text(250), "unspsc": text(25), "buyerProductCode": text(250),
     "contractNumber": text(255), "description": text(1000), "comment": text(1000),
     "requestedDeliveryDate": DATE_TIME, "actualDeliveryDate": DATE_TIME, **_CUSTOM_FIELDS,
     "orderLineCoding": array(_ORDER_LINE_CODING), "goodsReceipts": array(_GOODS_RECEIPT),
     "referenceUsers": array(_ORDER_LINE_USER), **LAST_UPDATED},
)

# -- invoice export responses (ref §9) -------------------------------------------------------

TRANSFER_RESPONSE = entity(
    {"externalCode": EXTERNAL_CODE_36, "success": BOOL, "responseMessage": text(250, 1),
     "paymentBlock": BOOL},
    {"sourceSystem": text(32), "voucherNumber1": text(25), "voucherNumber2": text(25),
     "transferDate": DATE_TIME},
)

# paymentResponses (ref §9.1 step 5): externalCode, success and paymentBlock required; the
# lengths of the optional texts are guesses (the 2022 spec gives none).
PAYMENT_RESPONSE = entity(
    {"externalCode": EXTERNAL_CODE_36, "success": BOOL, "paymentBlock": BOOL},
    {"paymentDate": DATE_TIME, "paidTotal": number(), "paymentMethod": text(25),
     "paymentTermCode": text(25), "cashDiscount": number(), "checkNumber": text(50),
     "paymentNumber": text(50), "paymentDocument": text(50),
     "paymentReversalDocument": text(50), "paymentMessage": text(250),
     "responseMessage": text(250), "sourceSystem": text(32)},
)

# -- push notifications (ref §11) ------------------------------------------------------------

TASK_TYPES = ("AccountingDocuments", "ExportedPurchaseRequisitions", "ExportedPurchaseOrders",
              "RequestStatus", "ExportedContracts", "ExportedContractSpends")
TASK_SUB_TYPES = ("WaitingForPrebook", "WaitingForTransfer", "WaitingForPrebookCancelation",
                  "WaitingToBeRemoved", "WaitingToBeReturned", "WaitingToBeCompleted",
                  "WaitingForExport", "Error", "Success", "All")
SUBSCRIPTION = entity(
    {"taskType": enum(*TASK_TYPES), "subscriptionType": enum("Webhook", "Polling"),
     "notificationWebhookURL": text(2083, 1, format="uri"),
     "webhookAuthenticationToken": {"type": "string", "minLength": 1}},
    {"taskSubType": enum(*TASK_SUB_TYPES), "lastUpdated": DATE_TIME,
     "autoResponder": LOOSE_OBJECT},
)

_VALIDATORS: dict[int, Draft202012Validator] = {}


def validate(schema: dict[str, Any], record: Any, index: int | None = None,
             prefix: str = "$") -> list[dict[str, Any]]:
    """Every violation of ``schema`` in ``record`` as P2P ``ErrorEntity`` dicts, field named."""
    validator = _VALIDATORS.get(id(schema))
    if validator is None:
        validator = _VALIDATORS[id(schema)] = Draft202012Validator(schema,
                                                                  format_checker=_FORMATS)
    external_code = record.get("externalCode") if isinstance(record, dict) else None
    root = prefix if index is None else f"{prefix}[{index}]"
    errors = sorted(validator.iter_errors(record), key=lambda e: list(map(str, e.absolute_path)))
    return [error_entity("SCHEMA_VALIDATION_ERROR", message,
                         external_code=external_code if isinstance(external_code, str) else None,
                         info=path)
            for error in errors for path, message in _describe(error, root)]


def _describe(error: ValidationError, root: str) -> list[tuple[str, str]]:
    path = _path(root, error.absolute_path)
    kind, value = error.validator, error.validator_value
    if kind == "required":
        missing = [name for name in value if name not in error.instance]
        return [(f"{path}.{name}", f"The field '{_field(path, name)}' is required.")
                for name in missing]
    if kind == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        extra = [name for name in error.instance if name not in allowed]
        return [(f"{path}.{name}", f"The field '{_field(path, name)}' is not a known field of "
                                   "this entity.") for name in extra]
    field = _field(path)
    template = _MESSAGES.get(kind)
    message = template(field, value) if template else \
        f"The field '{field}' is invalid: {error.message}"
    return [(path, message)]


_MESSAGES: dict[str, Any] = {
    "maxLength": lambda f, v: f"The field '{f}' must be a string with a maximum length of {v}.",
    "minLength": lambda f, v: f"The field '{f}' must be a string with a minimum length of {v}.",
    "type": lambda f, v: f"The field '{f}' must be of type {_type_name(v)}.",
    "enum": lambda f, v: f"The field '{f}' must be one of: "
                         f"{', '.join(str(x) for x in v if x is not None)}.",
    "format": lambda f, v: f"The field '{f}' is not a valid {v}.",
    "minimum": lambda f, v: f"The field '{f}' must be at least {v}.",
    "maximum": lambda f, v: f"The field '{f}' must be at most {v}.",
    "pattern": lambda f, v: f"The field '{f}' does not match the pattern {v}.",
}


def _path(root: str, parts: Any) -> str:
    path = root
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _field(path: str, name: str | None = None) -> str:
    """The field's path without the ``$[i]`` record prefix, e.g. ``companies[0].companyCode``."""
    inner = re.sub(r"^\$(\[\d+\])?\.?", "", path)
    if name is None:
        return inner or "body"
    return f"{inner}.{name}" if inner else name


def _type_name(value: Any) -> str:
    kinds = [value] if isinstance(value, str) else [v for v in value if v != "null"]
    return " or ".join(kinds)

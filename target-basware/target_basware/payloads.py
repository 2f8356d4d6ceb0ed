"""Contract record -> Basware entity: the nested shapes stream maps cannot build. Pure functions.

Field names follow Basware's P2P OpenAPI (basware-api.md §5, §7). `null` means "not sent" to
Basware, so empty optional values are left out rather than sent as "" or null.
"""

from __future__ import annotations

import hashlib
from typing import Any

LANGUAGE = "en-US"  # Basware wants an en-US translation on every named entity (ref §5)
VALID_FROM = "2000-01-01T00:00:00Z"
VALID_TO = "9999-12-31T00:00:00Z"
TAX_ID_SCHEME = "VAT"  # guess: Basware's identifiers[] scheme for a tax registration number


def _present(value: Any) -> bool:
    return value is not None and value != ""


def _compact(entity: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entity.items() if _present(value)}


def sub_code(external_code: str, suffix: str) -> str:
    """An externalCode for a sub-entity (address, coding row) within Basware's 36 characters."""
    code = f"{external_code}-{suffix}"
    if len(code) <= 36:
        return code
    digest = hashlib.sha1(external_code.encode()).hexdigest()[:8]
    return f"{external_code[:35 - len(suffix) - 9]}-{digest}-{suffix}"


def _names(name: str) -> list[dict[str, str]]:
    return [{"language": LANGUAGE, "translation": name}]


def _date_time(day: str | None) -> str | None:
    return f"{day}T00:00:00Z" if day else None


def vendor(record: dict[str, Any], source_system: str) -> dict[str, Any]:
    code = record["externalCode"]
    entity: dict[str, Any] = {
        "externalCode": code,
        "vendorCode": record["vendorCode"],
        "name": record["name"],
        "sourceSystem": record.get("sourceSystem") or source_system,
        "companies": [{"companyCode": record["companyCode"], "inheritToChildUnits": False}],
        "processingStatus": {"active": record["active"],
                             "paymentDenied": bool(record.get("paymentDenied"))},
    }
    if _present(record.get("paymentTermCode")):
        entity["paymentTerms"] = {"paymentTermCode": record["paymentTermCode"]}
    if _present(record.get("taxRegistrationNumber")):
        entity["identifiers"] = [{"id": record["taxRegistrationNumber"],
                                  "schemeId": TAX_ID_SCHEME}]
    address = _compact({
        "addressLine1": record.get("addressLine1"), "addressLine2": record.get("addressLine2"),
        "cityName": record.get("city"), "countrySubEntity": record.get("region"),
        "postalZone": record.get("postalCode"), "countryId": record.get("countryCode"),
    })
    if address:
        entity["addresses"] = [{"externalCode": sub_code(code, "ADDR"),
                                "name": record["name"][:200], "addressType": "PostalAddress",
                                "default": True, **address}]
    contact = _compact({"telephone": record.get("phone"), "email": record.get("email")})
    if contact or _present(record.get("contactName")):
        # Basware requires a contact name; an e-mail alone goes under the vendor's name.
        name = record.get("contactName") or record["name"][:200]
        entity["contacts"] = [{"name": name, "role": "PrimaryContact", **contact}]
    if _present(record.get("paymentMeansCode")):
        entity["paymentMeans"] = [_compact({"paymentMeansCode": record["paymentMeansCode"],
                                            "currencyCode": record.get("currencyCode"),
                                            "default": True})]
    return entity


def account(record: dict[str, Any], _source_system: str) -> dict[str, Any]:
    return {
        "externalCode": record["externalCode"],
        "accountCode": record["accountCode"],
        "accountNames": _names(record["name"]),
        "companies": [{"companyCode": record["companyCode"], "inherit": False,
                       "active": record["active"]}],
    }


def cost_center(record: dict[str, Any], _source_system: str) -> dict[str, Any]:
    return {
        "externalCode": record["externalCode"],
        "costCenterCode": record["costCenterCode"],
        "costCenterNames": _names(record["name"]),
        "companies": [{"companyCode": record["companyCode"], "active": record["active"]}],
    }


def payment_term(record: dict[str, Any], _source_system: str) -> dict[str, Any]:
    entity = {
        "externalCode": record["externalCode"],
        "paymentTermCode": record["paymentTermCode"],
        "paymentTermNames": _names(record["name"]),
        "validFrom": _date_time(record.get("validFrom")) or VALID_FROM,
        "validTo": _date_time(record.get("validTo")) or VALID_TO,
        "companies": [{"companyCode": record["companyCode"], "inherit": False,
                       "active": record["active"]}],
        "dueDateDays": record.get("dueDays"),
    }
    if record.get("cashDiscountPercent"):
        entity["cashDiscount"] = record["cashDiscountPercent"]
        entity["cashDueDateDays"] = record.get("cashDiscountDays") or 0
    return _compact(entity)


def tax_code(record: dict[str, Any], _source_system: str) -> dict[str, Any]:
    return {
        "externalCode": record["externalCode"],
        "taxCode": record["taxCode"],
        "taxCodeNames": _names(record["name"]),
        "taxPercentage": record["taxPercentage"],
        "companies": [{"companyCode": record["companyCode"], "inherit": False,
                       "active": record["active"]}],
    }


def matching_order(record: dict[str, Any], source_system: str) -> dict[str, Any]:
    return _compact({
        "externalCode": record["externalCode"],
        "orderNumber": record["orderNumber"],
        "sourceSystem": record.get("sourceSystem") or source_system,
        "companyCode": record["companyCode"],
        "organizationElementCode": record.get("organizationElementCode")
        or record["companyCode"],
        "currencyCode": record["currencyCode"],
        "supplierCode": record["supplierCode"],
        "paymentTermCode": record.get("paymentTermCode"),
        "created": _date_time(record.get("orderDate")),
        "description": record.get("description"),
        "isClosed": bool(record.get("isClosed")),
    })


def matching_order_line(record: dict[str, Any], _source_system: str) -> dict[str, Any]:
    code = record["externalCode"]
    entity = _compact({
        "externalCode": code,
        "orderExternalCode": record["orderExternalCode"],
        "lineNumber": str(record["lineNumber"]),
        "quantity": record["quantity"],
        "matchingMode": record.get("matchingMode") or "Standard",
        "netPrice": record.get("netPrice"),
        "netSum": record.get("netSum"),
        "productCode": record.get("productCode"),
        "productName": record.get("productName"),
        "uom": record.get("uom"),
        "isReceiptRequired": record.get("isReceiptRequired"),
        "isReceiptBasedMatching": record.get("isReceiptBasedMatching"),
        "isClosed": bool(record.get("isClosed")),
        # Best-fit matching needs isDeleted non-null (ref §7). A line removed in the source
        # is sent closed (isClosed), never deleted (target_basware.deletions).
        "isDeleted": False,
    })
    if record.get("goodsReceipts"):
        # Every receipt of the line: an upsert replaces the line's whole record in Basware.
        entity["goodsReceipts"] = [_compact(dict(entry)) for entry in record["goodsReceipts"]]
    if _present(record.get("accountCode")) or _present(record.get("costCenterCode")):
        # The default coding an invoice matched to this line inherits in Basware.
        entity["orderLineCoding"] = [_compact({
            "externalCode": sub_code(code, "C1"), "rowIndex": 1,
            "allocatedQuantity": record["quantity"], "netTotal": record.get("netSum"),
            "accountCode": record.get("accountCode"),
            "costCenterCode": record.get("costCenterCode"),
        })]
    return entity

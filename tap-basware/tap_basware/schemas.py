"""Typed schemas of the streams, with Basware's own field names (basware-api.md §9.3, §5, §6).

Minor Basware API versions only add optional fields, and fields that are null may be missing
altogether (reference §1), so nothing here is required except the keys.
"""

from __future__ import annotations

from singer_sdk import typing as th

# Strings that are dates (YYYY-MM-DD) in Basware stay strings: the exports mix date-only and
# date-time values in the same fields across tenants, and a string never fails conformance.
_S = th.StringType
_N = th.NumberType
_B = th.BooleanType
_I = th.IntegerType


def _props(*names: str, kind: type[th.JSONTypeHelper] = _S) -> list[th.Property]:
    return [th.Property(name, kind) for name in names]


def _numbered(prefix: str, count: int, kind: type[th.JSONTypeHelper]) -> list[th.Property]:
    return [th.Property(f"{prefix}{n}", kind) for n in range(1, count + 1)]


_AMOUNT_VARIANTS = ("", "Company", "Organization")

CODING_ROW = th.ObjectType(
    th.Property("externalCode", _S, description="Basware's id of the coding row"),
    th.Property("rowIndex", _I, description="Row number; may have gaps"),
    *_props("accountCode", "accountName", "costCenterCode", "costCenterName"),
    *_props("taxCode", "taxJurisdictionCode"),
    *_props("taxPercent", "taxPercent2", kind=_N),
    *_props(*(f"{base}{variant}" for base in ("taxSum", "taxSum2", "netTotal", "grossTotal")
              for variant in _AMOUNT_VARIANTS), kind=_N),
    *_props("projectCode", "projectSubCode", "internalOrderCode", "profitCenterCode",
            "businessUnitCode", "employeeCode", "vehicleNumber", "salesOrderCode",
            "customerCode", "fixedAssetCode", "workOrderCode"),
    *_numbered("dimCode", 10, _S),
    *_numbered("dimName", 10, _S),
    *_numbered("num", 5, _N),
    *_numbered("text", 10, _S),
    *_numbered("date", 5, _S),
    # Matching data: which PO line (and goods receipt) Basware matched this row to.
    th.Property("matchingType", _I, description="0 Regular, 1 Framework, 2 Return, 3 Service, "
                                                "4 Many, 5 Subsequent"),
    *_props("orderNumber", "orderLineNumber", "orderItemNumber", "goodsReceiptNumber",
            "goodsReceiptItemNumber", "deliveryNoteNumber", "orderLineUOM"),
    *_props("orderedQuantity", "receivedQuantity", "matchedQuantity", "matchedNetSum",
            "matchedGrossSum", "orderLineNetTotal", "orderLineGrossTotal",
            "conversionNumerator", "conversionDenominator", kind=_N),
    th.Property("closeOrder", _B),
)

INVOICE_LINE = th.ObjectType(
    th.Property("rowIndex", _I),
    *_props("productCode", "productName", "quantityUnit", "orderNumber", "orderRowNumber",
            "deliveryNoteNumber"),
    *_props("quantity", "netPrice", "grossPrice", "netSum", "grossSum", "taxPercent", "taxSum",
            kind=_N),
)

RESPONSE_HISTORY = th.ObjectType(
    *_props("externalCode", "responseMessage", "sourceSystem", "voucherNumber1",
            "voucherNumber2", "transferDate", "prebookDate", "paymentDate", "lastUpdated"),
    th.Property("success", _B),
    th.Property("paymentBlock", _B),
)

ACCOUNTING_DOCUMENT = th.PropertiesList(
    th.Property("invoiceId", _S, required=True, description="Basware's invoice id (the key)"),
    th.Property("bumid", _S, description="Basware business-document UUID"),
    th.Property("processingStatus", _S, description="WaitingForTransfer, TransferInProgress, …"),
    th.Property("p2pProcessingMode", _S),
    *_props("invoiceNumber", "invoiceDate", "companyCode", "companyName", "organizationCode",
            "organizationName", "organizationElementCode", "organizationElementName"),
    *_props("supplierCode", "supplierName", "supplierSourceSystemId"),
    *_props("currencyCode", "taxCode", "currencyCodeCompany", "currencyCodeOrganization",
            "exchangeRateBaseDate"),
    *_props(*(f"{base}{variant}" for base in ("netSum", "grossSum", "taxSum1", "taxSum2")
              for variant in _AMOUNT_VARIANTS), kind=_N),
    *_props("taxPercent1", "taxPercent2", "exchangeRateCompany", "exchangeRateOrganization",
            kind=_N),
    *_props("baseLineDate", "dueDate", "cashDate", "paymentMethod", "paymentTermCode",
            "paymentTermName", "paymentTermExternalCode", "referenceNumber", "supplierBankIBAN",
            "supplierBankBBAN", "supplierBankBIC", "supplierBankName", "paymentMessage"),
    *_props("cashPercent", "cashSum", kind=_N),
    th.Property("paymentBlock", _B),
    *_props("voucherNumber1", "voucherNumber2", "voucherDate", "accountingPeriod",
            "accountingGroup", "codingDate"),
    th.Property("prebooked", _B),
    *_props("invoiceTypeCode", "invoiceTypeName", "description", "referencePerson",
            "contractNumber"),
    th.Property("originService", _I),
    th.Property("orderNumbers", th.ArrayType(_S)),
    *_props("removalReason", "removalReasonComment", "clearingReferenceId",
            "clearingReferenceCountry", "clearingReferenceDate", "parentInvoiceBumId"),
    th.Property("removedBeforeTransfer", _B),
    th.Property("disputeInfo", th.ObjectType(
        th.Property("isDisputed", _B), th.Property("disputeReason", _S),
        th.Property("disputeDate", _S))),
    *_numbered("text", 60, _S),
    *_numbered("numeric", 30, _N),
    *_numbered("date", 10, _S),
    *_props("invoiceImageURL", "invoiceImageToken"),
    th.Property("codingRows", th.ArrayType(CODING_ROW),
                description="The invoice's coding (accounting) rows, nested as Basware exports"),
    th.Property("invoiceLines", th.ArrayType(INVOICE_LINE)),
    th.Property("attachments", th.ArrayType(th.ObjectType(
        *_props("externalCode", "category", "filename", "creationTime"),
        th.Property("isConfidential", _B)))),
    th.Property("transferParameters", th.ArrayType(th.ObjectType(
        th.Property("key", _S), th.Property("value", _S)))),
    th.Property("transferResponses", th.ArrayType(RESPONSE_HISTORY)),
    th.Property("prebookResponses", th.ArrayType(RESPONSE_HISTORY)),
    th.Property("paymentResponses", th.ArrayType(RESPONSE_HISTORY)),
    th.Property("lastUpdated", th.DateTimeType, description="Replication key (secondary cursor)"),
).to_dict()

_COMPANY_LINK = th.ObjectType(
    th.Property("companyCode", _S), th.Property("inheritToChildUnits", _B))

VENDOR = th.PropertiesList(
    th.Property("externalCode", _S, required=True),
    *_props("vendorCode", "name", "sourceSystem", "buvid", "vendorParent", "description",
            "supplierAssignedAccountId", "vendorClass"),
    th.Property("eligibleForSourcing", _B),
    th.Property("companies", th.ArrayType(_COMPANY_LINK)),
    th.Property("identifiers", th.ArrayType(th.ObjectType(
        th.Property("id", _S), th.Property("schemeId", _S), th.Property("defaultPartyId", _B)))),
    th.Property("addresses", th.ArrayType(th.ObjectType(
        *_props("externalCode", "name", "description", "addressType", "addressLine1",
                "addressLine2", "addressLine3", "cityName", "postalZone", "poBox",
                "streetName", "locality", "countrySubEntity", "countrySubEntityDescription",
                "countryId"),
        th.Property("default", _B)))),
    th.Property("contacts", th.ArrayType(th.ObjectType(
        *_props("name", "description", "telephone", "telefax", "email", "website", "role")))),
    th.Property("deliveryTerm", th.ObjectType(
        *_props("deliveryTermCode", "deliveryLocation", "description"))),
    th.Property("paymentMeans", th.ArrayType(th.ObjectType(
        *_props("paymentMeansCode", "description", "currencyCode"), th.Property("default", _B),
        th.Property("financialAccounts", th.ArrayType(th.ObjectType(
            *_props("type", "accountType", "accountId", "id", "financialInstitutionId",
                    "schemeId"))))))),
    th.Property("paymentTerms", th.ObjectType(*_props("paymentTermCode", "description"))),
    th.Property("orderingDetails", th.ObjectType(
        *_props("orderingFormat", "orderingMessageLanguage", "orderingLanguage", "orderEmail",
                "orderProcessType"),
        th.Property("minimumOrderAllowed", _N),
        *_props("isTaxable", "automaticallyReceiveOnInvoice", "automaticallyReceiveOnOrder",
                "hasActiveCatalog", "createOrderAutomatically", "deliverOrderAutomatically",
                "noFreeformItems", "sendToNetwork", kind=_B))),
    th.Property("processingStatus", th.ObjectType(
        th.Property("active", _B), th.Property("paymentDenied", _B))),
    th.Property("tags", th.ArrayType(th.ObjectType(*_props("name", "value", "tagGroup")))),
    th.Property("customFields", th.ArrayType(th.ObjectType(
        *_props("name", "value", "groupName")))),
    th.Property("lastUpdated", th.DateTimeType),
).to_dict()

_ITEM_ERROR = th.ObjectType(*_props("type", "message", "category"))

REQUEST_STATUS = th.PropertiesList(
    th.Property("requestId", _S, required=True, description="Basware's x-amzn-RequestId"),
    th.Property("entityType", _S, description="Vendor, TransferResponse, …"),
    *_props("entityVersion", "requestStatus", "changedBy", "operationType", "genericListKey"),
    th.Property("systems", th.ArrayType(th.ObjectType(
        *_props("system", "module", "systemStatus", "lastUpdated"),
        th.Property("items", th.ArrayType(th.ObjectType(
            *_props("externalCode", "parentExternalCode", "status"),
            th.Property("errors", th.ArrayType(_ITEM_ERROR)))))))),
    th.Property("lastUpdated", th.DateTimeType),
).to_dict()

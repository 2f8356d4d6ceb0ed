"""The entity model of the simulated Sage 300 Web API: resources, properties, verbs, ``$metadata``.

Property names come from reference §4 (confirmed or inferred there). Where §4 gives a field
without its type or an enum without its members, the choice here is a guess; the ones that
matter to a client:

- Enum type names and members (``Status``: Active/Inactive; AP ``OnHold``: NotOnHold/OnHold;
  AR ``OnHold``: No/Yes; ``BatchStatus``: Open/ReadyToPost/Posted/Deleted/PostInProgress;
  ``DocumentType``: Invoice/DebitNote/CreditNote; ``UpdateOperation``: Unspecified/Insert/
  Update/Delete; ``ProcessAllBatches``: Donotpostallbatches/Postallbatches). The real service
  puts enums in a separate ``...Models.Enums`` namespace; here they share the module schema.
- Entity type names (``Vendor``, ``Customer``, ``Terms``, ``Account``, ``SegmentCode``,
  ``PurchaseOrder``, ``DistributionCode``, ``InvoiceBatch``, ``PostedDocument``,
  ``PostInvoice``) and complex type names (``Invoice``, ``InvoiceDetail``...).
- ``AP/APPostedDocuments`` is keyed by ``VendorNumber`` + ``DocumentNumber`` (the APOBL key) and
  its amount fields (``OriginalDocumentAmount``, ``CurrentBalance``...) are invented names, as
  are its payment fields (``DateLastActivity``, ``LastPaymentDate``, ``LastPaymentNumber``,
  ``LastCheckNumber``, ``LastPaymentCode``) and every field of ``AP/APPostedPayments`` (keyed
  by vendor, document and ``PaymentNumber``); docs/sage-fields.md lists them.
- ``AP/APDistributionCodes`` carries ``Status`` and ``DateLastMaintained`` by analogy with other
  AP codes.
- Only the fields listed here exist; the real models have many more (e.g. 156 on ARCustomers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from xml.sax.saxutils import quoteattr

from .odata import (
    COLLECTION,
    DATE,
    EDM_BOOL,
    EDM_DATE,
    EDM_DECIMAL,
    EDM_INT,
    EDM_STRING,
    ENUM,
    NUMBER,
    EdmType,
    collection_type,
    enum_type,
)

ALL_VERBS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


def namespace(module: str) -> str:
    return f"Sage.CA.SBS.ERP.Sage300.{module}.WebApi.Models"


# Enum types, per module namespace (the same name may differ between modules, e.g. OnHold).
UPDATE_OPERATION = ("UpdateOperation", ("Unspecified", "Insert", "Update", "Delete"))
STATUS = ("Status", ("Inactive", "Active"))
YES_NO = ("YesNo", ("No", "Yes"))
AP_ON_HOLD = ("OnHold", ("NotOnHold", "OnHold"))
AR_ON_HOLD = ("OnHold", ("No", "Yes"))
DUPLICATE_CHECK = ("DuplicateCheck", ("None", "Warning", "Error"))
ACCOUNT_TYPE = ("AccountType", ("IncomeStatement", "BalanceSheet", "RetainedEarnings"))
NORMAL_BALANCE = ("NormalBalanceDRCR", ("Debit", "Credit"))
POST_TO_ACCOUNT = ("PostToAccount", ("Detail", "Consolidated"))
DUE_DATE_METHOD = ("DueDateCalculation", ("DaysFromInvoiceDate", "EndOfNextMonth",
                                          "DayOfNextMonth", "DaysFromDayOfNextMonth"))
DISCOUNT_BASE = ("DiscountBase", ("Included", "Excluded"))
BATCH_STATUS = ("BatchStatus", ("Open", "ReadyToPost", "Posted", "Deleted", "PostInProgress"))
BATCH_TYPE = ("BatchType", ("Entered", "Imported", "Generated", "Recurring", "External"))
DOCUMENT_TYPE = ("DocumentType", ("Invoice", "DebitNote", "CreditNote"))
PROCESS_ALL = ("ProcessAllBatches", ("Donotpostallbatches", "Postallbatches"))
TRANSACTION_TYPE = ("TransactionType", ("Sales", "Purchases"))


@dataclass
class Prop:
    name: str
    type: EdmType
    default: Any = None
    nullable: bool = True


@dataclass
class StructSpec:
    """An entity type or a complex (detail) type."""

    module: str
    type_name: str
    props: list[Prop]
    key: list[str] = field(default_factory=list)  # entity key, or the detail's own key
    details: dict[str, StructSpec] = field(default_factory=dict)  # collection prop -> type
    number_step: int = 0  # details keyed by a number the server assigns (20, 40, ...)

    @cached_property
    def full_name(self) -> str:
        return f"{namespace(self.module)}.{self.type_name}"

    @cached_property
    def types(self) -> dict[str, EdmType]:
        return {p.name: p.type for p in self.props}

    @cached_property
    def date_fields(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.props if p.type.kind == DATE)

    @cached_property
    def defaults(self) -> dict[str, Any]:
        return {p.name: ([] if p.type.kind == COLLECTION else p.default) for p in self.props}

    @cached_property
    def key_props(self) -> list[tuple[str, EdmType]]:
        return [(name, self.types[name]) for name in self.key]


@dataclass
class ResourceSpec:
    """One entity set: ``{module}/{name}`` with its verbs and behaviour flags."""

    module: str
    name: str
    entity: StructSpec
    verbs: frozenset[str]
    kind: str = "master"  # master, transaction, inquiry, process
    label: str = ""  # used in messages ("Vendor already exists.")
    uppercase_key: bool = False  # the view uppercases the key code on insert

    @property
    def path(self) -> str:
        return f"{self.module}/{self.name}"

    @property
    def maintained(self) -> bool:
        return "DateLastMaintained" in self.entity.types


# --------------------------------------------------------------------------------------------
# Property helpers
# --------------------------------------------------------------------------------------------

class _Builder:
    """Builds the props of one module, registering its enum types."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.enums: dict[str, EdmType] = {}

    def enum(self, spec: tuple[str, tuple[str, ...]]) -> EdmType:
        name, members = spec
        edm = enum_type(f"{namespace(self.module)}.{name}", *members)
        existing = self.enums.setdefault(name, edm)
        assert existing == edm, f"enum {name} defined twice differently in {self.module}"
        return edm

    def e(self, name: str, spec: tuple[str, tuple[str, ...]], default: str | None = None) -> Prop:
        return Prop(name, self.enum(spec), default if default is not None else spec[1][0], False)

    def update_operation(self) -> Prop:
        return self.e("UpdateOperation", UPDATE_OPERATION)


def s(name: str, default: str = "") -> Prop:
    return Prop(name, EDM_STRING, default)


def d(name: str) -> Prop:
    return Prop(name, EDM_DATE, None)


def n(name: str, default: float = 0) -> Prop:
    return Prop(name, EDM_DECIMAL, default, False)


def i(name: str, default: int = 0) -> Prop:
    return Prop(name, EDM_INT, default, False)


def flag(name: str, default: bool = False) -> Prop:
    return Prop(name, EDM_BOOL, default, False)


def c(name: str, element: str) -> Prop:
    return Prop(name, collection_type(element), None)


# --------------------------------------------------------------------------------------------
# Resources
# --------------------------------------------------------------------------------------------

def _ap(b: _Builder) -> list[ResourceSpec]:
    vendor = StructSpec("AP", "Vendor", [
        s("VendorNumber"), s("ShortName"), s("VendorName"), s("GroupCode"),
        b.e("Status", STATUS, "Active"), d("InactiveDate"), b.e("OnHold", AP_ON_HOLD),
        d("DateLastMaintained"), d("StartDate"),
        s("AddressLine1"), s("AddressLine2"), s("AddressLine3"), s("AddressLine4"),
        s("City"), s("StateProvince"), s("ZipPostalCode"), s("Country"),
        s("ContactName"), s("PhoneNumber"), s("FaxNumber"), s("Email"), s("WebSite"),
        s("CurrencyCode"), s("AccountSet"), s("RateType", "SP"), s("Terms"), s("TaxGroup"),
        *[s(f"TaxRegistrationCode{k}") for k in range(1, 6)],
        *[i(f"TaxClassCode{k}", 1) for k in range(1, 6)],
        s("BankCode"), s("PaymentCode"), s("DistributionSet"), s("DistributionCode"),
        b.e("DuplicateAmountCode", DUPLICATE_CHECK), b.e("DuplicateDateCode", DUPLICATE_CHECK),
        b.update_operation(),
    ], key=["VendorNumber"])
    schedule = StructSpec("AP", "TermsPaymentSchedule", [
        s("TermsCode"), i("PaymentNumber"), n("PercentageDue"), i("DueNumberOfDays"),
        n("DiscountPercent"), i("DiscountNumberOfDays"), b.update_operation(),
    ], key=["PaymentNumber"], number_step=1)
    terms = StructSpec("AP", "Terms", [
        s("TermsCode"), s("Description"), b.e("UsePaymentSchedule", YES_NO),
        b.e("CalculationBaseForDiscountwithTax", DISCOUNT_BASE),
        b.e("MethodOfCalcForDiscountDate", DUE_DATE_METHOD),
        b.e("MethodOfCalcForDueDate", DUE_DATE_METHOD),
        i("NumberOfPayments", 1), n("TotalPercentageDue", 100), d("DateLastMaintained"),
        b.update_operation(), c("TermsPaymentSchedule", "TermsPaymentSchedule"),
    ], key=["TermsCode"], details={"TermsPaymentSchedule": schedule})
    distribution = StructSpec("AP", "DistributionCode", [
        s("DistributionCodeKey"), s("Description"), s("GLAccount"),
        b.e("Discountable", YES_NO, "Yes"), b.e("Status", STATUS, "Active"), d("InactiveDate"),
        d("DateLastMaintained"), b.update_operation(),
    ], key=["DistributionCodeKey"])
    detail = StructSpec("AP", "InvoiceDetail", [
        n("BatchNumber"), i("EntryNumber"), i("LineNumber"), s("DistributionCode"),
        s("GLAccount"), n("DistributedAmount"), n("DistributedAmountBeforeTaxes"),
        s("DistributionDescription"), *[i(f"TaxClass{k}", 1) for k in range(1, 6)],
        *[n(f"TaxAmount{k}") for k in range(1, 6)], s("Comment"),
        b.update_operation(),
    ], key=["LineNumber"], number_step=20)
    optional = StructSpec("AP", "InvoiceOptionalField", [
        n("BatchNumber"), i("EntryNumber"), s("OptionalField"), s("Value"),
        b.update_operation(),
    ], key=["OptionalField"])
    payment = StructSpec("AP", "InvoicePaymentSchedule", [
        n("BatchNumber"), i("EntryNumber"), i("PaymentNumber"), d("DueDate"), n("AmountDue"),
        b.update_operation(),
    ], key=["PaymentNumber"], number_step=1)
    invoice = StructSpec("AP", "Invoice", [
        n("BatchNumber"), i("EntryNumber"), s("VendorNumber"), s("DocumentNumber"),
        b.e("DocumentType", DOCUMENT_TYPE), s("InvoiceDescription"), d("DocumentDate"),
        d("DueDate"), d("PostingDate"), s("CurrencyCode"), s("PONumber"), s("OrderNumber"),
        s("Terms"), s("TaxGroup"), *[s(f"TaxAuthority{k}") for k in range(1, 6)],
        *[i(f"TaxClass{k}", 1) for k in range(1, 6)], *[n(f"TaxAmount{k}") for k in range(1, 6)],
        n("TaxTotal"),
        n("DocumentTotalBeforeTaxes"), n("DocumentTotalIncludingTax"), i("NumberOfDetails"),
        b.update_operation(),
        c("InvoiceDetails", "InvoiceDetail"), c("InvoiceOptionalFields", "InvoiceOptionalField"),
        c("InvoicePaymentSchedules", "InvoicePaymentSchedule"),
    ], key=["EntryNumber"], number_step=1, details={
        "InvoiceDetails": detail, "InvoiceOptionalFields": optional,
        "InvoicePaymentSchedules": payment})
    batch = StructSpec("AP", "InvoiceBatch", [
        n("BatchNumber"), d("BatchDate"), s("Description"), b.e("BatchType", BATCH_TYPE),
        b.e("BatchStatus", BATCH_STATUS), i("NumberOfEntries"), n("BatchTotal"),
        i("LastEntryNumber"), i("PostingSequenceNumber"), i("NumberOfErrors"),
        d("DateLastEdited"), s("SourceApplication", "AP"), b.update_operation(),
        c("Invoices", "Invoice"),
    ], key=["BatchNumber"], details={"Invoices": invoice})
    posted = StructSpec("AP", "PostedDocument", [
        s("VendorNumber"), s("DocumentNumber"), b.e("DocumentType", DOCUMENT_TYPE),
        n("BatchNumber"), i("EntryNumber"), i("PostingSequenceNumber"), d("DocumentDate"),
        d("DueDate"), d("PostingDate"), s("CurrencyCode"), s("PONumber"), s("OrderNumber"),
        s("InvoiceDescription"), s("Terms"), n("DocumentTotalBeforeTaxes"), n("TaxTotal"),
        n("OriginalDocumentAmount"), n("CurrentBalance"), b.e("FullyPaid", YES_NO),
        d("DateLastActivity"), d("LastPaymentDate"), i("LastPaymentNumber"),
        s("LastCheckNumber"), s("LastPaymentCode"),
    ], key=["VendorNumber", "DocumentNumber"])
    # One row per payment applied to a posted document (APOBP-like); names invented.
    paid = StructSpec("AP", "PostedPayment", [
        s("VendorNumber"), s("DocumentNumber"), i("PaymentNumber"), s("CheckNumber"),
        d("PaymentDate"), n("PaymentAmount"), s("PaymentCode"), s("BankCode"),
        n("BatchNumber"), i("EntryNumber"),
    ], key=["VendorNumber", "DocumentNumber", "PaymentNumber"])
    post = StructSpec("AP", "PostInvoice", [
        s("ActionSelector"), b.e("ProcessAllBatches", PROCESS_ALL), n("FromBatch"), n("ToBatch"),
    ], key=["ActionSelector"])
    return [
        ResourceSpec("AP", "APVendors", vendor, ALL_VERBS, label="Vendor", uppercase_key=True),
        ResourceSpec("AP", "APTerms", terms, ALL_VERBS, label="Terms code", uppercase_key=True),
        ResourceSpec("AP", "APDistributionCodes", distribution, ALL_VERBS,
                     label="Distribution code", uppercase_key=True),
        ResourceSpec("AP", "APInvoiceBatches", batch, frozenset({"GET", "POST", "PATCH"}),
                     kind="transaction", label="Batch"),
        ResourceSpec("AP", "APPostedDocuments", posted, frozenset({"GET"}), kind="inquiry",
                     label="Document"),
        ResourceSpec("AP", "APPostedPayments", paid, frozenset({"GET"}), kind="inquiry",
                     label="Payment"),
        ResourceSpec("AP", "APPostInvoices", post, frozenset({"POST"}), kind="process"),
    ]


def _ar(b: _Builder) -> list[ResourceSpec]:
    customer = StructSpec("AR", "Customer", [
        s("CustomerNumber"), s("ShortName"), s("CustomerName"), s("GroupCode"),
        b.e("Status", STATUS, "Active"), d("InactiveDate"), b.e("OnHold", AR_ON_HOLD),
        d("DateLastMaintained"), d("StartDate"),
        s("AddressLine1"), s("AddressLine2"), s("AddressLine3"), s("AddressLine4"),
        s("City"), s("StateProvince"), s("ZipPostalCode"), s("Country"), s("ContactName"),
        s("PhoneNumber"), s("Email"), s("CurrencyCode"), s("AccountSet"), s("Terms"),
        s("TaxGroup"), b.update_operation(),
    ], key=["CustomerNumber"])
    return [ResourceSpec("AR", "ARCustomers", customer, ALL_VERBS, label="Customer",
                         uppercase_key=True)]


def _gl(b: _Builder) -> list[ResourceSpec]:
    optional = StructSpec("GL", "AccountOptionalField", [
        s("UnformattedAccount"), s("OptionalField"), s("Value"), b.update_operation(),
    ], key=["OptionalField"])
    account = StructSpec("GL", "Account", [
        s("UnformattedAccount"), s("AccountNumber"), s("Description"), d("DateCreated"),
        b.e("AccountType", ACCOUNT_TYPE), b.e("NormalBalanceDRCR", NORMAL_BALANCE),
        b.e("Status", STATUS, "Active"), b.e("PostToAccount", POST_TO_ACCOUNT),
        s("StructureCode"), *[s(f"AccountSegmentCode{k}") for k in range(1, 11)],
        s("AccountGroupCode"), b.e("Multicurrency", YES_NO), s("DefaultCurrencyCode"),
        b.e("ControlAccount", YES_NO), b.e("QuantitiesAllowed", YES_NO), s("UnitOfMeasure"),
        b.e("AllocationsAllowed", YES_NO), b.update_operation(),
        c("AccountOptionalFields", "AccountOptionalField"),
    ], key=["UnformattedAccount"], details={"AccountOptionalFields": optional})
    segment = StructSpec("GL", "SegmentCode", [
        s("SegmentNumber"), s("SegmentCodeKey"), s("SegmentCodeDescription"),
        b.update_operation(),
    ], key=["SegmentNumber", "SegmentCodeKey"])
    return [
        ResourceSpec("GL", "GLAccounts", account, ALL_VERBS, label="Account",
                     uppercase_key=True),
        ResourceSpec("GL", "GLSegmentCodes", segment, ALL_VERBS, label="Segment code",
                     uppercase_key=True),
    ]


def _po(b: _Builder) -> list[ResourceSpec]:
    line = StructSpec("PO", "PurchaseOrderLine", [
        n("PurchaseOrderSequenceKey"), n("LineNumber"), s("ItemNumber"), s("ItemDescription"),
        s("Location"), s("UnitOfMeasure"), n("QuantityOrdered"), n("QuantityReceived"),
        n("UnitCost"), n("ExtendedCost"), s("ExpenseAccount"), b.e("Completed", YES_NO),
        b.e("StockItem", YES_NO), b.update_operation(),
    ], key=["LineNumber"], number_step=1000)
    order = StructSpec("PO", "PurchaseOrder", [
        n("PurchaseOrderSequenceKey"), s("PurchaseOrderNumber"), s("Vendor"), s("VendorName"),
        d("PurchaseOrderDate"), d("DateLastMaintained"), s("Description"), s("Reference"),
        s("Comment"), s("CurrencyCode"), s("TermsCode"), b.e("Completed", YES_NO),
        n("ExtendedCostTotal"), b.update_operation(),
        c("PurchaseOrderLines", "PurchaseOrderLine"),
    ], key=["PurchaseOrderSequenceKey"], details={"PurchaseOrderLines": line})
    # PO receipts as PO/POGetReceipts reads them (GET only since the 2022.2 SDK; POReceipts is
    # POST only). Confirmed by Sage's POST sample: ReceiptDate, Vendor, PurchaseOrderNumber,
    # Description, Reference, ReceiptLine2s with LineNumber, ItemNumber, Location,
    # UnitOfMeasure, QuantityReceived, UnitCost. Invented (docs/sage-fields.md):
    # ReceiptSequenceKey, ReceiptNumber, PurchaseOrderSequenceKey, DateLastMaintained,
    # Cancelled on the receipt; PurchaseOrderLineNumber on its lines.
    receipt_line = StructSpec("PO", "ReceiptLine2", [
        n("ReceiptSequenceKey"), n("LineNumber"), n("PurchaseOrderLineNumber"),
        s("ItemNumber"), s("Location"), s("UnitOfMeasure"), n("QuantityReceived"),
        n("UnitCost"),
    ], key=["LineNumber"], number_step=1000)
    receipt = StructSpec("PO", "Receipt", [
        n("ReceiptSequenceKey"), s("ReceiptNumber"), d("ReceiptDate"), s("Vendor"),
        s("PurchaseOrderNumber"), n("PurchaseOrderSequenceKey"), s("Description"),
        s("Reference"), b.e("Cancelled", YES_NO), d("DateLastMaintained"),
        c("ReceiptLine2s", "ReceiptLine2"),
    ], key=["ReceiptSequenceKey"], details={"ReceiptLine2s": receipt_line})
    return [ResourceSpec("PO", "POPurchaseOrders", order, frozenset({"GET", "POST"}),
                         kind="transaction", label="Purchase order"),
            ResourceSpec("PO", "POGetReceipts", receipt, frozenset({"GET"}), kind="inquiry",
                         label="Receipt")]


def _tx(b: _Builder) -> list[ResourceSpec]:
    # Tax services (TX0002 authorities, TX0003 groups, TX0004 rates), GET only (reference
    # §1.2). Group fields as go-sage300/iTaxSuiteV2 read them; the authority and rate fields
    # (Description, BuyerClass, ItemRate1..10, LastMaintained) are inferred from the TX views
    # (docs/sage-fields.md).
    authority = StructSpec("TX", "TaxAuthority", [
        s("TaxAuthority"), s("Description"), s("TaxReportingCurrency"), d("LastMaintained"),
    ], key=["TaxAuthority"])
    group = StructSpec("TX", "TaxGroup", [
        s("TaxGroupKey"), b.e("TransactionType", TRANSACTION_TYPE), s("Description"),
        s("TaxReportingCurrency"), *[s(f"TaxAuthority{k}") for k in range(1, 6)],
        *[flag(f"Taxable{k}") for k in range(1, 6)], d("LastMaintained"),
    ], key=["TaxGroupKey", "TransactionType"])
    rate = StructSpec("TX", "TaxRate", [
        s("TaxAuthority"), b.e("TransactionType", TRANSACTION_TYPE), i("BuyerClass", 1),
        *[n(f"ItemRate{k}") for k in range(1, 11)], d("LastMaintained"),
    ], key=["TaxAuthority", "TransactionType", "BuyerClass"])
    get = frozenset({"GET"})
    return [ResourceSpec("TX", "TXTaxAuthorities", authority, get, kind="inquiry",
                         label="Tax authority"),
            ResourceSpec("TX", "TXTaxGroups", group, get, kind="inquiry", label="Tax group"),
            ResourceSpec("TX", "TXTaxRates", rate, get, kind="inquiry", label="Tax rate")]


@dataclass
class Module:
    name: str
    resources: dict[str, ResourceSpec]
    enums: dict[str, EdmType]

    @cached_property
    def metadata_xml(self) -> str:
        return build_metadata(self)


def build_modules() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for name, factory in (("AP", _ap), ("AR", _ar), ("GL", _gl), ("PO", _po), ("TX", _tx)):
        builder = _Builder(name)
        resources = {spec.name: spec for spec in factory(builder)}
        modules[name] = Module(name, resources, builder.enums)
    return modules


MODULES = build_modules()


# --------------------------------------------------------------------------------------------
# $metadata
# --------------------------------------------------------------------------------------------

def _struct_types(module: Module) -> list[tuple[StructSpec, bool]]:
    """Every entity and complex type of the module, entities flagged True, once each."""
    seen: dict[str, tuple[StructSpec, bool]] = {}

    def visit(spec: StructSpec, entity: bool) -> None:
        if spec.type_name in seen:
            return
        seen[spec.type_name] = (spec, entity)
        for child in spec.details.values():
            visit(child, False)
    for resource in module.resources.values():
        visit(resource.entity, True)
    return list(seen.values())


def _property_xml(prop: Prop, spec: StructSpec, ns: str) -> str:
    kind = prop.type.kind
    if kind == COLLECTION:
        element = spec.details[prop.name].type_name
        return f'<Property Name="{prop.name}" Type="Collection({ns}.{element})" />'
    attrs = ""
    if prop.type.kind == NUMBER and not prop.type.integer:
        attrs = ' Precision="19" Scale="Variable"'
    nullable = "true" if (prop.nullable and prop.name not in spec.key) else "false"
    type_name = prop.type.name
    if kind == ENUM:
        nullable = "false"
    return f'<Property Name="{prop.name}" Type="{type_name}" Nullable="{nullable}"{attrs} />'


def build_metadata(module: Module) -> str:
    """The module's EDMX v4 document: entity types with keys, details as complex types."""
    ns = namespace(module.name)
    lines = ['<?xml version="1.0" encoding="utf-8"?>',
             '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
             "<edmx:DataServices>",
             f'<Schema Namespace="{ns}" xmlns="http://docs.oasis-open.org/odata/ns/edm">']
    for spec, entity in _struct_types(module):
        tag = "EntityType" if entity else "ComplexType"
        lines.append(f'<{tag} Name="{spec.type_name}">')
        if entity:
            refs = "".join(f'<PropertyRef Name="{k}" />' for k in spec.key)
            lines.append(f"<Key>{refs}</Key>")
        lines.extend(_property_xml(prop, spec, ns) for prop in spec.props)
        lines.append(f"</{tag}>")
    for name, edm in sorted(module.enums.items()):
        lines.append(f'<EnumType Name="{name}">')
        lines.extend(f"<Member Name={quoteattr(member)} Value=\"{value}\" />"
                     for value, member in enumerate(edm.members))
        lines.append("</EnumType>")
    lines.append("</Schema>")
    lines.append('<Schema Namespace="Default" xmlns="http://docs.oasis-open.org/odata/ns/edm">')
    lines.append('<EntityContainer Name="Container">')
    lines.extend(f'<EntitySet Name="{r.name}" EntityType="{ns}.{r.entity.type_name}" />'
                 for r in module.resources.values())
    lines.extend(["</EntityContainer>", "</Schema>", "</edmx:DataServices>", "</edmx:Edmx>"])
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------------------------
#: Installs differ: an older one lacks some fields and names others differently. ``older`` is
#: invented for tests (no public Sage material lists what each version has): it has no vendor
#: fax number or web site, no description on invoice distribution lines, and calls the PO
#: line's expense account ``GLExpenseAccount`` (the POPORL view field "G/L Expense Account").
#: Keys: ``MODULE/Resource`` -> property paths from the entity down through details.
VERSION_MISSING: dict[str, dict[str, list[tuple[str, ...]]]] = {
    "current": {},
    "older": {
        "AP/APVendors": [("FaxNumber",), ("WebSite",)],
        "AP/APInvoiceBatches": [("Invoices", "InvoiceDetails", "DistributionDescription")],
    },
}
VERSION_RENAMED: dict[str, dict[str, dict[tuple[str, ...], str]]] = {
    "current": {},
    "older": {"PO/POPurchaseOrders": {("PurchaseOrderLines", "ExpenseAccount"):
                                      "GLExpenseAccount"}},
}
#: Entity sets an install of a version does not offer at all. ``older`` predates the 2022.2
#: SDK, which split PO receipts into POReceipts (POST) and POGetReceipts (GET): it has no
#: POGetReceipts (reference: its reads went through POReceipts, not simulated here).
VERSION_ABSENT: dict[str, frozenset[str]] = {
    "current": frozenset(),
    "older": frozenset({"PO/POGetReceipts"}),
}
VERSIONS = tuple(VERSION_MISSING)


def _adjusted(spec: StructSpec, missing: list[tuple[str, ...]],
              renamed: dict[tuple[str, ...], str]) -> StructSpec:
    """``spec`` without the ``missing`` paths and with the ``renamed`` ones (a new spec, the
    shared one untouched)."""
    gone = {path[0] for path in missing if len(path) == 1}
    names = {path[0]: name for path, name in renamed.items() if len(path) == 1}
    props = [Prop(names.get(p.name, p.name), p.type, p.default, p.nullable)
             for p in spec.props if p.name not in gone]
    details = {}
    for name, child in spec.details.items():
        deeper = [path[1:] for path in missing if len(path) > 1 and path[0] == name]
        moved = {path[1:]: new for path, new in renamed.items()
                 if len(path) > 1 and path[0] == name}
        details[name] = _adjusted(child, deeper, moved) if deeper or moved else child
    return StructSpec(spec.module, spec.type_name, props,
                      [names.get(k, k) for k in spec.key], details, spec.number_step)


def modules_of(version: str) -> dict[str, Module]:
    """The modules an install of ``version`` serves (``current``: :data:`MODULES`)."""
    missing, renamed = VERSION_MISSING[version], VERSION_RENAMED[version]
    absent = VERSION_ABSENT[version]
    if not missing and not renamed and not absent:
        return MODULES
    modules = {}
    for name, module in MODULES.items():
        resources = {}
        for set_name, spec in module.resources.items():
            path = spec.path
            if path in absent:
                continue
            if path in missing or path in renamed:
                entity = _adjusted(spec.entity, missing.get(path, []), renamed.get(path, {}))
                spec = ResourceSpec(spec.module, spec.name, entity, spec.verbs, spec.kind,
                                    spec.label, spec.uppercase_key)
            resources[set_name] = spec
        modules[name] = Module(name, resources, module.enums)
    return modules


def rename_record(record: dict[str, Any], path: tuple[str, ...], new: str) -> None:
    """Move the value at ``path`` (through detail rows) to the name ``new``, in place."""
    head, *rest = path
    if not rest:
        if head in record:
            record[new] = record.pop(head)
        return
    for row in record.get(head) or []:
        rename_record(row, tuple(rest), new)

"""Seed data: the distributor of the product brief, as both systems hold it.

One deterministic generator feeds both simulators, so the approved invoices waiting in Basware
reference vendors, purchase orders and PO lines that really exist in Sage 300.

- ``demo``: two companies (SAMINC, US warehouses; SAMLTD, Canada), tens of vendors each,
  hundreds of POs with lines, a GL chart whose second segment is the cost center (department),
  payment terms, and approved invoices in Basware: PO-matched, non-PO, a credit note and one
  coded to a GL account Sage does not have. A few SAMLTD records are ones Basware's P2P
  refuses (see :data:`P2P_REFUSALS`; also in ``invoices-N``, not in the vendor volumes
  below, whose benchmarks count requests against a minimum that assumes every reference a
  record makes arrives).
- ``large``: the demo plus 100,000 vendors and 20,000 open POs with 100,000 lines in SAMINC.
- an integer N: the demo plus N vendors and N/5 POs with N lines in SAMINC.
- ``invoices-N``: the demo plus N more approved invoices waiting in Basware's export queue,
  alternating between the two companies, each valid for Sage (see :func:`_bulk_invoices`).

Sage records use Sage 300 Web API field names, with dates already in the API's date-only
``YYYY-MM-DDT00:00:00Z`` form. Basware invoices use the accountingDocuments field names.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

SAGE_USER = "WEBAPI"
SAGE_PASSWORD = "Sandbox-Pass1"  # mixed case on purpose: legacy installs expect it UPPERCASED
BASWARE_CLIENT_ID = "ml-connector-sandbox"
BASWARE_CLIENT_SECRET = "sandbox-client-secret-7d41e2"  # noqa: S105 - simulator demo credential
BASWARE_SCOPES = (
    "vendors.read vendors.write accounts.read accounts.write costCenters.read costCenters.write "
    "paymentTerms.read paymentTerms.write taxCodes.read taxCodes.write "
    "matchingOrders.read matchingOrders.write "
    "matchingOrderLines.read matchingOrderLines.write accountingDocuments.read "
    "accountingDocuments.write requestStatus.read requestStatus.write subscriptions.read "
    "subscriptions.write subscriptions.delete tasks.read"
)
SOURCE_SYSTEM = "SAGE300"

# Accounts are ACCT-DEPT: the natural account, then the department, which is the cost center.
COST_CENTER_SEGMENT = "000002"
DEPARTMENTS = {"000": "Company-wide", "100": "Administration", "200": "Warehouse East",
               "300": "Warehouse West", "400": "Sales", "900": "Discontinued operations"}
BALANCE_SHEET = {"1000": "Cash", "1200": "Inventory", "2000": "Accounts payable control",
                 "2100": "Sales tax payable"}
EXPENSES = {"5000": "Cost of goods sold", "6100": "Office supplies", "6200": "Freight in",
            "6300": "Repairs and maintenance", "6400": "Utilities", "6500": "IT services",
            "6600": "Travel", "6700": "Professional fees"}
INACTIVE_ACCOUNTS = {"6100900", "6600900"}
UNKNOWN_ACCOUNT = "6999-200"  # coded on one Basware invoice; Sage has no such account

TERMS = [  # code, description, due days, discount percent, discount days
    ("N15", "Net 15 days", 15, 0, 0), ("N30", "Net 30 days", 30, 0, 0),
    ("N45", "Net 45 days", 45, 0, 0), ("N60", "Net 60 days", 60, 0, 0),
    ("2N30", "2% 10, net 30", 30, 2, 10), ("COD", "Cash on delivery", 0, 0, 0),
]

_NAME_A = ["Acme", "Northwind", "Summit", "Harbor", "Pioneer", "Cascade", "Granite", "Maple",
           "Silverline", "Redwood", "Bluewater", "Ironbridge", "Prairie", "Atlas", "Evergreen",
           "Keystone", "Lakeside", "Frontier", "Polaris", "Riverside"]
_NAME_B = ["Supplies", "Logistics", "Packaging", "Industrial", "Freight", "Electric", "Office",
           "Tooling", "Janitorial", "Fasteners", "Hydraulics", "IT Services", "Pallets",
           "Safety", "Printing"]
_NAME_C = ["Inc.", "Ltd.", "Co.", "Corp.", "LLC", "Group"]
_CITIES = {"SAMINC": [("Seattle", "WA", "98101"), ("Portland", "OR", "97201"),
                      ("Denver", "CO", "80202"), ("Chicago", "IL", "60601")],
           "SAMLTD": [("Vancouver", "BC", "V6B 1A1"), ("Calgary", "AB", "T2P 1J9"),
                      ("Toronto", "ON", "M5H 2N2")]}
_ITEMS = [("FR-1020", "Stretch film 18in"), ("PK-2040", "Corrugated box 24x18"),
          ("EL-3001", "LED high-bay fixture"), ("SF-4410", "Safety gloves, box of 100"),
          ("HY-5120", "Hydraulic hose 3/8in"), ("FS-6001", "Hex bolt M10, box"),
          ("OF-7002", "Copy paper, case"), ("IT-8100", "Barcode scanner"),
          ("JN-9003", "Floor cleaner 5gal"), ("PL-1101", "Wood pallet 48x40")]


@dataclass(frozen=True)
class Company:
    sage_id: str  # Sage 300 company (org) id
    basware_code: str  # the company code Basware knows it by
    name: str
    currency: str
    country: str
    account_set: str


COMPANIES = [
    Company("SAMINC", "US01", "Sample Distributor Inc.", "USD", "USA", "USA"),
    Company("SAMLTD", "CA01", "Sample Distributor Ltd.", "CAD", "Canada", "CAN"),
]


@dataclass
class Dataset:
    companies: list[Company]
    # company id -> "MODULE/Resource" -> records in key order
    sage: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    basware_invoices: list[dict[str, Any]] = field(default_factory=list)

    def company(self, sage_id: str) -> Company:
        return next(c for c in self.companies if c.sage_id == sage_id)


def sage_date(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


INVOICES_PREFIX = "invoices-"


def parse_data(data: str) -> tuple[int, int]:
    """(extra vendors, extra invoices) for a data name; ValueError names the valid forms."""
    extra = {"demo": 0, "large": 100_000}.get(data)
    if extra is not None:
        return extra, 0
    try:
        if data.startswith(INVOICES_PREFIX):
            count = int(data[len(INVOICES_PREFIX):])
            if count >= 0:
                return 0, count
        elif int(data) >= 0:
            return int(data), 0
    except ValueError:
        pass
    raise ValueError(f"unknown data {data!r}: demo, large, a vendor count (e.g. 1000) or "
                     f"{INVOICES_PREFIX}N (e.g. {INVOICES_PREFIX}1000)")


def build_dataset(data: str = "demo", seed: int = 0) -> Dataset:
    """Build the seed data. ``data`` is ``demo``, ``large``, a vendor count or ``invoices-N``."""
    extra, invoice_count = parse_data(data)
    rng = random.Random(seed)
    dataset = Dataset(companies=list(COMPANIES))
    for company in COMPANIES:
        dataset.sage[company.sage_id] = _company_records(rng, company)
    if extra:
        _add_volume(rng, dataset.sage["SAMINC"], COMPANIES[0], extra)
    dataset.basware_invoices = _invoices(rng, dataset)
    if invoice_count:
        # Drawn after everything else, so the demo part is the same as in plain ``demo``.
        dataset.basware_invoices += _bulk_invoices(rng, dataset, invoice_count)
    if not extra:
        _add_p2p_refusals(dataset.sage["SAMLTD"])
    for company in COMPANIES:
        _add_receipts(dataset.sage[company.sage_id], company)
    return dataset


# -- PO receipts (PO/POGetReceipts) ----------------------------------------------------------
#
# Goods received against three open POs per company, with no random draw (the rest of the
# data is the same as without them): the first open PO received in full (every line), the
# second partially (its first line, half the quantity), the third received and then the
# receipt cancelled (Cancelled=Yes). Maintained the day each PO was.

def receipt_plan(orders: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(kind, order) of the demo receipts: full, partial, cancelled, in that order."""
    open_orders = [o for o in orders if o["Completed"] == "No"][:3]
    return list(zip(("full", "partial", "cancelled"), open_orders, strict=False))


def _add_receipts(records: dict[str, list[dict[str, Any]]], company: Company) -> None:
    receipts = []
    prefix = "1" if company.sage_id == "SAMINC" else "2"
    for index, (kind, order) in enumerate(receipt_plan(records["PO/POPurchaseOrders"])):
        sequence = 50001 + index
        po_lines = order["PurchaseOrderLines"] if kind == "full" else \
            order["PurchaseOrderLines"][:1]
        lines = [{
            "ReceiptSequenceKey": sequence, "LineNumber": 1000 * (n + 1),
            "PurchaseOrderLineNumber": line["LineNumber"], "ItemNumber": line["ItemNumber"],
            "Location": line["Location"], "UnitOfMeasure": line["UnitOfMeasure"],
            "QuantityReceived": (max(1, line["QuantityOrdered"] // 2) if kind == "partial"
                                 else line["QuantityOrdered"]),
            "UnitCost": line["UnitCost"],
        } for n, line in enumerate(po_lines)]
        receipts.append({
            "ReceiptSequenceKey": sequence, "ReceiptNumber": f"RC{prefix}{index + 1:05d}",
            "ReceiptDate": order["DateLastMaintained"], "Vendor": order["Vendor"],
            "PurchaseOrderNumber": order["PurchaseOrderNumber"],
            "PurchaseOrderSequenceKey": order["PurchaseOrderSequenceKey"],
            "Description": f"Receipt for {order['PurchaseOrderNumber']}",
            "Reference": order["Reference"], "Cancelled": "Yes" if kind == "cancelled" else "No",
            "DateLastMaintained": order["DateLastMaintained"], "ReceiptLine2s": lines,
        })
    records["PO/POGetReceipts"] = receipts


# -- records Basware's P2P refuses ---------------------------------------------------------
#
# Valid in Sage 300, refused by P2P when the connector imports them into Basware (the Basware
# simulator's active currencies are USD and CAD; see basware_state's business rules). Added to
# SAMLTD after every random draw, with no draw of their own, so the rest of the data (and
# every invoice) is the same as without them; maintained long before the newest records, so
# no incremental read's bookmark day re-reads them.
FOREIGN_CURRENCY = "EUR"  # not active in the Basware tenant
EUR_VENDOR = "1600"  # paid in EUR by wire transfer
EUR_PO = "PO200161"  # the EUR vendor's open PO, in EUR, two lines
LAPSED_TERMS = "N90"  # a terms code Sage no longer has (removed after vendors were set up)
LAPSED_TERMS_VENDOR = "1610"  # still on those terms
#: What P2P answers for each refused record, by Basware entity type and the connector's
#: externalCode (<Sage company>-<Sage key>), in the simulator's words.
P2P_REFUSALS: dict[tuple[str, str], list[str]] = {
    ("Vendor", f"SAMLTD-{EUR_VENDOR}"): [f"Currency {FOREIGN_CURRENCY} is not active in P2P"],
    ("Vendor", f"SAMLTD-{LAPSED_TERMS_VENDOR}"): [
        f"Payment term {LAPSED_TERMS} does not exist for company CA01"],
    ("MatchingOrder", f"SAMLTD-{EUR_PO}"): [
        f"Supplier {EUR_VENDOR} does not exist for company CA01",
        f"Currency {FOREIGN_CURRENCY} is not active in P2P"],
    **{("MatchingOrderLine", f"SAMLTD-{EUR_PO}-{line}"): [
        f"Matching order with externalCode SAMLTD-{EUR_PO} does not exist"]
       for line in (1000, 2000)},
}


def _add_p2p_refusals(records: dict[str, list[dict[str, Any]]]) -> None:
    maintained = sage_date(date(2025, 5, 20))
    vendors = records["AP/APVendors"]
    template = {
        "GroupCode": "INV", "Status": "Active", "InactiveDate": None, "OnHold": "NotOnHold",
        "DateLastMaintained": maintained, "StartDate": sage_date(date(2021, 3, 1)),
        "AddressLine2": "", "City": "Toronto", "StateProvince": "ON", "ZipPostalCode": "M5H 2N2",
        "Country": "Canada", "CurrencyCode": "CAD", "AccountSet": "CAN", "TaxGroup": "BCTAX",
        "DuplicateAmountCode": "None", "DuplicateDateCode": "None",
    }
    vendors.append({
        **template, "VendorNumber": EUR_VENDOR, "ShortName": "RHEINLAND",
        "VendorName": "Rheinland Industrietechnik GmbH", "AddressLine1": "200 Bay St, Suite 1400",
        "ContactName": "Jonas Becker", "PhoneNumber": "4165550190",
        "Email": f"ap@rheinland{EUR_VENDOR}.example.com", "CurrencyCode": FOREIGN_CURRENCY,
        "PaymentCode": "WIRE", "Terms": "N30", "TaxRegistrationCode1": "812345670",
    })
    vendors.append({
        **template, "VendorNumber": LAPSED_TERMS_VENDOR, "ShortName": "LAKESHORE",
        "VendorName": "Lakeshore Pallet Recovery Ltd.", "AddressLine1": "88 Commissioners St",
        "ContactName": "Dana Fox", "PhoneNumber": "4165550127",
        "Email": f"ap@lakeshore{LAPSED_TERMS_VENDOR}.example.com", "Terms": LAPSED_TERMS,
        "TaxRegistrationCode1": "823456781",
    })
    orders = records["PO/POPurchaseOrders"]
    sequence = orders[-1]["PurchaseOrderSequenceKey"] + 1
    lines = [{
        "PurchaseOrderSequenceKey": sequence, "LineNumber": number, "ItemNumber": item,
        "ItemDescription": description, "Location": "EAST", "UnitOfMeasure": "Each",
        "QuantityOrdered": quantity, "QuantityReceived": 0, "UnitCost": cost,
        "ExtendedCost": round(quantity * cost, 2), "ExpenseAccount": "6300200",
        "Completed": "No", "StockItem": stock_item(item),
    } for number, item, description, quantity, cost in (
        (1000, "HY-5120", "Hydraulic hose 3/8in", 20, 38.5),
        (2000, "FS-6001", "Hex bolt M10, box", 50, 12.8))]
    ordered = date(2025, 9, 3)
    orders.append({
        "PurchaseOrderSequenceKey": sequence, "PurchaseOrderNumber": EUR_PO,
        "Vendor": EUR_VENDOR, "VendorName": vendors[-2]["VendorName"],
        "PurchaseOrderDate": sage_date(ordered), "DateLastMaintained": sage_date(ordered),
        "Description": f"Spare parts {EUR_PO}", "Reference": f"REQ-{sequence}",
        "CurrencyCode": FOREIGN_CURRENCY, "TermsCode": "N30", "Completed": "No",
        "ExtendedCostTotal": round(sum(line["ExtendedCost"] for line in lines), 2),
        "PurchaseOrderLines": lines,
    })


def _day(rng: random.Random, start: date = date(2025, 6, 1), span: int = 500) -> date:
    return start + timedelta(days=rng.randrange(span))


def _company_records(rng: random.Random, company: Company) -> dict[str, list[dict[str, Any]]]:
    vendors = [_vendor(rng, company, 1200 + 10 * i, i) for i in range(32)]
    accounts = _gl_accounts(company)
    active_vendors = [v for v in vendors if v["Status"] == "Active"]
    prefix = "1" if company.sage_id == "SAMINC" else "2"
    orders = [_purchase_order(rng, company, 10001 + i, f"PO{prefix}{i + 1:05d}",
                              rng.choice(active_vendors), i)
              for i in range(160)]
    return {
        "AP/APVendors": vendors,
        "AP/APTerms": [_terms(*t) for t in TERMS],
        "GL/GLAccounts": accounts,
        "GL/GLSegmentCodes": _segment_codes(),
        "PO/POPurchaseOrders": orders,
        "AR/ARCustomers": [_customer(rng, company, i) for i in range(20)],
        "AP/APInvoiceBatches": [],
        # Added for the Sage 300 simulator; no RNG draws, so the rest of the data is unchanged.
        "AP/APDistributionCodes": _distribution_codes(),
        "AP/APPostedDocuments": _posted_history(company, active_vendors),
        **_tax_services(company),
    }


# -- tax services (TX/TXTaxAuthorities, TXTaxGroups, TXTaxRates) -----------------------------
#
# One tax group per company with two authorities, as Sage sets them up: item class 1 taxable
# and 2 exempt; buyer (vendor) class 1 taxable and 2 exempt. Every vendor is in the group at
# class 1. No random draws. Invoice lines are coded in Basware with the connector's flat codes
# (ml_connector_core.tax_codes): expenses taxable everywhere, goods bought for resale exempt
# from the sales taxes (WA sales tax, BC PST) but not from Canada's GST.
TAX_SETUP: dict[str, tuple[str, str, list[tuple[str, str, float]]]] = {
    "SAMINC": ("WATAX", "Washington sales tax", [
        ("WASTATE", "Washington State sales tax", 6.5),
        ("KINGCO", "King County and Seattle local tax", 3.6)]),
    "SAMLTD": ("BCTAX", "British Columbia GST and PST", [
        ("GST", "Goods and Services Tax", 5.0),
        ("BCPST", "BC Provincial Sales Tax", 7.0)]),
}
TAX_MAINTAINED = date(2024, 1, 2)


def _tax_services(company: Company) -> dict[str, list[dict[str, Any]]]:
    group, description, authorities = TAX_SETUP[company.sage_id]
    maintained = sage_date(TAX_MAINTAINED)
    groups = [{
        "TaxGroupKey": group, "TransactionType": kind, "Description": description,
        "TaxReportingCurrency": company.currency, "LastMaintained": maintained,
        **{f"TaxAuthority{n}": code for n, (code, _, _) in enumerate(authorities, start=1)},
        **{f"Taxable{n}": False for n in range(1, len(authorities) + 1)},
    } for kind in ("Sales", "Purchases")]
    rates = [{
        "TaxAuthority": code, "TransactionType": kind, "BuyerClass": buyer,
        "ItemRate1": rate if buyer == 1 else 0.0, "LastMaintained": maintained,
    } for code, _, rate in authorities for kind in ("Sales", "Purchases") for buyer in (1, 2)]
    return {
        "TX/TXTaxAuthorities": [{"TaxAuthority": code, "Description": name,
                                 "TaxReportingCurrency": company.currency,
                                 "LastMaintained": maintained}
                                for code, name, _ in sorted(authorities)],
        "TX/TXTaxGroups": groups,
        "TX/TXTaxRates": sorted(rates, key=lambda r: (r["TaxAuthority"], r["TransactionType"],
                                                      r["BuyerClass"])),
    }


def tax_code(company: Company, item_class: int) -> tuple[str, float]:
    """(Basware tax code, percent) of the company's group with one item class everywhere."""
    group, _, authorities = TAX_SETUP[company.sage_id]
    classes = [item_class] * len(authorities)
    return (f"{group}-" + ".".join(map(str, classes)),
            sum(rate for _, _, rate in authorities) if item_class == 1 else 0.0)


def expense_tax(company: Company) -> tuple[str, float]:
    return tax_code(company, 1)


def resale_tax(company: Company) -> tuple[str, float]:
    """Goods for resale: WA sales tax exempt; in BC, GST applies and PST does not."""
    group, _, authorities = TAX_SETUP[company.sage_id]
    if company.country == "Canada":
        return f"{group}-1.2", authorities[0][2]
    return tax_code(company, 2)


# Distribution codes: code, description, unformatted GL account, status.
DISTRIBUTION_CODES = [
    ("FREIGHT", "Freight in - Warehouse East", "6200200", "Active"),
    ("ITSVC", "IT services - Sales", "6500400", "Active"),
    ("OFFICE", "Office supplies - Administration", "6100100", "Active"),
    ("OLDOPS", "Office supplies - Discontinued", "6100900", "Active"),  # account is inactive
    ("REPAIRS", "Repairs - Warehouse West", "6300300", "Inactive"),
]


def _distribution_codes() -> list[dict[str, Any]]:
    return [{"DistributionCodeKey": code, "Description": description, "GLAccount": account,
             "Discountable": "Yes", "Status": status,
             "InactiveDate": sage_date(date(2024, 6, 30)) if status == "Inactive" else None,
             "DateLastMaintained": sage_date(date(2024, 6, 30))}
            for code, description, account, status in DISTRIBUTION_CODES]


def _posted_history(company: Company, vendors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """AP documents posted before the connector existed (the open-document file), keyed by
    vendor and document number: two invoices for each of the first eight active vendors,
    posted in batches 1-4. Deterministic, no RNG."""
    documents = []
    for index, vendor in enumerate(vendors[:8]):
        for n in range(2):
            batch = 1 + (index * 2 + n) % 4
            day = date(2025, 3, 1) + timedelta(days=7 * index + 3 * n)
            before = 100.0 + 37.5 * index + 12.25 * n
            tax = round(before * 0.05, 2)
            documents.append({
                "VendorNumber": vendor["VendorNumber"],
                "DocumentNumber": f"H{vendor['VendorNumber']}-{n + 1:03d}",
                "DocumentType": "Invoice", "BatchNumber": batch, "EntryNumber": index + 1,
                "PostingSequenceNumber": batch, "DocumentDate": sage_date(day),
                "DueDate": sage_date(day + timedelta(days=30)), "PostingDate": sage_date(day),
                "CurrencyCode": company.currency, "PONumber": "", "OrderNumber": "",
                "InvoiceDescription": f"Opening balance {vendor['VendorName']}",
                "Terms": vendor["Terms"], "DocumentTotalBeforeTaxes": before, "TaxTotal": tax,
                "OriginalDocumentAmount": round(before + tax, 2),
                "CurrentBalance": round(before + tax, 2) if n else 0.0,
                "FullyPaid": "No" if n else "Yes",
            })
    return sorted(documents, key=lambda doc: (doc["VendorNumber"], doc["DocumentNumber"]))


def _vendor(rng: random.Random, company: Company, number: int, index: int) -> dict[str, Any]:
    name = f"{rng.choice(_NAME_A)} {rng.choice(_NAME_B)} {rng.choice(_NAME_C)}"
    city, state, zip_code = rng.choice(_CITIES[company.sage_id])
    inactive = index in (7, 19, 28)
    maintained = _day(rng)
    return {
        "VendorNumber": str(number),
        "ShortName": name.split()[0].upper()[:10],
        "VendorName": name,
        "GroupCode": rng.choice(["INV", "SRV", "FRT"]),
        "Status": "Inactive" if inactive else "Active",
        "InactiveDate": sage_date(maintained) if inactive else None,
        "OnHold": "OnHold" if index == 11 else "NotOnHold",
        "DateLastMaintained": sage_date(maintained),
        "StartDate": sage_date(date(2019, 1, 1) + timedelta(days=rng.randrange(1500))),
        "AddressLine1": f"{rng.randrange(1, 9999)} {rng.choice(['Main', 'Harbor', 'Industrial', 'Commerce'])} St",
        "AddressLine2": "",
        "City": city,
        "StateProvince": state,
        "ZipPostalCode": zip_code,
        "Country": company.country,
        "ContactName": rng.choice(["Ana Ortiz", "Ben Clarke", "Chen Wei", "Dana Fox", "Eli Moss"]),
        "PhoneNumber": f"555{rng.randrange(1000000, 9999999)}",
        "Email": f"ap@{name.split()[0].lower()}{number}.example.com",
        "CurrencyCode": company.currency,
        "AccountSet": company.account_set,
        "Terms": rng.choice(["N30", "N30", "N45", "N60", "2N30", "N15"]),
        "TaxGroup": "WATAX" if company.sage_id == "SAMINC" else "BCTAX",
        "TaxRegistrationCode1": f"{rng.randrange(10**8, 10**9)}",
        "DuplicateAmountCode": "None",
        "DuplicateDateCode": "None",
    }


def _gl_accounts(company: Company) -> list[dict[str, Any]]:
    accounts = []
    pairs = [(acct, "000", desc) for acct, desc in BALANCE_SHEET.items()]
    pairs += [(acct, dept, desc) for acct, desc in EXPENSES.items()
              for dept in ("100", "200", "300", "400")]
    pairs += [("6100", "900", EXPENSES["6100"]), ("6600", "900", EXPENSES["6600"])]
    for acct, dept, desc in sorted(pairs):
        unformatted = acct + dept
        balance_sheet = acct in BALANCE_SHEET
        accounts.append({
            "UnformattedAccount": unformatted,
            "AccountNumber": f"{acct}-{dept}",
            "Description": f"{desc} - {DEPARTMENTS[dept]}",
            "DateCreated": sage_date(date(2019, 1, 1)),
            "AccountType": "BalanceSheet" if balance_sheet else "IncomeStatement",
            "NormalBalanceDRCR": "Credit" if acct.startswith("2") else "Debit",
            "Status": "Inactive" if unformatted in INACTIVE_ACCOUNTS else "Active",
            "PostToAccount": "Detail",
            "StructureCode": "ACCDPT",
            "AccountSegmentCode1": acct,
            "AccountSegmentCode2": dept,
            "AccountGroupCode": "BS" if balance_sheet else "EXP",
            "Multicurrency": "No",
            "DefaultCurrencyCode": company.currency,
            "ControlAccount": "Yes" if acct == "2000" else "No",
        })
    return accounts


def _segment_codes() -> list[dict[str, Any]]:
    codes = [{"SegmentNumber": "000001", "SegmentCodeKey": acct, "SegmentCodeDescription": desc}
             for acct, desc in sorted({**BALANCE_SHEET, **EXPENSES}.items())]
    codes += [{"SegmentNumber": COST_CENTER_SEGMENT, "SegmentCodeKey": dept,
               "SegmentCodeDescription": desc} for dept, desc in sorted(DEPARTMENTS.items())]
    return codes


def _terms(code: str, description: str, due: int, discount: int, discount_days: int) -> dict:
    return {
        "TermsCode": code,
        "Description": description,
        "UsePaymentSchedule": "No",
        "NumberOfPayments": 1,
        "TotalPercentageDue": 100,
        "DateLastMaintained": sage_date(date(2019, 1, 1)),
        "TermsPaymentSchedule": [{
            "TermsCode": code, "PaymentNumber": 1, "PercentageDue": 100,
            "DueNumberOfDays": due, "DiscountPercent": discount,
            "DiscountNumberOfDays": discount_days,
        }],
    }


#: Supplies expensed on receipt of the invoice, not kept in inventory: non-stock PO lines.
NON_STOCK_ITEMS = frozenset({"SF-4410", "OF-7002", "JN-9003"})


def stock_item(item: str) -> str:
    """A PO line's StockItem: Yes for inventory items (received into a location), No for
    supplies (no derived draw: the rest of the data stays the same)."""
    return "No" if item in NON_STOCK_ITEMS else "Yes"


def _purchase_order(rng: random.Random, company: Company, sequence: int, number: str,
                    vendor: dict[str, Any], index: int) -> dict[str, Any]:
    ordered = _day(rng, date(2025, 9, 1), 420)
    completed = index % 10 == 9  # one PO in ten is fully received and closed
    lines = []
    for n in range(rng.randint(1, 4)):
        item, description = rng.choice(_ITEMS)
        quantity = rng.choice([5, 10, 12, 20, 24, 50, 100])
        unit_cost = round(rng.uniform(2, 400), 2)
        expense = rng.choice(list(EXPENSES))
        dept = rng.choice(["100", "200", "300", "400"])
        lines.append({
            "PurchaseOrderSequenceKey": sequence,
            "LineNumber": 1000 * (n + 1),
            "ItemNumber": item,
            "ItemDescription": description,
            "Location": "EAST" if dept == "200" else "WEST" if dept == "300" else "MAIN",
            "UnitOfMeasure": "Each",
            "QuantityOrdered": quantity,
            "QuantityReceived": quantity if completed else rng.choice([0, quantity]),
            "UnitCost": unit_cost,
            "ExtendedCost": round(quantity * unit_cost, 2),
            "ExpenseAccount": expense + dept,  # unformatted GL account; its dept is the cost center
            "Completed": "Yes" if completed else "No",
            "StockItem": stock_item(item),
        })
    return {
        "PurchaseOrderSequenceKey": sequence,
        "PurchaseOrderNumber": number,
        "Vendor": vendor["VendorNumber"],
        "VendorName": vendor["VendorName"],
        "PurchaseOrderDate": sage_date(ordered),
        "DateLastMaintained": sage_date(ordered + timedelta(days=rng.randrange(0, 20))),
        "Description": f"Replenishment {number}",
        "Reference": f"REQ-{sequence}",
        "CurrencyCode": company.currency,
        "TermsCode": vendor["Terms"],
        "Completed": "Yes" if completed else "No",
        "ExtendedCostTotal": round(sum(line["ExtendedCost"] for line in lines), 2),
        "PurchaseOrderLines": lines,
    }


def _customer(rng: random.Random, company: Company, index: int) -> dict[str, Any]:
    name = f"{rng.choice(_NAME_A)} {rng.choice(['Retail', 'Hardware', 'Builders', 'Foods'])}"
    city, state, zip_code = rng.choice(_CITIES[company.sage_id])
    return {
        "CustomerNumber": f"C{1000 + index * 10}",
        "ShortName": name.split()[0].upper()[:10],
        "CustomerName": name,
        "GroupCode": "RTL",
        "Status": "Active",
        "InactiveDate": None,
        "OnHold": "No",
        "DateLastMaintained": sage_date(_day(rng)),
        "City": city, "StateProvince": state, "ZipPostalCode": zip_code,
        "Country": company.country, "CurrencyCode": company.currency, "Terms": "N30",
        "TaxGroup": "WATAX" if company.sage_id == "SAMINC" else "BCTAX",
    }


def _add_volume(rng: random.Random, records: dict[str, list[dict[str, Any]]], company: Company,
                vendor_count: int) -> None:
    """Benchmark volume: vendors numbered V000001.., POs with five lines each on average."""
    vendors = records["AP/APVendors"]
    base = date(2024, 1, 1)
    for i in range(vendor_count):
        vendors.append({
            **vendors[i % 32],
            "VendorNumber": f"V{i + 1:06d}",
            "VendorName": f"Bulk vendor {i + 1}",
            "Status": "Active", "InactiveDate": None, "OnHold": "NotOnHold",
            "DateLastMaintained": sage_date(base + timedelta(days=i % 600)),
            "Email": f"ap@v{i + 1}.example.com",
        })
    orders = records["PO/POPurchaseOrders"]
    sequence = orders[-1]["PurchaseOrderSequenceKey"]
    for i in range(vendor_count // 5):
        sequence += 1
        vendor = vendors[32 + (i * 5) % vendor_count]
        order = _purchase_order(rng, company, sequence, f"PB{i + 1:07d}", vendor, 0)
        template = order["PurchaseOrderLines"][0]
        order["PurchaseOrderLines"] = [
            {**template, "LineNumber": 1000 * (n + 1), "Completed": "No"} for n in range(5)]
        order["Completed"] = "No"
        order["DateLastMaintained"] = sage_date(base + timedelta(days=i % 600))
        orders.append(order)


def _invoices(rng: random.Random, dataset: Dataset) -> list[dict[str, Any]]:
    invoices: list[dict[str, Any]] = []
    for company in dataset.companies:
        records = dataset.sage[company.sage_id]
        vendors = {v["VendorNumber"]: v for v in records["AP/APVendors"]}
        accounts = {a["UnformattedAccount"]: a for a in records["GL/GLAccounts"]}
        open_orders = [o for o in records["PO/POPurchaseOrders"][:160] if o["Completed"] == "No"]
        matched = rng.sample(open_orders, 12 if company.sage_id == "SAMINC" else 8)
        for order in matched:
            rows = [_po_coding_row(rng, line, order, accounts, company)
                    for line in order["PurchaseOrderLines"]]
            invoices.append(_invoice(rng, company, vendors[order["Vendor"]], rows,
                                     [order["PurchaseOrderNumber"]]))
        active = [v for v in vendors.values() if v["Status"] == "Active"]
        for account, dept in (("6300", "100"), ("6500", "400"), ("6700", "100")):
            row = _coding_row(rng, f"{account}-{dept}", EXPENSES[account], dept,
                              round(rng.uniform(80, 2500), 2), expense_tax(company))
            invoices.append(_invoice(rng, company, rng.choice(active), [row], []))
        if company.sage_id == "SAMINC":
            credit = _coding_row(rng, "6200-200", EXPENSES["6200"], "200",
                                 -round(rng.uniform(40, 300), 2), expense_tax(company))
            invoices.append(_invoice(rng, company, rng.choice(active), [credit], [], credit_note=True))
            unknown = _coding_row(rng, UNKNOWN_ACCOUNT, "Unknown account", "200", 412.50,
                                  expense_tax(company))
            invoices.append(_invoice(rng, company, rng.choice(active), [unknown], []))
    return invoices


def _coding_row(rng: random.Random, account: str, account_name: str, dept: str,
                net: float, tax_code: tuple[str, float]) -> dict[str, Any]:
    code, percent = tax_code
    tax = round(net * percent / 100, 2)
    return {
        "externalCode": uuid.UUID(int=rng.getrandbits(128)).hex,
        "accountCode": account, "accountName": account_name,
        "costCenterCode": dept, "costCenterName": DEPARTMENTS[dept],
        "taxCode": code, "taxPercent": percent, "taxSum": tax,
        "netTotal": net, "grossTotal": round(net + tax, 2),
    }


def _po_coding_row(rng: random.Random, line: dict[str, Any], order: dict[str, Any],
                   accounts: dict[str, dict[str, Any]], company: Company) -> dict[str, Any]:
    account = accounts[line["ExpenseAccount"]]
    row = _coding_row(rng, account["AccountNumber"], EXPENSES[account["AccountSegmentCode1"]],
                      account["AccountSegmentCode2"], line["ExtendedCost"],
                      resale_tax(company))
    row.update({
        "matchingType": 0,
        "orderNumber": order["PurchaseOrderNumber"],
        "orderLineNumber": str(line["LineNumber"]),
        "orderItemNumber": line["ItemNumber"],
        "orderedQuantity": line["QuantityOrdered"],
        "matchedQuantity": line["QuantityOrdered"],
        "matchedNetSum": line["ExtendedCost"],
    })
    return row


def _invoice(rng: random.Random, company: Company, vendor: dict[str, Any],
             rows: list[dict[str, Any]], orders: list[str], credit_note: bool = False) -> dict:
    for index, row in enumerate(rows, start=1):
        row["rowIndex"] = index
    net = round(sum(r["netTotal"] for r in rows), 2)
    tax = round(sum(r["taxSum"] for r in rows), 2)
    invoice_date = _day(rng, date(2026, 9, 1), 80)
    terms_days = {code: due for code, _, due, _, _ in TERMS}[vendor["Terms"]]
    return {
        "invoiceId": uuid.UUID(int=rng.getrandbits(128)).hex,
        "bumid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "processingStatus": "WaitingForTransfer",
        "p2pProcessingMode": "Standard",
        "invoiceNumber": f"{'CN' if credit_note else 'INV'}-{rng.randrange(10000, 99999)}",
        "invoiceDate": invoice_date.isoformat(),
        "companyCode": company.basware_code,
        "companyName": company.name,
        "organizationElementCode": company.basware_code,
        "supplierCode": vendor["VendorNumber"],
        "supplierName": vendor["VendorName"],
        "currencyCode": company.currency,
        "netSum": net,
        "taxSum1": tax,
        "taxPercent1": rows[0]["taxPercent"],
        "grossSum": round(net + tax, 2),
        "baseLineDate": invoice_date.isoformat(),
        "dueDate": (invoice_date + timedelta(days=terms_days)).isoformat(),
        "paymentTermCode": vendor["Terms"],
        "paymentBlock": False,
        "invoiceTypeCode": "381" if credit_note else "380",
        "invoiceTypeName": "Credit note" if credit_note else "Invoice",
        "description": f"{vendor['VendorName']} {'credit' if credit_note else 'invoice'}",
        "orderNumbers": orders,
        "codingRows": rows,
        "transferResponses": [],
        "lastUpdated": f"{invoice_date.isoformat()}T12:00:00Z",
    }


BULK_DOCUMENT_PREFIX = "BLK"  # no demo invoice ("INV-", "CN-") or posted document ("H") uses it


def _bulk_invoices(rng: random.Random, dataset: Dataset, count: int) -> list[dict[str, Any]]:
    """Benchmark volume for the invoice pipeline: ``count`` approved invoices that Sage takes.

    Invoice i goes to company i % 2. Two in three are matched to every line of an open PO of
    the demo data (from that PO's own vendor); the others are coded to one active expense
    account without PO, from an active vendor. Document numbers ``BLK0000001``.. are unique
    across the whole dataset. Deterministic per seed; about 20 us per invoice.
    """
    pools = []
    for company in dataset.companies:
        records = dataset.sage[company.sage_id]
        accounts = {a["UnformattedAccount"]: a for a in records["GL/GLAccounts"]}
        vendors = {v["VendorNumber"]: v for v in records["AP/APVendors"]}
        # The demo's own POs and vendors only (not _add_volume's): the same pool at any size.
        orders = [o for o in records["PO/POPurchaseOrders"][:160] if o["Completed"] == "No"]
        active = [v for v in records["AP/APVendors"][:32] if v["Status"] == "Active"]
        expense = [(a["AccountNumber"], a["AccountSegmentCode1"], a["AccountSegmentCode2"])
                   for a in records["GL/GLAccounts"]
                   if a["AccountGroupCode"] == "EXP" and a["Status"] == "Active"]
        pools.append((company, accounts, vendors, orders, active, expense))
    invoices = []
    for i in range(count):
        company, accounts, vendors, orders, active, expense = pools[i % len(pools)]
        if i % 3 != 2:
            order = orders[rng.randrange(len(orders))]
            rows = [_po_coding_row(rng, line, order, accounts, company)
                    for line in order["PurchaseOrderLines"]]
            invoice = _invoice(rng, company, vendors[order["Vendor"]], rows,
                               [order["PurchaseOrderNumber"]])
        else:
            account, natural, dept = expense[rng.randrange(len(expense))]
            row = _coding_row(rng, account, EXPENSES[natural], dept,
                              round(rng.uniform(80, 2500), 2), expense_tax(company))
            invoice = _invoice(rng, company, active[rng.randrange(len(active))], [row], [])
        invoice["invoiceNumber"] = f"{BULK_DOCUMENT_PREFIX}{i + 1:07d}"
        invoices.append(invoice)
    return invoices

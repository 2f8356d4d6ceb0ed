"""What target-sage300 reads and writes in Sage 300, as the install's ``$metadata`` must offer it.

Every name the look-ups (``client.py``), the coding (``coding.py``) and the batch payload
(``batches.py``) use is listed here once; the run checks them against the install before its
first look-up (``run.py``), and ``ml-connector check`` does the same without a run. Three
invoice fields only describe (the invoice and line texts, the PO number on the entry): an
install without one gets invoices without it, with a warning; every other field is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ml_connector_core.sage300_fields import FieldUse, field_use

from .tax import MAPPING_SAGE

PLUGIN = "target-sage300"

#: Entry fields left out of the batch payload when the install does not offer them.
OPTIONAL_ENTRY_FIELDS = ("InvoiceDescription", "PONumber", "InvoiceDetails/DistributionDescription")

_INVOICES = "AP/APInvoiceBatches/Invoices"


def field_uses(config: Mapping[str, Any], cost_center_field: str) -> list[FieldUse]:
    """Everything this target needs, for its settings (posting, the cost-center segment)."""
    def use(role: str, name: str, kind: str = "any", **kwargs: Any) -> FieldUse:
        return field_use(PLUGIN, role, name, kind, **kwargs)

    vendor = "vendor check (exists, active, currency)"
    order = "PO look-up (coding from the PO line)"
    chart = "GL account check and cost center"
    write = "AP invoice batches it creates"
    find = "exactly-once look-ups (what Sage already holds)"
    uses = [
        use(vendor, "AP/APVendors"),
        use(vendor, "AP/APVendors/VendorNumber", "text"),
        use(vendor, "AP/APVendors/Status", "choice", members=("Inactive",)),
        use(vendor, "AP/APVendors/CurrencyCode", "text"),
        use(order, "PO/POPurchaseOrders"),
        use(order, "PO/POPurchaseOrders/PurchaseOrderNumber", "text"),
        use(order, "PO/POPurchaseOrders/Vendor", "text"),
        use(order, "PO/POPurchaseOrders/PurchaseOrderLines", "details"),
        use(order, "PO/POPurchaseOrders/PurchaseOrderLines/LineNumber", "number"),
        use(f"{order}: the GL account an invoice line matched to the PO is coded to",
            "PO/POPurchaseOrders/PurchaseOrderLines/ExpenseAccount", "text"),
        use(chart, "GL/GLAccounts"),
        *[use(chart, f"GL/GLAccounts/{name}", "text") for name in (
            "UnformattedAccount", "AccountNumber", "Description", cost_center_field)],
        use(chart, "GL/GLAccounts/Status", "choice", members=("Inactive",)),
        use(write, "AP/APInvoiceBatches"),
        use(write, "AP/APInvoiceBatches/BatchNumber", "integer"),
        use(write, "AP/APInvoiceBatches/BatchDate", "date"),
        use(write, "AP/APInvoiceBatches/Description", "text"),
        use(write, "AP/APInvoiceBatches/BatchStatus", "choice",
            members=("ReadyToPost", "Posted", "Deleted")),
        use(write, _INVOICES, "details"),
        use(write, f"{_INVOICES}/EntryNumber", "integer"),
        *[use(write, f"{_INVOICES}/{name}", "text") for name in (
            "VendorNumber", "DocumentNumber", "CurrencyCode")],
        use(write, f"{_INVOICES}/DocumentType", "choice",
            members=("Invoice", "CreditNote", "DebitNote")),
        *[use(write, f"{_INVOICES}/{name}", "date") for name in (
            "DocumentDate", "PostingDate", "DueDate")],
        *[use(write, f"{_INVOICES}/{name}", "number") for name in (
            "TaxAmount1", "DocumentTotalIncludingTax")],
        *[use(write, f"{_INVOICES}/{name}", "text", optional=True)
          for name in OPTIONAL_ENTRY_FIELDS],
        use(write, f"{_INVOICES}/InvoiceDetails", "details"),
        use(write, f"{_INVOICES}/InvoiceDetails/GLAccount", "text"),
        use(write, f"{_INVOICES}/InvoiceDetails/DistributedAmount", "number"),
        use(f"{write}: the Basware invoice id, kept with each entry for exactly-once",
            f"{_INVOICES}/InvoiceOptionalFields", "details"),
        use(write, f"{_INVOICES}/InvoiceOptionalFields/OptionalField", "text"),
        use(write, f"{_INVOICES}/InvoiceOptionalFields/Value", "text"),
        use(find, "AP/APPostedDocuments"),
        *[use(find, f"AP/APPostedDocuments/{name}", "text")
          for name in ("VendorNumber", "DocumentNumber")],
        *[use(find, f"AP/APPostedDocuments/{name}", "integer")
          for name in ("BatchNumber", "EntryNumber")],
    ]
    if (config.get("tax_mapping") or MAPPING_SAGE) == MAPPING_SAGE:
        tax = "tax codes (tax_mapping: sage): the tax group, classes and amounts per authority"
        fix = "set tax_mapping to off (the tax total goes on the entry)"
        uses += [use(tax, "TX/TXTaxGroups", fix=fix),
                 *[use(tax, f"TX/TXTaxGroups/{name}", "text", fix=fix) for name in (
                     "TaxGroupKey", "Description", *[f"TaxAuthority{n}" for n in range(1, 6)])],
                 use(tax, "TX/TXTaxGroups/TransactionType", "choice", members=("Purchases",),
                     fix=fix),
                 use(tax, "TX/TXTaxAuthorities", fix=fix),
                 *[use(tax, f"TX/TXTaxAuthorities/{name}", "text", fix=fix)
                   for name in ("TaxAuthority", "Description")],
                 use(tax, "TX/TXTaxRates", fix=fix),
                 use(tax, "TX/TXTaxRates/TaxAuthority", "text", fix=fix),
                 use(tax, "TX/TXTaxRates/TransactionType", "choice", members=("Purchases",),
                     fix=fix),
                 *[use(tax, f"TX/TXTaxRates/{name}", "number", fix=fix)
                   for name in ("BuyerClass", *[f"ItemRate{n}" for n in range(1, 11)])],
                 use(tax, "AP/APVendors/TaxGroup", "text", fix=fix),
                 *[use(tax, f"AP/APVendors/TaxClassCode{n}", "integer", fix=fix)
                   for n in range(1, 6)],
                 use(tax, f"{_INVOICES}/TaxGroup", "text", fix=fix),
                 *[use(tax, f"{_INVOICES}/{name}{n}", "number", fix=fix)
                   for name in ("TaxAmount", "InvoiceDetails/TaxClass",
                                "InvoiceDetails/TaxAmount") for n in range(1, 6)
                   if (name, n) != ("TaxAmount", 1)]]  # the entry's TaxAmount1: always
    if config.get("post_batches"):
        post = "posting the batches it creates (post_batches)"
        fix = "set post_batches to false and post the batches in Sage 300"
        uses += [use(post, "AP/APPostInvoices", fix=fix),
                 use(post, "AP/APPostInvoices/ProcessAllBatches", "choice",
                     members=("Donotpostallbatches",), fix=fix),
                 *[use(post, f"AP/APPostInvoices/{name}", "number", fix=fix)
                   for name in ("FromBatch", "ToBatch")]]
    return uses


def left_out(findings: list[Any]) -> frozenset[str]:
    """The optional entry fields (``OPTIONAL_ENTRY_FIELDS`` names) the install lacks."""
    prefix = _INVOICES + "/"
    return frozenset(f.use.name[len(prefix):] for f in findings
                     if f.severity == "warning" and f.use.name.startswith(prefix))

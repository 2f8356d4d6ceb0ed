"""``ap_payments``: what Sage 300 has paid of each posted AP document (docs/decisions.md,
"Payment status").

Read from ``AP/APPostedDocuments`` (the open-document file, reference §1.2), incrementally on
``DateLastActivity``, which a posted payment moves: one GET per company when nothing was paid.
The document carries its original amount and current balance (what is paid so far, so a
partial payment is cumulative without summing payments) and its latest payment's date, number,
check number and payment code. Every posted document is read, not only the connector's: Sage
does not know which ones those are (the batch and entry say, through the ledger), so
target-basware keeps the documents target-sage300 created and drops the others. Field names
beyond the key are unconfirmed (docs/sage-fields.md); the field check names any the install
lacks before the first read.
"""

from __future__ import annotations

from typing import ClassVar

from singer_sdk import typing as th

from tap_sage300.client import Sage300Stream
from tap_sage300.streams import COMPANY, YES_NO, amount, choice, day, text, whole


class APPaymentsStream(Sage300Stream):
    name = "ap_payments"
    resource = "AP/APPostedDocuments"
    primary_keys: ClassVar[list[str]] = ["company_id", "VendorNumber", "DocumentNumber"]
    replication_key = "DateLastActivity"
    schema = th.PropertiesList(
        COMPANY,
        text("VendorNumber", required=True), text("DocumentNumber", required=True),
        choice("DocumentType", ["Invoice", "DebitNote", "CreditNote"]),
        whole("BatchNumber", description="The AP invoice batch the document was posted from"),
        whole("EntryNumber", description="Its entry in that batch"),
        text("CurrencyCode"),
        amount("OriginalDocumentAmount", description="The document total, tax included"),
        amount("CurrentBalance", description="What is left to pay"),
        choice("FullyPaid", YES_NO),
        day("DateLastActivity", description="Moved by posting and by every payment"),
        day("LastPaymentDate"),
        whole("LastPaymentNumber", description="Payments applied to the document so far"),
        text("LastCheckNumber"), text("LastPaymentCode"),
    ).to_dict()

"""AP invoice batches: create, edit, ready-to-post and posting, as the Sage 300 AP views do.

Reference §4.4, §5 and §9.6-9.8, and these guesses where the reference is silent:

- **All or nothing.** A POST whose second invoice fails validation creates nothing: no batch,
  no entries, and no batch number is used up. (The reference marks partial batches unknown.)
  A PATCH is all-or-nothing too.
- **Type errors are 400, not 409.** A ``DocumentType`` outside Invoice/DebitNote/CreditNote, an
  amount sent as a string, a malformed date or an unknown property fails while the JSON is
  read into the typed model, before any Sage view rule runs: 400 ``InvalidPayload``, and
  nothing is created (as for ODL/ASP.NET model binding).
- **Validation order** per invoice: vendor (blank, unknown, inactive), document type, document
  number (blank, duplicate), terms, currency, details, totals. The first failure is reported,
  409 ``FieldInvalid`` with the Sage-style message (the duplicate message is Sage's verbatim).
- **Duplicates** are (vendor, document number) pairs among entries of batches that are not
  posted or deleted, among posted documents (``APPostedDocuments``), and earlier in the same
  payload. Document numbers compare case-insensitively and ignoring trailing spaces (guess:
  SQL Server's default collation and Sage's fixed-width fields).
- **Taxes.** The entry's ``TaxGroup`` (default: the vendor's) must be a purchases tax group
  of ``TX/TXTaxGroups``; its authorities fill ``TaxAuthority1..5``. A tax class (entry or
  detail ``TaxClass1..5``) must be 1-10 and have a rate row for its authority (guesses).
- **Amounts.** A detail's ``DistributedAmount`` is its amount before tax; each ``TaxAmount<n>``
  of the entry defaults to the sum of the details' ``TaxAmount<n>``, the entry's tax is the
  sum of its ``TaxAmount1..5``; ``DocumentTotalBeforeTaxes``
  defaults to the sum of the distributed amounts and ``DocumentTotalIncludingTax`` to that plus
  tax. A total that is given and differs by a cent or more is refused as out of balance, and a
  negative total is refused (credit notes carry positive amounts) (guesses). An entry needs at
  least one detail (guess). ``BatchTotal`` adds invoices and debit notes and subtracts credit
  notes (guess).
- **Defaults** from the vendor: ``Terms``, ``CurrencyCode``, ``TaxGroup``; ``DocumentDate``
  defaults to the batch date, ``PostingDate`` to the document date, ``DueDate`` to the document
  date plus the terms' days. A ``CurrencyCode`` other than the vendor's is refused (guess).
  A detail with only a ``DistributionCode`` takes that code's GL account. ``GLAccount`` must be
  the unformatted account (``6100200``; ``6100-200`` does not exist).
- ``BatchStatus`` may be ``Open`` or ``ReadyToPost`` on POST and PATCH; ``Posted`` only comes
  from ``APPostInvoices('$process')``. A posted batch refuses any PATCH (409 ``RecordInvalid``),
  and a ready-to-post batch refuses changes to its entries unless the same PATCH sets it back to
  ``Open`` (409 ``RecordInvalid``) (guesses).
- **Posting** (``APPostInvoices('$process')``) posts the ready-to-post batches in the range (or
  all of them with ``Postallbatches``), gives them one posting sequence number per call, and
  copies every entry to ``APPostedDocuments``; other batches are left alone. It never fails
  part-way (no error batches are simulated).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from .sage300_schema import MODULES
from .sage300_store import (
    CompanyState,
    Record,
    build_details,
    business_error,
    dec,
    invalid_payload,
    merge_details,
    money,
    new_detail,
    not_found,
)

BATCHES = "AP/APInvoiceBatches"
POSTED = "AP/APPostedDocuments"
PAYMENTS = "AP/APPostedPayments"
BATCH_SPEC = MODULES["AP"].resources["APInvoiceBatches"].entity
INVOICE_SPEC = BATCH_SPEC.details["Invoices"]
DETAIL_SPEC = INVOICE_SPEC.details["InvoiceDetails"]
OPTIONAL_SPEC = INVOICE_SPEC.details["InvoiceOptionalFields"]
PAYMENT_SPEC = INVOICE_SPEC.details["InvoicePaymentSchedules"]
OPEN_STATUSES = ("Open", "ReadyToPost")
HALF_CENT = Decimal("0.005")


def duplicate_message(document: str, vendor: str) -> str:
    return (f"Document number '{document}' for vendor {vendor} already exists.\n\n"
            "If you want to add this invoice, add characters to the document number to make it "
            "unique.")


def _doc_key(vendor: str, document: str) -> tuple[str, str]:
    return vendor.rstrip(), document.rstrip().upper()


DocKey = tuple[str, str]


def _taken_documents(state: CompanyState) -> set[DocKey]:
    """(vendor, document) pairs already used by open batches and posted documents.

    Cached on the company until either table changes (and kept current by create_batch):
    rebuilding it on every POST made 100,000 invoices in 2,000 batches quadratic. Callers
    must not change the set; :class:`TakenDocuments` layers a request's changes on it.
    """
    versions = (state.table(BATCHES).version, state.table(POSTED).version)
    cached = state.taken_documents
    if cached is None or cached[0] != versions:
        taken = {_doc_key(doc["VendorNumber"], doc["DocumentNumber"])
                 for doc in state.table(POSTED).rows.values()}
        for batch in state.table(BATCHES).rows.values():
            if batch["BatchStatus"] in OPEN_STATUSES:
                taken.update(_doc_key(e["VendorNumber"], e["DocumentNumber"])
                             for e in batch["Invoices"])
        cached = state.taken_documents = (versions, taken)
    return cached[1]


class TakenDocuments:
    """The company's taken pairs plus one request's own additions and removals; the shared
    set is only changed once the request has succeeded (all or nothing)."""

    def __init__(self, base: set[DocKey]) -> None:
        self.base = base
        self.added: set[DocKey] = set()
        self.removed: set[DocKey] = set()

    def __contains__(self, key: object) -> bool:
        return key in self.added or (key in self.base and key not in self.removed)

    def add(self, key: DocKey) -> None:
        self.added.add(key)
        self.removed.discard(key)

    def discard(self, key: DocKey) -> None:
        self.added.discard(key)
        self.removed.add(key)

    def update(self, keys: Iterable[DocKey]) -> None:
        for key in keys:
            self.add(key)


class EntryBuilder:
    """Validates one invoice entry against the company's books and completes its fields."""

    def __init__(self, state: CompanyState, taken: TakenDocuments) -> None:
        self.state = state
        self.taken = taken
        self.vendors = state.table("AP/APVendors")
        self.accounts = state.table("GL/GLAccounts")
        self.codes = state.table("AP/APDistributionCodes")
        self.terms = state.table("AP/APTerms")
        self.tax_groups = state.table("TX/TXTaxGroups")

    def build(self, data: Record, batch_number: int, entry_number: int, batch_date: str,
              previous: Record | None = None) -> Record:
        """A complete entry; ``previous`` is the entry being updated (PATCH ``Update``)."""
        scalars = {k: v for k, v in data.items() if k not in INVOICE_SPEC.details}
        if previous is None:
            entry = new_detail(INVOICE_SPEC, scalars, {"BatchNumber": batch_number})
        else:
            entry = {**copy.deepcopy(previous), **scalars, "UpdateOperation": "Unspecified"}
        entry["BatchNumber"], entry["EntryNumber"] = batch_number, entry_number
        vendor = self._vendor(entry["VendorNumber"])
        self._document_number(entry, previous)
        self._defaults(entry, vendor, batch_date)
        keys = {"BatchNumber": batch_number, "EntryNumber": entry_number}
        details = self._details(entry, data, previous, keys)
        entry["InvoiceDetails"] = details
        entry["InvoiceOptionalFields"] = self._optional_fields(data, previous, keys)
        self._totals(entry, given=scalars)
        entry["InvoicePaymentSchedules"] = self._payment_schedule(entry, data, previous, keys)
        return entry

    # -- header -------------------------------------------------------------------------------
    def _vendor(self, number: str) -> Record:
        if not number.strip():
            raise business_error("Vendor number cannot be blank.")
        vendor = self.vendors.get((number,))
        if vendor is None:
            raise business_error(f"Vendor number {number} does not exist.")
        if vendor["Status"] != "Active":
            raise business_error(f"Vendor {number} is inactive.")
        return vendor

    def _document_number(self, entry: Record, previous: Record | None) -> None:
        document = entry["DocumentNumber"]
        if not document.strip():
            raise business_error("Document number cannot be blank.")
        key = _doc_key(entry["VendorNumber"], document)
        unchanged = previous is not None and key == _doc_key(previous["VendorNumber"],
                                                             previous["DocumentNumber"])
        if key in self.taken and not unchanged:
            raise business_error(duplicate_message(document, entry["VendorNumber"]))
        self.taken.add(key)

    def _defaults(self, entry: Record, vendor: Record, batch_date: str) -> None:
        entry["Terms"] = entry["Terms"] or vendor["Terms"]
        terms = self.terms.get((entry["Terms"],))
        if terms is None:
            raise business_error(f"Terms code {entry['Terms']} does not exist.")
        if not entry["CurrencyCode"]:
            entry["CurrencyCode"] = vendor["CurrencyCode"]
        elif entry["CurrencyCode"] != vendor["CurrencyCode"]:
            raise business_error(f"Currency code {entry['CurrencyCode']} does not match the "
                                 f"currency {vendor['CurrencyCode']} of vendor "
                                 f"{vendor['VendorNumber']}.")
        entry["TaxGroup"] = entry["TaxGroup"] or vendor["TaxGroup"]
        self._tax_group(entry)
        entry["DocumentDate"] = entry["DocumentDate"] or batch_date
        entry["PostingDate"] = entry["PostingDate"] or entry["DocumentDate"]
        if not entry["DueDate"]:
            schedule = terms["TermsPaymentSchedule"]
            days = schedule[0]["DueNumberOfDays"] if schedule else 0
            due = date.fromisoformat(entry["DocumentDate"]) + timedelta(days=days)
            entry["DueDate"] = due.isoformat()

    def _tax_group(self, entry: Record) -> None:
        group = self.tax_groups.get((entry["TaxGroup"], "Purchases"))
        if group is None:
            raise business_error(f"Tax group {entry['TaxGroup']} does not exist for purchases.")
        for n in range(1, 6):
            entry[f"TaxAuthority{n}"] = group[f"TaxAuthority{n}"]
        self._tax_classes(entry, entry)

    def _tax_classes(self, entry: Record, row: Record) -> None:
        for n in range(1, 6):
            item_class = row[f"TaxClass{n}"]
            if not entry[f"TaxAuthority{n}"]:
                continue
            if not 1 <= item_class <= 10:
                raise business_error(f"Tax class {item_class} is not valid for tax authority "
                                     f"{entry[f'TaxAuthority{n}']}. Enter a class from 1 to 10.")

    # -- details ------------------------------------------------------------------------------
    def _details(self, entry: Record, data: Record, previous: Record | None,
                 keys: Record) -> list[Record]:
        patches = data.get("InvoiceDetails")
        if previous is None:
            rows = build_details(DETAIL_SPEC, patches or [], keys, renumber=True)
            rows = [self._detail(entry, row) for row in rows]
        elif patches is None:
            rows = previous["InvoiceDetails"]
        else:
            rows = merge_details(DETAIL_SPEC, previous["InvoiceDetails"], patches, keys,
                                 on_row=lambda row, _old: self._detail(entry, row))
        if not rows:
            raise business_error(f"Document {entry['DocumentNumber']} has no distribution "
                                 "details. Enter at least one detail.")
        return rows

    def _detail(self, entry: Record, row: Record) -> Record:
        self._tax_classes(entry, row)
        code = row["DistributionCode"]
        if code:
            distribution = self.codes.get((code,))
            if distribution is None:
                raise business_error(f"Distribution code {code} does not exist.")
            if distribution["Status"] != "Active":
                raise business_error(f"Distribution code {code} is inactive.")
            row["GLAccount"] = row["GLAccount"] or distribution["GLAccount"]
            row["DistributionDescription"] = (row["DistributionDescription"]
                                              or distribution["Description"])
        account_id = row["GLAccount"]
        if not account_id:
            raise business_error("A distribution code or a G/L account is required for each "
                                 "detail.")
        account = self.accounts.get((account_id,))
        if account is None:
            raise business_error(f"Account {account_id} does not exist.")
        if account["Status"] != "Active":
            raise business_error(f"Account {account_id} is inactive.")
        row["DistributedAmountBeforeTaxes"] = row["DistributedAmount"]
        return row

    def _optional_fields(self, data: Record, previous: Record | None,
                         keys: Record) -> list[Record]:
        patches = data.get("InvoiceOptionalFields")
        if previous is None:
            return build_details(OPTIONAL_SPEC, patches or [], keys)
        if patches is None:
            return previous["InvoiceOptionalFields"]
        return merge_details(OPTIONAL_SPEC, previous["InvoiceOptionalFields"], patches, keys)

    def _payment_schedule(self, entry: Record, data: Record, previous: Record | None,
                          keys: Record) -> list[Record]:
        given = data.get("InvoicePaymentSchedules")
        if given:
            return build_details(PAYMENT_SPEC, given, keys)
        row = new_detail(PAYMENT_SPEC, {"PaymentNumber": 1, "DueDate": entry["DueDate"],
                                        "AmountDue": entry["DocumentTotalIncludingTax"]}, keys)
        return [row]

    # -- totals -------------------------------------------------------------------------------
    def _totals(self, entry: Record, given: Record) -> None:
        details = entry["InvoiceDetails"]
        before = sum((dec(row["DistributedAmount"]) for row in details), Decimal(0))
        amounts = [dec(entry[name]) if name in given else
                   sum((dec(row[name]) for row in details), Decimal(0))
                   for name in (f"TaxAmount{n}" for n in range(1, 6))]
        tax = sum(amounts, Decimal(0))
        total = before + tax
        document = entry["DocumentNumber"]
        if "DocumentTotalBeforeTaxes" in given and \
                abs(dec(given["DocumentTotalBeforeTaxes"]) - before) >= HALF_CENT:
            raise business_error(f"Document {document} is out of balance: the document total "
                                 f"before taxes {given['DocumentTotalBeforeTaxes']} does not equal"
                                 f" the distributed amount {money(before)}.")
        if "DocumentTotalIncludingTax" in given and \
                abs(dec(given["DocumentTotalIncludingTax"]) - total) >= HALF_CENT:
            raise business_error(f"Document {document} is out of balance: the document total "
                                 f"{given['DocumentTotalIncludingTax']} does not equal the "
                                 f"distributed amount plus taxes {money(total)}.")
        if total < 0:
            raise business_error(f"Document {document}: the document total cannot be negative. "
                                 "Enter a credit note with positive amounts instead.")
        for n, amount in enumerate(amounts, start=1):
            entry[f"TaxAmount{n}"] = money(amount)
        entry["TaxTotal"] = money(tax)
        entry["DocumentTotalBeforeTaxes"] = money(before)
        entry["DocumentTotalIncludingTax"] = money(total)
        entry["NumberOfDetails"] = len(details)


def _signed_total(entry: Record) -> Decimal:
    amount = dec(entry["DocumentTotalIncludingTax"])
    return -amount if entry["DocumentType"] == "CreditNote" else amount


def _summarize(batch: Record) -> None:
    entries = batch["Invoices"]
    batch["NumberOfEntries"] = len(entries)
    batch["BatchTotal"] = money(sum((_signed_total(e) for e in entries), Decimal(0)))
    batch["LastEntryNumber"] = max([batch["LastEntryNumber"],
                                    *(e["EntryNumber"] for e in entries)])


def _check_status(value: str | None) -> None:
    if value is not None and value not in OPEN_STATUSES:
        raise business_error(f"Batch status cannot be set to {value}. Post batches with "
                             "APPostInvoices('$process').")


# --------------------------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------------------------

def create_batch(state: CompanyState, data: Record, today: str) -> Record:
    """POST APInvoiceBatches: always a new batch, numbered next; nothing is kept on error."""
    _check_status(data.get("BatchStatus"))
    number = state.next_batch
    header = {k: v for k, v in data.items() if k not in ("Invoices", "BatchNumber")}
    batch = {**BATCH_SPEC.defaults, **header, "BatchNumber": number, "Invoices": [],
             "UpdateOperation": "Unspecified"}
    batch["BatchDate"] = batch["BatchDate"] or today
    batch["BatchStatus"] = data.get("BatchStatus", "Open")
    batch["DateLastEdited"] = today
    batch["PostingSequenceNumber"] = batch["NumberOfErrors"] = batch["LastEntryNumber"] = 0
    base = _taken_documents(state)
    builder = EntryBuilder(state, TakenDocuments(base))
    for index, raw in enumerate(data.get("Invoices", []), start=1):
        if raw.get("UpdateOperation") == "Delete":
            continue
        batch["Invoices"].append(builder.build(raw, number, index, batch["BatchDate"]))
    _summarize(batch)
    state.table(BATCHES).put(batch)
    # The new batch only adds pairs: carry the cache over to the new table version.
    base.update(builder.taken.added)
    state.taken_documents = ((state.table(BATCHES).version, state.table(POSTED).version), base)
    state.next_batch += 1
    return batch


def patch_batch(state: CompanyState, batch: Record, data: Record, today: str) -> None:
    """PATCH APInvoiceBatches(n): header fields, status, and entries by UpdateOperation."""
    number = batch["BatchNumber"]
    if batch["BatchStatus"] not in OPEN_STATUSES:
        raise business_error(f"Batch {number} is {batch['BatchStatus'].lower()} and cannot be "
                             "changed.", "RecordInvalid")
    if data.get("BatchNumber", number) != number:
        raise invalid_payload("The key property 'BatchNumber' in the payload does not match the "
                              "entity key in the URL.")
    _check_status(data.get("BatchStatus"))
    status = data.get("BatchStatus", batch["BatchStatus"])
    if "Invoices" in data and status == "ReadyToPost":
        raise business_error(f"Batch {number} is ready to post and its entries cannot be "
                             "edited. Set the batch status to Open first.", "RecordInvalid")
    updated = copy.deepcopy(batch)
    for name in ("Description", "BatchDate", "BatchStatus"):
        if name in data:
            updated[name] = data[name]
    if "Invoices" in data:
        updated["Invoices"] = _patch_entries(state, updated, data["Invoices"])
    updated["DateLastEdited"] = today
    _summarize(updated)
    state.table(BATCHES).put(updated)


def _patch_entries(state: CompanyState, batch: Record, patches: list[Record]) -> list[Record]:
    number = batch["BatchNumber"]
    # The batch's own pairs are in the shared set already (it is open); removals and
    # changes stay in this request's layer.
    builder = EntryBuilder(state, TakenDocuments(_taken_documents(state)))
    entries = {e["EntryNumber"]: e for e in batch["Invoices"]}
    next_entry = max([batch["LastEntryNumber"], *entries]) + 1
    for data in patches:
        operation = data.get("UpdateOperation", "Unspecified")
        entry_number = data.get("EntryNumber") or None
        exists = entry_number in entries
        if operation == "Insert" or (operation == "Unspecified" and not exists):
            if exists:
                raise business_error(f"Entry {entry_number} already exists.", "RecordDuplicate")
            entries[next_entry] = builder.build(data, number, next_entry, batch["BatchDate"])
            next_entry += 1
        elif not exists:
            raise not_found()
        elif operation == "Delete":
            old = entries.pop(entry_number)
            builder.taken.discard(_doc_key(old["VendorNumber"], old["DocumentNumber"]))
        else:
            old = entries[entry_number]
            builder.taken.discard(_doc_key(old["VendorNumber"], old["DocumentNumber"]))
            entries[entry_number] = builder.build(data, number, entry_number, batch["BatchDate"],
                                                  previous=old)
    batch["LastEntryNumber"] = next_entry - 1
    return [entries[n] for n in sorted(entries)]


def post_batches(state: CompanyState, data: Record, today: str) -> list[int]:
    """APPostInvoices('$process'): post the ready-to-post batches in range; their numbers."""
    every = data.get("ProcessAllBatches", "Donotpostallbatches") == "Postallbatches"
    low, high = data.get("FromBatch", 0), data.get("ToBatch", 0)
    batches = state.table(BATCHES)
    chosen = [b for b in batches.ordered() if b["BatchStatus"] == "ReadyToPost"
              and (every or low <= b["BatchNumber"] <= high)]
    if not chosen:
        return []
    sequence = state.next_posting_sequence
    state.next_posting_sequence += 1
    posted = state.table(POSTED)
    for batch in chosen:
        updated = {**batch, "BatchStatus": "Posted", "PostingSequenceNumber": sequence,
                   "DateLastEdited": today}
        batches.put(updated)
        for entry in batch["Invoices"]:
            posted.put({**_posted_document(entry, sequence), "DateLastActivity": today})
    return [b["BatchNumber"] for b in chosen]


def _posted_document(entry: Record, sequence: int) -> dict[str, Any]:
    total = entry["DocumentTotalIncludingTax"]
    return {
        "VendorNumber": entry["VendorNumber"], "DocumentNumber": entry["DocumentNumber"],
        "DocumentType": entry["DocumentType"], "BatchNumber": entry["BatchNumber"],
        "EntryNumber": entry["EntryNumber"], "PostingSequenceNumber": sequence,
        "DocumentDate": entry["DocumentDate"], "DueDate": entry["DueDate"],
        "PostingDate": entry["PostingDate"], "CurrencyCode": entry["CurrencyCode"],
        "PONumber": entry["PONumber"], "OrderNumber": entry["OrderNumber"],
        "InvoiceDescription": entry["InvoiceDescription"], "Terms": entry["Terms"],
        "DocumentTotalBeforeTaxes": entry["DocumentTotalBeforeTaxes"],
        "TaxTotal": entry["TaxTotal"], "OriginalDocumentAmount": total,
        "CurrentBalance": total, "FullyPaid": "No", "DateLastActivity": None,
        "LastPaymentDate": None, "LastPaymentNumber": None, "LastCheckNumber": None,
        "LastPaymentCode": None,
    }



def record_payment(state: CompanyState, body: Record, today: str) -> Record:
    """What a posted AP payment batch does to one document (the sandbox's ``/_sandbox/pay``,
    standing in for AP payment entry and ``APPostPaymentsAndAdjustments``): a row in
    ``APPostedPayments`` and the document's balance, last activity and last payment updated.
    ``amount`` defaults to the whole balance; more than the balance is refused (guess: no
    overpayment simulated). Returns the updated posted document."""
    vendor, number = str(body.get("vendor") or ""), str(body.get("document") or "")
    posted = state.table(POSTED)
    document = posted.get((vendor, number))
    if document is None:
        raise ValueError(f"no posted document {vendor}/{number} in {state.company.sage_id}")
    balance = dec(document["CurrentBalance"])
    amount = dec(body["amount"]) if body.get("amount") is not None else balance
    if amount <= 0 or amount > balance:
        raise ValueError(f"payment {amount} must be positive and at most the balance {balance}")
    payments = state.table(PAYMENTS)
    sequence = 1 + sum(1 for p in payments.ordered()
                       if (p["VendorNumber"], p["DocumentNumber"]) == (vendor, number))
    day = str(body.get("date") or today)[:10]
    check = str(body.get("check_number") or f"CHK{state.next_batch:05d}{sequence:02d}")
    code = str(body.get("payment_code") or "CHECK")
    batch = state.next_batch  # a payment batch takes the next AP batch number
    state.next_batch += 1
    payments.put({"VendorNumber": vendor, "DocumentNumber": number, "PaymentNumber": sequence,
                  "CheckNumber": check, "PaymentDate": day, "PaymentAmount": money(amount),
                  "PaymentCode": code, "BankCode": "SEATTLE", "BatchNumber": batch,
                  "EntryNumber": 1})
    left = balance - amount
    updated = {**document, "CurrentBalance": money(left),
               "FullyPaid": "Yes" if left == 0 else "No", "DateLastActivity": today,
               "LastPaymentDate": day, "LastPaymentNumber": sequence, "LastCheckNumber": check,
               "LastPaymentCode": code}
    posted.put(updated)
    return updated

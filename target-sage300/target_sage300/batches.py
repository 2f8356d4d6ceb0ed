"""Creating AP invoice batches exactly once.

A batch is POSTed with ``BatchStatus: ReadyToPost`` and a Description unique to the run
(``ml-connector <run> <company> #<n>``), every entry carrying the source id in the invoice
optional field (``BWINVID`` by default). What can go wrong, and what happens then:

- **Timeout / dropped connection** (``UnknownOutcome``): Sage may have created the batch. It is
  looked up by its Description before anything else; found, it counts as created. Not found,
  the invoices go again in a batch with a new Description (Sage's duplicate-document check
  would still stop a second copy if the first one only appeared after the lookup).
- **409 for one invoice** (e.g. "Document number 'X' for vendor Y already exists", or a fiscal
  period error): that invoice is taken out, becomes "already there" (duplicate: its batch and
  entry are looked up) or is rejected with Sage's message; the others are created without it.
  If the message does not say which invoice, the batch is split in halves until it does.
- Anything else (auth, 400, persistent 5xx) is a technical failure: it propagates.

Each invoice's outcome is in the ledger as soon as it is settled, and after each created batch
the target emits a STATE checkpoint (when the tap's settled state moved or the run's first
outcome names the run); what a crash loses since the last one, the next run finds by the
lookups in ``client.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from ml_connector_core.httppolicy import UnknownOutcome
from ml_connector_core.sage300_api import Sage300Error

from .client import DocumentRef, SageCompany, duplicate_in_message
from .coding import CodedLine, shorten
from .contract import APInvoice
from .run import InvoiceRun
from .tax import InvoiceTax

#: Consecutive unknown outcomes (timeouts with nothing found afterwards) before giving up.
MAX_UNKNOWN = 3


@dataclass
class Prepared:
    """One incoming record after the contract check (no I/O done yet)."""

    seq: int  # arrival order in the target, for state checkpoints
    number: int  # 1-based position among this run's ap_invoices records, for messages
    payload: Any  # the record as received (JSON-able), for the ledger
    source_id: str | None
    invoice: APInvoice | None
    violation: str | None

    @property
    def label(self) -> str:
        return f"record {self.number}" + (f" (source_id {self.source_id})"
                                          if self.source_id else " (no usable source_id)")


@dataclass
class Ready:
    """An invoice that passed every check and is not in Sage yet."""

    prepared: Prepared
    invoice: APInvoice
    lines: list[CodedLine]
    tax: InvoiceTax | None = None  # None: the tax total goes on the entry (TaxAmount1)


def _money(value: Any) -> float:
    return float(round(value, 2)) + 0.0  # + 0.0: a zero line of a credit note is 0.0, not -0.0


def _day(value: date) -> str:
    return value.isoformat()


def invoice_payload(ready: Ready, idempotency_field: str,
                    left_out: frozenset[str] = frozenset()) -> dict[str, Any]:
    """One ``Invoices[]`` entry. Property order matters to Sage (its views take properties in
    the order given): drivers first. ``left_out``: optional fields the install lacks
    (sage_fields.OPTIONAL_ENTRY_FIELDS)."""
    invoice = ready.invoice
    body: dict[str, Any] = {
        "VendorNumber": invoice.vendor_number,
        "DocumentType": invoice.sage_document_type,
        "DocumentNumber": invoice.document_number,
        "DocumentDate": _day(invoice.document_date),
    }
    if invoice.posting_date:
        body["PostingDate"] = _day(invoice.posting_date)
    if invoice.due_date:
        body["DueDate"] = _day(invoice.due_date)
    body["CurrencyCode"] = invoice.currency
    body["InvoiceDescription"] = (invoice.description or "")[:60]
    po_number = next((line.po_number for line in ready.lines if line.po_number), None)
    if po_number:
        body["PONumber"] = po_number
    tax = ready.tax
    if tax is None:
        body["TaxAmount1"] = _money(invoice.tax_total)
    else:
        body["TaxGroup"] = tax.group
        body.update({f"TaxAmount{n}": _money(amount)
                     for n, amount in enumerate(tax.totals, start=1)})
    body["DocumentTotalIncludingTax"] = _money(invoice.gross_total)
    body["InvoiceDetails"] = [{
        "GLAccount": line.gl_account,
        "DistributedAmount": _money(line.amount),
        "DistributionDescription": (line.description or _line_text(line))[:60],
        **(_line_tax_fields(tax, index) if tax else {}),
    } for index, line in enumerate(ready.lines)]
    body["InvoiceOptionalFields"] = [{"OptionalField": idempotency_field,
                                      "Value": invoice.source_id}]
    for name in left_out:
        parent, _, child = name.rpartition("/")
        for holder in (body[parent] if parent else [body]):
            holder.pop(child, None)
    return body


def _line_tax_fields(tax: InvoiceTax, index: int) -> dict[str, Any]:
    line = tax.lines[index]
    fields: dict[str, Any] = {f"TaxClass{n}": item_class
                              for n, item_class in enumerate(line.classes, start=1)}
    fields.update({f"TaxAmount{n}": _money(amount)
                   for n, amount in enumerate(line.amounts, start=1)})
    return fields


def _line_text(line: CodedLine) -> str:
    if line.po_number:
        return f"PO {line.po_number} line {line.po_line}"
    return f"Line {line.number}"


def batch_payload(description: str, batch_date: date, invoices: list[Ready],
                  idempotency_field: str, left_out: frozenset[str] = frozenset()
                  ) -> dict[str, Any]:
    return {
        "BatchDate": _day(batch_date),
        "Description": description,
        "BatchStatus": "ReadyToPost",
        "Invoices": [invoice_payload(ready, idempotency_field, left_out) for ready in invoices],
    }


class BatchWriter:
    """Writes one company's ready invoices into batches of at most ``batch_size``."""

    def __init__(self, run: InvoiceRun, sage: SageCompany, *, batch_size: int,
                 post_batches: bool, idempotency_field: str, checkpoint: Callable[[], None],
                 finished: Callable[[Prepared], None], logger: logging.Logger) -> None:
        self.run = run
        self.sage = sage
        self.batch_size = batch_size
        self.post_batches = post_batches
        self.idempotency_field = idempotency_field
        self.checkpoint = checkpoint
        self.finished = finished
        self.logger = logger

    def write(self, ready: list[Ready]) -> None:
        for start in range(0, len(ready), self.batch_size):
            self._write(ready[start:start + self.batch_size])

    def _write(self, pending: list[Ready]) -> None:
        unknown = 0
        while pending:
            description = self.run.next_batch_description(self.sage.company)
            payload = batch_payload(description, date.today(), pending, self.idempotency_field,
                                    self.run.left_out)
            try:
                batch = self.sage.create_batch(payload)
            except UnknownOutcome as exc:
                self.logger.warning("%s: %s; looking the batch up by its description",
                                    description, exc)
                batch = self.sage.batch_by_description(description)
                if batch is None:
                    unknown += 1
                    if unknown >= MAX_UNKNOWN:
                        raise
                    self.logger.warning("%s was not created; sending its %d invoice(s) again",
                                        description, len(pending))
                    continue
                self.logger.info("%s was created after all (batch %s)", description,
                                 batch.get("BatchNumber"))
            except Sage300Error as exc:
                if exc.status != 409:
                    raise
                pending = self._without_conflict(exc, pending)
                continue
            self._created(batch, pending)
            return

    def _created(self, batch: dict[str, Any], invoices: list[Ready]) -> None:
        documents = self.sage.documents_in(batch)
        by_source = {ref.source_id: ref for ref, _ in documents if ref.source_id}
        by_document = {document: ref for ref, document in documents}
        number = batch.get("BatchNumber")
        for ready in invoices:
            invoice = ready.invoice
            ref = by_source.get(invoice.source_id) or by_document.get(
                (invoice.vendor_number, invoice.document_number))
            if ref is None:  # Sage answered 2xx without our entry: do not guess, stop loudly
                raise RuntimeError(f"Sage 300 created batch {number} in {self.sage.company} "
                                   f"but its answer lacks invoice {invoice.source_id}")
            self.run.created(invoice.source_id, ref, ready.prepared.payload,
                             invoice.document_number, note=invoice.type_note)
            self.finished(ready.prepared)
        self.logger.info("Created AP invoice batch %s in %s with %d invoice(s), ready to post",
                         number, self.sage.company, len(invoices))
        self.checkpoint()
        if self.post_batches and number is not None:
            self._post(int(number))

    def _post(self, number: int) -> None:
        try:
            batch = self.sage.post_batch(number)
        except (Sage300Error, UnknownOutcome) as exc:
            if isinstance(exc, Sage300Error) and exc.status != 409:
                raise
            self.logger.error("Batch %s in %s was created but not posted (%s); post it in "
                              "Sage 300 (AP > Post Batches)", number, self.sage.company, exc)
            return
        status = (batch or {}).get("BatchStatus")
        if status == "Posted":
            self.logger.info("Posted batch %s in %s", number, self.sage.company)
        else:
            self.logger.error("Batch %s in %s is %s after posting; see AP posting errors in "
                              "Sage 300", number, self.sage.company, status)

    def _without_conflict(self, error: Sage300Error, pending: list[Ready]) -> list[Ready]:
        """Settle the invoice Sage's 409 is about; the rest goes again."""
        message = error.sage_message or str(error)
        duplicate = duplicate_in_message(message)
        culprit: Ready | None = None
        if duplicate:
            culprit = next((r for r in pending
                            if (r.invoice.vendor_number, r.invoice.document_number) == duplicate),
                           None)
        if culprit is None:
            named = [r for r in pending if f"'{r.invoice.document_number}'" in message]
            culprit = named[0] if len(named) == 1 else None
        if culprit is None and len(pending) == 1:
            culprit = pending[0]
        if culprit is None:
            # Sage did not say which invoice: halve until it does.
            half = len(pending) // 2
            self.logger.warning("Sage refused a batch of %d invoices (%s) without naming one; "
                                "splitting it", len(pending), shorten(message, 200))
            self._write(pending[:half])
            self._write(pending[half:])
            return []
        invoice = culprit.invoice
        found: DocumentRef | None = None
        if duplicate:
            found = self.sage.find_anywhere(invoice.vendor_number, invoice.document_number)
        if found is not None:
            self.run.already_there(invoice.source_id, found, culprit.prepared.payload,
                                   invoice.document_number, "vendor and document number")
        else:
            self.run.rejected(invoice.source_id, invoice.company,
                              f"Sage 300 refused the invoice: {' '.join(message.split())}",
                              culprit.prepared.payload, culprit.prepared.label)
        self.finished(culprit.prepared)
        return [r for r in pending if r is not culprit]


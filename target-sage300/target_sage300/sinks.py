"""The ap_invoices sink: contract check per record, then Sage 300 AP invoice batches.

hotglue's split: :meth:`preprocess_record` maps and checks the contract with no I/O (line
renames, type code, signs: ``contract.py``), so a record that cannot be mapped is rejected
alone with its field;
:meth:`process_batch` does the lookups (cached for the run), the exactly-once check and the
writes, recording one outcome per invoice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from singer_sdk.sinks import BatchSink

from ml_connector_core.ledger import to_jsonable

from .batches import BatchWriter, Prepared, Ready
from .client import CompanyNotFound, DocumentRef, SageCompany
from .coding import Rejected, code_invoice
from .contract import (
    MAX_REPORTED,
    STREAM,
    APInvoice,
    ContractViolation,
    parse_invoice,
    source_id_of,
)
from .mapping import MappingFailed
from .tax import MAPPING_SAGE, invoice_tax

if TYPE_CHECKING:
    from .target import TargetSage300


def _jsonable(record: Any) -> Any:
    try:
        return to_jsonable(record)
    except TypeError:
        return {"unstorable_record": repr(record)[:10_000]}


class APInvoicesSink(BatchSink):
    """Creates one Sage 300 AP invoice per ap_invoices record, exactly once."""

    def __init__(self, target: TargetSage300, stream_name: str, schema: dict,
                 key_properties: list[str] | None) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        self.target = target

    @property
    def max_size(self) -> int:
        # Buffer several Sage batches' worth so each company's batches fill up; checkpoints
        # still follow every Sage batch, so a crash loses at most the batch in flight.
        return int(self.config.get("batch_size_rows") or 10 * self.target.batch_size)

    # The contract check in preprocess_record replaces the SDK's validation against the
    # SCHEMA message and its timestamp parsing (which turns an unparseable date into the
    # maximum date): a bad record must be rejected alone, with its field named.
    def _validate_and_parse(self, record: dict) -> dict:
        return record

    # A missing source_id is that record's contract violation, not a reason to stop the run.
    def _singer_validate_message(self, record: dict) -> None:
        return None

    def preprocess_record(self, record: dict, context: dict) -> dict:
        """Check the contract (no I/O); the outcome is settled in process_batch."""
        seq, number = self.target.next_record_number()
        contract = self.target.contract
        invoice: APInvoice | None = None
        if isinstance(record, MappingFailed):
            violation = "; ".join(
                f"field {contract.label(name)}: the stream map expression failed on this "
                f"record ({why})" for name, why in record.failures[:MAX_REPORTED])
        else:
            try:
                invoice, violation = parse_invoice(record, contract), None
            except ContractViolation as exc:
                violation = str(exc)
        prepared = Prepared(seq=seq, number=number, payload=_jsonable(record),
                            source_id=source_id_of(record), invoice=invoice,
                            violation=violation)
        self.target.unfinished.add(seq)
        return {"prepared": prepared}

    def process_batch(self, context: dict) -> None:
        items: list[Prepared] = [item["prepared"] for item in context.get("records", [])]
        try:
            self._process(items)
            self.target.invoice_run.flush()
        except BaseException as exc:
            run = self.target.invoice_run
            unfinished = [p.invoice.source_id for p in items
                          if p.seq in self.target.unfinished and p.invoice is not None]
            run.failed(unfinished, exc)
            self.target.write_checkpoint()  # keep what was settled before the failure
            raise

    def _finished(self, prepared: Prepared) -> None:
        self.target.unfinished.discard(prepared.seq)

    def _process(self, items: list[Prepared]) -> None:
        run = self.target.invoice_run
        by_company: dict[str, list[Prepared]] = {}
        for prepared in items:
            first = run.keys.first_record(prepared.source_id) if prepared.source_id else None
            if first is not None:
                run.duplicate_in_run(prepared.source_id or "", prepared.label, first,
                                     prepared.payload)
                self._finished(prepared)
                continue
            if prepared.source_id:
                run.keys.add_source(prepared.source_id, prepared.number)
            if prepared.invoice is None:
                company = prepared.payload.get("company") if isinstance(prepared.payload,
                                                                         dict) else None
                run.rejected(prepared.source_id, company if isinstance(company, str) else None,
                             prepared.violation or "invalid record", prepared.payload,
                             prepared.label)
                self._finished(prepared)
                continue
            by_company.setdefault(prepared.invoice.company, []).append(prepared)
        for company, prepared_list in by_company.items():
            self._write_company(company, prepared_list)

    def _write_company(self, company: str, items: list[Prepared]) -> None:
        run = self.target.invoice_run
        sage = run.company(company)
        try:
            sage.accounts  # noqa: B018 - the GL chart, loaded once per run and company
        except CompanyNotFound as exc:
            for prepared in items:
                assert prepared.invoice is not None
                run.rejected(prepared.invoice.source_id, company, str(exc), prepared.payload,
                             prepared.label)
                self._finished(prepared)
            return
        invoices = [p.invoice for p in items if p.invoice is not None]
        # The coding asks for each vendor and PO: looked up here in bulk, not one by one.
        sage.load_vendors(invoice.vendor_number for invoice in invoices)
        sage.load_orders(line.po_number for invoice in invoices for line in invoice.lines
                         if line.po_number)
        existing = self._existing(invoices, sage)
        ready: list[Ready] = []
        for prepared in items:
            invoice = prepared.invoice
            assert invoice is not None
            found = existing.get(invoice.source_id)
            if found is not None:
                ref, how = found
                if ref.source_id and ref.source_id != invoice.source_id:
                    # Same vendor invoice twice in the source: say so, do not hide it.
                    run.rejected(invoice.source_id, company,
                                 f"Document number {invoice.document_number} for vendor "
                                 f"{invoice.vendor_number} is already in Sage 300 company "
                                 f"{company}, batch {ref.batch} entry {ref.entry}, as invoice "
                                 f"{ref.source_id}", prepared.payload, prepared.label)
                    self._finished(prepared)
                    continue
                run.already_there(invoice.source_id, ref, prepared.payload,
                                  invoice.document_number, how)
                self._finished(prepared)
                continue
            try:
                lines = code_invoice(invoice, sage, self.target.account_map)
                tax = invoice_tax(invoice, lines, sage, self.target.tax_tolerance) \
                    if self.target.tax_mapping == MAPPING_SAGE else None
            except Rejected as exc:
                run.rejected(invoice.source_id, company, exc.reason, prepared.payload,
                             prepared.label)
                self._finished(prepared)
                continue
            document = (company, invoice.vendor_number, invoice.document_number)
            other = run.keys.document_owner(*document)
            if other is not None:
                run.rejected(invoice.source_id, company,
                             f"Document number {invoice.document_number} for vendor "
                             f"{invoice.vendor_number} is also invoice {other} in this run",
                             prepared.payload, prepared.label)
                self._finished(prepared)
                continue
            run.keys.add_document(*document, invoice.source_id)
            ready.append(Ready(prepared, invoice, lines, tax))
        if run.dry_run:  # every check is done; only the batch POST is left out
            for item in ready:
                run.would_create(item.invoice.source_id)
                self._finished(item.prepared)
            return
        BatchWriter(run, sage, batch_size=self.target.batch_size,
                    post_batches=bool(self.config.get("post_batches", False)),
                    idempotency_field=sage.idempotency_field,
                    checkpoint=self.target.write_checkpoint, finished=self._finished,
                    logger=self.logger).write(ready)

    def _existing(self, invoices: list[APInvoice], sage: SageCompany
                  ) -> dict[str, tuple[DocumentRef, str]]:
        """Which of these invoices are already in Sage, and how we know: the ledger, then
        Sage by source id, then Sage by vendor + document number (open connector batches,
        then posted documents). A few bulk look-ups for the lot, not a few per invoice."""
        found: dict[str, tuple[DocumentRef, str]] = {}
        run = self.target.invoice_run
        in_ledger = run.ledger.outcomes(STREAM, [invoice.source_id for invoice in invoices],
                                        system=run.system(sage.company))
        unknown: list[APInvoice] = []
        for invoice in invoices:
            key = in_ledger[invoice.source_id].target_key \
                if invoice.source_id in in_ledger else None
            ref = DocumentRef.from_target_key(key) if key else None
            if ref is not None and ref.company == invoice.company:
                found[invoice.source_id] = ref, "the ledger"
            elif (ref := sage.find_by_source(invoice.source_id)) is not None:
                found[invoice.source_id] = ref, f"{sage.idempotency_field} {invoice.source_id}"
            else:
                unknown.append(invoice)
        documents = sage.find_documents([(invoice.vendor_number, invoice.document_number)
                                         for invoice in unknown])
        for invoice in unknown:
            ref = documents.get((invoice.vendor_number, invoice.document_number))
            if ref is not None:
                found[invoice.source_id] = ref, "vendor and document number"
        return found

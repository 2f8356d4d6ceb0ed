"""One Sage 300 company as target-sage300 sees it: cached lookups and the batch calls.

Every lookup is made at most once per run (hotglue's class-level caches, here per company):
vendors and purchase orders in bulk (an ``or`` filter of ~15 keys per request, as long as IIS
takes a query string) for each batch of invoices, the GL chart, the tax tables and the
connector's own open batches once. Values put into ``$filter`` go through ``odata_literal``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from ml_connector_core.sage300_api import Sage300Client, Sage300Error, odata_literal
from ml_connector_core.sage300_fields import FieldNames
from ml_connector_core.tax_codes import TaxTables, read_tax_tables

#: Every batch this connector creates starts with this; its own batches are found by it.
BATCH_PREFIX = "ml-connector"
#: Most characters of one encoded $filter: IIS refuses a query string over 2,048 (its
#: requestFiltering default, answered 404.15), and the rest of the URL needs some.
MAX_FILTER = 1_700
BATCHES, POSTED, VENDORS, ORDERS, ACCOUNTS = ("AP/APInvoiceBatches", "AP/APPostedDocuments",
                                              "AP/APVendors", "PO/POPurchaseOrders",
                                              "GL/GLAccounts")

K = TypeVar("K")

# Sage's duplicate message (reference §5): "Document number 'X' for vendor Y already exists."
_DUPLICATE = re.compile(r"Document number '(?P<document>.*?)' for vendor (?P<vendor>\S+?)\.?\s"
                        r".*already exists", re.S)


@dataclass(frozen=True)
class DocumentRef:
    """Where an AP document lives in Sage: a batch entry (open or posted)."""

    company: str
    batch: int | None
    entry: int | None
    source_id: str | None = None  # the idempotency optional field, when the document has it
    posted: bool = False

    @property
    def target_key(self) -> str:
        return f"{self.company}/{self.batch}/{self.entry}"

    @classmethod
    def from_target_key(cls, key: str) -> DocumentRef | None:
        parts = key.split("/")
        if len(parts) != 3:
            return None
        company, batch, entry = parts
        return cls(company, _int(batch), _int(entry))


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _document_clause(key: tuple[str, str], names: FieldNames) -> str:
    vendor, document = key
    return (f"({names.wire(POSTED, 'VendorNumber')} eq {odata_literal(vendor)} and "
            f"{names.wire(POSTED, 'DocumentNumber')} eq {odata_literal(document)})")


def _filter_chunks(keys: list[K], clause: Callable[[K], str]) -> list[list[K]]:
    """The keys split so that each chunk's ``or`` filter of ``clause(key)``, encoded, fits
    MAX_FILTER."""
    chunks: list[list[K]] = []
    size = 0
    for key in keys:
        length = len(quote(clause(key), safe="")) + len(quote(" or "))
        if not chunks or size + length > MAX_FILTER:
            chunks.append([])
            size = 0
        chunks[-1].append(key)
        size += length
    return chunks


class CompanyNotFound(Exception):
    """Sage 300 answered 404 for the company's resources: no such company database."""


def duplicate_in_message(message: str | None) -> tuple[str, str] | None:
    """(vendor, document number) if Sage's message says that document already exists."""
    match = _DUPLICATE.search(message or "")
    return (match["vendor"], match["document"]) if match else None


class SageCompany:
    """Cached lookups and writes for one Sage 300 company during one run."""

    def __init__(self, client: Sage300Client, writer: Sage300Client, *,
                 idempotency_field: str, cost_center_field: str,
                 names: FieldNames | None = None) -> None:
        """``client`` for look-ups; ``writer``, the same company with the write timeout;
        ``names``, the install's own names of some fields (``field_names``)."""
        self.company = client.company
        self.client = client
        self.writer = writer
        self.idempotency_field = idempotency_field
        self.cost_center_field = cost_center_field
        self.names = names or FieldNames()
        self._vendors: dict[str, dict[str, Any] | None] = {}
        self._orders: dict[str, dict[str, Any] | None] = {}
        self._accounts: dict[str, dict[str, Any]] | None = None
        self._tax_tables: TaxTables | None = None
        self._formatted: dict[str, str] = {}
        self._by_source: dict[str, DocumentRef] | None = None
        self._by_document: dict[tuple[str, str], DocumentRef] = {}

    # -- reads in the install's names, answered in the connector's -------------------------

    def _field(self, resource: str, name: str) -> str:
        return self.names.wire(resource, name)

    def _records(self, resource: str, *, filter: str | None = None,  # noqa: A002
                 select: list[str] | None = None, top: int | None = None
                 ) -> Iterator[dict[str, Any]]:
        wire = [self._field(resource, name) for name in select] if select else None
        for record in self.client.iter_records(resource, filter=filter, select=wire, top=top):
            yield self.names.from_wire(resource, record)

    def _entity(self, resource: str, key: Any) -> dict[str, Any] | None:
        return self.names.from_wire(resource, self.client.get_entity(resource, key))

    # -- master data -------------------------------------------------------------------------

    def vendor(self, number: str) -> dict[str, Any] | None:
        if number not in self._vendors:
            self.load_vendors([number])
        return self._vendors[number]

    def purchase_order(self, number: str) -> dict[str, Any] | None:
        if number not in self._orders:
            self.load_orders([number])
        return self._orders[number]

    def load_vendors(self, numbers: Iterable[str]) -> None:
        """Look up every vendor not known yet, ~15 per request (an ``or`` filter)."""
        self._load(VENDORS, "VendorNumber", numbers, self._vendors)

    def load_orders(self, numbers: Iterable[str]) -> None:
        """Look up every purchase order not known yet, ~15 per request."""
        self._load(ORDERS, "PurchaseOrderNumber", numbers, self._orders)

    def _load(self, resource: str, key: str, wanted: Iterable[str],
              known: dict[str, dict[str, Any] | None]) -> None:
        asked = [value for value in dict.fromkeys(wanted) if value not in known]
        field = self._field(resource, key)

        def clause(value: str) -> str:
            return f"{field} eq {odata_literal(value)}"
        for chunk in _filter_chunks(asked, clause):
            chunk_keys = set(chunk)
            for record in self._records(resource, filter=" or ".join(map(clause, chunk))):
                found = str(record.get(key) or "").strip()
                if found in chunk_keys and known.get(found) is None:
                    known[found] = record
        for value in asked:
            known.setdefault(value, None)  # not in Sage: asked once per run

    @property
    def accounts(self) -> dict[str, dict[str, Any]]:
        """The GL chart by unformatted account, loaded once per run."""
        if self._accounts is None:
            fields = ["UnformattedAccount", "AccountNumber", "Description", "Status",
                      self.cost_center_field]
            try:
                records = list(self._records(ACCOUNTS, select=fields))
            except Sage300Error as exc:
                if exc.status == 404:
                    raise CompanyNotFound(
                        f"Sage 300 company {self.company} does not exist (Sage answered 404 "
                        f"{exc.code or ''} for its GL accounts)") from exc
                raise
            self._accounts = {a["UnformattedAccount"].strip(): a for a in records}
            self._formatted = {(a.get("AccountNumber") or "").strip(): key
                               for key, a in self._accounts.items()}
        return self._accounts

    @property
    def tax_tables(self) -> TaxTables:
        """The purchase tax groups, authorities and rates, loaded once per run (three GETs)
        when the first invoice with a tax code comes."""
        if self._tax_tables is None:
            self._tax_tables = read_tax_tables(self.client, self.names)
        return self._tax_tables

    def account(self, code: str) -> dict[str, Any] | None:
        """A GL account by unformatted id, formatted number, or formatted without separators."""
        accounts = self.accounts
        if code in accounts:
            return accounts[code]
        if code in self._formatted:
            return accounts[self._formatted[code]]
        return accounts.get(re.sub(r"[^A-Za-z0-9]", "", code))

    def display(self, unformatted: str) -> str:
        """The account as people read it (formatted, e.g. 6100-900)."""
        account = self.accounts.get(unformatted)
        return (account.get("AccountNumber") or unformatted).strip() if account else unformatted

    def cost_center(self, account: dict[str, Any]) -> str | None:
        return (account.get(self.cost_center_field) or "").strip() or None

    # -- what already exists -----------------------------------------------------------------

    def _load_connector_batches(self) -> None:
        """Index the connector's not-yet-posted batches by source id and vendor + document."""
        self._by_source = {}
        query = (f"startswith({self._field(BATCHES, 'Description')},"
                 f"{odata_literal(BATCH_PREFIX)}) and {self._unposted}")
        for batch in self._records(BATCHES, filter=query):
            self._remember_batch(batch)

    @property
    def _unposted(self) -> str:
        """Batches whose entries are documents in Sage (posted ones are found in
        APPostedDocuments)."""
        status = self._field(BATCHES, "BatchStatus")
        return f"{status} ne 'Posted' and {status} ne 'Deleted'"

    def documents_in(self, batch: dict[str, Any]) -> list[tuple[DocumentRef, tuple[str, str]]]:
        """Each entry of a batch as Sage answered it: where it is, and its (vendor, document
        number)."""
        found = []
        for invoice in batch.get("Invoices") or []:
            source_id = next((o.get("Value", "").strip()
                              for o in invoice.get("InvoiceOptionalFields") or []
                              if o.get("OptionalField") == self.idempotency_field), None)
            ref = DocumentRef(self.company, _int(batch.get("BatchNumber")),
                              _int(invoice.get("EntryNumber")), source_id or None)
            found.append((ref, ((invoice.get("VendorNumber") or "").strip(),
                                (invoice.get("DocumentNumber") or "").strip())))
        return found

    def _remember_batch(self, batch: dict[str, Any]) -> None:
        """Index a batch found in Sage. Batches this run creates are not added: a source id or
        document repeated within the run is caught before it gets here (the run's duplicate
        checks), and an index growing with the run would make memory grow with it."""
        assert self._by_source is not None
        for ref, document in self.documents_in(batch):
            if ref.source_id:
                self._by_source[ref.source_id] = ref
            self._by_document[document] = ref

    def find_by_source(self, source_id: str) -> DocumentRef | None:
        if self._by_source is None:
            self._load_connector_batches()
        assert self._by_source is not None
        return self._by_source.get(source_id)

    def find_by_document(self, vendor: str, document: str) -> DocumentRef | None:
        """In the connector's open batches, then among posted documents (one call)."""
        return self.find_documents([(vendor, document)]).get((vendor, document))

    def find_documents(self, documents: list[tuple[str, str]]
                       ) -> dict[tuple[str, str], DocumentRef]:
        """Which of these (vendor, document number) pairs Sage already holds: in the
        connector's open batches, then among posted documents, as many pairs per request as
        fit a query string IIS takes (``or`` of pairs, ~15). Not cached: each new invoice is
        asked once (a repeat within the run is caught before it gets here)."""
        if self._by_source is None:
            self._load_connector_batches()
        found = {key: self._by_document[key] for key in documents if key in self._by_document}
        asked = list(dict.fromkeys(key for key in documents if key not in found))
        def clause(key: tuple[str, str]) -> str:
            return _document_clause(key, self.names)
        for chunk in _filter_chunks(asked, clause):
            query = " or ".join(clause(key) for key in chunk)
            for posted in self._records(POSTED, filter=query):
                key = ((posted.get("VendorNumber") or "").strip(),
                       (posted.get("DocumentNumber") or "").strip())
                if key in chunk and key not in found:
                    found[key] = DocumentRef(self.company, _int(posted.get("BatchNumber")),
                                             _int(posted.get("EntryNumber")), posted=True)
        return found

    def find_anywhere(self, vendor: str, document: str) -> DocumentRef | None:
        """After Sage said the document exists: also look in batches other people keyed."""
        found = self.find_by_document(vendor, document)
        if found:
            return found
        for batch in self._records(BATCHES, filter=self._unposted):
            for invoice in batch.get("Invoices") or []:
                if ((invoice.get("VendorNumber") or "").strip() == vendor
                        and (invoice.get("DocumentNumber") or "").strip() == document):
                    return DocumentRef(self.company, _int(batch.get("BatchNumber")),
                                       _int(invoice.get("EntryNumber")))
        return None

    # -- writes ------------------------------------------------------------------------------

    def batch_by_description(self, description: str) -> dict[str, Any] | None:
        found = list(self._records(
            BATCHES,
            filter=f"{self._field(BATCHES, 'Description')} eq {odata_literal(description)}"))
        return found[0] if found else None

    def create_batch(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST one batch; UnknownOutcome on a timeout (the caller reconciles)."""
        created = self.writer.create(BATCHES, self.names.to_wire(BATCHES, payload))
        return self.names.from_wire(BATCHES, created)

    def post_batch(self, batch: int) -> dict[str, Any] | None:
        """Post one ready batch; the batch as Sage holds it afterwards."""
        self.writer.process("AP/APPostInvoices", self.names.to_wire("AP/APPostInvoices", {
            "ProcessAllBatches": "Donotpostallbatches", "FromBatch": batch, "ToBatch": batch}))
        return self._entity(BATCHES, batch)

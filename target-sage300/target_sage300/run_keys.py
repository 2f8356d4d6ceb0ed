"""The run's duplicate checks, kept on disk so memory does not grow with the run.

Within one run the target must know every source id it has taken (a repeat is rejected, the
first one's outcome stands) and every (company, vendor, document number) it has sent to Sage
(a second invoice with the same vendor document is rejected with a clear reason, instead of
bouncing off Sage's duplicate check). Held in dicts, that was ~430 bytes per invoice, 43 MB
at 100,000; ml_connector_core.run_keys keeps them in a temporary SQLite file.
"""

from __future__ import annotations

import json

from ml_connector_core.run_keys import RunKeys

SOURCES = "sources"  # source id -> the number of the record that brought it first
DOCUMENTS = "documents"  # [company, vendor, document] -> the source id that sent it


class InvoiceRunKeys(RunKeys):
    """Source ids and vendor documents seen in this run."""

    def __init__(self) -> None:
        super().__init__(SOURCES, DOCUMENTS)

    def first_record(self, source_id: str) -> int | None:
        """The record number under which `source_id` first came in this run, if it did."""
        record = self.first(SOURCES, source_id)
        return int(record) if record is not None else None

    def add_source(self, source_id: str, record: int) -> None:
        self.add(SOURCES, source_id, record)

    def document_owner(self, company: str, vendor: str, document: str) -> str | None:
        """The source id of the invoice this run already sent with that vendor document."""
        owner = self.first(DOCUMENTS, _document_key(company, vendor, document))
        return str(owner) if owner is not None else None

    def add_document(self, company: str, vendor: str, document: str, source_id: str) -> None:
        self.add(DOCUMENTS, _document_key(company, vendor, document), source_id)


def _document_key(company: str, vendor: str, document: str) -> str:
    # JSON keeps the three parts apart whatever characters they hold.
    return json.dumps([company, vendor, document], ensure_ascii=False)

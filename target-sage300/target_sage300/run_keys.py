"""The run's duplicate checks, kept on disk so memory does not grow with the run.

Within one run the target must know every source id it has taken (a repeat is rejected, the
first one's outcome stands) and every (company, vendor, document number) it has sent to Sage
(a second invoice with the same vendor document is rejected with a clear reason, instead of
bouncing off Sage's duplicate check). Held in dicts, that was ~430 bytes per invoice, 43 MB
at 100,000. Here both live in a private temporary SQLite database: SQLite keeps a bounded
page cache (2 MB) in memory and the rest in a file it deletes when the run closes it. A check
or an insert costs a few microseconds.
"""

from __future__ import annotations

import sqlite3


class RunKeys:
    """Source ids and vendor documents seen in this run."""

    def __init__(self) -> None:
        # "": a private on-disk database, deleted when the connection closes (SQLite docs,
        # "Temporary Databases"). Autocommit: nothing here outlives the run.
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.executescript("""
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            CREATE TABLE sources (source_id TEXT PRIMARY KEY, record INTEGER NOT NULL)
                WITHOUT ROWID;
            CREATE TABLE documents (company TEXT, vendor TEXT, document TEXT,
                                    source_id TEXT NOT NULL,
                                    PRIMARY KEY (company, vendor, document)) WITHOUT ROWID;
        """)

    def first_record(self, source_id: str) -> int | None:
        """The record number under which `source_id` first came in this run, if it did."""
        row = self._db.execute("SELECT record FROM sources WHERE source_id = ?",
                               (source_id,)).fetchone()
        return row[0] if row else None

    def add_source(self, source_id: str, record: int) -> None:
        self._db.execute("INSERT OR IGNORE INTO sources VALUES (?, ?)", (source_id, record))

    def document_owner(self, company: str, vendor: str, document: str) -> str | None:
        """The source id of the invoice this run already sent with that vendor document."""
        row = self._db.execute(
            "SELECT source_id FROM documents WHERE company = ? AND vendor = ? AND document = ?",
            (company, vendor, document)).fetchone()
        return row[0] if row else None

    def add_document(self, company: str, vendor: str, document: str, source_id: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO documents VALUES (?, ?, ?, ?)",
                         (company, vendor, document, source_id))

    def close(self) -> None:
        self._db.close()

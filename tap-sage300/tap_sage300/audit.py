"""`read` entries in the audit ledger (BRIEF decision 7), one per record.

In the project's ledger by default, like the other plugins' entries (``ledger_url``, else
``ML_CONNECTOR_LEDGER_URL``, else .ml-connector/ledger.sqlite): the trail of a record starts
at its read in Sage. ``ledger_url: off`` turns it off (a warehouse load). Entries go in one transaction per ~1,000 records
and at the end of every company's partition: a commit per 100-record page cost a quarter of
the ledger's time. A crash loses at most those uncommitted `read` entries, which only say
what was read: the pages are read again, and outcomes are the target's entries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ml_connector_core.systems import sage300_system

if TYPE_CHECKING:
    from singer_sdk import Stream

    from ml_connector_core.ledger import Ledger
    from ml_connector_core.redaction import Redactor

PLUGIN = "tap-sage300"
# Entries per transaction (about ten Sage pages).
FLUSH_ENTRIES = 1000


class ReadAudit:
    """Collects ledger entries for the current page; a no-op when there is no ledger."""

    def __init__(self, ledger: Ledger | None = None, run_id: str | None = None,
                 config: Mapping[str, Any] | None = None) -> None:
        self.ledger = ledger
        self.run_id = run_id
        self._config = config or {}
        self._systems: dict[str, str] = {}  # company -> its system identity
        self.counts: Counter[str] = Counter()
        if ledger is not None:
            from ml_connector_core.ledger import SAGE_TO_BASWARE, Entry

            self._entry, self._direction = Entry, SAGE_TO_BASWARE
        self._pending: list[Any] = []  # ml_connector_core.ledger.Entry

    @classmethod
    def open(cls, url: str, secrets: Iterable[str] | Redactor,
             config: Mapping[str, Any]) -> ReadAudit:
        from ml_connector_core.ledger import Ledger  # SQLAlchemy: only when a ledger is used

        ledger = Ledger.open(url, secrets=secrets)
        audit = cls(ledger, ledger.start_run(PLUGIN).run_id, config)
        # Reads from before the ledger knew systems: their company is the key's first part.
        ledger.claim_unassigned(PLUGIN, lambda entry: audit.system(
            str(entry.source_key).split("/", 1)[0]))
        return audit

    def system(self, company: str) -> str:
        """The Sage 300 database (Web API + company) a record of `company` was read from."""
        found = self._systems.get(company)
        if found is None:
            found = self._systems[company] = sage300_system(self._config, company)
        return found

    @property
    def enabled(self) -> bool:
        return self.ledger is not None

    def add(self, stream: Stream, source_key: str, record: dict[str, Any],
            action: str = "read", error: str | None = None) -> None:
        """``action`` is an ml_connector_core.ledger.Action value (read, rejected...)."""
        if self.ledger is None:
            return
        # The SCHEMA goes with every entry (for `audit replay`); the ledger stores it once
        # per run and stream.
        self._pending.append(self._entry(
            run_id=self.run_id or "", stream=stream.name, source_key=source_key, action=action,
            direction=self._direction, payload=record, error=error,
            key_properties=stream.primary_keys, schema=stream.schema,
            system=self.system(str(record.get("company_id") or source_key.split("/", 1)[0])),
        ))
        self.counts[f"{stream.name}:{action}"] += 1

    def flush_if_full(self) -> None:
        if len(self._pending) >= FLUSH_ENTRIES:
            self.flush()

    def flush(self) -> None:
        if self.ledger is not None and self._pending:
            pending, self._pending = self._pending, []
            self.ledger.record_many(pending)

    def finish(self, status: str, error: str | None = None) -> None:
        if self.ledger is None or self.run_id is None:
            return
        try:
            self.flush()
        finally:
            summary: dict[str, Any] = {"records": dict(sorted(self.counts.items()))}
            if error:
                summary["error"] = error
            self.ledger.finish_run(self.run_id, status, summary)
            self.ledger.close()

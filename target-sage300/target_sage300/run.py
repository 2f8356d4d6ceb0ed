"""One run of target-sage300: its Sage companies, its outcomes, its ledger entries.

Every invoice ends the run with exactly one outcome, recorded in the ledger as its entry's
``reply``, which tap-basware answers to Basware on its next run (the emitted STATE names this
ledger run: ``ml_connector_core.outcome_handover``):

- ``created``: a new entry in a batch this run created (batch and entry numbers);
- ``unchanged``: it was already in Sage ("already there": found by source id or by vendor +
  document number, or Sage's duplicate 409), with the batch and entry it is in;
- ``rejected``: with a reason a person can act on; nothing was created.

An invoice caught in a technical failure gets no outcome (only a ``failed`` ledger entry): it
stays unanswered in the source's queue and the next run looks it up before anything else.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ml_connector_core.dryrun import CREATE, REJECT, SKIP, ledger_class
from ml_connector_core.ledger import BASWARE_TO_SAGE, Action, Entry
from ml_connector_core.run_summary import RunCounts
from ml_connector_core.sage300_api import Sage300Client, Sage300Error
from ml_connector_core.sage300_fields import Finding, InstallMismatch, verify_install
from ml_connector_core.settings import (
    METADATA_CHECK_OFF,
    configured_ledger_url,
    cost_center_field,
    dry_run_report,
    metadata_check,
    sage300_client,
    sage300_field_names,
    sage300_retry_policy,
)
from ml_connector_core.systems import sage300_system

from .client import DocumentRef, SageCompany
from .coding import MAX_REASON, shorten
from .contract import STREAM
from .run_keys import InvoiceRunKeys
from .sage_fields import PLUGIN, field_uses, left_out

WRITE_TIMEOUT = 120  # seconds for a batch POST or a posting run


@dataclass(frozen=True)
class Outcome:
    source_id: str
    company: str | None
    action: Action  # CREATED, UNCHANGED or REJECTED
    message: str
    batch: int | None = None
    entry: int | None = None

    @property
    def success(self) -> bool:
        return self.action != Action.REJECTED

    def reply(self) -> dict[str, Any]:
        """The shape tap-basware turns into a Basware transfer response."""
        return {"success": self.success, "message": shorten(self.message, MAX_REASON),
                "batch": self.batch, "entry": self.entry, "company": self.company}


def created_message(ref: DocumentRef, status: str = "ready to post") -> str:
    return (f"Created in Sage 300 company {ref.company}, batch {ref.batch} entry {ref.entry} "
            f"({status})")


def already_there_message(ref: DocumentRef, how: str) -> str:
    where = "posted document" if ref.posted else "entry"
    return (f"Already in Sage 300 company {ref.company}, batch {ref.batch} {where} "
            f"{ref.entry} (found by {how})")


def flat_timeouts(config: dict[str, Any]) -> dict[str, Any]:
    """The config with the deprecated ``timeouts`` object's values as connect_timeout,
    read_timeout and write_timeout: a config that still has the object meant them."""
    old = config.get("timeouts") or {}
    return {**config, **{f"{name}_timeout": old[name] for name in ("connect", "read", "write")
                         if old.get(name) is not None}}


def check_install(config: dict[str, Any], client: Sage300Client,
                  logger: logging.Logger) -> list[Finding]:
    """Every field this target uses, against the install's $metadata (``client``'s company):
    a missing one fails the run (InstallMismatch) before anything is written; a missing
    optional one is a warning, and the batches leave it out (sage_fields.left_out)."""
    if metadata_check(config) == METADATA_CHECK_OFF:
        return []
    uses = field_uses(config, cost_center_field(config))
    findings = verify_install(client, uses, sage300_field_names(config))
    for finding in findings:
        log = logger.error if finding.severity == "error" else logger.warning
        log("%s", finding.message())
    if any(finding.severity == "error" for finding in findings):
        raise InstallMismatch(PLUGIN, findings, str(config["base_url"]))
    return findings


class InvoiceRun:
    """Run-level state shared by every sink of the target (a schema change makes a new sink)."""

    def __init__(self, config: dict[str, Any], logger: logging.Logger,
                 secrets: list[str], install_findings: list[Finding] | None = None) -> None:
        """``install_findings``: the install's check, when the target made it already."""
        self.config = config
        self.logger = logger
        # A dry run judges every invoice like a real run, creates nothing and records nothing.
        self.dry_run = dry_run_report(config, PLUGIN, logger)
        self.ledger = ledger_class(bool(self.dry_run)).open(configured_ledger_url(config),
                                                            secrets=secrets)
        # Entries from before the ledger knew systems belong to the Sage 300 database
        # configured at the upgrade; their company is in the entry.
        self.ledger.claim_unassigned(PLUGIN, self._legacy_system)
        self.run = self.ledger.start_run(PLUGIN)
        self.run_id = self.run.run_id
        self.batch_label = uuid.UUID(self.run_id).hex[:8]
        self.replies = 0  # outcomes recorded for tap-basware to answer
        self._pending: list[Entry] = []  # settled, not yet written to the ledger (flush)
        self.counts: Counter[str] = Counter()
        self.unanswerable = 0  # rejected records whose source_id cannot be answered
        self.failed_count = 0  # invoices caught in a technical failure
        self.keys = InvoiceRunKeys()  # source ids and vendor documents already in this run
        self._companies: dict[str, SageCompany] = {}
        self.field_names = sage300_field_names(config)
        self.install_findings = install_findings  # None: checked with the first company
        # Optional fields the install lacks: the batches go without them.
        self.left_out = left_out(install_findings or [])
        self._batch_numbers: Counter[str] = Counter()
        timeouts = flat_timeouts(config)
        self.read_policy = sage300_retry_policy(timeouts)
        # Same stats object, so the summary counts reads and writes together.
        self.write_policy = dataclasses.replace(
            self.read_policy, read_timeout=float(timeouts.get("write_timeout") or WRITE_TIMEOUT))

    # -- Sage --------------------------------------------------------------------------------

    def company(self, company: str) -> SageCompany:
        if company not in self._companies:
            reader = sage300_client(self.config, company, policy=self.read_policy)
            if self.install_findings is None:
                self.check_install(reader)
            # Batch POSTs and posting runs are slow on a cold IIS pool: a longer read timeout.
            writer = sage300_client(self.config, company, policy=self.write_policy,
                                    session=reader.session)
            self._companies[company] = SageCompany(
                reader, writer,
                idempotency_field=self.config.get("idempotency_field") or "BWINVID",
                cost_center_field=cost_center_field(self.config), names=self.field_names)
        return self._companies[company]

    def check_install(self, client: Sage300Client) -> None:
        """Once per run, before the first look-up (unless the target did it before reading
        its input): see :func:`check_install`. A company Sage does not know (404) is left
        to reject its invoices as such; the install is checked through the next one."""
        try:
            self.install_findings = check_install(self.config, client, self.logger)
        except Sage300Error as exc:
            if exc.status != 404:
                raise
            return
        self.left_out = left_out(self.install_findings)

    def system(self, company: str | None) -> str | None:
        """The Sage 300 database (Web API + company) an invoice of `company` goes to."""
        return sage300_system(self.config, company) if company else None

    def _legacy_system(self, entry: Entry) -> str | None:
        company = (entry.target_key or "").split("/", 1)[0] if entry.target_key else None
        for holder in (entry.reply, entry.payload):
            if not company and isinstance(holder, dict):
                found = holder.get("company")
                company = found if isinstance(found, str) else None
        return self.system(company)

    def next_batch_description(self, company: str) -> str:
        """Unique per company and run: the key a lost batch response is reconciled by."""
        self._batch_numbers[company] += 1
        return f"ml-connector {self.batch_label} {company} #{self._batch_numbers[company]}"

    # -- outcomes ----------------------------------------------------------------------------

    def _entry(self, source_key: str, action: Action, payload: Any,
               company: str | None = None, **fields: Any) -> Entry:
        return Entry(run_id=self.run_id, stream=STREAM, source_key=source_key, action=action,
                     direction=BASWARE_TO_SAGE, payload=payload, system=self.system(company),
                     **fields)

    def created(self, source_id: str, ref: DocumentRef, payload: Any, document: str,
                message: str | None = None, note: str | None = None) -> Outcome:
        """``note``: how the document type was decided, when the amounts decided it (told to
        the source with the outcome: "...; a credit note: type code '380' (an invoice) with
        negative amounts")."""
        message = message or created_message(ref)
        outcome = Outcome(source_id, ref.company, Action.CREATED,
                          f"{message}; {note}" if note else message, ref.batch, ref.entry)
        self._settle(outcome, self._entry(
            source_id, Action.CREATED, payload, ref.company, target_key=ref.target_key,
            sage_batch=str(ref.batch), sage_entry=str(ref.entry), sage_document=document))
        return outcome

    def already_there(self, source_id: str, ref: DocumentRef, payload: Any, document: str,
                      how: str) -> Outcome:
        outcome = Outcome(source_id, ref.company, Action.UNCHANGED,
                          already_there_message(ref, how), ref.batch, ref.entry)
        self._settle(outcome, self._entry(
            source_id, Action.UNCHANGED, payload, ref.company, target_key=ref.target_key,
            sage_batch=str(ref.batch), sage_entry=str(ref.entry), sage_document=document))
        self.logger.info("ap_invoices %s: %s", source_id, outcome.message)
        return outcome

    def would_create(self, source_id: str) -> None:
        """Dry run: the invoice passed every check and is not in Sage; a real run creates it."""
        assert self.dry_run is not None
        self.counts["would create"] += 1
        self.dry_run.add(STREAM, source_id, CREATE)

    def rejected(self, source_id: str | None, company: str | None, reason: str, payload: Any,
                 label: str) -> None:
        """A business rejection. Without a usable source_id it cannot be answered upstream."""
        self.logger.warning("ap_invoices %s rejected: %s", label, reason)
        entry = self._entry(source_id or label, Action.REJECTED, payload, company, error=reason)
        if self.dry_run and source_id is None:
            self.dry_run.add(STREAM, label, REJECT, reason)
        if source_id is None:
            self._pending.append(entry)
            self.counts["rejected"] += 1
            self.unanswerable += 1
            return
        self._settle(Outcome(source_id, company, Action.REJECTED, shorten(reason)), entry)

    def duplicate_in_run(self, source_id: str, label: str, first: int, payload: Any) -> None:
        """The same source id twice in one run: the first one's outcome stands (it is the one
        answered upstream); the repeat is only logged and recorded."""
        reason = (f"source_id {source_id} appears more than once in this run (first as record "
                  f"{first}); only the first is processed")
        self.logger.warning("ap_invoices %s rejected: %s", label, reason)
        self._pending.append(self._entry(source_id, Action.REJECTED, payload, error=reason))
        self.counts["duplicate in run"] += 1
        if self.dry_run:
            self.dry_run.add(STREAM, label, REJECT, reason, source_id)

    def failed(self, source_ids: list[str], error: BaseException) -> None:
        """Invoices caught in a technical failure: no outcome, the next run retries them."""
        entries = [self._entry(source_id, Action.FAILED, None, error=error)
                   for source_id in source_ids]
        self.failed_count += len(source_ids)
        try:
            self.flush()  # what was settled before the failure stays settled
            self.ledger.record_many(entries)
        except Exception:  # the ledger may be what failed; the run fails loudly anyway
            self.logger.exception("could not record the failed invoices in the ledger")

    def _settle(self, outcome: Outcome, entry: Entry) -> None:
        if self.dry_run:
            self.dry_run.add(STREAM, outcome.source_id,
                             SKIP if outcome.action == Action.UNCHANGED else REJECT,
                             outcome.message)
        self._pending.append(dataclasses.replace(entry, reply=outcome.reply()))
        self.replies += 1
        self.counts[{Action.CREATED: "created", Action.UNCHANGED: "already there",
                     Action.REJECTED: "rejected"}[outcome.action]] += 1

    # -- end ---------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the entries settled since the last flush, in one transaction: after each
        Sage batch and each sink batch, and before any STATE (which names this run, so the
        tap may read its replies) goes out. A crash before a flush loses only entries whose
        invoices the next run finds in Sage by BWINVID, or judges again."""
        if self._pending:
            self.ledger.record_many(self._pending)
            self._pending = []

    def summary(self) -> dict[str, Any]:
        stats = self.read_policy.stats
        return {"invoices": sum(self.counts.values()), **dict(self.counts),
                "unanswerable": self.unanswerable, "http_attempts": stats.attempts,
                "http_retries": stats.retries}

    def summary_line(self, status: str) -> str:
        order = ["created", "would create", "already there", "rejected", "duplicate in run"]
        parts = [f"{self.counts[key]} {key}" for key in order if self.counts[key]]
        return (f"target-sage300 {status}: {sum(self.counts.values())} ap_invoices"
                f"{': ' + ', '.join(parts) if parts else ''}; ledger run {self.run_id}")

    def run_counts(self, received: int) -> RunCounts:
        """For the summary line both targets end with (core run_summary); a repeated source
        id counts as rejected: it is logged and recorded as such."""
        return RunCounts(received=received, written=self.counts["created"],
                         unchanged=self.counts["already there"],
                         rejected=self.counts["rejected"] + self.counts["duplicate in run"],
                         failed=self.failed_count,
                         extra={"would create": self.counts["would create"]})  # dry run

    def finish(self, status: str) -> None:
        try:
            self.flush()
            self.ledger.finish_run(self.run_id, status, self.summary())
        finally:
            self.keys.close()
            self.ledger.close()
            if self.dry_run:
                self.logger.info(self.dry_run.summary_line())
                self.dry_run.close()

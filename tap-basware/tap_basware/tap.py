"""tap-basware: approved invoices from Basware's accountingDocuments queue, plus vendors and
request statuses for reconciliation.

The tap holds what all its streams share for one run: one BaswareClient (one OAuth2 token,
refreshed before expiry and on a 401) and one audit-ledger run. Before any stream reads the
queue, it answers to Basware the transfer outcomes of the target-sage300 runs its state names
(read from the ledger: ``ml_connector_core.outcome_handover``).
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from singer_sdk import Stream, Tap
from singer_sdk import typing as th

from ml_connector_core.basware_api import BaswareClient, BaswareError, error_messages
from ml_connector_core.ledger import SAGE_TO_BASWARE, SUCCESS, Action, Entry, Ledger
from ml_connector_core.outcome_handover import (
    INLINE_KEY,
    LEDGERS_KEY,
    PAGE,
    RUNS_KEY,
    invoices_state_id,
    lost_outcomes_message,
    missing_runs,
    missing_runs_message,
    pending_runs,
    recoverable_runs,
    run_ledgers,
    without_runs,
)
from ml_connector_core.redaction import Redactor, install_log_redaction
from ml_connector_core.restore import LEDGER_OLDER, MARK_KEY, STATE_OLDER, check_state, read_mark
from ml_connector_core.retry_selection import INVOICE_STREAM, string_list
from ml_connector_core.run_files import PrivateConfigFiles
from ml_connector_core.settings import (
    BASWARE_IN_FLIGHT,
    SOURCE_SYSTEM,
    basware_client,
    basware_connection_properties,
    configured_ledger_url,
    ledger_properties,
    max_in_flight,
    max_in_flight_property,
    warn_if_basware_tls_off,
)
from ml_connector_core.systems import basware_system
from tap_basware.streams import AccountingDocumentsStream, RequestStatusStream, VendorsStream
from tap_basware.transfer_responses import KINDS, OutcomesNotSent, TransferResponder
from tap_basware.transfer_responses import STREAM as RESPONSES_STREAM

DEFAULT_SCOPES = "accountingDocuments.read accountingDocuments.write vendors.read requestStatus.read"
PLUGIN = "tap-basware"


class LedgerMismatch(RuntimeError):
    """The state names target-sage300 runs this tap's ledger does not hold."""


class TapBasware(PrivateConfigFiles, Tap):
    """Basware's approved-invoice queue with coding rows, vendors and request statuses."""

    name = PLUGIN
    _finished_runs: set[str] = set()  # ledger runs closed by sync_all (class-wide: tiny)
    #: (invoice id, why) of the transfer outcomes this run could not send (sync_all fails).
    not_sent: list[tuple[str, str]] = []
    config_jsonschema = th.PropertiesList(
        *basware_connection_properties(default_scopes=DEFAULT_SCOPES),
        th.Property("company_codes", th.ArrayType(th.StringType), required=True,
                    description="Basware company codes whose invoice queue is read, e.g. "
                                "[US01, CA01]"),
        th.Property("acknowledge", th.BooleanType, default=False,
                    description="Acknowledge each WaitingForTransfer invoice after its record "
                                "was emitted (moves it to TransferInProgress). Off for plain "
                                "extraction; the invoice pipeline turns it on."),
        th.Property("read_in_progress", th.BooleanType, default=False,
                    description="With acknowledge off, also read the TransferInProgress "
                                "invoices first, as the next acknowledging run re-emits them "
                                "(acknowledged by a run that stopped before answering them). "
                                "`ml-connector plan` turns it on to preview them; it changes "
                                "nothing in Basware."),
        th.Property("retry_invoice_ids", th.ArrayType(th.StringType),
                    description="Basware invoice ids to read again although they are "
                                "TransferFailed (never acknowledged: Basware allows none "
                                "there), once their cause is fixed. Set by `ml-connector retry` "
                                "(TAP_BASWARE_RETRY_INVOICE_IDS), not by hand; an invoice "
                                "already in Sage 300 per the ledger, or no longer "
                                "TransferFailed, is skipped with a log line."),
        th.Property("start_date", th.DateTimeType,
                    description="Earliest lastUpdated to read when there is no bookmark. Only "
                                "filters when acknowledge is off: with acknowledge on, the "
                                "queue itself is the cursor and no waiting invoice is skipped."),
        th.Property("page_size", th.IntegerType(minimum=1, maximum=100), default=100,
                    description="Records per page (Basware allows at most 100 invoices)"),
        max_in_flight_property(
            default=BASWARE_IN_FLIGHT, maximum=32,
            description="Most requests to Basware at once: acknowledgements and "
                        "transfer responses go out this many at a time (each "
                        "acknowledgement after its record was written; every one "
                        "completed before the run's state moves). A 429 or 503 makes "
                        "the whole tap wait (Retry-After) and halves it until answers "
                        "come back normally. 1: one at a time."),
        *ledger_properties(),
        th.Property("webhook_token", th.StringType, secret=True,
                    description="Basware webhook authentication token; read by `ml-connector "
                                "webhooks serve|subscribe`, unused by the tap itself"),
    ).to_dict()

    # -- state ---------------------------------------------------------------------------------

    def load_state(self, state: dict[str, Any]) -> None:
        """Keep the transfer outcomes to answer too: the SDK's load_state only keeps
        `bookmarks`. target-sage300 names its ledger runs in the STATE it emits (older
        releases put the outcomes themselves there); Meltano hands that state to this tap on
        the next run, which answers them to Basware."""
        super().load_state(state)
        if runs := pending_runs(state):
            self.state[RUNS_KEY] = runs
        if ledgers := run_ledgers(state):
            self.state[LEDGERS_KEY] = ledgers
        if outcomes := state.get(INLINE_KEY):
            self.state[INLINE_KEY] = copy.deepcopy(dict(outcomes))
        if read_mark(state) is not None:  # checked against the ledger as the run starts
            self.state[MARK_KEY] = copy.deepcopy(state[MARK_KEY])

    def write_state(self) -> None:
        """Emit the current state now (used after each transfer response)."""
        self.state_writer.write_state(self.state)

    # -- shared resources ----------------------------------------------------------------------

    @cached_property
    def redactor(self) -> Redactor:
        """The process-wide log redactor, knowing this config's secrets (also for the ledger)."""
        secrets = [self.config.get("client_secret")]
        ledger_url = self.ledger_url
        if ledger_url and "://" in ledger_url:
            secrets.append(urlsplit(ledger_url).password)
        return install_log_redaction([s for s in secrets if s])

    @cached_property
    def basware(self) -> BaswareClient:
        warn_if_basware_tls_off(self.config, self.logger)
        return basware_client(self.config, default_scopes=DEFAULT_SCOPES,
                              max_in_flight=self.max_in_flight)

    @property
    def max_in_flight(self) -> int:
        """`max_requests_in_flight`: how many Basware calls run at once (1: no threads)."""
        return max_in_flight(self.config, BASWARE_IN_FLIGHT)

    @cached_property
    def pool(self) -> ThreadPoolExecutor | None:
        """The worker threads acknowledgements and transfer responses are sent from
        (ml_connector_core.concurrency); none with one request in flight. Shut down by sync_all."""
        if self.max_in_flight == 1:
            return None
        return ThreadPoolExecutor(max_workers=self.max_in_flight,
                                  thread_name_prefix="tap-basware")

    @property
    def ledger_url(self) -> str | None:
        return configured_ledger_url(self.config)

    @cached_property
    def system(self) -> str:
        """The Basware tenant this tap reads and answers (ml_connector_core.systems)."""
        return basware_system(self.config)

    @cached_property
    def ledger(self) -> Ledger:
        ledger = Ledger.open(self.ledger_url, secrets=self.redactor)
        # Entries from before the ledger knew systems belong to the tenant configured now.
        ledger.claim_unassigned(PLUGIN, self.system)
        return ledger

    @cached_property
    def ledger_run_id(self) -> str:
        run_id = self.ledger.start_run(PLUGIN).run_id
        # sync_all closes the run; other entry points (--test, the SDK's dry runs) do not.
        atexit.register(self._close_open_run, run_id)
        return run_id

    def _close_open_run(self, run_id: str) -> None:
        if run_id in self._finished_runs:
            return
        try:
            self.ledger.finish_run(run_id, "incomplete", self._summary({}))
        except Exception as exc:  # at interpreter exit: report, never raise
            self.logger.warning("Could not close ledger run %s: %s", run_id, exc)

    def _finish_run(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        self.ledger.finish_run(run_id, status, self._summary(summary))
        self._finished_runs.add(run_id)

    def record(self, *entries: Entry) -> None:
        """Entries about this tap's Basware tenant, unless they name another system."""
        self.ledger.record_many(dataclasses.replace(entry, system=entry.system or self.system)
                                for entry in entries)

    def acknowledged_elsewhere(self, invoice_ids: list[str]) -> dict[str, str]:
        """Of these invoices, those acknowledged only in another Basware tenant, with it: the
        outcome of such an invoice must not be told to the configured tenant."""
        stream = AccountingDocumentsStream.name
        here = self.ledger.outcomes(stream, invoice_ids, system=self.system)
        elsewhere = [invoice_id for invoice_id in invoice_ids if invoice_id not in here]
        if not elsewhere:
            return {}
        found: dict[str, str] = {}
        for invoice_id in elsewhere:
            latest = self.ledger.latest_outcome(stream, invoice_id)
            if latest is not None and latest.system and latest.system != self.system:
                found[invoice_id] = latest.system
        return found

    @cached_property
    def retry_invoices(self) -> dict[str, list[dict[str, Any]]]:
        """The invoices `retry_invoice_ids` names that are to be read again, by company code,
        read fresh from Basware (not the ledger's copy: a P2P user may have changed them)."""
        ids = string_list(self.config.get("retry_invoice_ids"))
        found: dict[str, list[dict[str, Any]]] = {}
        for invoice_id in ids:
            invoice = self._retry_candidate(invoice_id)
            if invoice is not None:
                found.setdefault(str(invoice.get("companyCode")), []).append(invoice)
        return found

    def _retry_candidate(self, invoice_id: str) -> dict[str, Any] | None:
        """The invoice, if it is TransferFailed here and not in Sage 300 already; else None
        with the reason logged. The job's second task gets the same ids: by then the invoice
        is in Sage (the ledger says so) or Transferred, so it is read once per retry."""
        response = self.basware.get_redirected(f"/v1/accountingDocuments/{invoice_id}")
        if response.status_code == 404:
            self.logger.warning("Retry of invoice %s: Basware does not know it; skipped",
                                invoice_id)
            return None
        if not response.ok:
            raise BaswareError(f"Retry of invoice {invoice_id}: reading it from Basware failed "
                               f"with HTTP {response.status_code}: {error_messages(response)}",
                               status=response.status_code)
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("accountingDocuments"), list):
            body = (body["accountingDocuments"] or [{}])[0]
        status = body.get("processingStatus") if isinstance(body, dict) else None
        if status != "TransferFailed":
            self.logger.info("Retry of invoice %s: it is %s in Basware, not TransferFailed; "
                             "not read again by the retry (the queue reads what waits)",
                             invoice_id, status)
            return None
        if str(body.get("companyCode")) not in self.config["company_codes"]:
            self.logger.warning("Retry of invoice %s: company code %s is not in company_codes; "
                                "skipped", invoice_id, body.get("companyCode"))
            return None
        answered = self.ledger.latest_outcome(RESPONSES_STREAM, invoice_id)
        if answered is not None and answered.run_id == self.ledger_run_id:
            # The job's second task: it just answered the retry's outcome (a failure again);
            # one read per retry, the next retry reads it again.
            self.logger.info("Retry of invoice %s: its new outcome was answered by this run; "
                             "not read again", invoice_id)
            return None
        latest = self.ledger.latest_outcome(INVOICE_STREAM, invoice_id)
        if latest is not None and latest.action in SUCCESS:
            self.logger.warning(
                "Retry of invoice %s: it is in Sage 300 already (%s), so it is not created "
                "again; Basware still shows it TransferFailed: its answer is what is missing",
                invoice_id, latest.target_key)
            return None
        return body

    # -- streams and sync ----------------------------------------------------------------------

    def discover_streams(self) -> list[Stream]:
        return [AccountingDocumentsStream(self), VendorsStream(self), RequestStatusStream(self)]

    def sync_all(self) -> None:  # type: ignore[misc]
        """The SDK's sync, wrapped: answer the previous run's transfer outcomes first, and
        open/close this run in the audit ledger with its outcome.

        `Tap.sync_all` is marked `typing.final`; its body runs unchanged here. It is the only
        hook that runs once per invocation before any stream and sees how the run ended.
        """
        self.redactor  # noqa: B018 - install log redaction before the first log line
        run_id = self.ledger_run_id
        summary: dict[str, Any] = {}
        self.logger.info("Up to %d Basware request(s) in flight (max_requests_in_flight)",
                         self.max_in_flight)
        try:
            self.check_state_against_ledger(summary)
            summary["transfer_responses"] = self.answer_transfer_outcomes()
            super().sync_all()
            self._settle_in_flight(raise_first=True)  # none, unless the SDK stopped a stream
            if self.not_sent:  # every invoice was read; fail loudly for what Basware lacks
                raise OutcomesNotSent(self.not_sent)
        except BaseException as exc:
            self._settle_in_flight(raise_first=False)
            summary["error"] = f"{type(exc).__name__}: {exc}"
            self._finish_run(run_id, "failed", summary)
            raise
        finally:
            if "pool" in self.__dict__ and self.pool is not None:
                self.pool.shutdown(wait=True)
        self._finish_run(run_id, "success", summary)

    def _settle_in_flight(self, *, raise_first: bool) -> None:
        """A failing run (or one the SDK stopped at its record limit) still records the
        acknowledgements its worker threads have in flight, before the run is closed;
        `raise_first`: whether a failed one is raised (not when the run fails anyway)."""
        for stream in self.streams.values():
            if isinstance(stream, AccountingDocumentsStream):
                try:
                    stream.settle_in_flight(raise_first=raise_first)
                except Exception as exc:
                    if raise_first:
                        raise
                    self.logger.warning("Recording the acknowledgements in flight: %s", exc)

    def check_state_against_ledger(self, summary: dict[str, Any]) -> None:
        """Whether the state handed to this run and the ledger were restored apart
        (ml_connector_core.restore): said in one warning and in the run's summary. The
        states this run emits carry its own mark."""
        mark, finding = check_state(self.ledger, self.ledger_run_id, self.state)
        self.state[MARK_KEY] = mark.as_state()
        if finding is None:
            return
        message = finding.describe(self.ledger_url or "(default)", invoices_state_id())
        consequence = {
            LEDGER_OLDER: " Transfer outcomes the state names and the "
            "ledger lacks are checked next; invoices are looked up in Sage 300 before any "
            "is created.",
            STATE_OLDER: " Nothing to do: outcomes answered already are "
            "refused by Basware and counted as already answered, invoices answered already "
            "are not read again.",
        }.get(finding.kind, " Transfer outcomes the state names and this ledger lacks are "
                            "checked next.")
        self.logger.warning("%s.%s", self.redactor.redact(message), consequence)
        summary["restore"] = finding.kind

    def answer_transfer_outcomes(self) -> dict[str, int]:
        """Post a transfer response for every outcome the input state names (design step 1):
        the replies of the target-sage300 ledger runs it names, a page at a time. Answered
        ones leave the state as the answers go out (the run's cursor moves), so a crash
        re-answers only the rest. Raises on technical failures, the state kept."""
        self._adopt_outcomes_in_state()
        runs: dict[str, int] = self.state.get(RUNS_KEY) or {}
        if not runs:
            return {}
        if missing := missing_runs(self.ledger, runs):
            self._drop_lost_runs(recoverable_runs(self.ledger, missing, self.state))
            if unknown := missing_runs(self.ledger, self.state.get(RUNS_KEY) or {}):
                raise LedgerMismatch(self.redactor.redact(missing_runs_message(
                    unknown, self.ledger_url or "(default)", invoices_state_id(),
                    {run_id: identity for run_id, identity in run_ledgers(self.state).items()
                     if run_id in unknown})))
            runs = self.state.get(RUNS_KEY) or {}
            if not runs:
                return {}
        responder = TransferResponder(
            client=self.basware, record=self.record, run_id=self.ledger_run_id,
            source_system=self.config.get("source_system") or SOURCE_SYSTEM, logger=self.logger,
            acknowledged_elsewhere=self.acknowledged_elsewhere,
            pool=self.pool, window=self.max_in_flight,
        )
        counts = dict.fromkeys(KINDS, 0)
        try:
            for run_id in list(runs):
                answered = responder.answer_replies(
                    lambda after, run_id=run_id: self.ledger.replies(run_id, after=after,
                                                                      limit=PAGE),
                    after=runs[run_id],
                    on_page=lambda cursor, run_id=run_id: self._run_progress(run_id, cursor))
                counts = {kind: counts[kind] + answered[kind] for kind in KINDS}
                del runs[run_id]
        finally:
            self.not_sent = responder.not_sent
            if not runs:
                self.state.pop(RUNS_KEY, None)
            if ledgers := {r: i for r, i in run_ledgers(self.state).items() if r in runs}:
                self.state[LEDGERS_KEY] = ledgers
            else:
                self.state.pop(LEDGERS_KEY, None)
            self.write_state()
        self.logger.info("Transfer responses: %s", counts)
        return counts

    def _drop_lost_runs(self, lost: list[str]) -> None:
        """Runs an older copy of this ledger lacks leave the state (outcome_handover): their
        invoices are read again from TransferInProgress in this run and answered."""
        if not lost:
            return
        self.logger.warning("%s", self.redactor.redact(lost_outcomes_message(
            lost, self.ledger_url or "(default)", invoices_state_id())))
        kept = without_runs(self.state, lost)
        for key in (RUNS_KEY, LEDGERS_KEY):
            if key in kept:
                self.state[key] = kept[key]
            else:
                self.state.pop(key, None)
        self.write_state()

    def _adopt_outcomes_in_state(self) -> None:
        """Outcomes an older release left in the state itself become replies in the ledger,
        under a ledger run of their own that the state names, and are answered like any
        run's. A crash before the state goes out adopts them again: answering twice is safe
        (Basware refuses a second answer), losing one is not."""
        outcomes = self.state.pop(INLINE_KEY, None)
        if not outcomes:
            return
        run_id = self.ledger.start_run(PLUGIN).run_id
        self.ledger.record_many(Entry(run_id=run_id, stream=INLINE_KEY, source_key=invoice_id,
                                      action=Action.READ, direction=SAGE_TO_BASWARE,
                                      reply=outcome)
                                for invoice_id, outcome in outcomes.items())
        self.ledger.finish_run(run_id, "success", {"outcomes_carried_in_state": len(outcomes)})
        self.state.setdefault(RUNS_KEY, {})[run_id] = 0
        self.write_state()
        self.logger.info("%d transfer outcome(s) carried in the state are in the ledger now, "
                         "as run %s", len(outcomes), run_id)

    def _run_progress(self, run_id: str, cursor: int) -> None:
        self.state[RUNS_KEY][run_id] = cursor
        self.write_state()

    def _summary(self, summary: dict[str, Any]) -> dict[str, Any]:
        streams = {name: stream.run_counts for name, stream in self.streams.items()
                   if getattr(stream, "run_counts", None)}
        return {**summary, "streams": streams,
                "oauth_grants": self.basware.tokens.issued if "basware" in self.__dict__
                else 0}


if __name__ == "__main__":
    TapBasware.cli()

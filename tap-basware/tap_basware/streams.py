"""tap-basware streams: the invoice queue, vendors and request statuses."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
from singer_sdk.helpers.types import Context

from ml_connector_core.basware_api import BaswareError, error_messages
from ml_connector_core.concurrency import InOrder
from ml_connector_core.ledger import BASWARE_TO_SAGE, Action, Entry
from tap_basware.client import BaswareStream
from tap_basware.schemas import ACCOUNTING_DOCUMENT, REQUEST_STATUS, VENDOR

WAITING = "WaitingForTransfer"
IN_PROGRESS = "TransferInProgress"
P2P_SYSTEM = "P2P"
BASWARE_REQUEST_ID = "x-amzn-RequestId"


@dataclass(frozen=True)
class Acknowledgement:
    """What one acknowledge call heard: Basware's answer, or the exception that ended it."""

    invoice_id: str
    request_id: str
    response: requests.Response | None
    error: Exception | None


class AccountingDocumentsStream(BaswareStream):
    """Approved invoices waiting in Basware's transfer queue, one partition per company code.

    With `acknowledge` off (plain extraction) it reads `WaitingForTransfer` incrementally by
    `lastUpdated` and changes nothing in Basware (`read_in_progress` adds the
    `TransferInProgress` invoices first, to preview what an acknowledging run would re-emit).
    With `acknowledge` on (the invoice pipeline) the queue is the cursor: it first re-emits `TransferInProgress` invoices (acknowledged by an
    earlier run that never got a transfer response: a crash between acknowledge and the
    target's outcome), then emits every `WaitingForTransfer` invoice and acknowledges each one
    only after its RECORD message has been written.
    """

    name = "accounting_documents"
    path = "/v1/accountingDocuments"
    envelope = "accountingDocuments"
    primary_keys = ("invoiceId",)
    stream_schema = ACCOUNTING_DOCUMENT
    max_page_size = 100
    ledger_schema = True
    _acks: InOrder[Acknowledgement] | None = None  # this partition's acknowledgements

    @property
    def partitions(self) -> list[dict[str, Any]]:
        return [{"companyCode": code} for code in self.config["company_codes"]]

    @property
    def acknowledge(self) -> bool:
        return bool(self.config.get("acknowledge", False))

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        assert context is not None  # always partitioned by company code
        company = context["companyCode"]
        if not self.acknowledge:
            yield from self._peek(context, company)
            return

        if self.config.get("start_date"):
            self.logger.info("acknowledge is on: start_date is not applied, every invoice "
                             "waiting in the queue is read")
        # Ids only (about 100 bytes each), so no invoice goes out twice in one run.
        emitted: set[str] = set()
        # Nothing in this run moves an invoice into TransferInProgress before this list is
        # done (acknowledging starts below), so it is paged through as it is read.
        yield from self._in_progress(company, emitted, "re_emitted_in_progress")
        # `ml-connector retry`: TransferFailed invoices whose cause was fixed, never
        # acknowledged (Basware allows no acknowledge there); their outcome is answered by
        # the job's second task like any other.
        for invoice in self.tap.retry_invoices.get(company, []):
            if invoice["invoiceId"] not in emitted:
                emitted.add(invoice["invoiceId"])
                self.record_reads([invoice])
                self.run_counts["retried"] += 1
                yield invoice
        # Acknowledging moves invoices out of the filtered list under the paging cursor, so
        # after a page that had new invoices the list is read again from its start, and a
        # page of invoices emitted already (kept out by a stream map, so not acknowledged) is
        # paged past. One page is held at a time, however long the queue: reading the whole
        # list first made the tap's memory grow with the queue (2.5 kB per invoice).
        # Acknowledgements run `max_requests_in_flight` at a time in worker threads, each
        # started only once its record is out; their ledger entries are written here, in
        # order. Every one has completed before the list is read again and before the
        # partition ends (so before its STATE, and before any later run answers the invoice).
        acks = self._acks = InOrder(self.tap.pool, self.tap.max_in_flight,
                                    self._settle_acknowledge)
        params = self._queue_params(company, WAITING)
        try:
            while True:
                for page in self.read_pages(params):
                    fresh = [invoice for invoice in page
                             if invoice["invoiceId"] not in emitted]
                    for invoice in fresh:
                        emitted.add(invoice["invoiceId"])
                        yield invoice
                        # Back here only after the SDK wrote (and flushed) the RECORD message.
                        if self._was_emitted(invoice):
                            invoice_id = invoice["invoiceId"]
                            acks.submit(lambda invoice_id=invoice_id:
                                        self._send_acknowledge(invoice_id))
                    if fresh:
                        acks.drain()
                        break  # the cursor is stale now: read the list again from its start
                else:
                    return  # a whole read found nothing new: the queue is drained
        except BaseException:
            # Failing, or closed early (the SDK's record limit): the acknowledgements in
            # flight still complete and are recorded; the first failure is what is raised.
            acks.drain(raise_first=False)
            raise

    def settle_in_flight(self, *, raise_first: bool) -> None:
        """Settle (record) the acknowledgements still in flight: for a run that is failing,
        or stopped by the SDK before this stream's generator was closed."""
        if self._acks is not None:
            self._acks.drain(raise_first=raise_first)

    def _peek(self, context: Context, company: str) -> Iterable[dict[str, Any]]:
        """Acknowledge off: read without changing anything in Basware. `read_in_progress`
        first reads what the next acknowledging run would re-emit (for `ml-connector plan`)."""
        emitted: set[str] = set()
        if self.config.get("read_in_progress"):
            yield from self._in_progress(company, emitted, "in_progress")
        params = self.list_params(context)
        for page in self.read_pages({**params, "ProcessingStatus": WAITING,
                                     "companyCode": company}):
            # An invoice acknowledged by someone else between the two reads comes once.
            yield from (invoice for invoice in page if invoice["invoiceId"] not in emitted)

    def _in_progress(self, company: str, emitted: set[str], count: str
                     ) -> Iterator[dict[str, Any]]:
        """The company's TransferInProgress invoices (acknowledged, never answered), each
        noted in `emitted` and counted under `count`."""
        for page in self.read_pages(self._queue_params(company, IN_PROGRESS)):
            for invoice in page:
                emitted.add(invoice["invoiceId"])
                self.run_counts[count] += 1
                yield invoice

    def _queue_params(self, company: str, status: str) -> dict[str, Any]:
        return {"ProcessingStatus": status, "companyCode": company, "pageSize": self.page_size}

    def _was_emitted(self, invoice: dict[str, Any]) -> bool:
        """False when stream maps filtered the record out: then it is not acknowledged."""
        return any(stream_map.transform(copy.deepcopy(invoice)) is not None
                   for stream_map in self.stream_maps)

    def _send_acknowledge(self, invoice_id: str) -> Acknowledgement:
        """The acknowledge call, in a worker thread: what Basware answered, or the failure.
        Nothing is recorded here (the ledger is written on the main thread)."""
        request_id = str(uuid.uuid4())
        path = f"{self.path}/{invoice_id}/acknowledge"
        try:
            # No body; Basware wants the JSON content type anyway (reference §9.1).
            response = self.client.request("POST", path, request_id=request_id,
                                           headers={"Content-Type": "application/json"})
        except Exception as exc:  # noqa: BLE001 - settled (recorded, raised) on the main thread
            return Acknowledgement(invoice_id, request_id, None, exc)
        return Acknowledgement(invoice_id, request_id, response, None)

    def _settle_acknowledge(self, ack: Acknowledgement) -> None:
        """On the main thread, in order: the ledger entry and counts of one acknowledge
        call; raises when it failed in a way that stops the run."""
        invoice_id, request_id, response = ack.invoice_id, ack.request_id, ack.response
        entry = {"run_id": self.tap.ledger_run_id, "stream": self.name, "source_key": invoice_id,
                 "direction": BASWARE_TO_SAGE, "bw_request_id": request_id}
        if ack.error is not None or response is None:
            # auth, retries exhausted: stop loudly, the queue keeps it
            self.tap.record(Entry(**entry, action=Action.FAILED, error=ack.error))
            raise ack.error or RuntimeError(f"acknowledging invoice {invoice_id}: no answer")
        entry["basware_request_id"] = response.headers.get(BASWARE_REQUEST_ID)
        if response.ok or response.status_code == 405:
            # 405: acknowledged already (e.g. by a run that crashed right after): fine.
            already = response.status_code == 405
            self.run_counts["already_acknowledged" if already else "acknowledged"] += 1
            self.tap.record(Entry(**entry, action=Action.ACKNOWLEDGED,
                                  error="already acknowledged (405)" if already else None))
            return
        message = (f"Acknowledging invoice {invoice_id} failed with HTTP "
                   f"{response.status_code}: {error_messages(response)}")
        if response.status_code == 404:
            # Gone between read and acknowledge (removed in P2P): its record is out, and the
            # target's outcome for it will be dropped by Basware's 404 on the response.
            self.logger.warning(message)
            self.run_counts["acknowledge_not_found"] += 1
            self.tap.record(Entry(**entry, action=Action.FAILED, error=message))
            return
        self.tap.record(Entry(**entry, action=Action.FAILED, error=message))
        raise BaswareError(message, status=response.status_code, request_id=request_id)


class VendorsStream(BaswareStream):
    """Vendors as Basware holds them (imported by target-basware): for reconciliation."""

    name = "vendors"
    path = "/v1/vendors"
    envelope = "vendorEntities"
    primary_keys = ("externalCode",)
    stream_schema = VENDOR


class RequestStatusStream(BaswareStream):
    """Processing status of asynchronous imports and responses (`requestStatus`), for
    reconciliation: which vendor, PO or transfer-response request failed inside Basware."""

    name = "request_status"
    path = "/v1/requestStatus"
    envelope = "requestStatus"
    primary_keys = ("requestId",)
    stream_schema = REQUEST_STATUS

    def list_params(self, context: Context | None) -> dict[str, Any]:
        # Without entityType or system Basware lists only status=Error; naming the P2P system
        # lists every status (InProgress, Success, Error, Acknowledged*), incrementally.
        return {**super().list_params(context), "system": P2P_SYSTEM}

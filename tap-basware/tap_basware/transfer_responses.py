"""Answer target-sage300's outcomes to Basware as transfer responses (design step 1).

Each outcome, `{"success", "message", "batch", "entry", "company"}` for one invoice id (the
reply of a target-sage300 ledger entry), becomes one
`POST /v1/accountingDocuments/{invoiceId}/transferResponses` with a new externalCode (Basware
requires a fresh one per response). Answered outcomes leave the state a page at a time (the
run's cursor moves), so a crash re-answers only the rest of a page.

- Basware refuses a response once an invoice is Transferred: that outcome was already
  answered (e.g. by a run that crashed before its state was saved) and is dropped with a log
  line. A failure whose invoice is TransferFailed with this very reason as its latest response
  is not sent again either (the same crash, where Basware accepts responses after a failure).
- A success for a TransferFailed invoice (`ml-connector retry` created it in Sage 300 once
  its cause was fixed) is sent: Basware's spec forbids responses only once Transferred. A
  tenant that refuses it leaves the invoice TransferFailed although it is in Sage: **not
  sent**, naming what the AP user does (send it to transfer again in Basware; the next run
  finds it in Sage by BWINVID and answers it, creating nothing).
- An outcome that cannot be sent is **not sent** and the run fails at its end, naming each
  invoice and why (`OutcomesNotSent`): the outcome is malformed, the invoice was acknowledged
  in another Basware tenant than the one configured, Basware no longer knows the invoice, or
  it is not in TransferInProgress (never acknowledged, e.g. `acknowledge` off). Each gets a
  `failed` ledger entry; an invoice that still (or again) waits in the queue is read again
  and gets a fresh outcome, so the next run does not fail on it again.
- Anything else (auth, persistent 5xx, an unexpected refusal) stops the run loudly with the
  remaining outcomes kept in the state.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ml_connector_core.basware_api import BaswareClient, BaswareError, error_messages
from ml_connector_core.concurrency import InOrder
from ml_connector_core.ledger import SAGE_TO_BASWARE, Action, Entry

if TYPE_CHECKING:
    from collections.abc import Sequence

STREAM = "transfer_responses"
MAX_MESSAGE = 250  # Basware: responseMessage is 1-250 characters
MAX_VOUCHER = 25
BASWARE_REQUEST_ID = "x-amzn-RequestId"
IN_PROGRESS = "TransferInProgress"
ANSWERED = ("Transferred", "TransferFailed")  # Basware accepts no further transfer response


class MalformedOutcome(ValueError):
    """An outcome in the state is not what target-sage300 documents."""


@dataclass(frozen=True)
class TransferOutcome:
    invoice_id: str
    success: bool
    message: str
    batch: int | None
    entry: int | None
    company: str | None

    @classmethod
    def from_state(cls, invoice_id: str, raw: Any) -> TransferOutcome:
        def fail(field: str, problem: str) -> MalformedOutcome:
            return MalformedOutcome(
                f"transfer outcome for invoice {invoice_id}: field '{field}' {problem}")

        if not isinstance(raw, dict):
            raise fail("(outcome)", f"must be an object, got {type(raw).__name__}")
        success = raw.get("success")
        if not isinstance(success, bool):
            raise fail("success", f"must be true or false, got {success!r}")
        message = raw.get("message")
        if message is not None and not isinstance(message, str):
            raise fail("message", f"must be a string, got {type(message).__name__}")
        numbers = {}
        for name in ("batch", "entry"):
            value = raw.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise fail(name, f"must be an integer or null, got {value!r}")
            numbers[name] = value
        company = raw.get("company")
        if company is not None and not isinstance(company, str):
            raise fail("company", f"must be a string, got {type(company).__name__}")
        return cls(invoice_id, success, (message or "").strip(), numbers["batch"],
                   numbers["entry"], company)

    def response_body(self, source_system: str, now: datetime) -> dict[str, Any]:
        """The transferResponse entity, with a fresh externalCode (uuid4 hex, 32 chars)."""
        external_code = uuid.uuid4().hex
        if not self.success:
            reason = self.message or "Rejected by the Sage 300 import (no reason given)"
            return {"externalCode": external_code, "success": False,
                    "responseMessage": _clip(reason, MAX_MESSAGE), "paymentBlock": False}
        # target-sage300's own words ("Created in Sage 300 company SAMINC, batch 5 entry 14
        # (ready to post)"): whether the batch is posted is for it to say, not us.
        message = self.message or (
            f"In Sage 300 company {self.company or '?'}, batch {self.batch} entry {self.entry}"
            if self.batch is not None and self.entry is not None
            else f"Already in Sage 300 company {self.company or '?'}")
        body: dict[str, Any] = {
            "externalCode": external_code, "success": True,
            "responseMessage": _clip(message, MAX_MESSAGE),
            "transferDate": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "paymentBlock": False, "sourceSystem": source_system,
        }
        if self.batch is not None:
            body["voucherNumber1"] = str(self.batch)[:MAX_VOUCHER]
        if self.entry is not None:
            body["voucherNumber2"] = str(self.entry)[:MAX_VOUCHER]
        return body


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


KINDS = ("responded", "already_answered", "not_sent")


class OutcomesNotSent(RuntimeError):
    """Transfer outcomes this run could not send to Basware (the run exits non-zero)."""

    def __init__(self, not_sent: list[tuple[str, str]]) -> None:
        shown = "; ".join(f"invoice {invoice_id}: {why}" for invoice_id, why in not_sent[:10])
        more = f"; and {len(not_sent) - 10} more" if len(not_sent) > 10 else ""
        super().__init__(f"{len(not_sent)} transfer outcome(s) were not sent to Basware, so "
                         f"Basware does not know what became of those invoices: {shown}{more} "
                         "(each is a failed entry in the ledger: ml-connector audit failures)")
        self.not_sent = not_sent


@dataclass
class Answer:
    """One outcome's answer, from a worker thread: its kind (KINDS), the ledger entries and
    not-sent reasons to record on the main thread, or the failure that stops the run."""

    kind: str = "not_sent"
    entries: list[Entry] = field(default_factory=list)
    not_sent: list[tuple[str, str]] = field(default_factory=list)
    error: Exception | None = None


class TransferResponder:
    """Posts transfer responses and records each in the audit ledger."""

    def __init__(self, *, client: BaswareClient, record: Callable[..., None], run_id: str,
                 source_system: str, logger: logging.Logger,
                 acknowledged_elsewhere: Callable[[list[str]], dict[str, str]] | None = None,
                 pool: ThreadPoolExecutor | None = None, window: int = 1) -> None:
        """`acknowledged_elsewhere(ids)`: of these invoice ids, those acknowledged in another
        Basware tenant than the configured one, with that tenant. `pool`, `window`: the
        worker threads and how many responses are in flight at once (1: one at a time, no
        thread)."""
        self.pool = pool
        self.window = window
        self.client = client
        self.record = record
        self.run_id = run_id
        self.source_system = source_system
        self.logger = logger
        self.acknowledged_elsewhere = acknowledged_elsewhere or (lambda ids: {})
        self.not_sent: list[tuple[str, str]] = []

    def answer_replies(self, replies: Callable[[int], Sequence[Entry]], *, after: int,
                       on_page: Callable[[int], None]) -> dict[str, int]:
        """Answer one target-sage300 run's replies, read a page at a time from the ledger
        (`replies(after)`: the page after entry id `after`); after each page `on_page` gets
        the last id answered, the run's new cursor. Raises on technical failures.

        The responses of a page go out `window` at a time (worker threads of `pool`); their
        ledger entries, counts and not-sent reasons are taken here, in the page's order, and
        the cursor moves only once every response of the page has completed. A failure stops
        further responses; those in flight complete and are recorded, then it is raised."""
        counts = dict.fromkeys(KINDS, 0)

        def settle(answer: Answer) -> None:
            if answer.entries:
                self.record(*answer.entries)
            self.not_sent.extend(answer.not_sent)
            if answer.error is not None:
                raise answer.error
            counts[answer.kind] += 1

        while page := replies(after):
            elsewhere = self.acknowledged_elsewhere([entry.source_key for entry in page])
            answers: InOrder[Answer] = InOrder(self.pool, self.window, settle)
            try:
                for entry in page:
                    if entry.source_key in elsewhere:
                        answer = Answer()
                        answer.kind = self._not_sent(
                            answer, entry.source_key, entry.reply,
                            f"it was acknowledged in {elsewhere[entry.source_key]}, not in the "
                            "configured Basware tenant; it is answered when a run against that "
                            "tenant reads it again from TransferInProgress")
                        answers.done(answer)
                        continue
                    answers.submit(lambda entry=entry: self._answer(entry.source_key,
                                                                    entry.reply))
                answers.drain()
            except BaseException:
                answers.drain(raise_first=False)
                raise
            after = page[-1].id or after
            on_page(after)
        return counts

    def _answer(self, invoice_id: str, raw: Any) -> Answer:
        """One outcome answered (in a worker thread): what to record, or the failure."""
        answer = Answer()
        try:
            answer.kind = self._answer_one(answer, invoice_id, raw)
        except Exception as exc:  # noqa: BLE001 - raised on the main thread, once recorded
            answer.error = exc
        return answer

    def _answer_one(self, answer: Answer, invoice_id: str, raw: Any) -> str:
        try:
            outcome = TransferOutcome.from_state(invoice_id, raw)
        except MalformedOutcome as exc:
            return self._not_sent(answer, invoice_id, raw, f"{exc}; the invoice is read again "
                                  "from TransferInProgress and gets a fresh outcome")

        body = outcome.response_body(self.source_system, datetime.now(UTC))
        if not outcome.success and self._failure_answered(invoice_id, body):
            self.logger.info("Invoice %s is already TransferFailed in Basware with this reason; "
                             "not sent again", invoice_id)
            self._ledger(answer, invoice_id, Action.UNCHANGED, payload=body,
                         error="already TransferFailed with this reason")
            return "already_answered"
        request_id = str(uuid.uuid4())
        path = f"/v1/accountingDocuments/{invoice_id}/transferResponses"
        # Retried on timeouts with the same externalCode and request id: a response that did
        # land makes the retry bounce off a Transferred invoice, which is handled below.
        try:
            response = self.client.post(path, body, request_id=request_id)
        except Exception as exc:  # auth, retries exhausted, network: the run stops, loudly
            self._ledger(answer, invoice_id, Action.FAILED, payload=body,
                         bw_request_id=request_id, error=exc)
            raise
        basware_id = response.headers.get(BASWARE_REQUEST_ID)
        if response.ok:
            self.logger.info("Invoice %s: transfer response %s (%s) sent", invoice_id,
                             "success" if outcome.success else "failure", body["externalCode"])
            self._ledger(answer, invoice_id, Action.RESPONDED, payload=body,
                         target_key=body["externalCode"], bw_request_id=request_id,
                         basware_request_id=basware_id)
            return "responded"

        refusal = error_messages(response)
        current = self._current(invoice_id) if response.status_code < 500 else None
        status = None if current is None else current.get("processingStatus", "unknown")
        if status == "TransferFailed" and outcome.success:
            # In Sage now (a retry after the cause was fixed), but this tenant takes no answer
            # on a TransferFailed invoice: only a P2P user's retransfer reopens it.
            number = current.get("invoiceNumber") or invoice_id if current else invoice_id
            where = (f"Sage 300 company {outcome.company}, batch {outcome.batch} entry "
                     f"{outcome.entry}" if outcome.batch is not None else
                     f"Sage 300 company {outcome.company or '?'}")
            return self._not_sent(
                answer, invoice_id, body,
                f"invoice {number} is in {where}, but Basware refuses a transfer response on "
                f"a TransferFailed invoice (HTTP {response.status_code}: {refusal}). In "
                f"Basware, send invoice {number} to transfer again; the next run (ml-connector "
                f"run invoices) finds it in Sage by BWINVID and answers it Transferred from "
                f"batch {outcome.batch} entry {outcome.entry}, without creating it twice",
                bw_request_id=request_id, basware_request_id=basware_id)
        if status in ANSWERED:
            # Answered already, e.g. by a run that crashed before its state was saved.
            self.logger.info("Invoice %s is already %s in Basware; dropping its outcome "
                             "(Basware said: %s)", invoice_id, status, refusal)
            self._ledger(answer, invoice_id, Action.UNCHANGED, payload=body,
                         bw_request_id=request_id, basware_request_id=basware_id,
                         error=f"already {status}: {refusal}")
            return "already_answered"
        if status is not None and status != IN_PROGRESS:
            # Unknown to Basware, or not waiting for this answer (never acknowledged, removed,
            # or sent back to the queue from P2P): if it waits again it is read again and gets
            # a new outcome; this run says so and fails at its end.
            why = ("Basware does not know the invoice" if status == "unknown"
                   else f"the invoice is {status} in Basware, not {IN_PROGRESS}")
            return self._not_sent(answer, invoice_id, body,
                                  f"{why} (HTTP {response.status_code}: {refusal})",
                                  bw_request_id=request_id, basware_request_id=basware_id)
        message = (f"Basware refused the transfer response for invoice {invoice_id} "
                   f"(HTTP {response.status_code}, invoice status {status or 'unknown'}): "
                   f"{refusal}")
        self._ledger(answer, invoice_id, Action.FAILED, payload=body,
                     bw_request_id=request_id, basware_request_id=basware_id, error=message)
        raise BaswareError(message, status=response.status_code, request_id=request_id)

    def _not_sent(self, answer: Answer, invoice_id: str, payload: Any, why: str,
                  **fields: Any) -> str:
        message = f"Transfer outcome for invoice {invoice_id} not sent: {why}"
        self.logger.error(message)
        self._ledger(answer, invoice_id, Action.FAILED, payload=payload, error=message,
                     **fields)
        answer.not_sent.append((invoice_id, why))
        return "not_sent"

    def _current(self, invoice_id: str) -> dict[str, Any] | None:
        """The invoice as Basware holds it now; {} if Basware has no such invoice, None if it
        could not be read."""
        response = self.client.get_redirected(f"/v1/accountingDocuments/{invoice_id}")
        if response.status_code == 404:
            return {}
        if not response.ok:
            return None
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("accountingDocuments"), list):
            body = (body["accountingDocuments"] or [{}])[0]  # tolerate a list envelope
        return body if isinstance(body, dict) else None

    def _failure_answered(self, invoice_id: str, body: dict[str, Any]) -> bool:
        """Whether Basware shows the invoice TransferFailed with exactly this failure as its
        latest response: answered already (a run that crashed before its state was saved,
        or a retry whose cause was not fixed), so a second identical answer says nothing.
        One GET per failure; failures are few."""
        current = self._current(invoice_id)
        if not current or current.get("processingStatus") != "TransferFailed":
            return False
        history = current.get("transferResponses") or []
        latest = history[-1] if history and isinstance(history[-1], dict) else {}
        return (latest.get("success") is False
                and latest.get("responseMessage") == body["responseMessage"])

    def _ledger(self, answer: Answer, invoice_id: str, action: Action, **fields: Any) -> None:
        """An entry for the main thread to record (`answer_replies`)."""
        answer.entries.append(Entry(run_id=self.run_id, stream=STREAM, source_key=invoice_id,
                                    action=action, direction=SAGE_TO_BASWARE, **fields))

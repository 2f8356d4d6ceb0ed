"""Sage 300's payments answered to Basware as paymentResponses (docs/decisions.md, "Payment
status"; reference: docs/ the Basware API's accountingDocuments paymentResponses).

tap-sage300's ``ap_payments`` gives each posted AP document that moved: its original amount,
its balance and its latest payment. This sink keeps the documents target-sage300 created (the
ledger names the Basware invoice of each Sage entry, COMPANY/BATCH/ENTRY) and sends Basware one
paymentResponse per payment state, exactly once:

- ``paidTotal`` is cumulative (original less balance), so a partial payment and then the rest
  are two responses, 40 then 105; the latest payment's date, number, check number and payment
  code go with it (Basware clears a field a response omits, so each response is whole);
- the externalCode is derived from the invoice and the payment state: new for every state
  (Basware wants a new one per response), the same when one state is sent again;
- a state the ledger has as responded is not sent again (an unchanged re-read sends nothing);
- an answer not heard (409 for that externalCode, or the connection lost after Basware stored
  it) is looked up in the invoice's ``paymentResponses`` history, never assumed either way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from singer_sdk.sinks import BatchSink

from ml_connector_core.basware_api import BaswareClient, BaswareError, error_messages
from ml_connector_core.dryrun import CREATE, SKIP
from ml_connector_core.ledger import SAGE_TO_BASWARE, Action, Entry, payload_hash

PAYMENTS_STREAM = "ap_payments"  # tap-sage300's stream this sink answers
STREAM = "payment_responses"  # the ledger's stream (invoice family: `audit trace INV-...`)
INVOICES = "ap_invoices"  # target-sage300's stream: Sage entry -> Basware invoice id
BASWARE_REQUEST_ID = "x-amzn-RequestId"
CENT = Decimal("0.01")
logger = logging.getLogger("target-basware")


def _amount(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)).quantize(CENT) if value is not None else None
    except InvalidOperation:
        return None


def payment_state(record: dict[str, Any]) -> dict[str, Any] | None:
    """What Sage says of the document's payment, or None when nothing is paid (yet)."""
    original = _amount(record.get("OriginalDocumentAmount"))
    balance = _amount(record.get("CurrentBalance"))
    if original is None or balance is None or original - balance <= 0:
        return None
    number = record.get("LastPaymentNumber")
    return {"paidTotal": float(original - balance), "documentTotal": float(original),
            "fullyPaid": balance == 0, "paymentDate": record.get("LastPaymentDate"),
            "paymentNumber": None if number is None else str(number),
            "checkNumber": record.get("LastCheckNumber") or None,
            "paymentMethod": record.get("LastPaymentCode") or None}


def response_body(invoice_id: str, state: dict[str, Any], source_system: str
                  ) -> dict[str, Any]:
    """The paymentResponse for one payment state; its externalCode is the state's own."""
    digest = hashlib.sha256(json.dumps([invoice_id, state], sort_keys=True).encode())
    paid, total = state["paidTotal"], state["documentTotal"]
    message = ("Paid in full in Sage 300" if state["fullyPaid"]
               else f"Partly paid in Sage 300: {paid:.2f} of {total:.2f}")
    body: dict[str, Any] = {"externalCode": digest.hexdigest()[:32], "success": True,
                            "paymentBlock": False, "paidTotal": paid,
                            "responseMessage": message, "sourceSystem": source_system}
    for name in ("paymentDate", "paymentNumber", "checkNumber", "paymentMethod"):
        if state[name] is not None:
            body[name] = state[name]
    return body


class PaymentResponsesSink(BatchSink):
    """Stream ``ap_payments`` (tap-sage300), answered one record at a time as it arrives: a
    STATE after it is written only once its answer is in Basware and the ledger."""

    def __init__(self, target: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(target, *args, **kwargs)
        self._target = target  # its ledger, run, tenant, summary and Basware client

    def get_validator(self) -> None:
        return None  # the record is read field by field below; nothing else judges it

    def _validate_and_parse(self, record: dict) -> dict:
        return record

    @property
    def is_full(self) -> bool:
        return False

    def process_batch(self, context: dict) -> None:
        return None  # every record was answered in process_record

    @property
    def client(self) -> BaswareClient:
        target = self._target
        if getattr(target, "_payments_client", None) is None:
            target._payments_client = target._make_client()
        return target._payments_client

    def process_record(self, record: dict, context: dict) -> None:
        target = self._target
        summary = target.delivery.summary
        summary.received += 1
        company = str(record.get("company_id") or "")
        entry = f"{company}/{record.get('BatchNumber')}/{record.get('EntryNumber')}"
        invoice_id = target.ledger.named_by(INVOICES, [entry]).get(entry)
        if invoice_id is None:
            summary.add(STREAM, "not the connector's")  # posted in Sage, not from Basware
            return
        state = payment_state(record)
        if state is None:
            summary.add(STREAM, "not paid")
            return
        state_hash = payload_hash(state)
        if target.ledger.was_delivered(STREAM, invoice_id, state_hash, target.system):
            summary.add(STREAM, "unchanged")  # re-read, no new payment: nothing sent
            if target.dry_run:
                target.dry_run.add(STREAM, invoice_id, SKIP,
                                   "already answered with this payment state")
            return
        body = response_body(invoice_id, state, target.config.get("source_system")
                             or "SAGE300")
        if target.dry_run:
            target.dry_run.add(STREAM, invoice_id, CREATE, f"paidTotal {body['paidTotal']}")
            summary.add(STREAM, "would send")
            return
        summary.add(STREAM, self._send(invoice_id, entry, state, state_hash, body))

    def _send(self, invoice_id: str, entry: str, state: dict[str, Any], state_hash: str,
              body: dict[str, Any]) -> str:
        path = f"/v1/accountingDocuments/{invoice_id}/paymentResponses"
        request_id = str(uuid.uuid4())
        code = body["externalCode"]
        record = {"payment": state, "response": body}
        self._target.delivery.summary.posts += 1  # the run summary's "N POST(s) to Basware"
        try:
            response = self.client.post(path, body, request_id=request_id)
        except BaswareError:
            raise  # auth: the run stops, loudly
        except Exception as exc:  # connection lost with retries exhausted: did it land?
            if self._stored(invoice_id, code):
                return self._ledger(invoice_id, entry, Action.RESPONDED, record, state_hash,
                                    code, request_id, None, "answer lost; found in Basware")
            self._ledger(invoice_id, entry, Action.FAILED, record, state_hash, code,
                         request_id, None, f"paymentResponse not confirmed: {exc}")
            raise
        basware_id = response.headers.get(BASWARE_REQUEST_ID)
        if response.ok:
            logger.info("Invoice %s: paymentResponse %s sent (paidTotal %s)", invoice_id, code,
                        body["paidTotal"])
            return self._ledger(invoice_id, entry, Action.RESPONDED, record, state_hash, code,
                                request_id, basware_id, None)
        refusal = error_messages(response)
        if response.status_code == 409 and self._stored(invoice_id, code):
            # This very response is in Basware already: an earlier attempt landed unheard.
            return self._ledger(invoice_id, entry, Action.RESPONDED, record, state_hash, code,
                                request_id, basware_id, "answer lost; found in Basware")
        if response.status_code >= 500:
            raise BaswareError(f"paymentResponse for invoice {invoice_id}: HTTP "
                               f"{response.status_code}: {refusal}",
                               status=response.status_code, request_id=request_id)
        message = (f"Basware refused the paymentResponse for invoice {invoice_id} (HTTP "
                   f"{response.status_code}): {refusal}")
        logger.error(message)
        return self._ledger(invoice_id, entry, Action.FAILED, record, state_hash, code,
                            request_id, basware_id, message)

    def _stored(self, invoice_id: str, code: str) -> bool:
        """Whether Basware's paymentResponses history of the invoice holds `code`."""
        response = self.client.get_redirected(f"/v1/accountingDocuments/{invoice_id}")
        if not response.ok:
            return False
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("accountingDocuments"), list):
            body = (body["accountingDocuments"] or [{}])[0]
        history = body.get("paymentResponses") if isinstance(body, dict) else None
        return any(isinstance(item, dict) and item.get("externalCode") == code
                   for item in history or [])

    def _ledger(self, invoice_id: str, entry: str, action: Action, record: dict[str, Any],
                state_hash: str, code: str, request_id: str, basware_id: str | None,
                note: str | None) -> str:
        target = self._target
        company, batch, number = entry.split("/")
        target.ledger.record(Entry(
            run_id=target.ledger_run.run_id, stream=STREAM, source_key=invoice_id,
            action=action, direction=SAGE_TO_BASWARE, target_key=code, payload=record,
            payload_hash=state_hash, error=note, bw_request_id=request_id,
            basware_request_id=basware_id, sage_batch=batch, sage_entry=number,
            system=target.system))
        return "created" if action == Action.RESPONDED else "failed"

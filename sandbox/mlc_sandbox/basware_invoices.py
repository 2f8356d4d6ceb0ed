"""Approved-invoice export: the accountingDocuments queue (ref §9, §16.6) and its S3 redirects.

``GET /v1/accountingDocuments`` and ``GET /v1/accountingDocuments/{invoiceId}`` answer 302 with
a one-time pre-signed URL on this same server (``/_s3/exports/<key>?X-Amz-...``). That URL
serves ``{"accountingDocuments": [...]}`` frozen at the time of the API call and carries the
``x-amz-meta-continuationtoken`` header when more invoices remain. It refuses a request that
still carries ``Authorization`` (400, S3's own XML error), a changed query or ``Host`` (403
SignatureDoesNotMatch), an expired URL (403 AccessDenied) and a second download (404
NoSuchKey). An empty result is a 404 from the API itself, without a redirect.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .basware_common import (
    CONTINUATION_HEADER,
    REQUEST_ID_HEADER,
    ApiError,
    Ctx,
    bad_parameter,
    canonical_stamp,
    error_response,
    errors_response,
    json_body,
    json_response,
    last_updated_arg,
    new_id,
    no_records,
    not_found,
    page_size_arg,
    query_arg,
)
from .basware_masterdata import queue_status, strip_nulls
from .basware_schemas import PAYMENT_RESPONSE, TRANSFER_RESPONSE, validate
from .basware_state import PendingItem, Tenant
from .data import EXPENSES, Dataset, _coding_row, _invoice, _po_coding_row, expense_tax
from .http import Request, Response

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .basware import BaswareSimulator

PAGE_MAX = 100
KEEP_RESPONSES = 100
PROCESSING_STATUSES = (
    "New", "WaitingForPrebook", "PrebookInProgress", "Prebooked", "PrebookFailed",
    "WaitingForTransfer", "TransferInProgress", "Transferred", "TransferFailed",
    "WaitingForPrebookCancelation", "PrebookCancelationInProgress", "PrebookCanceled",
    "PrebookCancelFailed", "WaitingToBeRemoved", "RemoveInProgress", "Removed", "RemoveFailed",
    "WaitingToBeReturned", "ReturnInProgress", "Returned", "ReturnFailed",
    "WaitingToBeCompleted", "CompletionInProgress", "Completed", "CompletionFailed", "Paid",
    "InternalStatusChange", "WaitingForEnrichmentTransfer", "EnrichmentTransferInProgress",
    "EnrichmentTransferred", "EnrichmentTransferFailed", "InDocumentFilter",
    "DocumentFilterReleased")
ACKNOWLEDGE = {"WaitingForTransfer": "TransferInProgress", "WaitingForPrebook": "PrebookInProgress"}
PROCESSING_MODES = ("Standard", "InvoiceEnrichment")


# -- seeding -----------------------------------------------------------------------------------

def seed_invoices(tenant: Tenant, dataset: Dataset, sim: BaswareSimulator) -> None:
    """Load the seeded approved invoices; seeding sends no webhook notifications."""
    stamps: dict[str, str] = {}  # seed stamps repeat (one per invoice date): parse each once
    for source in dataset.basware_invoices:
        invoice = _copy_invoice(source)
        stamp = invoice["lastUpdated"]
        if stamp not in stamps:
            stamps[stamp] = canonical_stamp(stamp)
            sim.clock.raise_floor(stamps[stamp])
        invoice["lastUpdated"] = stamps[stamp]
        tenant.invoices[invoice["invoiceId"]] = invoice
    tenant.invoice_index.add_many(tenant.invoices.values())


def _copy_invoice(source: dict[str, Any]) -> dict[str, Any]:
    """A copy as deep as a seed invoice is (fields, lists of values or of flat rows):
    copy.deepcopy took seconds for 100,000 invoices."""
    def level(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: level(v) for k, v in value.items()}
        if isinstance(value, list):
            return [level(v) for v in value]
        return value
    return level(source)


# -- GET (302 to the export store) ---------------------------------------------------------------

def list_invoices(ctx: Ctx) -> Response:
    request = ctx.request
    status = _enum_arg(ctx, "ProcessingStatus", PROCESSING_STATUSES)
    mode = _enum_arg(ctx, "p2pProcessingMode", PROCESSING_MODES) or "Standard"
    company = query_arg(request, "companyCode") or None
    since = last_updated_arg(request, ctx.request_id)
    size = page_size_arg(request, ctx.request_id, PAGE_MAX, PAGE_MAX)

    invoices, index = ctx.tenant.invoices, ctx.tenant.invoice_index
    # lastUpdated strictly after `since`: past every key stamped `since`, whatever its id.
    floor = (since, "\U0010ffff") if since else None

    def rows(after: tuple[str, ...] | None) -> Iterator[tuple[tuple[str, ...], Any]]:
        start = max(after, floor) if after and floor else after or floor
        for key in index.after(status, company, start):
            invoice = invoices[key[1]]
            if invoice.get("p2pProcessingMode", "Standard") == mode:
                yield key, invoice

    # An invoice made bad on purpose (admin `_set`) may hold codingRows of any JSON type: it
    # weighs one row then, and is listed as it is (the connector must reject it, not us).
    budget = (int(ctx.settings["max_coding_rows_per_page"]),
              lambda inv: max(1, len(coded) if isinstance(coded := inv.get("codingRows"), list)
                              else 1))
    page, token = ctx.tenant.pager.page("accountingDocuments", ctx, rows, size, budget)
    if not page:
        return no_records(ctx.request_id)
    return _redirect(ctx, {"accountingDocuments": copy.deepcopy(page)}, token)


def get_invoice(ctx: Ctx, invoice_id: str) -> Response:
    invoice = ctx.tenant.invoices.get(invoice_id)
    if invoice is None:
        return no_records(ctx.request_id)
    return _redirect(ctx, {"accountingDocuments": [copy.deepcopy(invoice)]}, None)


def _enum_arg(ctx: Ctx, name: str, allowed: tuple[str, ...]) -> str | None:
    value = query_arg(ctx.request, name)
    if value and value not in allowed:
        raise bad_parameter(ctx.request_id, f"{name} must be one of {', '.join(allowed)}", name)
    return value or None


def _redirect(ctx: Ctx, payload: dict[str, Any], token: str | None) -> Response:
    location = ctx.sim.exports.put(payload, token, ctx.request,
                                   int(ctx.settings["presigned_url_ttl"]))
    return Response(302, b"", {"Location": location, REQUEST_ID_HEADER: ctx.request_id})


@dataclass
class ExportObject:
    body: bytes
    token: str | None
    host: str
    date: str
    ttl: int
    created: datetime


class ExportStore:
    """The "S3 bucket" behind the redirects: pre-signed, one-time, expiring objects."""

    def __init__(self) -> None:
        self._key = os.urandom(32)
        self._objects: dict[str, ExportObject] = {}

    def clear(self) -> None:
        self._objects.clear()

    def put(self, payload: dict[str, Any], token: str | None, request: Request, ttl: int) -> str:
        key = new_id()
        host = request.headers.get("Host") or request.base_url.split("://", 1)[1]
        now = datetime.now(UTC)
        for stale in [k for k, o in self._objects.items()
                      if (now - o.created).total_seconds() > o.ttl]:
            del self._objects[stale]
        date = now.strftime("%Y%m%dT%H%M%SZ")
        body = json.dumps(payload, separators=(",", ":")).encode()
        self._objects[key] = ExportObject(body, token, host, date, ttl, now)
        query = urlencode({
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"ASIASANDBOXEXPORTS/{date[:8]}/eu-west-1/s3/aws4_request",
            "X-Amz-Date": date, "X-Amz-Expires": str(ttl), "X-Amz-SignedHeaders": "host",
            "X-Amz-Signature": self._sign(key, date, str(ttl), host)})
        return f"{request.base_url}/_s3/exports/{key}?{query}"

    def serve(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _s3_error(405, "MethodNotAllowed",
                             "The specified method is not allowed against this resource.")
        if request.headers.get("Authorization"):
            return _s3_error(400, "InvalidArgument", "Only one auth mechanism allowed; only the "
                             "X-Amz-Algorithm query parameter, Signature query string parameter "
                             "or the Authorization header should be specified",
                             "<ArgumentName>Authorization</ArgumentName>")
        key = request.path.rsplit("/", 1)[-1]
        host = request.headers.get("Host", "")
        date, ttl = request.arg("X-Amz-Date", ""), request.arg("X-Amz-Expires", "")
        expected = self._sign(key, date or "", ttl or "", host)
        if not hmac.compare_digest(expected, request.arg("X-Amz-Signature", "") or ""):
            return _s3_error(403, "SignatureDoesNotMatch", "The request signature we "
                             "calculated does not match the signature you provided.")
        obj = self._objects.get(key)
        if obj is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if (datetime.now(UTC) - obj.created).total_seconds() > obj.ttl:
            del self._objects[key]
            return _s3_error(403, "AccessDenied", "Request has expired")
        del self._objects[key]  # one-time: a download consumes the object
        headers = {"Content-Type": "application/json", "ETag": f'"{hashlib.md5(obj.body).hexdigest()}"',  # noqa: S324
                   "x-amz-request-id": new_id().replace("-", "")[:16].upper(),
                   "Server": "AmazonS3"}
        if obj.token:
            headers[CONTINUATION_HEADER] = obj.token
        return Response(200, obj.body, headers)

    def _sign(self, key: str, date: str, ttl: str, host: str) -> str:
        message = f"{key}\n{date}\n{ttl}\n{host}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def _s3_error(status: int, code: str, message: str, extra: str = "") -> Response:
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\n'
           f"<Error><Code>{code}</Code><Message>{message}</Message>{extra}"
           f"<RequestId>{new_id().replace('-', '')[:16].upper()}</RequestId></Error>")
    return Response.text(status, xml, "application/xml")


# -- acknowledge and transfer responses --------------------------------------------------------

def acknowledge(ctx: Ctx, invoice_id: str) -> Response:
    invoice = ctx.tenant.invoices.get(invoice_id)
    if invoice is None:
        raise not_found(ctx.request_id, "Record to acknowledge not found", invoice_id)
    status = invoice["processingStatus"]
    target = ACKNOWLEDGE.get(status)
    if target is None:
        raise ApiError(error_response(405, ctx.request_id, "METHOD_NOT_ALLOWED",
                                      f"Invoice {invoice_id} is {status}: an invoice can be "
                                      "acknowledged only once unless retransferred from P2P",
                                      type_="BUSINESS", external_code=invoice_id))
    ctx.tenant.invoice_index.remove(invoice)
    invoice["processingStatus"] = target
    invoice["lastUpdated"] = ctx.sim.clock.stamp()
    ctx.tenant.invoice_index.add(invoice)
    ctx.sim.complete_tasks(ctx.tenant, invoice_id, f"Invoice acknowledged ({target})")
    return json_response(200, "Success", ctx.request_id)


def _invoice_response(ctx: Ctx, invoice_id: str, schema: dict[str, Any], kind: str
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The invoice a transfer or payment response is for, and the response, validated."""
    invoice = ctx.tenant.invoices.get(invoice_id)
    if invoice is None:
        raise not_found(ctx.request_id, "Record to update not found", invoice_id)
    body = json_body(ctx)
    if not isinstance(body, dict):
        raise ApiError(error_response(400, ctx.request_id, "SCHEMA_VALIDATION_ERROR",
                                      f"{kind} response must be a single JSON object, not an "
                                      "array"))
    errors = validate(schema, body)
    if errors:
        raise ApiError(errors_response(400, ctx.request_id, errors))
    return invoice, strip_nulls(body)


def post_transfer_response(ctx: Ctx, invoice_id: str) -> Response:
    invoice, response = _invoice_response(ctx, invoice_id, TRANSFER_RESPONSE, "Transfer")
    _check_transfer_allowed(ctx, invoice, response["externalCode"])
    stamp = ctx.sim.clock.stamp()
    ctx.tenant.invoice_index.remove(invoice)
    _apply_transfer(invoice, response, stamp)
    ctx.tenant.invoice_index.add(invoice)
    item = PendingItem(response["externalCode"], {**response, "lastUpdated": stamp}, 0, False,
                       parent=invoice_id)
    queue_status(ctx, "TransferResponse", "POST", [item], None)
    return json_response(200, response, ctx.request_id)


def _check_transfer_allowed(ctx: Ctx, invoice: dict[str, Any], code: str) -> None:
    invoice_id, status = invoice["invoiceId"], invoice["processingStatus"]

    def reject(message: str) -> ApiError:
        return ApiError(error_response(400, ctx.request_id, "DATA_VALIDATION_FAILED", message,
                                       type_="BUSINESS", external_code=code, info=invoice_id))

    if any(r.get("externalCode") == code for r in invoice.get("transferResponses", [])):
        raise reject(f"A transfer response with externalCode {code} already exists for invoice "
                     f"{invoice_id}; every response needs a new externalCode")
    if status == "Transferred":
        raise reject(f"Invoice {invoice_id} is already Transferred; transfer responses are not "
                     "allowed for transferred invoices")
    if status in ACKNOWLEDGE:
        raise reject(f"Invoice {invoice_id} is {status}; acknowledge it before sending a "
                     "transfer response")
    if status == "TransferFailed" and ctx.settings["responses_after_failure"] == "allowed":
        return  # the spec forbids responses only once Transferred (guess 14)
    if status != "TransferInProgress":
        raise reject(f"Invoice {invoice_id} is {status}; transfer responses are accepted only "
                     "while it is TransferInProgress")


def _apply_transfer(invoice: dict[str, Any], response: dict[str, Any], stamp: str) -> None:
    history = [*invoice.get("transferResponses", []), {**response, "lastUpdated": stamp}]
    invoice["transferResponses"] = history[-KEEP_RESPONSES:]
    if response["success"]:
        invoice["processingStatus"] = "Transferred"
        invoice["paymentBlock"] = response["paymentBlock"]
        for field in ("voucherNumber1", "voucherNumber2"):
            if field in response:
                invoice[field] = response[field]
    else:
        invoice["processingStatus"] = "TransferFailed"
    invoice["lastUpdated"] = stamp


# -- payment responses (ref §9.1 step 5) -------------------------------------------------------

# What the latest payment response says of the invoice's payment; a field it omits is cleared.
PAYMENT_FIELDS = ("paymentDate", "paidTotal", "paymentMethod", "paymentTermCode", "cashDiscount",
                  "checkNumber", "paymentNumber", "paymentDocument", "paymentReversalDocument")
PAYABLE = ("Transferred", "Paid")
PAID_TOLERANCE = 0.005


def post_payment_response(ctx: Ctx, invoice_id: str) -> Response:
    """Guesses (docs/decisions.md, "Payment status"): accepted once the ERP has the invoice
    (Transferred or Paid); a reused externalCode is 409 (the one conflict the spec's 409 can
    sensibly name); ``paidTotal`` is cumulative, and absent on a success it means paid in full;
    the invoice is ``Paid`` once a successful response's paidTotal reaches its grossSum, and
    back to ``Transferred`` when a later one says less (a payment reversed)."""
    invoice, response = _invoice_response(ctx, invoice_id, PAYMENT_RESPONSE, "Payment")
    code, status = response["externalCode"], invoice["processingStatus"]
    if any(r.get("externalCode") == code for r in invoice.get("paymentResponses", [])):
        raise ApiError(error_response(409, ctx.request_id, "CONFLICT",
                                      f"A payment response with externalCode {code} already "
                                      f"exists for invoice {invoice_id}; every response needs a "
                                      "new externalCode", type_="BUSINESS", external_code=code,
                                      info=invoice_id))
    if status not in PAYABLE:
        raise ApiError(error_response(400, ctx.request_id, "DATA_VALIDATION_FAILED",
                                      f"Invoice {invoice_id} is {status}; payment responses are "
                                      "accepted only once it is Transferred", type_="BUSINESS",
                                      external_code=code, info=invoice_id))
    stamp = ctx.sim.clock.stamp()
    response.setdefault("paymentDate", stamp[:10] + "T00:00:00Z")  # "defaults to today"
    ctx.tenant.invoice_index.remove(invoice)
    _apply_payment(invoice, response, stamp)
    ctx.tenant.invoice_index.add(invoice)
    item = PendingItem(code, {**response, "lastUpdated": stamp}, 0, False, parent=invoice_id)
    queue_status(ctx, "PaymentResponse", "POST", [item], None)
    return json_response(200, response, ctx.request_id)


def _apply_payment(invoice: dict[str, Any], response: dict[str, Any], stamp: str) -> None:
    history = [*invoice.get("paymentResponses", []), {**response, "lastUpdated": stamp}]
    invoice["paymentResponses"] = history[-KEEP_RESPONSES:]
    invoice["paymentBlock"] = response["paymentBlock"]
    for name in PAYMENT_FIELDS:  # "omitted fields are cleared"
        if name in response:
            invoice[name] = response[name]
        else:
            invoice.pop(name, None)
    gross = abs(float(invoice.get("grossSum") or 0))
    paid = response.get("paidTotal")
    full = paid is None or abs(float(paid)) >= gross - PAID_TOLERANCE
    invoice["processingStatus"] = "Paid" if response["success"] and full else "Transferred"
    invoice["lastUpdated"] = stamp


# -- admin: what a P2P user does ---------------------------------------------------------------

_FIXED_FIELDS = {"companyCode", "supplierCode", "orderNumber", "invoiceId", "processingStatus",
                 "transferResponses", "paymentResponses", "lastUpdated"}
_QUEUE_FIELDS = {"invoiceId", "companyCode", "processingStatus", "transferResponses",
                 "lastUpdated"}


def create_invoice(sim: BaswareSimulator, tenant: Tenant, body: dict[str, Any]) -> dict:
    """A new approved invoice in WaitingForTransfer, built like the seeded ones.

    ``companyCode`` (default US01), ``supplierCode`` and ``orderNumber`` pick what it is for;
    with an ``orderNumber`` it is matched line by line to that Sage PO. Any other field given
    overrides the generated value; ``taxCode`` codes every line with that tax code (its
    percent and amounts unchanged). The same seed and call sequence give the same invoices.

    For data a P2P user should not be able to make (tests of bad input): ``_set`` overrides
    any field with any JSON value after generation (``supplierCode`` too) and ``_remove``
    lists fields to leave out; the queue's own fields (``invoiceId``, ``companyCode``,
    ``processingStatus``, ``lastUpdated``, ``transferResponses``) stay the simulator's.
    """
    dataset = sim.dataset
    company = next((c for c in dataset.companies
                    if c.basware_code == body.get("companyCode", "US01")), None)
    if company is None:
        raise ValueError(f"unknown companyCode {body.get('companyCode')!r}")
    records = dataset.sage[company.sage_id]
    vendors = {v["VendorNumber"]: v for v in records["AP/APVendors"]}
    sim.admin_counter += 1
    rng = random.Random(f"{sim.seed}:{sim.data}:admin-invoice:{sim.admin_counter}")
    order_number = body.get("orderNumber")
    if order_number:
        order = next((o for o in records["PO/POPurchaseOrders"]
                      if o["PurchaseOrderNumber"] == order_number), None)
        if order is None:
            raise ValueError(f"no purchase order {order_number} in {company.sage_id}")
        accounts = {a["UnformattedAccount"]: a for a in records["GL/GLAccounts"]}
        rows = [_po_coding_row(rng, line, order, accounts, company)
                for line in order["PurchaseOrderLines"]]
        vendor = _vendor(vendors, body.get("supplierCode") or order["Vendor"])
        invoice = _invoice(rng, company, vendor, rows, [order_number])
    else:
        active = [v for v in vendors.values() if v["Status"] == "Active"]
        vendor = _vendor(vendors, body.get("supplierCode") or active[0]["VendorNumber"])
        row = _coding_row(rng, "6300-100", EXPENSES["6300"], "100",
                          round(rng.uniform(80, 2500), 2), expense_tax(company))
        invoice = _invoice(rng, company, vendor, [row], [])
    raw = body.get("_set") or {}
    remove = body.get("_remove") or []
    if not isinstance(raw, dict) or not isinstance(remove, list):
        raise ValueError("_set must be an object and _remove a list of field names")
    if "taxCode" in body:
        for row in invoice["codingRows"]:
            row["taxCode"] = body["taxCode"]
    invoice.update({k: v for k, v in body.items()
                    if k not in _FIXED_FIELDS and k not in ("_set", "_remove", "taxCode")})
    invoice.update({k: v for k, v in raw.items() if k not in _QUEUE_FIELDS})
    for name in remove:
        if name not in _QUEUE_FIELDS:
            invoice.pop(name, None)
    invoice["lastUpdated"] = sim.clock.stamp()
    tenant.invoices[invoice["invoiceId"]] = invoice
    tenant.invoice_index.add(invoice)
    sim.notify(tenant, "AccountingDocuments", "WaitingForTransfer", invoice["invoiceId"])
    return invoice


def _vendor(vendors: dict[str, dict[str, Any]], number: str) -> dict[str, Any]:
    if number not in vendors:
        raise ValueError(f"no vendor {number}")
    return vendors[number]


def retransfer(sim: BaswareSimulator, tenant: Tenant, invoice_id: str) -> dict[str, Any]:
    """A P2P user sends a TransferFailed invoice again: back to WaitingForTransfer."""
    invoice = tenant.invoices[invoice_id]
    if invoice["processingStatus"] != "TransferFailed":
        raise ValueError(f"invoice {invoice_id} is {invoice['processingStatus']}; only "
                         "TransferFailed invoices can be retransferred")
    tenant.invoice_index.remove(invoice)
    invoice["processingStatus"] = "WaitingForTransfer"
    invoice["lastUpdated"] = sim.clock.stamp()
    tenant.invoice_index.add(invoice)
    sim.notify(tenant, "AccountingDocuments", "WaitingForTransfer", invoice_id)
    return invoice

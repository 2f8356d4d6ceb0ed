"""Basware P2P API simulator: what the connector talks to instead of api.basware.com.

Behaves as /work/shared/reference/basware-api.md describes, with the product decisions of the
brief (a UUID v4 ``X-BW-REQUEST-ID`` is required on vendor and PO sync calls; 429 exists).
Entity schemas come from Basware's own OpenAPI documents (see :mod:`.basware_schemas`).

Routes (all under the server's base URL; ``{md}`` is vendors, accounts, costCenters,
paymentTerms, taxCodes, matchingOrders or matchingOrderLines):

- ``POST /v1/tokens`` (Basic client credentials + form ``grant_type``, ``scope``);
  ``GET /.well-known/openid-configuration``, ``GET /.well-known/jwks.json``
- ``GET|POST|DELETE /v1/{md}``, ``GET|PATCH /v1/{md}/{externalCode}``,
  ``GET /v1/taskStatus/{id}`` (status of a bulk DELETE)
- ``GET /v1/requestStatus``, ``GET /v1/requestStatus/{requestId}``,
  ``POST /v1/requestStatus/acknowledge``
- ``GET /v1/accountingDocuments`` and ``GET /v1/accountingDocuments/{invoiceId}`` (302 to
  ``GET /_s3/exports/{key}?X-Amz-...``), ``POST /v1/accountingDocuments/{id}/acknowledge``,
  ``POST /v1/accountingDocuments/{id}/transferResponses``,
  ``POST /v1/accountingDocuments/{id}/paymentResponses``
- ``GET|POST|DELETE /v1/subscriptions``, ``GET /v1/tasks``, ``GET /v1/tasks/{taskId}``
- admin: ``POST /_sandbox/invoices`` (new approved invoice, notifies webhooks; ``_set`` and
  ``_remove`` make bad data for bad-input tests),
  ``POST /_sandbox/invoices/{invoiceId}/retransfer`` (TransferFailed -> WaitingForTransfer),
  plus the generic ``/_sandbox/`` endpoints of :class:`~.http.SimulatorServer`. The state
  (``GET /_sandbox/state``) shows each tenant's three-way matching of PO-matched invoice
  rows against their lines' goods receipts under ``matching`` (basware_matching.py).

Settings (``/_sandbox/settings``): ``processing_delay`` (s, 0.3), ``token_lifetime`` (s, 3600),
``allowed_scopes`` (BASWARE_SCOPES), ``require_request_id`` (True),
``webhook_signature_header`` (x-bwapi-signature-256), ``webhook_max_attempts`` (4),
``webhook_retry_delay`` (s, 0.5, doubling), ``presigned_url_ttl`` (s, 900),
``active_currencies`` (USD, CAD), ``max_coding_rows_per_page`` (1000),
``responses_after_failure`` (``allowed``; ``refused``: see guess 14).

Guesses beyond the reference (each is a choice the real API may make differently):

1. Auth: a missing/invalid/expired token or a wrong Basic login on an API call is 401
   ``{"message":"Unauthorized"}`` (API Gateway style), no ``WWW-Authenticate``. A token that
   lacks the endpoint's scope is 403 ResponseEntityList ``ACCESS_TOKEN_VALIDATION_ERROR`` /
   ``SECURITY``. HTTP Basic on API calls gets every scope in ``allowed_scopes``.
2. ``POST /v1/tokens``: form fields are checked before credentials (FastAPI validates the
   form first): missing grant_type or scope -> 400 ``invalid_request``; then a missing or
   wrong Basic header -> 401 ``invalid_client``; grant_type other than client_credentials ->
   400 ``unsupported_grant_type``; no requested scope allowed -> 400 ``invalid_scope``; scopes
   not allowed are silently dropped from a partially allowed request. ``iss`` is the
   simulator's base URL; tokens are opaque (not verifiable RS256).
3. X-BW-REQUEST-ID (brief decision 2): required on every method of vendors, matchingOrders and
   matchingOrderLines, canonical 8-4-4-4-12 UUID with version 4 and RFC 4122 variant; else 400
   ResponseEntityList ``PARAMETER_VALIDATION_ERROR``. Checked after auth and scope.
4. Order of checks on an API call: route (unknown path or method -> 403 ``{"message":"Missing
   Authentication Token"}`` as AWS API Gateway does), auth (401), scope (403), request id
   (400), body size > 6 MiB (413 ``{"message":"Request Too Long"}``), media type (415
   ASP.NET ProblemDetails unless application/json, text/json, application/*+json), then the
   endpoint's own validation.
5. POST bulk upsert: an empty array is 400 ``PARAMETER_VALIDATION_ERROR``, as is one record too
   many; a repeated externalCode inside one request is 400 ``DATA_VALIDATION_FAILED``. Any
   invalid record rejects the whole request; nothing is stored. Null fields are dropped
   before storing (null means "not sent"); the echo is the stored form.
6. Validation messages are ours (ASP.NET-like, naming the field path, e.g. ``The field
   'companies[0].companyCode' is required.``); ``info`` holds the JSON path ``$[i].field``.
7. Asynchronous processing: outcomes are decided when an entry is processed, in arrival
   order, ``processing_delay`` after the write (run by a background ticker and before every
   API call, so results never depend on timing luck).
   Business errors: unknown company code ("Record skipped due to wrong or missing
   CompanyCode 'X'", the spec's example text) on every entity; vendor payment term missing
   for a company ("Payment term X does not exist for company Y"); currency not in
   ``active_currencies`` (vendor paymentMeans, order currencyCode); matching order whose
   supplier is not a P2P vendor of that company, or whose organizationElementCode is not a
   known company; order line whose order is not in P2P. "Exists in P2P" means an earlier
   write of it was processed with Success. An identical re-post is ``NotProcessed`` even if
   the earlier version failed (the FAQ: modify the record to resend); a record overtaken by
   a newer version before processing is ``RecordExpired``. DELETE does not remove data from
   P2P. Request-level status is Error if any item is Error, else Success. System ``P2P``,
   module ``IA``, entityVersion ``<EntityType>V1``.
8. requestStatus acknowledge is all-or-nothing: an unknown id -> 404, an InProgress entry ->
   400, an already acknowledged one -> 405; success answers 200 ``{"requestStatus":[...]}``.
9. Lists: default pageSize 100 (accounts 500, as in the 2022 spec), order by (lastUpdated,
   key) ascending, ``lastUpdated`` strictly after. A continuation token resumes after the
   last key returned over current data (records changed meanwhile can reappear later), works
   only with the identical query string, stays valid (reusable) for an hour; a bad token is
   400. The 404-when-empty body is ``{"requestId","hasErrors":false,"errors":[],"message":
   "Request was successful and no records were found"}``. lastUpdated values are
   millisecond UTC stamps, strictly increasing across the simulator.
10. PATCH merges top-level non-null fields (nested objects and arrays are replaced whole)
    and must still satisfy the schema; body externalCode different from the path -> 400
    ``EXTERNAL_CODE_MISMATCH`` (checked before the 404 for a missing record).
11. DELETE ``{"externalCode"}`` -> 200 ``{"taskName","taskStatus":"Completed"}`` or 404;
    ``{"lastUpdated"}`` -> 202 with ``statusApiLink`` = ``/v1/taskStatus/{requestId}``
    (scope ``taskStatus.read``), which reads InProgress for ``processing_delay`` then
    Completed with ``recordCount``.
12. accountingDocuments: an empty list (or unknown invoiceId) is a 404 straight from the API,
    no redirect. The pre-signed URL is one-time (second download 404 NoSuchKey), expires
    after ``presigned_url_ttl`` (403 AccessDenied), is bound to the ``Host`` header, and the
    continuation header is on the redirected (S3) response only. Pages also stop early once
    ``max_coding_rows_per_page`` coding rows are reached ("fewer invoices come back when
    they have many coding rows"). ``ProcessingStatus`` is matched case-insensitively as a
    parameter name; no filter means every status; ``p2pProcessingMode`` defaults to Standard.
13. Acknowledge answers 200 with the JSON string ``"Success"``; acknowledging anything but
    WaitingForTransfer/WaitingForPrebook is 405 ResponseEntityList ``METHOD_NOT_ALLOWED``.
14. transferResponses: accepted while TransferInProgress, so the connector must acknowledge
    first (the spec only says not to send both at once), and on a TransferFailed invoice:
    the spec forbids responses only once an invoice is Transferred and keeps the latest 100
    per invoice, so a later success (the cause fixed in the ERP) may follow a failure
    (setting ``responses_after_failure`` ``allowed``, the default; ``refused`` models a
    stricter tenant, where only a P2P user's retransfer reopens the invoice). All refusals
    are 400 ResponseEntityList ``DATA_VALIDATION_FAILED`` / ``BUSINESS`` (the 2022 spec lists
    no 409 here): a reused externalCode for that invoice (checked first, among the kept
    100), an invoice already Transferred, WaitingForTransfer (not acknowledged), or
    TransferFailed when ``responses_after_failure`` is ``refused``.
    The status change is immediate; its requestStatus (entityType TransferResponse,
    parentExternalCode = invoiceId) is revealed after the delay. TransferFailed stays until a
    P2P user re-sends it (admin ``retransfer``).
15. Webhooks: signature header as in :mod:`.basware_webhooks` (HMAC-SHA256 of the raw body
    keyed by webhookAuthenticationToken, ``sha256=<hex>``); the ConnectionTest is signed the
    same way and must get exactly 200, other notifications any 2xx; http:// receiver URLs
    are allowed; one subscription per (taskType, taskSubType, URL), re-posting replaces it;
    one task per notified subscription; task ``Failed`` when every attempt failed,
    ``Completed`` when the invoice is acknowledged; ``expirationTime`` is 7 days ahead.
    RequestStatus subscriptions are notified when an entry is processed (documentId =
    requestId, taskSubType = Success/Error).
    The ConnectionTest payload is a full notification body with ``taskType
    "ConnectionTest"``, a random ``documentId`` and the subscription's taskSubType.
    ``subscriptionType: Polling`` is refused (reserved). ``GET /v1/tasks`` pages by 100; an
    empty subscriptions/tasks result is 404 ``{"detail":"Not Found"}`` (FastAPI service).
16. Faults: 429 ``{"message":"Too Many Requests"}`` + Retry-After; 503 ``{"message":"Service
    Unavailable"}`` + Retry-After; 500 ResponseEntityList ``UNEXPECTED_ERROR`` / TECHNICAL.
17. Tenancy: one API account (BASWARE_CLIENT_ID) whose data is keyed by its client id;
    ``reset`` rebuilds data and settings but keeps issued tokens valid.
18. The S3 side: error bodies are S3's XML ``<Error><Code>..</Code>..`` documents; the
    redirect target is a snapshot of the page taken at the API call; the Location is on the
    same host and port as the API, so a client must drop Authorization itself (``requests``
    keeps it on same-host redirects, which this simulator then refuses).
19. Admin-created invoices are generated by the seed generator's own functions (same shape
    as the seeded ones, PO-matched line by line when ``orderNumber`` is given), numbered from
    a per-reset counter, so a reset followed by the same calls yields the same invoiceIds.
20. paymentResponses (guesses; the spec says only "can return 409"): accepted on a
    Transferred or Paid invoice (400 ``DATA_VALIDATION_FAILED`` otherwise); a reused
    externalCode for that invoice is **409** ``CONFLICT`` (checked first, among the kept 100);
    the invoice's payment fields (paymentDate, paidTotal, checkNumber, paymentNumber...)
    become the latest response's, an omitted one cleared; ``paymentDate`` defaults to today;
    the invoice is ``Paid`` once a successful response's cumulative ``paidTotal`` reaches
    ``|grossSum|`` (no paidTotal on a success: paid in full), ``Transferred`` again when a
    later one says less or fails; history in ``paymentResponses[]`` (latest 100),
    requestStatus entityType PaymentResponse.
"""

from __future__ import annotations

import heapq
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import basware_invoices as invoices
from . import basware_masterdata as masterdata
from . import basware_requeststatus as requeststatus
from . import basware_webhooks as webhooks
from .basware_auth import Principal, TokenService, jwks, openid_configuration
from .basware_common import (
    REQUEST_ID_HEADER,
    ApiError,
    Clock,
    Ctx,
    error_entity,
    error_response,
    errors_response,
    json_response,
    new_id,
)
from .basware_matching import matching
from .basware_state import Tenant
from .data import BASWARE_CLIENT_ID, BASWARE_CLIENT_SECRET, BASWARE_SCOPES, build_dataset
from .http import Request, Response, Simulator

MAX_BODY_BYTES = 6 * 1024 * 1024
REQUEST_ID_APIS = frozenset({"vendors", "matchingOrders", "matchingOrderLines"})
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
                   re.IGNORECASE)
SCOPE_VERBS = {"GET": "read", "POST": "write", "PATCH": "write", "DELETE": "delete"}
COMPANY_CODES = {"SAMINC": "US01", "SAMLTD": "CA01"}

DEFAULT_SETTINGS: dict[str, Any] = {
    "processing_delay": 0.3,
    "token_lifetime": 3600,
    "allowed_scopes": BASWARE_SCOPES,
    "require_request_id": True,
    "webhook_signature_header": "x-bwapi-signature-256",
    "webhook_max_attempts": 4,
    "webhook_retry_delay": 0.5,
    "presigned_url_ttl": 900,
    "active_currencies": ["USD", "CAD"],
    "max_coding_rows_per_page": 1000,
    "responses_after_failure": "allowed",
}
#: What a transfer response on a TransferFailed invoice gets (guess 14).
RESPONSES_AFTER_FAILURE = ("allowed", "refused")
_SETTING_TYPES: dict[str, Callable[[Any], Any]] = {
    "processing_delay": float, "token_lifetime": int, "require_request_id": bool,
    "webhook_signature_header": str, "webhook_max_attempts": int,
    "webhook_retry_delay": float, "presigned_url_ttl": int, "max_coding_rows_per_page": int,
}

Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    locked: bool = True  # False: the handler takes the simulator lock itself


def _routes() -> list[Route]:
    md = "(?P<endpoint>" + "|".join(masterdata.ENDPOINTS) + ")"
    seg = "[^/]+"
    table: list[tuple[str, str, Handler, bool]] = [
        ("GET", f"/v1/{md}", masterdata.list_records, True),
        ("POST", f"/v1/{md}", masterdata.post_records, True),
        ("DELETE", f"/v1/{md}", masterdata.delete_records, True),
        ("GET", f"/v1/{md}/(?P<code>{seg})", masterdata.get_record, True),
        ("PATCH", f"/v1/{md}/(?P<code>{seg})", masterdata.patch_record, True),
        ("GET", f"/v1/taskStatus/(?P<task_id>{seg})", masterdata.task_status, True),
        ("GET", "/v1/requestStatus", requeststatus.list_statuses, True),
        ("POST", "/v1/requestStatus/acknowledge", requeststatus.acknowledge_statuses, True),
        ("GET", f"/v1/requestStatus/(?P<request_id>{seg})", requeststatus.get_status, True),
        ("GET", "/v1/accountingDocuments", invoices.list_invoices, True),
        ("GET", f"/v1/accountingDocuments/(?P<invoice_id>{seg})", invoices.get_invoice, True),
        ("POST", f"/v1/accountingDocuments/(?P<invoice_id>{seg})/acknowledge",
         invoices.acknowledge, True),
        ("POST", f"/v1/accountingDocuments/(?P<invoice_id>{seg})/transferResponses",
         invoices.post_transfer_response, True),
        ("POST", f"/v1/accountingDocuments/(?P<invoice_id>{seg})/paymentResponses",
         invoices.post_payment_response, True),
        ("GET", "/v1/subscriptions", webhooks.list_subscriptions, True),
        ("POST", "/v1/subscriptions", webhooks.post_subscriptions, False),
        ("DELETE", "/v1/subscriptions", webhooks.delete_subscriptions, True),
        ("GET", "/v1/tasks", webhooks.list_tasks, True),
        ("GET", f"/v1/tasks/(?P<task_id>{seg})", webhooks.get_task, True),
    ]
    return [Route(method, re.compile(pattern + "$"), handler, locked)
            for method, pattern, handler, locked in table]


ROUTES = _routes()


class BaswareSimulator(Simulator):
    name = "basware"

    def __init__(self, data: str = "demo", seed: int = 0) -> None:
        super().__init__()
        self.auth = TokenService(BASWARE_CLIENT_ID, BASWARE_CLIENT_SECRET)
        self.exports = invoices.ExportStore()
        self.webhook_secrets: set[str] = set()
        self._due: list[float] = []
        self._wake = threading.Condition(threading.Lock())
        self.reset(seed, data)
        threading.Thread(target=self._ticker, name="basware-p2p", daemon=True).start()

    # -- state hooks -------------------------------------------------------------------------
    def reset(self, seed: int, data: str) -> None:
        with self.lock:
            self.seed, self.data = seed, data
            self.settings = dict(DEFAULT_SETTINGS)
            self.settings["active_currencies"] = list(DEFAULT_SETTINGS["active_currencies"])
            self.dataset = build_dataset(data, seed)
            self.clock = Clock()
            self.tenants: dict[str, Tenant] = {}
            self.admin_counter = 0
            self.exports.clear()
            invoices.seed_invoices(self.tenant(BASWARE_CLIENT_ID), self.dataset, self)

    def tenant(self, client_id: str) -> Tenant:
        if client_id not in self.tenants:
            self.tenants[client_id] = Tenant(client_id)
        return self.tenants[client_id]

    def update_settings(self, changes: dict[str, Any]) -> None:
        unknown = set(changes) - set(self.settings)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(self.settings)}")
        updated = dict(self.settings)
        for key, value in changes.items():
            updated[key] = _coerce_setting(key, value)
        self.settings = updated

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            self.process_due()
            return {"settings": self.settings,
                    "tenants": {cid: _tenant_snapshot(t) for cid, t in self.tenants.items()}}

    def info(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "token_url": f"{base_url}/v1/tokens",
                "client_id": BASWARE_CLIENT_ID, "client_secret": BASWARE_CLIENT_SECRET,
                "region": "eu", "company_codes": dict(COMPANY_CODES),
                "admin_url": f"{base_url}/_sandbox"}

    def secrets(self) -> list[str]:
        with self.lock:
            return [*self.auth.secrets(), *self.webhook_secrets]

    def remember_secret(self, value: Any) -> None:
        """A webhook token seen in any subscription request, kept out of logs for good."""
        if isinstance(value, str) and value:
            with self.lock:
                self.webhook_secrets.add(value)

    def fault_response(self, kind: str, retry_after: float) -> Response:
        request_id = new_id()
        retry = {"Retry-After": str(max(0, int(retry_after + 0.999)))}
        if kind == "429":
            return json_response(429, {"message": "Too Many Requests"}, request_id,
                                 {**retry, "x-amzn-ErrorType": "TooManyRequestsException"})
        if kind == "503":
            return json_response(503, {"message": "Service Unavailable"}, request_id,
                                 {**retry, "x-amzn-ErrorType": "ServiceUnavailableException"})
        if kind == "500":
            return errors_response(500, request_id, [error_entity(
                "UNEXPECTED_ERROR", "An unexpected error occurred", type_="TECHNICAL")])
        return super().fault_response(kind, retry_after)

    # -- background work ---------------------------------------------------------------------
    def process_due(self) -> None:
        """P2P processing of every write whose delay has passed; notifies RequestStatus hooks."""
        with self.lock:
            currencies = self.settings["active_currencies"]
            for tenant in list(self.tenants.values()):
                for entry in tenant.process_due(self.clock, currencies):
                    self.notify(tenant, "RequestStatus", entry.status, entry.request_id)

    def schedule_processing(self, delay: float) -> None:
        """Make sure :meth:`process_due` runs ``delay`` seconds from now, even if no call comes."""
        with self._wake:
            heapq.heappush(self._due, time.monotonic() + delay)
            self._wake.notify()

    def _ticker(self) -> None:
        """One daemon thread runs processing when entries fall due (webhooks need no caller)."""
        while True:
            with self._wake:
                while not self._due:
                    self._wake.wait()
                wait = self._due[0] - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                while self._due and self._due[0] <= time.monotonic():
                    heapq.heappop(self._due)
            self.process_due()  # never while holding _wake: process_due takes self.lock

    def notify(self, tenant: Tenant, task_type: str, sub_type: str, document_id: str) -> None:
        webhooks.notify(self, tenant, task_type, sub_type, document_id)

    def complete_tasks(self, tenant: Tenant, document_id: str, message: str) -> None:
        webhooks.complete_tasks(self, tenant, document_id, message)

    # -- HTTP --------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        try:
            return self._dispatch(request)
        except ApiError as exc:
            return exc.response

    def _dispatch(self, request: Request) -> Response:
        method, path = request.method, request.path
        if path.startswith("/_s3/"):
            with self.lock:
                return self.exports.serve(request)
        if path == "/v1/tokens" and method == "POST":
            with self.lock:
                return self.auth.issue(request, self.settings, request.base_url)
        if path == "/.well-known/openid-configuration" and method == "GET":
            return Response.json(200, openid_configuration(request.base_url))
        if path == "/.well-known/jwks.json" and method == "GET":
            return Response.json(200, jwks())
        request_id = new_id()
        route, params = _match(method, path)
        if route is None:
            return json_response(403, {"message": "Missing Authentication Token"}, request_id,
                                 {"x-amzn-ErrorType": "MissingAuthenticationTokenException"})
        with self.lock:
            ctx = self._admit(request, route, request_id)
            response = route.handler(ctx, **params) if route.locked else None
        if response is None:
            response = route.handler(ctx, **params)
        response.headers.setdefault(REQUEST_ID_HEADER, request_id)
        return response

    def _admit(self, request: Request, route: Route, request_id: str) -> Ctx:
        """Auth, scope, request id and size checks; the context for the handler."""
        self.process_due()
        expiry_calls = self.faults.config.token_expiry_calls if self.faults else 0
        principal = self.auth.authenticate(request.headers.get("Authorization"), self.settings,
                                           expiry_calls)
        if principal is None:
            raise ApiError(json_response(401, {"message": "Unauthorized"}, request_id,
                                         {"x-amzn-ErrorType": "UnauthorizedException"}))
        api = request.path.split("/")[2]  # the scope prefix: first segment under /v1
        _check_scope(principal, api, request.method, request_id)
        if api in REQUEST_ID_APIS and self.settings["require_request_id"]:
            _check_request_id(request, request_id)
        if len(request.body) > MAX_BODY_BYTES:
            raise ApiError(json_response(413, {"message": "Request Too Long"}, request_id))
        return Ctx(self, request, request_id, principal, self.tenant(principal.client_id))

    # -- admin -------------------------------------------------------------------------------
    def admin(self, request: Request, action: str) -> Response | None:
        parts = action.split("/")
        if request.method != "POST" or parts[0] != "invoices":
            return None
        body = request.json() or {}
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        with self.lock:
            tenant = self.tenant(BASWARE_CLIENT_ID)
            if len(parts) == 1:
                return Response.json(201, invoices.create_invoice(self, tenant, body))
            if len(parts) == 3 and parts[2] == "retransfer":
                if parts[1] not in tenant.invoices:
                    return Response.json(404, {"error": f"no invoice {parts[1]}"})
                return Response.json(200, invoices.retransfer(self, tenant, parts[1]))
        return None


def _match(method: str, path: str) -> tuple[Route | None, dict[str, str]]:
    for route in ROUTES:
        if route.method == method:
            found = route.pattern.match(path)
            if found:
                return route, found.groupdict()
    return None, {}


def _check_scope(principal: Principal, api: str, method: str, request_id: str) -> None:
    scope = f"{api}.{SCOPE_VERBS[method]}"
    if scope not in principal.scopes:
        raise ApiError(error_response(403, request_id, "ACCESS_TOKEN_VALIDATION_ERROR",
                                      f"The access token does not grant the scope {scope}",
                                      type_="SECURITY", info=scope))


def _check_request_id(request: Request, request_id: str) -> None:
    value = (request.headers.get("X-BW-REQUEST-ID") or "").strip()
    if not UUID4.match(value):
        problem = "missing" if not value else f"not a UUID v4: {value!r}"
        raise ApiError(error_response(400, request_id, "PARAMETER_VALIDATION_ERROR",
                                      f"Header X-BW-REQUEST-ID is {problem}; every vendor and "
                                      "purchase-order sync call needs a fresh UUID v4",
                                      info="X-BW-REQUEST-ID"))


def _coerce_setting(key: str, value: Any) -> Any:
    if key == "allowed_scopes":
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return " ".join(value)
        raise ValueError("allowed_scopes must be a space-separated string or a list of strings")
    if key == "active_currencies":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ValueError("active_currencies must be a list of currency codes")
    if key == "responses_after_failure":
        if value not in RESPONSES_AFTER_FAILURE:
            raise ValueError("responses_after_failure must be one of "
                             f"{', '.join(RESPONSES_AFTER_FAILURE)}")
        return value
    if key == "require_request_id" and not isinstance(value, bool):
        raise ValueError("require_request_id must be true or false")
    converted = _SETTING_TYPES[key](value)
    if isinstance(converted, int | float) and not isinstance(converted, bool) and converted < 0:
        raise ValueError(f"{key} must not be negative")
    return converted


def _tenant_snapshot(tenant: Tenant) -> dict[str, Any]:
    return {
        "master_data": {endpoint: list(records.values())
                        for endpoint, records in tenant.records.items()},
        "p2p": tenant.p2p.counts(),
        "request_status": [entry.view() for entry in tenant.statuses.values()],
        "invoices": list(tenant.invoices.values()),
        "matching": matching(tenant),
        "subscriptions": [dict(s) for s in tenant.subscriptions],
        "tasks": list(tenant.tasks.values()),
    }


__all__ = ["BaswareSimulator", "DEFAULT_SETTINGS"]

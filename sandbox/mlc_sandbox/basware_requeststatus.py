"""``/v1/requestStatus``: the asynchronous outcome of every write (ref §6).

The list endpoint defaults to ``status=Error`` when neither ``entityType`` nor ``system`` is
given, so a bare ``GET /v1/requestStatus`` is the queue of unacknowledged failures; note the
list endpoint's real parameter spelling ``ignoreSuccessfullItems`` (two l), while the
single-request endpoint spells it ``ignoreSuccessfulItems``.
"""

from __future__ import annotations

from typing import Any

from .basware_common import (
    CONTINUATION_HEADER,
    ApiError,
    Ctx,
    bad_parameter,
    bool_arg,
    error_response,
    json_body,
    json_response,
    last_updated_arg,
    no_records,
    not_found,
    page_size_arg,
    query_arg,
)
from .basware_state import StatusEntry
from .http import Response

STATUSES = ("InProgress", "Success", "Error", "AcknowledgedSuccess", "AcknowledgedError")
ENTITY_TYPES = (
    "Account", "Contract", "CostCenter", "TaxCode", "ExchangeRate", "PaymentTerm", "User",
    "Project", "MatchingOrder", "MatchingOrderLine", "GenericList", "AdvancedPermission",
    "TransferResponse", "PaymentResponse", "PrebookResponse", "Vendor", "AdvancedValidation",
    "PurchaseRequisition", "PurchaseOrder", "PurchaseGoodsReceipt", "Organization",
    "EnrichmentTransferResponse", "UserGroup", "UserGroupAssociatedUser", "UserGroupPermission")
PAGE_MAX = 500


def list_statuses(ctx: Ctx) -> Response:
    request = ctx.request
    status = _choice(ctx, "status", STATUSES)
    entity_type = _choice(ctx, "entityType", ENTITY_TYPES)
    system = query_arg(request, "system") or None
    if not (status or entity_type or system):
        status = "Error"
    ignore = bool_arg(request, "ignoreSuccessfullItems", ctx.request_id)
    since = last_updated_arg(request, ctx.request_id)
    size = page_size_arg(request, ctx.request_id, PAGE_MAX, 100)

    def keep(entry: StatusEntry) -> bool:
        return ((not status or entry.status == status)
                and (not entity_type or entry.entity_type == entity_type)
                and (not since or _stamp(entry) > since))

    rows = sorted(((_stamp(e), e.request_id), e) for e in ctx.tenant.statuses.values() if keep(e))
    page, token = ctx.tenant.pager.page("requestStatus", ctx, rows, size)
    if not page:
        return no_records(ctx.request_id)
    headers = {CONTINUATION_HEADER: token} if token else {}
    return json_response(200, {"requestStatus": [e.view(ignore, system) for e in page]},
                         ctx.request_id, headers)


def get_status(ctx: Ctx, request_id: str) -> Response:
    entry = ctx.tenant.statuses.get(request_id)
    if entry is None:
        raise not_found(ctx.request_id, f"No request {request_id}", request_id)
    ignore = bool_arg(ctx.request, "ignoreSuccessfulItems", ctx.request_id)
    system = query_arg(ctx.request, "system") or None
    return json_response(200, {"requestStatus": [entry.view(ignore, system)]}, ctx.request_id)


def acknowledge_statuses(ctx: Ctx) -> Response:
    """All-or-nothing: nothing changes unless every listed request can be acknowledged."""
    body = json_body(ctx)
    ids = body.get("requestIds") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ApiError(error_response(400, ctx.request_id, "SCHEMA_VALIDATION_ERROR",
                                      'Body must be {"requestIds": ["<requestId>", ...]}'))
    entries = [ctx.tenant.statuses.get(i) for i in ids]
    unknown = [i for i, e in zip(ids, entries, strict=True) if e is None]
    if unknown:
        raise not_found(ctx.request_id, f"Unknown requestIds: {', '.join(unknown)}")
    known = [e for e in entries if e is not None]
    _refuse(ctx, known, lambda e: e.status == "InProgress", 400, "DATA_VALIDATION_FAILED",
            "still InProgress and cannot be acknowledged yet")
    _refuse(ctx, known, lambda e: e.status.startswith("Acknowledged"), 405, "METHOD_NOT_ALLOWED",
            "already acknowledged")
    stamp = ctx.sim.clock.stamp()
    for entry in known:
        entry.status = f"Acknowledged{entry.status}"
        entry.last_updated = stamp
    return json_response(200, {"requestStatus": [e.view() for e in known]}, ctx.request_id)


def _refuse(ctx: Ctx, entries: list[StatusEntry], test: Any, status: int, code: str,
            reason: str) -> None:
    hit = [e.request_id for e in entries if test(e)]
    if hit:
        raise ApiError(error_response(status, ctx.request_id, code,
                                      f"Requests {', '.join(hit)} are {reason}",
                                      type_="BUSINESS"))


def _choice(ctx: Ctx, name: str, allowed: tuple[str, ...]) -> str | None:
    value = query_arg(ctx.request, name)
    if value and value not in allowed:
        raise bad_parameter(ctx.request_id, f"{name} must be one of {', '.join(allowed)}", name)
    return value or None


def _stamp(entry: StatusEntry) -> str:
    return entry.last_updated or entry.created

"""Master-data import endpoints (ref §5, §7): bulk upsert, list, get, patch, delete.

``POST /v1/<endpoint>`` takes a JSON array, validates it completely (any error rejects the
whole request with 400 and stores nothing), then upserts every record by ``externalCode`` with
full overwrite, echoes the array with ``lastUpdated`` set, and queues one requestStatus entry
for the asynchronous P2P processing (see :mod:`.basware_state`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .basware_common import (
    CONTINUATION_HEADER,
    ApiError,
    Ctx,
    bad_parameter,
    canonical_stamp,
    error_entity,
    error_response,
    errors_response,
    json_body,
    json_response,
    last_updated_arg,
    no_records,
    not_found,
    page_size_arg,
    parse_datetime,
    query_arg,
)
from .basware_schemas import (
    ACCOUNT,
    COST_CENTER,
    MATCHING_ORDER,
    MATCHING_ORDER_LINE,
    PAYMENT_TERM,
    TAX_CODE,
    VENDOR,
    validate,
)
from .basware_state import PendingItem, StatusEntry, Tenant
from .http import Response


@dataclass(frozen=True)
class Endpoint:
    name: str  # path segment under /v1
    envelope: str  # list response property
    entity_type: str  # requestStatus entityType
    schema: dict[str, Any]
    post_max: int  # records per POST
    page_max: int  # GET pageSize limit
    page_default: int
    required_filter: str | None = None  # a GET query parameter the endpoint insists on


ENDPOINTS: dict[str, Endpoint] = {e.name: e for e in (
    Endpoint("vendors", "vendorEntities", "Vendor", VENDOR, 200, 500, 100),
    Endpoint("accounts", "accounts", "Account", ACCOUNT, 500, 500, 500),
    Endpoint("costCenters", "costCenters", "CostCenter", COST_CENTER, 500, 500, 100),
    Endpoint("paymentTerms", "paymentTerms", "PaymentTerm", PAYMENT_TERM, 500, 500, 100),
    Endpoint("taxCodes", "taxCodes", "TaxCode", TAX_CODE, 500, 500, 100),
    Endpoint("matchingOrders", "matchingOrders", "MatchingOrder", MATCHING_ORDER, 500, 500, 100),
    Endpoint("matchingOrderLines", "matchingOrderLines", "MatchingOrderLine",
             MATCHING_ORDER_LINE, 100, 100, 100, required_filter="orderExternalCode"),
)}


def strip_nulls(value: Any) -> Any:
    """Drop null-valued properties everywhere: the API treats null as "not sent"."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def content(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record without the API-maintained ``lastUpdated``: what "identical" compares."""
    return {k: v for k, v in record.items() if k != "lastUpdated"}


# -- POST --------------------------------------------------------------------------------------

def post_records(ctx: Ctx, endpoint: str) -> Response:
    ep = ENDPOINTS[endpoint]
    body = json_body(ctx)
    if not isinstance(body, list):
        raise ApiError(error_response(400, ctx.request_id, "SCHEMA_VALIDATION_ERROR",
                                      f"Request body must be a JSON array of {ep.entity_type} "
                                      "entities"))
    if not body:
        raise bad_parameter(ctx.request_id, "Request body must contain at least one record")
    if len(body) > ep.post_max:
        raise bad_parameter(ctx.request_id, f"Too many records in one request: {len(body)}; "
                                            f"{ep.name} accepts at most {ep.post_max}")
    errors = [e for index, record in enumerate(body) for e in validate(ep.schema, record, index)]
    errors = errors or _duplicates(body)
    if errors:
        return errors_response(400, ctx.request_id, errors)
    stamp = ctx.sim.clock.stamp()
    items = [_upsert(ctx.tenant, ep, strip_nulls(record), stamp) for record in body]
    _queue(ctx, ep.entity_type, "POST", items, ep.name)
    return json_response(200, [item.record for item in items], ctx.request_id)


def _duplicates(body: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    errors = []
    for index, record in enumerate(body):
        code = record["externalCode"]
        if code in seen:
            errors.append(error_entity("DATA_VALIDATION_FAILED",
                                       f"externalCode {code} appears more than once in the "
                                       "request", external_code=code, info=f"$[{index}]"))
        seen.add(code)
    return errors


def _upsert(tenant: Tenant, ep: Endpoint, record: dict[str, Any], stamp: str) -> PendingItem:
    store = tenant.store(ep.name)
    code = record["externalCode"]
    new = content(record)
    unchanged = code in store and content(store[code]) == new
    store[code] = {**new, "lastUpdated": stamp}
    version = tenant.version(ep.name, code) if unchanged else tenant.bump_version(ep.name, code)
    return PendingItem(code, copy.deepcopy(store[code]), version, unchanged)


def _queue(ctx: Ctx, entity_type: str, operation: str, items: list[PendingItem],
           endpoint: str | None) -> StatusEntry:
    delay = float(ctx.settings["processing_delay"])
    entry = StatusEntry(ctx.request_id, entity_type, operation, ctx.principal.client_id,
                        items[0].record.get("lastUpdated") or ctx.sim.clock.stamp(),
                        time.monotonic() + delay, items, endpoint)
    ctx.tenant.statuses[ctx.request_id] = entry
    ctx.sim.schedule_processing(delay)
    return entry


queue_status = _queue  # used by the accountingDocuments responses


# -- GET ---------------------------------------------------------------------------------------

def list_records(ctx: Ctx, endpoint: str) -> Response:
    ep = ENDPOINTS[endpoint]
    request = ctx.request
    parent = None
    if ep.required_filter:
        parent = query_arg(request, ep.required_filter)
        if not parent:
            raise bad_parameter(ctx.request_id, f"Query parameter {ep.required_filter} is "
                                                "required", ep.required_filter)
    size = page_size_arg(request, ctx.request_id, ep.page_max, ep.page_default)
    company = query_arg(request, "companyCode") or None
    since = last_updated_arg(request, ctx.request_id)
    keep = _filter(ctx.tenant, ep, company, since, parent)
    rows = sorted(((r["lastUpdated"], code), r)
                  for code, r in ctx.tenant.store(ep.name).items() if keep(r))
    page, token = ctx.tenant.pager.page(f"md:{ep.name}", ctx, rows, size)
    if not page:
        return no_records(ctx.request_id)
    headers = {CONTINUATION_HEADER: token} if token else {}
    return json_response(200, {ep.envelope: page}, ctx.request_id, headers)


def _filter(tenant: Tenant, ep: Endpoint, company: str | None, since: str | None,
            parent: str | None) -> Callable[[dict[str, Any]], bool]:
    orders = tenant.store("matchingOrders")

    def companies(record: dict[str, Any]) -> list[str]:
        if "companies" in record:
            return [c.get("companyCode") for c in record["companies"]]
        if "companyCode" in record:
            return [record["companyCode"]]
        order = orders.get(record.get("orderExternalCode", ""))
        return [order["companyCode"]] if order else []

    def keep(record: dict[str, Any]) -> bool:
        if since and not record["lastUpdated"] > since:
            return False
        if parent and record.get(ep.required_filter or "") != parent:
            return False
        return not company or company in companies(record)

    return keep


def get_record(ctx: Ctx, endpoint: str, code: str) -> Response:
    record = ctx.tenant.store(endpoint).get(code)
    if record is None:
        raise not_found(ctx.request_id, f"No {ENDPOINTS[endpoint].entity_type} with externalCode "
                                        f"{code}", code)
    return json_response(200, record, ctx.request_id)


# -- PATCH -------------------------------------------------------------------------------------

def patch_record(ctx: Ctx, endpoint: str, code: str) -> Response:
    ep = ENDPOINTS[endpoint]
    body = json_body(ctx)
    if not isinstance(body, dict):
        raise ApiError(error_response(400, ctx.request_id, "SCHEMA_VALIDATION_ERROR",
                                      "PATCH body must be a single JSON object"))
    if body.get("externalCode") not in (None, code):
        raise ApiError(error_response(400, ctx.request_id, "EXTERNAL_CODE_MISMATCH",
                                      f"externalCode {body['externalCode']} in the body differs "
                                      f"from {code} in the path", external_code=code))
    store = ctx.tenant.store(ep.name)
    if code not in store:
        raise not_found(ctx.request_id, "Record to update not found", code)
    changes = strip_nulls({k: v for k, v in body.items() if k != "lastUpdated"})
    merged = {**content(store[code]), **changes}
    errors = validate(ep.schema, merged)
    if errors:
        return errors_response(400, ctx.request_id, errors)
    item = _upsert(ctx.tenant, ep, merged, ctx.sim.clock.stamp())
    _queue(ctx, ep.entity_type, "PATCH", [item], ep.name)
    return json_response(200, item.record, ctx.request_id)


# -- DELETE ------------------------------------------------------------------------------------

def delete_records(ctx: Ctx, endpoint: str) -> Response:
    ep = ENDPOINTS[endpoint]
    body = json_body(ctx)
    if not isinstance(body, dict):
        raise ApiError(error_response(400, ctx.request_id, "SCHEMA_VALIDATION_ERROR",
                                      'DELETE body must be {"externalCode": ...} or '
                                      '{"lastUpdated": ...}'))
    store = ctx.tenant.store(ep.name)
    code, since = body.get("externalCode"), body.get("lastUpdated")
    if code:  # externalCode wins when both are given (swagger DeleteRequest)
        if store.pop(str(code), None) is None:
            raise not_found(ctx.request_id, f"No {ep.entity_type} with externalCode {code}",
                            str(code))
        return json_response(200, {"taskName": f"Delete{ep.entity_type}",
                                   "taskStatus": "Completed"}, ctx.request_id)
    if not since or parse_datetime(since) is None:
        raise bad_parameter(ctx.request_id, "Either externalCode or a valid lastUpdated "
                                            "date-time is required")
    cutoff = canonical_stamp(since)
    doomed = [c for c, r in store.items() if r["lastUpdated"] > cutoff]
    for doomed_code in doomed:
        del store[doomed_code]
    task_id = ctx.request_id
    ctx.tenant.delete_tasks[task_id] = {
        "recordCount": len(doomed), "entityType": ep.entity_type,
        "ready_at": time.monotonic() + float(ctx.settings["processing_delay"])}
    return json_response(202, {"statusApiLink": f"{ctx.request.base_url}/v1/taskStatus/{task_id}",
                               "taskName": task_id, "taskStatus": "InProgress"}, ctx.request_id)


def task_status(ctx: Ctx, task_id: str) -> Response:
    task = ctx.tenant.delete_tasks.get(task_id)
    if task is None:
        raise not_found(ctx.request_id, f"No task {task_id}", task_id)
    done = task["ready_at"] <= time.monotonic()
    return json_response(200, {"taskStatus": "Completed" if done else "InProgress",
                               "recordCount": task["recordCount"]}, ctx.request_id)


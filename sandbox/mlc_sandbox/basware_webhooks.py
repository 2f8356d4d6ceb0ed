"""Push notifications (ref §11): subscriptions, webhook delivery with signatures, task history.

Every notification is POSTed as JSON with one signature header (name from the setting
``webhook_signature_header``, default ``x-bwapi-signature-256``) whose value is
``sha256=<hex HMAC-SHA256 of the raw body, keyed by the subscription's
webhookAuthenticationToken>``. The token itself is never sent. Deliveries run in background
threads, are retried ``webhook_max_attempts`` times with doubling delays, and their outcome
is written to the task's ``taskHistory`` (``GET /v1/tasks``).

These endpoints belong to Basware's FastAPI push-notification service, so their errors look
like FastAPI's: ``{"detail": ...}`` for 404/422 and
``{"requestId","hasError","errorMessages":[...]}`` for a 400 (push-notification OpenAPI).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .basware_common import (
    CONTINUATION_HEADER,
    ApiError,
    Ctx,
    format_stamp,
    is_json_content_type,
    json_response,
    new_id,
    parse_datetime,
    query_arg,
)
from .basware_schemas import SUBSCRIPTION, validate
from .basware_state import Tenant
from .http import Response

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .basware import BaswareSimulator

TIMEOUT = 5.0
TASK_LIFETIME = 7 * 24 * 3600  # expirationTime of a notification (reserved field; guess)
TASK_PAGE = 100
PAYLOAD_FIELDS = ("taskId", "taskStatus", "taskType", "taskSubType", "documentId",
                  "expirationTime")


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def post_notification(url: str, payload: dict[str, Any], secret: str, header: str) -> int:
    """POST one signed notification; the HTTP status, or 0 when the receiver is unreachable."""
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "Basware-Push-Notification/1.0",
        header: sign(body, secret)})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return 0


def deliver_async(url: str, payload: dict[str, Any], secret: str, header: str, attempts: int,
                  delay: float, done: Callable[[bool, list[str]], None]) -> threading.Thread:
    def run() -> None:
        messages = []
        for attempt in range(max(1, attempts)):
            status = post_notification(url, payload, secret, header)
            messages.append(f"Attempt {attempt + 1}: HTTP {status or 'no answer'}")
            if 200 <= status < 300:
                done(True, messages)
                return
            time.sleep(delay * 2 ** attempt)
        done(False, messages)

    thread = threading.Thread(target=run, name=f"webhook-{payload['taskId']}", daemon=True)
    thread.start()
    return thread


def _task_payload(task: dict[str, Any]) -> dict[str, Any]:
    return {field: task[field] for field in PAYLOAD_FIELDS if task.get(field) is not None}


# -- notifications -----------------------------------------------------------------------------

def notify(sim: BaswareSimulator, tenant: Tenant, task_type: str, sub_type: str,
           document_id: str) -> list[dict[str, Any]]:
    """Create a task per matching subscription and deliver it in the background (lock held)."""
    tasks = []
    for subscription in tenant.subscriptions:
        if subscription["taskType"] != task_type or \
                subscription["taskSubType"] not in (sub_type, "All"):
            continue
        stamp = sim.clock.stamp()
        task = {"taskId": new_id(), "taskStatus": "New", "taskType": task_type,
                "taskSubType": sub_type, "documentId": document_id,
                "expirationTime": sim.clock.in_future(TASK_LIFETIME), "isSimulatedTask": False,
                "lastUpdated": stamp,
                "taskHistory": [{"action": "New", "timeStamp": stamp,
                                 "messages": ["Task created"]}]}
        tenant.tasks[task["taskId"]] = task
        deliver_async(subscription["notificationWebhookURL"], _task_payload(task),
                      subscription["webhookAuthenticationToken"],
                      sim.settings["webhook_signature_header"],
                      int(sim.settings["webhook_max_attempts"]),
                      float(sim.settings["webhook_retry_delay"]),
                      _recorder(sim, task))
        tasks.append(task)
    return tasks


def _recorder(sim: BaswareSimulator, task: dict[str, Any]) -> Callable[[bool, list[str]], None]:
    def record(delivered: bool, messages: list[str]) -> None:
        with sim.lock:
            stamp = sim.clock.stamp()
            action = "NotificationSent" if delivered else "NotificationFailed"
            task["taskHistory"].append({"action": action, "timeStamp": stamp,
                                        "messages": messages})
            if not delivered and task["taskStatus"] == "New":
                task["taskStatus"] = "Failed"
            task["lastUpdated"] = stamp
    return record


def complete_tasks(sim: BaswareSimulator, tenant: Tenant, document_id: str, message: str) -> None:
    for task in tenant.tasks.values():
        if task["documentId"] == document_id and task["taskStatus"] == "New":
            stamp = sim.clock.stamp()
            task["taskStatus"] = "Completed"
            task["lastUpdated"] = stamp
            task["taskHistory"].append({"action": "Completed", "timeStamp": stamp,
                                        "messages": [message]})


# -- /v1/subscriptions -------------------------------------------------------------------------

def post_subscriptions(ctx: Ctx) -> Response:
    """Runs WITHOUT the simulator lock: the ConnectionTest calls out to the receiver, which may
    well call back into this simulator before it answers."""
    if not is_json_content_type(ctx.request.headers.get("Content-Type")):
        return json_response(422, {"message": "UnprocessableEntity"}, ctx.request_id)
    try:
        body = ctx.request.json()
    except (ValueError, UnicodeDecodeError):
        return json_response(422, {"message": "UnprocessableEntity"}, ctx.request_id)
    for item in body if isinstance(body, list) else []:
        if isinstance(item, dict):
            ctx.sim.remember_secret(item.get("webhookAuthenticationToken"))
    problems = _subscription_problems(body)
    if problems:
        return _validation_error(ctx, problems)
    header = ctx.settings["webhook_signature_header"]
    for item in body:
        test = {"taskId": new_id(), "taskStatus": "New", "taskType": "ConnectionTest",
                "taskSubType": _sub_type(item), "documentId": new_id().replace("-", ""),
                "expirationTime": ctx.sim.clock.in_future(TASK_LIFETIME)}
        status = post_notification(item["notificationWebhookURL"], test,
                                   item["webhookAuthenticationToken"], header)
        if status != 200:
            return _validation_error(ctx, [
                f"Endpoint validation failed: {item['notificationWebhookURL']} answered "
                f"{status or 'nothing'} to the ConnectionTest notification; 200 is required"])
    with ctx.sim.lock:
        return json_response(200, [_upsert(ctx, item) for item in body], ctx.request_id)


def _subscription_problems(body: Any) -> list[str]:
    if not isinstance(body, list) or not body:
        return ["Request body must be a non-empty JSON array of subscriptions"]
    problems = [error["message"] for index, item in enumerate(body)
                for error in validate(SUBSCRIPTION, item, index)]
    problems += [f"Subscription {index}: subscriptionType 'Polling' is reserved for later use"
                 for index, item in enumerate(body)
                 if isinstance(item, dict) and item.get("subscriptionType") == "Polling"]
    return problems


def _validation_error(ctx: Ctx, messages: list[str]) -> Response:
    body = {"requestId": ctx.request_id, "hasError": True, "errorMessages": [
        {"type": "VALIDATION", "code": "SCHEMA_VALIDATION_ERROR", "message": message}
        for message in messages]}
    return json_response(400, body, ctx.request_id)


def _sub_type(item: dict[str, Any]) -> str:
    default = "Error" if item["taskType"] == "RequestStatus" else "All"
    return item.get("taskSubType") or default


def _upsert(ctx: Ctx, item: dict[str, Any]) -> dict[str, Any]:
    """One subscription per (taskType, taskSubType, URL): posting it again replaces it."""
    subscription = {"taskType": item["taskType"], "taskSubType": _sub_type(item),
                    "subscriptionType": item["subscriptionType"],
                    "notificationWebhookURL": item["notificationWebhookURL"],
                    "webhookAuthenticationToken": item["webhookAuthenticationToken"],
                    "lastUpdated": ctx.sim.clock.stamp()}
    if item.get("autoResponder") is not None:
        subscription["autoResponder"] = item["autoResponder"]
    key = (subscription["taskType"], subscription["taskSubType"],
           subscription["notificationWebhookURL"])
    ctx.tenant.subscriptions[:] = [
        s for s in ctx.tenant.subscriptions
        if (s["taskType"], s["taskSubType"], s["notificationWebhookURL"]) != key]
    ctx.tenant.subscriptions.append(subscription)
    return dict(subscription)


def list_subscriptions(ctx: Ctx) -> Response:
    task_type = query_arg(ctx.request, "taskType")
    sub_type = query_arg(ctx.request, "taskSubType")
    since = _since(ctx)
    found = [dict(s) for s in ctx.tenant.subscriptions
             if (not task_type or s["taskType"] == task_type)
             and (not sub_type or s["taskSubType"] == sub_type)
             and (not since or s["lastUpdated"] > since)]
    if not found:
        return json_response(404, {"detail": "Not Found"}, ctx.request_id)
    return json_response(200, {"subscriptions": found}, ctx.request_id)


def delete_subscriptions(ctx: Ctx) -> Response:
    missing = [name for name in ("lastUpdated", "taskType", "taskSubType")
               if not query_arg(ctx.request, name)]
    if missing:
        return json_response(422, {"detail": [
            {"loc": ["query", name], "msg": "field required", "type": "value_error.missing"}
            for name in missing]}, ctx.request_id)
    since = _since(ctx) or ""
    task_type = query_arg(ctx.request, "taskType")
    sub_type = query_arg(ctx.request, "taskSubType")
    keep, deleted = [], 0
    for s in ctx.tenant.subscriptions:
        doomed = (s["lastUpdated"] > since and task_type in ("All", s["taskType"])
                  and sub_type in ("All", s["taskSubType"]))
        deleted += doomed
        if not doomed:
            keep.append(s)
    ctx.tenant.subscriptions[:] = keep
    return json_response(200, {"status": "Deleted successfully",
                               "numberOfRecordsDeleted": deleted}, ctx.request_id)


def _since(ctx: Ctx) -> str | None:
    value = query_arg(ctx.request, "lastUpdated")
    if not value:
        return None
    parsed = parse_datetime(value)
    if parsed is None:
        raise ApiError(json_response(422, {"detail": [
            {"loc": ["query", "lastUpdated"], "msg": "invalid datetime format",
             "type": "value_error.datetime"}]}, ctx.request_id))
    return format_stamp(parsed)


# -- /v1/tasks ---------------------------------------------------------------------------------

def list_tasks(ctx: Ctx) -> Response:
    filters = {name: query_arg(ctx.request, name)
               for name in ("taskType", "taskStatus", "documentId")}
    since = _since(ctx)
    rows = sorted(((t["lastUpdated"], t["taskId"]), t) for t in ctx.tenant.tasks.values()
                  if all(not v or t.get(k) == v for k, v in filters.items())
                  and (not since or t["lastUpdated"] > since))
    page, token = ctx.tenant.pager.page("tasks", ctx, rows, TASK_PAGE)
    if not page:
        return json_response(404, {"detail": "Not Found"}, ctx.request_id)
    headers = {CONTINUATION_HEADER: token} if token else {}
    return json_response(200, {"taskStatus": page}, ctx.request_id, headers)


def get_task(ctx: Ctx, task_id: str) -> Response:
    task = ctx.tenant.tasks.get(task_id)
    if task is None:
        return json_response(404, {"detail": "Not Found"}, ctx.request_id)
    return json_response(200, {"taskStatus": [task]}, ctx.request_id)

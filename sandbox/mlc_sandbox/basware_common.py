"""Pieces every part of the Basware simulator shares: the clock, error bodies, query parsing, paging.

Handlers signal an HTTP error by raising :class:`ApiError` with the finished response; the
simulator turns it back into that response. Error bodies follow the P2P API's
``ResponseEntityList`` (ref §12): ``{"requestId","hasErrors","errors":[ErrorEntity]}``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .http import Request, Response

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .basware import BaswareSimulator
    from .basware_auth import Principal
    from .basware_state import Tenant

REQUEST_ID_HEADER = "x-amzn-RequestId"
CONTINUATION_HEADER = "x-amz-meta-continuationtoken"
NO_RECORDS = "Request was successful and no records were found"
CURSOR_LIFETIME = 3600.0  # seconds a continuation token stays usable (guess)
MAX_CURSORS = 10_000  # past this many live tokens, expired ones are dropped
JSON_TYPES = ("application/json", "text/json", "application/json-patch+json")


class ApiError(Exception):
    """Raised by a handler to answer with ``response`` at once."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass
class Ctx:
    """Everything a handler needs about the call it is answering."""

    sim: BaswareSimulator
    request: Request
    request_id: str
    principal: Principal
    tenant: Tenant

    @property
    def settings(self) -> dict[str, Any]:
        return self.sim.settings


# -- time ------------------------------------------------------------------------------------

class Clock:
    """Strictly increasing millisecond UTC timestamps, so every state change sorts after the last.

    The floor starts at the newest seeded timestamp, so a change made now never sorts before
    seed data even when seed dates lie ahead of the wall clock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = datetime(1970, 1, 1, tzinfo=UTC)

    def raise_floor(self, stamp: str) -> None:
        parsed = parse_datetime(stamp)
        with self._lock:
            if parsed and parsed > self._last:
                self._last = parsed

    def stamp(self) -> str:
        with self._lock:
            now = datetime.now(UTC)
            now = now.replace(microsecond=now.microsecond // 1000 * 1000)
            if now <= self._last:
                now = self._last + timedelta(milliseconds=1)
            self._last = now
            return format_stamp(now)

    def in_future(self, seconds: float) -> str:
        """A wall-clock timestamp ``seconds`` from now (not part of the monotonic sequence)."""
        return format_stamp(datetime.now(UTC) + timedelta(seconds=seconds))


def format_stamp(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_datetime(text: Any) -> datetime | None:
    """ISO 8601 date or date-time (``CCYY-MM-DD``, ``Z`` or ``±hh:mm``); naive means UTC."""
    if not isinstance(text, str) or not text.strip():
        return None
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def canonical_stamp(text: str) -> str:
    parsed = parse_datetime(text)
    if parsed is None:
        raise ValueError(f"not a date-time: {text!r}")
    return format_stamp(parsed)


def new_id() -> str:
    return str(uuid.uuid4())


# -- responses -------------------------------------------------------------------------------

def json_response(status: int, payload: Any, request_id: str | None = None,
                  headers: dict[str, str] | None = None) -> Response:
    extra = {REQUEST_ID_HEADER: request_id} if request_id else {}
    return Response.json(status, payload, {**extra, **(headers or {})})


def error_entity(code: str, message: str, *, type_: str = "VALIDATION",
                 external_code: str | None = None, info: str | None = None) -> dict[str, Any]:
    return {"externalCode": external_code, "type": type_, "code": code, "message": message,
            "info": info}


def errors_response(status: int, request_id: str, errors: list[dict[str, Any]]) -> Response:
    body = {"requestId": request_id, "hasErrors": True, "errors": errors}
    return json_response(status, body, request_id)


def error_response(status: int, request_id: str, code: str, message: str, *,
                   type_: str = "VALIDATION", external_code: str | None = None,
                   info: str | None = None) -> Response:
    entity = error_entity(code, message, type_=type_, external_code=external_code, info=info)
    return errors_response(status, request_id, [entity])


def bad_parameter(request_id: str, message: str, info: str | None = None) -> ApiError:
    return ApiError(error_response(400, request_id, "PARAMETER_VALIDATION_ERROR", message,
                                   info=info))


def not_found(request_id: str, message: str, external_code: str | None = None) -> ApiError:
    return ApiError(error_response(404, request_id, "ENTITY_NOT_FOUND", message,
                                   type_="BUSINESS", external_code=external_code))


def no_records(request_id: str) -> Response:
    """The P2P API's answer to a list query that matched nothing: 404, not an empty page."""
    body = {"requestId": request_id, "hasErrors": False, "errors": [], "message": NO_RECORDS}
    return json_response(404, body, request_id)


def unsupported_media_type(request_id: str) -> ApiError:
    """ASP.NET Core's ProblemDetails for a body in a media type the action does not accept."""
    body = {"type": "https://tools.ietf.org/html/rfc7231#section-6.5.13",
            "title": "Unsupported Media Type", "status": 415, "traceId": request_id}
    return ApiError(json_response(415, body, request_id))


# -- request parsing -------------------------------------------------------------------------

def is_json_content_type(value: str | None) -> bool:
    media = (value or "").split(";", 1)[0].strip().lower()
    return media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


def json_body(ctx: Ctx) -> Any:
    """The request body as JSON; 415 for a non-JSON media type, 400 for malformed JSON."""
    if not is_json_content_type(ctx.request.headers.get("Content-Type")):
        raise unsupported_media_type(ctx.request_id)
    try:
        return ctx.request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(error_response(400, ctx.request_id, "SCHEMA_VALIDATION_ERROR",
                                      f"Request body is not valid JSON: {exc}")) from exc


def query_arg(request: Request, name: str) -> str | None:
    """A query parameter, matched case-insensitively as ASP.NET Core model binding does."""
    for key, values in request.query.items():
        if key.lower() == name.lower() and values:
            return values[0]
    return None


def bool_arg(request: Request, name: str, request_id: str) -> bool:
    value = query_arg(request, name)
    if value is None or value == "":
        return False
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_parameter(request_id, f"Query parameter {name} must be true or false", name)


def last_updated_arg(request: Request, request_id: str, name: str = "lastUpdated") -> str | None:
    value = query_arg(request, name)
    if value is None or value == "":
        return None
    parsed = parse_datetime(value)
    if parsed is None:
        raise bad_parameter(request_id, f"Query parameter {name} is not a valid date-time: "
                                        f"{value!r}", name)
    return format_stamp(parsed)


def page_size_arg(request: Request, request_id: str, maximum: int, default: int) -> int:
    value = query_arg(request, "pageSize")
    if value is None or value == "":
        return default
    try:
        size = int(value)
    except ValueError:
        raise bad_parameter(request_id, f"pageSize must be an integer, got {value!r}",
                            "pageSize") from None
    if not 1 <= size <= maximum:
        raise bad_parameter(request_id, f"pageSize must be between 1 and {maximum}, got {size}",
                            "pageSize")
    return size


# -- paging ----------------------------------------------------------------------------------

@dataclass
class Cursor:
    scope: str
    query: tuple[tuple[str, tuple[str, ...]], ...]
    last_key: tuple[str, ...]
    expires: float


class Pager:
    """Continuation tokens: opaque UUIDs that remember where the previous page stopped.

    A token resumes *after the last key returned* (lastUpdated, then id) over the current
    data, like a database cursor: records that changed meanwhile may show up again later,
    records that no longer match are skipped. A token is reusable until it expires, so a
    client may retry a page; it only works with the very same query string.
    """

    def __init__(self) -> None:
        self._cursors: dict[str, Cursor] = {}

    def page(self, scope: str, ctx: Ctx,
             rows: list[tuple[tuple[str, ...], Any]] | Callable[[tuple[str, ...] | None],
                                                                Iterator[tuple[tuple[str, ...], Any]]],
             size: int, budget: Any = None) -> tuple[list[Any], str | None]:
        """Cut one page from ``rows`` (sorted by key); returns the page and the next token.

        ``rows`` is the whole sorted list, or a function giving the sorted rows after a key
        (None: from the start) lazily, so a long list indexed by its caller is not filtered
        in full on every page. ``budget`` (optional) is ``(limit, weight_fn)``: stop a page
        early once the summed weight would pass the limit (always at least one row).
        """
        query = _query_signature(ctx.request)
        token = ctx.request.headers.get(CONTINUATION_HEADER)
        after: tuple[str, ...] | None = None
        if token:
            cursor = self._cursors.get(token)
            if cursor is None or cursor.scope != scope or cursor.expires < time.monotonic():
                raise bad_parameter(ctx.request_id, "Invalid or expired continuation token",
                                    CONTINUATION_HEADER)
            if cursor.query != query:
                raise bad_parameter(ctx.request_id, "The continuation token was issued for "
                                    "different query parameters; repeat the first request's "
                                    "query", CONTINUATION_HEADER)
            after = cursor.last_key
        if callable(rows):
            source = rows(after)
        else:
            source = iter(rows if after is None else [row for row in rows if row[0] > after])
        chosen, more = _cut(source, size, budget)
        if not more or not chosen:
            return [item for _, item in chosen], None
        next_token = new_id()
        if len(self._cursors) > MAX_CURSORS:
            self._purge()
        self._cursors[next_token] = Cursor(scope, query, chosen[-1][0],
                                           time.monotonic() + CURSOR_LIFETIME)
        return [item for _, item in chosen], next_token

    def clear(self) -> None:
        self._cursors.clear()

    def _purge(self) -> None:
        now = time.monotonic()
        for token in [t for t, c in self._cursors.items() if c.expires < now]:
            del self._cursors[token]


def _cut(rows: Iterator[tuple[tuple[str, ...], Any]], size: int,
         budget: Any) -> tuple[list[Any], bool]:
    """Up to ``size`` rows (fewer once the budget is spent) and whether any row is left."""
    limit, weight = budget if budget is not None else (0, None)
    chosen: list[Any] = []
    total = 0
    for row in rows:
        if len(chosen) == size:
            return chosen, True
        if weight is not None:
            cost = weight(row[1])
            if chosen and total + cost > limit:
                return chosen, True
            total += cost
        chosen.append(row)
    return chosen, False


def _query_signature(request: Request) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(sorted((key, tuple(values)) for key, values in request.query.items()))

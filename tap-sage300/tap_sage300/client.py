"""The base stream of every Sage 300 Web API entity set: OData query, paging, errors, records.

One request per page: ``$select`` of the declared schema, ``$filter`` on the replication key
(date-only, the boundary day is re-read), ``$top=page_size``. Pages follow core's
:class:`~ml_connector_core.sage300_api.FeedPaging`: after the first page (which asks
``@odata.count``) the rest of the read is asked as ``$skip`` windows, up to
``max_requests_in_flight`` at once in worker threads and taken back in order; with one in
flight, or no count, page after page (``@odata.nextLink`` when Sage writes one, else
``$skip``). A read that returns fewer records than counted fails the run (FatalAPIError)
after its last page.
Records are projected onto the schema, trimmed and given one timestamp format here, so the
SDK's per-record type conformance is switched off (it would walk every record a second time).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import ParseResult, quote, urlencode, urlparse, urlsplit

import requests
from singer_sdk import RESTStream, metrics
from singer_sdk import singerlib as singer
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers._util import utc_now
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.pagination import BaseHATEOASPaginator
from singer_sdk.streams.rest import HTTPRequest, PageContext

from ml_connector_core.concurrency import InOrder
from ml_connector_core.httppolicy import THROTTLE_STATUSES, sdk_wait_generator
from ml_connector_core.sage300_api import (
    FeedPaging,
    IncompleteRead,
    Sage300Error,
    Window,
    explain_unauthorized,
    odata_literal,
    parse_error,
    raise_for_sage_status,
)
from ml_connector_core.sage300_fields import FieldUse
from tap_sage300.fields import stream_uses
from tap_sage300.output import BufferedSingerWriter

try:  # the msgspec extra of singer-sdk: a C decoder, several times faster than json
    import msgspec.json

    _decoder = msgspec.json.Decoder(float_hook=Decimal)

    def decode_json(content: bytes) -> Any:
        return _decoder.decode(content)
except ImportError:  # pragma: no cover - depends on the installed extra

    def decode_json(content: bytes) -> Any:
        return json.loads(content, parse_float=Decimal)

if TYPE_CHECKING:
    from tap_sage300.tap import TapSage300

# requests.Response has no slot for it: the paginator reads the page parsed by parse_response
# instead of decoding the whole body a second time for one link.
_BODY_ATTR = "_sage300_body"

# OData wants these unescaped to stay readable in Sage/IIS logs; %20 for spaces (not '+').
_QUERY_SAFE = "$,:'()"

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Ledger actions (ml_connector_core.ledger.Action values); the ledger module itself, and with
# it SQLAlchemy, is imported only when a ledger is configured.
READ, REJECTED = "read", "rejected"


class Abandoned(Exception):
    """A window's request not sent: another request of the same read failed."""


def encode_query(options: Mapping[str, str]) -> str:
    return urlencode(options, quote_via=quote, safe=_QUERY_SAFE)


_DAYS: dict[str, str] = {}  # Sage date as written -> normalized; a few thousand distinct days


def sage_day(value: Any) -> str:
    """:func:`parse_sage_day`, memoized: 100,000 vendors share a few hundred dates."""
    day = _DAYS.get(value) if isinstance(value, str) else None
    if day is None:
        day = parse_sage_day(value)
        if len(_DAYS) > 100_000:
            _DAYS.clear()
        _DAYS[value] = day
    return day


def parse_sage_day(value: Any) -> str:
    """A Sage date as ``YYYY-MM-DDT00:00:00Z``, taking the date part *as written*.

    Sage stores these dates date-only; the server may render them at local midnight with an
    offset (``...T00:00:00-04:00``) or without a zone. Converting to UTC first would move the
    day (reference §7), so the calendar date is kept and one format is emitted, which also
    keeps the SDK's string comparison of bookmarks sound.
    """
    if not isinstance(value, str) or (len(value) > 10 and value[10] != "T"):
        raise ValueError("not a date")
    return date.fromisoformat(value[:10]).isoformat() + "T00:00:00Z"


def _types(schema: Mapping[str, Any]) -> set[str]:
    kind = schema.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


@dataclass
class Problem:
    """A field of a record that does not fit the schema (the record still goes out)."""

    path: str
    value: Any
    expected: str
    outcome: str = "emitted as null"

    def __str__(self) -> str:
        return f"field {self.path}={self.value!r} is not {self.expected}; {self.outcome}"


@dataclass
class RecordShape:
    """How to turn one Sage object into a schema-conforming record, compiled once per stream.

    Only declared fields are copied (missing ones become null); text is right-trimmed (Sage
    pads fixed-width fields); dates get one format; integral decimals of integer fields become
    int; enum members are checked. A value that fails is nulled and reported as a Problem.
    """

    fields: tuple[str, ...]
    text: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    integers: tuple[str, ...] = ()
    enums: dict[str, frozenset[str]] = field(default_factory=dict)
    nested: dict[str, RecordShape] = field(default_factory=dict)

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any], skip: Iterable[str] = (),
                    selected: Callable[[str], bool] | None = None) -> RecordShape:
        """``selected(name)`` says whether the catalog selects a top-level property."""
        skip = set(skip)
        props = {k: v for k, v in schema.get("properties", {}).items()
                 if k not in skip and (selected is None or selected(k))}
        text, dates, integers, enums, nested = [], [], [], {}, {}
        for name, prop in props.items():
            kinds = _types(prop)
            if "enum" in prop:
                enums[name] = frozenset(v for v in prop["enum"] if v is not None)
            elif "string" in kinds and prop.get("format") in ("date-time", "date"):
                dates.append(name)
            elif "string" in kinds:
                text.append(name)
            elif "integer" in kinds:
                integers.append(name)
            elif "array" in kinds and "properties" in prop.get("items", {}):
                nested[name] = cls.from_schema(prop["items"])
        return cls(tuple(props), tuple(text), tuple(dates), tuple(integers), enums, nested)

    @cached_property
    def field_set(self) -> frozenset[str]:
        return frozenset(self.fields)

    def apply(self, raw: dict[str, Any], problems: list[Problem], *, trim: bool = True,
              prefix: str = "") -> dict[str, Any]:
        """The shaped record. When Sage returned exactly the declared fields (the normal case
        with $select), that is ``raw`` itself, fixed in place: no per-record copy.

        ``trim=False`` skips the trailing-space check, for a page whose body has no ``' "'``
        at all (so no string in it ends with a space).
        """
        fields = self.fields
        if raw.keys() == self.field_set:
            record = raw
        else:  # missing fields become null, undeclared ones are left out
            record = dict(zip(fields, map(raw.get, fields), strict=True))
        if trim:
            for name in self.text:
                value = record[name]
                if value and value[-1] == " ":
                    record[name] = value.rstrip()
        for name in self.dates:
            value = record[name]
            if value is not None:
                try:
                    record[name] = sage_day(value)
                except ValueError:
                    problems.append(Problem(prefix + name, value, "a date"))
                    record[name] = None
        for name in self.integers:
            value = record[name]
            if value is not None and value.__class__ is not int:
                if isinstance(value, Decimal | float) and value == int(value):
                    record[name] = int(value)
                else:
                    problems.append(Problem(prefix + name, value, "an integer"))
                    record[name] = None
        for name, members in self.enums.items():
            value = record[name]
            if value is not None and value not in members:
                problems.append(Problem(prefix + name, value, f"one of {sorted(members)}"))
                record[name] = None
        for name, shape in self.nested.items():
            rows = record[name]
            if rows is not None:
                record[name] = [shape.apply(row, problems, trim=trim,
                                            prefix=f"{prefix}{name}[{i}].")
                                for i, row in enumerate(rows)]
        return record


class RecordCounter(metrics.Counter):
    """The SDK's record counter, reading the clock every 1,000 records, not every record."""

    _unchecked = 0

    def increment(self, value: int = 1) -> None:
        self.value += value
        self._unchecked += 1
        if self._unchecked >= 1000:
            self._unchecked = 0
            if self._ready_to_log():
                self._pop()


class ODataPaginator(BaseHATEOASPaginator):
    """The SDK's paginator over core's :class:`FeedPaging`, the paging rule the tap shares
    with ``Sage300Client.iter_records``: a nextLink when Sage writes one, else ``$skip`` =
    records received until ``@odata.count`` is reached. So a server capping its pages at a
    PageSize below ``page_size``, with or without links, is read whole. It reads every first
    page; the rest of a read too when it goes page after page (one request in flight, or no
    count), else the windows of ``Sage300Stream._read_windows`` do."""

    def __init__(self, paging: FeedPaging) -> None:
        super().__init__()
        self.paging = paging

    def get_next_url(self, response: requests.Response) -> str | None:
        body = getattr(response, _BODY_ATTR, None)
        if body is None:
            body = decode_json(response.content)
        return self.paging.next_url(body, response.request.url or "")


class Sage300Stream(RESTStream[ParseResult | None]):
    """One Sage 300 entity set, read for every configured company (one partition each)."""

    #: ``MODULE/Resource`` under the company, e.g. ``AP/APVendors``.
    resource: ClassVar[str]
    #: Record fields the tap adds itself; never part of ``$select``.
    derived_fields: ClassVar[frozenset[str]] = frozenset({"company_id"})
    #: Extra ``$filter`` terms every request of the stream carries.
    static_filter: ClassVar[str | None] = None
    #: Every run reads the whole entity set for every company: after a complete read the
    #: stream sends Singer's ACTIVATE_VERSION (its records carry the version), so a target
    #: knows a record it has from an earlier version and not in this one was deleted in Sage.
    #: Only for streams read whole; never for purchase_order_lines (it follows its POs'
    #: bookmark: a line not read again was not deleted).
    activate_version: ClassVar[bool] = False
    #: Records go into the ledger as `read` entries (when there is one).
    audited: ClassVar[bool] = True

    # Sage's default order is key order and $orderby is undocumented (reference §3.2), so no
    # stream claims to be sorted: the SDK keeps the new bookmark as a progress marker and
    # commits it when a company's partition completes. An interrupted run therefore keeps the
    # last committed bookmark and re-reads from it; the target's dedup absorbs the repeats.
    is_sorted = False
    # post_process already projects and types every record (RecordShape).
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    _tap: TapSage300
    page_padded = True  # see parse_response
    _extracted_at: datetime | None = None  # when the page being processed arrived

    @cached_property
    def _highest_seen(self) -> dict[str | None, Any]:
        """Per company: the highest replication key value passed to the SDK's state."""
        return {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "resource", None):
            cls.path = "/{company_id}/" + cls.resource

    @cached_property
    def shape(self) -> RecordShape:
        """Built on first use, i.e. after the catalog is applied: deselected properties are
        neither requested ($select) nor emitted."""
        return RecordShape.from_schema(self.schema, skip=self.derived_fields,
                                       selected=self.is_selected)

    def is_selected(self, name: str) -> bool:
        return bool(self.mask[("properties", name)])

    @cached_property
    def _deselected_derived(self) -> tuple[str, ...]:
        """Fields the tap computes that the catalog deselected (company_id is automatic)."""
        return tuple(name for name in self.schema["properties"]
                     if name in self.derived_fields and not self.is_selected(name))

    @cached_property
    def _key_fields(self) -> tuple[str, ...]:
        return tuple(k for k in self.primary_keys or () if k != "company_id")

    # -- where and how to call -----------------------------------------------------------------

    @property
    def url_base(self) -> str:
        return str(self.config["base_url"]).rstrip("/")

    @property
    def partitions(self) -> list[dict[str, Any]]:
        return [{"company_id": company} for company in self.config["company_ids"]]

    @property
    def requests_session(self) -> requests.Session:
        return self._tap.http_session  # one pool for all streams: connections are reused

    @property
    def authenticator(self) -> Any:
        return self._tap.sage_auth

    @property
    def http_headers(self) -> dict[str, str]:
        # DevRef §2: without Content-Type some Sage versions answer 500, even on GET.
        return {"Accept": "application/json", "Content-Type": "application/json"}

    @property
    def timeout(self) -> Any:
        return self._tap.retry_policy.timeout  # (connect, read)

    def backoff_wait_generator(self) -> Any:
        return sdk_wait_generator(self._tap.retry_policy)  # shares the tap's Throttle

    def backoff_max_tries(self) -> int:
        return self._tap.retry_policy.max_tries

    def backoff_jitter(self, value: float) -> float:
        return value  # the shared policy already jitters

    def request_decorator(self, func: Any) -> Any:
        # A certificate problem does not heal by retrying (as in core's request_with_retry):
        # fail at once, saying what to do.
        def refuse_untrusted_tls(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except requests.exceptions.SSLError as exc:
                raise FatalAPIError(
                    f"TLS with {self.url_base} failed, not retried: {exc}. Fix: trust the "
                    "certificate's issuing CA (REQUESTS_CA_BUNDLE) or use the host name it was "
                    "issued for.") from exc
        retried = super().request_decorator(refuse_untrusted_tls)
        throttle = self._tap.retry_policy.throttle
        if throttle is None:
            return retried

        def ended(*args: Any, **kwargs: Any) -> Any:
            try:
                return retried(*args, **kwargs)
            except BaseException:
                throttle.ended()  # gave up: the next request starts a new streak
                raise
        return ended

    def backoff_handler(self, details: Any) -> None:
        # A retry is not an error (the SDK logs it as one); giving up raises and is logged then.
        exc = details.get("exception")
        self.logger.warning("Retry %d of %s in %.1fs after %s", details.get("tries", 0),
                            self.name, details.get("wait") or 0.0,
                            f"{type(exc).__name__}: {exc}" if exc else "a failure")

    def get_new_paginator(self) -> ODataPaginator:
        return ODataPaginator(self.new_paging())

    def new_paging(self) -> FeedPaging:
        """The paging of one read (one company): ``$top=page_size`` on every request."""
        return FeedPaging(self.url_base, top=self.page_size)

    @property
    def page_size(self) -> int:
        return int(self.config.get("page_size", 1000))

    # -- the query -------------------------------------------------------------------------------

    def select_fields(self) -> list[str]:
        """The Sage fields to ask for: the declared schema less what the tap derives."""
        return list(self.shape.fields)

    @property
    def retry_mode(self) -> bool:
        """`ml-connector retry`: only the records `retry_keys` names are read."""
        return self._tap.retry_keys is not None

    def retry_values(self, context: Context | None) -> list[list[str]] | None:
        """In retry mode, the key values of this stream's records to read in the context's
        company ([]: none); None in a normal run, or for a child (it follows its parent)."""
        retry = self._tap.retry_keys
        if retry is None or self.parent_stream_type is not None:
            return None
        return retry.get(self.name, {}).get(str((context or {}).get("company_id")), [])

    def _key_term(self, values: list[str]) -> str:
        """`Key eq <literal> [and ...]` for one record, each literal typed as its field."""
        terms = []
        for name, value in zip(self._key_fields, values, strict=True):
            kind = self.schema["properties"][name].get("type")
            typed: Any = int(value) if "integer" in (kind if isinstance(kind, list)
                                                     else [kind]) else value
            terms.append(f"{self.wire_name(name)} eq {odata_literal(typed)}")
        return " and ".join(terms)

    def filter_expression(self, context: Context | None) -> str | None:
        terms = [self.static_filter] if self.static_filter else []
        retry = self.retry_values(context)
        if retry:  # the records named, whatever the bookmark says
            terms.append("(" + " or ".join(f"({self._key_term(v)})" for v in retry) + ")")
            return " and ".join(terms)
        if self.replication_key:
            start = self.get_starting_timestamp(context)
            if start is not None:
                # Date-only field: re-read the whole boundary day. The literal is the bookmark's
                # calendar date as Sage wrote it (see sage_day), so no day is skipped.
                terms.append(f"{self.wire_name(self.replication_key)} ge "
                             f"{odata_literal(start.date())}")
        return " and ".join(terms) or None

    # -- the install's own field names (field_names) and what it must offer ($metadata) ----------

    #: Fields the stream's fixed filter compares (``static_filter``).
    filter_fields: ClassVar[tuple[str, ...]] = ()

    def wire_name(self, *path: str) -> str:
        """The install's name of one of the stream's fields (``field_names``)."""
        return self._tap.field_names.wire(self.resource, *path)

    def field_uses(self) -> list[FieldUse]:
        """What this stream needs the install's $metadata to offer (tap_sage300.fields)."""
        return stream_uses(self)

    def query_options(self, context: Context | None) -> dict[str, str]:
        options = {"$select": ",".join(self.wire_name(name) for name in self.select_fields())}
        expression = self.filter_expression(context)
        if expression:
            options["$filter"] = expression
        options.update(self.new_paging().first_options())  # $top, $count=true
        return options

    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        request = super().get_http_request(page=page)
        request.params = {}
        if page.next_page_token:  # the link carries $select/$filter/$skip already
            request.url = page.next_page_token.geturl()
        else:
            request.url = f"{request.url}?{encode_query(self.query_options(page.stream_context))}"
        return request

    # -- responses -------------------------------------------------------------------------------

    def validate_response(self, response: requests.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        if status in _RETRY_STATUSES:
            raise RetriableAPIError(self.response_error_message(response), response)
        if status == 401:
            raise FatalAPIError(explain_unauthorized(
                response, self.config["username"],
                bool(self.config.get("keep_password_case"))))
        company, module, resource = (urlsplit(response.url).path.split("/")[-3:] + ["?"] * 3)[:3]
        what = f"Reading {module}/{resource} of company {company} (module {module})"
        if status == 404:
            code, message = parse_error(response)
            raise FatalAPIError(
                f"{what}: HTTP 404 {code or ''}: {message}. Check base_url (it ends with "
                f"/Sage300WebApi/v1.0/-) and that company {company} exists.")
        try:
            raise_for_sage_status(response, self.config["username"], what)
        except Sage300Error as exc:
            raise FatalAPIError(str(exc)) from None

    def response_error_message(self, response: requests.Response) -> str:
        # The OData error text, not the whole body: IIS error pages are long HTML.
        code, message = parse_error(response)
        return (f"HTTP {response.status_code} {code or ''} from "
                f"{urlsplit(response.url).path}: {message[:500]}")

    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        self._tap.audit.flush_if_full()  # earlier pages' ledger entries, one transaction
        try:
            body = decode_json(response.content)
            records = body["value"]
        except (ValueError, KeyError, TypeError) as exc:
            raise FatalAPIError(
                f"{self.name}: {urlsplit(response.url).path} did not return an OData feed "
                f"(HTTP {response.status_code}, {response.headers.get('Content-Type')})"
            ) from exc
        setattr(response, _BODY_ATTR, body)
        names = self._tap.field_names
        if names.has_renames(self.resource):  # back to the connector's names, details too
            records = [names.from_wire(self.resource, record) for record in records]
        self._extracted_at = utc_now()
        # Sage pads fixed-width text with trailing spaces; a page whose JSON never has a space
        # before a quote has no such value, and its records skip the per-field check.
        self.page_padded = b' "' in response.content
        return records

    def request_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """The SDK's page loop, the rest of a counted read asked all at once. The first page
        asks ``$count=true``; then, with more than one request in flight allowed, the rest of
        the read goes out as ``$skip`` windows (``FeedPaging.windows``), see
        :meth:`_read_windows`. With one in flight, or no count, page after page (a nextLink
        when Sage writes one). After the last page the read is checked complete against
        Sage's count (:meth:`check_complete`)."""
        paginator = self.get_new_paginator()
        send = self._sender()
        with self.get_http_request_counter() as request_counter:
            request_counter.with_context(context)

            def take(prepared: requests.PreparedRequest, response: requests.Response
                     ) -> Iterable[dict[str, Any]]:
                request_counter.increment()
                self.update_sync_costs(prepared, response, context)
                return self.parse_response(response)

            prepared = self._prepare_request(context=context, page=paginator)
            response = send(prepared, context)
            records = take(prepared, response)
            paginator.advance(response)  # the count, and the next URL, come from this page
            windows = (paginator.paging.windows() if records and self._tap.max_in_flight > 1
                       else iter(()))
            window = next(windows, None)
            if window is not None:
                yield from self._read_windows(context, paginator.paging,
                                              itertools.chain([window], windows), records,
                                              take, send)
            else:
                while True:
                    yield from records
                    if not records or paginator.finished:
                        break
                    prepared = self._prepare_request(context=context, page=paginator)
                    response = send(prepared, context)
                    records = take(prepared, response)
                    paginator.advance(response)
        self.check_complete(paginator.paging, context)

    def _read_windows(self, context: Context | None, paging: FeedPaging,
                      windows: Iterator[Window], first: Iterable[dict[str, Any]],
                      take: Callable[[requests.PreparedRequest, requests.Response],
                                     Iterable[dict[str, Any]]],
                      send: Callable[..., requests.Response]) -> Iterator[dict[str, Any]]:
        """The windows of a read, up to ``max_requests_in_flight`` on the wire: at ~250 ms a
        Sage request, one at a time is most of a large read's time. Worker threads only send
        (under the stream's retry policy and the tap's throttle) and return the response or
        the failure; the counting, parsing, records and state stay on this thread, window
        after window in the order of the read, so what comes out is what one request at a
        time gives. A window that came back short has its rest asked here before the next
        window is taken; the first failure stops the read's other requests at their next
        try and is raised."""
        stop = threading.Event()
        failures: list[BaseException] = []
        ready: deque[tuple[Window, requests.PreparedRequest,
                           requests.Response | BaseException]] = deque()
        calls: InOrder[tuple[Window, requests.PreparedRequest,
                             requests.Response | BaseException]] = InOrder(
            self._tap.pool, self._tap.max_in_flight, ready.append)

        def start(window: Window) -> None:
            prepared = self._prepare_url(context, window.url)

            def call() -> tuple[Window, requests.PreparedRequest,
                                requests.Response | BaseException]:
                try:
                    return window, prepared, send(prepared, context, stop)
                except Exception as exc:  # noqa: BLE001 - raised on the main thread
                    if not stop.is_set():
                        failures.append(exc)
                        stop.set()
                    return window, prepared, exc

            calls.submit(call)  # first waits for the oldest when the window is full

        def settled() -> Iterator[dict[str, Any]]:
            while ready:
                window, prepared, outcome = ready.popleft()
                while True:
                    if isinstance(outcome, BaseException):
                        raise failures[0] if failures else outcome
                    records = take(prepared, outcome)
                    rest = paging.window_read(window, getattr(outcome, _BODY_ATTR))
                    yield from records
                    if rest is None:
                        break
                    window, prepared = rest, self._prepare_url(context, rest.url)
                    outcome = send(prepared, context)

        try:
            for window in itertools.islice(windows, self._tap.max_in_flight):
                start(window)  # on the wire while the first page is processed
            yield from first
            for window in windows:
                start(window)
                yield from settled()
            calls.drain()
            yield from settled()
        finally:  # also when stopped early (an error, a record limit)
            stop.set()
            calls.drain(raise_first=False)

    def _sender(self) -> Callable[..., requests.Response]:
        """``_request`` under the stream's retry policy; ``send(prepared, context, stop)``
        gives up before any try once ``stop`` is set."""
        def attempt(prepared: requests.PreparedRequest, context: Context | None,
                    stop: threading.Event | None = None) -> requests.Response:
            if stop is not None and stop.is_set():
                raise Abandoned("another request of the read failed")
            return self._request(prepared, context)
        return self.request_decorator(attempt)

    def _prepare_url(self, context: Context | None, url: str) -> requests.PreparedRequest:
        """The request for a page by its URL (a window), prepared as the paginator's are."""
        request = self.get_http_request(page=PageContext(stream_context=context,
                                                         next_page_token=urlparse(url)))
        return self.build_prepared_request(method=request.method, url=request.url,
                                           params=request.encode_params(),
                                           headers=request.headers, data=request.data)

    def _request(self, prepared_request: requests.PreparedRequest, context: Context | None
                 ) -> requests.Response:
        # One attempt, holding one of the tap's requests in flight (Throttle): it starts
        # after the "not before" of the latest 429/503, whichever thread heard it.
        throttle = self._tap.retry_policy.throttle
        if throttle is None:
            return super()._request(prepared_request, context)
        with throttle.slot() as generation:
            try:
                response = super()._request(prepared_request, context)
            except (RetriableAPIError, FatalAPIError) as exc:
                answer = getattr(exc, "response", None)
                if not (isinstance(answer, requests.Response)
                        and answer.status_code in THROTTLE_STATUSES):
                    throttle.succeeded(generation)
                raise
            throttle.succeeded(generation)
        return response

    def _sync_records(self, context: Context | None = None, *, write_messages: bool = True
                      ) -> Iterator[dict[str, Any]]:
        """The SDK's sync of every company, with the ACTIVATE_VERSION of a stream read whole
        (``activate_version``) once all companies are read completely: a failed or cut-short
        read raises before it, and says nothing about deletions."""
        # A retry reads a few records, not the whole set: no deletion signal.
        versioned = (context is None and write_messages and self.selected
                     and self.activate_version and not self.retry_mode)
        if versioned:
            self._stream_version = self._initialized_at // 1000  # as the SDK numbers them
        yield from super()._sync_records(context, write_messages=write_messages)
        if versioned and self.version_complete():
            self._write_activate_version_message(self._stream_version)

    def version_complete(self) -> bool:
        """Whether this run's records are the whole entity set (ACTIVATE_VERSION is sent)."""
        return True

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        if self.retry_values(context) == []:
            return  # retry mode: nothing of this stream in this company is to be read
        if self.parent_stream_type is None and context is not None:
            # A checkpoint between companies: the partition just finished has committed its
            # bookmark, so an interruption in the next company does not lose it.
            self._write_state_message()
            self._highest_seen.pop(context.get("company_id"), None)
        try:
            yield from super().get_records(context)
        finally:
            self._tap.audit.flush()

    def check_complete(self, paging: FeedPaging, context: Context | None) -> None:
        """Fail the run when a company's read returned fewer records than Sage counted: its
        bookmark is then not committed, so the next run reads the same range again."""
        company = str((context or {}).get("company_id"))
        try:
            warning = paging.check(self.resource, company)
        except IncompleteRead as exc:
            raise FatalAPIError(str(exc)) from None
        if warning:
            self.logger.warning(warning)

    # -- records ---------------------------------------------------------------------------------

    def source_key(self, record: Mapping[str, Any]) -> str:
        return "/".join([str(record["company_id"]), *(str(record[k]) for k in self._key_fields)])

    def post_process(self, row: dict[str, Any], context: Context | None = None
                     ) -> dict[str, Any] | None:
        problems: list[Problem] = []
        record = self.shape.apply(row, problems, trim=self.page_padded)
        record["company_id"] = context["company_id"]
        return self.accept(record, problems)

    def accept(self, record: dict[str, Any], problems: list[Problem]) -> dict[str, Any] | None:
        """Emit the record unless its key is unusable; report every problem by record + field."""
        for name in self._deselected_derived:
            del record[name]
        audit = self._tap.audit
        for name in self._key_fields:
            if record[name] is None or record[name] == "":
                key = self.source_key(record)
                error = f"{self.name} {key}: key field {name} is empty; record rejected"
                self.logger.error(error)
                audit.add(self, key, record, REJECTED, error)
                return None
        if problems:
            key = self.source_key(record)
            error = f"{self.name} {key}: " + "; ".join(map(str, problems))
            self.logger.warning(error)
            audit.add(self, key, record, READ, error)
        elif audit.enabled and self._emitted and self.audited:
            audit.add(self, self.source_key(record), record, READ)
        return record

    @cached_property
    def _emitted(self) -> bool:
        """False for a deselected parent read only for its children's sake."""
        return self.selected

    def _write_record_message(self, record: dict[str, Any]) -> None:
        # The SDK's version first walks every record twice more: popping deselected properties
        # and conforming types. RecordShape already did both, and at 100,000 records those
        # walks cost more than the HTTP reads; the stream maps still apply as in the SDK.
        # time_extracted is when the record's page arrived.
        writer = self._tap.message_writer
        extracted = self._extracted_at or utc_now()
        if self._unmapped_alias is not None and isinstance(writer, BufferedSingerWriter):
            writer.write_record(self._unmapped_alias, record, self._stream_version, extracted)
            self.state_manager.is_flushed = False
            return
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is None:
                continue
            if isinstance(writer, BufferedSingerWriter):
                writer.write_record(stream_map.stream_alias, mapped, self._stream_version,
                                    extracted)
            else:
                writer.write_message(singer.RecordMessage(
                    stream=stream_map.stream_alias, record=mapped,
                    version=self._stream_version, time_extracted=extracted))
        self.state_manager.is_flushed = False

    @cached_property
    def _unmapped_alias(self) -> str | None:
        """The stream's name when no stream map or flattening applies (records go out as
        they are), else None."""
        maps = self.stream_maps
        if len(maps) == 1 and type(maps[0]) is SameRecordTransform \
                and not maps[0].flattening_enabled:
            return maps[0].stream_alias
        return None

    def get_record_counter(self, *, endpoint: str | None = None,
                           log_interval: float = metrics.DEFAULT_LOG_INTERVAL
                           ) -> metrics.Counter:
        tags: dict[str, Any] = {metrics.Tag.STREAM: self.name}
        if endpoint:
            tags[metrics.Tag.ENDPOINT] = endpoint
        return RecordCounter(metrics.Metric.RECORD_COUNT, tags, log_interval=log_interval)

    def _increment_stream_state(self, latest_record: dict[str, Any], *,
                                context: Context | None = None) -> None:
        # No stream is sorted, so the SDK keeps the highest value seen as the progress marker;
        # a record not above it changes nothing, and the SDK's state walk is skipped for it.
        # Values compare as strings: every date is emitted as YYYY-MM-DDT00:00:00Z.
        key = self.replication_key
        if self.retry_mode:
            # A retry reads a few records: its dates say nothing about what else changed
            # since the bookmark, so the bookmark stays.
            return
        if key:
            value = latest_record.get(key)
            company = (context or {}).get("company_id")
            highest = self._highest_seen.get(company)
            if value is not None and highest is not None and value <= highest:
                return
            if value is not None:
                self._highest_seen[company] = value
        super()._increment_stream_state(latest_record, context=context)

    def _process_record(self, record: dict[str, Any], child_context: Context | None = None,
                        partition_context: Context | None = None) -> None:
        # The SDK's version copies partition keys into the record (company_id is there
        # already) and syncs children: with no children there is nothing to do per record.
        if self.child_streams:
            super()._process_record(record, child_context, partition_context)

    def generate_child_contexts(self, record: dict[str, Any], context: Context | None
                                ) -> Iterable[Context | None]:
        if not self.child_streams:
            return ()  # the SDK would copy every record for children that do not exist
        return super().generate_child_contexts(record, context)

"""The base stream of every Sage 300 Web API entity set: OData query, paging, errors, records.

One request per page: ``$select`` of the declared schema, ``$filter`` on the replication key
(date-only, the boundary day is re-read), ``$top=page_size``. Pages follow core's
:class:`~ml_connector_core.sage300_api.FeedPaging` (``@odata.nextLink`` when Sage writes one,
else ``$skip`` up to the ``@odata.count`` asked on the first page); a read that returns fewer
records than counted fails the run (FatalAPIError) after its last page.
Records are projected onto the schema, trimmed and given one timestamp format here, so the
SDK's per-record type conformance is switched off (it would walk every record a second time).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, cast
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

from ml_connector_core.httppolicy import sdk_wait_generator
from ml_connector_core.sage300_api import (
    FeedPaging,
    IncompleteRead,
    Sage300Error,
    explain_unauthorized,
    odata_literal,
    parse_error,
    raise_for_sage_status,
)
from ml_connector_core.sage300_fields import FieldUse
from tap_sage300.fields import stream_uses
from tap_sage300.output import BufferedSingerWriter
from tap_sage300.prefetch import PageRequest

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


# Sage writes the feed's nextLink as its last member: ``...}],"@odata.nextLink":"<url>"}``.
# A link with an escape in it is left to the decoder.
_NEXT_LINK_KEY = b'"@odata.nextLink"'
_TRAILING_LINK = re.compile(rb'"@odata\.nextLink"\s*:\s*"([^"\\]+)"\s*}\s*\Z')
_NO_RECORDS = re.compile(rb'"value"\s*:\s*\[\s*\]')


def early_next_link(content: bytes) -> str | None:
    """The ``@odata.nextLink`` of a feed page with records, read from the raw body without
    decoding it; None unless it is plainly the top-level object's last member.

    With valid JSON that is certain: the key follows a ``,`` or ``{`` (so it opens a string
    outside any string) and the unescaped value is followed by the closing brace. The
    records are looked for where Sage puts them, near the start (a full scan would cost
    more than the decoder saves here).
    """
    start = content.rfind(_NEXT_LINK_KEY)
    if start < 0:
        return None
    match = _TRAILING_LINK.match(content, start)
    if match is None:
        return None
    before = start - 1
    while before >= 0 and content[before] in b" \t\r\n":
        before -= 1
    if before < 0 or content[before] not in b",{":
        return None
    records = content.find(b'"value"')
    if records < 0 or _NO_RECORDS.match(content, records):
        return None
    return match.group(1).decode()


class _PageAt:
    """Stands in for the paginator in ``_prepare_request`` when the next page's token is
    known before the paginator has read the page (see ``request_records``)."""

    def __init__(self, token: ParseResult) -> None:
        self.current_value = token


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
    PageSize below ``page_size``, with or without links, is read whole."""

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
        return sdk_wait_generator(self._tap.retry_policy)

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
        return super().request_decorator(refuse_untrusted_tls)

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
        """The SDK's page loop, one page ahead: the request for the next page goes on the
        wire (see prefetch.py) as soon as its URL is known, so Sage builds page N+1 while the
        tap decodes, shapes and writes page N. A nextLink is read from the end of the raw
        body, before the page is decoded; a page continued by ``$skip`` once the paginator
        has counted the records. One request is in flight per stream, and pages are still
        consumed strictly in order. After the last page the read is checked complete
        against Sage's count (:meth:`check_complete`)."""
        paginator = self.get_new_paginator()
        connection = self._tap.page_connection()
        on_the_wire: list[PageRequest] = []
        ahead: list[tuple[ParseResult, PageRequest]] = []  # the next page's, sent early
        looked_ahead = False  # whether request_early saw the page just fetched

        def fetch(prepared: requests.PreparedRequest, context: Context | None
                  ) -> requests.Response:
            # The first try is the request already sent; a retry is an ordinary send.
            nonlocal looked_ahead
            if not on_the_wire:
                looked_ahead = False
                return self._request(prepared, context)
            response = on_the_wire.pop().response()
            request_early(response)  # first: Sage is idle until it arrives
            looked_ahead = True
            self._write_request_duration_log(endpoint=self.path, response=response,
                                             context=context, extra_tags=None)
            self.validate_response(response)
            return response

        def request_next() -> requests.PreparedRequest:
            prepared = self._prepare_request(context=context, page=paginator)
            if connection is not None and connection.serves(prepared.url or ""):
                on_the_wire.append(connection.send(prepared))
            return prepared

        def request_early(response: requests.Response) -> None:
            # Sage sits idle from the moment it has written a page until the next request
            # arrives, so that request is written before the page is decoded: its link is
            # the body's last member. Only a 200 (which validate_response passes) with
            # records; the paginator still reads the decoded page, and the request is kept
            # only if it asks for exactly the page the paginator names.
            if connection is None or response.status_code != 200:
                return
            link = early_next_link(response.content)
            if link is None:
                return
            token = urlparse(paginator.paging.follow(link))  # as the paginator will
            prepared = self._prepare_request(context=context, page=cast(Any, _PageAt(token)))
            if connection.serves(prepared.url or ""):
                ahead.append((token, connection.send(prepared)))

        send = self.request_decorator(fetch)
        try:
            with self.get_http_request_counter() as request_counter:
                request_counter.with_context(context)
                prepared: requests.PreparedRequest | None = request_next()
                while prepared is not None:
                    response = send(prepared, context)
                    if not looked_ahead:  # a retry's answer, which came through requests
                        request_early(response)
                    early = ahead.pop() if ahead else None
                    request_counter.increment()
                    self.update_sync_costs(prepared, response, context)
                    records = self.parse_response(response)
                    paginator.advance(response)  # the next URL comes from this page's body
                    if not records or paginator.finished:
                        prepared = None
                    elif early is not None and early[0] == paginator.current_value:
                        on_the_wire.append(early[1])
                        prepared = early[1].request
                    else:
                        if early is not None and connection is not None:
                            connection.close()  # its answer would pass for the right page's
                        prepared = request_next()
                    yield from records
            self.check_complete(paginator.paging, context)
        finally:  # also when stopped early (an error, a record limit)
            on_the_wire.clear()
            ahead.clear()
            if connection is not None:
                connection.close()

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

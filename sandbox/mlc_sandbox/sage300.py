"""The Sage 300 Web API simulator (on-premises, IIS + ASP.NET Web API 2 + OData v4).

Behaves as /work/shared/reference/sage300-webapi.md describes, with BRIEF decision 1 on
credentials. Routes, under ``/Sage300WebApi/v1.0/-/{COMPANY}/{MODULE}/``:

- ``$metadata`` (GET): the module's EDMX v4 document.
- ``{Resource}`` (GET feed, POST create) and ``{Resource}({key})`` (GET, PUT, PATCH, DELETE),
  with keys ``('1200')``, ``(1200)``, ``(58)``, ``(BatchNumber=58)``, composite
  ``(SegmentNumber='000002',SegmentCodeKey='200')`` (named in any order, or positional).
- ``{Resource}('$process')`` / ``('$template')`` (POST only).

Resources (verbs per the reference §1.2 matrix, 405 ``MethodNotAllowed`` otherwise):
AP/APVendors, AP/APTerms, AP/APDistributionCodes, AR/ARCustomers, GL/GLAccounts,
GL/GLSegmentCodes (all five verbs); PO/POPurchaseOrders (GET POST); AP/APInvoiceBatches
(GET POST PATCH); AP/APPostedDocuments, AP/APPostedPayments, PO/POGetReceipts,
TX/TXTaxAuthorities, TX/TXTaxGroups, TX/TXTaxRates (GET); AP/APPostInvoices (POST
``$process``).

Settings (``/_sandbox/settings``): ``page_size`` (100), ``next_link`` (True; False: a page
cut short by ``page_size`` carries no ``@odata.nextLink``, as a server that caps its pages
without links: the client must go on with ``$skip``), ``odata_count`` (True; False:
``$count=true`` is accepted but no ``@odata.count`` is sent, as a server ignoring it),
``offset`` (``Z``; e.g. ``-04:00`` serializes dates as ``2026-03-01T00:00:00-04:00`` and
shifts date-time filter literals, see odata.py), ``password_case_sensitive`` (False:
legacy install, the password must arrive UPPERCASED; True: compared exactly),
``iis_windows_auth`` (False; True: IIS answers every request 401 Negotiate/NTLM),
``forbidden_modules`` ([]: modules whose Web API right the user lacks, 403), ``today``
(None: the real UTC date; or ``YYYY-MM-DD``, the date stamped on changes), ``version``
(``current``; ``older``: an install that lacks some fields and names one differently, in its
``$metadata`` and in everything it accepts and answers: sage300_schema.VERSION_MISSING and
VERSION_RENAMED).

Admin extra: ``POST /_sandbox/touch`` ``{"company", "resource", "key", "changes"}`` changes a
record as a Sage user would (``DateLastMaintained`` = today). ``changes`` may replace a detail
collection whole, rows as a GET returns them: ``{"PurchaseOrderLines": [...]}`` with a line
left out is a line removed from the PO in PO Entry (POPurchaseOrders has no PUT, PATCH or
DELETE in the Web API); the PO's ``ExtendedCostTotal`` follows its lines.
``POST /_sandbox/pay`` ``{"company", "vendor", "document", "amount"?, "date"?,
"check_number"?, "payment_code"?}`` records a posted payment against a posted document (a
payment batch entered and posted in AP): a row in ``AP/APPostedPayments``, the document's
``CurrentBalance``, ``FullyPaid``, ``DateLastActivity`` and ``Last*`` payment fields
(sage300_ap.record_payment); ``amount`` defaults to the balance (paid in full).

Guesses beyond the reference (see also odata.py, sage300_schema.py, sage300_store.py and
sage300_ap.py, which list theirs):

- A query string over 2,048 characters (IIS request filtering's default maxQueryString) is
  IIS's HTML 404.15, before anything else is checked.
- Order of checks: IIS Windows auth, then the URL prefix (404), then Basic auth (401), then
  company / module (404), then the module right (403), then resource (404), verb (405), key.
- The user id must arrive exactly ``WEBAPI`` (uppercase) in both modes (BRIEF decision 1;
  the reference would compare it case-insensitively). No session cookie is issued.
- 401 body message: "Authorization has been denied for this request." (ASP.NET's text);
  403: "You do not have permission to use the Sage 300 Web API for module {M}.".
- 404 ``ResourceNotFound`` text is ASP.NET's "No HTTP resource was found that matches the
  request URI '...'."; company, module and resource names are case-sensitive.
- A write (POST/PUT/PATCH) without ``Content-Type: application/json`` is 500
  ``InternalServerError`` (DevRef says so); GET does not need it.
- A quoted numeric key (``APInvoiceBatches('58')``) is 400 ``InvalidEntityKey``; string keys
  may be unquoted when they have no spaces (reference §1.3).
- Query options other than ``$select`` on a single entity are 400.
- ``$template`` answers 200 with a default-filled entity (not 201).
- Master-data POST uppercases key codes (Sage views uppercase codes); a vendor or customer
  number longer than 12 characters is 409 ``FieldInvalid``; an existing key is 409
  ``RecordDuplicate`` "{Vendor} already exists.". Missing fields take defaults: the company's
  currency, account set and tax group; terms ``N30``; status ``Active``; start date today.
- PUT replaces the whole record: omitted properties return to their defaults and omitted
  details are purged (reference §5 says so for details; for scalars it is a guess).
  A key in the PUT/PATCH payload that differs from the URL key is 400 ``InvalidPayload``.
- A detail row named by PATCH ``Update``/``Delete`` that does not exist is 404
  ``RecordNotFound``; ``Insert`` of an existing detail key is 409 ``RecordDuplicate``.
- DELETE does not check for dependent transactions.
- ``DateLastMaintained`` is set to today on every create/change of resources that have it
  (APVendors, APTerms, APDistributionCodes, ARCustomers, POPurchaseOrders); GLAccounts and
  GLSegmentCodes have none.
- POPurchaseOrders POST: ``PurchaseOrderSequenceKey`` = highest + 1; ``PurchaseOrderNumber``
  (if absent) continues the highest ``PO`` number of the company; ``Vendor`` must exist and be
  active; lines are numbered 1000, 2000... when not given; ``ExtendedCost`` =
  quantity x unit cost; ``VendorName``/``CurrencyCode``/``TermsCode`` come from the vendor.
- Faults look like IIS/ASP.NET: 500 is the ASP.NET yellow-screen HTML, 503 the HTTP.sys
  "Service Unavailable" HTML, both text/html; 429 is OData ``TooManyRequests`` JSON. 503 and
  429 carry Retry-After.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit

from . import sage300_ap
from .data import SAGE_PASSWORD, SAGE_USER, Dataset, build_dataset
from .http import Request, Response, Simulator, _retry_after_value
from .odata import (
    FilterContext,
    ODataError,
    QueryOptions,
    apply_order,
    compile_filter,
    format_key,
    invalid_query,
    parse_key,
    parse_offset,
    parse_query_options,
    parse_select,
    special_key,
)
from .sage300_schema import (
    MODULES,
    VERSION_RENAMED,
    VERSIONS,
    Module,
    ResourceSpec,
    modules_of,
    rename_record,
)
from .sage300_store import (
    CompanyState,
    Key,
    Record,
    Serializer,
    Table,
    build_details,
    business_error,
    check_key_unchanged,
    coerce_struct,
    dec,
    load_record,
    merge_details,
    money,
    not_found,
    parent_keys_of,
)

API_PREFIX = "/Sage300WebApi/v1.0/-/"
REALM = "Sage300WebApi"
ODATA_JSON = "application/json; odata.metadata=minimal"
ODATA_HEADERS = {"OData-Version": "4.0"}
IIS_HEADERS = {"Server": "Microsoft-IIS/10.0", "X-Powered-By": "ASP.NET"}
#: IIS request filtering's default maxQueryString (characters as sent, encoded): a longer
#: query string is refused with 404.15 before ASP.NET sees the request.
IIS_MAX_QUERY_STRING = 2048
QUERY_CACHE_SIZE = 64
KEY_LENGTHS = {"AP/APVendors": 12, "AR/ARCustomers": 12, "AP/APTerms": 6,
               "AP/APDistributionCodes": 6}

DEFAULT_SETTINGS: dict[str, Any] = {
    "page_size": 100,
    "next_link": True,
    "odata_count": True,
    "offset": "Z",
    "password_case_sensitive": False,
    "iis_windows_auth": False,
    "forbidden_modules": [],
    "today": None,
    "version": "current",
}


@dataclass
class Route:
    company: str
    module: str
    resource: str  # "$metadata" for the metadata document
    key_text: str | None  # the text between the parentheses, if any


def odata_error(status: int, code: str, message: str,
                headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"code": code, "message": {"lang": "en-US", "value": message}}}
    return Response.json(status, body, {**ODATA_HEADERS, **(headers or {})},
                         content_type="application/json; charset=utf-8")


def odata_json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response.json(status, payload, {**ODATA_HEADERS, **(headers or {})},
                         content_type=ODATA_JSON)


class Sage300Simulator(Simulator):
    """Sage 300 Web API for companies SAMINC and SAMLTD, seeded by :func:`build_dataset`."""

    name = "sage300"

    def __init__(self, data: str = "demo", seed: int = 0) -> None:
        super().__init__()
        self.companies: dict[str, CompanyState] = {}
        self._query_cache: OrderedDict[tuple[Any, ...], tuple[int, list[Record]]] = OrderedDict()
        self.modules: dict[str, Module] = MODULES  # what the install's version offers
        self.reset(seed, data)

    # ---------------------------------------------------------------------------------------
    # State
    # ---------------------------------------------------------------------------------------
    def reset(self, seed: int, data: str) -> None:
        dataset = build_dataset(data, seed)
        with self.lock:
            self.settings = copy.deepcopy(DEFAULT_SETTINGS)
            self.companies = {c.sage_id: _load_company(dataset, c.sage_id)
                              for c in dataset.companies}
            self.modules = MODULES
            self._query_cache.clear()

    def update_settings(self, changes: dict[str, Any]) -> None:
        unknown = set(changes) - set(self.settings)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(self.settings)}")
        for name, value in changes.items():
            _validate_setting(name, value)
        version = changes.get("version", self.settings["version"])
        if version != self.settings["version"]:
            self._migrate(self.settings["version"], version)
        self.settings.update(changes)
        self._query_cache.clear()

    def _migrate(self, old: str, new: str) -> None:
        """The stored records as the ``new`` version names their fields (an upgrade or a
        downgrade of the install: the data stays)."""
        moves = [(path, field, name) for path, renamed in VERSION_RENAMED[old].items()
                 for field, name in renamed.items()]
        back = [(path, (*field[:-1], name), field[-1]) for path, field, name in moves]
        forward = [(path, field, name) for path, renamed in VERSION_RENAMED[new].items()
                   for field, name in renamed.items()]
        for path, field, name in back + forward:
            for state in self.companies.values():
                for record in state.table(path).ordered():
                    rename_record(record, field, name)
        self.modules = modules_of(new)

    def today(self) -> str:
        return self.settings["today"] or datetime.now(UTC).date().isoformat()

    def snapshot(self) -> dict[str, Any]:
        serializer = Serializer(self.settings["offset"])
        companies = {}
        for company_id, state in self.companies.items():
            companies[company_id] = {
                path: [serializer.record(table.spec.entity, r) for r in table.ordered()]
                for path, table in state.tables.items() if table.spec.kind != "process"}
        return {
            "companies": companies,
            "next_numbers": {cid: {"batch": s.next_batch,
                                   "posting_sequence": s.next_posting_sequence}
                             for cid, s in self.companies.items()},
            "settings": copy.deepcopy(self.settings),
            "today": self.today(),
        }

    def info(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url + API_PREFIX.rstrip("/"),
                "company_ids": list(self.companies), "username": SAGE_USER,
                "password": SAGE_PASSWORD,
                "password_case_sensitive": self.settings["password_case_sensitive"],
                "admin_url": base_url + "/_sandbox"}

    def secrets(self) -> list[str]:
        values = [SAGE_PASSWORD, SAGE_PASSWORD.upper(), SAGE_PASSWORD.lower()]
        for user in (SAGE_USER, SAGE_USER.lower()):
            for password in (SAGE_PASSWORD, SAGE_PASSWORD.upper(), SAGE_PASSWORD.lower()):
                values.append(base64.b64encode(f"{user}:{password}".encode()).decode())
        return values

    # ---------------------------------------------------------------------------------------
    # Faults and admin
    # ---------------------------------------------------------------------------------------
    def fault_response(self, kind: str, retry_after: float) -> Response:
        if kind == "429":
            return odata_error(429, "TooManyRequests", "The server was flooded with too many "
                               "concurrent requests. Please try again later.",
                               {"Retry-After": _retry_after_value(retry_after)})
        if kind == "503":
            return Response.text(503, _HTTPSYS_503, "text/html; charset=us-ascii",
                                 {"Server": "Microsoft-HTTPAPI/2.0",
                                  "Retry-After": _retry_after_value(retry_after)})
        if kind == "500":
            return Response.text(500, _ASPNET_500, "text/html; charset=utf-8", IIS_HEADERS)
        return super().fault_response(kind, retry_after)

    def admin(self, request: Request, action: str) -> Response | None:
        if action == "touch" and request.method == "POST":
            with self.lock:
                return Response.json(200, self._touch(request.json() or {}))
        if action == "pay" and request.method == "POST":
            with self.lock:
                body = request.json() or {}
                state = self.companies.get(str(body.get("company")))
                if state is None:
                    raise ValueError(f"unknown company {body.get('company')!r}")
                document = sage300_ap.record_payment(state, body, self.today())
                return Response.json(200, Serializer(self.settings["offset"]).record(
                    state.table(sage300_ap.POSTED).spec.entity, document))
        return None

    def _touch(self, body: dict[str, Any]) -> dict[str, Any]:
        state = self.companies.get(str(body.get("company")))
        if state is None:
            raise ValueError(f"unknown company {body.get('company')!r}")
        table = state.tables.get(str(body.get("resource")))
        if table is None or table.spec.kind == "process":
            raise ValueError(f"unknown resource {body.get('resource')!r}")
        raw_key = body.get("key")
        key_fields = table.spec.entity.key
        if isinstance(raw_key, dict):
            key: Key = tuple(raw_key[name] for name in key_fields)
        elif isinstance(raw_key, list):
            key = tuple(raw_key)
        else:
            key = (raw_key,)
        record = table.get(key)
        if record is None:
            raise ValueError(f"no record {key!r} in {table.spec.path}")
        try:
            changes = coerce_struct(table.spec.entity, body.get("changes") or {})
        except ODataError as exc:
            raise ValueError(exc.message) from None
        if set(changes) & set(key_fields):
            raise ValueError(f"touch cannot change the key fields {key_fields}")
        updated = {**copy.deepcopy(record), **changes}
        if table.spec.path == "PO/POPurchaseOrders" and "PurchaseOrderLines" in changes:
            updated["ExtendedCostTotal"] = money(sum(
                (dec(line["ExtendedCost"]) for line in updated["PurchaseOrderLines"]), dec(0)))
        if table.spec.maintained:
            updated["DateLastMaintained"] = self.today()
        table.put(updated)
        return Serializer(self.settings["offset"]).record(table.spec.entity, updated)

    # ---------------------------------------------------------------------------------------
    # Request handling
    # ---------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        with self.lock:
            if self.settings["iis_windows_auth"]:
                return _iis_windows_challenge()
            if len(request.raw_path.partition("?")[2]) > IIS_MAX_QUERY_STRING:
                return _iis_query_string_too_long()
            try:
                return self._handle(request)
            except ODataError as exc:
                return odata_error(exc.status, exc.code, exc.message, exc.headers)

    def _handle(self, request: Request) -> Response:
        route = self._route(request)
        self._authenticate(request)
        state = self.companies.get(route.company)
        module = self.modules.get(route.module)
        if state is None or module is None:
            raise self._no_resource(request)
        if route.module in self.settings["forbidden_modules"]:
            raise ODataError(403, "Forbidden", "You do not have permission to use the Sage 300 "
                             f"Web API for module {route.module}.")
        if route.resource == "$metadata" and route.key_text is None:
            if request.method != "GET":
                raise _method_not_allowed(request.method, {"GET"})
            return Response.text(200, module.metadata_xml, "application/xml; charset=utf-8",
                                 ODATA_HEADERS)
        spec = module.resources.get(route.resource)
        if spec is None:
            raise self._no_resource(request)
        if request.method not in spec.verbs:
            raise _method_not_allowed(request.method, spec.verbs)
        if request.method in ("POST", "PUT", "PATCH"):
            _require_json_content(request, allow_empty=request.method == "POST")
        return self._dispatch(request, state, module, spec, route.key_text)

    def _route(self, request: Request) -> Route:
        if not request.path.startswith(API_PREFIX):
            raise self._no_resource(request)
        parts = request.path[len(API_PREFIX):].split("/", 2)
        if len(parts) != 3:
            raise self._no_resource(request)
        company, module, rest = parts
        match = re.fullmatch(r"(\$metadata|[A-Za-z][A-Za-z0-9]*)(?:\((.*)\))?/?", rest, re.DOTALL)
        if not match:
            raise self._no_resource(request)
        return Route(company, module, match.group(1), match.group(2))

    def _no_resource(self, request: Request) -> ODataError:
        return ODataError(404, "ResourceNotFound", "No HTTP resource was found that matches the "
                          f"request URI '{request.base_url}{request.raw_path}'.")

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization") or ""
        scheme, _, encoded = header.partition(" ")
        user = password = None
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
                user, _, password = decoded.partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user = None
        expected = SAGE_PASSWORD if self.settings["password_case_sensitive"] \
            else SAGE_PASSWORD.upper()
        if user is None or password is None or not (
                hmac.compare_digest(user.encode(), SAGE_USER.encode())
                & hmac.compare_digest(password.encode(), expected.encode())):
            raise ODataError(401, "Unauthorized", "Authorization has been denied for this "
                             "request.", {"WWW-Authenticate": f'Basic realm="{REALM}"'})

    def _dispatch(self, request: Request, state: CompanyState, module: Module,
                  spec: ResourceSpec, key_text: str | None) -> Response:
        method = request.method
        special = special_key(key_text) if key_text is not None else None
        if special is not None:
            if method != "POST":
                raise _method_not_allowed(method, {"POST"})
            return self._special(request, state, spec, special)
        if method == "POST":
            if key_text is not None or spec.kind == "process":
                raise ODataError(400, "InvalidAction", f"The action is not valid for "
                                 f"'{spec.name}'. Use POST {spec.name} to create a record, or "
                                 f"{spec.name}('$process') to run a process.")
            return self._create(request, state, spec)
        if key_text is None:
            if method == "GET":
                return self._feed(request, state, spec)
            raise _method_not_allowed(method, {"GET", "POST"} & spec.verbs)
        table = state.table(spec.path)
        key = parse_key(key_text, spec.entity.key_props, spec.name)
        record = table.get(key)
        if record is None:
            raise not_found()
        if method == "GET":
            return self._entity(request, spec, record)
        if method == "DELETE":
            table.delete(key)
            return Response.empty(204, ODATA_HEADERS)
        data = coerce_struct(spec.entity, _json_body(request))
        if spec.path == sage300_ap.BATCHES:
            sage300_ap.patch_batch(state, record, data, self.today())
        elif method == "PATCH":
            self._patch(state, spec, record, key, data)
        else:
            self._put(state, spec, record, key, data)
        return Response.empty(204, ODATA_HEADERS)

    # ---------------------------------------------------------------------------------------
    # Reads
    # ---------------------------------------------------------------------------------------
    def _context(self, request: Request, spec: ResourceSpec) -> str:
        company = request.path[len(API_PREFIX):].split("/", 1)[0]
        return f"{request.base_url}{API_PREFIX}{company}/{spec.module}/$metadata#{spec.name}"

    def _entity(self, request: Request, spec: ResourceSpec, record: Record) -> Response:
        for name in request.query:
            if name.startswith("$") and name != "$select":
                raise invalid_query("The requested resource is not a collection. Query options "
                                    "$filter, $orderby, $count, $skip, and $top can be applied "
                                    "only on collections.")
        select = None
        if "$select" in request.query:
            if len(request.query["$select"]) > 1:
                raise invalid_query("Query option '$select' was specified more than once, but "
                                    "it must be specified at most once.")
            select = parse_select(request.query["$select"][0], spec.entity.types,
                                  spec.entity.full_name)
        body = {"@odata.context": self._context(request, spec) + "/$entity",
                **Serializer(self.settings["offset"]).record(spec.entity, record, select)}
        return odata_json(200, body)

    def _feed(self, request: Request, state: CompanyState, spec: ResourceSpec) -> Response:
        entity = spec.entity
        options = parse_query_options(request.query, entity.types, entity.full_name)
        records = self._query(state, spec, options)
        page_size = int(self.settings["page_size"])
        window_end = len(records) if options.top is None else min(len(records),
                                                                  options.skip + options.top)
        page_end = min(window_end, options.skip + page_size)
        page = records[options.skip:page_end]
        context = self._context(request, spec)
        if options.select is not None:
            context += "(" + ",".join(options.select) + ")"
        body: dict[str, Any] = {"@odata.context": context}
        if options.count and self.settings["odata_count"]:
            body["@odata.count"] = len(records)
        serializer = Serializer(self.settings["offset"])
        body["value"] = [serializer.record(entity, r, options.select) for r in page]
        if page_end < window_end and self.settings["next_link"]:
            body["@odata.nextLink"] = _next_link(request, options, page_size)
        return odata_json(200, body)

    def _query(self, state: CompanyState, spec: ResourceSpec,
               options: QueryOptions) -> list[Record]:
        """Filtered, ordered records, cached per query while the table is unchanged."""
        table = state.table(spec.path)
        predicate = None
        if options.filter is not None:
            context = FilterContext(spec.entity.types, spec.entity.full_name,
                                    parse_offset(self.settings["offset"]))
            predicate = compile_filter(options.filter, context)
        cache_key = (state.company.sage_id, spec.path, options.filter, options.orderby_text)
        cached = self._query_cache.get(cache_key)
        if cached is not None and cached[0] == table.version:
            self._query_cache.move_to_end(cache_key)
            return cached[1]
        records = table.ordered()
        if predicate is not None:
            records = [r for r in records if predicate(r)]
        if options.orderby:
            records = apply_order(records, options.orderby, spec.entity.key)
        self._query_cache[cache_key] = (table.version, records)
        if len(self._query_cache) > QUERY_CACHE_SIZE:
            self._query_cache.popitem(last=False)
        return records

    # ---------------------------------------------------------------------------------------
    # Writes
    # ---------------------------------------------------------------------------------------
    def _special(self, request: Request, state: CompanyState, spec: ResourceSpec,
                 special: str) -> Response:
        if special == "$template":
            template = self._defaults(state, spec)
            body = {"@odata.context": self._context(request, spec) + "/$entity",
                    **Serializer(self.settings["offset"]).record(spec.entity, template)}
            return odata_json(200, body)
        if spec.kind != "process":
            raise ODataError(400, "InvalidAction", f"'$process' is not valid for '{spec.name}'; "
                             "it is not a process resource.")
        data = coerce_struct(spec.entity, _json_body(request))
        sage300_ap.post_batches(state, data, self.today())
        return Response.empty(204, ODATA_HEADERS)

    def _defaults(self, state: CompanyState, spec: ResourceSpec) -> Record:
        """A new record of ``spec`` with the view's defaults (what ``$template`` returns)."""
        record = copy.deepcopy(spec.entity.defaults)
        company = state.company
        for name, value in (("CurrencyCode", company.currency), ("AccountSet", company.account_set),
                            ("DefaultCurrencyCode", company.currency),
                            ("TaxGroup", state.tax_group)):
            if name in record:
                record[name] = value
        if spec.path in ("AP/APVendors", "AR/ARCustomers"):
            record["Terms"] = "N30"
        if spec.kind == "process":
            record["ProcessAllBatches"] = "Donotpostallbatches"
        return record

    def _create(self, request: Request, state: CompanyState, spec: ResourceSpec) -> Response:
        data = coerce_struct(spec.entity, _json_body(request))
        today = self.today()
        if spec.path == sage300_ap.BATCHES:
            record = sage300_ap.create_batch(state, data, today)
        elif spec.path == "PO/POPurchaseOrders":
            record = self._create_purchase_order(state, spec, data, today)
        else:
            record = self._create_master(state, spec, data, today)
        key = format_key(state.table(spec.path).key_of(record), spec.entity.key_props)
        # Percent-encoded as ASP.NET writes a URL (a key may hold '/', '%' or non-ASCII;
        # a raw non-Latin-1 character cannot even be sent in a header).
        key = quote(key, safe="'()=,")
        location = (f"{request.base_url}{API_PREFIX}{state.company.sage_id}/{spec.module}/"
                    f"{spec.name}{key}")
        body = {"@odata.context": self._context(request, spec) + "/$entity",
                **Serializer(self.settings["offset"]).record(spec.entity, record)}
        return odata_json(201, body, {"Location": location})

    def _create_master(self, state: CompanyState, spec: ResourceSpec, data: Record,
                       today: str) -> Record:
        entity = spec.entity
        _uppercase_key(spec, data)
        record = self._defaults(state, spec)
        record.update({k: v for k, v in data.items() if k not in entity.details})
        key = state.table(spec.path).key_of(record)
        _check_key(spec, key)
        if state.table(spec.path).get(key) is not None:
            raise business_error(f"{spec.label} already exists.", "RecordDuplicate")
        parents = parent_keys_of(entity, record)
        for name, child in entity.details.items():
            record[name] = build_details(child, data.get(name, []), parents)
        self._complete_master(state, spec, record, None, today)
        state.table(spec.path).put(record)
        return record

    def _put(self, state: CompanyState, spec: ResourceSpec, old: Record, key: Key,
             data: Record) -> None:
        entity = spec.entity
        _uppercase_key(spec, data)
        check_key_unchanged(entity, data, key)
        record = self._defaults(state, spec)
        record.update({k: v for k, v in data.items() if k not in entity.details})
        record.update(dict(zip(entity.key, key, strict=True)))
        for name, child in entity.details.items():
            record[name] = build_details(child, data.get(name, []), parent_keys_of(entity, record))
        self._complete_master(state, spec, record, old, self.today())
        state.table(spec.path).put(record)

    def _patch(self, state: CompanyState, spec: ResourceSpec, old: Record, key: Key,
               data: Record) -> None:
        entity = spec.entity
        _uppercase_key(spec, data)
        check_key_unchanged(entity, data, key)
        record = copy.deepcopy(old)
        record.update({k: v for k, v in data.items()
                       if k not in entity.details and k != "UpdateOperation"})
        parents = parent_keys_of(entity, record)
        for name, child in entity.details.items():
            if name in data:
                record[name] = merge_details(child, record[name], data[name], parents)
        self._complete_master(state, spec, record, old, self.today())
        state.table(spec.path).put(record)

    def _complete_master(self, state: CompanyState, spec: ResourceSpec, record: Record,
                         old: Record | None, today: str) -> None:
        """The view's validation and derived fields for one master record."""
        record["UpdateOperation"] = "Unspecified"
        if "Status" in record and "InactiveDate" in record:
            if record["Status"] == "Inactive":
                record["InactiveDate"] = record["InactiveDate"] or today
            else:
                record["InactiveDate"] = None
        if "StartDate" in record:
            record["StartDate"] = record["StartDate"] or (old or {}).get("StartDate") or today
        if spec.path == "AP/APVendors" and record["Terms"] \
                and state.table("AP/APTerms").get((record["Terms"],)) is None:
            raise business_error(f"Terms code {record['Terms']} does not exist.")
        if spec.path == "AP/APTerms":
            _complete_terms(record)
        elif spec.path == "GL/GLAccounts":
            _complete_account(record, old, today)
        elif spec.path == "GL/GLSegmentCodes":
            _check_segment(state, record)
        elif spec.path == "AP/APDistributionCodes":
            _check_account(state, record["GLAccount"])
        if spec.maintained:
            record["DateLastMaintained"] = today

    def _create_purchase_order(self, state: CompanyState, spec: ResourceSpec, data: Record,
                               today: str) -> Record:
        table = state.table(spec.path)
        vendor = state.table("AP/APVendors").get((data.get("Vendor", ""),))
        if vendor is None:
            raise business_error(f"Vendor number {data.get('Vendor', '')} does not exist.")
        if vendor["Status"] != "Active":
            raise business_error(f"Vendor {vendor['VendorNumber']} is inactive.")
        sequence = max((k[0] for k in table.rows), default=0) + 1
        record = self._defaults(state, spec)
        record.update({k: v for k, v in data.items() if k != "PurchaseOrderLines"})
        record["PurchaseOrderSequenceKey"] = sequence
        record["PurchaseOrderNumber"] = record["PurchaseOrderNumber"] or _next_po_number(table)
        if any(r["PurchaseOrderNumber"] == record["PurchaseOrderNumber"]
               for r in table.rows.values()):
            raise business_error(f"Purchase order number {record['PurchaseOrderNumber']} "
                                 "already exists.", "RecordDuplicate")
        record["VendorName"] = record["VendorName"] or vendor["VendorName"]
        record["CurrencyCode"] = vendor["CurrencyCode"]
        record["TermsCode"] = record["TermsCode"] or vendor["Terms"]
        record["PurchaseOrderDate"] = record["PurchaseOrderDate"] or today
        record["DateLastMaintained"] = today
        record["UpdateOperation"] = "Unspecified"
        lines = build_details(spec.entity.details["PurchaseOrderLines"],
                              data.get("PurchaseOrderLines", []),
                              {"PurchaseOrderSequenceKey": sequence})
        for line in lines:
            line["ExtendedCost"] = money(dec(line["QuantityOrdered"]) * dec(line["UnitCost"]))
        record["PurchaseOrderLines"] = lines
        record["ExtendedCostTotal"] = money(sum((dec(x["ExtendedCost"]) for x in lines), dec(0)))
        table.put(record)
        return record


# -------------------------------------------------------------------------------------------
# Helpers
# -------------------------------------------------------------------------------------------

def _load_company(dataset: Dataset, company_id: str) -> CompanyState:
    raw = dataset.sage[company_id]
    tables: dict[str, Table] = {}
    for module in MODULES.values():
        for spec in module.resources.values():
            entity = spec.entity
            tables[spec.path] = Table(spec, (load_record(entity, r) for r in raw.get(spec.path, [])))
    vendors = raw.get("AP/APVendors", [])
    batches = [b["BatchNumber"] for b in raw.get("AP/APInvoiceBatches", [])]
    batches += [d["BatchNumber"] for d in raw.get("AP/APPostedDocuments", [])]
    sequences = [d["PostingSequenceNumber"] for d in raw.get("AP/APPostedDocuments", [])]
    return CompanyState(dataset.company(company_id), tables,
                        tax_group=vendors[0]["TaxGroup"] if vendors else "",
                        next_batch=max(batches, default=0) + 1,
                        next_posting_sequence=max(sequences, default=0) + 1)


def _validate_setting(name: str, value: Any) -> None:
    if name == "version" and value not in VERSIONS:
        raise ValueError(f"version must be one of {list(VERSIONS)}")
    if name == "page_size" and (isinstance(value, bool) or not isinstance(value, int)
                                or value < 1):
        raise ValueError("page_size must be a positive integer")
    if name == "offset":
        parse_offset(str(value))
    if name in ("password_case_sensitive", "iis_windows_auth", "next_link", "odata_count") \
            and not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    if name == "forbidden_modules" and not (isinstance(value, list)
                                            and all(isinstance(m, str) for m in value)):
        raise ValueError("forbidden_modules must be a list of module ids like ['PO']")
    if name == "today" and value is not None:
        date.fromisoformat(str(value))


def _method_not_allowed(method: str, allowed: set[str] | frozenset[str]) -> ODataError:
    return ODataError(405, "MethodNotAllowed", f"The requested resource does not support http "
                      f"method '{method}'.", {"Allow": ", ".join(sorted(allowed))})


def _require_json_content(request: Request, allow_empty: bool = False) -> None:
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type == "application/json" or (allow_empty and not request.body):
        return
    raise ODataError(500, "InternalServerError", "An error has occurred. The request content "
                     "type must be application/json.")


def _json_body(request: Request) -> Any:
    if not request.body:
        return {}
    try:
        return request.json()
    except ValueError as exc:
        raise ODataError(400, "InvalidPayload", f"The request payload is not valid JSON: {exc}"
                         ) from None


def _next_link(request: Request, options: QueryOptions, page_size: int) -> str:
    """The same URL with every option kept, ``$skip`` advanced and ``$top`` reduced."""
    parts = urlsplit(request.raw_path)
    kept = [piece for piece in parts.query.split("&")
            if piece and unquote_plus(piece.split("=", 1)[0]) not in ("$skip", "$top")]
    if options.top is not None:
        kept.append(f"$top={options.top - page_size}")
    kept.append(f"$skip={options.skip + page_size}")
    return f"{request.base_url}{parts.path}?{'&'.join(kept)}"


def _uppercase_key(spec: ResourceSpec, data: Record) -> None:
    if spec.uppercase_key:
        for name in spec.entity.key:
            if isinstance(data.get(name), str):
                data[name] = data[name].upper()


def _check_key(spec: ResourceSpec, key: Key) -> None:
    labels = dict(zip(spec.entity.key, key, strict=True))
    for name, value in labels.items():
        if value in (None, ""):
            raise business_error(f"{name} cannot be blank.")
    limit = KEY_LENGTHS.get(spec.path)
    if limit and len(str(key[0])) > limit:
        raise business_error(f"{spec.label} number {key[0]} is longer than {limit} characters.")


def _complete_terms(record: Record) -> None:
    schedule = record["TermsPaymentSchedule"]
    if schedule:
        record["NumberOfPayments"] = len(schedule)
        record["TotalPercentageDue"] = money(sum((dec(r["PercentageDue"]) for r in schedule),
                                                 dec(0)))


def _complete_account(record: Record, old: Record | None, today: str) -> None:
    account = record["UnformattedAccount"]
    if len(account) == 7 and not record["AccountNumber"]:
        record["AccountNumber"] = f"{account[:4]}-{account[4:]}"
    record["AccountSegmentCode1"] = record["AccountSegmentCode1"] or account[:4]
    record["AccountSegmentCode2"] = record["AccountSegmentCode2"] or account[4:]
    record["StructureCode"] = record["StructureCode"] or "ACCDPT"
    record["DateCreated"] = (old or {}).get("DateCreated") or record["DateCreated"] or today


def _check_segment(state: CompanyState, record: Record) -> None:
    segments = {k[0] for k in state.table("GL/GLSegmentCodes").rows}
    if record["SegmentNumber"] not in segments:
        raise business_error(f"Segment number {record['SegmentNumber']} does not exist.")


def _check_account(state: CompanyState, account: str) -> None:
    if state.table("GL/GLAccounts").get((account,)) is None:
        raise business_error(f"Account {account} does not exist.")


def _next_po_number(table: Table) -> str:
    numbers = [r["PurchaseOrderNumber"] for r in table.rows.values()
               if re.fullmatch(r"PO\d+", r["PurchaseOrderNumber"])]
    if not numbers:
        return "PO000001"
    highest = max(numbers, key=lambda n: int(n[2:]))
    return f"PO{int(highest[2:]) + 1:0{len(highest) - 2}d}"


def _iis_query_string_too_long() -> Response:
    return Response(404, _IIS_404_15.encode("utf-8"),
                    {"Content-Type": "text/html", **IIS_HEADERS})


_IIS_404_15 = """<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
<title>IIS 10.0 Detailed Error - 404.15 - Not Found</title>
</head>
<body>
<div id="content">
<h3>HTTP Error 404.15 - Not Found</h3>
<h4>The request filtering module is configured to deny a request where the query string is too long.</h4>
</div>
</body>
</html>
"""


def _iis_windows_challenge() -> Response:
    return Response(401, _IIS_401.encode("utf-8"),
                    {"Content-Type": "text/html", **IIS_HEADERS},
                    extra_headers=[("WWW-Authenticate", "Negotiate"),
                                   ("WWW-Authenticate", "NTLM")])

_IIS_401 = """<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/>
<title>401 - Unauthorized: Access is denied due to invalid credentials.</title>
</head>
<body>
<div id="header"><h1>Server Error</h1></div>
<div id="content">
 <div class="content-container"><fieldset>
  <h2>401 - Unauthorized: Access is denied due to invalid credentials.</h2>
  <h3>You do not have permission to view this directory or page using the credentials that you supplied.</h3>
 </fieldset></div>
</div>
</body>
</html>
"""

_ASPNET_500 = """<!DOCTYPE html>
<html>
    <head>
        <title>Runtime Error</title>
    </head>
    <body bgcolor="white">
            <span><H1>Server Error in '/Sage300WebApi' Application.<hr width=100% size=1 color=silver></H1>
            <h2> <i>Runtime Error</i> </h2></span>
            <b> Description: </b>An application error occurred on the server. The current custom error settings for this application prevent the details of the application error from being viewed remotely (for security reasons).
            <br><br>
    </body>
</html>
"""

_HTTPSYS_503 = """<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">
<HTML><HEAD><TITLE>Service Unavailable</TITLE>
<META HTTP-EQUIV="Content-Type" Content="text/html; charset=us-ascii"></HEAD>
<BODY><h2>Service Unavailable</h2>
<hr><p>HTTP Error 503. The service is unavailable.</p>
</BODY></HTML>
"""

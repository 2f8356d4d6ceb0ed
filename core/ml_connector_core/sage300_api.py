"""The Sage 300 Web API client every Sage plugin uses: credentials, OData literals, errors, calls.

- Credentials (BRIEF decision 1): the user id is always uppercased and the password too unless
  ``keep_password_case`` is set, because older installs store it uppercase and a wrong case
  only shows as a bare 401.
- A 401 whose only challenges are Negotiate/NTLM comes from IIS, not Sage: Windows
  authentication is on for the Web API application. We say so, with the fix.
- Values put into ``$filter`` go through :func:`odata_literal`, so no input can change a query.
- Paging (:class:`FeedPaging`, also the paginator of tap-sage300): Sage documents ``$skip``/
  ``$top`` and a page cap (web.config PageSize), not ``@odata.nextLink``. A read asks
  ``$count=true`` once, follows a nextLink when there is one (rebuilt on our own base URL: a
  reverse proxy may put its internal host in it), else goes on with ``$skip`` = records
  received until the count is reached (or, with no count, an empty page), and fails with
  :class:`IncompleteRead` when fewer records came back than were counted.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests

from .httppolicy import HttpSession, RetryPolicy, request_with_retry

logger = logging.getLogger(__name__)

IIS_WINDOWS_AUTH_HINT = (
    "IIS Windows authentication is on for the Sage300WebApi application; enable Anonymous "
    "authentication and disable Windows authentication in IIS Manager, then recycle the "
    "'Sage 300 Pool' application pool."
)


class Sage300Error(Exception):
    """A Sage 300 call failed; ``code`` is the OData error code (branch on it, not the text)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 sage_message: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.sage_message = sage_message


class Sage300AuthError(Sage300Error):
    """Credentials refused, IIS misconfigured, or no Web API right: a setup problem."""


class IncompleteRead(Sage300Error):
    """A read returned fewer records than Sage counted for it (``@odata.count``)."""


def normalize_credentials(username: str, password: str, keep_password_case: bool = False
                          ) -> tuple[str, str]:
    return username.upper(), password if keep_password_case else password.upper()


def basic_header(username: str, password: str, keep_password_case: bool = False) -> str:
    user, secret = normalize_credentials(username, password, keep_password_case)
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")


class Sage300Auth(requests.auth.AuthBase):
    """HTTP Basic on every request, with the uppercase rule applied."""

    def __init__(self, username: str, password: str, keep_password_case: bool = False) -> None:
        self.username = username.upper()
        self._header = basic_header(username, password, keep_password_case)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request


def odata_literal(value: Any) -> str:
    """An OData v4 literal for ``value``: strings quoted with ``'`` doubled, dates unquoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal | float):
        return str(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00Z"
    return "'" + str(value).replace("'", "''") + "'"


def entity_key(value: Any) -> str:
    """The key segment ``('1200')`` or ``(58)``, percent-encoded for the URL path."""
    return "(" + quote(odata_literal(value), safe="'") + ")"


def parse_error(response: requests.Response) -> tuple[str | None, str]:
    """(OData code, message) from an error response; IIS pages and empty bodies included."""
    try:
        error = response.json().get("error", {})
        message = error.get("message")
        text = message.get("value") if isinstance(message, dict) else message
        return error.get("code"), str(text or response.reason)
    except (ValueError, AttributeError):
        return None, f"HTTP {response.status_code} {response.reason} (non-JSON body)"


def explain_unauthorized(response: requests.Response, username: str,
                         keep_password_case: bool = False) -> str:
    """A person-readable reason for a 401 from Sage 300 or from IIS in front of it."""
    challenges = " ".join(response.headers.get("WWW-Authenticate", "").split(",")).lower()
    if challenges and "basic" not in challenges and ("negotiate" in challenges
                                                     or "ntlm" in challenges):
        return IIS_WINDOWS_AUTH_HINT
    reason = (f"Sage 300 refused the credentials for user {username.upper()} (user id and, "
              "unless keep_password_case is set, password are sent UPPERCASED). Check the "
              "password, that the user exists in Sage 300 and may use the Web API.")
    if keep_password_case:
        reason += (" keep_password_case is on, so the password went as typed; an older "
                   "install expects it UPPERCASED (set keep_password_case to false).")
    return reason


def raise_for_sage_status(response: requests.Response, username: str, what: str, *,
                          keep_password_case: bool = False) -> None:
    """Raise a :class:`Sage300Error` with a reason a person can act on, for any 4xx/5xx."""
    if response.status_code < 400:
        return
    if response.status_code == 401:
        raise Sage300AuthError(explain_unauthorized(response, username, keep_password_case),
                               status=401, code="Unauthorized")
    code, message = parse_error(response)
    if response.status_code == 403:
        raise Sage300AuthError(
            f"{what}: Sage 300 user {username.upper()} lacks the 'Sage 300 Web API' right for this "
            f"module (403 {code}: {message}). Grant it in the user's security group.",
            status=403, code=code, sage_message=message)
    raise Sage300Error(f"{what} failed: HTTP {response.status_code} {code or ''}: {message}",
                       status=response.status_code, code=code, sage_message=message)


class Sage300Client:
    """Calls one Sage 300 company's Web API."""

    def __init__(self, *, base_url: str, company: str, username: str, password: str,
                 keep_password_case: bool = False, policy: RetryPolicy | None = None,
                 verify_tls: bool = True, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.company = company
        self.username = username.upper()
        self.keep_password_case = keep_password_case
        self.policy = policy or RetryPolicy()
        self.verify_tls = verify_tls
        self.session = session or HttpSession()
        self.session.auth = Sage300Auth(username, password, keep_password_case)

    def url(self, resource: str, key: Any = None) -> str:
        """``resource`` is ``MODULE/Resource``, e.g. ``AP/APVendors``."""
        suffix = entity_key(key) if key is not None else ""
        return f"{self.base_url}/{self.company}/{resource}{suffix}"

    def call(self, method: str, url: str, *, params: dict[str, Any] | None = None,
             json: Any = None, retry_on_timeout: bool = True,
             accept: str = "application/json") -> requests.Response:
        headers = {"Accept": accept, "Content-Type": "application/json"}
        return request_with_retry(self.session, method, url, policy=self.policy, params=params,
                                  json=json, headers=headers, retry_on_timeout=retry_on_timeout,
                                  verify=self.verify_tls)

    def get_entity(self, resource: str, key: Any) -> dict[str, Any] | None:
        """One record, or None if Sage says RecordNotFound."""
        response = self.call("GET", self.url(resource, key))
        if response.status_code == 404:
            return None
        raise_for_sage_status(response, self.username, f"GET {resource}")
        return response.json()

    def iter_records(self, resource: str, *, filter: str | None = None,  # noqa: A002
                     select: list[str] | None = None, top: int | None = None
                     ) -> Iterator[dict[str, Any]]:
        """Every record matching the query (at most ``top``), paged by :class:`FeedPaging`.

        Raises :class:`IncompleteRead` after the last record when fewer came back than Sage
        counted; more than counted is logged as a warning.
        """
        paging = FeedPaging(self.base_url, limit=top)
        params: dict[str, Any] = {}
        if filter:
            params["$filter"] = filter
        if select:
            params["$select"] = ",".join(select)
        params.update(paging.first_options())
        url: str | None = self.url(resource)
        while url:
            response = self.call("GET", url, params=params)
            raise_for_sage_status(response, self.username, f"GET {resource}")
            body = response.json()
            url, params = paging.next_url(body, response.request.url or url), None
            yield from body.get("value") or ()
        warning = paging.check(resource, self.company)
        if warning:
            logger.warning(warning)

    def create(self, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST one record. A timeout raises ``UnknownOutcome``: reconcile before any retry."""
        response = self.call("POST", self.url(resource), json=body, retry_on_timeout=False)
        raise_for_sage_status(response, self.username, f"POST {resource}")
        return response.json()

    def patch(self, resource: str, key: Any, body: dict[str, Any]) -> None:
        response = self.call("PATCH", self.url(resource, key), json=body)
        raise_for_sage_status(response, self.username, f"PATCH {resource}")

    def process(self, resource: str, body: dict[str, Any]) -> None:
        """Run a process endpoint, e.g. ``AP/APPostInvoices``."""
        url = f"{self.base_url}/{self.company}/{resource}('$process')"
        response = self.call("POST", url, json=body, retry_on_timeout=False)
        raise_for_sage_status(response, self.username, f"POST {resource}('$process')")


def rebase_url(link: str, base_url: str) -> str:
    """``link`` (e.g. an ``@odata.nextLink``) moved onto the scheme and host of ``base_url``:
    behind a reverse proxy Sage may put its internal host in the link (reference §3.3)."""
    parts = urlsplit(link)
    own = urlsplit(base_url)
    return parts._replace(scheme=own.scheme, netloc=own.netloc).geturl()


def with_query(url: str, drop: tuple[str, ...] = (), **add: int) -> str:
    """``url`` without the query options named in ``drop`` and with ``add`` appended (e.g.
    ``skip=100`` as ``$skip=100``); every other option is kept exactly as sent."""
    parts = urlsplit(url)
    names = {*drop, *(f"${name}" for name in add)}
    kept = [piece for piece in parts.query.split("&")
            if piece and unquote(piece.split("=", 1)[0]) not in names]
    kept += [f"${name}={value}" for name, value in add.items()]
    return parts._replace(query="&".join(kept)).geturl()


def _count(value: Any) -> int | None:
    """``@odata.count`` as a number; a string with IEEE754Compatible, absent when ignored."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


@dataclass(frozen=True)
class Window:
    """``top`` records of a read from record ``skip`` on, and the request that asks them."""

    skip: int
    top: int
    url: str


class FeedPaging:
    """How one read of a Sage 300 feed is paged, and whether it came back whole.

    Sage documents ``$skip``/``$top`` paging and a server cap on every response (web.config
    PageSize, 100 by default); ``@odata.nextLink`` is not documented. So:

    - the first request asks ``$count=true`` (and ``$top``, see below): the total to reach;
    - a page with a nextLink is followed by it, rebuilt on our base URL and without
      ``$count`` (the total is known; :meth:`follow`, also used for links read early);
    - a page without one, while fewer records than the total came, is followed by the first
      request again with ``$skip`` = records received so far; with no total (a server that
      ignores ``$count``) until an empty page. An empty page ends every read;
    - :meth:`check` at the end: fewer records than counted raises :class:`IncompleteRead`
      (paging is by offset and unsnapshotted: a record deleted behind the offset shifts one
      past it, or pages are cut without a link); more is a warning (an insert shifts one to
      be read twice; consumers dedup by key).

    ``top`` is the ``$top`` of every request (records per request; the server may still cap
    it); ``limit``, at most this many records in all. A first page shorter than ``$top`` that
    reaches the count ends the read in one request.

    A counted read may also be asked for all at once after its first page (:meth:`windows`,
    tap-sage300's requests in flight): ``$skip`` windows of as many records as the first page
    returned, each the first request again with ``$skip``/``$top``, counted in order by
    :meth:`window_read`, which names the rest of a window that came back short.
    """

    def __init__(self, base_url: str, *, top: int | None = None,
                 limit: int | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.top = top
        self.limit = limit
        self.received = 0
        #: ``@odata.count`` of the first page: what the read must return (None: not sent).
        self.total: int | None = None
        self._first_url: str | None = None  # the read's own query, continued by $skip

    def first_options(self) -> dict[str, str]:
        """The paging options of the read's first request: ``$top`` and ``$count=true``."""
        top = self._next_top()
        return {"$count": "true"} if top is None else {"$top": str(top), "$count": "true"}

    def follow(self, link: str) -> str:
        """The request for an ``@odata.nextLink``: on our own base URL (a reverse proxy may
        put its internal host in the link), without ``$count``."""
        return with_query(rebase_url(link, self.base_url), drop=("$count",))

    def next_url(self, body: Mapping[str, Any], url: str) -> str | None:
        """The URL of the page after ``body`` (the page just read from ``url``), or None."""
        if self._first_url is None:
            self._first_url = url
            self.total = _count(body.get("@odata.count"))
        records = len(body.get("value") or ())
        self.received += records
        if not records or (self.limit is not None and self.received >= self.limit):
            return None
        link = body.get("@odata.nextLink")
        if link:
            return self.follow(link)
        if self.total is not None and self.received >= self.total:
            return None
        return self._skip_url(self.received, self._next_top())

    def windows(self) -> Iterator[Window]:
        """After the first page (:meth:`next_url` saw it): the rest of a counted read as
        windows of as many records as that page returned (the server's PageSize may have
        capped ``$top``), in order. Empty when there is no count, or the first page was empty
        or all there is; then the read goes on by :meth:`next_url`."""
        size, end = self.received, self._expected()
        if self._first_url is None or end is None or not size or size >= end:
            return iter(())
        return (self._window(skip, min(size, end - skip)) for skip in range(size, end, size))

    def window_read(self, window: Window, body: Mapping[str, Any]) -> Window | None:
        """Count the page ``window`` returned; the rest of the window when it came back with
        fewer records than asked (ask it before the next window: no gap), else None. An empty
        page ends the window (what is missing then fails :meth:`check`)."""
        records = len(body.get("value") or ())
        self.received += records
        if not records or records >= window.top:
            return None
        return self._window(window.skip + records, window.top - records)

    def _window(self, skip: int, top: int) -> Window:
        return Window(skip, top, self._skip_url(skip, top))

    def _skip_url(self, skip: int, top: int | None) -> str:
        """The read's first request again from record ``skip`` (``$top`` = ``top`` when
        given), without ``$count``: the paging rule every page after the first follows."""
        assert self._first_url is not None
        paging = {"skip": skip} if top is None else {"top": top, "skip": skip}
        return with_query(self._first_url, drop=("$count",), **paging)

    def _expected(self) -> int | None:
        """The records the read must return: the count, or ``limit`` when lower."""
        if self.total is None:
            return None
        return self.total if self.limit is None else min(self.total, self.limit)

    def check(self, resource: str, company: str) -> str | None:
        """After the last page: raise :class:`IncompleteRead` when fewer records came back
        than Sage counted; the warning to log when more did; else None."""
        expected = self._expected()
        if expected is None:
            return None
        what = f"Reading {resource} of company {company}"
        if self.received < expected:
            raise IncompleteRead(
                f"{what}: Sage counted {expected} records (@odata.count) but {self.received} "
                "came back. Records were deleted during the read, or the server truncates "
                "pages: run again; if it repeats, check the Sage Web API PageSize (web.config "
                "of the Sage300WebApi application).", code="IncompleteRead")
        if self.received > self.total:
            return (f"{what}: {self.received} records came back, {self.total} were counted "
                    "(@odata.count) when the read began: records were added during the read "
                    "and some may have come twice; they are deduplicated by key downstream.")
        return None

    def _next_top(self) -> int | None:
        if self.limit is None:
            return self.top
        left = self.limit - self.received
        return left if self.top is None else min(self.top, left)

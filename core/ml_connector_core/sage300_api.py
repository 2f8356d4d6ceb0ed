"""The Sage 300 Web API client every Sage plugin uses: credentials, OData literals, errors, calls.

- Credentials (BRIEF decision 1): the user id is always uppercased and the password too unless
  ``keep_password_case`` is set, because older installs store it uppercase and a wrong case
  only shows as a bare 401.
- A 401 whose only challenges are Negotiate/NTLM comes from IIS, not Sage: Windows
  authentication is on for the Web API application. We say so, with the fix.
- Values put into ``$filter`` go through :func:`odata_literal`, so no input can change a query.
- Paging follows ``@odata.nextLink``, rebuilt on our own base URL (a reverse proxy may put its
  internal host in the link, reference §3.3).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from .httppolicy import HttpSession, RetryPolicy, request_with_retry

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


def explain_unauthorized(response: requests.Response, username: str) -> str:
    """A person-readable reason for a 401 from Sage 300 or from IIS in front of it."""
    challenges = " ".join(response.headers.get("WWW-Authenticate", "").split(",")).lower()
    if challenges and "basic" not in challenges and ("negotiate" in challenges
                                                     or "ntlm" in challenges):
        return IIS_WINDOWS_AUTH_HINT
    return (f"Sage 300 refused the credentials for user {username.upper()} (user id and, unless "
            "keep_password_case is set, password are sent UPPERCASED). Check the password, that "
            "the user exists in Sage 300 and may use the Web API.")


def raise_for_sage_status(response: requests.Response, username: str, what: str) -> None:
    """Raise a :class:`Sage300Error` with a reason a person can act on, for any 4xx/5xx."""
    if response.status_code < 400:
        return
    if response.status_code == 401:
        raise Sage300AuthError(explain_unauthorized(response, username), status=401,
                               code="Unauthorized")
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
        self.policy = policy or RetryPolicy()
        self.verify_tls = verify_tls
        self.session = session or HttpSession()
        self.session.auth = Sage300Auth(username, password, keep_password_case)

    def url(self, resource: str, key: Any = None) -> str:
        """``resource`` is ``MODULE/Resource``, e.g. ``AP/APVendors``."""
        suffix = entity_key(key) if key is not None else ""
        return f"{self.base_url}/{self.company}/{resource}{suffix}"

    def call(self, method: str, url: str, *, params: dict[str, Any] | None = None,
             json: Any = None, retry_on_timeout: bool = True) -> requests.Response:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
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
        """Every record matching the query, following ``@odata.nextLink``."""
        params: dict[str, Any] = {}
        if filter:
            params["$filter"] = filter
        if select:
            params["$select"] = ",".join(select)
        if top:
            params["$top"] = top
        url: str | None = self.url(resource)
        while url:
            response = self.call("GET", url, params=params)
            raise_for_sage_status(response, self.username, f"GET {resource}")
            body = response.json()
            yield from body.get("value", [])
            next_link = body.get("@odata.nextLink")
            url, params = (self._rebase(next_link), None) if next_link else (None, None)

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

    def _rebase(self, next_link: str) -> str:
        return rebase_url(next_link, self.base_url)


def rebase_url(link: str, base_url: str) -> str:
    """``link`` (e.g. an ``@odata.nextLink``) moved onto the scheme and host of ``base_url``:
    behind a reverse proxy Sage may put its internal host in the link (reference §3.3)."""
    parts = urlsplit(link)
    own = urlsplit(base_url)
    return parts._replace(scheme=own.scheme, netloc=own.netloc).geturl()

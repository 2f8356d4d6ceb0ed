"""The Basware API client every Basware plugin uses: OAuth2 tokens, request ids, paging, redirects.

- Tokens (BRIEF decision 3): client credentials in a Basic header, refreshed *before* expiry
  (a safety margin) and once more on a 401; one token per (base URL, client id) in a process,
  shared by all streams and sinks.
- ``X-BW-REQUEST-ID`` (BRIEF decision 2): a fresh UUID v4 on every logical call; retries of
  the same call reuse it, so Basware's logs and our ledger correlate.
- Lists: ``pageSize`` plus the ``x-amz-meta-continuationtoken`` header sent back as a request
  header; 404 is an empty page; 302 redirects (accountingDocuments) are followed *without*
  Authorization, as pre-signed S3 URLs require.
- Retries, timeouts and Retry-After come from :mod:`ml_connector_core.httppolicy`.
- Threads: one client may be called from several threads at once (tap-basware acknowledges
  and answers invoices concurrently). The token is fetched by one thread at a time, and every
  call goes through one `Throttle` per client: a 429 or 503 makes every thread wait (its
  Retry-After) with fewer requests in flight, and `max_in_flight` bounds them (0: no bound).
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests

from .httppolicy import HttpSession, RetryPolicy, Throttle, request_with_retry

# Basware publishes EU hosts; the other regions' hosts are not public (reference §1), so these
# are best guesses and a customer sets ``base_url`` from Basware's api_reference page instead.
REGION_BASE_URLS = {
    "eu": "https://api.basware.com",
    "us": "https://api.us.basware.com",
    "au": "https://api.au.basware.com",
    "ca": "https://api.ca.basware.com",
}
CONTINUATION_HEADER = "x-amz-meta-continuationtoken"
REQUEST_ID_HEADER = "X-BW-REQUEST-ID"
TOKEN_REFRESH_MARGIN = 60.0  # seconds before expiry at which a token is renewed
AUTH_ATTEMPTS = 4  # tokens per call: 2 for one thread, more only for a token shared by threads
PRESIGNED_ATTEMPTS = 3  # API calls for a fresh pre-signed URL when one is consumed or expired
_REDIRECTS = (301, 302, 303, 307)
DEFAULT_POOL_SIZE = 10  # requests' connections kept per host


class BaswareError(Exception):
    """A Basware call failed in a way the caller must see (not retried further)."""

    def __init__(self, message: str, status: int | None = None, body: Any = None,
                 request_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.request_id = request_id


class BaswareAuthError(BaswareError):
    """Credentials, scopes or tokens were refused: a setup problem, never retried."""


def resolve_base_url(region: str | None, base_url: str | None) -> str:
    if base_url:
        return base_url.rstrip("/")
    try:
        return REGION_BASE_URLS[(region or "eu").lower()]
    except KeyError:
        raise ValueError(f"unknown Basware region {region!r}; use one of "
                         f"{sorted(REGION_BASE_URLS)} or set base_url") from None


@dataclass
class Token:
    value: str
    expires_at: float  # time.monotonic() deadline
    scopes: frozenset[str]
    uses: int = 0  # calls it was handed to


class TokenProvider:
    """Client-credentials tokens for one client, shared process-wide and thread-safe."""

    _instances: dict[tuple[str, str, str], TokenProvider] = {}
    _instances_lock = threading.Lock()

    def __init__(self, base_url: str, client_id: str, client_secret: str, scopes: str,
                 session: requests.Session, policy: RetryPolicy, verify: bool = True) -> None:
        self.base_url = base_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.scopes = scopes
        self._session = session
        self._policy = policy
        self._verify = verify
        self._lock = threading.Lock()
        self._token: Token | None = None
        self.issued = 0  # how many tokens this process asked for (benchmarks print it)

    @classmethod
    def shared(cls, base_url: str, client_id: str, client_secret: str, scopes: str,
               session: requests.Session, policy: RetryPolicy, verify: bool = True
               ) -> TokenProvider:
        key = (base_url, client_id, scopes)
        with cls._instances_lock:
            provider = cls._instances.get(key)
            if provider is None:
                provider = cls(base_url, client_id, client_secret, scopes, session, policy, verify)
                cls._instances[key] = provider
            return provider

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._token.expires_at:
                self._token = self._fetch()
            self._token.uses += 1
            return self._token.value

    def shared_with_others(self, value: str) -> bool:
        """Whether the current token `value` went to more than one call: then a 401 to one
        of them may be the others' doing (a token's life spent by calls in other threads),
        not a sign that fresh tokens are refused."""
        with self._lock:
            return (self._token is not None and self._token.value == value
                    and self._token.uses > 1)

    @property
    def granted_scopes(self) -> frozenset[str]:
        self.token()
        assert self._token is not None
        return self._token.scopes

    def invalidate(self, value: str) -> None:
        """Forget ``value`` (refused by the API) unless another thread already replaced it."""
        with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    def _fetch(self) -> Token:
        url = f"{self.base_url}/v1/tokens"
        response = request_with_retry(
            self._session, "POST", url, policy=self._policy,
            auth=(self.client_id, self._client_secret),
            data={"grant_type": "client_credentials", "scope": self.scopes},
            headers={REQUEST_ID_HEADER: str(uuid.uuid4())}, verify=self._verify,
        )
        if response.status_code != 200:
            raise BaswareAuthError(
                f"Basware refused the client credentials for client id {self.client_id!r} at "
                f"{url} (HTTP {response.status_code}: {_short_body(response)}). Check client_id, "
                "client_secret and the region/base_url given by your Basware consultant.",
                status=response.status_code)
        body = response.json()
        lifetime = float(body.get("expires_in") or 3600)
        # Renew ahead of expiry, but never let the margin eat a short-lived token entirely.
        margin = min(TOKEN_REFRESH_MARGIN, lifetime / 10)
        self.issued += 1
        return Token(body["access_token"], time.monotonic() + lifetime - margin,
                     frozenset(str(body.get("scope", "")).split()))


class BaswareClient:
    """Calls the Basware P2P API for one tenant."""

    def __init__(self, *, client_id: str, client_secret: str, scopes: str,
                 region: str | None = None, base_url: str | None = None,
                 policy: RetryPolicy | None = None, verify_tls: bool = True,
                 session: requests.Session | None = None, max_in_flight: int = 0) -> None:
        """`max_in_flight`: most requests on the wire at once, over all threads (0: no
        bound); a policy that brings its own `throttle` keeps it."""
        self.base_url = resolve_base_url(region, base_url)
        policy = policy or RetryPolicy()
        if policy.throttle is None:
            policy = dataclasses.replace(policy, throttle=Throttle(max_in_flight))
        self.policy = policy
        self.session = session or HttpSession()
        # Pre-signed URLs reject any Authorization header: their own session, kept for the
        # run so each page does not open a new (TLS) connection to the storage host.
        self.presigned_session = HttpSession()
        if max_in_flight > DEFAULT_POOL_SIZE:  # one keep-alive connection per thread
            for pooled in (self.session, self.presigned_session):
                adapter = requests.adapters.HTTPAdapter(pool_maxsize=max_in_flight)
                pooled.mount("https://", adapter)
                pooled.mount("http://", adapter)
        self.verify_tls = verify_tls
        self.tokens = TokenProvider.shared(self.base_url, client_id, client_secret, scopes,
                                           self.session, self.policy, verify_tls)

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json: Any = None, headers: dict[str, str] | None = None,
                request_id: str | None = None, allow_redirects: bool = False,
                retry_on_timeout: bool = True) -> requests.Response:
        """One logical call: a fresh (or given) X-BW-REQUEST-ID, re-authenticated once on 401."""
        request_id = request_id or str(uuid.uuid4())
        for attempt in range(1, AUTH_ATTEMPTS + 1):
            token = self.tokens.token()
            call_headers = {"Authorization": f"Bearer {token}", REQUEST_ID_HEADER: request_id,
                            "Accept": "application/json", **(headers or {})}
            response = request_with_retry(
                self.session, method, self._url(path), policy=self.policy, params=params,
                json=json, headers=call_headers, allow_redirects=allow_redirects,
                retry_on_timeout=retry_on_timeout, verify=self.verify_tls,
            )
            if response.status_code != 401:
                break
            # A fresh token refused means the client lacks access, unless other threads'
            # calls shared it (and may have spent it): then one more, up to AUTH_ATTEMPTS.
            # One thread alone always fails at its second 401, as before.
            shared = self.tokens.shared_with_others(token)
            self.tokens.invalidate(token)  # expired early or revoked: a fresh token
            if attempt == AUTH_ATTEMPTS or (attempt >= 2 and not shared):
                raise BaswareAuthError(
                    f"Basware answered 401 to {method} {path} "
                    f"{'twice' if attempt == 2 else f'{attempt} times'}, with a fresh token. "
                    "The client may lack access to this tenant.", status=401,
                    request_id=request_id)
        if response.status_code == 403:
            raise BaswareAuthError(
                f"Basware refused {method} {path} (403): the token lacks a scope this call needs "
                f"({error_messages(response)}). Granted scopes: "
                f"{' '.join(sorted(self.tokens.granted_scopes))}.",
                status=403, body=_body(response), request_id=request_id)
        return response

    def get_pages(self, path: str, params: dict[str, Any], envelope: str
                  ) -> Iterator[list[dict[str, Any]]]:
        """Yield each page's records; follows redirects without Authorization; 404 = no records."""
        token: str | None = None
        while True:
            headers = {CONTINUATION_HEADER: token} if token else None
            response = self._get_following_redirect(path, params, headers)
            if response.status_code == 404:
                return
            _raise_for_status(response, f"GET {path}")
            body = response.json()
            # The spec wraps lists in an envelope; one real client saw a bare array (ref §4).
            records = body if isinstance(body, list) else body.get(envelope, [])
            if records:
                yield records
            token = response.headers.get(CONTINUATION_HEADER)
            if not token:
                return

    def get_redirected(self, path: str) -> requests.Response:
        """GET a path that Basware answers with a redirect to a pre-signed URL."""
        return self._get_following_redirect(path, None, None)

    def _get_following_redirect(self, path: str, params: dict[str, Any] | None,
                                headers: dict[str, str] | None) -> requests.Response:
        """One logical GET: the API call, then its pre-signed URL, under one request id.

        A 404 straight from the API means "no records". A 403/404 from the pre-signed URL
        does not: the URL is one-time and expires, so an attempt whose answer was lost (or a
        slow client) finds it consumed or expired. Then the API call is repeated for a fresh
        URL (continuation tokens stay valid), instead of reading the 404 as the end of data.
        """
        request_id = str(uuid.uuid4())
        for attempt in range(1, PRESIGNED_ATTEMPTS + 1):
            response = self.request("GET", path, params=params, headers=headers,
                                    request_id=request_id)
            if response.status_code not in _REDIRECTS:
                return response
            fetched = self._follow_presigned(response, request_id)
            if fetched.status_code not in (403, 404):
                return fetched
            if attempt == PRESIGNED_ATTEMPTS:
                raise BaswareError(
                    f"GET {path}: the pre-signed URL Basware redirected to answered HTTP "
                    f"{fetched.status_code} {attempt} times: {_short_body(fetched)}",
                    status=fetched.status_code, request_id=request_id)
        raise AssertionError("unreachable")

    def post(self, path: str, body: Any, *, request_id: str | None = None,
             retry_on_timeout: bool = True) -> requests.Response:
        return self.request("POST", path, json=body, request_id=request_id,
                            retry_on_timeout=retry_on_timeout)

    def _follow_presigned(self, response: requests.Response, request_id: str
                          ) -> requests.Response:
        location = urljoin(response.url, response.headers["Location"])
        # No Authorization (its own session), same policy. The request id goes along
        # (unsigned headers are ignored by S3) for correlation.
        return request_with_retry(self.presigned_session, "GET", location, policy=self.policy,
                                  headers={REQUEST_ID_HEADER: request_id},
                                  allow_redirects=False, verify=self.verify_tls)

    def _url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}{path}"


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]


def _short_body(response: requests.Response) -> str:
    return str(_body(response))[:300]


def error_messages(response: requests.Response) -> str:
    """Basware's own words from a ResponseEntityList, for a person to act on."""
    body = _body(response)
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return "; ".join(f"{e.get('externalCode') or ''}: {e.get('message')}".lstrip(": ")
                         for e in body["errors"])
    return str(body)[:500]


def _raise_for_status(response: requests.Response, what: str) -> None:
    if response.status_code >= 400:
        raise BaswareError(f"{what} failed with HTTP {response.status_code}: "
                           f"{error_messages(response)}", status=response.status_code,
                           body=_body(response))

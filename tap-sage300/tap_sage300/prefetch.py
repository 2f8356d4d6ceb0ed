"""The next page's request goes on the wire before the current page is processed.

Sage builds page N+1 while the tap shapes and writes page N, on the same thread: the request
is written to a keep-alive connection of the tap's own, and its response is read only when
page N is done (by then it waits in the socket buffer). A worker thread did the same before,
but it had to win the GIL from the busy main thread to send and again to receive, so the
pages mostly went one after the other; this way nothing waits for a thread switch.

Only the first try of a page travels this way. What it returns (or the error it meets,
translated to the ``requests`` exception that the send would have raised) goes through the
stream's usual checks and retry policy, and every retry is an ordinary ``requests`` send. A
host reached through a proxy or with a client certificate skips this path altogether.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import time
import zlib
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_encoding_from_headers
from urllib3.util.wait import wait_for_read

_DECOMPRESS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def tls_context(verify: bool | str) -> ssl.SSLContext:
    """The certificate check ``requests`` would make with ``verify`` (and the environment)."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    bundle = verify if isinstance(verify, str) else (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        or DEFAULT_CA_BUNDLE_PATH)
    if os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)


class PageConnection:
    """One keep-alive connection to Sage that holds at most one page request in flight."""

    def __init__(self, url: str, timeout: tuple[float, float],
                 context: Callable[[], ssl.SSLContext]) -> None:
        parts = urlsplit(url)
        self._scheme, self._host, self._port = parts.scheme, parts.hostname or "", parts.port
        self._connect_timeout, self._read_timeout = timeout
        self._context = context
        self._connection: http.client.HTTPConnection | None = None

    def serves(self, url: str) -> bool:
        parts = urlsplit(url)
        return (parts.scheme, parts.hostname, parts.port) == (self._scheme, self._host,
                                                              self._port)

    def send(self, request: requests.PreparedRequest) -> PageRequest:
        """Write the request now; the answer is read by :meth:`PageRequest.response`."""
        started = time.perf_counter()
        try:
            connection = self._open()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return PageRequest(self, request, started,
                               error=as_requests_error(exc, request, connecting=True))
        try:
            connection.putrequest(request.method or "GET", request.path_url,
                                  skip_host=False, skip_accept_encoding=True)
            for name, value in request.headers.items():
                connection.putheader(name, value)
            connection.endheaders()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return PageRequest(self, request, started, error=as_requests_error(exc, request))
        return PageRequest(self, request, started)

    def _open(self) -> http.client.HTTPConnection:
        if self._connection is not None and wait_for_read(self._connection.sock, timeout=0):
            self.close()  # readable while idle: the server closed it (keep-alive timeout)
        if self._connection is None:
            if self._scheme == "https":
                self._connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._connect_timeout,
                    context=self._context())
            else:
                self._connection = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._connect_timeout)
            self._connection.connect()
            # Nagle would hold the request's last segment for the delayed ACK (~40 ms).
            self._connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connection.sock.settimeout(self._read_timeout)
        return self._connection

    def receive(self, request: requests.PreparedRequest, started: float) -> requests.Response:
        if self._connection is None:
            raise requests.exceptions.ConnectionError("the connection was closed")
        try:
            raw = self._connection.getresponse()
            body = raw.read()
        except BaseException:
            self.close()
            raise
        if raw.will_close:
            self.close()
        response = requests.Response()
        response.status_code = raw.status
        response.reason = raw.reason
        response.headers = CaseInsensitiveDict(raw.getheaders())
        encoding = response.headers.get("Content-Encoding", "").lower()
        if encoding in _DECOMPRESS and body:
            try:
                body = zlib.decompress(body, _DECOMPRESS[encoding])
            except zlib.error as exc:
                raise requests.exceptions.ContentDecodingError(
                    f"{encoding} body could not be decoded: {exc}") from exc
        response._content = body
        response.encoding = get_encoding_from_headers(response.headers)
        response.url = request.url or ""
        response.request = request
        response.elapsed = timedelta(seconds=time.perf_counter() - started)
        return response

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def as_requests_error(exc: BaseException, request: requests.PreparedRequest, *,
                      connecting: bool = False) -> requests.exceptions.RequestException:
    """The exception ``requests`` raises for the same failure, so the SDK's retry decorator
    and the tap's TLS check treat both paths alike."""
    if isinstance(exc, ssl.SSLError):
        return requests.exceptions.SSLError(exc, request=request)
    if isinstance(exc, TimeoutError):
        timeout = requests.exceptions.ConnectTimeout if connecting \
            else requests.exceptions.ReadTimeout
        return timeout(exc, request=request)
    return requests.exceptions.ConnectionError(exc, request=request)


class PageRequest:
    """A page request on the wire; :meth:`response` reads its answer (once)."""

    def __init__(self, connection: PageConnection, request: requests.PreparedRequest,
                 started: float,
                 error: requests.exceptions.RequestException | None = None) -> None:
        self.request = request
        self._connection = connection
        self._started = started
        self._error = error

    def response(self) -> requests.Response:
        """The answer, or the ``requests`` exception a plain send would have raised."""
        if self._error is not None:
            raise self._error
        try:
            return self._connection.receive(self.request, self._started)
        except requests.exceptions.RequestException:
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise as_requests_error(exc, self.request) from exc

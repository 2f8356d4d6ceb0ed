"""The one HTTP retry policy of every plugin (BRIEF decision 4).

429 and 5xx back off exponentially with full jitter, `Retry-After` is honoured when the server
sends it, and the whole retry loop is bounded by `max_tries` and `max_elapsed`, after which a
RetryExhausted error says what was tried and how long it took. A policy carrying a `Throttle`
(every BaswareClient's) shares its backoff among all threads calling the system: a 429 or 503
makes every one of them wait, with fewer requests in flight, not only the refused request.

Two ways to use it:
- `request_with_retry(session, "POST", url, policy=POLICY, json=...)` for hand-written calls
  (targets, token requests);
- in a Singer SDK `RESTStream`, retries stay in the SDK's backoff decorator and take their
  waits from this policy::

      def backoff_wait_generator(self):
          return sdk_wait_generator(POLICY)

      def backoff_max_tries(self):
          return POLICY.max_tries

      def backoff_jitter(self, value):
          return value  # the policy already jitters; the SDK default would add up to 1 s

      @property
      def timeout(self):
          return POLICY.timeout
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from requests.utils import resolve_proxies
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from ml_connector_core.redaction import MASK, SECRET_KEY

logger = logging.getLogger(__name__)

RETRY_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})
#: "Slow down" answers: with a Throttle, every thread calling the system waits, not one.
THROTTLE_STATUSES: frozenset[int] = frozenset({429, 503})
#: Defaults shared by RetryPolicy and SDK streams (`backoff_max_tries()`).
DEFAULT_MAX_TRIES = 6
DEFAULT_MAX_ELAPSED = 300.0

OnRetry = Callable[[int, float, "requests.Response | BaseException"], None]


class HttpSession(requests.Session):
    """A requests Session that works out the environment's settings (proxies, no_proxy, CA
    bundle) once per host, not on every request: requests scans os.environ three times per
    call, 0.5 to 1 ms (14 % of tap-basware's time acknowledging invoices one by one, ~1 ms a
    page in tap-sage300). The environment of a plugin process does not change while it runs.

    Both ways in are covered: `request()` (the core clients) merges the environment in
    `merge_environment_settings`, and `send()` of a prepared request (the SDK's REST streams)
    resolves the proxies itself.
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._proxies: dict[tuple[str, str], dict[str, str]] = {}

    def proxies_for(self, url: str) -> dict[str, str]:
        """The proxies a request to `url` goes through (empty: none)."""
        parts = urlsplit(url)
        host = (parts.scheme, parts.netloc)
        proxies = self._proxies.get(host)
        if proxies is None:
            proxies = self._proxies[host] = resolve_proxies(
                requests.Request("GET", url), self.proxies, self.trust_env)
        return proxies

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if "proxies" not in kwargs and request.url:
            kwargs["proxies"] = dict(self.proxies_for(request.url))
        return super().send(request, **kwargs)

    def merge_environment_settings(self, url: str | None, proxies: Any, stream: Any,
                                   verify: Any, cert: Any) -> dict[str, Any]:
        parts = urlsplit(url or "")
        key = (parts.scheme, parts.netloc, tuple(sorted((proxies or {}).items())), stream,
               verify, cert, self.trust_env, tuple(sorted(self.proxies.items())))
        settings = self._environment.get(key)
        if settings is None:
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            self._environment[key] = settings
        return {**settings, "proxies": dict(settings["proxies"])}  # callers may change it


@dataclass
class RetryStats:
    """Counters for benchmarks and run summaries; shared by all threads using one policy.

    `attempts` counts requests sent by `request_with_retry`; retries, give-ups and waits are
    also counted for SDK streams using `sdk_wait_generator`.
    """

    attempts: int = 0
    retries: int = 0
    gave_up: int = 0
    waited_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, attempts: int = 0, retries: int = 0, gave_up: int = 0,
            waited: float = 0.0) -> None:
        with self._lock:
            self.attempts += attempts
            self.retries += retries
            self.gave_up += gave_up
            self.waited_seconds += waited


class Throttle:
    """What every thread calling one system shares: a "not before" time and a bound on the
    requests in flight, so that a 429 or 503 slows the whole client down, not one request.

    - A throttling answer (429/503) moves the shared "not before" to the end of its wait
      (Retry-After when the server sends one): every attempt of every thread, retries and new
      calls alike, starts after it.
    - `max_in_flight` (0: unbounded) bounds the attempts on the wire at once. A throttling
      answer halves the current bound (at least 1); it grows back by one after as many
      successful answers as the bound is wide (additive increase), up to `max_in_flight`.

    - The retry budget for throttling is the system's, not one request's: `streak` counts
      throttling answers in a row over all threads, and once it reaches the policy's
      `max_tries` the request that heard the last one gives up (as one request hearing
      `max_tries` 503s in a row does), so an outage still fails the run however many threads
      share it. Any other answer to an attempt that started after the latest throttling
      answer, and a request that ends without one, resets it (an answer to an attempt sent
      before the outage says nothing about the outage).

    One thread using it sees no difference: its own retry sleeps past the "not before", and
    the streak never exceeds its own attempts.
    """

    def __init__(self, max_in_flight: int = 0) -> None:
        if max_in_flight < 0:
            raise ValueError("max_in_flight must be 0 (unbounded) or more")
        self.max_in_flight = max_in_flight
        self._cond = threading.Condition()
        self._not_before = 0.0  # time.monotonic()
        self._limit = max_in_flight
        self._in_flight = 0
        self._successes = 0
        self.streak = 0  # throttling answers in a row, over all threads
        self.generation = 0  # throttling answers so far: which attempts started after which
        #: Counters for tests and benchmarks: throttling answers heard, the most attempts on
        #: the wire at once, and seconds threads spent waiting for the "not before".
        self.throttled = 0
        self.peak_in_flight = 0
        self.waited_seconds = 0.0

    @property
    def limit(self) -> int:
        """The current bound on attempts in flight (0: unbounded)."""
        return self._limit

    @contextmanager
    def slot(self) -> Iterator[int]:
        """Hold one of the attempts in flight: waits for the "not before" and a free slot.
        Yields the generation the attempt started in (for :meth:`succeeded`)."""
        with self._cond:
            while True:
                delay = self._not_before - time.monotonic()
                if delay > 0:
                    self.waited_seconds += delay
                    self._cond.wait(delay)
                    continue
                if self._limit and self._in_flight >= self._limit:
                    self._cond.wait()
                    continue
                break
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            generation = self.generation
        try:
            yield generation
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def slow_down(self, seconds: float) -> None:
        """A throttling answer: nobody sends before `seconds` from now; fewer in flight."""
        with self._cond:
            self.throttled += 1
            self.streak += 1
            self.generation += 1
            self._not_before = max(self._not_before, time.monotonic() + seconds)
            if self.max_in_flight:
                self._limit = max(1, self._limit // 2)
            self._successes = 0
            self._cond.notify_all()

    def ended(self) -> None:
        """A request ended without an answer of its own to judge (gave up, or its outcome is
        unknown): the next one starts a new streak."""
        self.streak = 0

    def succeeded(self, generation: int | None = None) -> None:
        """An answer that was not a throttling one: the bound grows back, one at a time.
        `generation`: the attempt's (:meth:`slot`); an attempt sent before the latest
        throttling answer does not end the streak."""
        if generation is None or generation == self.generation:
            self.streak = 0
        if self._limit >= self.max_in_flight:
            return  # unbounded, or back at the setting: nothing to do (no lock needed)
        with self._cond:
            self._successes += 1
            if self._successes >= self._limit and self._limit < self.max_in_flight:
                self._limit += 1
                self._successes = 0
                self._cond.notify_all()


@dataclass(frozen=True)
class RetryPolicy:
    """Timeouts and retry bounds. Immutable, so one instance can serve every stream and thread.

    `dataclasses.replace(policy, ...)` keeps the same `stats` object, so a variant policy still
    counts into the run's totals. Pass `rng=random.Random(seed)` for deterministic jitter.
    """

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_tries: int = DEFAULT_MAX_TRIES
    max_elapsed: float = DEFAULT_MAX_ELAPSED
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0
    retry_statuses: frozenset[int] = RETRY_STATUSES
    rng: random.Random | None = None
    stats: RetryStats = field(default_factory=RetryStats, compare=False)
    #: Shared by every thread calling one system (BaswareClient makes one per client); None:
    #: each request backs off on its own, as before.
    throttle: Throttle | None = field(default=None, compare=False)

    @property
    def timeout(self) -> tuple[float, float]:
        """The `(connect, read)` timeout tuple for requests."""
        return (self.connect_timeout, self.read_timeout)

    def wait_seconds(self, attempt: int, response: requests.Response | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based).

        A `Retry-After` header wins and is not capped by `max_delay`: retrying earlier than the
        server asked only earns another 429. (If it exceeds the remaining time budget, the
        caller gives up instead of waiting.) Otherwise: full jitter over an exponential ceiling,
        `uniform(0, min(max_delay, base_delay * factor ** (attempt - 1)))`.
        """
        asked = retry_after_seconds(response) if response is not None else None
        if asked is not None:
            return asked
        ceiling = min(self.max_delay, self.base_delay * self.factor ** (attempt - 1))
        return (self.rng or random).uniform(0, ceiling)


def retry_after_seconds(response: requests.Response) -> float | None:
    """The response's Retry-After in seconds (delta-seconds or HTTP-date), None if absent/bad."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT by definition
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class RetryExhausted(Exception):
    """A transient failure persisted beyond the policy's bounds (tries or elapsed time)."""

    def __init__(self, method: str, url: str, attempts: int, elapsed: float,
                 last: requests.Response | BaseException, reason: str) -> None:
        self.method = method
        self.url = safe_url(url)
        self.attempts = attempts
        self.elapsed = elapsed
        self.response = last if isinstance(last, requests.Response) else None
        self.status = self.response.status_code if self.response is not None else None
        super().__init__(
            f"{method} {self.url} failed after {attempts} attempt(s) in {elapsed:.1f}s "
            f"({reason}); last: {describe(last)}"
        )


class UnknownOutcome(Exception):
    """A request may have been processed but we cannot tell (see `retry_on_timeout`).

    The caller must find out whether the write happened (e.g. look the record up by its
    external key) before trying again. `response` is set when a 5xx answer caused it.
    """

    def __init__(self, method: str, url: str, attempts: int,
                 last: requests.Response | BaseException) -> None:
        self.method = method
        self.url = safe_url(url)
        self.attempts = attempts
        self.response = last if isinstance(last, requests.Response) else None
        super().__init__(
            f"{method} {self.url}: outcome unknown after attempt {attempts} ({describe(last)}); "
            "check whether the write happened before retrying"
        )


def safe_url(url: str) -> str:
    """The URL without user:password and with secret-looking query values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = urlencode(
        [(k, MASK if SECRET_KEY.search(k) else v) for k, v in parse_qsl(parts.query, True)],
        safe="$*,:'()",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


_QUERY_IN_TEXT = re.compile(r"\?[^\s'\")]*")


def describe(outcome: requests.Response | BaseException) -> str:
    """Short text for a response or exception; exception texts lose their query strings
    (requests puts the full URL in connection errors)."""
    if isinstance(outcome, requests.Response):
        return f"HTTP {outcome.status_code} {outcome.reason or ''}".rstrip()
    return f"{type(outcome).__name__}: {_QUERY_IN_TEXT.sub('?…', str(outcome))}"


def _never_sent(exc: BaseException) -> bool:
    """True when the request surely did not reach the server (connect failed), so even a
    non-idempotent write can be retried."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if isinstance(exc, requests.ConnectionError) and exc.args else None
    # urllib3's NewConnectionError (refused, DNS) subclasses ConnectTimeoutError.
    return isinstance(reason, MaxRetryError) and isinstance(reason.reason, ConnectTimeoutError)


# Answers after which the server may have done the work (a gateway timed out, the app crashed
# mid-write); 429 and 503 mean "not processed, come back later".
_MAYBE_PROCESSED = frozenset({500, 502, 504})
_TRANSIENT = (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError)


def request_with_retry(
    session: requests.Session,
    method: str,
    url: str,
    *,
    policy: RetryPolicy,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    data: Any = None,
    params: Mapping[str, Any] | None = None,
    on_retry: OnRetry | None = None,
    allow_redirects: bool = True,
    retry_on_timeout: bool = True,
    **kwargs: Any,
) -> requests.Response:
    """Send a request, retrying transient failures under `policy`.

    Retried: statuses in `policy.retry_statuses`, timeouts, connection errors and broken
    chunked bodies. Every other response, 4xx included, is returned for the caller to judge.
    The same headers go out on every attempt, so a retried write keeps its X-BW-REQUEST-ID.

    `retry_on_timeout=False` is for writes that must not be repeated blindly (Sage 300 has no
    idempotency key). When the request may have been processed (read timeout, connection
    dropped after sending, broken body, or a 500/502/504 answer), UnknownOutcome is raised
    instead of retrying. Connect failures, 429 and 503 are still retried: nothing was done.

    `on_retry(attempt, wait_seconds, response_or_exception)` is called before each wait.

    Raises RetryExhausted after `policy.max_tries` attempts, or as soon as the next wait would
    end beyond `policy.max_elapsed` seconds since the first attempt. Total time is therefore at
    most `max_elapsed` plus one request's timeouts. SSL errors are not retried.
    """
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        policy.stats.add(attempts=1)
        try:
            if policy.throttle is None:
                response = session.request(
                    method, url, headers=headers, json=json, data=data, params=params,
                    timeout=policy.timeout, allow_redirects=allow_redirects, **kwargs,
                )
            else:
                with policy.throttle.slot() as generation:
                    response = session.request(
                        method, url, headers=headers, json=json, data=data, params=params,
                        timeout=policy.timeout, allow_redirects=allow_redirects, **kwargs,
                    )
        except requests.exceptions.SSLError:
            raise  # a certificate problem does not heal by retrying (and is a ConnectionError)
        except _TRANSIENT as exc:
            if not retry_on_timeout and not _never_sent(exc):
                if policy.throttle is not None:
                    policy.throttle.ended()
                raise UnknownOutcome(method, url, attempt, exc) from exc
            outcome: requests.Response | BaseException = exc
        else:
            if policy.throttle is not None and response.status_code not in THROTTLE_STATUSES:
                policy.throttle.succeeded(generation)
            if response.status_code not in policy.retry_statuses:
                return response
            if not retry_on_timeout and response.status_code in _MAYBE_PROCESSED:
                raise UnknownOutcome(method, url, attempt, response)
            outcome = response

        elapsed = time.monotonic() - start
        response_or_none = outcome if isinstance(outcome, requests.Response) else None
        wait = policy.wait_seconds(attempt, response_or_none)
        streak = 0
        if (policy.throttle is not None and response_or_none is not None
                and response_or_none.status_code in THROTTLE_STATUSES):
            # Every thread waits as long as this one (Retry-After when given), and fewer go
            # out at once until answers come back without throttling.
            policy.throttle.slow_down(wait)
            streak = policy.throttle.streak
        if attempt >= policy.max_tries:
            reason = f"max_tries={policy.max_tries}"
        elif streak >= policy.max_tries:
            reason = (f"{streak} throttling answers in a row to this client's threads, "
                      f"max_tries={policy.max_tries}")
        elif elapsed + wait > policy.max_elapsed:
            reason = f"next wait {wait:.1f}s would pass max_elapsed={policy.max_elapsed:g}s"
        else:
            reason = ""
        if reason:
            policy.stats.add(gave_up=1)
            if policy.throttle is not None:
                policy.throttle.ended()
            error = RetryExhausted(method, url, attempt, elapsed, outcome, reason)
            if isinstance(outcome, BaseException):
                raise error from outcome
            raise error

        policy.stats.add(retries=1, waited=wait)
        logger.warning(
            "%s %s: %s, retry %d/%d in %.1fs",
            method, safe_url(url), describe(outcome), attempt, policy.max_tries - 1, wait,
        )
        if on_retry is not None:
            on_retry(attempt, wait, outcome)
        if response_or_none is not None:
            response_or_none.close()  # give the connection back to the pool before sleeping
        time.sleep(wait)


def sdk_wait_generator(policy: RetryPolicy) -> Generator[float, BaseException | None, None]:
    """A wait generator for a Singer SDK stream's `backoff_wait_generator()`.

    The SDK's backoff decorator sends each exception into the generator; the wait honours the
    Retry-After of `exception.response` (RetriableAPIError carries the response) and otherwise
    follows the policy's jittered exponential. The generator stops (backoff then re-raises the
    error) once the next wait would pass `policy.max_elapsed`. No singer-sdk import needed.

    With the policy's `throttle` (one per system, shared by the stream's threads), a 429 or
    503 makes every thread wait as long, as in `request_with_retry`, and once the throttling
    answers in a row over all threads reach `max_tries` the request that heard the last one
    gives up: an outage fails the run after `max_tries` answers, not `max_tries` per thread.
    """
    start = time.monotonic()
    attempt = 0
    throttle = policy.throttle
    exception = yield 0.0  # backoff primes the generator with send(None); value unused
    while True:
        attempt += 1
        response = getattr(exception, "response", None)
        if not isinstance(response, requests.Response):
            response = None
        wait = policy.wait_seconds(attempt, response)
        if time.monotonic() - start + wait > policy.max_elapsed:
            policy.stats.add(gave_up=1)
            return
        if throttle is not None and response is not None \
                and response.status_code in THROTTLE_STATUSES:
            throttle.slow_down(wait)
            if throttle.streak >= policy.max_tries:
                policy.stats.add(gave_up=1)
                return
        policy.stats.add(retries=1, waited=wait)
        exception = yield wait

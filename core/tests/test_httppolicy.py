"""The retry policy against a real HTTP server on loopback."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from mlc_core_server import Server, drop, respond, stall

from ml_connector_core.httppolicy import (
    HttpSession,
    RetryExhausted,
    RetryPolicy,
    Throttle,
    UnknownOutcome,
    request_with_retry,
    retry_after_seconds,
    safe_url,
    sdk_wait_generator,
)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


def fast(**overrides: object) -> RetryPolicy:
    """A policy with short waits and timeouts so the tests run in seconds."""
    settings: dict[str, object] = dict(connect_timeout=1.0, read_timeout=1.0, max_tries=4,
                                       max_elapsed=10.0, base_delay=0.05, max_delay=0.2,
                                       rng=random.Random(1))
    settings.update(overrides)
    return RetryPolicy(**settings)  # type: ignore[arg-type]


def test_429_honours_retry_after(server: Server) -> None:
    url = server.script("/vendors", respond(429, {"Retry-After": "1"}), respond(200, body=[]))
    policy = fast()
    calls: list[tuple[int, float, object]] = []
    start = time.monotonic()
    response = request_with_retry(requests.Session(), "GET", url, policy=policy,
                                  on_retry=lambda *args: calls.append(args))
    elapsed = time.monotonic() - start
    assert response.status_code == 200
    assert elapsed >= 1.0  # the server's 1 s, not the policy's 0.05 s
    assert [(attempt, wait) for attempt, wait, _ in calls] == [(1, 1.0)]
    assert calls[0][2].status_code == 429
    assert (policy.stats.attempts, policy.stats.retries, policy.stats.gave_up) == (2, 1, 0)


def test_503_then_200(server: Server) -> None:
    url = server.script("/po", respond(503), respond(503), respond(200, body={"ok": True}))
    policy = fast()
    response = request_with_retry(requests.Session(), "GET", url, policy=policy)
    assert response.json() == {"ok": True}
    assert server.hits("/po") == 3
    assert (policy.stats.attempts, policy.stats.retries) == (3, 2)
    assert 0 < policy.stats.waited_seconds <= 0.05 + 0.1


def test_gives_up_after_max_tries_with_a_clear_message(server: Server) -> None:
    url = server.script("/down", respond(503))
    policy = fast(max_tries=3)
    start = time.monotonic()
    with pytest.raises(RetryExhausted) as caught:
        request_with_retry(requests.Session(), "GET", url + "?api_key=K3y-s3cret&$top=5",
                           policy=policy)
    elapsed = time.monotonic() - start
    error = caught.value
    assert server.hits("/down") == 3
    assert (error.attempts, error.status) == (3, 503)
    message = str(error)
    assert message.startswith(f"GET {server.url}/down?api_key=***&$top=5 failed after 3 attempt")
    assert "max_tries=3" in message and "HTTP 503" in message
    assert "K3y-s3cret" not in message
    assert elapsed < 2 * 0.2 + 1  # two capped waits plus request time
    assert policy.stats.gave_up == 1


def test_retry_after_beyond_the_budget_gives_up_at_once(server: Server) -> None:
    url = server.script("/slow-down", respond(429, {"Retry-After": "30"}))
    start = time.monotonic()
    with pytest.raises(RetryExhausted, match="would pass max_elapsed=5s"):
        request_with_retry(requests.Session(), "GET", url, policy=fast(max_elapsed=5))
    assert time.monotonic() - start < 1
    assert server.hits("/slow-down") == 1


def test_stall_past_read_timeout_is_retried_then_bounded(server: Server) -> None:
    url = server.script("/stall", stall(3))
    policy = fast(read_timeout=0.3, max_tries=3)
    start = time.monotonic()
    with pytest.raises(RetryExhausted) as caught:
        request_with_retry(requests.Session(), "GET", url, policy=policy)
    elapsed = time.monotonic() - start
    assert isinstance(caught.value.__cause__, requests.ReadTimeout)
    assert "ReadTimeout" in str(caught.value)
    assert server.hits("/stall") == 3
    assert 0.9 <= elapsed < 0.9 + 2 * 0.2 + 1


def test_max_elapsed_bounds_the_total_time(server: Server) -> None:
    url = server.script("/stall", stall(3))
    policy = fast(read_timeout=0.3, max_tries=100, max_elapsed=1.0)
    start = time.monotonic()
    with pytest.raises(RetryExhausted, match="max_elapsed"):
        request_with_retry(requests.Session(), "GET", url, policy=policy)
    elapsed = time.monotonic() - start
    assert elapsed < 1.0 + 0.3 + 0.5  # budget + one read timeout + slack
    assert 2 <= server.hits("/stall") < 100


def test_timeout_on_a_write_is_an_unknown_outcome(server: Server) -> None:
    url = server.script("/invoices", stall(3))
    with pytest.raises(UnknownOutcome, match="outcome unknown after attempt 1"):
        request_with_retry(requests.Session(), "POST", url, policy=fast(read_timeout=0.3),
                           json={"a": 1}, retry_on_timeout=False)
    assert server.hits("/invoices") == 1


def test_dropped_connection_is_retried(server: Server) -> None:
    url = server.script("/drop", drop, respond(200))
    policy = fast()
    assert request_with_retry(requests.Session(), "GET", url, policy=policy).status_code == 200
    assert server.hits("/drop") == 2 and policy.stats.retries == 1


def test_dropped_connection_on_a_write_is_an_unknown_outcome(server: Server) -> None:
    url = server.script("/drop", drop, respond(200))
    with pytest.raises(UnknownOutcome) as caught:
        request_with_retry(requests.Session(), "POST", url, policy=fast(), json={},
                           retry_on_timeout=False)
    assert isinstance(caught.value.__cause__, requests.ConnectionError)
    assert server.hits("/drop") == 1


def test_5xx_on_a_write_is_unknown_but_429_503_are_retried(server: Server) -> None:
    url = server.script("/w500", respond(500), respond(201))
    with pytest.raises(UnknownOutcome) as caught:
        request_with_retry(requests.Session(), "POST", url, policy=fast(), json={},
                           retry_on_timeout=False)
    assert caught.value.response.status_code == 500
    url = server.script("/w503", respond(503), respond(429), respond(201))
    response = request_with_retry(requests.Session(), "POST", url, policy=fast(), json={},
                                  retry_on_timeout=False)
    assert response.status_code == 201 and server.hits("/w503") == 3


def test_connect_failure_is_retried_even_for_writes() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RetryExhausted) as caught:
        request_with_retry(requests.Session(), "POST", f"http://127.0.0.1:{port}/x",
                           policy=fast(max_tries=2), json={}, retry_on_timeout=False)
    assert caught.value.attempts == 2
    assert isinstance(caught.value.__cause__, requests.ConnectionError)


def test_other_statuses_are_returned_untouched(server: Server) -> None:
    url = server.script("/bad", respond(400, body={"error": "bad vendor"}))
    policy = fast()
    response = request_with_retry(requests.Session(), "POST", url, policy=policy, json={})
    assert response.status_code == 400 and response.json() == {"error": "bad vendor"}
    assert server.hits("/bad") == 1 and policy.stats.retries == 0


def test_a_retry_resends_the_same_request_id(server: Server) -> None:
    url = server.script("/vendors", respond(503), respond(200))
    request_with_retry(requests.Session(), "POST", url, policy=fast(), json=[{"a": 1}],
                       headers={"X-BW-REQUEST-ID": "6f1c1a53-0d39-4c2e-9a43-2a4b3f0c9e11"})
    ids = [headers["X-BW-REQUEST-ID"] for _, _, headers in server.requests]
    assert ids == ["6f1c1a53-0d39-4c2e-9a43-2a4b3f0c9e11"] * 2


def test_backoff_is_jittered_exponential_and_deterministic_with_a_seed() -> None:
    policy = RetryPolicy(base_delay=1, factor=2, max_delay=5, rng=random.Random(42))
    same = RetryPolicy(base_delay=1, factor=2, max_delay=5, rng=random.Random(42))
    waits = [policy.wait_seconds(attempt) for attempt in range(1, 9)]
    assert waits == [same.wait_seconds(attempt) for attempt in range(1, 9)]
    for attempt, wait in enumerate(waits, start=1):
        assert 0 <= wait <= min(5, 2 ** (attempt - 1))
    assert len(set(waits)) == len(waits)  # jittered, not a fixed ladder


def _response(retry_after: str | None) -> requests.Response:
    response = requests.Response()
    response.status_code = 429
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return response


def test_retry_after_forms() -> None:
    assert retry_after_seconds(_response("7")) == 7.0
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 27 <= retry_after_seconds(_response(future)) <= 30
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after_seconds(_response(past)) == 0.0
    assert retry_after_seconds(_response("soon")) is None
    assert retry_after_seconds(_response(None)) is None
    # The server's wish wins over max_delay; a bad header falls back to the jittered ladder.
    policy = RetryPolicy(max_delay=2, rng=random.Random(3))
    assert policy.wait_seconds(1, _response("120")) == 120.0
    assert policy.wait_seconds(1, _response("soon")) <= 1


def test_safe_url() -> None:
    assert safe_url("https://u:pw@sage.example/api/v1.0/-/SAMINC/AP/APVendors"
                    "?$filter=DateLastMaintained ge 2024-01-01&access_token=abc#frag") == (
        "https://sage.example/api/v1.0/-/SAMINC/AP/APVendors"
        "?$filter=DateLastMaintained+ge+2024-01-01&access_token=***"
    )


def test_sdk_stream_honours_retry_after(server: Server) -> None:
    sdk = pytest.importorskip("singer_sdk")
    from singer_sdk import typing as th
    from singer_sdk.exceptions import RetriableAPIError
    from singer_sdk.streams import RESTStream

    policy = fast(max_tries=4, max_elapsed=5)

    class Items(RESTStream):
        name = "items"
        path = "/items"
        records_jsonpath = "$.items[*]"
        schema = th.PropertiesList(th.Property("id", th.IntegerType)).to_dict()

        @property
        def url_base(self) -> str:
            return self.config["url"]

        def backoff_wait_generator(self):  # the documented wiring (module docstring)
            return sdk_wait_generator(policy)

        def backoff_max_tries(self) -> int:
            return policy.max_tries

        def backoff_jitter(self, value: float) -> float:
            return value

    class Tap(sdk.Tap):
        name = "tap-retry-test"
        config_jsonschema = th.PropertiesList(th.Property("url", th.StringType)).to_dict()

        def discover_streams(self) -> list[RESTStream]:
            return [Items(self)]

    server.script("/items", respond(429, {"Retry-After": "1"}),
                  respond(200, body={"items": [{"id": 1}, {"id": 2}]}))
    stream = Tap(config={"url": server.url}).streams["items"]
    start = time.monotonic()
    assert [r["id"] for r in stream.get_records(None)] == [1, 2]
    assert time.monotonic() - start >= 1.0
    assert policy.stats.retries == 1

    # A Retry-After beyond the budget: the generator stops and backoff re-raises at once.
    server.script("/items", respond(429, {"Retry-After": "60"}))
    start = time.monotonic()
    with pytest.raises(RetriableAPIError):
        list(stream.get_records(None))
    assert time.monotonic() - start < 1
    assert policy.stats.gave_up == 1


def test_http_session_reads_the_proxy_environment_once_per_host_and_honours_it(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = Server()
    try:
        url = server.script("/vendors", respond(200, body=["direct"]))
        proxy.script(url, respond(200, body=["via the proxy"]))  # a proxy sees the whole URL
        for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy",
                     "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        scans = []
        scan = requests.sessions.get_environ_proxies
        monkeypatch.setattr(requests.sessions, "get_environ_proxies",
                            lambda *a, **k: scans.append(a) or scan(*a, **k))

        session = HttpSession()
        answers = [request_with_retry(session, "GET", url, policy=fast()).json()
                   for _ in range(3)]

        assert answers == [["via the proxy"]] * 3
        assert proxy.hits(url) == 3 and server.hits("/vendors") == 0
        assert len(scans) == 1  # once for the host, not per request

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = request_with_retry(HttpSession(), "GET", url, policy=fast())
        assert direct.json() == ["direct"] and server.hits("/vendors") == 1
    finally:
        proxy.close()


def test_a_throttle_bounds_the_requests_in_flight_over_all_threads(server: Server) -> None:
    url = server.script("/ack", stall(0.2))
    policy = fast(throttle=Throttle(max_in_flight=2))
    session = requests.Session()
    threads = [threading.Thread(target=request_with_retry, args=(session, "POST", url),
                                kwargs={"policy": policy}) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.hits("/ack") == 6
    assert policy.throttle is not None and policy.throttle.peak_in_flight == 2


def test_a_429_makes_every_thread_wait_and_halves_the_requests_in_flight(
        server: Server) -> None:
    # The first request hears 429 + Retry-After 1; the others, sent after it, all wait.
    url = server.script("/ack", respond(429, {"Retry-After": "1"}), respond(200))
    throttle = Throttle(max_in_flight=4)
    policy = fast(throttle=throttle)
    session = requests.Session()
    assert request_with_retry(session, "POST", url, policy=policy).status_code == 200
    assert throttle.throttled == 1 and throttle.limit == 2  # halved, grows back
    # The throttled request's retry waited 1 s; anything sent now passes at once. Then a
    # second 429 while others are about to go: every one of them waits the Retry-After.
    server.script("/ack", respond(429, {"Retry-After": "1"}), respond(200))
    throttle.slow_down(1.0)
    sent: list[float] = []
    start = time.monotonic()

    def call() -> None:
        request_with_retry(session, "POST", url, policy=policy)
        sent.append(time.monotonic() - start)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert min(sent) >= 1.0  # nobody went before the shared "not before"
    assert throttle.waited_seconds > 0


def test_the_bound_grows_back_one_at_a_time_after_answers_without_throttling() -> None:
    throttle = Throttle(max_in_flight=8)
    throttle.slow_down(0)
    throttle.slow_down(0)
    assert throttle.limit == 2
    for _ in range(2):
        throttle.succeeded()
    assert throttle.limit == 3
    for _ in range(3 + 4 + 5 + 6 + 7):
        throttle.succeeded()
    assert throttle.limit == 8
    unbounded = Throttle()
    unbounded.slow_down(0)
    assert unbounded.limit == 0  # 0: no bound, before and after


def test_throttling_answers_in_a_row_over_all_threads_fail_as_one_requests_would(
        server: Server) -> None:
    # An outage of max_tries 503s spread over three threads: no single request hears them
    # all, yet the client gives up as one request hearing them in a row would.
    url = server.script("/ack", *[respond(503, {"Retry-After": "1"})] * 3, respond(200))
    policy = fast(max_tries=3, throttle=Throttle(max_in_flight=3))
    session = requests.Session()
    failures: list[BaseException] = []

    def call() -> None:
        try:
            request_with_retry(session, "POST", url, policy=policy)
        except RetryExhausted as exc:
            failures.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures, "an outage of max_tries throttling answers must fail a request"
    assert any("throttling answers in a row" in str(exc) or "max_tries=3" in str(exc)
               for exc in failures)


def test_an_answer_to_an_attempt_sent_before_the_outage_does_not_end_the_streak() -> None:
    # Thread A's attempt is on the wire when thread B hears a 503; A's 200 then arrives.
    # It was sent before the outage began, so the outage's streak goes on; an attempt sent
    # after the 503 that succeeds ends it.
    throttle = Throttle(max_in_flight=4)
    with throttle.slot() as before_outage:
        throttle.slow_down(0)
        throttle.succeeded(before_outage)
    assert throttle.streak == 1
    with throttle.slot() as after_outage:
        pass
    throttle.succeeded(after_outage)
    assert throttle.streak == 0

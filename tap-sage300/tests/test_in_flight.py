"""A read's pages `max_requests_in_flight` at a time (issue 19): after the first page, the rest
of the read as `$skip` windows, several on the wire at once, taken back in order.

The requests in flight at once are counted from the simulator's side (its request log: when
each answer was ready, `time`, and how long the simulator took, `duration_ms`), never from
the test's wall clock. The slow fault stands in for a Sage 300 behind IIS.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from tap_sage300_testkit import SageSandbox, TapRun, run_in_process

from mlc_sandbox.testing import peak_in_flight, started
from tap_sage300.streams import VendorsStream

VENDORS = r"SAMINC/AP/APVendors$"
LATENCY_MS = 200
MAX_TRIES = 6  # the shared policy's



def vendor_reads(sage: SageSandbox, company: str = "SAMINC") -> list[dict[str, Any]]:
    """The vendors stream's reads (not the keys-only ones of vendor_keys)."""
    return [r for r in sage.requests() if r["method"] == "GET" and r["path"].endswith(
        f"{company}/AP/APVendors") and "VendorName" in r["query"]]


def window(entry: dict[str, Any]) -> tuple[int, int]:
    query = parse_qs(entry["query"])
    return int(query.get("$skip", ["0"])[0]), int(query["$top"][0])


def output(run: TapRun) -> list[Any]:
    """What a target sees, in order: records and states (not the times records carry)."""
    return [(m["stream"], m["record"]) if m["type"] == "RECORD" else timeless(m["value"])
            for m in run.messages if m["type"] in ("RECORD", "STATE")]


def timeless(state: dict[str, Any]) -> dict[str, Any]:
    """A state without the SDK's signposts (the time a run's sync began)."""
    return json.loads(re.sub(r'"replication_key_signpost": "[^"]*"', '"replication_key_signpost": ""',
                             json.dumps(state)))


def test_windows_overlap_and_the_output_is_that_of_one_request_at_a_time(
        sage: SageSandbox) -> None:
    sage.reset("1000")  # 1,032 vendors in SAMINC: 11 pages at Sage's PageSize 100
    runs = {}
    for in_flight in (1, 4):
        sage.clear_requests()
        sage.faults(rates={"slow": 1.0}, slow_ms=LATENCY_MS, path=VENDORS)
        runs[in_flight] = sage.run(sage.config(max_requests_in_flight=in_flight))
        assert runs[in_flight].returncode == 0, runs[in_flight].stderr
        reads = vendor_reads(sage)
        peak = peak_in_flight(reads)
        # One at a time: never two; in flight: several at once, never more than the setting.
        assert peak == 1 if in_flight == 1 else 1 < peak <= in_flight
        assert sorted(skip for skip, _ in map(window, reads)) == list(range(0, 1100, 100))
        print(f"\n{len(reads)} vendor reads at {LATENCY_MS} ms, {in_flight} in flight: "
              f"{max(r['time'] for r in reads) - min(map(started, reads)):.2f} s (peak {peak})")

    assert output(runs[4]) == output(runs[1])
    assert timeless(runs[4].final_state) == timeless(runs[1].final_state)
    assert len(runs[4].of("vendors", "SAMINC")) == 1032


def test_a_window_cut_short_is_read_to_its_end_before_the_next(
        sage: SageSandbox, monkeypatch: pytest.MonkeyPatch,
        capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    sage.reset("1000")
    config = sage.config(company_ids=["SAMINC"])
    alone = run_in_process({**config, "max_requests_in_flight": 1}, capsysbinary)
    sage.clear_requests()
    parse = VendorsStream.parse_response

    def lower_the_page_size(stream: VendorsStream, response: requests.Response) -> Any:
        # After the first page (100: the windows' size), Sage caps every page at 60.
        if "$count=true" in (response.request.url or ""):
            sage.settings(page_size=60)
        return parse(stream, response)

    monkeypatch.setattr(VendorsStream, "parse_response", lower_the_page_size)
    records = run_in_process({**config, "max_requests_in_flight": 4}, capsysbinary)

    assert records == alone  # all 1,032, none twice, in the same order
    # Every window of 100 came back with 60 and its last 40 were asked for next.
    assert sorted(map(window, vendor_reads(sage)))[1:] == sorted(
        [(skip, 100) for skip in range(100, 1000, 100)] + [(1000, 32)]
        + [(skip + 60, 40) for skip in range(100, 1000, 100)])



def test_throttling_answers_slow_every_window_and_nothing_is_lost(sage: SageSandbox) -> None:
    sage.reset("1000")
    alone = sage.run(sage.config(max_requests_in_flight=1))
    sage.clear_requests()
    # Three windows answered 503 (Retry-After: 1 s), the rest slow enough to be in flight.
    sage.faults(rates={"slow": 1.0}, slow_ms=LATENCY_MS, path=VENDORS, retry_after=1,
                schedule=[{"nth": n, "fault": "503", "path": VENDORS} for n in (3, 4, 7)])

    run = sage.run(sage.config(max_requests_in_flight=4))

    assert run.returncode == 0, run.stderr
    assert output(run) == output(alone)  # nothing lost, nothing twice, the same order
    reads = vendor_reads(sage)
    assert sorted(r["status"] for r in reads).count(503) == 3
    # The first 503 held back every request of the tap, not only its own retry: none reached
    # Sage in the second after it, but those already on their way when it was answered.
    first = min(r["time"] for r in reads if r["status"] == 503)
    quiet = [r for r in sage.requests() if first + 0.15 < started(r) < first + 0.85]
    assert not quiet, quiet


def test_a_persistent_503_fails_the_run_after_the_policys_tries_not_per_thread(
        sage: SageSandbox) -> None:
    sage.reset("1000")
    sage.faults(retry_after=0, schedule=[{"nth": n, "fault": "503", "path": VENDORS}
                                         for n in range(2, 80)])

    run = sage.run(sage.config(max_requests_in_flight=4))

    assert run.returncode != 0
    assert "503" in run.stderr
    refused = [r for r in vendor_reads(sage) if r["status"] == 503]
    # The outage's budget is the tap's: max_tries answers in a row over all threads, plus
    # what was already on the wire, not max_tries for each of the 4 threads.
    assert MAX_TRIES <= len(refused) < MAX_TRIES * 2, len(refused)
    assert not vendor_reads(sage, "SAMLTD")  # the run stopped
